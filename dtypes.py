"""The weight types, in one table that needs neither numpy nor numba: the commands name
them in --help before anything heavy is imported, the loader sizes its copies with them,
and weights.py reads values of each.

A matmul weight (the LM head and token embedding wte included) is stored as one of:
- fp32: float32, 4 bytes a value;
- bf16: bfloat16, the top 16 bits of a float32, 2 bytes a value (a version-5 file's own);
- int8: an int8 per value and a float32 scale per QBLOCK consecutive values of a row,
  quantized at load (1 + 4 / QBLOCK bytes a value);
- int4: a nibble per value and a bfloat16 scale per QBLOCK values of a row, quantized
  at load (1/2 + 2 / QBLOCK bytes a value: llama.cpp's q4_0 size).
Every other parameter is float32, and so is every product and sum, but the parallel
backend's integer products of int8 and int4 rows (weights.dot_blocks_int16 and
parallel.tile.tile_blocks_int16).
"""

QBLOCK = 32  # int8 and int4: values per scale; weight_at finds a value's scale by a shift, so a power of 2

BYTES_PER_VALUE = {"fp32": 4, "bf16": 2, "int8": 1 + 4 / QBLOCK, "int4": 1 / 2 + 2 / QBLOCK}
DTYPES = tuple(BYTES_PER_VALUE)  # the names --dtype takes

# the KV cache (model.Activations' qkv): float32, or bfloat16 bits (half the bytes that
# attention reads per cached position; weights.stored rounds each value once)
KV_DTYPES = ("fp32", "bf16")


def default_kv_dtype(dtype):
    """The KV cache's precision when none is asked: float32 with float32 weights (gpt.c's
    numbers, exactly), bfloat16 with the others, whose own rounding is far larger than
    bfloat16's (docs/performance.md, "Accuracy of each precision", measures both)."""
    return "fp32" if dtype == "fp32" else "bf16"


# a checkpoint version's own precision (checkpoint.py): what --dtype defaults to, used as
# the file holds it, mapped, never copied
FILE_DTYPE = {1: "fp32", 3: "fp32", 5: "bf16"}
