"""Failures a user is told about in one line, and the checks that fail before a large
allocation: the library raises these, the commands print them (cli.command).

This module imports only the standard library, so that any module, command or library,
can import it before numpy.
"""

import os


class Failure(Exception):
    """The one line a user is told, and the exit code; raised anywhere below a command."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def size_text(nbytes):
    """A byte count for people: '512 bytes', '1.5 MB', '2.0 GB' (powers of 1000)."""
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


def shorten(text, most=24):
    """text, cut to `most` characters with "..." (a 5,000-digit argument in a message)."""
    return text if len(text) <= most else f"{text[:most - 3]}..."
