"""How each kind of trial trains: the registry the worker dispatches through.

Every kind implements the same contract, so the built-in loop has no path the researcher's own code
lacks: `solo(assignment, device, interrupted)` trains one trial and yields its `MetricRow`s and then
its `TrialResult` (and None now and then while it waits on the code: the worker's chance to send
what it holds; nothing at all after an interrupt that stopped the trial before it ended); `pack_key(trial)` is None for a trial that cannot be packed, else a key equal
for trials that can train together, which `pack(assignments, device)` then does, `pack_size(trial,
device, pack_size)` members at a time (`pack_size`: the spec's, None for auto; the driver asks,
once per shape: `workers.packing`).

Kinds: `builtin` (a task and a model, `workers.train` and `workers.packed`), `function` (a Python
function, `workers.user_code`; packed when it declares a vectorized variant, `workers.vectorized`),
`command` (a process, `workers.command`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Protocol

from paretolab.vocabulary.trial import Assignment, MetricRow, TrialConfig, TrialResult

Item = MetricRow | TrialResult | None


class Runner(Protocol):
    def solo(self, a: Assignment, device: str, interrupted: threading.Event) -> Iterator[Item]: ...

    def pack_key(self, trial: TrialConfig) -> str | None: ...

    def pack(self, assignments: list[Assignment], device: str, interrupted: threading.Event) -> Iterator[Item]: ...

    def pack_size(self, trial: TrialConfig, device: str, pack_size: int | None) -> int: ...


class Builtin:
    """A built-in task trained by a built-in model."""

    def solo(self, a: Assignment, device: str, interrupted: threading.Event) -> Iterator[Item]:
        from paretolab.workers.attempt import error_text, failed
        from paretolab.workers.train import train

        start = time.perf_counter()
        attempt = train(a.trial, a.attempt, device, a.prune)
        try:
            while True:
                yield next(attempt)
        except StopIteration as done:
            yield done.value
        except Exception as e:  # a raising trial is recorded as failed, never retried blindly
            yield failed(a.trial, a.attempt, error_text(e), time.perf_counter() - start)

    def pack_key(self, trial: TrialConfig) -> str | None:
        from paretolab.workers.packed import pack_key

        return pack_key(trial)

    def pack(self, assignments: list[Assignment], device: str, interrupted: threading.Event) -> Iterator[Item]:
        from paretolab.workers.packed import train_pack

        return train_pack(assignments, device)

    def pack_size(self, trial: TrialConfig, device: str, pack_size: int | None) -> int:
        from paretolab.workers.packed import pack_size_for

        return pack_size_for(trial, device, pack_size)


class Function:
    """The researcher's Python function, `fn(config, ctx)`; packed through its vectorized variant."""

    def solo(self, a: Assignment, device: str, interrupted: threading.Event) -> Iterator[Item]:
        from paretolab.workers.user_code import run_function

        return run_function(a, device, interrupted)

    def pack_key(self, trial: TrialConfig) -> str | None:
        from paretolab.workers.vectorized import pack_key

        return pack_key(trial)

    def pack(self, assignments: list[Assignment], device: str, interrupted: threading.Event) -> Iterator[Item]:
        from paretolab.workers.vectorized import run_vectorized

        return run_vectorized(assignments, device, interrupted)

    def pack_size(self, trial: TrialConfig, device: str, pack_size: int | None) -> int:
        from paretolab.workers.vectorized import pack_size_for

        return pack_size_for(trial, device, pack_size)


class Command:
    """A command run in its own process, reporting metrics as JSON lines; never packed."""

    def solo(self, a: Assignment, device: str, interrupted: threading.Event) -> Iterator[Item]:
        from paretolab.workers.command import run_command

        return run_command(a, device, interrupted)

    def pack_key(self, trial: TrialConfig) -> None:
        return None

    def pack(self, assignments: list[Assignment], device: str, interrupted: threading.Event) -> Iterator[Item]:
        raise NotImplementedError("command trials are not packed")

    def pack_size(self, trial: TrialConfig, device: str, pack_size: int | None) -> int:
        return 1


RUNNERS: dict[str, Runner] = {"builtin": Builtin(), "function": Function(), "command": Command()}


def runner(trial: TrialConfig) -> Runner:
    """The runner of `trial`'s kind."""
    return RUNNERS[trial.kind]
