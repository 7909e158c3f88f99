"""Hostile input, as an attacker or an unlucky user gives it, to the four commands as they
are run: every case one line on stderr and a documented exit code (cli.py's table),
never a traceback or a hang, and nothing half-written left on disk."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gptpy.checkpoint import GPT2Config, HEADER_BYTES, MAGIC, file_size, load_checkpoint
from conftest import VOCAB_50257, command, one_error_line, run_cli

HUGE = "9" * 5000  # more digits than Python's int() takes from a string


def cli(name, *args, **kwargs):
    return run_cli(command(name), *args, **kwargs)


def header(version, maxT, V, L, NH, C, Vp):
    values = np.zeros(256, dtype="<i4")
    values[:8] = [MAGIC, version, maxT, V, L, NH, C, Vp]
    return values.tobytes()


def sparse_file(path, data, size):
    """A file of `size` bytes that starts with data and costs no disk beyond it."""
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(size)
    return path


def wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def mapped(pid):
    """The file names a process has mapped (its shared libraries among them)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read()
    except OSError:
        return ""


# ----------------------------------------------------------------------------
# 1. header arithmetic near the 64-bit limits

def test_a_header_whose_size_wraps_in_64_bits_is_refused(tmp_path):
    """C = 2^30 and maxT + V + 13 L + 2 = 2^32 make 4 x parameters a multiple of 2^64:
    in int64 the file size comes to the header alone, so a header-only file passed."""
    maxT, V, L, NH, C = 2**31 - 14, 2**31 - 1, 1, 1, 2**30
    wrapped = np.int64(HEADER_BYTES)
    with np.errstate(over="ignore"):
        params = (np.int64(V) * C + np.int64(maxT) * C + np.int64(L) * (12 * np.int64(C) * C + 13 * C) + 2 * C)
        wrapped = wrapped + np.int64(4) * params
    assert wrapped == HEADER_BYTES  # the case is real
    path = tmp_path / "wrap.bin"
    path.write_bytes(header(3, maxT, V, L, NH, C, V))
    line = one_error_line(cli("gpt", "--model", path, "1"), 1)
    assert "truncated: 1024 bytes" in line and f"needs exactly {file_size(GPT2Config(maxT, V, V, L, NH, C), 3)}" in line
    assert "truncated: 1024 bytes" in one_error_line(cli("gpt-checkpoint", "info", path), 1)


# ----------------------------------------------------------------------------
# 2. what is not a regular file: FIFOs, devices, folders

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name,args", [("gpt", ["--model", "{}", "1"]), ("gpt-checkpoint", ["info", "{}"]),
                                       ("gpt-convert", ["{}", "{}.hf"])])
def test_a_fifo_as_the_model_is_refused_not_waited_on(fifo, name, args):
    result = cli(name, *[a.format(fifo) for a in args], timeout=60)
    assert "is a FIFO" in one_error_line(result, 1)


def test_devices_and_folders_as_the_model(tmp_path):
    assert "not a regular file" in one_error_line(cli("gpt", "--model", "/dev/zero", "1"), 1)
    assert "is a directory" in one_error_line(cli("gpt", "--model", tmp_path, "1"), 1)


@pytest.mark.parametrize("which", ["config.json", "model.safetensors"])
def test_a_fifo_in_a_hugging_face_folder(make_model, tmp_path, which):
    cli("gpt-convert", make_model(), tmp_path / "hf")
    (tmp_path / "hf" / which).unlink()
    os.mkfifo(tmp_path / "hf" / which)
    line = one_error_line(cli("gpt-convert", tmp_path / "hf", tmp_path / "m.bin", timeout=60), 1)
    assert f"{which}: is a FIFO" in line and not (tmp_path / "m.bin").exists()


@pytest.mark.parametrize("target", ["fifo", "/dev/full"])
def test_a_fifo_or_a_device_is_never_replaced_by_an_output(fifo, target):
    target = fifo if target == "fifo" else target
    line = one_error_line(cli("gpt-checkpoint", "random", target), 2)
    assert "not a regular file; not replacing it" in line
    assert not os.path.isfile(target) and os.path.exists(target)


