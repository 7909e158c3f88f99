"""Interactive speed on the 124M shape: a chat turn and `gpt --stdin`, whole processes as
a user runs them, against one whole `gpt 31373 612` and against generation alone (the
in-process gpt.c job of test_generation.py), all in the same run."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REQUEST = "31373 612\n"  # "hello there": what chat sends for that text


@pytest.fixture
def model_path(model_124M):
    return model_124M.path


def test_chat_turn(benchmark, record, model_path):
    """Enter to the completion's last character, in one piped gpt-chat session; the
    warm-up turn starts its gpt (model and kernels loaded once)."""
    chat = subprocess.Popen([str(BIN / "gpt-chat"), "--model", model_path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)

    def turn():
        chat.stdin.write("hello there\n")
        chat.stdin.flush()
        return chat.stdout.readline()

    benchmark.group = "interactive: 2 tokens in, 8 out"
    try:
        assert benchmark.pedantic(turn, rounds=15, warmup_rounds=1).strip()
    finally:
        chat.stdin.close()
        chat.wait(timeout=60)
    record("chat turn")


def test_chat_first_turn(benchmark, record, model_path):
    """A new gpt-chat process, its first turn and its end: what every turn cost before
    chat kept one gpt."""
    def session():
        done = subprocess.run([str(BIN / "gpt-chat"), "--model", model_path], input="hello there\n",
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    benchmark.group = "interactive: 2 tokens in, 8 out"
    benchmark.pedantic(session, rounds=5, warmup_rounds=1)
    record("chat first turn")


def test_gpt_stdin_20_requests(benchmark, record, model_path):
    """One gpt --stdin process, 20 requests, start to end."""
    def serve():
        done = subprocess.run([str(BIN / "gpt"), "--model", model_path, "--stdin"], input=20 * REQUEST,
                              capture_output=True, text=True)
        assert done.returncode == 0 and len(done.stdout.split()) == 160, done.stderr

    benchmark.group = "interactive: gpt --stdin, 20 requests"
    benchmark.pedantic(serve, rounds=3, warmup_rounds=1)
    record("stdin 20")


def run_gpt_64(model_path, copies):
    """`copies` gpt processes at once, each 2 tokens in and 62 out."""
    procs = [subprocess.Popen([str(BIN / "gpt"), "--model", model_path, "-n", "64", "31373", "612"],
                              stdout=subprocess.DEVNULL) for _ in range(copies)]
    assert all(p.wait() == 0 for p in procs)


@pytest.mark.parametrize("copies", [1, 2])
def test_gpt_processes_at_once(benchmark, record, model_path, copies):
    """Two gpt processes on the same cores (a chat beside a script): OpenMP workers that
    spin at barriers made this 30x slower than running them one after the other."""
    benchmark.group = "gpt processes at once, 62 tokens each"
    benchmark.pedantic(run_gpt_64, args=(model_path, copies), rounds=3, warmup_rounds=1)
    record(f"{copies} at once")
