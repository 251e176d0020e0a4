"""Packaging: one installed package, subpackages mapped from the top-level folders, light imports."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("orchestrator", "workers", "models", "tasks", "analysis", "clusters", "store", "vocabulary", "testing")


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, cwd="/")
    return set(out.stdout.split())


def test_import_paretolab_is_light():
    loaded = modules_after("import paretolab")
    assert not {"torch", "ray", "matplotlib"} & loaded


def test_help_is_light():
    code = ("import sys; sys.argv = ['paretolab', '--help']\n"
            "from paretolab.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass")
    loaded = modules_after(code)
    assert "paretolab.cli" in loaded
    assert not {"torch", "ray", "matplotlib"} & loaded


def test_parsing_every_example_spec_is_light():
    """Reading and validating a spec imports neither torch, ray nor matplotlib: a typo is reported at once.
    (A spec of your own function imports your module, to hash the code it loads: that may import torch.)"""
    specs = sorted(str(p) for p in (ROOT / "examples").rglob("*.yaml") if "trainable:" not in p.read_text())
    loaded = modules_after("import paretolab\n" + "".join(f"paretolab.load_spec({p!r})\n" for p in specs))
    assert len(specs) > 10 and not {"torch", "ray", "matplotlib"} & loaded


def test_a_spec_typo_is_reported_without_torch(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text((ROOT / "examples" / "quickstart.yaml").read_text().replace("max_steps:", "max_stepz:"))
    code = (f"import sys, paretolab\ntry:\n    paretolab.load_spec({str(spec)!r})\nexcept paretolab.ParetolabError as e:\n"
            "    print(type(e).__name__, 'max_stepz' in str(e))\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["SpecError", "True", "False"]


def test_analysis_needs_neither_torch_nor_ray():
    loaded = modules_after("import paretolab.store.store, paretolab.analysis.status")
    assert not {"torch", "ray", "matplotlib"} & loaded


def test_folders_are_subpackages_of_paretolab():
    for folder in FOLDERS:
        spec = importlib.util.find_spec(f"paretolab.{folder}")
        assert spec is not None and Path(spec.origin).parent == ROOT / folder
    # outside the checkout (as an installed user sees it) no bare top-level package exists
    code = f"import importlib.util; print([f for f in {FOLDERS!r} if importlib.util.find_spec(f)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_no_bare_imports_of_top_level_folders():
    bare = re.compile(rf"^\s*(from|import)\s+({'|'.join(FOLDERS)})\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                 if ".venv" not in p.parts and bare.search(p.read_text())]
    assert offenders == []


def test_console_script_runs():
    out = subprocess.run(["paretolab", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout and "query" in out.stdout
