"""llm.c's GPT-2 checkpoint format: the parameter table, the header's rules, reading
(validated, memory-mapped) and writing (atomically, tensor by tensor).

File layout (llm.c's `gpt2_build_from_checkpoint`): a header of 256 int32
`[20240326, version, maxT, V, L, NH, C, Vp, 0...]`, then the 16 parameter tensors of
parameter_table, in order, with no gaps. Version 1 is float32 with Vp = V (the file the
original gpt.c reads), version 3 float32 with `wte` padded to Vp rows, version 5 the
same as 3 in bfloat16.

Every size is computed with Python's integers: a crafted header cannot wrap a size
into one that matches a small file. This module needs numpy only.
"""

import math
import mmap
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .dtypes import BYTES_PER_VALUE, DTYPES, FILE_DTYPE
from .errors import Failure, need_memory
from .files import Missing, atomic_output, check_disk, open_regular

MAGIC = 20240326
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
# version -> how a parameter is stored on disk; bfloat16 is kept as its raw uint16 bits
STORAGE_DTYPE = {version: np.dtype("<f4" if dtype == "fp32" else "<u2") for version, dtype in FILE_DTYPE.items()}
VOCAB_PADDING = 128  # llm.c pads wte's rows to a multiple of 128: 50257 -> 50304


class CheckpointError(Failure):
    """A model file that cannot be used; the message is one line that names the file."""


class MissingCheckpoint(CheckpointError):
    """There is no file at that path (the commands add how to get one)."""


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


def padded_vocab(V):
    """llm.c's padded vocabulary size for V tokens."""
    return -(-V // VOCAB_PADDING) * VOCAB_PADDING


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
    return sum(math.prod(shape) for _, shape in parameter_table(config))


def file_size(config, version):
    return HEADER_BYTES + num_parameters(config) * STORAGE_DTYPE[version].itemsize


def config_problem(config, version):
    """What is wrong with a config for a file of this version, in a few words; None if
    nothing is. The one set of rules for the loader, the writer and the converter."""
    if version not in STORAGE_DTYPE:
        return f"unsupported checkpoint version {version} (supported: 1, 3, 5)"
    c = config
    for name, value in (("maxT", c.max_seq_len), ("V", c.vocab_size), ("Vp", c.padded_vocab_size),
                        ("L", c.num_layers), ("NH", c.num_heads), ("C", c.channels)):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} = {value!r}, must be a whole number"
        if not 1 <= value < 2**31:  # the header holds int32
            return f"{name} = {value}, must be from 1 to {2**31 - 1}"
    if c.channels % c.num_heads != 0:
        return f"channels C = {c.channels} is not a multiple of heads NH = {c.num_heads}"
    if version == 1 and c.padded_vocab_size != c.vocab_size:
        return f"version 1 has no vocab padding, but Vp = {c.padded_vocab_size} != V = {c.vocab_size}"
    if c.padded_vocab_size < c.vocab_size:
        return f"padded vocab Vp = {c.padded_vocab_size} is smaller than vocab V = {c.vocab_size}"
    return None


# ----------------------------------------------------------------------------
# reading

# the weights the matmul reads (wte also as the encoder's table): float32, bfloat16 bits
# as uint16, or int8 or int4 with scales (weights.py); every other parameter is float32
MATMUL_WEIGHTS = ("wte", "qkvw", "attprojw", "fcw", "fcprojw")


@dataclass
class Checkpoint:
    path: str
    version: int
    config: GPT2Config
    params: dict  # name -> read-only ndarray of parameter_table's shape (int8, int4: see load_checkpoint)
    dtype: str = "fp32"  # of MATMUL_WEIGHTS: "fp32" (float32), "bf16" (uint16 bits), "int8" or "int4"


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
    if version == 1 and Vp == 0:  # the original files left Vp unset: no padding
        Vp = V
    config = GPT2Config(maxT, V, Vp, L, NH, C)
    problem = config_problem(config, version)
    if problem:
        _fail(path, f"bad header: {problem}")
    return version, config


def read_header(path):
    """(version, config) of a checkpoint, after checking the header and the exact file size."""
    with _open_checked(path) as (_, version, config):
        return version, config


@contextmanager
def _open_checked(path):
    """The open file, its version and config, once the header and the exact size are
    checked: the loader maps the very file it checked."""
    path = str(path)
    try:
        f = open_regular(path, "model file")
    except Missing as e:
        raise MissingCheckpoint(str(e)) from None
    except Failure as e:
        raise CheckpointError(str(e)) from None
    with f:
        head = f.read(HEADER_BYTES)
        size = f.seek(0, 2)
        if len(head) < HEADER_BYTES:
            _fail(path, f"truncated header: {len(head)} bytes, expected {HEADER_BYTES} "
                        "(not an llm.c checkpoint, or an interrupted download)")
        version, config = _config_from_header(path, np.frombuffer(head, dtype="<i4"))
        expected = file_size(config, version)
        if size != expected:
            kind = "truncated" if size < expected else "too long"
            _fail(path, f"{kind}: {size} bytes, but its header (version {version}, L={config.num_layers}, "
                        f"C={config.channels}, V={config.vocab_size}, maxT={config.max_seq_len}) "
                        f"needs exactly {expected}")
        yield f, version, config