# ----------------------------------------------------------------------------
# 3, 4. numbers: thousands of digits, and bounds

@pytest.mark.parametrize("args,code,message", [
    (["1", HUGE], 2, "is out of range"),
    (["1", "-" + HUGE], 2, "is negative"),
    (["1", "0" * 5000 + "7"], 0, None),  # leading zeros: still token 7
    (["-n", HUGE, "1"], 2, "argument -n: must be at most 2147483647"),
    (["--threads", HUGE, "1"], 2, "argument --threads: must be at most"),
    (["--threads", "5000", "1"], 2, f"must be at most {4 * os.cpu_count()}, not 5000"),
    (["--threads", "0", "1"], 2, "must be at least 1"),
])
def test_numbers_of_any_size(make_model, args, code, message):
    result = cli("gpt", "--model", make_model(), *args)
    if code == 0:  # the same completion as the number written plainly
        assert result.returncode == 0 and len(result.stdout.split()) == 8, result.stderr
        plain = [arg.lstrip("0") or "0" for arg in args]
        assert result.stdout == cli("gpt", "--model", make_model(), *plain).stdout
    else:
        line = one_error_line(result, code)
        assert message in line and len(line) < 300, line


def test_help_says_what_threads_the_machine_allows():
    assert f"1 to {4 * os.cpu_count()}" in cli("gpt", "--help").stdout


