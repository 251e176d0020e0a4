"""Optuna search: spec errors, batches on every worker, Pareto front = `frontier`, resume after SIGKILL."""

from __future__ import annotations

import re
import subprocess

import optuna
import pytest

import paretolab
from paretolab.analysis.frontier import frontier
from paretolab.errors import SpecError
from paretolab.spec import parse_yaml

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = """\
sweep: {name}
task: sparse_parity
task_args: {{n: 10, k: 3}}
model: mlp
fixed: {{batch_size: 32, weight_decay: 0.01, width: 16}}
seeds: {seeds}
max_steps: {max_steps}
eval: {{every: 100, test_size: 256}}
success: {{metric: test_error, op: "<=", value: 0.1, stop_on_success: {stop}}}
"""


def spec(name="s", seeds=1, max_steps=600, stop="true", search="") -> str:
    return BASE.format(name=name, seeds=seeds, max_steps=max_steps, stop=stop) + search


def study(store, name):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(store / "_optuna" / f"{name}.log"))))


@pytest.mark.parametrize("search, message", [
    ("{sampler: cmaes, n_trials: 4, space: {lr: [0.1]}, objectives: [{minimize: test_error}]}",
     "search.sampler: unknown sampler 'cmaes'; known: tpe, random, qmc, grid, nsga2"),
    ("{n_trials: 4, space: {lr: {low: 1, high: 0.1}}, objectives: [{minimize: test_error}]}",
     "search.space.lr: need low < high"),
    ("{n_trials: 4, space: {lr: {low: 0.1}}, objectives: [{minimize: test_error}]}",
     "search.space.lr: expected a non-empty list of choices or"),
    ("{n_trials: 4, space: {depthh: [2, 3]}, objectives: [{minimize: test_error}]}",
     "search.space.depthh: unknown parameter 'depthh'"),
    ("{n_trials: 4, space: {width: [8, 16]}, objectives: [{minimize: test_error}]}",
     "search.space.width: 'width' is also set elsewhere"),
    ("{n_trials: 4, space: {lr: [0.1, 0.2]}, objectives: [{minimize: accuracy}]}",
     "search.objectives[0]: unknown metric 'accuracy'; known:"),
    ("{n_trials: 4, space: {lr: [0.1, 0.2]}, objectives: [{lowest: test_error}]}",
     "search.objectives[0]: expected {minimize: METRIC} or {maximize: METRIC}"),
    ("{n_trials: 4, space: {lr: [0.1, 0.2]}}", "search.objectives: required"),
    ("{space: {lr: [0.1, 0.2]}, objectives: [{minimize: test_error}]}", "search.n_trials: required"),
    ("{n_trials: 0, space: {lr: [0.1, 0.2]}, objectives: [{minimize: test_error}]}", "search.n_trials: expected an integer >= 1"),
    ("{sampler: grid, n_trials: 4, space: {lr: {low: 0.1, high: 1}}, objectives: [{minimize: test_error}]}",
     "the grid sampler needs a list of values"),
    ("{n_trials: 4, space: {lr: [0.1]}, objectives: [{minimize: test_error}], pruner: patient}",
     "search.pruner: unknown pruner 'patient'"),
    ("{n_trials: 4, space: {}, objectives: [{minimize: test_error}]}", "search.space: an optuna search needs at least one axis"),
])
def test_spec_errors_are_one_line(search, message):
    with pytest.raises(SpecError) as e:
        parse_yaml(spec(search=f"search: {search}\n"), "x.yaml")
    assert message in str(e.value) and "\n" not in str(e.value) and str(e.value).startswith("x.yaml: ")


def test_grid_axes_belong_in_the_space():
    text = spec(search="search: {n_trials: 4, space: {lr: [0.1, 0.2]}, objectives: [{minimize: test_error}]}\n")
    with pytest.raises(SpecError, match="search: an optuna search takes its axes from search.space"):
        parse_yaml(text + "grid: {train_size: [64, 128]}\n")


