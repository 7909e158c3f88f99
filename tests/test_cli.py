"""`gpt` as a user runs it: a subprocess, its stdout, stderr and exit code."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gptpy import backends
from gptpy.checkpoint import MATMUL_WEIGHTS, load_checkpoint
from conftest import ROOT, SMALL, VOCAB_50257, command, gpt_command, one_error_line
from reference import sample_gpt_c


def tokens_of(result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [int(line) for line in result.stdout.splitlines()]  # stdout holds only ids


@pytest.mark.parametrize("prompt", [[17], [5, 100, 0, 42, 42, 3, 99, 1, 64], [31, 61]])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("backend", ["parallel", "serial"])
def test_tokens_match_the_numpy_reference(gpt, make_model, prompt, seed, backend):
    path = make_model(seed=seed, confident=True)
    expected = sample_gpt_c(load_checkpoint(path).params, SMALL, prompt, 10)[len(prompt):]
    assert tokens_of(gpt("--model", path, "--backend", backend, *prompt)) == expected


@pytest.mark.parametrize("version", [1, 5])
def test_every_file_version_gives_the_same_tokens(gpt, make_model, version):
    prompt = [8, 9, 10]
    v3 = tokens_of(gpt("--model", make_model(confident=True), *prompt))
    assert tokens_of(gpt("--model", make_model(version=version, confident=True), *prompt)) == v3


@pytest.mark.parametrize("n,prompt", [(2, [4]), (5, [1, 2, 3]), (20, [7, 7])])
def test_n_sets_the_total_length(gpt, make_model, n, prompt):
    path = make_model(confident=True)
    expected = sample_gpt_c(load_checkpoint(path).params, SMALL, prompt, n)[len(prompt):]
    assert tokens_of(gpt("--model", path, "-n", n, *prompt)) == expected


@pytest.mark.parametrize("new,prompt", [(1, [4]), (10, list(range(1, 14))), (5, [7, 7])])
def test_max_new_tokens_adds_n_tokens_to_any_prompt(gpt, make_model, new, prompt):
    """gpt.c's sampler, N tokens after a prompt of any length: -n len(prompt) + N."""
    path = make_model(confident=True)
    expected = sample_gpt_c(load_checkpoint(path).params, SMALL, prompt, len(prompt) + new)[len(prompt):]
    result = gpt("--model", path, "--max-new-tokens", new, *prompt)
    assert tokens_of(result) == expected and len(expected) == new and result.stderr == ""


def test_max_new_tokens_stops_at_the_context_and_says_so(gpt, make_model):
    path = make_model(confident=True)
    result = gpt("--model", path, "--max-new-tokens", "2000000000", *range(1, 29))  # 28 of a context of 32
    assert result.returncode == 0 and result.stdout.split() == gpt("--model", path, "-n", "32", *range(1, 29)).stdout.split()
    assert len(result.stdout.split()) == 4
    assert result.stderr == "gpt: 4 new tokens, not 2000000000: the model's context is 32 tokens\n"


def test_gpt_py_from_a_checkout_prints_the_same(make_model):
    path = make_model(confident=True)
    script = subprocess.run([sys.executable, str(ROOT / "gpt.py"), "--model", str(path), "3", "4"],
                            capture_output=True, text=True, cwd=ROOT)
    installed = subprocess.run([*gpt_command(), "--model", str(path), "3", "4"], capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == installed.stdout and len(script.stdout.split()) == 8


def test_default_model_is_gpt2_124M_in_the_current_folder(gpt, make_model, tmp_path):
    (tmp_path / "gpt2_124M.bin").symlink_to(make_model(confident=True))
    assert len(tokens_of(gpt("1", "2", cwd=tmp_path))) == 8
    line = one_error_line(gpt("1", cwd=tmp_path / ".."), 1)
    assert "gpt2_124M.bin: no such model file" in line and "make model" in line


# gpt.c's own messages, kept exactly

def test_no_token(gpt, make_model):
    result = gpt("--model", make_model())
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Provide at least one token.\n")


@pytest.mark.parametrize("args", [[str(i) for i in range(10)], ["-n", "4", "1", "2", "3", "4"], ["-n", "1", "5"]])
def test_too_many_tokens(gpt, make_model, args):
    result = gpt("--model", make_model(), *args)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "Too many tokens.\n")


def test_nine_tokens_is_the_most_gpt_c_takes(gpt, make_model):
    assert len(tokens_of(gpt("--model", make_model(), *range(9)))) == 1


# what gpt.c never checked: one line, exit 2 for bad arguments, 1 for a bad model file