@pytest.mark.parametrize("args,message", [
    (["--seed", "-1"], "argument --seed: must be at least 0"),
    (["--seed", HUGE], "argument --seed: must be at most"),
    (["--layers", HUGE], "argument --layers: must be at most 2147483647"),
    (["--channels", "10", "--heads", "3"], "not a multiple of heads"),
])
def test_random_model_options(tmp_path, args, message):
    assert message in one_error_line(cli("gpt-checkpoint", "random", tmp_path / "m.bin", *args), 2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", ["", ".", "/", "{tmp}"])
def test_random_model_output_that_is_no_file_name(tmp_path, out):
    line = one_error_line(cli("gpt-checkpoint", "random", out.format(tmp=tmp_path)), 2)
    assert "not a model file name" in line or "is a directory" in line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# 5. standard output: full, closed, or its reader gone

@pytest.mark.parametrize("name,args", [("gpt", ["--model", "{model}", "1", "2"]),
                                       ("gpt-chat", ["--model", "{big}", "--once", "hello there"]),
                                       ("gpt-checkpoint", ["info", "{model}"]),
                                       ("gpt", ["--help"])])
def test_a_full_disk_on_stdout(make_model, name, args):
    paths = {"model": make_model(), "big": make_model(VOCAB_50257, confident=True)}
    with open("/dev/full", "w") as full:
        result = subprocess.run([*command(name), *[a.format(**paths) for a in args]], stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"{name}: error: cannot write to standard output: No space left on device\n"


@pytest.mark.parametrize("name,args", [("gpt", ["--model", "{model}", "1", "2"]),
                                       ("gpt-chat", ["--model", "{big}", "--once", "hello there"])])
def test_a_closed_stdout_is_said_not_ignored(make_model, name, args):
    paths = {"model": make_model(), "big": make_model(VOCAB_50257, confident=True)}
    line = " ".join(f"'{a.format(**paths)}'" for a in args)
    result = subprocess.run(["bash", "-c", f"'{command(name)[0]}' {line} >&-"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (1, f"{name}: error: standard output is closed\n")


def test_chat_whose_reader_leaves(make_model):
    """gpt-chat ... | head -c 3: exit 141 as for SIGPIPE, no traceback, no gpt left behind."""
    model = make_model(dataclass_replace(VOCAB_50257, max_seq_len=512, channels=32), confident=True)
    script = (f"'{command('gpt-chat')[0]}' --model '{model}' --backend serial -n 400 --once 'hello there' "
              "| head -c 3 >/dev/null; echo ${PIPESTATUS[0]}")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "141" and result.stderr == "", result.stderr
    assert subprocess.run(["pgrep", "-f", f"--model={model}"], capture_output=True).stdout == b""


def dataclass_replace(config, **changes):
    return GPT2Config(**{**config.__dict__, **changes})


# ----------------------------------------------------------------------------
# 6. Ctrl-C while numpy, numba and tiktoken load

@pytest.mark.parametrize("name,library", [("gpt", "_multiarray_umath"), ("gpt", "llvmlite"),
                                          ("gpt-chat", "_multiarray_umath"), ("gpt-chat", "_tiktoken")])
def test_ctrl_c_during_start_up(make_model, name, library):
    """The signal is sent when the library's shared object appears in the process's
    memory map: while Python is still importing it."""
    model = make_model(VOCAB_50257, confident=True)
    args = ["--model", str(model), *(["31373", "612"] if name == "gpt" else ["--once", "hello there"])]
    proc = subprocess.Popen([*command(name), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "NUMBA_CACHE_DIR": "/nonexistent/no-cache"})
    wait_for(lambda: library in mapped(proc.pid) or proc.poll() is not None)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.decode()) == (130, f"{name}: interrupted\n")


# A signal whose exception Python cannot raise: it lands in a __del__ or a weakref
# callback (CI once caught it in importlib's module-lock callback, while tiktoken loaded,
# and gpt-chat went on to answer). The first import the command makes after installing
# its handlers drops an object whose __del__ takes the signal; "threads": False is a
# machine that starts no thread (the signal cannot be sent again: the work's end says it).
SWALLOWED = """
import _thread, signal, sys
from gptpy import {module} as command

class Dropped:
    def __del__(self):
        signal.raise_signal(signal.{signal})

class FirstImport:
    def find_spec(self, *args):
        sys.meta_path.remove(self)
        Dropped()

if not {threads}:
    def start_new_thread(*args):
        raise RuntimeError("can't start new thread")
    _thread.start_new_thread = start_new_thread
sys.meta_path.insert(0, FirstImport())
sys.exit(command.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name,module,signame,code,line", [
    ("gpt", "gpt", "SIGINT", 130, "interrupted"),
    ("gpt-chat", "chat", "SIGINT", 130, "interrupted"),
    ("gpt", "gpt", "SIGTERM", 143, "stopped by SIGTERM")])
@pytest.mark.parametrize("threads", [True, False])
def test_a_signal_raised_in_a_finalizer(make_model, name, module, signame, code, line, threads):
    model = make_model(VOCAB_50257, confident=True)
    args = ["--model", str(model), *(["31373", "612"] if name == "gpt" else ["--once", "hello there"])]
    script = SWALLOWED.format(module=module, signal=signame, threads=threads)
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (code, f"{name}: {line}\n")


# ----------------------------------------------------------------------------
# 7. memory: say how much, before asking Linux for it

def test_a_valid_model_too_big_to_widen(tmp_path):
    """A bfloat16 file whose float32 copy would not fit this machine (a sparse file: its
    header is valid and its size exact, its data never written). Its own precision is
    mapped, not copied: only --dtype fp32 asks for the copy."""
    config = GPT2Config(max_seq_len=1, vocab_size=1, padded_vocab_size=1, num_layers=64, num_heads=1, channels=8192)
    path = sparse_file(tmp_path / "big.bin", header(5, 1, 1, 64, 1, 8192, 1), file_size(config, 5))
    line = one_error_line(cli("gpt", "--model", path, "--dtype", "fp32", "0"), 1)
    assert "out of memory: " in line and "weights as fp32 needs 206.2 GB, this machine has" in line


def test_a_context_too_long_for_memory(tmp_path):
    config = GPT2Config(max_seq_len=2**20, vocab_size=1, padded_vocab_size=1, num_layers=1, num_heads=1, channels=8)
    path = sparse_file(tmp_path / "long.bin", header(3, 2**20, 1, 1, 1, 8, 1), file_size(config, 3))
    line = one_error_line(cli("gpt", "--model", path, "-n", str(2**20), "0"), 1)
    assert "out of memory: 1 x 1048575 positions' activations needs" in line


@pytest.mark.parametrize("args,message", [
    (["--channels", "1000000", "--heads", "1"], "out of memory: generating"),
    (["--layers", "100000", "--channels", "4096", "--heads", "1"], "on disk"),
])
def test_random_models_too_big_for_the_machine(tmp_path, args, message):
    assert message in one_error_line(cli("gpt-checkpoint", "random", tmp_path / "m.bin", *args), 1)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------
# 9, 10. gpt-convert: bad configs, bad safetensors, its own source

def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))


@pytest.mark.parametrize("change,message", [
    (lambda c: [1, 2], "not a JSON object"),
    (lambda c: {}, "no n_positions"),
    (lambda c: {**c, "n_layer": "2"}, "n_layer = '2', must be a whole number"),
    (lambda c: {**c, "n_layer": 2.0}, "n_layer = 2.0, must be a whole number"),
    (lambda c: {**c, "n_layer": True}, "n_layer = True, must be a whole number"),
    (lambda c: {**c, "n_head": None}, "n_head = None, must be a whole number"),
    (lambda c: {**c, "n_embd": 0}, "n_embd = 0, must be from 1"),
    (lambda c: {**c, "n_positions": -1}, "n_positions = -1, must be from 1"),
    (lambda c: {**c, "llmc_padded_vocab_size": 50}, "llmc_padded_vocab_size = 50 is smaller than vocab"),
    (lambda c: {**c, "n_head": 5}, "channels n_embd = 36 is not a multiple of heads n_head = 5"),
    (lambda c: {**c, "n_layer": 10**9}, "n_layer = 1000000000, model.safetensors holds 2 layers"),
    (lambda c: {**c, "vocab_size": 10**30}, "must be from 1 to 2147483647"),
])
def test_bad_configs(hf, tmp_path, change, message):
    edit_config(hf, change)
    line = one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert line.startswith(f"gpt-convert: error: {hf / 'config.json'}: ") or "holds" in line
    assert message in line and not (tmp_path / "m.bin").exists()


def test_config_that_is_not_json(hf, tmp_path):
    (hf / "config.json").write_bytes(b"\xff{{")
    assert "not JSON" in one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)


@pytest.mark.parametrize("damage,message", [
    (lambda data: b"", "too short for a header"),
    (lambda data: data[:-100], "a bad header entry"),
    (lambda data: data[:8] + b"#" * (len(data) - 8), "its header is not JSON"),
    (lambda data: (2**63).to_bytes(8, "little") + data[8:], "more than the file holds"),
    (lambda data: (4).to_bytes(8, "little") + b"[1] " + data[12:], "not a JSON object"),
])
def test_damaged_safetensors(hf, tmp_path, damage, message):
    path = hf / "model.safetensors"
    path.write_bytes(damage(path.read_bytes()))
    line = one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert "not a safetensors file" in line and message in line
    assert list(tmp_path.glob("*.bin")) == [] and list(tmp_path.glob(".*")) == []


def test_no_safetensors(hf, tmp_path):
    (hf / "model.safetensors").unlink()
    assert "no model.safetensors" in one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)


def bf16_safetensors(tensors):
    """A safetensors file with every tensor in BF16 (numpy has no bfloat16 to save)."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        bits = (np.ascontiguousarray(t, np.float32).view(np.uint32) >> 16).astype("<u2")
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + bits.nbytes]}
        chunks.append(bits.tobytes())
        offset += bits.nbytes
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def test_bfloat16_and_float16_tensors_convert(hf, make_model, tmp_path):
    """The generated values are bfloat16-exact, so both come back as the same file."""
    tensors = load_file(str(hf / "model.safetensors"))
    (hf / "model.safetensors").write_bytes(bf16_safetensors(tensors))
    assert cli("gpt-convert", hf, tmp_path / "bf16.bin").returncode == 0
    assert (tmp_path / "bf16.bin").read_bytes() == make_model().read_bytes()
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, str(hf / "model.safetensors"))
    assert cli("gpt-convert", hf, tmp_path / "f16.bin").returncode == 0
    # each value is float16's rounding of the original, widened: not the original itself
    original, f16 = load_checkpoint(make_model()).params, load_checkpoint(tmp_path / "f16.bin").params
    for name in original:
        np.testing.assert_array_equal(f16[name], original[name].astype(np.float16).astype(np.float32), err_msg=name)
    assert any((f16[name] != original[name]).any() for name in original)


