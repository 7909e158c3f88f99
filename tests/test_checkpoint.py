"""The loader: every malformed file is one clear CheckpointError (or one line and a
non-zero exit from the CLI); good files are mapped, not copied; writes are atomic."""

import os
import urllib.request

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptpy import checkpoint, gpt_checkpoint
from gptpy.checkpoint import (HEADER_BYTES, MAGIC, CheckpointError, load_checkpoint, parameter_table,
                              read_header, write_checkpoint)
from gptpy.random_model import random_params
from conftest import SMALL, command, run_cli


def header_bytes(*values):
    header = np.zeros(256, dtype="<i4")
    header[:len(values)] = values
    return header.tobytes()


def good_header(version=3, config=SMALL):
    c = config
    return [MAGIC, version, c.max_seq_len, c.vocab_size, c.num_layers, c.num_heads, c.channels, c.padded_vocab_size]


def test_round_trip_maps_the_file_without_copying(make_model):
    path = make_model(version=3)
    ckpt = load_checkpoint(path)
    assert ckpt.version == 3 and ckpt.config == SMALL
    expected = random_params(SMALL, seed=0)
    for name, shape in parameter_table(SMALL):
        tensor = ckpt.params[name]
        assert tensor.shape == shape and tensor.dtype == np.float32
        np.testing.assert_array_equal(tensor, expected[name])
        assert not tensor.flags.owndata and not tensor.flags.writeable  # a view of the map
    # all tensors are views of one mapping of the file
    assert np.shares_memory(ckpt.params["wte"].base, ckpt.params["lnfb"].base)


def test_bfloat16_file_is_half_the_size_and_reads_back(make_model):
    v3, v5 = make_model(version=3), make_model(version=5)
    assert os.path.getsize(v5) - HEADER_BYTES == (os.path.getsize(v3) - HEADER_BYTES) // 2
    a, b = load_checkpoint(v3), load_checkpoint(v5, "fp32")
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def test_a_version_5_file_is_used_as_it_is_and_any_file_as_either_precision(make_model):
    """Version 5: the matmul weights are the mapped bfloat16 bits, not a widened copy.
    Version 3 asked for bf16: rounded once. Other parameters are float32 either way."""
    v3, v5 = load_checkpoint(make_model(version=3)), load_checkpoint(make_model(version=5))
    rounded = load_checkpoint(make_model(version=3), "bf16")
    assert (v3.dtype, v5.dtype, rounded.dtype) == ("fp32", "bf16", "bf16")
    for name in checkpoint.MATMUL_WEIGHTS:
        bits = v5.params[name]
        assert bits.dtype == np.uint16 and not bits.flags.owndata and not bits.flags.writeable
        assert np.shares_memory(bits, v5.params["wte"].base)  # one mapping of the file
        np.testing.assert_array_equal(rounded.params[name], checkpoint.float32_to_bf16(v3.params[name]))
        assert not rounded.params[name].flags.writeable  # the same numba type as a mapped view
    for name in set(v3.params) - set(checkpoint.MATMUL_WEIGHTS):
        assert v5.params[name].dtype == rounded.params[name].dtype == np.float32


def test_bfloat16_rounds_to_nearest_even():
    x = np.array([1.0, 1.00390625, 1.01171875, -2.5, 3.0e38, 1e-40], dtype=np.float32)
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1.0) wins; 1 + 3*2^-8 rounds up
    expected = np.array([1.0, 1.0, 1.015625, -2.5], dtype=np.float32)
    back = checkpoint.bf16_to_float32(checkpoint.float32_to_bf16(x))
    np.testing.assert_array_equal(back[:4], expected)
    assert abs(back[4] - x[4]) / x[4] < 2**-8