def load_checkpoint(path, dtype=None):
    """Maps a checkpoint read-only. dtype, the precision of MATMUL_WEIGHTS: "fp32", "bf16",
    "int8", "int4", or None for the file's own (bf16 for version 5). A file's own precision
    is used as it is, mapped, never copied; bfloat16 asked as float32 is widened once
    (exact), float32 asked as bfloat16 rounded once (to nearest even). int8 and int4 are
    quantized once from the file's own values (weights.quantize_int8, quantize_int4): wte becomes a (q, scales)
    tuple, each stacked weight a weights.QuantizedStack whose [l] is layer l's tuple.
    Other parameters are float32, widened from a version-5 file."""
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    with _open_checked(path) as (f, version, config):
        own = FILE_DTYPE[version]
        dtype = dtype or own
        table = parameter_table(config)
        matmul = [(name, shape) for name, shape in table if name in MATMUL_WEIGHTS]
        widened = [(name, shape) for name, shape in table if version == 5 and name not in MATMUL_WEIGHTS]
        copied = [] if dtype == own else matmul
        need_memory(sum(4 * math.prod(shape) for _, shape in widened)
                    + sum(BYTES_PER_VALUE[dtype] * math.prod(shape) for _, shape in copied),
                    f"{path}'s weights as {dtype}")
        try:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot map: {e}") from None
    itemsize = STORAGE_DTYPE[version].itemsize
    data = np.frombuffer(mapped, dtype=STORAGE_DTYPE[version], offset=HEADER_BYTES)  # read-only
    params, offset = {}, 0
    for name, shape in table:
        n = math.prod(shape)
        tensor = data[offset:offset + n].reshape(shape)
        if (name, shape) in copied + widened:
            start, row_bytes = HEADER_BYTES + offset * itemsize, shape[-1] * itemsize
            forget = lambda lo, hi: _forget_pages(mapped, start + lo * row_bytes, (hi - lo) * row_bytes)  # noqa: E731
            tensor = _convert(tensor, version, name, dtype if name in MATMUL_WEIGHTS else "fp32", forget)
            _forget_pages(mapped, start, n * itemsize)
        params[name] = tensor
        offset += n
    return Checkpoint(str(path), version, config, params, dtype)


def _convert(tensor, version, name, dtype, forget):
    """A file's tensor (float32, or bfloat16 bits for version 5) in another precision;
    forget(lo, hi) drops the file's pages of rows [lo, hi) once they are read."""
    if dtype in ("int8", "int4"):
        from . import weights  # numba: only where a quantized type is asked
        q, scales = (weights.quantize_int8 if dtype == "int8" else weights.quantize_int4)(tensor, forget)
        q.flags.writeable = scales.flags.writeable = False
        return (q, scales) if name == "wte" else weights.QuantizedStack(q, scales)
    tensor = bf16_to_float32(tensor) if version == 5 else float32_to_bf16(tensor)
    tensor.flags.writeable = False  # the same numba type as a mapped view
    return tensor


def _forget_pages(mapped, start, length):
    """Drops the file's pages in [start, start + length) from this process's memory: a
    tensor that was copied to another precision is not read there again, and its pages
    would otherwise count in the resident memory until the map is gone."""
    page = mmap.PAGESIZE
    lo, hi = -(-start // page) * page, (start + length) // page * page
    if hi > lo:
        mapped.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def bf16_to_float32(bits):
    """uint16 bfloat16 bits -> float32 (bfloat16 is the top half of a float32)."""
    wide = bits.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


def float32_to_bf16(x):
    """float32 -> uint16 bfloat16 bits, rounding to nearest even (as torch does). In
    place in uint32: where the sum wraps, its top 16 bits are the ones a wider sum would
    give modulo 2^16, and one temporary of 4 bytes per value is all it costs."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    r = u >> 16
    r &= 1
    r += u
    r += 0x7FFF
    r >>= 16
    return r.astype(np.uint16)


# ----------------------------------------------------------------------------
# writing

def write_header(f, config, version):
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:8] = [MAGIC, version, config.max_seq_len, config.vocab_size, config.num_layers,
                  config.num_heads, config.channels, config.padded_vocab_size]
    f.write(header.tobytes())


def write_checkpoint(path, config, params, version, progress=None):
    """Writes an llm.c checkpoint via a temporary file, renamed into place when whole.

    params: a dict name -> float32 array of parameter_table's shape, or an iterable of
    (name, piece) in file order, where each piece is the next rows of that tensor (for a
    per-layer tensor, one layer is a piece): a writer that makes or reads one layer at a
    time then holds one layer in memory, not the model. progress(bytes written) is
    called after each piece."""
    problem = config_problem(config, version)
    if problem:
        raise ValueError(problem)
    table = parameter_table(config)
    pieces = ((name, params[name]) for name, _ in table) if isinstance(params, dict) else params
    shapes, rows, order = dict(table), {}, []
    check_disk(path, file_size(config, version))
    done = HEADER_BYTES
    with atomic_output(path, "model file") as f:
        write_header(f, config, version)
        for name, piece in pieces:
            shape = shapes[name]
            piece = np.asarray(piece, dtype=np.float32)
            if piece.ndim == len(shape) - 1:  # one layer
                piece = piece[None]
            if piece.shape[1:] != shape[1:]:
                raise ValueError(f"{name}: a piece of shape {piece.shape}, expected (rows, *{shape[1:]})")
            if not order or order[-1] != name:
                order.append(name)
            rows[name] = rows.get(name, 0) + piece.shape[0]
            if version == 5:
                piece = float32_to_bf16(piece)
            f.write(np.ascontiguousarray(piece, dtype=STORAGE_DTYPE[version]).data)
            done += piece.nbytes
            if progress:
                progress(done)
        if order != [name for name, _ in table]:
            raise ValueError(f"tensors in the order {order}, expected the file's order")
        for name, shape in table:
            if rows[name] != shape[0]:
                raise ValueError(f"{name}: {rows[name]} rows, expected shape {shape}")
