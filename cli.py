"""What the five commands share: one-line errors, exit codes, signals, progress, stdout.

Exit codes, the same for gpt, gpt-chat, gpt-perplexity, gpt-checkpoint and gpt-convert:
  0    done
  1    the work failed: a missing or bad file, a full disk, too little memory, ...
  2    a bad command line (gpt.c's own two messages keep gpt.c's exit 1)
  129  hung up (SIGHUP); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)
  141  standard output's reader left (as SIGPIPE ends gpt.c): what was not read is lost

This module and what it imports (errors, dtypes, backends) use only the standard library
at import: each command calls `command()` before it imports numpy or numba, so that
Ctrl-C during those imports is one line, not a traceback. Library modules never import
this one: they raise errors.Failure, and the commands say it.
"""

import _thread
import argparse
import os
import signal
import sys

from . import backends
from .dtypes import DTYPES, KV_DTYPES
from .errors import Failure, shorten  # noqa: F401  (cli.shorten: the commands')

DEFAULT_MODEL = "gpt2_124M.bin"  # llm.c's starter pack's file, in the current folder


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program is (not an Exception, so that no
    `except Exception` swallows it), so that every `finally` cleans up on the way out."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_signals = []  # the signals received: whatever fails after one is that signal's doing
_unsent = []  # those swallowed in a finalizer that no thread could send again (_on_unraisable)


def _on_signal(signum, frame):
    """The first signal stops the work where it is; one that arrives while the first is
    being dealt with is noted, not raised: the way out is already taken, and a second
    exception there would end in a traceback (in the error printer, in the
    interpreter's shutdown)."""
    first = not _signals
    _signals.append(signum)
    if first:
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_unraisable(unraisable):
    """sys.unraisablehook while a command runs. A signal whose exception was raised where
    Python cannot raise one, in a `__del__` or a weakref callback (importlib drops its
    module locks through one, the garbage collector runs them anywhere), would be printed
    as "Exception ignored in ..." and the work would go on as if no signal had come. The
    signal is forgotten and sent again from a thread instead, so that it is raised where
    the main thread is next; should no thread start, `_outcome` ends the work with it."""
    if _signals and isinstance(unraisable.exc_value, (KeyboardInterrupt, Stopped)):
        signum = _signals[0]
        try:
            _thread.start_new_thread(os.kill, (os.getpid(), signum))
        except RuntimeError:  # no thread (ulimit -u): the work's end says it
            _unsent.append(signum)
            return
        _signals.clear()
    else:
        sys.__unraisablehook__(unraisable)


def _standard_streams_open():
    """Opens /dev/null on whichever of fds 0, 1 and 2 the command was started without
    (`<&-`, `>&-`, `2>&-`): Python has already made that stream None, which the commands
    check, and no file opened later may take the number and receive what C code writes
    to standard output or error."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                if null != fd:
                    os.dup2(null, fd)
                    os.close(null)
            except OSError:
                pass


def system_refusal(e):
    """An OSError or ImportError nothing else caught, in one line: its first sentence, and
    a hint where a resource limit is the likely cause (ulimit -v stops a shared object
    from loading, ulimit -n a process from starting)."""
    import errno
    text = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)).split(". ")[0].strip()
    if getattr(e, "filename", None):
        text = f"{e.filename}: {text}"
    limited = getattr(e, "errno", None) in (errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.EAGAIN) or \
        "shared object" in str(e)
    return text + (" (is a resource limit, ulimit -v or -n, too low?)" if limited else "")


def signal_handled():
    """Forgets a Ctrl-C the program has dealt with (chat: back at the prompt)."""
    _signals.clear()


def command(prog, run):
    """The console-script `main` of a command whose work is run(argv) -> exit code: every
    way it can end is one line on stderr and a code of the table above."""

    def main(argv=None):
        for signum in STOPPING_SIGNALS:
            signal.signal(signum, _on_signal)
        unraisablehook, sys.unraisablehook = sys.unraisablehook, _on_unraisable
        _standard_streams_open()
        try:
            return _outcome(argv)
        except BaseException:  # a first signal just as the outcome was returned
            if not _signals:
                raise
            return stopped()
        finally:
            for signum in STOPPING_SIGNALS:  # the interpreter's shutdown: nothing left to stop
                signal.signal(signum, signal.SIG_IGN)
            sys.unraisablehook = unraisablehook

    def stopped():
        """The first signal's line and exit code."""
        signum = _signals[0]
        say(f"{prog}: interrupted" if signum == signal.SIGINT else f"{prog}: stopped by {signal.Signals(signum).name}")
        return 128 + signum

    def _outcome(argv):
        try:
            try:
                code = run(argv)
            except SystemExit as e:  # argparse's --help
                code = e.code if isinstance(e.code, int) else 2
            flush_stdout()
            if _unsent:  # a signal whose exception was swallowed and could not be sent again
                return stopped()
            return code
        except BaseException as e:
            if _signals:
                # a signal during an import can surface as the ImportError that C code
                # (numpy's extension loading datetime) makes of the KeyboardInterrupt
                return stopped()
            if isinstance(e, Failure):
                say(f"{prog}: error: {e}")
                return e.code
            if isinstance(e, BrokenPipeError):
                _drop_stdout()
                return 141
            if isinstance(e, MemoryError):  # numpy's says how much it asked for
                say(f"{prog}: error: out of memory{': ' + str(e) if str(e) else ''}")
                return 1
            if isinstance(e, (OSError, ImportError)):  # what the system refused: a limit, a library
                say(f"{prog}: error: {system_refusal(e)}")
                return 1
            raise

    return main


