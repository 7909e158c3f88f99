"""gpt-perplexity: what a precision costs in accuracy, on a text of your own.

    gpt-perplexity --model gpt2_124M.bin README.md
    gpt-perplexity --model gpt2_124M.bin --dtype int8 --against fp32 README.md
    gpt-perplexity --model m.bin --ids ids.txt       # token ids, whitespace-separated

Tokenizes the text with GPT-2's encoding (as gpt-chat does), runs the model over it in
non-overlapping windows of its context (every token but each window's first scored,
given the window's tokens before it: llama-perplexity's way) and prints `perplexity X`.
With `--against DTYPE` it also runs the same model in that precision and prints the
mean and 99th-percentile KL divergence of this precision's next-token distributions
from that one's, and how often their most probable tokens agree.
"""

import sys

if __name__ == "__main__" and not __package__:  # `python perplexity.py` in a checkout
    from _checkout import run_as_package
    sys.exit(run_as_package("perplexity"))

from pathlib import Path  # noqa: E402

from . import backends, cli  # noqa: E402  (standard library only at import)
from .dtypes import DTYPES, KV_DTYPES  # noqa: E402
from .errors import Failure  # noqa: E402

MAX_TEXT = 64 << 20  # bytes of a text or ids file: far more than a perplexity run needs


def parse_args(argv):
    parser = cli.ArgumentParser(
        prog="gpt-perplexity",
        description="Perplexity of a model on a text, and, with --against, how far its next-token distributions "
                    "are from another precision's.",
        epilog="exit codes: 0 done; 1 a bad model file; 2 a bad argument (a missing, empty or binary text, "
               "--against the measured dtype); 130 Ctrl-C, 143 SIGTERM. "
               "example: gpt-perplexity --dtype int8 --against fp32 README.md")
    parser.add_argument("text", nargs="?", metavar="TEXT_FILE", help="a UTF-8 text, tokenized with GPT-2's encoding")
    parser.add_argument("--ids", metavar="IDS_FILE", help="instead of a text: token ids, whitespace-separated")
    parser.add_argument("--model", default=cli.DEFAULT_MODEL, help=f"llm.c checkpoint (default: {cli.DEFAULT_MODEL})")
    parser.add_argument("--dtype", choices=DTYPES, help="the precision measured (default: the file's own)")
    parser.add_argument("--kv-dtype", choices=KV_DTYPES,
                        help="the KV cache's precision (default: fp32 with fp32 weights, bf16 with the others)")
    parser.add_argument("--against", choices=DTYPES, metavar="DTYPE",
                        help="also compare the next-token distributions with this precision's (its KV "
                             f"cache in its default): KL divergence and top-1 agreement ({', '.join(DTYPES)})")
    parser.add_argument("--threads", type=cli.threads_type(), default=backends.default_threads(), metavar="K",
                        help=f"the pool's size (default: the {backends.default_threads()} CPUs this process may use)")
    args = parser.parse_args(argv)
    if (args.text is None) == (args.ids is None):
        parser.error("give a TEXT_FILE or --ids IDS_FILE (one of them)")
    return parser, args


def read_text(path, what):
    """A file's text: UTF-8, no NUL bytes, not empty; exit 2 otherwise."""
    from .files import open_regular
    try:
        with open_regular(path, what) as f:
            data = f.read(MAX_TEXT + 1)
    except Failure as e:  # missing, or no regular file (a FIFO, a device, a folder): a bad argument
        raise Failure(str(e), code=2) from None
    if len(data) > MAX_TEXT:
        raise Failure(f"{path}: over {MAX_TEXT >> 20} MB", code=2)
    if b"\0" in data:
        raise Failure(f"{path}: a binary file (it holds NUL bytes), not a {what}", code=2)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failure(f"{path}: not UTF-8 (byte {e.start}), not a {what}", code=2) from None
    if not text.strip():
        raise Failure(f"{path}: empty: nothing to score", code=2)
    return text


def token_ids(args):
    if args.ids is not None:
        ids = []
        for word in read_text(args.ids, "file of token ids").split():
            if not (word.isdecimal() and word.isascii() and len(word) < 10):
                raise Failure(f"{args.ids}: {cli.shorten(word)!r} is not a token id", code=2)
            ids.append(int(word))
        return ids
    from .encoding import gpt2_encoding
    return gpt2_encoding().encode(read_text(args.text, "text file"), disallowed_special=())


def run(argv):
    parser, args = parse_args(argv)
    ids = token_ids(args)
    try:
        backend = backends.load("parallel", args.threads)
    except ValueError as e:
        raise Failure(str(e), code=2) from None
    from .bus_error import say_bus_errors
    from .checkpoint import MissingCheckpoint, read_header
    say_bus_errors("gpt-perplexity")
    try:
        version, config = read_header(args.model)
    except MissingCheckpoint as e:
        raise Failure(f"{e}; `make model` downloads GPT-2 124M, or pass --model PATH") from None
    from .dtypes import FILE_DTYPE, default_kv_dtype
    measured = args.dtype or FILE_DTYPE[version]
    kv_dtype = args.kv_dtype or default_kv_dtype(measured)
    if args.against == measured and kv_dtype == default_kv_dtype(measured):
        parser.error(f"--against {args.against} is the precision measured: give another"
                     f"{'' if args.kv_dtype else ', or a --kv-dtype'}")
    if len(ids) < 2:
        raise Failure(f"{len(ids)} token{'s' * (len(ids) != 1)}: nothing to score (a token is scored given the one "
                      f"before it)", code=2)
    if max(ids) >= config.vocab_size:
        raise Failure(f"token {max(ids)} is out of range: {args.model} has a vocabulary of {config.vocab_size}",
                      code=2)
    from .scoring import score, windows
    checkpoint = backend.load_checkpoint(args.model, args.dtype)
    reference = backend.load_checkpoint(args.model, args.against) if args.against else None
    with cli.Progress("scoring", len(ids), unit="tok") as progress:
        scores = score(backend.kernels, checkpoint, ids, reference, progress.update, kv_dtype,
                       default_kv_dtype(args.against or measured))
    cli.say(f"{len(ids)} tokens, {scores.scored} scored in {len(windows(len(ids), config.max_seq_len))} windows of "
            f"up to {config.max_seq_len}; {measured} weights, {kv_dtype} KV cache")
    cli.out(f"perplexity {scores.perplexity:.4f}\n")
    if reference is not None:
        import numpy as np
        kl = np.asarray(scores.kl)
        cli.out(f"kl_divergence_mean {kl.mean():.6g} (against {args.against}, {default_kv_dtype(args.against)} KV cache)\n")
        cli.out(f"kl_divergence_p99 {np.percentile(kl, 99):.6g}\n")
        cli.out(f"top1_agreement {scores.same_top1 / scores.scored:.4f}\n")
    return 0


main = cli.command("gpt-perplexity", run)
