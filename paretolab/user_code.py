"""The keys of a spec that name the researcher's own code, resolved on the driver into a `Code`.

`trainable: train.py:main` (a file of the spec's folder) or `trainable: mypkg.train:main` (an
importable module) is imported here once, so that a name that does not import or is not callable
is a spec error before anything runs, and so that its files can be hashed; `command: [...]` is
checked for placeholders that name no parameter and for a program that cannot be found.

What is hashed into every trial's id (`Code.digest`), besides the spec's `version:`:
- a function: the source file that defines it, and every other Python module that importing it
  loaded from the spec's folder (or, for a module of a package, from that package's folder);
- a command: every file that an argument of the command names (e.g. `train.py`), relative to the
  spec's folder.
Code that these do not cover (a module imported only inside the function, a data file) is covered
by `version:`: change it when such code changes.
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import shutil
from pathlib import Path

from paretolab.vocabulary.errors import SpecError, clipped, shown
from paretolab.vocabulary.trial import Code



def resolve(raw: dict, path: str, names: set[str]) -> Code:
    """The `Code` of a spec's `trainable` or `command` and its companion keys; `names` are the
    parameters the trials' configs hold (besides `seed`).

    Raises:
        SpecError: the function does not import or is not callable, the file does not exist, a
            command's program is not found or a placeholder names no parameter, a bad companion key.
    """
    root = str(Path(path).resolve().parent) if path and not path.startswith("<") else os.getcwd()
    version = raw.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int, float))):
        raise SpecError(f"{path}: version: expected a string or a number (e.g. 3, or \"2026-11-30\"), got {shown(version)}")
    timeout = raw.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout) or timeout <= 0:
            raise SpecError(f"{path}: timeout_s: expected seconds > 0, got {shown(timeout)}")
        if raw.get("command") is None:
            raise SpecError(f"{path}: timeout_s: ends a command that hangs; a function cannot be ended from outside "
                            "(stop it in the function, or run it as a `command:`)")
    keep = raw.get("keep_checkpoints", False)
    if not isinstance(keep, bool):
        raise SpecError(f"{path}: keep_checkpoints: expected true or false, got {shown(keep)}")
    checkpoints = raw.get("checkpoint_dir")
    if checkpoints is not None:
        if not isinstance(checkpoints, str) or not checkpoints.strip():
            raise SpecError(f"{path}: checkpoint_dir: expected a folder or a URI (s3://bucket/prefix), got {shown(checkpoints)}")
        checkpoints = checkpoints if "://" in checkpoints else str(Path(root, os.path.expanduser(checkpoints)).resolve())
    common = dict(root=root, version=None if version is None else str(version), keep_checkpoints=keep,
                  checkpoints=checkpoints or "")
    if raw.get("trainable") is not None:
        return _function(raw, path, root, names, common)
    for key in ("vectorized", "pack_by"):
        if raw.get(key) is not None:
            raise SpecError(f"{path}: {key}: packs a function's trials; a command is never packed")
    return _command(raw.get("command"), path, root, names, timeout, common)


def _function(raw: dict, path: str, root: str, names: set[str], common: dict) -> Code:
    from paretolab.workers.importing import load_function

    files: set[str] = set()
    targets = {"trainable": raw["trainable"]}
    if raw.get("vectorized") is not None:
        targets["vectorized"] = raw["vectorized"]
    for key, target in targets.items():
        if not isinstance(target, str) or ":" not in target:
            raise SpecError(f"{path}: {key}: expected module:function or file.py:function (e.g. train.py:main), "
                            f"got {shown(target)}")
        where = target.rpartition(":")[0]
        if where.endswith(".py") and not Path(root, where).is_file():
            raise SpecError(f"{path}: {key}: no file {shown(where)} in the spec's folder {root}")
        try:
            _, loaded = load_function(target, root)
        except ValueError as e:
            raise SpecError(f"{path}: {key}: {clipped(str(e), 300)}") from None
        files.update(loaded)
    pack_by = raw.get("pack_by", [])
    if not isinstance(pack_by, list) or any(not isinstance(p, str) or p not in names for p in pack_by):
        raise SpecError(f"{path}: pack_by: expected a list of the sweep's parameters ({', '.join(sorted(names))}), "
                        f"got {shown(pack_by)}")
    if pack_by and "vectorized" not in targets:
        raise SpecError(f"{path}: pack_by: says which trials a vectorized function trains together; set `vectorized:` too")
    return Code(kind="function", name=raw["trainable"], digest=digest(files, root),
                vectorized=targets.get("vectorized"), pack_by=tuple(pack_by), **common)


def _command(raw, path: str, root: str, names: set[str], timeout, common: dict) -> Code:
    from paretolab.workers.command import SPECIAL, placeholders

    if isinstance(raw, str):
        try:
            args = shlex.split(raw)
        except ValueError as e:
            raise SpecError(f"{path}: command: {e} in {shown(raw)}") from None
    elif isinstance(raw, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in raw):
        args = [str(a) for a in raw]
    else:
        raise SpecError(f"{path}: command: expected a list of arguments or a string, e.g. "
                        f"[python, train.py, --lr, \"{{lr}}\"], got {shown(raw)}")
    if not args:
        raise SpecError(f"{path}: command: the command is empty")
    try:
        used = placeholders(tuple(args))
    except ValueError as e:
        raise SpecError(f"{path}: command: {e}") from None
    for name in sorted(names & set(SPECIAL)):
        raise SpecError(f"{path}: {name}: names what a command's placeholder {{{name}}} gives (the trial's own); "
                        "rename the parameter")
    known = names | {"seed"} | set(SPECIAL)
    for name in sorted(used - known):
        raise SpecError(f"{path}: command: the placeholder {{{name}}} names no parameter; parameters: "
                        f"{', '.join(sorted(known))}")
    program = args[0]
    if "{" not in program and program not in ("python", "python3") and shutil.which(program) is None and \
            not Path(root, program).is_file():
        raise SpecError(f"{path}: command: {shown(program)} not found (not on PATH, not a file of the spec's folder)")
    files = {str(Path(root, a).resolve()) for a in args if "{" not in a and Path(root, a).is_file()}
    return Code(kind="command", name=" ".join(shlex.quote(a) for a in args), command=tuple(args),
                digest=digest(files, root), timeout_s=None if timeout is None else float(timeout), **common)


def digest(files, root: str) -> str:
    """The hash of `files`: their bytes, each under its path relative to `root` where it lies under
    it, else relative to the entry of `sys.path` it was imported from (`mypkg/train.py` of an
    installed package: the same code hashes the same wherever a machine installed it)."""
    h = hashlib.sha256()
    for name, f in sorted((_portable(os.path.abspath(f), root), f) for f in files):
        data = Path(f).read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _portable(path: str, root: str) -> str:
    """`path` relative to `root` if it lies under it, else to the deepest `sys.path` entry it lies
    under, else as it is."""
    import sys

    bases = [os.path.abspath(root)] + sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True)
    for base in bases:
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, base)
    return path
