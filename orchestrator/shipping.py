"""The researcher's code on its way to the workers: where its checkpoints go, and the Ray runtime
environment that ships it to a cluster's workers."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

from paretolab.store import Store
from paretolab.vocabulary.errors import ClusterError
from paretolab.vocabulary.schema import CHECKPOINTS


def placed(sweep, st: Store, address: str | None):
    """`sweep` with its code's checkpoints placed (the store's `checkpoints/` folder unless the spec
    sets `checkpoint_dir`) and, when the run joins a cluster, marked to be shipped to its workers:
    the run is given an address other than `local` (or `RAY_ADDRESS` is one), or this process is
    connected already to a Ray it did not start itself (which `clusters.connect.connect` keeps,
    whatever the address)."""
    code = sweep.code
    checkpoints = code.checkpoints or (str(st.root.resolve() / CHECKPOINTS) if st.root is not None and st.loc.local
                                       else f"{st.uri.rstrip('/')}/{CHECKPOINTS}")
    ray = sys.modules.get("ray")  # not imported for it: a process that has not imported Ray is not connected
    if ray is not None and ray.is_initialized():
        node = ray._private.worker._global_node  # None in a Ray Client session; `head` when ray.init() started it
        joins = node is None or not node.head
    else:
        joins = (address or os.environ.get("RAY_ADDRESS") or "local") != "local"

    def place(c):
        return dataclasses.replace(c, checkpoints=c.checkpoints or checkpoints, shipped=joins)

    return dataclasses.replace(sweep, code=place(code), codes=tuple((name, place(c)) for name, c in sweep.codes))


def actor_options(sweep, st: Store) -> dict:
    """The worker actors' options that ship the researcher's code to a cluster: the spec's folder as
    Ray's `working_dir` (without the store, the checkpoints, `.git` and caches; Ray also skips what
    a `.gitignore` or `.rayignore` there lists), and a package imported from outside it and outside
    the installed packages as a `py_modules` entry.

    Ray takes local folders only in `ray.init`'s job-wide environment (an actor's `runtime_env` must
    name packages the cluster already holds: Ray 2.60 refuses a path), so they are uploaded here, as
    `ray.init` does: zipped, content-addressed (an unchanged folder is not sent again), at most 512
    MiB zipped. Ray keeps an uploaded package while a worker uses it, and for 10 minutes after the
    upload (`RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S`).

    Raises:
        ClusterError: the folder cannot be uploaded (too large, unreadable).
    """
    code = sweep.code
    if code is None or not code.shipped:
        return {}
    import importlib.util
    import inspect
    import sysconfig
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    from paretolab.workers.importing import split_target

    root = Path(code.root)
    common = [".git", "__pycache__", "*.pyc", ".venv"]  # gitignore-style patterns, relative to the folder uploaded
    inside = [Path(p).resolve() for p in (st.root, None if "://" in code.checkpoints else code.checkpoints) if p]
    excludes = common + ["/" + str(p.relative_to(root)) for p in inside if root in p.parents]
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    modules = set()
    codes = (code, *(c for _, c in sweep.codes))  # with `trainable` as an axis: one per function
    targets = {t for c in codes if c.kind == "function" for t in (c.name, c.vectorized) if t}
    for where in (split_target(t)[0] for t in targets):
        found = None if where.endswith(".py") else importlib.util.find_spec(where.split(".")[0])
        places = [] if found is None else list(found.submodule_search_locations or []) or \
            ([found.origin] if found.has_location else [])
        origin = Path(places[0]).resolve() if places else None  # a namespace package: its first folder
        if origin is not None and origin != root and root not in origin.parents and \
                not any(p in origin.parents for p in installed) and \
                not {"site-packages", "dist-packages"} & set(origin.parts):
            modules.add(str(origin))
    # Ray 2.52 added `include_gitignore` (what `ray.init` passes); before, the upload read the variable itself
    gitignore = {"include_gitignore": os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"} \
        if "include_gitignore" in inspect.signature(upload_working_dir_if_needed).parameters else {}
    try:
        with tempfile.TemporaryDirectory(prefix="paretolab-ship-") as scratch:
            env = upload_working_dir_if_needed({"working_dir": str(root), "excludes": excludes}, scratch_dir=scratch,
                                               **gitignore)
            if modules:
                env |= upload_py_modules_if_needed({"py_modules": sorted(modules), "excludes": common},
                                                   scratch_dir=scratch, **gitignore)
    except Exception as e:  # noqa: BLE001 - Ray's RuntimeEnvSetupError, ValueError or OSError
        raise ClusterError(f"cannot ship the code in {root} to the cluster: {str(e).splitlines()[0]}; keep large "
                           "files out of the spec's folder, or list them in a .gitignore or .rayignore there") from None
    env.pop("excludes", None)
    return {"runtime_env": env}
