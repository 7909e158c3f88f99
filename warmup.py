"""python -m gptpy.warmup: compile the parallel backend's kernels once, into numba's
cache (`make install` runs it), so that no later `gpt` compiles: the first `make run`
after an install starts as fast as any.

numba caches a kernel per type signature, not per shape, so a small model read the way
`gpt` reads any model (mapped, read-only) compiles exactly what a run of GPT-2 needs:
float32, bfloat16, int8 and int4 weights (quantized from either file version), the KV cache
in float32 and in bfloat16 and --recompute, gpt.c's coin and the compiled draw of the sampling options.
"""

import os
import sys
import tempfile

from . import backends
from . import bus_error  # noqa: F401  (its handlers compile at import, into the cache)
from .checkpoint import GPT2Config, write_checkpoint
from .dtypes import KV_DTYPES
from .model import Generator
from .random_model import random_pieces
from .sampler import Sampler

# channels in whole blocks, so that the int16 x int8 (int4) products compile too (and,
# with 48 positions, AMX's tiles, which take int8 and int4 from 32: parallel.kernels);
# and not, for the float32 tiles that int8 and int4 weights take otherwise
SMALL = GPT2Config(max_seq_len=48, vocab_size=64, padded_vocab_size=128, num_layers=1, num_heads=2, channels=32)
PARTIAL_BLOCKS = GPT2Config(max_seq_len=16, vocab_size=64, padded_vocab_size=128, num_layers=1, num_heads=3,
                            channels=36)
LONG_PROMPT = 32  # positions of a second prompt: prefill's every matmul path


def main():
    backend = backends.load("parallel", os.cpu_count())
    with tempfile.TemporaryDirectory() as folder:
        for config, version, dtypes in ((PARTIAL_BLOCKS, 3, ("int8", "int4")),
                                        (SMALL, 3, ("fp32", "bf16", "int8", "int4")), (SMALL, 5, ("int8", "int4"))):
            path = os.path.join(folder, f"warmup_v{version}.bin")
            write_checkpoint(path, config, random_pieces(config), version)
            for dtype in dtypes:  # a weight's type is part of a kernel's signature, and so is the cache's
                checkpoint = backend.load_checkpoint(path, dtype)
                for kv_dtype in KV_DTYPES:
                    for recompute in (False, True):
                        list(Generator(backend.kernels, checkpoint, 10, recompute, kv_dtype=kv_dtype).complete([1, 2]))
                        if config.max_seq_len > LONG_PROMPT:
                            long = Generator(backend.kernels, checkpoint, LONG_PROMPT + 2, recompute, kv_dtype=kv_dtype)
                            list(long.complete(list(range(1, LONG_PROMPT + 1))))
        list(Generator(backend.kernels, checkpoint, 10, sampler=Sampler(0.8, 40, 0.95, 1)).complete([1, 2]))
        serial = backends.load("serial")  # --backend serial, llm.c's reference: it always recomputes
        for dtype in ("fp32", "bf16", "int8", "int4"):
            for kv_dtype in KV_DTYPES:
                list(Generator(serial.kernels, serial.load_checkpoint(path, dtype), 10, True,
                               kv_dtype=kv_dtype).complete([1, 2]))
    backend.kernels.fork_join_seconds(rounds=1)  # gpt --profile's empty parallel region
    return 0


if __name__ == "__main__":
    sys.exit(main())
