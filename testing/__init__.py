"""Conformance suites a plug-in's own tests run: the contract of each extension point, checked.

Each check is a plain function that raises `ConformanceError` (an `AssertionError`, so pytest
reports it as a failed test) naming the part of the contract an implementation breaks:

    from paretolab.testing import check_model, check_store, check_task, check_trainable

    def test_my_task():
        check_task("majority", {"n": 7})        # a registered name (or the class) and small arguments

The built-in tasks, models and store backends run these same checks in paretolab's own tests
(tests/test_tasks.py, tests/test_models.py, tests/test_store.py, tests/test_own_code.py).
Importing this package imports neither pytest nor torch; a check imports what it exercises.
"""

from __future__ import annotations

from paretolab.testing.expect import ConformanceError

__all__ = ["ConformanceError", "check_model", "check_store", "check_task", "check_trainable"]

_HOMES = {"check_task": "tasks", "check_model": "models", "check_trainable": "trainables", "check_store": "stores"}


def __getattr__(name: str):
    # Each suite imports the layer it checks (torch for tasks and models): only when it is asked for.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"paretolab.testing.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'paretolab.testing' has no attribute {name!r}")
