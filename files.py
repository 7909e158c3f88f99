"""Files in and out, safely: what is read must be a regular file (a FIFO would block the
reader forever), and what is written appears whole or not at all.

Writers write to `.NAME.tmpPID` beside NAME and rename it onto NAME when it is whole.
Ctrl-C and SIGTERM unwind through `atomic_output`, which removes the temporary; a writer
killed outright (SIGKILL, the OOM killer) cannot, so the next writer of the same NAME
removes the temporaries whose process is gone.
"""

import os
import re
import shutil
import stat
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
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(\d+)")
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
    """Yields a temporary path beside `path` to write; renames it onto `path` when the
    block ends normally, and removes it however else the block ends."""
    path = check_output_path(path, what)
    if not path.parent.is_dir():
        raise Failure(f"{path.parent}: no such folder")
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise Failure(f"{e.filename or path}: {e.strerror}".replace(str(tmp), str(path))) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
