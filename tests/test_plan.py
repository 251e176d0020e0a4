"""Planning a grid in constant memory per trial: `grid.Plan` walks the grid without holding its trials,
`paretolab.run` streams them to the scheduler, and a dry run of 10^6 trials builds none of them."""

from __future__ import annotations

import tracemalloc

import pytest

import paretolab
from paretolab.orchestrator import grid
from paretolab.orchestrator.grid import Plan, expand
from paretolab.orchestrator.identity import trial_id
from paretolab.orchestrator.scheduler import MAX_CHUNK, PACKED_CALLS_IN_FLIGHT, QUEUE_AHEAD
from paretolab.orchestrator.events import Observer
from paretolab.spec import load_spec, parse_yaml

# A zip step repeated: 2 widths x 2 weight decays x 3 zip steps x 3 seeds = 36 trials walked, 24
# distinct (the spec drops values repeated within an axis; 0 and 0.0 are one, the default).
DUPLICATES = """\
sweep: dup
task: sparse_parity
task_args: {n: 10, k: 2}
model: mlp
grid:
  width: [8, 8, 16]
  weight_decay: [0, 0.0, 0.1]
zip:
  init: [dense, dense, sparse]
  sparsity: [null, null, 2]
seeds: 3
max_steps: 10
"""

# A Python spec whose points repeat a trial: its own seed 1, then seeds 0 and 1 of the same point.
POINTS = """\
SPEC = {"task": "sparse_parity", "task_args": {"n": 10, "k": 2}, "model": "mlp", "seeds": 2, "max_steps": 10}


def trials():
    yield {"width": 8, "seed": 1}
    yield {"width": 8}
    yield {"width": 16, "lr": 0.5}
"""

MILLION = """\
sweep: million
task: sparse_parity
task_args: {n: 10, k: 2}
model: mlp
grid:
  width: {range: [1, 201]}
seeds: 5000
max_steps: 10
"""


def counting(monkeypatch) -> list[int]:
    """Count every `TrialConfig` the grid builds (in this process)."""
    built = [0]
    real = grid._Point.trial

    def trial(self, tid, seed):
        built[0] += 1
        return real(self, tid, seed)

    monkeypatch.setattr(grid._Point, "trial", trial)
    return built


def check_plan(sweep, distinct: int) -> None:
    trials = list(expand(sweep))
    assert len(trials) == distinct
    for t in trials:  # the fast hashing gives the ids of the reference function
        assert t.trial_id == trial_id(t.task, t.task_args, t.model, t.model_args, t.train, t.seed, t.max_steps,
                                      t.eval, t.success)
    plan = Plan(sweep)
    assert (plan.total, plan.already_done, plan.to_run) == (distinct, 0, distinct)
    assert plan.trial_ids().tolist() == [t.trial_id for t in trials]
    assert list(plan.pending) == trials
    ended = {trials[0].trial_id, trials[-1].trial_id, "not-an-id"}
    resumed = Plan(sweep, ended)
    assert (resumed.total, resumed.already_done, len(resumed.pending)) == (distinct, 2, distinct - 2)
    assert list(resumed.pending) == [t for t in trials if t.trial_id not in ended]


def test_a_plan_has_the_trials_of_expand_in_grid_order_with_their_ids(tmp_path):
    check_plan(parse_yaml(DUPLICATES), distinct=24)
    (tmp_path / "points.py").write_text(POINTS)
    check_plan(load_spec(tmp_path / "points.py"), distinct=4)


@pytest.mark.slow  # a million trials
def test_a_dry_run_of_a_million_trials_builds_none_and_holds_little(tmp_path, monkeypatch):
    spec = tmp_path / "million.yaml"
    spec.write_text(MILLION)
    built = counting(monkeypatch)
    paretolab.run(spec, store=tmp_path / "none", dry_run=True)  # imports and registries, before measuring
    built[0] = 0
    tracemalloc.start()
    try:
        summary = paretolab.run(spec, store=tmp_path / "none", dry_run=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (summary.total, summary.already_done, len(summary.first_configs)) == (10**6, 0, 5)
    assert built[0] == 5  # the five it shows
    # the plan's ids (8 MB) and a byte or two per trial; the expanded grid took about 0.7 KB a trial
    assert peak < 40 * 2**20, peak
    assert not (tmp_path / "none").exists()


def test_a_run_builds_its_trials_as_the_workers_take_them(ray_cluster, tmp_path, monkeypatch, write_spec):
    # 3000 tiny trials on one worker: when the first result arrives, the driver has built at most
    # what the queue holds ahead and the first call took, not the grid; in the end each trial once.
    n = 3000
    spec = write_spec(tmp_path, widths="[8]", seeds=n, max_steps=2, every=2, target=-1)
    built = counting(monkeypatch)
    at_first_report: list[int] = []

    class First(Observer):
        def on_report(self, report):
            if report.results and not at_first_report:
                at_first_report.append(built[0])

    summary = paretolab.run(spec, store=tmp_path / "r", workers=1, observer=First())
    assert (summary.total, summary.ran) == (n, n)
    ahead = QUEUE_AHEAD * MAX_CHUNK * PACKED_CALLS_IN_FLIGHT  # one worker
    assert at_first_report and at_first_report[0] <= ahead + MAX_CHUNK + 5 < n  # + the first call, the first configs
    assert built[0] == n + 1  # each trial once, and the first one for the sweep's row
