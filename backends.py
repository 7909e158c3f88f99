"""The backends: which there are, the weight types each reads, and loading one, with
its worker pool sized and its environment set, in this one place.

A backend is a package whose functions have llm.c's kernel names and signatures
(model.KERNELS): `serial/` (llm.c's loops, the specification), `parallel/` (the same
loops on a static pool of K workers) and `gpu/` (numba.cuda). A backend whose kernels
keep their data elsewhere also has a `memory` (HostMemory's four functions).

Only the standard library is imported at the top: the commands offer these names in
--help before numpy or numba are imported. load() imports the backend's package.
"""

import os
import sys
from dataclasses import dataclass
from types import ModuleType

from .dtypes import DTYPES

NAMES = ("parallel", "serial", "cuda")
DEFAULT = "parallel"
SUPPORTED_DTYPES = {"parallel": DTYPES, "serial": DTYPES, "cuda": ("fp32",)}  # cuda's kernels read float32


def dtype_problem(name, dtype):
    """Why backend `name` cannot read weights of `dtype`, in words; None if it can."""
    if dtype is None or dtype in SUPPORTED_DTYPES[name]:
        return None
    return (f"--dtype {dtype} is not available with --backend {name} (its kernels read "
            f"{', '.join(SUPPORTED_DTYPES[name])} weights)")


def max_threads():
    """The largest worker pool a backend takes: 4 per core. Past the cores a worker only
    adds switching, and thousands of them fail to start (libgomp: Thread creation failed)."""
    return 4 * (os.cpu_count() or 1)


class HostMemory:
    """Where the CPU backends' kernels find their data: the host's arrays, as they are."""

    @staticmethod
    def upload(params):
        return params

    @staticmethod
    def zeros(n):
        import numpy as np  # here, not at the top: see the module's docstring
        return np.zeros(n, dtype=np.float32)

    @staticmethod
    def to_host(array):
        return array

    @staticmethod
    def synchronize():
        pass


def memory_of(kernels):
    return getattr(kernels, "memory", HostMemory)


@dataclass
class Backend:
    """A loaded backend: its kernel module and the size of its pool (None: numba's default)."""
    name: str
    kernels: ModuleType
    threads: int | None = None

    def load_checkpoint(self, path, dtype=None):
        """The model, its matmul weights in `dtype` (None: the file's own; cuda: fp32).
        Loading through the backend keeps the order that int8 needs: its weights are
        quantized at load on the pool that load() has sized."""
        from .checkpoint import load_checkpoint
        if problem := dtype_problem(self.name, dtype):
            raise ValueError(problem)
        return load_checkpoint(path, dtype or (None if self.name != "cuda" else "fp32"))


# a compiled kernel body every run of a CPU backend calls, with the same types whatever the
# weights: whether numba's cache holds it for this CPU tells a first run
ALWAYS_CALLED = {"parallel": "_attention_forward", "serial": "attention_forward"}


def compiled_here(backend):
    """False when numba's cache holds no machine code of the backend's kernels for this
    CPU: the run compiles them first (tens of seconds; `make install` does it ahead).
    True for the GPU, and where numba's cache cannot be read as this numba's is."""
    if backend.name not in ALWAYS_CALLED:
        return True
    try:
        import importlib
        from numba.core.registry import cpu_target
        kernels = importlib.import_module(f"{__package__}.{backend.name}.kernels")
        index = getattr(kernels, ALWAYS_CALLED[backend.name])._cache._cache_file._load_index()
        return any(key[1] == cpu_target.target_context.codegen().magic_tuple() for key in index)
    except Exception:  # numba's internals moved: say nothing rather than fail
        return True


def available():
    """The backends this process can run: cuda only where numba sees a GPU (or its
    simulator, NUMBA_ENABLE_CUDASIM=1)."""
    from numba import cuda
    return [name for name in NAMES if name != "cuda" or cuda.is_available()]


def load(name, threads=None):
    """Backend `name`, ready to run. threads: the size K of the static pool of numba's
    workers (used by the parallel kernels and by int8's quantization at load), fixed here
    once for the process; None keeps numba's default, the cores. Raises ValueError, in
    words a user can act on, for an unknown name, a missing GPU or a pool too large."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r} (choose from {', '.join(NAMES)})")
    if name == "cuda":
        from numba import cuda
        if not cuda.is_available():
            raise ValueError("no CUDA GPU found; use --backend parallel")
        from . import gpu
        return Backend(name, gpu)
    if threads is not None and not 1 <= threads <= max_threads():
        raise ValueError(f"--threads {threads} is outside what this machine allows: 1 to {max_threads()} "
                         f"(4 per core, {os.cpu_count()} cores)")
    if threads and threads > (os.cpu_count() or 1) and "numba" not in sys.modules:
        # numba sizes its pool from this variable once, at import; it defaults to the
        # core count and set_num_threads cannot go past it (oversubscription runs)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    # libgomp's workers spin-wait at each barrier by default; with another busy process
    # on the same cores each spinner burns the time slice its teammate needs. After 1000
    # spins they sleep (dev/system/spin.py). libgomp reads this once, when numba loads it.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    if name == "parallel":
        from . import parallel as kernels
    else:
        from . import serial as kernels
    if threads:
        import numba
        if threads > numba.config.NUMBA_NUM_THREADS:
            raise ValueError(f"--threads {threads} is more than NUMBA_NUM_THREADS="
                             f"{numba.config.NUMBA_NUM_THREADS} allows")
        numba.set_num_threads(threads)
    if name == "parallel":
        import numba
        kernels.set_workers(numba.get_num_threads())
    return Backend(name, kernels, threads)
