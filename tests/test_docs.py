"""Every fenced code block of README.md and docs/*.md is run here, or excused in the docs themselves.

A block is excused by an HTML comment on the line right before its fence, `<!-- not run: REASON -->`;
every other block must be of a kind this file runs, so a new block cannot go untested:

- a shell block whose commands all start with `paretolab` (with `$ ` prompts, the lines after a
  command are its output and are not compared): each command runs in a folder where `examples/` is
  the repository's and `results/` is a store that the quickstart sweep filled once for the module;
  its exit status must be 0 (or N after `<!-- exit status N -->`). `<!-- dry run: REASON -->` runs
  the commands with `--dry-run` added (sweeps too long for the docs' tests: the specs are still
  read and checked);
- a `python` block: run as a script in that folder;
- a `yaml` block with a `sweep:` key: a whole spec, read by `paretolab.load_spec` (beside the example
  of the same sweep name, so the files it names are there); a fragment after `<!-- fragment of
  PATH -->` replaces those top-level keys of the spec PATH and is read the same way; any other
  `yaml` block must at least be YAML of a mapping;
- a `toml` block: parsed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import paretolab

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*$")
NOTE = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")
SHELL = ("", "sh", "shell", "bash", "console")
CLI_TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    page: str        # path relative to the repository
    line: int        # line of the opening fence, 1-based
    lang: str
    text: str        # dedented by the fence's indentation
    note: str        # the HTML comment on the line before the fence, or ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def parse(page: Path) -> list[Block]:
    """The fenced blocks of one Markdown page."""
    lines, found, i = page.read_text().splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group(1)), m.group(2), m.group(3).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence[0] * len(fence))), None)
        assert end is not None, f"{page.name}:{i + 1}: fence never closed"
        note = NOTE.match(lines[i - 1]) if i else None
        body = "\n".join(line[indent:] if not line[:indent].strip() else line for line in lines[i + 1:end])
        found.append(Block(str(page.relative_to(ROOT)), i + 1, lang, body + "\n", note.group(1) if note else ""))
        i = end + 1
    return found


BLOCKS = [block for page in PAGES for block in parse(page)]


def commands(block: Block) -> list[str]:
    """The commands of a shell block: its `$ ` lines where it has any, else every line (comments dropped)."""
    text = block.text.replace("\\\n", " ")
    lines = [line.rstrip() for line in text.splitlines()]
    prompted = [line[2:] for line in lines if line.startswith("$ ")]
    if prompted:
        return prompted
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def kind(block: Block) -> str:
    """What this file does with a block; 'unknown' fails test_every_block_is_run_or_excused."""
    if block.note.startswith("not run:"):
        return "excused"
    if block.lang in SHELL:
        runnable = all(shlex.split(c, comments=True)[:1] == ["paretolab"] for c in commands(block))
        if runnable and commands(block):
            return "dry run" if block.note.startswith("dry run:") else "cli"
        return "unknown"
    if block.lang == "python":
        return "python"
    if block.lang in ("yaml", "yml"):
        if block.note.startswith("fragment of "):
            return "fragment"
        data = yaml.safe_load(block.text)
        return "spec" if isinstance(data, dict) and "sweep" in data else "yaml"
    if block.lang == "toml":
        return "toml"
    return "unknown"


def of_kind(*kinds: str) -> list:
    return [pytest.param(b, id=b.id) for b in BLOCKS if kind(b) in kinds]


def test_every_block_is_run_or_excused():
    assert len(BLOCKS) > 20  # the parser found the blocks at all
    unknown = [b.id for b in BLOCKS if kind(b) == "unknown"]
    assert not unknown, (f"blocks neither run nor excused: {unknown}; make them runnable or put "
                         "`<!-- not run: REASON -->` on the line before the fence")
    for b in BLOCKS:
        if kind(b) in ("excused", "dry run"):
            assert b.note.split(":", 1)[1].strip(), f"{b.id}: say why the block is not run"


def test_readme_keeps_its_two_setup_lines():
    first = parse(ROOT / "README.md")[0].text.splitlines()
    assert first == ['pip install -e ".[test]" && paretolab run examples/quickstart.yaml',
                     'pip install -e ".[test]" && pytest']


@pytest.mark.slow  # a CLI process per command
def test_readme_lists_every_command():
    help_text = subprocess.run(cli() + ["--help"], capture_output=True, text=True, check=True).stdout
    names = re.search(r"\{([a-z,_-]+)\}", help_text).group(1).split(",")
    readme = (ROOT / "README.md").read_text()
    missing = [n for n in names if f"`paretolab {n}" not in readme]
    assert not missing, f"README's commands table lacks {missing}"


# --- blocks run against the quickstart's store -----------------------------------------------------

def cli() -> list[str]:
    """The `paretolab` entry point of this interpreter's environment."""
    beside = Path(sys.executable).with_name("paretolab")
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "import sys; from paretolab.cli import main; sys.exit(main())"]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PARETOLAB_STORE", "RAY_ADDRESS")}
    return env | {"COLUMNS": "120", "PYTHONUNBUFFERED": "1"}


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def explain(block: Block, what: str, done: subprocess.CompletedProcess) -> str:
    return f"{block.id}: {what} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with the repository's examples/, a docs/ for plots, and results/: the quickstart's store."""
    folder = tmp_path_factory.mktemp("docs_run")
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / "docs").mkdir()
    done = run(cli() + ["run", "examples/quickstart.yaml"], folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "results").is_dir()
    return folder


