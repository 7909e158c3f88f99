"""llm.c GPT-2 checkpoints: the parameter table, reading (validated, memory-mapped),
writing (atomically), seeded random models for tests, and the download of the real one.

File layout (llm.c's `gpt2_build_from_checkpoint`): a header of 256 int32
`[20240326, version, maxT, V, L, NH, C, Vp, 0...]`, then the 16 parameter tensors of
PARAMETER_TABLE, in order, with no gaps. Version 1 is float32 with Vp = V (the file the
original gpt.c reads), version 3 float32 with `wte` padded to Vp rows, version 5 the
same as 3 in bfloat16.

This module needs numpy only: `gpt` validates its model before it pays for numba.
"""

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 20240326
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
# version -> how a parameter is stored on disk; bfloat16 is kept as its raw uint16 bits
STORAGE_DTYPE = {1: np.dtype("<f4"), 3: np.dtype("<f4"), 5: np.dtype("<u2")}

STARTER_PACK_URL = "https://huggingface.co/datasets/karpathy/llmc-starter-pack/resolve/main/gpt2_124M.bin"
DEFAULT_MODEL = "gpt2_124M.bin"


class CheckpointError(Exception):
    """A model file that cannot be used; the message is one line that names the file."""


@dataclass(frozen=True)
class GPT2Config:
    max_seq_len: int  # maxT, the context length
    vocab_size: int  # V
    padded_vocab_size: int  # Vp >= V: rows of wte, padded for faster kernels in llm.c
    num_layers: int  # L
    num_heads: int  # NH
    channels: int  # C


# The real GPT-2 124M, as in llm.c's starter pack (version 3).
GPT2_124M = GPT2Config(max_seq_len=1024, vocab_size=50257, padded_vocab_size=50304,
                       num_layers=12, num_heads=12, channels=768)


def parameter_table(config):
    """[(name, shape)] of the 16 tensors in file order; linear weights are (out, in)."""
    maxT, Vp = config.max_seq_len, config.padded_vocab_size
    L, C = config.num_layers, config.channels
    return [
        ("wte", (Vp, C)), ("wpe", (maxT, C)),
        ("ln1w", (L, C)), ("ln1b", (L, C)),
        ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)),
        ("attprojw", (L, C, C)), ("attprojb", (L, C)),
        ("ln2w", (L, C)), ("ln2b", (L, C)),
        ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
        ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)),
        ("lnfw", (C,)), ("lnfb", (C,)),
    ]


def num_parameters(config):
    return sum(int(np.prod(shape)) for _, shape in parameter_table(config))


def file_size(config, version):
    return HEADER_BYTES + num_parameters(config) * STORAGE_DTYPE[version].itemsize


# ----------------------------------------------------------------------------
# reading

@dataclass
class Checkpoint:
    path: str
    version: int
    config: GPT2Config
    params: dict  # name -> float32 ndarray (read-only), shapes as in parameter_table


def _fail(path, what):
    raise CheckpointError(f"{path}: {what}")


def _config_from_header(path, header):
    """Validates the 256 int32 of a header; returns (version, config)."""
    if header[0] != MAGIC:
        _fail(path, f"bad magic number {header[0]}, expected {MAGIC}: not an llm.c GPT-2 checkpoint")
    version = int(header[1])
    if version not in STORAGE_DTYPE:
        _fail(path, f"unsupported checkpoint version {version} (supported: 1, 3, 5); "
                    "re-export it with llm.c's train_gpt2.py")
    maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
    for name, value in (("maxT", maxT), ("V", V), ("L", L), ("NH", NH), ("C", C)):
        if value < 1:
            _fail(path, f"bad header: {name} = {value}, must be at least 1")
    if C % NH != 0:
        _fail(path, f"bad header: channels C = {C} is not a multiple of heads NH = {NH}")
    if version == 1:
        # the original files left Vp unset; version 1 means no padding
        if Vp not in (0, V):
            _fail(path, f"bad header: version 1 has no vocab padding, but Vp = {Vp} != V = {V}")
        Vp = V
    elif Vp < V:
        _fail(path, f"bad header: padded vocab Vp = {Vp} is smaller than vocab V = {V}")
    return version, GPT2Config(maxT, V, Vp, L, NH, C)