def test_an_integer_tensor_is_refused_before_anything_is_written(hf, tmp_path):
    tensors = load_file(str(hf / "model.safetensors"))
    tensors["transformer.ln_f.bias"] = tensors["transformer.ln_f.bias"].astype(np.int64)
    save_file(tensors, str(hf / "model.safetensors"))
    assert "ln_f.bias is I64" in one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert list(tmp_path.glob("*m.bin*")) == []


def test_prefixed_and_plain_names_of_one_tensor(hf, tmp_path):
    tensors = load_file(str(hf / "model.safetensors"))
    tensors["ln_f.bias"] = tensors["transformer.ln_f.bias"].copy()
    save_file(tensors, str(hf / "model.safetensors"))
    assert cli("gpt-convert", hf, tmp_path / "same.bin").returncode == 0  # the same values: fine
    tensors["ln_f.bias"] += 1
    save_file(tensors, str(hf / "model.safetensors"))
    line = one_error_line(cli("gpt-convert", hf, tmp_path / "m.bin"), 1)
    assert "both transformer.ln_f.bias and ln_f.bias, with different values" in line


def test_convert_never_writes_over_its_source(hf, make_model, tmp_path):
    source = (hf / "model.safetensors").read_bytes()
    assert "is the source" in one_error_line(cli("gpt-convert", hf, hf / "model.safetensors"), 2)
    os.link(hf / "model.safetensors", tmp_path / "linked.bin")  # the same file by another name
    assert "is the source" in one_error_line(cli("gpt-convert", hf, tmp_path / "linked.bin"), 2)
    assert (hf / "model.safetensors").read_bytes() == source
    llmc = tmp_path / "folder" / "model.safetensors"  # an llm.c file that bears that name
    llmc.parent.mkdir()
    llmc.write_bytes(make_model().read_bytes())
    assert "is the source" in one_error_line(cli("gpt-convert", llmc, llmc.parent), 2)
    assert llmc.read_bytes() == make_model().read_bytes()


