"""What the four commands share: one-line errors, exit codes, signals, progress, stdout.

Exit codes, the same for gpt, gpt-chat, gpt-checkpoint and gpt-convert:
  0    done
  1    the work failed: a missing or bad file, a full disk, too little memory, ...
  2    a bad command line (gpt.c's own two messages keep gpt.c's exit 1)
  129  hung up (SIGHUP); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM)
  141  standard output's reader left (as SIGPIPE ends gpt.c): what was not read is lost

This module imports only the standard library: each command calls `command()` before it
imports numpy or numba, so that Ctrl-C during those imports is one line, not a traceback.
"""

import argparse
import os
import signal
import sys
import time

# backend name -> its folder (not `cuda/`: that name would shadow the CUDA bindings);
# here, not in model.py, so that --backend's choices cost no numpy import
BACKENDS = {"parallel": "parallel", "serial": "serial", "cuda": "gpu"}


class Failure(Exception):
    """The one line a user is told, and the exit code; raised anywhere below a command."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class Stopped(BaseException):
    """SIGTERM or SIGHUP, raised where the program is (not an Exception, so that no
    `except Exception` swallows it), so that every `finally` cleans up on the way out."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_signals = []  # the signals received: whatever fails after one is that signal's doing


def _on_signal(signum, frame):
    _signals.append(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)


def signal_handled():
    """Forgets a Ctrl-C the program has dealt with (chat: back at the prompt)."""
    _signals.clear()


def command(prog, run):
    """The console-script `main` of a command whose work is run(argv) -> exit code: every
    way it can end is one line on stderr and a code of the table above."""

    def main(argv=None):
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _on_signal)
        try:
            try:
                code = run(argv)
            except SystemExit as e:  # argparse's --help
                code = e.code if isinstance(e.code, int) else 2
            flush_stdout()
            return code
        except BaseException as e:
            if _signals:
                # a signal during an import can surface as the ImportError that C code
                # (numpy's extension loading datetime) makes of the KeyboardInterrupt
                signum = _signals[0]
                say(f"{prog}: interrupted" if signum == signal.SIGINT else
                    f"{prog}: stopped by {signal.Signals(signum).name}")
                return 128 + signum
            if isinstance(e, Failure):
                say(f"{prog}: error: {e}")
                return e.code
            if isinstance(e, BrokenPipeError):
                _drop_stdout()
                return 141
            if isinstance(e, MemoryError):  # numpy's says how much it asked for
                say(f"{prog}: error: out of memory{': ' + str(e) if str(e) else ''}")
                return 1
            raise

    return main


def say(line):
    """One line on stderr, on a line of its own even when a progress bar is drawn there."""
    try:
        print(("\n" if Progress.open else "") + line, file=sys.stderr, flush=True)
    except OSError:  # nowhere left to say it
        pass
    Progress.open = False


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


def shorten(text, most=24):
    return text if len(text) <= most else f"{text[:most - 3]}..."


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
    """--threads K's argparse type: 1 to max_threads()."""
    return integer(1, max_threads(), why=f" (this machine allows 4 workers per core, {os.cpu_count()} cores)")


def max_threads():
    """The largest worker pool --threads takes: 4 per core. Past the cores a worker only
    adds switching, and thousands of them fail to start (libgomp: Thread creation failed)."""
    return 4 * (os.cpu_count() or 1)


def size_text(nbytes):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000


def available_memory():
    """Bytes the kernel can give this process without swapping (MemAvailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def need_memory(nbytes, what):
    """Fails in one line before allocating more than the machine has: Linux would grant
    the allocation and kill the process later, when the pages are touched."""
    have = available_memory()
    if nbytes > have:
        raise Failure(f"out of memory: {what} needs {size_text(nbytes)}, this machine has "
                      f"{size_text(have)} available")


class Progress:
    """A one-line progress bar on stderr, in MB, redrawn at most 5 times a second. A
    context manager: the line is ended however the block ends."""

    open = False  # a bar's line is on stderr, not ended yet: say() starts a new line

    def __init__(self, label, total):
        self.label, self.total, self.last = label, total, 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if Progress.open:
            try:
                print(file=sys.stderr, flush=True)
            except OSError:
                pass
            Progress.open = False
        return False

    def update(self, done):
        if time.monotonic() - self.last < 0.2 and done != self.total:
            return
        self.last = time.monotonic()
        if self.total:
            bar = "#" * (30 * done // self.total)
            text = f"[{bar:<30}] {100 * done // self.total:3d}% {done / 1e6:.0f}/{self.total / 1e6:.0f} MB"
        else:
            text = f"{done / 1e6:.0f} MB"
        try:
            print(f"\r{self.label} {text}", end="", file=sys.stderr, flush=True)
            Progress.open = True
        except OSError:
            pass