def say(line):
    """One line on stderr (Progress's bar is closed before any line is said)."""
    if sys.stderr is None:  # started with stderr closed: print(file=None) would write to stdout
        return
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:  # nowhere left to say it
        pass


def out(text):
    """Writes text to stdout at once (callers read tokens as they come). A reader that left
    raises BrokenPipeError (exit 141); any other failure to write is a Failure."""
    if sys.stdout is None:  # started with stdout closed: Python then drops every print
        raise Failure("standard output is closed")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        _drop_stdout()
        raise Failure(f"cannot write to standard output: {e.strerror}") from None


def flush_stdout():
    if sys.stdout is not None:
        out("")


def _drop_stdout():
    """Points stdout at /dev/null, so that the interpreter's last flush has nothing to fail on."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): bad input gets one clear line."""

    def error(self, message):
        raise Failure(f"{message} (see {self.prog.split()[0]} --help)", code=2)


def integer(low=None, high=None, what="a whole number", why=""):
    """An argparse type: an integer within [low, high], checked without converting a
    thousand-digit string (Python refuses those with a traceback of its own); `why`
    explains the upper bound in the error."""

    def parse(text):
        sign = -1 if text.strip().startswith("-") else 1
        digits = text.strip().removeprefix("-").removeprefix("+")
        if not digits.isdecimal() or not digits.isascii():
            raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not {what}")
        digits = digits.lstrip("0") or "0"
        value = sign * (int(digits) if len(digits) <= 30 else float("inf"))
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {shorten(text)}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, not {shorten(text)}{why}")
        return value

    return parse


def real(low, high, low_open=False):
    """An argparse type: a finite number within [low, high] ((low, high] if low_open)."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{shorten(text)!r} is not a number") from None
        if not (low < value if low_open else low <= value) or not value <= high:  # nan fails both
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be in {interval}, not {shorten(text)}")
        return value

    return parse


def threads_type():
    """--threads K's argparse type: 1 to backends.max_threads()."""
    return integer(1, backends.max_threads(), why=f" (this machine allows 4 workers per core, {os.cpu_count()} cores)")


def add_generation_options(parser, whose=""):
    """The options of a completion that gpt takes and chat passes on to its gpt: the
    model, the backend and its pool, the weight type, and sampling. `whose` begins each
    help text ("gpt's "), for a command that passes them on. Returns their names (the
    attributes of the parsed arguments)."""
    names = []

    def option(group, *flags, **settings):
        names.append(group.add_argument(*flags, **settings).dest)

    option(parser, "--model", default=DEFAULT_MODEL, metavar="PATH",
           help=f"{whose}llm.c checkpoint, version 1, 3 or 5 (default: {DEFAULT_MODEL})")
    option(parser, "--backend", choices=backends.NAMES, default=backends.DEFAULT,
           help=f"{whose}kernels: parallel (default); serial, llm.c's reference, "
                "which always recomputes as gpt.c does; cuda, on an NVIDIA GPU")
    option(parser, "--threads", type=threads_type(), default=backends.default_threads(), metavar="K",
           help=f"{whose}parallel backend: a static pool of K workers, 1 to {backends.max_threads()} "
                f"(4 per core; default: the {backends.default_threads()} CPUs this process may use)")
    option(parser, "--dtype", choices=DTYPES,
           help=f"{whose}precision of the matmul weights, the LM head's included: fp32; bf16 (half "
                "the bytes to read per token); int8, quantized at load per block of 32 values (a "
                "quarter); int4, the same in 4 bits (an eighth, as llama.cpp's q4_0); default: the model "
                "file's own (bf16 for version 5)")
    option(parser, "--kv-dtype", choices=KV_DTYPES,
           help=f"{whose}precision of the KV cache (the keys and values of past positions): fp32, or "
                "bf16 (half the bytes that attention reads per position); default: fp32 with fp32 "
                "weights (gpt.c's numbers), bf16 with the others")
    sampling = parser.add_argument_group(f"{whose}sampling (without any of these: gpt.c's fixed coin of 0.5)")
    option(sampling, "--temperature", type=real(0.0, 1e6), metavar="T",
           help="divide the logits by T (default 1); 0 takes the most probable token")
    option(sampling, "--top-k", type=integer(1, 2**31 - 1), metavar="K", help="draw from the K most probable tokens")
    option(sampling, "--top-p", type=real(0.0, 1.0, low_open=True), metavar="P",
           help="draw from the fewest most probable tokens whose probability reaches P")
    option(sampling, "--seed", type=integer(0, 2**64 - 1), metavar="S",
           help="seed numpy's generator: the same seed, the same tokens (default: a fresh seed each run)")
    return names


class Progress:
    """Progress of a long write, download or scoring (in bytes, or `unit`), on stderr: tqdm's bar (rate and
    time left) where stderr is a terminal; elsewhere nothing, so that logs and pipes get
    no frames (the command's own last line says what was done). A context manager: the
    bar is closed however the block ends, before any error is said."""

    def __init__(self, label, total, unit="B"):
        self.bar, self.done = None, 0
        if sys.stderr is not None and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total or None, desc=label, unit=unit, unit_scale=True,
                            unit_divisor=1000, file=sys.stderr, dynamic_ncols=True, mininterval=0.2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:  # stderr went away
                pass
        return False

    def update(self, done):
        if self.bar is not None:
            try:
                self.bar.update(done - self.done)
            except OSError:
                pass
        self.done = done
