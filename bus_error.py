"""A mapped file that shrinks under its reader: one line, not a silent death.

gpt and gpt-perplexity map the model file (checkpoint.py), gpt-convert its sources. If the file is
truncated or rewritten in place while they run (`cp new.bin model.bin`), the next read
of a page it lost raises SIGBUS, whose default kills the process without a word (the
shell's 135). `say_bus_errors(prog)` installs a handler that writes one line and exits
1, the code of a bad model file (cli.py's table). It is machine code numba compiles and
caches (a Python handler would never run: the faulting read repeats forever), and it
calls only write and _exit, which are safe in a signal handler, on whichever thread
faulted, a worker of the pool included.
"""

import ctypes
import signal

import numpy as np
from numba import cfunc, types

from . import target  # noqa: F401  (before the handler compiles: numba's target CPU)
from .backends import forget_stale_kernels

forget_stale_kernels()  # before the handlers below compile, or load from numba's cache, at import

_write = types.ExternalFunction("write", types.intp(types.int32, types.voidptr, types.uintp))
_exit = types.ExternalFunction("_exit", types.void(types.int32))

GPT = np.frombuffer(b"gpt: error: the model file shrank or was rewritten while gpt read it (SIGBUS); "
                    b"replace a model in use by renaming a new file onto it\n", dtype=np.uint8)
PERPLEXITY = np.frombuffer(b"gpt-perplexity: error: the model file shrank or was rewritten while it was read "
                           b"(SIGBUS)\n", dtype=np.uint8)
CONVERT = np.frombuffer(b"gpt-convert: error: a source file shrank or was rewritten while gpt-convert read it "
                        b"(SIGBUS)\n", dtype=np.uint8)


@cfunc(types.void(types.int32), cache=True)
def _gpt_bus_error(signum):
    _write(2, GPT.ctypes.data, GPT.size)
    _exit(1)


@cfunc(types.void(types.int32), cache=True)
def _perplexity_bus_error(signum):
    _write(2, PERPLEXITY.ctypes.data, PERPLEXITY.size)
    _exit(1)


@cfunc(types.void(types.int32), cache=True)
def _convert_bus_error(signum):
    _write(2, CONVERT.ctypes.data, CONVERT.size)
    _exit(1)


HANDLERS = {"gpt": _gpt_bus_error, "gpt-perplexity": _perplexity_bus_error, "gpt-convert": _convert_bus_error}


def say_bus_errors(prog):
    """From now on a SIGBUS in this process is prog's one line and exit 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.argtypes, libc.signal.restype = [ctypes.c_int, ctypes.c_void_p], ctypes.c_void_p
    libc.signal(signal.SIGBUS, HANDLERS[prog].address)