def test_pareto_front_is_what_frontier_shows(ray_cluster, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(spec(name="pareto", seeds=2, search="""\
search:
  sampler: random
  n_trials: 8
  seed: 3
  space:
    lr: {low: 0.02, high: 0.5, log: true}
    train_size: [64, 128, 256, 512]
  objectives: [{minimize: train_size}, {minimize: flops_to_success}]
"""))
    summary = paretolab.run(path, store=tmp_path / "r")
    result = summary.search
    assert sum(result.states.values()) == 8 and summary.ran == summary.total == 16  # 8 points x 2 seeds
    assert result.best, "some point must succeed on half its seeds"
    front = {(round(r["lr"], 12), r["train_size"]) for r in result.rows()}
    cells = frontier(paretolab.open_store(tmp_path / "r"), "pareto", [("train_size", "min"), ("flops_to_success", "min")])
    assert {(round(c["lr"], 12), c["train_size"]) for c in cells.to_pylist()} == front
    for r in result.rows():  # the told value is the cell's median flops over its successful seeds
        c = next(c for c in cells.to_pylist() if round(c["lr"], 12) == round(r["lr"], 12))
        assert r["median_flops_to_success"] == pytest.approx(c["median_flops_to_success"])


def test_batches_keep_every_worker_busy_and_reruns_ask_nothing(ray_cluster, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(spec(name="tpe", max_steps=300, stop="false", search="""\
search:
  n_trials: 6
  space: {lr: {low: 0.01, high: 0.5, log: true}}
  objectives: [{minimize: test_error}]
"""))
    first = paretolab.run(path, store=tmp_path / "r", workers=2)
    trials = study(tmp_path / "r", "tpe").trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6 and first.ran == 6
    # the first two were asked together, before either was told (one per worker)
    assert trials[1].datetime_start < trials[0].datetime_complete
    assert first.search.best[0]["median_test_error"] == min(t.values[0] for t in trials)  # over the seeds
    again = paretolab.run(path, store=tmp_path / "r", workers=2)
    assert again.ran == 0 and len(study(tmp_path / "r", "tpe").trials) == 6
    assert (again.total, again.already_done, again.search) == (6, 6, first.search)
    # a finished search answers from its study and the store without Ray: an address where no Ray
    # listens is never dialled
    out = subprocess.run(["paretolab", "run", str(path), "--store", str(tmp_path / "r"), "--address", "127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)  # dialling it would hang past this
    assert out.returncode == 0, out.stderr
    assert "tpe: 6 trials (0 run now, 6 already in the store)" in out.stdout
    assert "search: optuna best trial over test_error (6 complete; study in" in out.stdout
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines() if line.startswith("│")]
    assert [r[0] for r in rows] == [str(first.search.best[0]["number"])]  # the best trial, as the first run found


def test_a_killed_search_resumes_without_rerunning_stored_trials(ray_cluster, driver, count_in, tmp_path):
    path = tmp_path / "s.yaml"
    n_trials = 16
    path.write_text(spec(name="killed", max_steps=1500, stop="false", search=f"""\
search:
  sampler: random
  n_trials: {n_trials}
  space: {{lr: {{low: 0.01, high: 0.5, log: true}}, train_size: [64, 128, 256]}}
  objectives: [{{minimize: test_error}}]
"""))
    store = tmp_path / "r"
    child = driver(path, store)

    def told() -> int:
        if not (store / "_optuna" / "killed.log").exists():
            return 0
        try:
            return sum(t.state.name == "COMPLETE" for t in study(store, "killed").trials)
        except KeyError:  # the study is being created
            return 0

    child.wait_until(lambda: told() >= 3, "3 trials told")
    child.kill()
    before = study(store, "killed").trials
    assert len([t for t in before if t.state.name != "RUNNING"]) < n_trials  # it really was cut short
    stored = count_in(store)

    resumed = paretolab.run(path, store=store)
    after = study(store, "killed").trials
    assert len(after) == n_trials and all(t.state.name == "COMPLETE" for t in after)
    assert [t.params for t in after[:len(before)]] == [t.params for t in before]  # the same study, continued
    con = paretolab.open_store(store)
    rows, distinct = con.query("SELECT count(*), count(DISTINCT trial_id) FROM trials_all").to_pylist()[0].values()
    assert rows == distinct  # no trial that the store held ran again
    assert resumed.ran == distinct - stored


@pytest.mark.slow  # a CLI process
def test_a_dry_run_says_what_the_search_will_do_and_lists_no_trial(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(spec(name="dry", seeds=3, search="""\
search:
  sampler: grid
  n_trials: 50
  seed: 7
  space: {lr: [0.05, 0.1], train_size: [64, 128, 256], depth: [1, 2]}
  objectives: [{minimize: test_error}]
  pruner: median
"""))
    summary = paretolab.run(path, store=tmp_path / "r", dry_run=True)
    assert (summary.total, summary.already_done, summary.first_configs) == (12 * 3, None, [])  # the grid has 12 points
    out = subprocess.run(["paretolab", "run", str(path), "--store", str(tmp_path / "r"), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("dry: up to 36 trials, chosen as the search runs (none listed ahead")
    assert ("optuna search (grid sampler, seed 7): 12 points x 3 seeds, minimize test_error, median pruning; "
            "space: lr in [0.05, 0.1], train_size in [64, 128, 256], depth in [1, 2]") in out.stdout
    assert "trial_id=" not in out.stdout and "more" not in out.stdout and len(out.stdout.splitlines()) == 2
    assert not (tmp_path / "r").exists()  # nothing written, not even the study
    ranged = spec(name="dry", search="search: {n_trials: 5, space: {lr: {low: 0.01, high: 0.5, log: true}, "
                                      "depth: {low: 1, high: 4}, weight_decay: {low: 0, high: 0.1, step: 0.01}}, "
                                      "objectives: [{minimize: test_error}]}\n")
    from paretolab.orchestrator.search import describe

    assert describe(parse_yaml(ranged.replace("weight_decay: 0.01, ", ""))) == (
        "optuna search (tpe sampler, seed 0): 5 points x 1 seed, minimize test_error; "
        "space: lr 0.01..0.5 (log), depth 1..4 (int), weight_decay 0..0.1 (step 0.01)")


# --- pruning -------------------------------------------------------------------------------------

def tiny_trial(**train):
    sweep = parse_yaml(spec(max_steps=300, stop="false") + "search: {n_trials: 1, space: {lr: [0.1]}, objectives: [{minimize: test_error}]}\n")
    import dataclasses

    from paretolab.orchestrator.grid import expand

    point = dataclasses.replace(sweep, search=None, fixed=tuple(sorted({**dict(sweep.fixed), "lr": 0.1, **train}.items())))
    return list(expand(point))[0]


def test_a_trial_worse_than_the_threshold_is_pruned_solo_and_in_a_pack():
    import threading

    from paretolab.workers.runners import runner
    from paretolab.workers.packed import train_pack
    from paretolab.vocabulary.trial import Assignment, Pruning, TrialResult

    never = Pruning("test_error", ((100, -1.0),))  # nothing is below -1: pruned at step 100
    a = Assignment(tiny_trial(), 1, never)
    result = [x for x in runner(a.trial).solo(a, "cpu", threading.Event()) if isinstance(x, TrialResult)][0]
    assert (result.status, result.steps, result.success) == ("pruned", 100, False)
    kept = Assignment(tiny_trial(lr=0.2), 1)
    results = {x.trial_id: x for x in train_pack([a, kept]) if isinstance(x, TrialResult)}
    assert (results[a.trial.trial_id].status, results[a.trial.trial_id].steps) == ("pruned", 100)
    assert (results[kept.trial.trial_id].status, results[kept.trial.trial_id].steps) == ("finished", 300)
    assert not Pruning("test_error", ((100, 2.0),)).hopeless(100, {"test_error": 0.5})
    assert Pruning("test_acc", ((100, 0.9),), lower_is_better=False).hopeless(100, {"test_acc": 0.5})


def test_cells_leave_pruned_trials_out_unless_asked(make_store, tmp_path):
    from paretolab.analysis.cells import cells

    trials = [{"trial_id": "a", "width": 1, "success": True}, {"trial_id": "b", "width": 1, "status": "pruned"}]
    metrics = [{"trial_id": "a", "step": 0, "samples": 0, "test_error": 0.0},
               {"trial_id": "b", "step": 0, "samples": 0, "test_error": 0.9}]
    store = paretolab.open_store(make_store(tmp_path / "r", "p", ["width"], trials, metrics))
    assert cells(store, "p").to_pylist()[0]["n_seeds"] == 1
    both = cells(store, "p", include_pruned=True).to_pylist()[0]
    assert (both["n_seeds"], both["successes"]) == (2, 1)


def test_median_pruning_stops_hopeless_trials(ray_cluster, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(spec(name="pruned", max_steps=1000, stop="false", search="""\
search:
  sampler: random
  seed: 1
  n_trials: 14
  pruner: median
  space: {lr: {low: 0.0005, high: 0.3, log: true}}
  objectives: [{minimize: test_error}]
"""))
    out = subprocess.run(["paretolab", "run", str(path), "--store", str(tmp_path / "r"), "--workers", "2",
                          "--address", ray_cluster.get_runtime_context().gcs_address],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    store = paretolab.open_store(tmp_path / "r")
    pruned = store.query("SELECT trial_id, steps FROM trials WHERE status = 'pruned'").to_pylist()
    assert pruned and all(r["steps"] < 1000 for r in pruned)
    states = [t.state.name for t in study(tmp_path / "r", "pruned").trials]
    assert states.count("PRUNED") == len(pruned) and states.count("COMPLETE") == 14 - len(pruned)
    # RunSummary.pruned, on the final line: counted apart, not as failed
    line = re.search(r"pruned: 14 trials \(14 run now, 0 already in the store\); (\d+) succeeded, 0 failed, "
                     r"0 diverged, (\d+) pruned in", out.stdout)
    assert line, out.stdout
    succeeded = store.query("SELECT count(*) FROM trials WHERE success").column(0)[0].as_py()
    assert (int(line[1]), int(line[2])) == (succeeded, len(pruned))
    assert paretolab.run(path, store=tmp_path / "r").ran == 0  # pruned trials are ended: not rerun
    from paretolab.analysis.status import status

    (st,) = status(store, "pruned")  # `paretolab status` counts them apart too
    assert (st.ended, st.pruned, st.failed) == (14, len(pruned), 0)


def test_the_store_holds_each_result_before_the_study_records_it(ray_cluster, tmp_path, monkeypatch):
    """A driver killed between the two must not leave a study that counts a trial the store lacks:
    every result is flushed to the store before the study is told."""
    from paretolab.orchestrator.optuna_search import OptunaSearchStrategy

    store = paretolab.open_store(tmp_path / "r")
    unstored = []
    observe = OptunaSearchStrategy.observe

    def checked(self, trial, outcome):
        held = store.query("SELECT count(*) FROM trials_all WHERE trial_id = ?", [trial.trial_id]) if store.files("trials") else None
        if held is None or held.column(0)[0].as_py() == 0:
            unstored.append(trial.trial_id)
        return observe(self, trial, outcome)

    monkeypatch.setattr(OptunaSearchStrategy, "observe", checked)
    path = tmp_path / "s.yaml"
    path.write_text(spec(name="order", seeds=2, max_steps=200, search="""\
search:
  n_trials: 4
  space: {lr: {low: 0.01, high: 0.5, log: true}}
  objectives: [{minimize: test_error}]
"""))
    summary = paretolab.run(path, store=tmp_path / "r", workers=2)
    assert summary.ran == 8 and unstored == []


def test_every_spec_type_has_its_strategy_and_an_unknown_one_is_refused():
    """The table in orchestrator/search.py covers every type `search` and `tune` can hold, each
    `<Mode>Spec` run by its `<Mode>Strategy`; any other type is an error, never a fallback."""
    import dataclasses
    import typing

    from paretolab.orchestrator.search import STRATEGIES, strategy_for
    from paretolab.vocabulary.sweep import Sweep

    hints = typing.get_type_hints(Sweep)
    spec_types = {t for f in ("search", "tune") for t in typing.get_args(hints[f]) if t is not type(None)}
    assert set(STRATEGIES) == spec_types
    assert all(s.__name__.removesuffix("Strategy") == t.__name__.removesuffix("Spec") for t, s in STRATEGIES.items())
    sweep = parse_yaml(spec(name="odd") + "search: {n_trials: 1, space: {lr: [0.1]}, objectives: [{minimize: test_error}]}\n")
    with pytest.raises(SpecError, match="no strategy runs a str; known: FrontierSearchSpec, OptunaSearchSpec, TuneSpec"):
        strategy_for(dataclasses.replace(sweep, search="optuna"), [], None)
