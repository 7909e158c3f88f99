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

    benchmark.group = "interactive: 2 tokens in, 10 out"
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

    benchmark.group = "interactive: 2 tokens in, 10 out"
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


def test_conversation_turn_after_900_tokens(benchmark, model_path):
    """A turn of 10 tokens in and 10 out (gpt --stdin --max-new-tokens 10, what chat
    --conversation sends) with no history, after 900 tokens of history kept in the KV
    cache (a "+" request), and after the same history recomputed (one request of all
    910): medians of interleaved requests to one resident gpt. The cached turn pays its
    own tokens and attention over the longer cache; the recomputed one the history."""
    import statistics
    import time
    gpt = subprocess.Popen([str(BIN / "gpt"), "--model", model_path, "--stdin", "--max-new-tokens", "10"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    turn = " ".join(str(1000 + i) for i in range(10))
    history = " ".join(str(i % 50000 + 100) for i in range(890))

    def ask(line):
        start = time.perf_counter()
        gpt.stdin.write(line + "\n")
        gpt.stdin.flush()
        answer = [gpt.stdout.readline() for _ in range(11)]
        assert answer[-1] == "\n" and all(a.strip() for a in answer[:-1]), answer
        return time.perf_counter() - start

    times = {"no history": [], "900 cached": [], "900 recomputed": []}

    def rounds():
        times["no history"].append(ask(turn))
        ask(history)  # 890 + its 10 answered: 900 tokens of history, in the cache
        times["900 cached"].append(ask("+ " + turn))
        times["900 recomputed"].append(ask(history + " " + turn))

    benchmark.group = "interactive: a conversation's turn, 10 in, 10 out"
    try:
        rounds()  # the warm-up: kernels loaded, every length compiled
        for name in times:
            times[name].clear()
        benchmark.pedantic(rounds, rounds=5)
    finally:
        gpt.stdin.close()
        gpt.wait(timeout=60)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    for name, seconds in medians.items():
        benchmark.extra_info[f"{name} ms"] = round(1e3 * seconds, 1)
    print(f"\na conversation's turn (10 in, 10 out): no history {1e3 * medians['no history']:.0f} ms, "
          f"after 900 cached tokens {1e3 * medians['900 cached']:.0f} ms "
          f"({medians['900 cached'] / medians['no history']:.2f}x), the 900 recomputed "
          f"{1e3 * medians['900 recomputed']:.0f} ms ({medians['900 recomputed'] / medians['no history']:.2f}x)")
