"""The spec's hand-written checks against a validation library: import cost, time per spec, and how
many of the bad-input table's messages the library could give without translation.

    python benchmarks/spec_validation.py                 # 5 fresh interpreters per import, 50 rounds
    python benchmarks/spec_validation.py --repeat 3 --rounds 10

(a) paretolab: `import paretolab.spec` in a fresh interpreter (the least of `--repeat` runs, less an
    empty interpreter's start), and `import torch` alone, which it includes today (the task registry
    imports every task's module); then `load_spec` of every example spec (file, YAML and the
    parser's checks) and the parser alone on the same already-read dicts.
(b) pydantic v2, msgspec (when installed) and jsonschema: the import in a fresh interpreter, then
    the same dicts validated against a hand model of the top-level keys built from the parser's
    constants (TOP_KEYS, the task and model names, the enumerations; the sections' keys), and,
    for jsonschema, against the shipped paretolab/spec.schema.json.
(c) the bad-input table (tests/test_bad_input.py): of its rows whose spec YAML reads, how many the
    pydantic model refuses, and how many of pydantic's messages hold the fragment the table pins
    (what the parser's one-line errors say: file, key, bad value and what is allowed).

Nothing here is a dependency of paretolab: `pip install pydantic msgspec jsonschema` first.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]

from _common import machine_line  # noqa: E402

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples" / "own_code").rglob("*.yaml"))


def import_s(module: str, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds that `import module` adds to a fresh interpreter's start, the least of
    `repeat` runs each (CPU: the child's user + system time, less sensitive to a busy machine)."""
    def least(code: str) -> tuple[float, float]:
        runs = []
        for _ in range(repeat):
            before, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs.append((time.perf_counter() - t,
                         after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime))
        return min(w for w, _ in runs), min(c for _, c in runs)

    (wall, cpu), (wall0, cpu0) = least(f"import {module}"), least("pass")
    return wall - wall0, cpu - cpu0


def torch_share_ms(module: str, repeat: int) -> tuple[float, float]:
    """(all, torch's) milliseconds of `import module` by `python -X importtime` (the least of `repeat`)."""
    runs = []
    for _ in range(repeat):
        err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], check=True, cwd="/",
                             capture_output=True, text=True).stderr
        rows = [line.split("|") for line in err.splitlines() if line.startswith("import time:") and "self" not in line]
        whole = sum(int(r[1]) for r in rows if r[2].strip() == module)  # cumulative: with what it imports
        torch = sum(int(r[1]) for r in rows if r[2].strip() == "torch")
        runs.append((whole / 1e3, torch / 1e3))
    return min(runs)


def imported(label: str, module: str, repeat: int) -> str:
    wall, cpu = import_s(module, repeat)
    return f"{label:<33}{wall * 1e3:8.0f} ms wall {cpu * 1e3:8.0f} ms CPU"


def per_spec_ms(check, items, rounds: int) -> float:
    """Mean milliseconds of `check(item)` over `rounds` passes over `items` (after one warm pass)."""
    for item in items:
        check(item)
    t = time.perf_counter()
    for _ in range(rounds):
        for item in items:
            check(item)
    return (time.perf_counter() - t) / (rounds * len(items)) * 1e3


def pydantic_model():
    """A pydantic v2 model of a spec's top-level keys, from the parser's constants."""
    from pydantic import ConfigDict, Field, create_model

    from paretolab.spec import EVAL_KEYS, RESOURCE_KEYS, SUCCESS_KEYS, TOP_KEYS
    from paretolab.spec_values import MAX_SEED, MAX_SEED_COUNT
    from paretolab.tasks.registry import tasks
    from paretolab.vocabulary.success import Success
    from paretolab.models.registry import models

    strict = ConfigDict(extra="forbid")
    scalar = Optional[Union[bool, int, float, str]]
    positive = Field(default=None, ge=1)
    sections = {
        "eval": create_model("Eval", __config__=strict, **{k: (Optional[int], positive) for k in EVAL_KEYS}),
        "success": create_model("SuccessKeys", __config__=strict, **{k: (Optional[Success.__annotations__[k]], None)
                                                                       for k in SUCCESS_KEYS}),
        "resources": create_model("Resources", __config__=strict, **dict(zip(RESOURCE_KEYS, [
            (Optional[float], Field(default=None, gt=0)), (Optional[float], Field(default=None, ge=0)),
            (Optional[Union[Literal["auto"], int]], None)]))),
    }
    axis = Union[list[scalar], dict[str, list[float]]]
    fields = {
        "sweep": (str, ...), "task": (Optional[Literal[tuple(tasks())]], None),
        "model": (Optional[Literal[tuple(models())]], None),
        "task_args": (Optional[dict[str, object]], None), "model_args": (Optional[dict[str, object]], None),
        "trainable": (Optional[str], None), "command": (Optional[Union[str, list[Union[str, float]]]], None),
        "vectorized": (Optional[str], None), "pack_by": (Optional[list[str]], None),
        "version": (Optional[Union[str, float]], None), "timeout_s": (Optional[float], Field(default=None, gt=0)),
        "checkpoint_dir": (Optional[str], None), "keep_checkpoints": (bool, False),
        "grid": (Optional[dict[str, axis]], None), "zip": (Optional[Union[dict[str, axis], list[dict[str, axis]]]], None),
        "fixed": (Optional[dict[str, scalar]], None),
        "seeds": (Union[Annotated[int, Field(ge=1, le=MAX_SEED_COUNT)], list[Annotated[int, Field(ge=0, le=MAX_SEED)]]],
                  1),
        "max_steps": (Optional[int], positive),
        **{k: (Optional[m], None) for k, m in sections.items()},
        "max_attempts": (int, Field(default=3, ge=1)), "search": (Optional[dict], None), "tune": (Optional[dict], None),
    }
    assert set(fields) == set(TOP_KEYS), set(fields) ^ set(TOP_KEYS)
    return create_model("Spec", __config__=strict, **fields)


