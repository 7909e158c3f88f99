"""The backends: which there are, the weight types each reads, and loading one, with
its worker pool sized and its environment set, in this one place.

A backend is a package whose functions have llm.c's kernel names and signatures
(model.KERNELS): `serial/` (llm.c's loops, the specification), `parallel/` (the same
loops on a static pool of K workers) and `gpu/` (numba.cuda). A backend whose kernels
keep their data elsewhere also has a `memory` (HostMemory's four functions).

Only the standard library is imported at the top: the commands offer these names in
--help before numpy or numba are imported. load() imports the backend's package.
"""

import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .dtypes import DTYPES, KV_DTYPES
from .errors import shorten

NAMES = ("parallel", "serial", "cuda")
DEFAULT = "parallel"
SUPPORTED_DTYPES = {"parallel": DTYPES, "serial": DTYPES, "cuda": ("fp32",)}  # cuda's kernels read float32
SUPPORTED_KV_DTYPES = {"parallel": KV_DTYPES, "serial": KV_DTYPES, "cuda": ("fp32",)}


def dtype_problem(name, dtype):
    """Why backend `name` cannot read weights of `dtype`, in words; None if it can."""
    if dtype is None or dtype in SUPPORTED_DTYPES[name]:
        return None
    return (f"--dtype {dtype} is not available with --backend {name} (its kernels read "
            f"{', '.join(SUPPORTED_DTYPES[name])} weights)")


def kv_dtype_problem(name, kv_dtype):
    """Why backend `name` cannot keep its KV cache in `kv_dtype`, in words; None if it can."""
    if kv_dtype is None or kv_dtype in SUPPORTED_KV_DTYPES[name]:
        return None
    return (f"--kv-dtype {kv_dtype} is not available with --backend {name} (its KV cache is "
            f"{', '.join(SUPPORTED_KV_DTYPES[name])})")


def numba_num_threads():
    """NUMBA_NUM_THREADS as a number (None if unset). ValueError, in words, if it is not a
    whole number from 1 (numba itself would print a traceback in a warning and go on)."""
    text = os.environ.get("NUMBA_NUM_THREADS")
    if text is None:
        return None
    digits = text.strip()
    if not (digits.isdecimal() and digits.isascii() and 0 < len(digits) < 7 and int(digits) > 0):
        raise ValueError(f"NUMBA_NUM_THREADS={shorten(text)!r} is not a number of threads: set a whole number "
                         f"from 1, or unset it")
    return int(digits)