def read_header(path):
    """(version, config) of a checkpoint, after checking the header and the exact file size."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such model file; `make model` downloads GPT-2 124M, "
                              "or pass --model PATH") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, not a model file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror}") from None
    if len(head) < HEADER_BYTES:
        _fail(path, f"truncated header: {len(head)} bytes, expected {HEADER_BYTES} "
                    "(not an llm.c checkpoint, or an interrupted download)")
    version, config = _config_from_header(path, np.frombuffer(head, dtype="<i4"))
    expected = file_size(config, version)
    if size != expected:
        kind = "truncated" if size < expected else "too long"
        _fail(path, f"{kind}: {size} bytes, but its header (version {version}, L={config.num_layers}, "
                    f"C={config.channels}, V={config.vocab_size}) needs exactly {expected}")
    return version, config


def load_checkpoint(path):
    """Maps a checkpoint read-only; float32 files are never copied, bfloat16 ones are
    widened to float32 once (numba has no bfloat16 arithmetic)."""
    version, config = read_header(path)
    dtype = STORAGE_DTYPE[version]
    try:
        data = np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=HEADER_BYTES))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot map: {e}") from None
    params, offset = {}, 0
    for name, shape in parameter_table(config):
        n = int(np.prod(shape))
        tensor = data[offset:offset + n].reshape(shape)
        if version == 5:
            tensor = bf16_to_float32(tensor)
            tensor.flags.writeable = False  # same numba type as the mapped float32 views
        params[name] = tensor
        offset += n
    return Checkpoint(str(path), version, config, params)


def bf16_to_float32(bits):
    """uint16 bfloat16 bits -> float32 (bfloat16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(x):
    """float32 -> uint16 bfloat16 bits, rounding to nearest even (as torch does)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


# ----------------------------------------------------------------------------
# writing

def write_header(f, config, version):
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:8] = [MAGIC, version, config.max_seq_len, config.vocab_size, config.num_layers,
                  config.num_heads, config.channels, config.padded_vocab_size]
    f.write(header.tobytes())


def write_checkpoint(path, config, params, version):
    """Writes params (name -> float32 array, shapes of parameter_table) as an llm.c
    checkpoint: to a temporary file in the same folder, renamed into place when whole."""
    if version not in STORAGE_DTYPE:
        raise ValueError(f"unsupported version {version}")
    if version == 1 and config.padded_vocab_size != config.vocab_size:
        raise ValueError("version 1 has no vocab padding: need padded_vocab_size == vocab_size")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write_header(f, config, version)
            for name, shape in parameter_table(config):
                tensor = np.asarray(params[name], dtype=np.float32)
                if tensor.shape != shape:
                    raise ValueError(f"{name}: shape {tensor.shape}, expected {shape}")
                if version == 5:
                    tensor = float32_to_bf16(tensor)
                f.write(np.ascontiguousarray(tensor).astype(STORAGE_DTYPE[version]).tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def random_params(config, seed=0, confident=False):
    """Seeded GPT-2-like parameters, as float32 arrays of parameter_table's shapes.

    Departures from GPT-2's init, each for the tests' sake: noise on the layernorms, so
    that a kernel that swaps weight and bias shows; residual projections 5x larger and
    small biases, so that the blocks, not the (tied) token embedding, decide the next
    token; values rounded to bfloat16, so that versions 1, 3 and 5 of one seed hold the
    same numbers. A random GPT-2 predicts almost uniformly and fixed-coin sampling then
    flips on the last bit: `confident` raises the final layernorm gain until the logits
    have a standard deviation of about 20, and one token takes nearly all the probability."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in parameter_table(config):
        if name == "wte":  # drawn unpadded, so that the padding does not change the model
            shape = (config.vocab_size, config.channels)
        if name in ("ln1w", "ln2w", "lnfw"):
            x = 1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif name in ("attprojw", "fcprojw"):
            x = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif name == "wpe":
            x = 0.01 * rng.standard_normal(shape, dtype=np.float32)
        elif name.endswith("b"):  # the biases
            x = 0.002 * rng.standard_normal(shape, dtype=np.float32)
        else:  # wte, qkvw, fcw
            x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
        params[name] = x
    padding = config.padded_vocab_size - config.vocab_size
    params["wte"] = np.pad(params["wte"], ((0, padding), (0, 0)))  # llm.c pads with zeros
    if confident:
        # a logit is lnf(x) . wte[v]: about gain * 0.02 * sqrt(C) in standard deviation
        params["lnfw"] *= np.float32(20.0 / (0.02 * np.sqrt(config.channels)))
    return {name: bf16_to_float32(float32_to_bf16(x)) for name, x in params.items()}


# ----------------------------------------------------------------------------
# the real weights

def download(out, url=STARTER_PACK_URL, timeout=10.0):
    """Fetches a checkpoint to `out` via a temporary file, checked before the rename:
    an interrupted or failed download leaves nothing behind."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.part{os.getpid()}")
    try:
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise CheckpointError(f"cannot download {url}: {reason}. Without network, copy "
                                  f"llm.c's gpt2_124M.bin to {out.resolve()} by hand") from None
        with response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done, progress = 0, Progress(out.name, total)
            while chunk := response.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                progress.update(done)
            progress.update(done)
            progress.close()
        if total and done != total:
            raise CheckpointError(f"download of {url} stopped at {done} of {total} bytes")
        version, config = read_header(tmp)
        os.replace(tmp, out)
        return version, config
    except CheckpointError as e:
        raise CheckpointError(str(e).replace(str(tmp), f"downloaded {out.name}")) from None
    finally:
        tmp.unlink(missing_ok=True)


class Progress:
    """A one-line progress bar on stderr, in MB, redrawn at most 5 times a second."""

    def __init__(self, label, total):
        self.label, self.total, self.last = label, total, 0.0

    def update(self, done):
        if time.monotonic() - self.last < 0.2 and done != self.total:
            return
        self.last = time.monotonic()
        if self.total:
            bar = "#" * (30 * done // self.total)
            text = f"[{bar:<30}] {100 * done // self.total:3d}% {done / 1e6:.0f}/{self.total / 1e6:.0f} MB"
        else:
            text = f"{done / 1e6:.0f} MB"
        print(f"\r{self.label} {text}", end="", file=sys.stderr, flush=True)

    def close(self):
        print(file=sys.stderr)


# ----------------------------------------------------------------------------
# command line: gpt-checkpoint random | download | info

class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): bad input gets one clear line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog.split()[0]} --help)\n")


SHAPES = {
    "124M": GPT2_124M,
    "tiny": GPT2Config(max_seq_len=64, vocab_size=317, padded_vocab_size=320,
                       num_layers=2, num_heads=3, channels=48),
}


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def main(argv=None):
    parser = ArgumentParser(prog="gpt-checkpoint", description="Make, fetch or inspect llm.c GPT-2 checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("random", help="write a seeded random checkpoint (for tests and benchmarks)")
    r.add_argument("out", help="file to write")
    r.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="starting shape (default: tiny)")
    for flag, field in (("--max-seq-len", "max_seq_len"), ("--vocab", "vocab_size"),
                        ("--padded-vocab", "padded_vocab_size"), ("--layers", "num_layers"),
                        ("--heads", "num_heads"), ("--channels", "channels")):
        r.add_argument(flag, dest=field, type=_positive, help=f"override the shape's {field}")
    r.add_argument("--version", type=int, choices=sorted(STORAGE_DTYPE), default=3, help="file version (default: 3)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--confident", action="store_true",
                   help="large final layernorm gain: one token takes nearly all the probability")

    d = sub.add_parser("download", help="fetch llm.c's gpt2_124M.bin")
    d.add_argument("out", nargs="?", default=DEFAULT_MODEL, help=f"file to write (default: {DEFAULT_MODEL})")
    d.add_argument("--url", default=STARTER_PACK_URL)
    d.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the server")

    i = sub.add_parser("info", help="print a checkpoint's header")
    i.add_argument("model")

    args = parser.parse_args(argv)
    try:
        if args.command == "random":
            base = SHAPES[args.shape]
            fields = {k: getattr(args, k) or getattr(base, k) for k in GPT2Config.__dataclass_fields__}
            if args.vocab_size and not args.padded_vocab_size:  # keep llm.c's padding to 64
                fields["padded_vocab_size"] = -(-args.vocab_size // 64) * 64
            if args.version == 1:
                fields["padded_vocab_size"] = fields["vocab_size"]
            config = GPT2Config(**fields)
            if config.channels % config.num_heads:
                parser.error(f"channels {config.channels} is not a multiple of heads {config.num_heads}")
            if config.padded_vocab_size < config.vocab_size:
                parser.error(f"padded vocab {config.padded_vocab_size} is smaller than vocab {config.vocab_size}")
            write_checkpoint(args.out, config, random_params(config, args.seed, args.confident), args.version)
            print(f"wrote {args.out}: random weights (seed {args.seed}), version {args.version}, {config}",
                  file=sys.stderr)
        elif args.command == "download":
            version, config = download(args.out, args.url, args.timeout)
            print(f"wrote {args.out}: version {version}, {config}", file=sys.stderr)
        else:
            version, config = read_header(args.model)
            print(f"{args.model}: version {version}, {num_parameters(config):,} parameters, {config}")
    except CheckpointError as e:
        print(f"gpt-checkpoint: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ngpt-checkpoint: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"gpt-checkpoint: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