@pytest.mark.parametrize("token,message", [
    ("abc", "token 'abc' is not an integer"),
    ("1.5", "token '1.5' is not an integer"),
    ("", "token '' is not an integer"),
    ("-5", "token -5 is negative"),
    ("101", "token 101 is out of range"),
    ("99999999999999999999", "out of range"),
])
def test_bad_tokens(gpt, make_model, token, message):
    line = one_error_line(gpt("--model", make_model(), "1", token), 2)
    assert line.startswith("gpt: error: ") and message in line


@pytest.mark.parametrize("args,message", [
    (["-n", "33", "1"], "-n 33 is beyond the model's context of 32 tokens"),
    (["-n", "0", "1"], "argument -n: must be at least 1, not 0"),
    (["-n", "x", "1"], "argument -n: 'x' is not a whole number"),
    (["--backend", "nope", "1"], "invalid choice"),
    (["--max-new-tokens", "0", "1"], "argument --max-new-tokens: must be at least 1, not 0"),
    (["--max-new-tokens", "-3", "1"], "argument --max-new-tokens: must be at least 1"),
    (["--max-new-tokens", "9" * 5000, "1"], "argument --max-new-tokens: must be at most"),
    (["--max-new-tokens", "ten", "1"], "'ten' is not a whole number"),
    (["--max-new-tokens", "3", "-n", "5", "1"], "give -n (tokens in total, as gpt.c) or --max-new-tokens"),
    (["--max-new-tokens", "3", *map(str, range(32))], "32 tokens fill the model's context of 32: no room"),
    (["--frobnicate", "1"], "unrecognized arguments"),
])
def test_bad_options(gpt, make_model, args, message):
    assert message in one_error_line(gpt("--model", make_model(), *args), 2)


def test_bad_model_files(gpt, tmp_path, make_model):
    assert "no such model file" in one_error_line(gpt("--model", tmp_path / "missing.bin", "1"), 1)
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"GGUF" + bytes(2000))
    assert "bad magic number" in one_error_line(gpt("--model", foreign, "1"), 1)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(make_model().read_bytes()[:5000])
    assert "truncated: 5000 bytes" in one_error_line(gpt("--model", cut, "1"), 1)


def test_help(gpt):
    result = gpt("--help")
    assert result.returncode == 0
    for word in ("TOKEN", "--model", "-n", "--max-new-tokens", "--backend", "--threads", "--recompute", "--profile",
                 "gpt2_124M.bin"):
        assert word in result.stdout


