"""gpt: complete a sequence of GPT-2 token ids, as gpt.c does.

    gpt 31373 612          # "hello there" -> 8 more token ids, one per line

n = 10 tokens in total, the input included. Each step samples the next token from the
last position's distribution with gpt.c's fixed coin of 0.5. gpt.c runs the forward pass
over all the tokens so far every step (--recompute, and always the serial backend); by
default the prompt runs once and each step runs only its new position against a KV
cache: the same tokens. Tokens go to stdout as they come; everything else to stderr.

The command line only: the model, its generation loop and the sampler are model.py's
and sampler.py's. numpy and numba are imported inside run(), after cli.command() has
taken over Ctrl-C and SIGTERM.
"""

import os
import sys

if __name__ == "__main__" and not __package__:  # `python gpt.py` in a checkout
    from _checkout import run_as_package
    sys.exit(run_as_package("gpt"))

from . import cli  # noqa: E402  (after the checkout's bootstrap above)

DEFAULT_MODEL = "gpt2_124M.bin"


def parse_args(argv):
    parser = cli.ArgumentParser(
        prog="gpt",
        description="Complete a sequence of GPT-2 token ids to N tokens in total, as gpt.c does: "
                    "one new token id per line on stdout.",
        epilog="exit codes: 0 done; 1 gpt.c's two errors, or a bad model file or an unwritable stdout; "
               "2 a bad argument; 130 Ctrl-C, 143 SIGTERM; 141 stdout's reader left. "
               "example: gpt 31373 612   (\"hello there\"; chat.py takes text instead)")
    parser.add_argument("tokens", nargs="*", metavar="TOKEN", help="GPT-2 token ids, 0 <= id < vocab size")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="PATH",
                        help=f"llm.c checkpoint, version 1, 3 or 5 (default: {DEFAULT_MODEL})")
    parser.add_argument("-n", type=cli.integer(1, 2**31 - 1), default=10, metavar="N",
                        help="tokens in total, the input included (default: 10, as gpt.c)")
    parser.add_argument("--backend", choices=list(cli.BACKENDS), default="parallel",
                        help="kernels to run: parallel (default); serial, llm.c's reference, "
                             "which always recomputes as gpt.c does; cuda, on an NVIDIA GPU")
    parser.add_argument("--threads", type=cli.threads_type(), default=os.cpu_count(), metavar="K",
                        help=f"parallel backend: a static pool of K workers, 1 to {cli.max_threads()} "
                             f"(4 per core; default: the {os.cpu_count()} cores)")
    parser.add_argument("--recompute", action="store_true",
                        help="run the whole prefix every step, as gpt.c does, instead of using a KV cache")
    parser.add_argument("--profile", action="store_true",
                        help="print the time spent in each kernel on stderr at the end")
    return parser, parser.parse_args(argv)


def parse_token(parser, text):
    """A token id as an int, or float('inf') for one too long to be an id of any model."""
    digits = text.removeprefix("-")
    if not (digits.isdecimal() and digits.isascii()):
        parser.error(f"token {cli.shorten(text)!r} is not an integer")
    if text.startswith("-"):
        parser.error(f"token {cli.shorten(text)} is negative; token ids are 0 or more")
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else float("inf")


def run(argv):
    parser, args = parse_args(argv)
    # gpt.c's own checks and messages, kept exactly
    if not args.tokens:
        print("Provide at least one token.", file=sys.stderr)
        return 1
    if len(args.tokens) > args.n - 1:
        print("Too many tokens.", file=sys.stderr)
        return 1
    tokens = [parse_token(parser, text) for text in args.tokens]
    cli.flush_stdout()  # stdout closed or full: say so before the model is loaded

    from .checkpoint import MissingCheckpoint, load_checkpoint
    try:
        checkpoint = load_checkpoint(args.model)
    except MissingCheckpoint as e:
        raise cli.Failure(f"{e}; `make model` downloads GPT-2 124M, or pass --model PATH") from None
    config = checkpoint.config
    for token, text in zip(tokens, args.tokens):
        if token >= config.vocab_size:
            parser.error(f"token {cli.shorten(text)} is out of range: {args.model} has a vocabulary of "
                         f"{config.vocab_size} (ids 0..{config.vocab_size - 1})")
    if args.n > config.max_seq_len:
        parser.error(f"-n {args.n} is beyond the model's context of {config.max_seq_len} tokens")

    from .model import ProfiledKernels, generate, load_backend
    try:
        kernels = load_backend(args.backend, args.threads)
    except ValueError as e:  # no GPU, or more threads than numba allows
        raise cli.Failure(str(e), code=2) from None
    if args.profile:
        kernels = ProfiledKernels(kernels)
    recompute = args.recompute or args.backend == "serial"
    for token in generate(kernels, checkpoint, tokens, args.n, recompute):
        cli.out(f"{token}\n")  # flushed: callers read tokens as they come
    if args.profile:
        print(kernels.report(), file=sys.stderr)
    return 0


main = cli.command("gpt", run)