BAD_HEADERS = [
    (header_bytes(1234, 3, 32, 101, 2, 3, 36, 128), "bad magic number 1234"),
    (header_bytes(MAGIC, 2, 32, 101, 2, 3, 36, 128), "unsupported checkpoint version 2"),
    (header_bytes(MAGIC, 3, 32, 101, 0, 3, 36, 128), "L = 0"),
    (header_bytes(MAGIC, 3, 32, -101, 2, 3, 36, 128), "V = -101"),
    (header_bytes(MAGIC, 3, 32, 101, 2, 5, 36, 128), "C = 36 is not a multiple of heads NH = 5"),
    (header_bytes(MAGIC, 3, 32, 101, 2, 3, 36, 100), "Vp = 100 is smaller than vocab V = 101"),
    (header_bytes(MAGIC, 1, 32, 101, 2, 3, 36, 128), "version 1 has no vocab padding"),
    (b"\x00" * 100, "truncated header: 100 bytes"),
    (b"", "truncated header: 0 bytes"),
]


@pytest.mark.parametrize("data,message", BAD_HEADERS)
def test_bad_headers_are_named(tmp_path, data, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as error:
        load_checkpoint(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("delta,kind", [(-1, "truncated"), (-1000, "truncated"), (4, "too long")])
def test_wrong_file_size_is_caught_before_the_data_is_touched(tmp_path, make_model, delta, kind):
    data = make_model().read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    with pytest.raises(CheckpointError, match=f"{kind}: {len(data) + delta} bytes.*needs exactly {len(data)}"):
        load_checkpoint(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="nope.bin: no such model file"):
        load_checkpoint(tmp_path / "nope.bin")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_version_1_accepts_the_original_unset_padding(tmp_path, make_model):
    data = bytearray(make_model(version=1).read_bytes())
    data[7 * 4:8 * 4] = np.int32(0).tobytes()  # llm.c's first files left Vp at 0
    path = tmp_path / "v1.bin"
    path.write_bytes(data)
    version, config = read_header(path)
    assert version == 1 and config.padded_vocab_size == config.vocab_size == SMALL.vocab_size


def test_failed_write_leaves_nothing(tmp_path):
    params = random_params(SMALL)
    params["fcw"] = params["fcw"][:, :-1]  # wrong shape: found when that tensor is written
    with pytest.raises(ValueError, match="fcw"):
        write_checkpoint(tmp_path / "m.bin", SMALL, params, 3)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# fuzzing: random headers and sizes never escape as anything but CheckpointError

# small dimensions, and ones near the int32 limit whose products pass 2^64
dims = st.one_of(st.integers(-3, 70), st.sampled_from([2**31 - 1, 2**31 - 14, 2**30, 2**30 + 1, -2**31]))


@st.composite
def checkpoint_files(draw):
    version = draw(st.sampled_from([1, 3, 5, 0, 4, -1]))
    values = [draw(st.sampled_from([MAGIC, MAGIC, MAGIC, 0, MAGIC + 1])), version] + [draw(dims) for _ in range(6)]
    data = header_bytes(*values)
    try:  # aim some files at exactly the right size, others a little off
        _, config = checkpoint._config_from_header("x", np.frombuffer(data, "<i4"))
        size = checkpoint.file_size(config, version) if version in (1, 3, 5) else 0
    except CheckpointError:
        size = 0
    if draw(st.booleans()):  # the size a loader with 64-bit arithmetic would expect
        size %= 2**64
    size = min(size, 1 << 22) + draw(st.sampled_from([0, 0, -1, 2, -HEADER_BYTES]))
    cut = draw(st.one_of(st.none(), st.integers(0, HEADER_BYTES + 64)))
    data = (data + b"\0" * max(0, size - HEADER_BYTES))[:max(0, size if cut is None else cut)]
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=checkpoint_files())
def test_fuzzed_files_raise_only_checkpoint_error(tmp_path, data):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert os.path.getsize(path) == checkpoint.file_size(ckpt.config, ckpt.version)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=checkpoint_files())
def test_fuzzed_files_give_the_cli_one_line_and_no_traceback(tmp_path, gpt, data):
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    result = gpt("--model", path, "-n", "2", "0")
    if result.returncode != 0:
        assert result.returncode in (1, 2) and len(result.stderr.strip().splitlines()) == 1, result.stderr