# ----------------------------------------------------------------------------
# 11, 12. signals timed against writes; errors after a progress bar

@pytest.fixture(scope="module")
def big_model(tmp_path_factory):
    """A 124M-shape checkpoint (498 MB), and the generator's peak memory while writing it:
    VmHWM, the high-water mark of the process's own memory (ru_maxrss would count the
    forking test process's memory too)."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    code = ("import sys; from gptpy.gpt_checkpoint import main; code = main(sys.argv[1:]); "
            "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "random", str(path), "--shape", "124M"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return path, int(done.stdout.split()[1]) * 1024


def test_random_models_are_written_a_piece_at_a_time(big_model):
    path, peak = big_model
    assert peak < os.path.getsize(path) / 4, f"peak {peak / 1e6:.0f} MB for a {os.path.getsize(path) / 1e6:.0f} MB file"


def start_writing(args, temporaries):
    """Starts a writer and waits until its temporary file holds a few MB."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(p.stat().st_size > 4 << 20 for p in temporaries()) or proc.poll() is not None)
    assert proc.poll() is None, "the writer ended before it could be stopped"
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_mid_write_leaves_nothing(tmp_path, sig):
    out = tmp_path / "m.bin"
    proc = start_writing([*command("gpt-checkpoint"), "random", str(out), "--shape", "124M"],
                         lambda: tmp_path.glob(".m.bin.tmp*"))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    said = "interrupted" if sig == signal.SIGINT else f"stopped by {sig.name}"
    assert proc.returncode == 128 + sig and err == f"gpt-checkpoint: {said}\n", err  # a pipe: no bar drawn
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writer_is_cleaned_up_by_the_next(tmp_path):
    out = tmp_path / "m.bin"
    proc = start_writing([*command("gpt-checkpoint"), "random", str(out), "--shape", "124M"],
                         lambda: tmp_path.glob(".m.bin.tmp*"))
    proc.kill()
    proc.communicate()
    assert len(list(tmp_path.glob(".m.bin.tmp*"))) == 1  # SIGKILL: nothing can clean up
    assert cli("gpt-checkpoint", "random", out).returncode == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_sigterm_mid_conversion_leaves_nothing(big_model, tmp_path):
    folder = tmp_path / "hf"
    proc = start_writing([*command("gpt-convert"), str(big_model[0]), str(folder)],
                         lambda: folder.glob(".model.safetensors.tmp*"))
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.splitlines() == ["gpt-convert: stopped by SIGTERM"]
    assert not folder.exists()  # the folder it made, too