def expected_status(block: Block) -> int:
    m = re.fullmatch(r"exit status (\d+)", block.note)
    return int(m.group(1)) if m else 0


@pytest.mark.slow
@pytest.mark.parametrize("block", of_kind("cli", "dry run"))
def test_cli_block(block: Block, workdir: Path):
    for command in commands(block):
        argv = shlex.split(command, comments=True)[1:]
        if kind(block) == "dry run":
            argv.append("--dry-run")
        done = run(cli() + argv, workdir)
        assert done.returncode == expected_status(block), explain(block, command, done)


@pytest.mark.slow
@pytest.mark.parametrize("block", of_kind("python"))
def test_python_block(block: Block, workdir: Path):
    script = workdir / f"block_{Path(block.page).stem}_{block.line}.py"
    script.write_text(block.text)
    done = run([sys.executable, str(script)], workdir)
    assert done.returncode == 0, explain(block, "the script", done)


# --- specs, fragments, other formats: parsed, nothing run ------------------------------------------

@pytest.fixture
def examples(tmp_path) -> Path:
    """A copy of examples/ to write specs into, beside the files they name."""
    return Path(shutil.copytree(ROOT / "examples", tmp_path / "examples"))


def beside_example(examples: Path, name: str) -> Path:
    """The folder of the example spec of sweep `name` (the examples' root when there is none)."""
    for path in sorted(examples.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and data.get("sweep") == name:
            return path.parent
    return examples


@pytest.mark.parametrize("block", of_kind("spec"))
def test_spec_block(block: Block, examples: Path):
    data = yaml.safe_load(block.text)
    path = beside_example(examples, data["sweep"]) / f"docs_{block.line}.yaml"
    path.write_text(block.text)
    sweep = paretolab.load_spec(path)
    assert sweep.name == data["sweep"]


@pytest.mark.parametrize("block", of_kind("fragment"))
def test_fragment_block(block: Block, examples: Path):
    base_path = examples / Path(block.note.removeprefix("fragment of ")).relative_to("examples")
    fragment = yaml.safe_load(block.text)
    assert isinstance(fragment, dict), f"{block.id}: not a mapping"
    merged = yaml.safe_load(base_path.read_text()) | fragment
    path = base_path.with_name(f"docs_{block.line}.yaml")
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    paretolab.load_spec(path)


@pytest.mark.parametrize("block", of_kind("yaml"))
def test_yaml_block(block: Block):
    assert isinstance(yaml.safe_load(block.text), dict), f"{block.id}: not a YAML mapping"


@pytest.mark.parametrize("block", of_kind("toml"))
def test_toml_block(block: Block):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert tomllib.loads(block.text)
