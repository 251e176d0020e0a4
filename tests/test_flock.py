"""The write lock of a local store (`analysis/flock.py`): a refused lock leaves nothing it made behind,
and a run whose `.lock` was removed between its open and its flock locks the new file instead.

Real files and real flocks; the two races and the full disk are brought about by wrapping
`fcntl.flock` and `os.pwrite` in this process (named where they are)."""

from __future__ import annotations

import errno
import fcntl
import os

import pytest

from paretolab.store import flock
from paretolab.errors import StoreError


def test_a_lock_file_removed_before_its_flock_is_not_the_lock(tmp_path, monkeypatch):
    """A refused run removes the `.lock` it made while it holds it; a run that opened that file just
    before must not lock the removed file (a third run would then lock a new one beside it)."""
    real = fcntl.flock
    calls = []

    def flock_after_removal(fd, op):  # the refused run's unlink lands between this run's open and flock
        calls.append(fd)
        if len(calls) == 1:
            os.unlink(tmp_path / "s" / ".lock")
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock_after_removal)
    fd = flock.take(tmp_path / "s", "s")
    try:
        held, named = os.fstat(fd), os.stat(tmp_path / "s" / ".lock")
        assert len(calls) == 2 and held.st_nlink == 1  # locked again: the file the path names
        assert (held.st_ino, held.st_dev) == (named.st_ino, named.st_dev)
        monkeypatch.setattr(fcntl, "flock", real)
        with pytest.raises(StoreError, match="being written by another paretolab run"):
            flock.take(tmp_path / "s", "s")
    finally:
        os.close(fd)


def test_a_full_disk_leaves_an_existing_lock_file_as_it_was(tmp_path, monkeypatch):
    root = tmp_path / "s"
    os.close(flock.take(root, "s"))
    note = (root / ".lock").read_bytes()

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StoreError, match="No space left on device; free some space or pass --store another folder"):
        flock.take(root, "s")
    assert (root / ".lock").read_bytes() == note and str(os.getpid()).encode() in note


def test_a_refused_lock_removes_only_the_folders_it_made(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "kept").write_text("not the store's")

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StoreError):
        flock.take(tmp_path / "a" / "b" / "c", "c")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept"]
