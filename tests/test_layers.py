"""The architecture as the code's own imports draw it: every layer imports downward only.

`paretolab` (API, CLI, spec) -> `orchestrator` -> `workers` -> `models` -> `tasks` -> `vocabulary`; the
orchestrator writes through `store`; `analysis` -> `store` -> `vocabulary`. Every import counts,
also one inside a function (a lazy import hides a cycle, it does not remove it).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("paretolab", "orchestrator", "workers", "models", "tasks", "store", "analysis", "clusters", "vocabulary", "testing",
          "serve")
# what each layer may import of paretolab, itself included
ALLOWED = {
    "vocabulary": {"vocabulary"},
    "tasks": {"tasks", "vocabulary"},
    "workers": {"workers", "models", "tasks", "vocabulary"},
    "models": {"models", "tasks", "vocabulary"},
    "store": {"store", "vocabulary"},
    "analysis": {"analysis", "store", "vocabulary"},
    "clusters": {"clusters", "vocabulary"},
    "orchestrator": {"orchestrator", "workers", "models", "tasks", "store", "clusters", "vocabulary"},
    "paretolab": set(LAYERS),
    "testing": set(LAYERS),  # the conformance suites exercise every layer
    "serve": {"serve", "analysis", "store", "vocabulary"},  # the web view reads as the analysis does
}
# third-party packages a layer must never import, even lazily
FORBIDDEN = {
    "vocabulary": {"torch", "ray", "duckdb", "pyarrow", "matplotlib", "optuna", "numpy"},
    "store": {"torch", "ray", "matplotlib", "optuna"},
    "analysis": {"torch", "ray", "optuna"},
    "tasks": {"ray", "duckdb", "optuna", "matplotlib"},
    "models": {"ray", "duckdb", "optuna", "matplotlib"},
    "testing": {"pytest"},  # a plug-in's tests call the suites from any runner
    "serve": {"torch", "ray", "optuna"},
}


def modules() -> dict[str, Path]:
    """Every module of the package, by the layer it belongs to (`paretolab/report.py` -> paretolab)."""
    found = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).glob("*.py")):
            found[f"{layer}/{path.name}"] = path
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    layer = path.parent.name
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` inside paretolab.<layer>
                base = "paretolab" if layer == "paretolab" else f"paretolab.{layer}"
                out.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            elif node.module:
                out.append((node.lineno, node.module))
    return out


def layer_of(module: str) -> str | None:
    """The layer an imported paretolab module belongs to; None for a module outside paretolab."""
    parts = module.split(".")
    if parts[0] != "paretolab":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "paretolab"


def test_every_layer_is_found():
    layers = {name.split("/")[0] for name in modules()}
    assert layers == set(LAYERS)


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_downward(name):
    path = modules()[name]
    layer = path.parent.name
    wrong = [f"{name}:{line} imports {module}" for line, module in imports(path)
             if (target := layer_of(module)) is not None and target not in ALLOWED[layer]]
    heavy = [f"{name}:{line} imports {module}" for line, module in imports(path)
             if module.split(".")[0] in FORBIDDEN.get(layer, ())]
    assert wrong + heavy == []


def test_vocabulary_imports_only_the_standard_library():
    for name, path in modules().items():
        if name.startswith("vocabulary/"):
            outside = [m for _, m in imports(path)
                       if layer_of(m) is None and m.split(".")[0] not in sys.stdlib_module_names]
            assert outside == [], name


def test_the_checker_sees_a_wrong_arrow(tmp_path):
    """The rule is not vacuous: an upward import in a worker module is reported."""
    fake = tmp_path / "workers" / "bad.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from paretolab.orchestrator import scheduler\n")
    assert [layer_of(m) for _, m in imports(fake)] == ["orchestrator"]
    assert "orchestrator" not in ALLOWED["workers"]