def test_hints_name_only_options_the_command_has(tmp_path):
    for name, args in (("gpt-checkpoint", ["info", tmp_path / "no.bin"]),
                       ("gpt-convert", [tmp_path / "no.bin", tmp_path / "hf"])):
        line = one_error_line(cli(name, *args), 1)
        assert "no such model file" in line and "--model" not in line
    assert "or pass --model PATH" in one_error_line(cli("gpt", "--model", tmp_path / "no.bin", "1"), 1)


# ----------------------------------------------------------------------------
# 13. chat

def test_chat_refuses_a_vocabulary_its_encoding_cannot_decode(make_model):
    model = make_model(dataclass_replace(VOCAB_50257, vocab_size=50300), confident=True)
    line = one_error_line(cli("gpt-chat", "--model", model, "--once", "hi"), 1)
    assert "a vocabulary of 50300 tokens" in line and "50257" in line


def long_chat(make_model, *args):
    model = make_model(dataclass_replace(VOCAB_50257, max_seq_len=1024, channels=32), confident=True)
    proc = subprocess.Popen([*command("gpt-chat"), "--model", str(model), "--backend", "serial", "-n", "1024",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE)
    return proc, model


def gpts_left(model):
    """The gpt processes chat started for this model (its command line: gpt.py --stdin ... --model=M)."""
    return subprocess.run(["pgrep", "-f", f"gpt.py --stdin .*--model={model}"], capture_output=True, text=True).stdout


def test_chat_says_when_gpt_is_killed_mid_completion(make_model):
    proc, model = long_chat(make_model, "--once", "hello there")
    proc.stdout.read(1)  # the completion has begun
    subprocess.run(["pkill", "-KILL", "-f", f"gpt.py --stdin .*--model={model}"], check=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.decode().splitlines() == ["gpt-chat: error: gpt was ended by SIGKILL mid-completion"]


def test_sigterm_to_chat_ends_its_gpt_too(make_model):
    proc, model = long_chat(make_model, "--once", "hello there")
    proc.stdout.read(1)
    assert gpts_left(model)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.decode().splitlines() == ["gpt-chat: stopped by SIGTERM"]
    assert gpts_left(model) == ""


def test_chat_takes_bytes_that_are_not_utf8(make_model):
    """They are read as U+FFFD: chat completes the text with that character in their place
    (at the end, where the next token depends on them), neither dropped nor failed on."""
    model = make_model(VOCAB_50257, confident=True)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""}
    chat = [*command("gpt-chat"), "--model", str(model)]
    result = subprocess.run(chat, input=b"hello there \xff\xfe\n", capture_output=True, env=env)
    assert result.returncode == 0 and result.stderr == b"" and len(result.stdout) > 1
    completions = {text: subprocess.run([*chat, "--once", text], capture_output=True, env=env).stdout
                   for text in ("hello there \ufffd\ufffd", "hello there ", "hello there")}
    assert result.stdout == completions["hello there \ufffd\ufffd"]
    assert result.stdout not in (completions["hello there "], completions["hello there"])
