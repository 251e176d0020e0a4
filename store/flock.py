"""The write lock of a store on a local disk (or NFS): an `flock` on `<store>/.lock`.

The kernel releases it when its holder exits, so a crashed run never leaves a stale lock behind.
The file names its holder (pid and host) for a run that is refused. A run refused while taking the
lock (another run holds it, the disk is full, the folder is read-only) leaves behind neither the
`.lock` nor the store's folder if it created them; whoever removes a `.lock` holds its lock, and a
run that locked a file removed under it (`_names`) locks the new one instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import suppress
from pathlib import Path

from paretolab.vocabulary.errors import StoreError

LOCK = ".lock"


def take(root: Path, uri: str) -> int:
    """Create the folder `root` if needed and take its store's lock; returns the open file, whose
    closing releases it.

    Raises:
        StoreError: another run holds the lock, or the folder or its `.lock` cannot be created or
            written (a read-only or full disk); nothing this call created is left behind.
    """
    created = _missing(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        return _lock(root / LOCK, uri)
    except OSError as e:
        fix = "free some space or pass --store another folder" if e.errno in (errno.ENOSPC, errno.EDQUOT) \
            else "pass --store a folder you can write"
        raise StoreError(f"cannot write the result store at {uri}: {e.strerror}; {fix}") from None
    finally:
        if created and not (root / LOCK).exists():
            for folder in created:  # deepest first; a folder another run has put its lock in is not empty
                with suppress(OSError):
                    folder.rmdir()


def _lock(path: Path, uri: str) -> int:
    while True:
        try:
            fd, made = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            try:
                fd, made = os.open(path, os.O_RDWR), False
            except FileNotFoundError:  # removed since: create it again
                continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                made = False  # another run opened the new file and locked it first: it is theirs
                holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "?"
                raise StoreError(f"the store {uri} is being written by another paretolab run "
                                 f"(pid {holder}); wait for it or use another --store") from None
            if not _names(path, fd):
                os.close(fd)  # a refused run removed this file after it was opened here
                continue
            # written before the old note is cut, so a full disk leaves an existing store's file as it was
            note = f"{os.getpid()} on {socket.gethostname()}".encode()
            os.pwrite(fd, note, 0)
            os.ftruncate(fd, len(note))
            return fd
        except BaseException:
            if made:  # a run that opens it from now on finds it gone once it holds its lock, and starts over
                path.unlink(missing_ok=True)
            os.close(fd)
            raise


def _names(path: Path, fd: int) -> bool:
    """Whether `path` is still the file open as `fd`."""
    try:
        held, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _missing(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