def default_threads():
    """The pool's size when none is asked for: the CPUs this process may run on (its
    affinity: taskset, a container's cpuset), and no more than NUMBA_NUM_THREADS allows."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        return min(cpus, numba_num_threads() or cpus)
    except ValueError:  # load() says so
        return cpus


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
    cache_problem: str | None = None  # why numba's cache is a temporary folder for this run

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


# How many spins libgomp's workers wait at a barrier before they sleep: a sleeper's
# wake-up costs a system call, under a hypervisor an interrupt between virtual CPUs, at
# each of a decode step's parallel regions; too many spins and a second busy process on
# the same cores waits for the spinners. Spins are counted, not timed: 1000 cost decode
# nothing on a Zen 5 but doubled an int4 step on an Intel Xeon under KVM, where from 2000
# on decode came back and two processes at once slowed little (dev/system/spin.py)
SPIN_COUNT = "3000"


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
    numba_num_threads()  # a bad value: said before numba reads it
    if threads and threads > default_threads() and "numba" not in sys.modules:
        # numba sizes its pool from this variable once, at import; it defaults to the
        # core count and set_num_threads cannot go past it (oversubscription runs)
        os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))
    # libgomp's workers spin-wait at each barrier by default (300000 spins); with another
    # busy process on the same cores each spinner burns the time slice its teammate needs.
    # After SPIN_COUNT spins they sleep. libgomp reads this once, when numba loads it.
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    cache_problem = _temporary_cache_if_needed()
    forget_stale_kernels()
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
    return Backend(name, kernels, threads, cache_problem)


# what marks a file whose code numba compiles: jitted functions, intrinsics, overloads, cfuncs
COMPILED = re.compile(r"^\s*@(njit|jit|intrinsic|overload|cfunc|cuda\.jit)\b|\bnjit\(", re.MULTILINE)
RELATIVE_IMPORT = re.compile(r"^\s*from (\.+)(\w*) import ([\w, ()]+)", re.MULTILINE)
STAMP = "gptpy-sources.sha256"  # in each folder of numba's cache: the sources its files were compiled from
_FORGOTTEN = False  # whether this process has checked numba's folders (forget_stale_kernels)


def compiled_sources(root=None):
    """The package's files whose code numba compiles, and the package's modules they
    import, transitively (constants such as dtypes.QBLOCK are compiled in): everything
    a cached kernel's machine code depends on. numba keys a kernel's cache on its own
    file only, so without this a change to an intrinsic in weights.py or parallel/tile.py
    would leave the kernels that use it running their old code."""
    root = Path(root or Path(__file__).parent)
    texts = {path: path.read_text() for path in [*root.glob("*.py"), *(path for name in ("serial", "parallel", "gpu")
                                                                       for path in (root / name).glob("*.py"))]}
    todo = [path for path, text in texts.items() if COMPILED.search(text)]
    found = set()
    while todo:
        path = todo.pop()
        if path in found or path not in texts or path == root / Path(__file__).name:
            continue  # (this module compiles nothing; bus_error imports it for forget_stale_kernels)
        found.add(path)
        for dots, module, names in RELATIVE_IMPORT.findall(texts[path]):
            base = path.parent
            for _ in range(len(dots) - 1):
                base = base.parent
            if module:
                todo += [base / f"{module}.py", base / module / "__init__.py"]
            else:  # from . import a, b
                todo += [base / f"{name.strip()}.py" for name in names.strip("()").split(",")]
    return sorted(found)


def sources_digest(root=None, sources=None):
    """sha256 of compiled_sources()' paths and contents (or of `sources`, those already
    found), and of numba's version."""
    import numba
    root = Path(root or Path(__file__).parent)
    digest = hashlib.sha256(numba.__version__.encode())
    for path in sources if sources is not None else compiled_sources(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def forget_stale_kernels(folders=None, digest=None):
    """Removes the compiled kernels (numba's *.nbi and *.nbc files) from each folder of
    numba's cache that holds this package's (the package's own, beside its sources or
    where NUMBA_CACHE_DIR or the home folder's cache puts them) when they were compiled
    from other sources than these, then stamps the folder with these sources' digest.
    Quietly does nothing where a folder cannot be read or written."""
    global _FORGOTTEN
    import tempfile
    if folders is None:  # numba's own folders: once a process, before any of its compiled code loads
        if _FORGOTTEN:
            return
        _FORGOTTEN = True
        sources = compiled_sources()
        folders, digest = _cache_folders(sources), sources_digest(sources=sources)
    for folder in folders:
        stamp = Path(folder) / STAMP
        try:
            if stamp.is_file():  # a regular file (not a FIFO or a device), read no further than a digest
                with open(stamp, "rb") as f:
                    if f.read(100) == digest.encode():
                        continue
            for compiled in [*Path(folder).glob("*.nbi"), *Path(folder).glob("*.nbc")]:
                compiled.unlink(missing_ok=True)
            handle, partial = tempfile.mkstemp(dir=folder, prefix=f"{STAMP}.")  # a new file: no link followed
            try:
                with os.fdopen(handle, "w") as f:
                    f.write(digest)
                os.replace(partial, stamp)
            except OSError:
                os.unlink(partial)
                raise
        except OSError:
            continue


def _cache_folders(sources):
    """The folders where numba keeps this package's compiled kernels: one per folder of
    the compiled sources, as numba's cache locators choose it."""
    from numba.core.caching import CacheImpl
    folders = set()
    for source in {path.parent / "__init__.py" for path in sources}:
        for locator in getattr(CacheImpl, "_locator_classes", ()):
            try:
                found = locator.from_function(forget_stale_kernels, str(source))
            except Exception:  # a locator that does not apply (IPython's, a zip's)
                continue
            if found is not None:
                folders.add(found.get_cache_path())
                break
    return sorted(folders)


def _temporary_cache_if_needed():
    """Where numba can keep compiled kernels for none of this package's files (an install
    the user cannot write to, and no writable home or NUMBA_CACHE_DIR), a numba with
    `cache=True` functions would refuse to import them. Gives numba a temporary folder
    then, removed at exit, and returns the line that says so; None where a cache works."""
    import atexit
    import shutil
    import tempfile
    import numba
    from numba.core.caching import CacheImpl
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "parallel", "kernels.py")
    locators = getattr(CacheImpl, "_locator_classes", None)
    if not locators:  # another numba's internals: assume its cache works
        return None
    for locator in locators:
        try:
            if locator.from_function(_temporary_cache_if_needed, source) is not None:
                return None
        except Exception:  # a locator that does not apply (IPython's, a zip's)
            continue
    folder = tempfile.mkdtemp(prefix="gptpy-numba-")
    atexit.register(shutil.rmtree, folder, True)
    numba.config.CACHE_DIR = folder
    return (f"numba cannot keep compiled kernels here (no writable cache folder beside the package or in "
            f"the home folder): compiling them for this run only, up to a minute; set NUMBA_CACHE_DIR "
            f"to a writable folder to keep them")
