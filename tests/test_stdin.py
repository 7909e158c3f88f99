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


# ----------------------------------------------------------------------------
# --max-new-tokens, and requests that continue the context ("+")

def test_max_new_tokens_answers_each_request_as_gpt_alone(gpt, make_model):
    """Prompts of every length up to the context's last position: N new tokens each, or
    as many as the context (32) leaves, as `gpt --max-new-tokens N` alone prints."""
    model = make_model(confident=True)
    prompts = [[17], list(range(1, 20)), list(range(1, 30)), list(range(1, 32))]
    stdin = "".join(" ".join(map(str, p)) + "\n" for p in prompts)
    result = gpt("--model", model, "--stdin", "--max-new-tokens", "5", input=stdin)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    answers = completions(result.stdout)
    assert [len(a) for a in answers] == [5, 5, 3, 1]
    assert answers[:3] == [alone(gpt, model, p, "--max-new-tokens", "5") for p in prompts[:3]]


@pytest.mark.parametrize("options", [["--max-new-tokens", "4"], ["--max-new-tokens", "4", "--recompute"],
                                     ["--max-new-tokens", "4", "--backend", "serial"], ["--max-new-tokens", "4", "--dtype", "int8"],
                                     ["--max-new-tokens", "4", "--seed", "3", "--temperature", "20"]])
def test_a_continued_context_answers_as_one_request_of_all_its_ids(gpt, make_model, options):
    """"+ ids" continues the last completion's context (its prompt and its answer): the
    answer is the one a single request of the whole context gets. A failed request
    between leaves the context as it was; "+" alone asks for more."""
    model = make_model(hesitant=True)
    requests = ["5 6 7", "+ 8 9", "+ 1 x", "+ 10", "+"]
    result = gpt("--model", model, "--stdin", *options, input="\n".join(requests) + "\n")
    answers = completions(result.stdout)
    assert result.returncode == 1 and answers[2] == [] and "'x' is not an integer" in result.stderr
    context = [5, 6, 7]
    for request, answer in zip(requests, answers):
        if request == "+ 1 x":
            continue
        if request != "5 6 7":
            context += [int(t) for t in request.removeprefix("+").split()]
        assert answer == alone(gpt, model, context, *options), request
        context += answer


def test_continuing_requests_are_checked_against_the_context_they_make(gpt, make_model):
    """The context (32 tokens) counts what a "+" request continues; -n counts it too; a
    "+" with nothing before starts a context of its own."""
    model = make_model(confident=True)
    twenty = " ".join(["3"] * 20)
    result = gpt("--model", model, "--stdin", "--max-new-tokens", "5",
                 input=f"+ 17\n{twenty}\n+ {' '.join(['4'] * 6)}\n+ {' '.join(['4'] * 7)}\n+ 99999999999\n+ -1\n++ 1\n")
    answers = completions(result.stdout)
    assert answers[0] == alone(gpt, model, [17], "--max-new-tokens", "5")
    assert len(answers[1]) == 5 and len(answers[2]) == 1  # 20 + 5 + 6 = 31: room for one
    assert answers[3:] == [[]] * 4
    errors = result.stderr.splitlines()
    # the context held 20 + 5 + 6 + 1: seven more make 39
    assert len(errors) == 4 and "39 tokens fill the model's context of 32" in errors[0], errors
    assert "out of range" in errors[1] and "negative" in errors[2] and "'+' is not an integer" in errors[3], errors
    result = gpt("--model", model, "--stdin", "-n", "8", input="1 2 3\n+ 4 5\n")
    assert completions(result.stdout)[1] == [] and "10 tokens: -n 8 takes at most 7" in result.stderr  # 3 + 5 + 2


def test_a_line_of_65536_bytes_is_taken_with_or_without_its_newline(gpt, make_model):
    model = make_model(confident=True)
    line = ("17 " + " " * 65531 + "31").encode()
    assert len(line) == 65536
    for ending in (b"\n", b""):
        result = gpt("--model", model, "--stdin", input=(line + ending).decode())
        assert result.returncode == 0 and result.stderr == "" and completions(result.stdout) == [
            alone(gpt, model, [17, 31])], result.stderr
    result = gpt("--model", model, "--stdin", input=(line + b"1\n").decode())
    assert result.returncode == 1 and "a request of over 65536 bytes" in result.stderr