# ----------------------------------------------------------------------------
# the download (`make model`), against local files: no network in tests

def checkpoint_cli(*args, **kwargs):
    return run_cli(command("gpt-checkpoint"), *args, **kwargs)


def test_download_from_a_local_file(tmp_path, make_model):
    source = make_model()
    out = tmp_path / "gpt2_124M.bin"
    result = checkpoint_cli("download", out, "--url", source.as_uri())
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == source.read_bytes()
    assert result.stderr.startswith("wrote ") and result.stderr.count("\n") == 1  # a pipe: no bar, one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpt2_124M.bin"]


@pytest.mark.parametrize("args", [["download", "--url", "SOURCE"], ["random", "--shape", "124M"]])
def test_a_terminal_gets_a_progress_bar_with_rate_and_time_left(tmp_path, make_model, args):
    """In a pty: tqdm's bar (percent, bytes, rate, time left), then the one line written."""
    import pexpect
    out = tmp_path / "m.bin"
    args = [str(make_model().as_uri()) if a == "SOURCE" else a for a in args]
    child = pexpect.spawn(command("gpt-checkpoint")[0], [args[0], str(out), *args[1:]], encoding="utf-8", timeout=120)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = child.before
    assert "100%" in screen and "B/s]" in screen and "<00:00" in screen, screen  # rate, time left
    assert screen.rstrip().splitlines()[-1].startswith("wrote "), screen


def test_download_of_a_bad_file_leaves_nothing(tmp_path, make_model):
    source = tmp_path / "src" / "cut.bin"
    source.parent.mkdir()
    source.write_bytes(make_model().read_bytes()[:-10])
    out = tmp_path / "gpt2_124M.bin"
    result = checkpoint_cli("download", out, "--url", source.as_uri())
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("gpt-checkpoint: error: downloaded gpt2_124M.bin: truncated")
    assert not out.exists() and list(tmp_path.glob(".*")) == []


def test_download_without_network_says_where_to_put_the_file(tmp_path):
    out = tmp_path / "gpt2_124M.bin"
    result = checkpoint_cli("download", out, "--url", "http://127.0.0.1:9/gpt2_124M.bin", "--timeout", "3")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "by hand" in lines[0] and str(out) in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_random_and_info_commands(tmp_path):
    out = tmp_path / "r.bin"
    result = checkpoint_cli("random", out, "--layers", "1", "--channels", "16", "--heads", "2",
                            "--vocab", "50", "--version", "5", "--seed", "3")
    assert result.returncode == 0, result.stderr
    version, config = read_header(out)
    assert version == 5 and (config.num_layers, config.channels, config.num_heads) == (1, 16, 2)
    assert (config.vocab_size, config.padded_vocab_size) == (50, 128)  # llm.c's padding
    info = checkpoint_cli("info", out)
    assert info.returncode == 0 and "version 5" in info.stdout
    bad = checkpoint_cli("random", tmp_path / "x.bin", "--channels", "10", "--heads", "3")
    assert bad.returncode == 2 and "multiple" in bad.stderr and not (tmp_path / "x.bin").exists()


def test_interrupted_download_leaves_nothing(tmp_path, make_model, monkeypatch):
    source = make_model()

    class Interrupted:  # a response that is cut off by Ctrl-C after its first chunk
        headers = {"Content-Length": str(source.stat().st_size)}
        chunks = [source.read_bytes()[:4096]]

        def read(self, size):
            if self.chunks:
                return self.chunks.pop()
            raise KeyboardInterrupt

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Interrupted())
    with pytest.raises(KeyboardInterrupt):
        gpt_checkpoint.download(tmp_path / "gpt2_124M.bin", "https://example.invalid/x.bin")
    assert list(tmp_path.iterdir()) == []
