"""chat.py: GPT-2's encoding offline, and the conversation as a person has it, in a
real pseudo-terminal (pexpect), against small generated models with GPT-2's vocabulary."""

import dataclasses
import os
import socket
import subprocess
import sys
import time

import pexpect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptpy import chat
from gptpy.checkpoint import read_header
from conftest import ROOT, VOCAB_50257, gpt_command

CHAT = [sys.executable, str(ROOT / "chat.py")]
# a context long enough that a completion can be interrupted halfway (serial recomputes:
# each step slower than the last)
LONG = dataclasses.replace(VOCAB_50257, max_seq_len=1024, channels=32)


@pytest.fixture(scope="module")
def encoding():
    return chat.gpt2_encoding()


def test_gpt2_ids(encoding):
    assert encoding.encode("hello there") == [31373, 612]
    assert encoding.encode("Hello, I'm a language model,") == [15496, 11, 314, 1101, 257, 3303, 2746, 11]
    assert encoding.n_vocab == 50257


def test_encoding_is_built_without_the_network(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("the tokenizer tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: nothing to fall back on
    assert chat.gpt2_encoding().encode("hello there") == [31373, 612]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_round_trip(encoding, text):
    assert encoding.decode(encoding.encode(text, disallowed_special=())) == text


def test_a_character_split_across_tokens_waits_for_its_last_byte(encoding):
    text = "a🙂é"
    tokens = encoding.encode(text)
    assert any(b"\xf0" in encoding.decode_single_token_bytes(t) and len(encoding.decode_single_token_bytes(t)) < 4
               for t in tokens), "the emoji should span tokens"
    pieces = list(chat.decode_stream(encoding, tokens))
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    assert "" in pieces  # a token that ended mid-character printed nothing yet


def gpt_ids(model, ids, n=None, new=10, backend="parallel", options=()):
    """The ids `gpt` prints after these: gpt.c's n in total (the last n-1 ids), or `new`
    tokens after as many of the last ids as the model's context leaves room for."""
    if n is not None:
        ids, length = ids[-(n - 1):], ["-n", str(n)]
    else:
        ids, length = ids[-(read_header(model)[1].max_seq_len - new):], ["--max-new-tokens", str(new)]
    done = subprocess.run([*gpt_command(), "--model", str(model), *length, "--backend", backend, *options,
                           *map(str, ids)], capture_output=True, text=True, check=True)
    return [int(t) for t in done.stdout.split()]


def gpt_then_decode(encoding, model, text, n=None, new=10, backend="parallel", options=()):
    """What `gpt` prints for the text's ids, decoded: what chat must show."""
    return encoding.decode(gpt_ids(model, encoding.encode(text), n, new, backend, options))


def test_once_prints_what_gpt_and_decode_give(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    done = subprocess.run([*CHAT, "--model", str(model), "--once", "hello there"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == gpt_then_decode(encoding, model, "hello there") + "\n"


def test_piped_lines_are_prompts(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    long = "The quick brown fox jumps over the lazy dog and keeps running"
    lines = ["hello there", "", long, " ".join(6 * [long])]
    done = subprocess.run([*CHAT, "--model", str(model), "--backend", "serial", "--threads", "1"],
                          input="\n".join(lines) + "\n", capture_output=True, text=True)
    assert done.returncode == 0
    expected = [gpt_then_decode(encoding, model, line) for line in lines if line]
    assert done.stdout == "".join(text + "\n" for text in expected)
    # the longest line (72 tokens) kept the 54 that leave room for 10 new ones in a
    # context of 64, and said so in one line
    assert done.stderr.strip().splitlines() == [
        "(the text is 72 tokens; the model's context of 64 leaves room for 54 before 10 new ones: keeping the last 54)"]
    assert gpts_of(model) == ""  # the end of input ended chat's gpt too


def test_n_passes_through(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    done = subprocess.run([*CHAT, "--model", str(model), "-n", "4", "--once", "hello there"], capture_output=True, text=True)
    assert done.stdout == gpt_then_decode(encoding, model, "hello there", n=4) + "\n"
    done = subprocess.run([*CHAT, "--model", str(model), "--max-new-tokens", "3", "--once", "hello there"],
                          capture_output=True, text=True)
    assert done.stdout == gpt_then_decode(encoding, model, "hello there", new=3) + "\n"


@pytest.mark.parametrize("args,message", [
    (["-n", "4", "--max-new-tokens", "3"], "give --max-new-tokens (new tokens) or -n"),
    (["-n", "4", "--conversation"], "--conversation counts new tokens: give --max-new-tokens, not -n"),
    (["--max-new-tokens", "0"], "argument --max-new-tokens: must be at least 1, not 0"),
])
def test_bad_lengths(make_model, args, message):
    done = subprocess.run([*CHAT, "--model", str(make_model(VOCAB_50257)), *args, "--once", "hi"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == "" and message in done.stderr
    assert len(done.stderr.splitlines()) == 1


SENTENCE = "The meaning of life, according to most philosophers, is that we"  # 13 tokens


def test_a_sentence_gets_ten_new_tokens(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    ids = encoding.encode(SENTENCE)
    answer = gpt_ids(model, ids)
    assert len(ids) == 13 and len(answer) == 10
    child = spawn("--model", model)
    child.sendline(SENTENCE)
    child.expect_exact(SENTENCE + "\r\n" + encoding.decode(answer).replace("\n", "\r\n") + "\r\n> ")
    child.sendeof()
    child.expect(pexpect.EOF)


def test_a_conversation_turn_sees_the_turns_before(encoding, make_model):
    """--conversation: the second line's answer is the one gpt gives the first line's ids,
    its answer's and the second line's, all in one request; one gpt, which kept the
    first turn in its cache, answered both."""
    model = make_model(VOCAB_50257, confident=True)
    first, second = encoding.encode("hello there"), encoding.encode(" how are you?")
    first_answer = gpt_ids(model, first)
    second_answer = gpt_ids(model, first + first_answer + second)
    assert second_answer != gpt_ids(model, second)  # the first turn makes a difference
    child = spawn("--model", model, "--conversation")
    child.sendline("hello there")
    child.expect_exact(encoding.decode(first_answer).replace("\n", "\r\n") + "\r\n> ")
    pid = gpts_of(model)
    child.sendline(" how are you?")
    child.expect_exact(encoding.decode(second_answer).replace("\n", "\r\n") + "\r\n> ")
    assert pid and gpts_of(model) == pid
    child.sendeof()
    child.expect(pexpect.EOF)


def test_a_conversation_past_the_context_keeps_its_newest_half(encoding, make_model):
    """Each line's answer is gpt's to the conversation so far; where the conversation
    and 10 new tokens would pass the context (64), its newest 27 tokens, or the line if
    longer, are kept, said in one line, and computed once more."""
    model = make_model(VOCAB_50257, confident=True)
    lines = ["hello there my friend", "how are you doing today", "I am fine, thanks", "what about the weather",
             "it is raining again here", "ok, bye then", " ".join(["again"] * 40)]
    done = subprocess.run([*CHAT, "--model", str(model), "--conversation"], input="\n".join(lines) + "\n",
                          capture_output=True, text=True)
    assert done.returncode == 0
    said, expected, drops = [], [], []
    for line in lines:
        context = said + encoding.encode(line)
        if len(context) > 54:
            keep = max(27, len(encoding.encode(line)))
            drops.append(f"(the conversation passes the model's context of 64 tokens: dropping its oldest "
                         f"{len(context) - keep})")
            context = context[-keep:]
        answer = gpt_ids(model, context)
        expected.append(encoding.decode(answer) + "\n")
        said = context + answer
    assert len(drops) >= 2 and done.stderr.splitlines() == drops
    assert done.stdout == "".join(expected)


def test_turns_keep_an_interrupted_answer_in_the_conversation():
    """Ctrl-C ends gpt mid-answer: the tokens already shown stay in the conversation, and
    the next turn sends it whole to a new gpt (nothing is held)."""
    turns, gpt = chat.Turns(64, new=10, conversation=True), chat.Gpt([], [])
    assert turns.prompt([1, 2], gpt) == ([1, 2], False)
    turns.answered([1, 2], False, gpt, [7, 8, 9], True)
    assert turns.prompt([3], gpt) == ([3], True)  # gpt holds 1 2 7 8 9
    turns.answered([3], True, gpt, [5], False)  # interrupted after one token
    assert turns.said == [1, 2, 7, 8, 9, 3, 5] and gpt.held is None
    assert turns.prompt([4], gpt) == ([1, 2, 7, 8, 9, 3, 5, 4], False)
    turns.answered([1, 2, 7, 8, 9, 3, 5, 4], False, gpt, [], True)  # gpt refused it: nothing changes
    assert turns.said == [1, 2, 7, 8, 9, 3, 5]


def test_gpt_error_is_its_one_line(tmp_path):
    done = subprocess.run([*CHAT, "--model", str(tmp_path / "missing.bin"), "--once", "hi"], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"gpt: error: {tmp_path / 'missing.bin'}: no such model file; "
                                        "`make model` downloads GPT-2 124M, or pass --model PATH"]


# ----------------------------------------------------------------------------
# a person at a terminal

def spawn(*args):
    child = pexpect.spawn(CHAT[0], [*CHAT[1:], *map(str, args)], encoding="utf-8", timeout=60,
                          dimensions=(24, 200), env={**os.environ, "TERM": "dumb"})
    child.expect_exact("> ")
    return child


def test_conversation(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    child = spawn("--model", model)
    child.sendline("hello there")
    child.expect_exact(gpt_then_decode(encoding, model, "hello there").replace("\n", "\r\n"))
    child.expect_exact("\r\n> ")
    child.sendline("")  # an empty line re-prompts
    child.expect_exact("> ")
    child.sendline("Hello, I'm a language model,")
    child.expect_exact(gpt_then_decode(encoding, model, "Hello, I'm a language model,").replace("\n", "\r\n"))
    child.expect_exact("\r\n> ")
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_c_stops_a_completion_and_leaves_no_gpt(make_model):
    model = make_model(LONG, confident=True)
    child = spawn("--model", model, "--backend", "serial", "-n", "1024")
    child.sendline("hello there")
    child.expect(r"hello there\r\n.")  # the completion has begun
    assert gpts_of(model), "no gpt process found: the pattern must match chat's gpt"
    child.sendintr()
    child.expect_exact("\r\n> ")  # back at the prompt
    assert gpts_of(model) == "", "a gpt process was left running"
    child.sendintr()  # Ctrl-C at the prompt exits, quietly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 and "interrupted" not in child.before


def gpts_of(model):
    """The gpt processes chat runs for this model (its command line: gpt.py --stdin ... --model=M)."""
    return subprocess.run(["pgrep", "-f", f"gpt.py --stdin .*--model={model}"], capture_output=True, text=True).stdout


def test_arrow_up_recalls_the_last_line(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    expected = gpt_then_decode(encoding, model, "hello there").replace("\n", "\r\n")
    child = spawn("--model", model)
    child.sendline("hello there")
    child.expect_exact(expected)
    child.expect_exact("\r\n> ")
    child.send("\x1b[A")  # the up arrow
    child.sendline("")
    child.expect_exact(expected)  # the same prompt again, from the history
    child.expect_exact("\r\n> ")
    child.sendeof()
    child.expect(pexpect.EOF)


def test_an_error_shows_its_line_and_the_prompt_comes_back(tmp_path):
    """... and the session, which had a completion fail, exits 1 at its end."""
    child = spawn("--model", tmp_path / "missing.bin")
    child.sendline("hi")
    child.expect_exact("no such model file")
    child.expect_exact("> ")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1


@pytest.mark.parametrize("args,stdin", [(["--once", ""], None), (["--once", "hello"], None), ([], "hello\n"),
                                        ([], "hello there\n\u00e9t\u00e9\n")])
def test_a_completion_gpt_refuses_fails_chat(make_model, args, stdin):
    """A text gpt refuses (no ids; ids beyond a small vocabulary) is said in gpt's line,
    and chat exits 1, not 0."""
    model = make_model()  # a vocabulary of 101: GPT-2's ids are out of its range
    done = subprocess.run([*CHAT, "--model", str(model), *args], input=stdin, capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("gpt: error: "), done.stderr
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------
# one gpt per session

def test_one_gpt_serves_the_whole_session(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    child = spawn("--model", model)
    pids = []
    for text in ("hello there", "Hello, I'm a language model,", "hello there"):
        child.sendline(text)
        child.expect_exact(gpt_then_decode(encoding, model, text).replace("\n", "\r\n"))
        child.expect_exact("\r\n> ")
        pids.append(gpts_of(model))
    assert pids[0] and len(set(pids)) == 1, pids  # the same process answered every turn
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and gpts_of(model) == ""  # and it ended with chat


def test_after_ctrl_c_the_next_answer_has_nothing_of_the_last(encoding, make_model):
    model = make_model(LONG, confident=True)
    # first: two gpt processes at once on two cores spin at each other's barriers (OpenMP)
    expected = gpt_then_decode(encoding, model, "The quick brown fox", n=200)
    child = spawn("--model", model, "-n", "200")  # long enough to interrupt, short enough for pexpect
    child.sendline("hello there")
    child.expect(r"hello there\r\n.")
    child.sendintr()
    child.expect_exact("\r\n> ")
    child.sendline("The quick brown fox")
    child.expect_exact("\r\n> ", timeout=120)  # then compare: pexpect is slow to find a long string
    assert child.before.endswith("The quick brown fox\r\n" + expected.replace("\n", "\r\n"))
    child.sendeof()
    child.expect(pexpect.EOF)


def test_a_gpt_that_died_between_prompts_is_replaced(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    child = spawn("--model", model)
    child.sendline("hello there")
    child.expect_exact("\r\n> ")
    subprocess.run(["pkill", "-KILL", "-f", f"gpt.py --stdin .*--model={model}"], check=True)
    child.sendline("hello there")
    child.expect_exact("gpt-chat: gpt had ended (by SIGKILL); starting another")
    child.expect_exact(gpt_then_decode(encoding, model, "hello there").replace("\n", "\r\n") + "\r\n> ")
    child.sendeof()
    child.expect(pexpect.EOF)


def test_sampling_options_pass_through(encoding, make_model):
    model = make_model(VOCAB_50257, confident=True)
    options = ["--temperature", "20", "--top-k", "40", "--top-p", "0.9", "--seed", "4"]
    done = subprocess.run([*CHAT, "--model", str(model), *options], input="hello there\nhello there\n",
                          capture_output=True, text=True)
    expected = gpt_then_decode(encoding, model, "hello there", options=options)
    assert done.returncode == 0 and done.stdout == 2 * (expected + "\n")  # a seed: each prompt as gpt alone


def test_gpt_dies_with_chat(make_model):
    """SIGKILL to chat gives it no chance to clean up: the kernel ends its gpt (PDEATHSIG)."""
    model = make_model(VOCAB_50257, confident=True)
    proc = subprocess.Popen([*CHAT, "--model", str(model)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    proc.stdin.write(b"hello there\n")
    proc.stdin.flush()
    proc.stdout.readline()  # answered: its gpt is up and idle
    assert gpts_of(model)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while gpts_of(model) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gpts_of(model) == ""


def test_dtype_passes_through(encoding, make_model):
    """chat --dtype int8 answers what gpt --dtype int8 prints; at a high temperature, a
    seeded draw tells int8's distribution from fp32's."""
    model = make_model(VOCAB_50257, confident=True)
    sampling = ["--temperature", "20", "--seed", "4"]
    done = subprocess.run([*CHAT, "--model", str(model), "--dtype", "int8", *sampling, "--once", "hello there"],
                          capture_output=True, text=True)
    expected = gpt_then_decode(encoding, model, "hello there", options=["--dtype", "int8", *sampling])
    assert done.returncode == 0 and done.stdout == expected + "\n", done.stderr
    assert expected != gpt_then_decode(encoding, model, "hello there", options=["--dtype", "fp32", *sampling])


def test_ctrl_c_in_a_conversation_and_the_next_turn(encoding, make_model):
    """In a terminal: Ctrl-C mid-answer, and the next line is answered (by a new gpt, the
    conversation sent whole) with the first line and the shown part of its answer before
    it: not what the line alone gets."""
    model = make_model(LONG, confident=True)
    alone = encoding.decode(gpt_ids(model, encoding.encode("The quick brown fox"), new=40))
    child = spawn("--model", model, "--backend", "serial", "--conversation", "--max-new-tokens", "40")
    child.sendline("hello there")
    child.expect(r"hello there\r\n.")
    child.sendintr()
    child.expect_exact("\r\n> ")
    child.sendline("The quick brown fox")
    child.expect_exact("The quick brown fox\r\n")
    child.expect_exact("\r\n> ", timeout=120)
    answer = child.before.replace("\r\n", "\n")
    assert answer and answer != alone and "error" not in answer
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
