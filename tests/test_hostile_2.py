"""Hostile input, second round: the environment's edges (CPU affinity, NUMBA_NUM_THREADS,
a numba cache that cannot be written), closed standard streams, signals that arrive
while the command is already on its way out, and chat's exit code. Each case runs the
real command and gets one line on stderr and a documented exit code."""

import os
import signal
import subprocess
import time

import pytest

from conftest import SMALL, VOCAB_50257, command, one_error_line, run_cli


def cli(name, *args, **kwargs):
    return run_cli(command(name), *args, **kwargs)


def shell(line, **kwargs):
    """A command line run by bash, for what subprocess cannot say (`<&-`, `2>&-`)."""
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=120, **kwargs)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr + done.stdout
    return done


def gpt_line(*args):
    return " ".join([*command("gpt"), *map(str, args)])


# ----------------------------------------------------------------------------
# the pool when no --threads is given: the CPUs this process may use

def one_cpu():
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


@pytest.mark.parametrize("name", ["gpt", "gpt-chat"])
def test_one_allowed_cpu_is_a_pool_of_one(make_model, name):
    """Under taskset -c 0 (or a container's cpuset of one CPU), the default pool is one
    worker, where numba also allows one: no "--threads 2 is more than ..." error."""
    model = make_model(VOCAB_50257, confident=True)
    args = ["--profile", "31373", "612"] if name == "gpt" else ["--once", "hello there"]
    done = subprocess.run([*command(name), "--model", str(model), *args], capture_output=True, text=True,
                          preexec_fn=one_cpu, timeout=120)
    assert done.returncode == 0, done.stderr
    if name == "gpt":
        assert done.stderr.splitlines()[-1] == "pool: 1 workers"


def test_numba_num_threads_bounds_the_default_pool(make_model):
    done = cli("gpt", "--model", make_model(), "--profile", "1", "2", env={**os.environ, "NUMBA_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stderr.splitlines()[-1] == "pool: 1 workers", done.stderr


@pytest.mark.parametrize("value", ["abc", "0", "-1", "", " ", "1.5", "9" * 5000, "\u0663"])
@pytest.mark.parametrize("name", ["gpt", "gpt-chat"])
def test_numba_num_threads_that_is_no_number(make_model, name, value):
    """numba itself prints a traceback inside a warning and goes on; here one line, exit 2
    (chat: its gpt's line, and chat's exit 1)."""
    model = make_model(VOCAB_50257)
    args = ["1", "2"] if name == "gpt" else ["--once", "hello"]
    done = cli(name, "--model", model, *args, env={**os.environ, "NUMBA_NUM_THREADS": value})
    assert done.returncode == (2 if name == "gpt" else 1) and done.stdout.strip() == "", done.stderr
    line, = done.stderr.splitlines()
    assert line.startswith("gpt: error: NUMBA_NUM_THREADS=") and "is not a number of threads" in line, line
    assert len(line) < 150  # 5,000 digits are shortened


# ----------------------------------------------------------------------------
# closed standard streams: stdout carries only tokens, always

def test_stdin_closed_for_stdin_requests(make_model):
    done = shell(gpt_line("--model", make_model(), "--stdin") + " <&-")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "gpt: error: --stdin: standard input is closed\n"


@pytest.mark.parametrize("args,code", [(["1", "2"], 0), (["1", "x"], 2), (["--stdin"], 1)])
def test_stderr_closed_leaves_stdout_to_the_tokens(make_model, args, code):
    """With fd 2 closed, an error is said nowhere, never into the token stream."""
    model = make_model(confident=True)
    done = shell(gpt_line("--model", model, *args) + " 2>&-", input="x\n")  # a bad request for --stdin
    alone = cli("gpt", "--model", model, "1", "2").stdout
    expected = alone if code == 0 else "\n" if args == ["--stdin"] else ""  # --stdin: the empty answer
    assert done.returncode == code and done.stdout == expected, done.stdout


def test_chat_with_stderr_closed(make_model, tmp_path):
    """chat's gpt has no stderr either: its error line goes nowhere, chat's stdout stays
    text, and chat says the failure by its exit code."""
    done = shell(" ".join([*command("gpt-chat"), "--model", str(tmp_path / "missing.bin"), "--once", "hi"]) + " 2>&-")
    assert (done.returncode, done.stdout) == (1, "")


def test_a_file_opened_with_fds_closed_gets_none_of_their_numbers(make_model, tmp_path):
    """Started with fds 1 and 2 closed, a writer's output file must not become fd 1 or 2
    (where C code's prints would land in it): the model written is byte for byte the one
    a normal run writes."""
    out, reference = tmp_path / "a.bin", tmp_path / "b.bin"
    line = " ".join([*command("gpt-checkpoint"), "random", str(out), "--shape", "tiny"])
    assert shell(line + " >&- 2>&-").returncode == 0
    assert cli("gpt-checkpoint", "random", reference, "--shape", "tiny").returncode == 0
    assert out.read_bytes() == reference.read_bytes()


# ----------------------------------------------------------------------------
# signals that arrive while the command is already on its way out

def running(args, name="gpt"):
    proc = subprocess.Popen([*command(name), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stdout.readline().strip()  # generating
    return proc


@pytest.mark.parametrize("first,second", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGTERM),
                                          (signal.SIGHUP, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT)])
def test_a_second_signal_on_the_way_out_changes_nothing(make_model, first, second):
    """Two signals microseconds apart, many times over: the first decides the line and
    the code; the second, arriving while that line is said or during the interpreter's
    shutdown, is no traceback and no other death."""
    model = make_model(dataclass_replace(SMALL, max_seq_len=1024), confident=True)
    words = {signal.SIGINT: "interrupted", signal.SIGTERM: "stopped by SIGTERM", signal.SIGHUP: "stopped by SIGHUP"}
    for delay in (0, 0, 0, 0.0005, 0.002, 0.01):
        proc = running(["--model", model, "--backend", "serial", "-n", "1024", "1"])
        os.kill(proc.pid, first)
        time.sleep(delay)
        os.kill(proc.pid, second)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err.decode()) == (128 + first, f"gpt: {words[first]}\n"), (delay, err.decode())


def dataclass_replace(config, **changes):
    import dataclasses
    return dataclasses.replace(config, **changes)
