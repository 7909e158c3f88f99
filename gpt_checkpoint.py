"""gpt-checkpoint: make, fetch or inspect llm.c GPT-2 checkpoints.

    gpt-checkpoint random OUT [--shape tiny|124M|...] [--layers L ...] [--seed S] [--confident]
    gpt-checkpoint download [OUT] [--url URL]
    gpt-checkpoint info FILE

Random models are generated and written a piece at a time (a layer, or 1024 rows of an
embedding), so even GPT-2 XL's shape needs under 200 MB of memory, not the file's 6 GB.
"""

from pathlib import Path

from . import cli
from .cli import DEFAULT_MODEL, integer
from .errors import Failure, need_memory

STARTER_PACK_URL = "https://huggingface.co/datasets/karpathy/llmc-starter-pack/resolve/main/gpt2_124M.bin"


def download(out, url=STARTER_PACK_URL, timeout=10.0):
    """Fetches a checkpoint to `out` via a temporary file, checked before the rename:
    an interrupted or failed download leaves nothing behind. The header, the first
    bytes, says how many bytes the file has: no more are read (a server or a file://
    URL that never ends, /dev/zero, fills no disk), and a local file must be a regular
    one (a FIFO would never answer)."""
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    import numpy as np

    from .checkpoint import HEADER_BYTES, CheckpointError, _config_from_header, file_size, read_header
    from .files import atomic_output, check_disk, open_regular

    out = Path(out)
    label = f"downloaded {out.name}"
    if urllib.parse.urlsplit(url).scheme == "file":
        with open_regular(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), "model file"):
            pass  # a FIFO or a device: refused here, before urllib would wait on it
    with atomic_output(out, "model file") as f:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            raise Failure(f"cannot download {url}: {reason}. Without network, copy "
                          f"llm.c's gpt2_124M.bin to {out.resolve()} by hand") from None
        announced = (response.headers.get("Content-Length") or "").strip()
        total = int(announced) if announced.isdecimal() and announced.isascii() and len(announced) < 16 else 0
        done = 0
        try:
            with response, cli.Progress(out.name, total) as progress:
                head = response.read(HEADER_BYTES)
                if len(head) == HEADER_BYTES:  # shorter: read_header below says it is truncated
                    version, config = _config_from_header(label, np.frombuffer(head, dtype="<i4"))
                    total = file_size(config, version)
                    check_disk(out, total)
                f.write(head)
                done = len(head)
                while chunk := response.read(min(1 << 20, total - done + 1) if total else 1 << 20):
                    f.write(chunk)
                    done += len(chunk)
                    progress.update(done)
                    if total and done > total:
                        raise Failure(f"download of {url}: more bytes than its header says ({total})")
                progress.update(done)
        except (http.client.HTTPException, TimeoutError, ConnectionError) as e:
            raise Failure(f"download of {url} broke off after {done} bytes: {e or type(e).__name__}") from None
        f.flush()  # fewer bytes than the header says: read_header calls it truncated
        try:
            version, config = read_header(f.name)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(str(f.name), label)) from None
    return version, config


def seconds(text):
    """--timeout's type: a number of seconds, more than 0 and at most a day."""
    import argparse
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{cli.shorten(text)!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 86400):
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 86400 (a day), not {cli.shorten(text)}")
    return value


def gpt2_shape(L, NH, C):
    return dict(max_seq_len=1024, vocab_size=50257, padded_vocab_size=50304, num_layers=L, num_heads=NH, channels=C)


SHAPES = {"tiny": dict(max_seq_len=64, vocab_size=317, padded_vocab_size=384, num_layers=2, num_heads=3, channels=48),
          "124M": gpt2_shape(12, 12, 768), "355M": gpt2_shape(24, 16, 1024),
          "774M": gpt2_shape(36, 20, 1280), "1558M": gpt2_shape(48, 25, 1600)}
FIELDS = (("--max-seq-len", "max_seq_len"), ("--vocab", "vocab_size"), ("--padded-vocab", "padded_vocab_size"),
          ("--layers", "num_layers"), ("--heads", "num_heads"), ("--channels", "channels"))


def parse_args(argv):
    parser = cli.ArgumentParser(prog="gpt-checkpoint", description="Make, fetch or inspect llm.c GPT-2 checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("random", help="write a seeded random checkpoint (for tests and benchmarks)")
    r.add_argument("out", help="file to write")
    r.add_argument("--shape", choices=list(SHAPES), default="tiny", help="starting shape (default: tiny); "
                   "124M to 1558M are GPT-2's sizes")
    for flag, field in FIELDS:
        r.add_argument(flag, dest=field, type=integer(1, 2**31 - 1), metavar="N", help=f"override the shape's {field}")
    r.add_argument("--version", type=int, choices=[1, 3, 5], default=3, help="file version (default: 3)")
    r.add_argument("--seed", type=integer(0, 2**64 - 1), default=0, help="0 to 2^64-1 (default: 0)")
    r.add_argument("--confident", action="store_true",
                   help="large final layernorm gain: one token takes nearly all the probability")

    d = sub.add_parser("download", help="fetch llm.c's gpt2_124M.bin")
    d.add_argument("out", nargs="?", default=DEFAULT_MODEL, help=f"file to write (default: {DEFAULT_MODEL})")
    d.add_argument("--url", default=STARTER_PACK_URL)
    d.add_argument("--timeout", type=seconds, default=10.0, metavar="S",
                   help="seconds to wait for the server: more than 0, at most a day (default: 10)")

    i = sub.add_parser("info", help="print a checkpoint's header")
    i.add_argument("model")
    return parser, parser.parse_args(argv)


def run(argv):
    parser, args = parse_args(argv)
    if args.command == "random":
        from .checkpoint import GPT2Config, config_problem, file_size, padded_vocab, write_checkpoint
        from .random_model import largest_piece_bytes, random_pieces

        fields = {k: getattr(args, k) or v for k, v in SHAPES[args.shape].items()}
        if args.vocab_size and not args.padded_vocab_size:
            fields["padded_vocab_size"] = padded_vocab(args.vocab_size)
        if args.version == 1:
            fields["padded_vocab_size"] = fields["vocab_size"]
        config = GPT2Config(**fields)
        problem = config_problem(config, args.version)
        if problem:
            parser.error(problem)
        need_memory(largest_piece_bytes(config), f"generating {config}")
        with cli.Progress(Path(args.out).name, file_size(config, args.version)) as progress:
            write_checkpoint(args.out, config, random_pieces(config, args.seed, args.confident), args.version,
                             progress.update)
        cli.say(f"wrote {args.out}: random weights (seed {args.seed}), version {args.version}, {config}")
    elif args.command == "download":
        version, config = download(args.out, args.url, args.timeout)
        cli.say(f"wrote {args.out}: version {version}, {config}")
    else:
        from .checkpoint import num_parameters, read_header

        version, config = read_header(args.model)
        cli.out(f"{args.model}: version {version}, {num_parameters(config):,} parameters, {config}\n")
    return 0


main = cli.command("gpt-checkpoint", run)
