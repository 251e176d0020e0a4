"""Finding the researcher's function: `train.py:main` in the code's folder or `mypkg.train:main`,
imported once per process, again when one of its files changed; and where in that code an
exception was raised.

Importing records the modules it loaded from the code's own folders (the spec's folder, or the
package's), whose files the driver hashes into trial ids (`paretolab.user_code`). On a cluster the
code is where Ray's runtime environment unpacked it (`code_root`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
import sysconfig
import threading
import traceback
import types
from pathlib import Path

from paretolab.vocabulary.errors import clipped
from paretolab.vocabulary.trial import Code


_LOADED: dict[tuple[str, str, str], object] = {}
_LOCK = threading.Lock()


@dataclasses.dataclass
class _Import:
    """A module of the researcher's code as this process imported it: `owned`, the modules that the
    import loaded from the code's folders (itself among them, unless it was imported before), and
    `files`, the sha-256 of each of their files then. Until one of those files changes, loading it
    again is a lookup; once one does, it is imported again (a long-lived process, the driver of
    `paretolab.run` called twice or a worker, otherwise keeps the old code and, as nothing new is
    imported, hashes only the module's own file)."""

    module: types.ModuleType
    owned: dict[str, types.ModuleType]
    files: dict[str, str]

    def current(self) -> bool:
        return all(_file_hash(f) == h for f, h in self.files.items())


_IMPORTS: dict[tuple[str, str], _Import] = {}


def code_root(code: Code) -> str:
    """The folder the code is found in on this node: when it was shipped, the folder Ray's runtime
    environment unpacked it to: the directory this worker process started in, read once before any of
    the code runs (the code may change directories, into a trial's scratch folder that is removed
    after it), else the spec's folder."""
    return _started_in() if code.shipped else code.root


@functools.cache
def _started_in() -> str:
    return os.getcwd()


def split_target(target: str) -> tuple[str, str]:
    """`train.py:main` -> (`train.py`, `main`); `pkg.mod:main` -> (`pkg.mod`, `main`).

    Raises:
        ValueError: not `module:function` or `file.py:function`.
    """
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ValueError(f"expected module:function or file.py:function, got {target!r}")
    return where, name


def load_function(target: str, root: str):
    """Import the function `target` (`file.py:fn` relative to `root`, or `module:fn` importable with
    `root` first on `sys.path`); returns (the function, the files of every module the import loaded
    under `root` or the module's own package folder). The module is imported again when one of
    those files has changed since this process last imported it.

    Raises:
        ValueError: the module does not import, has no such name, or it is not callable.
    """
    where, name = split_target(target)
    with _LOCK:
        key = (os.path.abspath(root), where)
        found = _IMPORTS.get(key)
        if found is None or not found.current():
            found = _IMPORTS[key] = _import(where, root)
        else:  # its modules are found by name again (a checkpoint's classes unpickle through them)
            sys.modules.update(found.owned)
        fn = getattr(found.module, name, None)
        if fn is None:
            raise ValueError(f"{where} has no {name!r}")
        if not callable(fn):
            raise ValueError(f"{where}:{name} is not a function (a value of type {type(fn).__name__})")
        return fn, sorted(found.files)


def _import(where: str, root: str) -> _Import:
    """Import `where` afresh: the modules of the researcher's code imported before leave
    `sys.modules` first, so that a name two spec folders share (`train`, `helper`) is this folder's."""
    for known in _IMPORTS.values():
        for mod_name, module in known.owned.items():
            if sys.modules.get(mod_name) is module:
                del sys.modules[mod_name]
    if sys.path[:1] != [root]:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    importlib.invalidate_caches()
    before = set(sys.modules)
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:  # no .pyc of the researcher's code: one written moments before an edit that keeps the file's
        # size and second would be taken for the edited file, and the old code would run under the new id
        if where.endswith(".py"):
            module = _import_file(Path(root) / where)
        else:
            module = importlib.import_module(where)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a SyntaxError, an ImportError, a sys.exit() at import
        raise ValueError(f"{where} does not import: {exception_line(e)}") from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
    bases = [os.path.abspath(root)]
    file = getattr(module, "__file__", None)
    if file and not where.endswith(".py"):  # an installed package: its own folder
        top_file = getattr(sys.modules.get(where.split(".")[0]), "__file__", None)
        if top_file:
            bases.append(os.path.dirname(os.path.abspath(top_file)))
    files = {os.path.abspath(file)} if file else set()
    owned = {}
    for mod_name in set(sys.modules) - before:
        f = getattr(sys.modules.get(mod_name), "__file__", None)
        if f and f.endswith(".py") and any(os.path.abspath(f).startswith(b + os.sep) for b in bases):
            files.add(os.path.abspath(f))
            owned[mod_name] = sys.modules[mod_name]
    return _Import(module, owned, {f: _file_hash(f) for f in files})


def _file_hash(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _import_file(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.stem if path.stem.isidentifier() else "paretolab_trainable"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickled objects of its classes (a checkpoint) find their module by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def function_of(code: Code, target: str | None = None):
    """The trial's function (or `target`, its vectorized variant), imported once per worker process."""
    target = target or code.name
    root = code_root(code)
    key = (root, target, code.digest)
    fn = _LOADED.get(key)
    if fn is None:
        fn = _LOADED[key] = load_function(target, root)[0]
    return fn


def exception_line(e: BaseException) -> str:
    """`Type: message (file:line)` of an exception on one line, naming where in the researcher's code
    it was raised (the last frame that is neither paretolab's nor the import machinery's)."""
    if isinstance(e, SyntaxError):
        text = "".join(traceback.format_exception_only(e)).strip().splitlines()
        return f"{text[-1]} ({e.filename}:{e.lineno})" if len(text) > 1 else text[-1]
    text = traceback.format_exception_only(e)[0]  # (what follows it: the exception's notes)
    line = " ".join(part.strip() for part in text.splitlines() if part.strip()) or type(e).__name__
    line = clipped(line, ERROR_CHARS)  # a message of megabytes would be copied into every view of the trial
    frames = [f for f in traceback.extract_tb(e.__traceback__)
              if not f.filename.startswith(_NOT_THEIRS) and not f.filename.startswith("<")]  # <frozen importlib...>
    own = [f for f in frames if not f.filename.startswith(_LIBRARIES)]  # their line, not torch's that raised
    if own or frames:
        where = (own or frames)[-1]
        line = f"{line} ({os.path.basename(where.filename)}:{where.lineno})"
    return line


ERROR_CHARS = 2000  # of an exception's message kept as a trial's error
_NOT_THEIRS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(importlib.__file__)))
_LIBRARIES = tuple({os.path.abspath(sysconfig.get_path(p)) + os.sep for p in ("stdlib", "platstdlib", "purelib", "platlib")})