def test_a_reader_that_leaves_early_ends_gpt_as_sigpipe_ends_gpt_c(make_model):
    """gpt ... | head -1: the pipe closes while gpt still writes. gpt.c dies of SIGPIPE
    (128 + 13): not exit 0, which would say every token was delivered; and no message."""
    proc = subprocess.Popen([*gpt_command(), "--model", str(make_model()), "-n", "32", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and first.strip().isdigit()
    assert stderr == ""


def test_a_second_call_compiles_nothing(gpt, make_model, tmp_path):
    """numba's cache: the first process compiles and saves every kernel, the next loads."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    first = gpt("--model", make_model(), "1", "2", env=env)
    second = gpt("--model", make_model(), "1", "2", env=env)
    assert first.returncode == second.returncode == 0
    assert "data saved" in first.stdout
    assert "data saved" not in second.stdout and "data loaded" in second.stdout


def test_kernels_compiled_from_other_sources_are_compiled_again(gpt, make_model, tmp_path):
    """numba keys a kernel's cache on its own file only: kernels compiled before a change
    to the sources they use (an intrinsic in weights.py, a constant in dtypes.py), as
    their folders' stamp says, are removed and compiled again, and the folders stamped."""
    from gptpy import backends
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    model = make_model()
    first = gpt("--backend", "serial", "--model", model, "1", "2", env=env)
    stamps = sorted(tmp_path.rglob(backends.STAMP))
    assert first.returncode == 0 and "data saved" in first.stdout and stamps
    for stamp in stamps:
        assert stamp.read_text() == backends.sources_digest()
        stamp.write_text("the digest of older sources")
    again = gpt("--backend", "serial", "--model", model, "1", "2", env=env)
    assert again.returncode == 0 and again.stdout.split()[-10:] == first.stdout.split()[-10:]
    assert "data saved" in again.stdout and "data loaded" not in again.stdout
    assert all(stamp.read_text() == backends.sources_digest() for stamp in stamps)


def test_the_sources_a_kernel_depends_on(tmp_path):
    """compiled_sources(): the files numba compiles code from and the package modules
    they import; their digest moves with any of them, and not with the rest."""
    from gptpy import backends
    from conftest import ROOT
    for path in [*ROOT.glob("*.py"), *ROOT.glob("serial/*.py"), *ROOT.glob("parallel/*.py"), *ROOT.glob("gpu/*.py")]:
        (tmp_path / path.relative_to(ROOT)).parent.mkdir(exist_ok=True)
        (tmp_path / path.relative_to(ROOT)).write_bytes(path.read_bytes())
    names = {str(path.relative_to(tmp_path)) for path in backends.compiled_sources(tmp_path)}
    assert {"weights.py", "dtypes.py", "sampler.py", "bus_error.py", "parallel/kernels.py", "parallel/tile.py",
            "serial/kernels.py"} <= names
    assert not names & {"model.py", "gpt.py", "cli.py", "backends.py", "chat.py"}
    digest = backends.sources_digest(tmp_path)
    with open(tmp_path / "model.py", "a") as f:
        f.write("# not compiled\n")
    assert backends.sources_digest(tmp_path) == digest
    for changed in ("parallel/tile.py", "dtypes.py"):
        with open(tmp_path / changed, "a") as f:
            f.write("# compiled in\n")
        assert backends.sources_digest(tmp_path) != digest
        digest = backends.sources_digest(tmp_path)


def test_forgetting_stale_kernels_keeps_other_files_and_fresh_kernels(tmp_path):
    from gptpy import backends
    folder = tmp_path / "cache"
    folder.mkdir()
    for name in ("kernels.f-10.py311.nbi", "kernels.f-10.py311.1.nbc", "kernels.cpython-311.pyc"):
        (folder / name).write_text("x")
    backends.forget_stale_kernels([folder], "new")
    assert sorted(p.name for p in folder.iterdir()) == [backends.STAMP, "kernels.cpython-311.pyc"]
    assert (folder / backends.STAMP).read_text() == "new"
    (folder / "kernels.g-20.py311.nbi").write_text("x")  # compiled from these sources
    backends.forget_stale_kernels([folder], "new")
    assert (folder / "kernels.g-20.py311.nbi").exists()
    backends.forget_stale_kernels([tmp_path / "missing"], "new")  # a folder that is not there: nothing
    (folder / backends.STAMP).unlink()
    os.mkfifo(folder / backends.STAMP)  # a FIFO where the stamp should be: replaced, not waited on
    backends.forget_stale_kernels([folder], "newer")
    assert (folder / backends.STAMP).read_text() == "newer"
    assert sorted(p.name for p in folder.iterdir()) == [backends.STAMP, "kernels.cpython-311.pyc"]


def cache_files(folder):
    return {path: path.stat().st_mtime_ns for path in Path(folder).rglob("*") if path.is_file()}


def test_the_install_warm_up_compiles_what_any_run_needs(gpt, make_model, tmp_path):
    """`make install` runs gptpy.warmup on a model of its own: a run on another shape and
    every file version (the main job's float32 on versions 1 and 3, version 5's bfloat16),
    with the KV cache, recomputing, resident, in int8 or int4, or under chat, then compiles nothing."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    warm = subprocess.run([sys.executable, "-m", "gptpy.warmup"], env=env, capture_output=True, text=True)
    assert warm.returncode == 0 and "data saved" in warm.stdout, warm.stderr
    blocks = dataclasses.replace(SMALL, channels=64, num_heads=2)  # decoding's int16 x int8 (int4) matvec
    for version, config in ((1, SMALL), (3, SMALL), (5, SMALL), (3, blocks)):
        model = make_model(config, version=version, confident=True)
        for options, stdin in (([], None), (["--recompute"], None), (["--stdin"], "3 4\n5\n"),
                               (["--dtype", "int8"], None), (["--dtype", "int4"], None), (["--dtype", "bf16"], None),
                               (["--kv-dtype", "bf16"], None), (["--dtype", "int8", "--kv-dtype", "fp32"], None),
                               (["--temperature", "0.8", "--top-k", "40", "--top-p", "0.95", "--seed", "1"], None),
                               (["--top-k", "3"], None), (["--temperature", "2"], None),
                               (["--backend", "serial"], None), (["--backend", "serial", "--dtype", "int8"], None),
                               (["--backend", "serial", "--dtype", "int4"], None)):
            run = gpt("--model", model, *options, *([] if stdin else ["3", "4"]), env=env, input=stdin)
            assert run.returncode == 0 and "data loaded" in run.stdout, (version, config, options, run.stderr)
            assert "data saved" not in run.stdout, (version, config, options)
    # chat reads its gpt's stdout, which NUMBA_DEBUG_CACHE would fill: the cache's files tell
    before = cache_files(tmp_path)
    chat = subprocess.run([*command("gpt-chat"), "--model", str(make_model(VOCAB_50257, confident=True)),
                           "--once", "hello there"], env={**env, "NUMBA_DEBUG_CACHE": "0"},
                          capture_output=True, text=True, timeout=120)
    assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
    assert cache_files(tmp_path) == before  # nothing compiled, so nothing saved


@pytest.mark.parametrize("version", [3, 5])
def test_every_dtype_gives_the_same_tokens(gpt, make_model, version):
    """The generated values are bfloat16-exact: fp32 and bf16 compute the same products."""
    model = make_model(version=version, confident=True)
    runs = {dtype: tokens_of(gpt("--model", model, *dtype.split(), "5", "6"))
            for dtype in ("", "--dtype fp32", "--dtype bf16", "--dtype bf16 --recompute", "--dtype bf16 --backend serial")}
    assert len({tuple(r) for r in runs.values()}) == 1, runs


@pytest.mark.parametrize("version", [3, 5])
@pytest.mark.parametrize("prompt", [[5, 6], [17], [31, 61, 2]])
def test_int8_gives_fp32s_tokens_where_fp32_decides_by_a_wide_margin(gpt, make_model, version, prompt):
    """int8 moves the probabilities by ~1e-3 on these models: where fp32's CDF stays 0.02
    away from the coin at every step, every backend and mode draws fp32's tokens."""
    model = make_model(version=version, confident=True)
    expected = sample_gpt_c(load_checkpoint(model, "fp32").params, SMALL, prompt, 10, margin=0.02)[len(prompt):]
    for options in ("", "--recompute", "--backend serial", "--threads 1"):
        assert tokens_of(gpt("--model", model, "--dtype", "int8", *options.split(), *prompt)) == expected, options


@pytest.mark.parametrize("version", [3, 5])
@pytest.mark.parametrize("prompt,wide", [([5, 6], False), ([17], False), ([31, 61, 2], True)])
def test_int4_gives_its_references_tokens_and_fp32s_where_fp32s_margin_is_wide(gpt, make_model, version, prompt, wide):
    """int4 moves these models' logits (standard deviation 20) by up to ~10, and flips
    decisions that int8 keeps: every backend and mode draws the tokens of numpy's forward
    on the weights as int4 holds them (test_int4.int4_reference), and, where fp32's CDF
    stays 0.3 from the coin at every step, fp32's tokens too."""
    from test_forward import int4_dequantized
    model = make_model(version=version, confident=True)
    params = load_checkpoint(model, "fp32").params
    as_held = {name: int4_dequantized(x) if name in MATMUL_WEIGHTS else x for name, x in params.items()}
    expected = sample_gpt_c(as_held, SMALL, prompt, 10, margin=0.02)[len(prompt):]
    if wide:
        assert sample_gpt_c(params, SMALL, prompt, 10, margin=0.3)[len(prompt):] == expected
    for options in ("", "--recompute", "--backend serial", "--threads 1"):
        assert tokens_of(gpt("--model", model, "--dtype", "int4", *options.split(), *prompt)) == expected, options


@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_the_gpu_backend_refuses_other_dtypes_in_one_line(gpt, make_model, dtype):
    line = one_error_line(gpt("--model", make_model(version=5), "--backend", "cuda", "--dtype", dtype, "1"), 2)
    assert f"--dtype {dtype} is not available with --backend cuda" in line


def greedy_reference(params, config, prompt, n):
    from reference import gpt2_logits
    tokens = list(prompt)
    while len(tokens) < n:
        tokens.append(int(np.argmax(gpt2_logits(params, config, np.array(tokens))[-1])))
    return tokens


@pytest.mark.parametrize("seed,prompt", [(1, [17]), (1, [5, 100, 0]), (2, [31, 61])])
def test_a_hesitant_model_gets_gpt_cs_coin_not_the_argmax_on_every_backend(gpt, make_model, seed, prompt):
    """Where the most probable token has 15-30%, gpt.c's coin and the argmax part ways:
    a gpt wired to greedy decoding (or to any other rule) fails here."""
    path = make_model(seed=seed, hesitant=True)
    params = load_checkpoint(path).params
    expected = sample_gpt_c(params, SMALL, prompt, 10)[len(prompt):]
    assert expected != greedy_reference(params, SMALL, prompt, 10)[len(prompt):]
    for options in (["--backend", "serial"], [], ["--recompute"], ["--threads", "1"], ["--dtype", "bf16"],
                    *([["--backend", "cuda"]] if "cuda" in backends.available() else [])):
        assert tokens_of(gpt("--model", path, *options, *prompt)) == expected, options