def msgspec_type():
    """The same top-level keys as a msgspec Struct (unknown fields refused)."""
    import msgspec

    from paretolab.spec import TOP_KEYS
    from paretolab.tasks.registry import tasks
    from paretolab.models.registry import models

    scalar = Optional[Union[bool, int, float, str]]
    axis = Union[list[scalar], dict[str, list[float]]]
    types = {"sweep": str, "task": Optional[Literal[tuple(tasks())]], "model": Optional[Literal[tuple(models())]],
             "command": Optional[Union[str, list[Union[str, float]]]], "version": Optional[Union[str, float]],
             "timeout_s": Optional[float], "keep_checkpoints": bool, "pack_by": Optional[list[str]],
             "grid": Optional[dict[str, axis]], "zip": Optional[Union[dict[str, axis], list[dict[str, axis]]]],
             "fixed": Optional[dict[str, scalar]], "seeds": Union[int, list[int]], "max_steps": Optional[int],
             "max_attempts": int}
    fields = [(k, types.get(k, Optional[Union[str, dict]]), msgspec.field(default=None) if k != "sweep" else
               msgspec.NODEFAULT) for k in TOP_KEYS]
    fields.sort(key=lambda f: f[2] is not msgspec.NODEFAULT)  # required fields first
    return msgspec.defstruct("Spec", fields, forbid_unknown_fields=True)


def bad_input_rows(model):
    """(rows whose YAML reads, rows the model refuses, rows whose pinned fragment its message holds)."""
    from pydantic import ValidationError
    from test_bad_input import CASES

    from paretolab.errors import SpecError
    from paretolab.spec_yaml import load

    read = refused = same = 0
    for _, spec, _, fragment in CASES:
        text = spec.get("spec.yaml") if isinstance(spec, dict) else spec
        if not isinstance(text, str):
            continue  # a Python spec, raw bytes or a CLI row: no dict to validate
        try:
            raw = load(text, "spec.yaml")
        except SpecError:
            continue  # the YAML loader's own error (syntax, keys set twice, aliases): before any validation
        read += 1
        try:
            model.model_validate(raw)
        except ValidationError as e:
            refused += 1
            same += fragment in str(e)
    return read, refused, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="fresh interpreters per import measured")
    ap.add_argument("--rounds", type=int, default=50, help="passes over the examples per validation measured")
    args = ap.parse_args()
    print(machine_line())

    from paretolab import spec
    from paretolab.spec_yaml import load

    raws = [(p, load(p.read_text(), str(p))) for p in EXAMPLES]
    print(f"{len(EXAMPLES)} example specs; import times: least of {args.repeat} fresh interpreters, less `python -c pass`")
    print(imported("(a) import paretolab.spec", "paretolab.spec", args.repeat))
    print(imported("    import torch (included)", "torch", args.repeat))
    total, torch = torch_share_ms("paretolab.spec", args.repeat)
    print(f"    by -X importtime: {total:.0f} ms, of which torch {torch:.0f} ms, the rest {total - torch:.0f} ms")
    print(f"    load_spec, per example       {per_spec_ms(spec.load_spec, EXAMPLES, args.rounds):8.2f} ms")
    print(f"    the parser alone, per dict   "
          f"{per_spec_ms(lambda r: spec._build(r[1], str(r[0]), '', spec.TOP_KEYS), raws, args.rounds):8.2f} ms")
    dicts = [r for _, r in raws]
    try:
        model = pydantic_model()
        print(imported("(b) import pydantic", "pydantic", args.repeat))
        print(f"    model_validate, per dict     {per_spec_ms(model.model_validate, dicts, args.rounds):8.3f} ms")
    except ImportError:
        model = None
        print("(b) pydantic: not installed")
    try:
        import msgspec

        struct = msgspec_type()
        print(imported("    import msgspec", "msgspec", args.repeat))
        print(f"    msgspec.convert, per dict    "
              f"{per_spec_ms(lambda d: msgspec.convert(d, struct, strict=False), dicts, args.rounds):8.3f} ms")
    except ImportError:
        print("    msgspec: not installed")
    try:
        import jsonschema

        from paretolab import spec_schema

        validator = jsonschema.Draft202012Validator(spec_schema.builtin_schema())
        print(imported("    import jsonschema", "jsonschema", args.repeat))
        print(f"    jsonschema (the shipped schema), per dict "
              f"{per_spec_ms(validator.validate, dicts, max(1, args.rounds // 10)):8.2f} ms")
    except ImportError:
        print("    jsonschema: not installed")
    if model is not None:
        read, refused, same = bad_input_rows(model)
        print(f"(c) bad-input rows whose YAML reads: {read}; the pydantic model refuses {refused}; its message holds "
              f"the pinned fragment in {same}")
        example = {"sweep": "s", "fixed": None, "eval": {"every": -5}}
        try:
            model.model_validate(example)
        except Exception as e:  # noqa: BLE001 - only shown
            print(f"    e.g. eval.every: -5 -> pydantic: {' | '.join(str(e).splitlines()[1:3])}")
            print("                         paretolab: spec.yaml: eval.every: expected an integer >= 1, got -5")


if __name__ == "__main__":
    main()
