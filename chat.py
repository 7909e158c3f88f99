"""chat: type text, read GPT-2's continuation.

    python chat.py [--model PATH] [--max-new-tokens N] [--conversation] [--temperature T ...]
    > hello there
    <the completion, streamed as gpt samples it>

Text is encoded with GPT-2's BPE (tiktoken), one `gpt --stdin` process per session
completes the ids with N new tokens (10 unless --max-new-tokens says otherwise; the text
is cut to its last tokens only where it and its answer would pass the model's context),
and its token ids are decoded back to text as they arrive. `-n N` asks for gpt.c's
contract instead: N tokens in total, the text's last N-1 at most. With --conversation
the context is everything said so far, the lines and the answers, and gpt keeps it in
its KV cache: a turn costs its own tokens. The model and the kernels load once, at the
first prompt. Ctrl-C stops a completion (its gpt is ended, and the next prompt starts
another; in a conversation the tokens already shown stay in it), Ctrl-C at the prompt
or Ctrl-D exits. `--once TEXT` completes one text; when stdin is not a terminal, each
line is a prompt.
"""

import codecs
import signal
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python chat.py` in a checkout
    from _checkout import run_as_package
    sys.exit(run_as_package("chat"))

from . import cli  # noqa: E402  (after the checkout's bootstrap above)
from .encoding import GPT2_VOCAB, gpt2_encoding  # noqa: E402,F401
from .errors import Failure  # noqa: E402

GPT = [sys.executable, str(Path(__file__).resolve().with_name("gpt.py"))]
def decode_stream(encoding, tokens):
    """Yields the text of each token as it comes; a token that ends inside a multi-byte
    character yields "" and its bytes wait for the next one's."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in tokens:
        if not 0 <= token < encoding.n_vocab:
            raise Failure(f"gpt printed token {token}, which GPT-2's encoding does not have")
        yield decoder.decode(encoding.decode_single_token_bytes(token))
    yield decoder.decode(b"", final=True)


class Gpt:
    """One `gpt --stdin` for the session, started when first needed: a request is a line
    of ids, its answer the new ids one per line and an empty line. gpt's own error lines
    reach chat's stderr as they are. Whatever way chat ends, its gpt ends too: chat
    closes gpt's input (or kills it), and the kernel kills it if chat dies first."""

    def __init__(self, options, length):
        self.command = [*GPT, "--stdin", *length, *options]
        self.proc = None
        self.busy = False  # a request sent whose answer has not been read to its end
        self.held = None  # the context this gpt holds from its last completion (its ids), if known

    def complete(self, ids, more=False):
        """Yields the completion's ids as gpt prints them; raises GptEnded if gpt ends
        before the completion does. `more`: the ids continue the context gpt holds."""
        if self.proc is not None and self.proc.poll() is not None:  # it ended between prompts
            cli.say(f"gpt-chat: gpt had ended ({ended(self.end())}); starting another")
        if self.proc is None:
            # its own session: Ctrl-C reaches chat only, which then ends gpt itself
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.busy = True
        try:
            self.proc.stdin.write(("+ " * more + " ".join(map(str, ids)) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # gpt has ended: its stdout says so below
        while (line := self.proc.stdout.readline()) not in (b"\n", b""):
            yield int(line)
        if line == b"":
            raise GptEnded(self.end())
        self.busy = False

    def end(self):
        """Ends gpt (if it still runs): its exit code, negative for a signal."""
        proc, self.proc, self.busy, self.held = self.proc, None, False, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:  # a request gpt never read
                pass
        return code

    def close(self):
        """At chat's end: an idle gpt finishes on the end of its input; one still
        answering (chat stopped mid-completion) is ended at once."""
        if self.proc is not None and not self.busy:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.end()


def ended(code):
    """How a process ended, in words: 'by SIGKILL', 'with exit code 1'."""
    return f"by {signal.Signals(-code).name}" if code < 0 else f"with exit code {code}"


class GptEnded(Exception):
    """gpt ended mid-request; the exit code."""

    def __init__(self, code):
        super().__init__(code)
        self.code = code


def _die_with_parent():
    """In gpt's process, before it starts: the kernel sends SIGKILL when chat dies (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Turns:
    """What each line sends gpt. `total`: gpt.c's n tokens in total, the text's last n-1
    at most; otherwise `new` tokens after the text, which is cut only where it and its
    answer would pass the model's `context`. With `conversation`, the ids said so far
    (`said`: the lines' and the answers', each line's ids right after the last answer's)
    come before the text; when they would pass the context the oldest are dropped, and
    gpt computes the rest once more."""

    def __init__(self, context, total=None, new=10, conversation=False):
        self.context, self.total, self.new, self.conversation = context, total, new, conversation
        self.said = []

    def prompt(self, ids, gpt):
        """(the ids to send, whether they continue the context gpt holds)."""
        if self.total is not None:
            if len(ids) > self.total - 1:
                cli.say(f"(the text is {len(ids)} tokens; gpt takes at most {self.total - 1}: "
                        f"keeping the last {self.total - 1})")
                ids = ids[-(self.total - 1):]
            return ids, False
        room = self.context - min(self.new, self.context - 1)  # the tokens a prompt may have
        if not self.conversation:
            if len(ids) > room:
                cli.say(f"(the text is {len(ids)} tokens; the model's context of {self.context} leaves room "
                        f"for {room} before {self.context - room} new ones: keeping the last {room})")
                ids = ids[-room:]
            return ids, False
        context = self.said + ids
        if len(context) > room:  # keep the newest half, so that the next turns have room again
            keep = max(room // 2, min(len(ids), room))
            cli.say(f"(the conversation passes the model's context of {self.context} tokens: "
                    f"dropping its oldest {len(context) - keep})")
            return context[-keep:], False
        if gpt.held is not None and gpt.held == self.said:
            return ids, True
        return context, False

    def answered(self, sent, more, gpt, answer, whole):
        """A completion of `sent` gave `answer` (`whole`: to its end, gpt still running)."""
        if not self.conversation or not answer:  # no answer: gpt refused the request, its context as it was
            return
        self.said = (self.said if more else []) + sent + answer
        gpt.held = self.said if whole else None


def complete(encoding, text, gpt, turns):
    """Streams the completion of `text` to stdout; returns 0, 1 if gpt failed (it says
    why on stderr itself), or 130 if interrupted."""
    ids, more = turns.prompt(encoding.encode(text, disallowed_special=()), gpt)  # "<|endoftext|>" typed is text
    answer, code = [], 0

    def received():
        for token in gpt.complete(ids, more):
            answer.append(token)
            yield token

    try:
        for piece in decode_stream(encoding, received()):
            cli.out(piece)
    except KeyboardInterrupt:  # the completion is abandoned: a new gpt keeps the protocol in step
        cli.signal_handled()
        gpt.end()
        code = 130
    except GptEnded as e:
        code = 1
        if e.code < 0:  # a signal: gpt said nothing itself
            turns.answered(ids, more, gpt, answer, False)
            if answer:
                cli.out("\n")
            cli.say(f"gpt-chat: error: gpt was ended {ended(e.code)} mid-completion")
            return 1
    if not answer and code == 0:  # gpt refused the request (its line says why): a completion failed
        code = 1
    turns.answered(ids, more, gpt, answer, code == 0)
    if answer or code == 130:
        cli.out("\n")
    return code


def model_config(model):
    """The model's GPT2Config, or None if its header cannot be read (gpt says why, in its
    own line, at the first prompt). Refuses, at start, a model whose ids GPT-2's
    encoding cannot decode."""
    from .checkpoint import CheckpointError, read_header
    try:
        _, config = read_header(model)
    except CheckpointError:
        return None
    if config.vocab_size > GPT2_VOCAB:
        raise Failure(f"{model}: a vocabulary of {config.vocab_size} tokens; chat decodes with "
                      f"GPT-2's encoding, which has {GPT2_VOCAB}")
    return config


def parse_args(argv):
    parser = cli.ArgumentParser(prog="gpt-chat", description="Type text, read GPT-2's continuation "
                                     "(the gpt CLI completes it; tiktoken encodes and decodes).")
    parser.add_argument("--max-new-tokens", type=cli.integer(1, 2**31 - 1), metavar="N",
                        help="new tokens after each text (default: 10), within the model's context")
    parser.add_argument("-n", type=cli.integer(2, 2**31 - 1), metavar="N",
                        help="instead: gpt.c's N tokens in total, the text's last N-1 at most")
    parser.add_argument("--conversation", action="store_true",
                        help="keep everything said so far, the lines and the answers, as the context of "
                             "the next line (in gpt's KV cache: a turn costs its own tokens)")
    parser.add_argument("--once", metavar="TEXT", help="complete TEXT, print the completion and exit")
    passed_on = cli.add_generation_options(parser, whose="gpt's ")
    args = parser.parse_args(argv)
    if args.n is not None and args.max_new_tokens is not None:
        parser.error("give --max-new-tokens (new tokens) or -n (tokens in total, as gpt.c), not both")
    if args.n is not None and args.conversation:
        parser.error("--conversation counts new tokens: give --max-new-tokens, not -n")
    options = [f"--{name.replace('_', '-')}={value}" for name in passed_on  # to gpt as they are
               if (value := getattr(args, name)) is not None]
    return args, options


def run(argv):
    args, options = parse_args(argv)
    config = model_config(args.model)
    cli.flush_stdout()  # stdout closed or full: say so before the first prompt
    for stream in (sys.stdin, sys.stdout):  # bytes the locale cannot decode or encode: U+FFFD / "?"
        if stream is not None:
            stream.reconfigure(errors="replace")
    encoding = gpt2_encoding()
    new = args.max_new_tokens or 10
    gpt = Gpt(options, ["-n", str(args.n)] if args.n else ["--max-new-tokens", str(new)])
    turns = Turns(config.max_seq_len if config else 1024, args.n, new, args.conversation)
    try:
        if args.once is not None:
            return complete(encoding, args.once, gpt, turns)
        return converse(encoding, gpt, turns)
    finally:
        gpt.close()


def converse(encoding, gpt, turns):
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (input() then keeps a history on the arrow keys)
    status = 0  # non-zero if any completion failed
    while True:
        try:
            text = input("> ") if interactive else sys.stdin.readline() if sys.stdin else ""
        except EOFError:  # Ctrl-D
            cli.out("\n")
            return status
        except KeyboardInterrupt:  # Ctrl-C at the prompt
            cli.out("\n")
            return 130
        if not interactive and text == "":  # the end of piped input
            return status
        text = text.rstrip("\n")
        if text.strip():
            code = complete(encoding, text, gpt, turns)
            status = status or (code if code != 130 else 0)  # a completion stopped by Ctrl-C did not fail


main = cli.command("gpt-chat", run)
