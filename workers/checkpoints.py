"""Checkpoints of the researcher's code: written whole or not at all, read back checked.

A trial's checkpoint is `<checkpoints>/<trial id>/checkpoint.pkl` (the store's `checkpoints/`
folder unless the spec sets `checkpoint_dir`), a folder or a URI (written through pyarrow's
filesystems; on S3 in one PUT). The file is a magic line, the CRC-32 of the pickle, the pickle: a
checkpoint cut short or damaged is refused with one line, never unpickled. `Context.save_checkpoint`
keeps the curve reported so far in it, so that a resumed trial continues its curve.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import zlib

from paretolab.vocabulary.trial import Code

CHECKPOINT_FILE = "checkpoint.pkl"
CHECKPOINT_MAGIC = b"paretolab-checkpoint-1\n"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, or the one found cannot be read (it is damaged)."""



def checkpoint_folder(code: Code, trial_id: str) -> str:
    """The folder (or URI) of `trial_id`'s checkpoint."""
    return f"{code.checkpoints.rstrip('/')}/{trial_id}"


def _fs(where: str):
    """(pyarrow filesystem, path) of a folder or URI."""
    from pyarrow import fs

    if "://" in where:
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(where)
        if parts.scheme == "s3":  # one PUT of the whole checkpoint (as the store writes its files)
            query = dict(parse_qsl(parts.query))
            query.setdefault("allow_delayed_open", "true")
            where = urlunsplit(parts._replace(query=urlencode(query)))
        return fs.FileSystem.from_uri(where)
    return fs.LocalFileSystem(), os.path.abspath(where)


def save_checkpoint(code: Code, trial_id: str, state: dict) -> None:
    """Write `state` as the trial's checkpoint, whole or not at all (a temporary file, fsynced, renamed).

    Raises:
        CheckpointError: it cannot be pickled or written.
    """
    try:
        body = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - whatever the object's pickling raises
        raise CheckpointError(f"ctx.save_checkpoint: the object cannot be pickled: {type(e).__name__}: {e}") from None
    data = CHECKPOINT_MAGIC + zlib.crc32(body).to_bytes(4, "big") + body
    folder = checkpoint_folder(code, trial_id)
    try:
        if "://" not in folder:
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{CHECKPOINT_FILE}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, os.path.join(folder, CHECKPOINT_FILE))
            except OSError:  # a full disk: the previous checkpoint stays, no partial file beside it
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        else:  # an object store's put is atomic: a reader sees the old object or the new one
            filesystem, path = _fs(folder)
            with filesystem.open_output_stream(f"{path}/{CHECKPOINT_FILE}") as out:
                out.write(data)
    except OSError as e:
        raise CheckpointError(f"ctx.save_checkpoint: cannot write {folder}: {e}") from None


def load_checkpoint(code: Code, trial_id: str) -> dict | None:
    """The trial's checkpoint, or None if it has none.

    Raises:
        CheckpointError: the checkpoint is there but damaged (its checksum does not match) or does not unpickle.
    """
    filesystem, folder = _fs(checkpoint_folder(code, trial_id))
    try:
        with filesystem.open_input_stream(f"{folder}/{CHECKPOINT_FILE}") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        if "not found" in str(e).lower() or "does not exist" in str(e).lower():
            return None
        raise CheckpointError(f"ctx.load_checkpoint: cannot read {folder}: {e}") from None
    head = len(CHECKPOINT_MAGIC)
    if data[:head] != CHECKPOINT_MAGIC or len(data) < head + 4 or \
            zlib.crc32(data[head + 4:]) != int.from_bytes(data[head:head + 4], "big"):
        raise CheckpointError(f"ctx.load_checkpoint: the checkpoint {folder}/{CHECKPOINT_FILE} is damaged (its "
                              "checksum does not match); delete it to start the trial over")
    try:
        return pickle.loads(data[head + 4:])
    except Exception as e:  # noqa: BLE001 - a class of the checkpoint that changed or vanished
        raise CheckpointError(f"ctx.load_checkpoint: the checkpoint {folder}/{CHECKPOINT_FILE} does not unpickle: "
                              f"{type(e).__name__}: {e}") from None


def drop_checkpoint(code: Code, trial_id: str) -> None:
    """Delete the trial's checkpoint folder, if any (best effort: a leftover costs only space)."""
    filesystem, folder = _fs(checkpoint_folder(code, trial_id))
    try:
        filesystem.delete_dir(folder)
    except (OSError, FileNotFoundError):
        pass
