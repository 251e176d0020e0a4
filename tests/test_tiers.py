"""The fast tier (`pytest -m "not slow"`) reaches every module of the package.

A module is reached when a test module of the fast tier (one not wholly marked slow) imports it,
or imports a module of the package that imports it, at any depth (imports inside functions count:
the fast tests call them). A new module that only slow tests reach fails here; give it a fast test.
What the fast tier executes, line by line, is measured with coverage:

    coverage run --source=paretolab -m pytest -m "not slow" && coverage report
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def folders() -> dict[str, str]:
    """Each top-level folder of the package and the subpackage it installs as (pyproject's package-dir)."""
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {folder: package for package, folder in mapping.items()}


def package_modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (`paretolab.store.files`; `__init__` is the package)."""
    found = {}
    for folder, package in folders().items():
        for path in sorted((ROOT / folder).glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imported(path: Path, package: str | None = None) -> set[str]:
    """The dotted names a file imports, at any depth, with `from x import y` counted as both x and x.y."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level and package:
                base = f"{package}.{base}" if base else package
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "paretolab"}


def wholly_slow(path: Path) -> bool:
    """Whether the module's `pytestmark` marks every test in it slow."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets):
            return "mark.slow" in ast.unparse(node.value)
    return False


@functools.cache
def reached() -> frozenset[str]:
    modules = package_modules()
    todo = set().union(*(imported(p) for p in sorted(TESTS.glob("test_*.py")) if not wholly_slow(p)))
    todo |= imported(TESTS / "support.py") | imported(TESTS / "conftest.py")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        for candidate in (name, name.rsplit(".", 1)[0]):
            if candidate in modules and candidate not in seen:
                seen.add(candidate)
                path = modules[candidate]
                package = candidate if path.stem == "__init__" else candidate.rsplit(".", 1)[0]
                todo |= imported(path, package)
    return frozenset(seen)


def test_every_module_is_reached_by_the_fast_tier():
    assert sorted(set(package_modules()) - reached()) == []


def test_the_check_sees_a_module_only_slow_tests_reach(tmp_path):
    """The rule is not vacuous: a module nothing imports is not reached, and a wholly slow test module reaches nothing."""
    assert "paretolab.not_a_module" not in reached()
    slow = tmp_path / "test_x.py"
    slow.write_text("import pytest\nimport paretolab.store\n\npytestmark = [pytest.mark.slow]\n")
    assert wholly_slow(slow) and imported(slow) == {"paretolab.store"}
    assert not wholly_slow(TESTS / "test_tiers.py")
