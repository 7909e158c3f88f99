"""Files in and out, safely: what is read must be a regular file (a FIFO would block the
reader forever), and what is written appears whole or not at all.

Writers write to a new temporary beside NAME, `.NAME.tmpPID-XXXXXXXX`, created
exclusively (never a file, link or FIFO that someone planted under a predictable
name), and rename it onto NAME when it is whole. Ctrl-C and SIGTERM unwind through
`atomic_outputs`, which removes the temporaries; a writer killed outright (SIGKILL, the
OOM killer) cannot, so the next writer of the same NAME removes the temporaries whose
process is gone.
"""

import json
import os
import re
import shutil
import signal
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import Failure, size_text


class Missing(Failure):
    """No file at that path."""


def open_regular(path, what="file"):
    """Opens path for binary reading, or fails in one line if it is missing or is not a
    regular file. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    path = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Missing(f"{path}: no such {what}") from None
    except OSError as e:
        raise Failure(f"{path}: cannot read: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise Failure(f"{path}: is {kind}, not a {what}" if kind != "not a regular file"
                      else f"{path}: not a regular file, so not a {what}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


MOST_DIGITS = 100  # of a JSON integer (Python's int() refuses 4,300 with a traceback of its own); the checks after say what range they take


def _json_int(text):
    if len(text.lstrip("-")) > MOST_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def load_json(text):
    """json.loads, with integers of more than MOST_DIGITS digits refused as ValueError
    (json.JSONDecodeError is one too) rather than converted."""
    return json.loads(text, parse_int=_json_int)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path):
    """Removes `.NAME.tmpPID` files beside path whose writer process is gone."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(\d{{1,9}})(?:-\w+)?")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                if entry.is_file() and not entry.is_symlink():
                    entry.unlink()
            except OSError:
                pass


def check_output_path(path, what="file"):
    """A path that a writer may replace: it names a file, and is not a directory, a FIFO
    or a device (replacing /dev/full would remove the device)."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise Failure(f"{str(path)!r}: not a {what} name", code=2)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as e:
        raise Failure(f"{path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise Failure(f"{path}: is a directory; give the {what}'s name", code=2)
    if not stat.S_ISREG(mode):
        raise Failure(f"{path}: exists and is not a regular file; not replacing it", code=2)
    return path


def check_disk(path, nbytes):
    """Fails at once, rather than after minutes of writing, if the disk is too small."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return
    if nbytes > free:
        raise Failure(f"{path}: needs {size_text(nbytes)} on disk, {size_text(free)} is free there")


@contextmanager
def atomic_output(path, what="file"):
    """atomic_outputs for one file: yields it, open for binary writing."""
    with atomic_outputs([(path, what)]) as (f,):
        yield f


@contextmanager
def atomic_outputs(outputs):
    """Yields a binary file open for writing for each (path, what) of `outputs`: a new
    temporary beside the path (tempfile's O_EXCL | O_NOFOLLOW, a random name), the mode
    an ordinary write would give. Every path is checked before any is written. When the
    block ends normally, each temporary still in its place is renamed onto its path,
    back to back, with SIGINT, SIGTERM and SIGHUP held until the last (the set appears
    together); however else the block ends, the temporaries are removed."""
    paths = [check_output_path(path, what) for path, what in outputs]
    for path in paths:
        if not path.parent.is_dir():
            raise Failure(f"{path.parent}: no such folder")
        remove_stale_temporaries(path)
    umask = os.umask(0o22)
    os.umask(umask)
    files, temporaries, identities = [], [], []
    try:
        for path in paths:
            try:
                fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp{os.getpid()}-", dir=path.parent)
            except OSError as e:
                raise Failure(f"{path}: cannot write there: {e.strerror}") from None
            temporaries.append(Path(name))
            made = os.fstat(fd)
            identities.append((made.st_dev, made.st_ino))
            os.fchmod(fd, 0o666 & ~umask)
            files.append(open(name, "wb", opener=lambda *_, fd=fd: fd))
        yield files
        for f in files:
            f.close()  # flushed: a full disk fails here, before any rename
        for tmp, identity, path in zip(temporaries, identities, paths):
            if not _names(tmp, identity):
                raise Failure(f"{path}: its temporary {tmp.name} was replaced while it was written; not using it")
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            for tmp, path in zip(temporaries, paths):
                os.replace(tmp, path)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except OSError as e:
        raise Failure(f"{e.filename or paths[0]}: {e.strerror}") from None
    finally:
        for f in files:
            try:
                f.close()
            except OSError:
                pass
        for tmp in temporaries:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def _names(path, identity):
    """Whether `path` still names the file of (st_dev, st_ino) `identity`: not a link or a
    file put there since."""
    try:
        there = os.lstat(path)
    except OSError:
        return False
    return (there.st_dev, there.st_ino) == identity
