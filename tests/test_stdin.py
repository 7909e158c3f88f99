"""`gpt --stdin`: one process, many requests, each answered as `gpt TOKENS` answers it."""

import select
import subprocess

import pytest

from conftest import gpt_command, one_error_line


def completions(stdout):
    """The answers on stdout: each the ids one per line, ended by an empty line."""
    assert stdout == "" or stdout.endswith("\n"), repr(stdout)
    answers, current = [], []
    for line in stdout.splitlines():
        if line == "":
            answers.append(current)
            current = []
        else:
            current.append(int(line))
    assert current == [], repr(stdout)
    return answers


def alone(gpt, model, prompt, *options):
    result = gpt("--model", model, *options, *prompt)
    assert result.returncode == 0, result.stderr
    return [int(t) for t in result.stdout.split()]


PROMPTS = [[17], [5, 100, 0, 42, 42, 3, 99, 1, 64], [31, 61]]


@pytest.mark.parametrize("options", [[], ["--recompute"], ["--backend", "serial"], ["-n", "6"],
                                     ["--seed", "3", "--temperature", "20", "--top-k", "50", "--top-p", "0.95"]])
def test_each_request_is_answered_as_gpt_answers_it(gpt, make_model, options):
    model = make_model(confident=True)
    prompts = [p for p in PROMPTS if len(p) < (6 if "-n" in options else 10)]
    stdin = "".join(" ".join(map(str, p)) + "\n" for p in prompts)
    result = gpt("--model", model, "--stdin", *options, input=stdin)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert completions(result.stdout) == [alone(gpt, model, p, *options) for p in prompts]


def test_bad_requests_get_one_line_each_and_the_process_goes_on(gpt, make_model):
    model = make_model(confident=True)
    requests = [b"17", b"", b"1 x 2", b"1 101", b"1 " + b"9" * 5000, b"-4", b"1 \xff 2",
                b" ".join([b"1"] * 10), b"7 " * 40000, b"31 61"]
    result = gpt("--model", model, "--stdin", input=b"\n".join(requests).decode("latin-1") + "\n")
    answers = completions(result.stdout)
    assert result.returncode == 1 and len(answers) == len(requests)
    assert answers[0] == alone(gpt, model, [17]) and answers[-1] == alone(gpt, model, [31, 61])
    assert all(a == [] for a in answers[1:-1])
    errors = result.stderr.splitlines()
    assert len(errors) == len(requests) - 2 and all(e.startswith("gpt: error: ") for e in errors), errors
    for message in ("no token ids", "'x' is not an integer", "token 101 is out of range", "token 99999",
                    "-4 is negative", "is not an integer", "10 tokens: -n 10 takes at most 9", "of over 65536 bytes"):
        assert any(message in e for e in errors), (message, errors)


def test_the_last_line_needs_no_newline(gpt, make_model):
    model = make_model(confident=True)
    result = gpt("--model", model, "--stdin", input="17\n31 61")
    assert completions(result.stdout) == [alone(gpt, model, [17]), alone(gpt, model, [31, 61])]


def test_answers_come_before_the_next_request(make_model):
    """An interactive client: each answer arrives, flushed, while stdin stays open."""
    # unbuffered: a buffered reader may hold lines that select() on the pipe cannot see
    proc = subprocess.Popen([*gpt_command(), "--model", str(make_model(confident=True)), "--stdin"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        for prompt in PROMPTS:
            proc.stdin.write((" ".join(map(str, prompt)) + "\n").encode())
            proc.stdin.flush()
            lines = []
            while not lines or lines[-1] != b"\n":
                assert select.select([proc.stdout], [], [], 60)[0], "no answer within 60 s"
                lines.append(proc.stdout.readline())
            assert len(lines) == 10 - len(prompt) + 1
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_stdin_and_tokens_together_is_a_usage_error(gpt, make_model):
    assert "--stdin reads the token ids from standard input" in one_error_line(
        gpt("--model", make_model(), "--stdin", "1", "2", input=""), 2)


def test_no_requests(gpt, make_model):
    result = gpt("--model", make_model(), "--stdin", input="")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_full_stdout_ends_gpt_in_one_line(make_model):
    """A bad request is said and served empty; stdout that cannot be written ends gpt."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([*gpt_command(), "--model", str(make_model()), "--stdin"], input="1 2\nx\n3\n",
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (1, "gpt: error: cannot write to standard output: No space left on device\n")
