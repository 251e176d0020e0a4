"""Phase transitions: per-curve statistics on synthetic curves with known transitions and on real
sparse-parity runs; phase boundaries on hand-built cells with known success probabilities."""

from __future__ import annotations

import math

import pytest

import paretolab
from paretolab.analysis.phases import phase_boundary, transitions
from paretolab.store import Store
from paretolab.errors import UsageError

STEPS = range(0, 1001, 10)  # evaluations every 10 steps


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def sharp_curve(trial_id: str, step: int, dip: bool = False) -> dict:
    """Loss 1.0 until step 500, then linear to 0 at step 750. Accuracy 0.5 + 0.5 * sigmoid((s - 600) / 20):
    its 10% and 90% levels are at 600 -+ 20 ln 9 = 556.1 / 643.9. Train error 0.5 until step 300, then 0;
    test error 1 - accuracy (<= 0.1 from 600 + 20 ln 4 = 627.7 on). With `dip`, one noisy evaluation at
    step 200 touches the loss's 10% level and the accuracy's 10% level (but neither's 50%/90%)."""
    loss = 1.0 if step <= 500 else max(0.0, 1.0 - (step - 500) / 250)
    acc = 0.5 + 0.5 * sigmoid((step - 600) / 20)
    if dip and step == 200:
        loss, acc = 0.85, 0.6
    return {"trial_id": trial_id, "step": step, "samples": 32 * step, "test_loss": loss, "test_acc": acc,
            "train_error": None if step == 0 else 0.5 if step < 300 else 0.0, "test_error": 1 - acc}


def flat_curve(trial_id: str, step: int, drop: float = 0.0) -> dict:
    """A curve that wiggles (and with `drop`, falls by that fraction at step 500) but never transitions."""
    wiggle = 0.02 * math.sin(step / 7)
    loss = (1.0 if step < 500 else 1.0 - drop) + wiggle
    return {"trial_id": trial_id, "step": step, "samples": 32 * step, "test_loss": loss, "test_acc": 0.5 + wiggle,
            "train_error": None if step == 0 else 0.5, "test_error": 0.5 - wiggle}


@pytest.fixture
def curves(tmp_path, make_store):
    def build(success=("test_error", "<=", 0.1)):
        trials = [{"trial_id": "sharp", "width": 64, "seed": 0}, {"trial_id": "dip", "width": 64, "seed": 1},
                  {"trial_id": "flat", "width": 16, "seed": 0}, {"trial_id": "small", "width": 16, "seed": 1},
                  {"trial_id": "broken", "width": 16, "seed": 2, "status": "failed"}]
        metrics = ([sharp_curve("sharp", s) for s in STEPS] + [sharp_curve("dip", s, dip=True) for s in STEPS]
                   + [flat_curve("flat", s) for s in STEPS] + [flat_curve("small", s, drop=0.15) for s in STEPS]
                   + [flat_curve("broken", s) for s in STEPS[:5]])
        return Store(make_store(tmp_path / "r", "syn", ["width"], trials, metrics, success))
    return build


def by_id(table) -> dict[str, dict]:
    return {r["trial_id"]: r for r in table.to_pylist()}


def test_known_transition_is_found_exactly(curves):
    rows = by_id(transitions(curves(), "syn"))
    assert set(rows) == {"sharp", "dip", "flat", "small"}  # the failed trial is left out
    assert rows["sharp"] == {
        "trial_id": "sharp", "width": 64, "seed": 0,
        "plateau_steps": 520,  # loss 0.92 at 520, 0.88 at 530: the 10%-of-drop level is 0.9
        "onset_step": 630,  # 0.52 at 620, 0.48 at 630: the midpoint is 0.5
        "rise_start_step": 560, "rise_end_step": 650, "sharpness_steps": 90,  # 556.1 and 643.9, rounded up to evals
        "train_fit_step": 300, "test_fit_step": 630, "grokking_gap_steps": 330,
    }


def test_a_noisy_dip_on_the_plateau_does_not_end_it(curves):
    rows = by_id(transitions(curves(), "syn"))
    stats = ("plateau_steps", "onset_step", "rise_start_step", "rise_end_step", "sharpness_steps")
    assert {k: rows["dip"][k] for k in stats} == {k: rows["sharp"][k] for k in stats}


def test_flat_and_small_drops_have_no_transition(curves):
    rows = by_id(transitions(curves(), "syn"))
    for trial in ("flat", "small"):  # small: a 15% drop, under MIN_RELATIVE_DROP
        assert {k for k, v in rows[trial].items() if v is not None} == {"trial_id", "width", "seed"}


@pytest.mark.parametrize("success, threshold, test_fit", [
    (("test_error", "<=", 0.1), None, 630),
    (("test_error", "<=", 0.3), None, 600),  # the sweep's own error target: 0.3 from 600 + 20 ln(2/3) = 591.9 on
    (("test_acc", ">=", 0.99), None, 630),  # not an error criterion: the default 0.1
    (("test_error", "<=", 0.1), 0.3, 600),
])
def test_fit_threshold(curves, success, threshold, test_fit):
    row = by_id(transitions(curves(success), "syn", threshold=threshold))["sharp"]
    assert (row["train_fit_step"], row["test_fit_step"], row["grokking_gap_steps"]) == (300, test_fit, test_fit - 300)


def test_metric_choice_and_errors(curves):
    store = curves()
    row = by_id(transitions(store, "syn", accuracy=None))["sharp"]
    assert row["rise_start_step"] is None and row["sharpness_steps"] is None and row["onset_step"] == 630
    with pytest.raises(UsageError, match=r"unknown metric 'test_accuracy'; recorded: .*test_acc"):
        transitions(store, "syn", accuracy="test_accuracy")


def test_real_sparse_parity_plateau_then_drop(ray_cluster, tmp_path):
    # (12, 3)-parity, width 64: the test loss sits near 1.0 for a few hundred steps, then falls to 0
    # within about 200 steps (measured: plateaus 420 and 140 steps for seeds 0 and 1).
    spec = tmp_path / "sp.yaml"
    spec.write_text("sweep: sp\ntask: sparse_parity\ntask_args: {n: 12, k: 3}\nmodel: mlp\ngrid:\n  width: [64]\n"
                    "fixed: {lr: 0.1, batch_size: 32}\nseeds: 2\nmax_steps: 1000\n"
                    "eval: {every: 20, test_size: 256}\n"
                    "success: {metric: test_error, op: '<=', value: 0.05, stop_on_success: false}\n")
    paretolab.run(spec, store=tmp_path / "r")
    store = paretolab.open_store(tmp_path / "r")
    rows = transitions(store, "sp").to_pylist()
    assert len(rows) == 2
    for r in rows:
        assert r["plateau_steps"] >= 100  # at least 5 evaluations on the plateau
        assert r["onset_step"] > r["plateau_steps"]
        assert 0 < r["rise_start_step"] < r["rise_end_step"] <= 1000
        assert r["test_fit_step"] is not None and r["train_fit_step"] is not None
        curve = store.query("SELECT step, test_loss FROM metrics WHERE trial_id = ? ORDER BY step",
                            [r["trial_id"]]).to_pylist()
        initial = curve[0]["test_loss"]
        plateau = [c["test_loss"] for c in curve if c["step"] <= r["plateau_steps"]]
        assert max(abs(v - initial) for v in plateau) < 0.1 * initial  # flat, then
        assert curve[-1]["test_loss"] < 0.1 * initial  # dropped


# -- phase boundary: p_success per (width, train_size) cell from 4 seeds each

P = {  # width -> p_success at train_size 100, 1000, 10000, 100000, and NULL (online)
    16: (0, 0.25, 1, 1, 0),
    32: (0, 0.75, 0.25, 1, 0),  # not monotone: the first crossing counts
    64: (0.75, 1, 1, 1, 1),  # above 1/2 from the smallest size on
    256: (0, 0, 0.25, 0.25, 1),  # never above 1/2 on the axis (online does not count)
}
SIZES = (100, 1000, 10_000, 100_000, None)


@pytest.fixture
def grid_store(tmp_path, make_store):
    trials, metrics = [], []
    for width, ps in P.items():
        for size, p in zip(SIZES, ps):
            for seed in range(4):
                tid = f"w{width}-n{size}-s{seed}"
                trials.append({"trial_id": tid, "width": width, "train_size": size, "seed": seed,
                               "weight_decay": 0.0, "task": "sparse_parity"})
                metrics.append({"trial_id": tid, "step": 100, "samples": 3200,
                                "test_error": 0.0 if seed < 4 * p else 0.5})
    return Store(make_store(tmp_path / "r", "grid", ["width", "train_size"], trials, metrics))


def log_interp(lo, hi, p_lo, p_hi, target=0.5):
    return 10 ** (math.log10(lo) + (target - p_lo) / (p_hi - p_lo) * (math.log10(hi) - math.log10(lo)))


def test_phase_boundary_per_width(grid_store):
    rows = phase_boundary(grid_store, "grid", "train_size").to_pylist()  # by: the other axis, width
    assert [r["width"] for r in rows] == [16, 32, 64, 256]
    w16, w32, w64, w256 = rows
    assert w16["boundary"] == pytest.approx(log_interp(1000, 10_000, 0.25, 1), rel=1e-12)
    assert w16["boundary"] == pytest.approx(10 ** (3 + 1 / 3), rel=1e-12)
    assert w16 == {**w16, "lower_value": 1000, "upper_value": 10_000, "p_lower": 0.25, "p_upper": 1.0,
                   "status": "crossed"}
    assert w32["boundary"] == pytest.approx(log_interp(100, 1000, 0, 0.75), rel=1e-12)
    assert (w32["lower_value"], w32["upper_value"], w32["status"]) == (100, 1000, "crossed")
    assert w64 == {"width": 64, "boundary": None, "lower_value": None, "upper_value": 100, "p_lower": None,
                   "p_upper": 0.75, "status": "always"}
    assert w256 == {"width": 256, "boundary": None, "lower_value": 100_000, "upper_value": None, "p_lower": 0.25,
                    "p_upper": None, "status": "never"}


def test_phase_boundary_pooled_and_other_target(grid_store):
    # pooled over widths: p = 3/16 at 100 and exactly 8/16 at 1000, so the boundary is 1000 itself
    (row,) = phase_boundary(grid_store, "grid", "train_size", by=[]).to_pylist()
    assert row["p_lower"] == 3 / 16 and row["p_upper"] == 0.5
    assert row["boundary"] == pytest.approx(1000, rel=1e-12)
    rows = {r["width"]: r for r in phase_boundary(grid_store, "grid", "train_size", target=0.2).to_pylist()}
    assert rows[16]["boundary"] == pytest.approx(log_interp(100, 1000, 0, 0.25, target=0.2), rel=1e-12)
    assert rows[256]["boundary"] == pytest.approx(log_interp(1000, 10_000, 0, 0.25, target=0.2), rel=1e-12)


def test_phase_boundary_along_width(grid_store):
    rows = {r["train_size"]: r for r in phase_boundary(grid_store, "grid", "width").to_pylist()}
    assert set(rows) == {100, 1000, 10_000, 100_000, None}  # NULL is a fine by-value, not an axis value
    assert rows[100]["boundary"] == pytest.approx(log_interp(32, 64, 0, 0.75), rel=1e-12)
    assert rows[None]["boundary"] == pytest.approx(log_interp(32, 64, 0, 1), rel=1e-12)
    assert rows[1000]["status"] == "crossed" and rows[1000]["upper_value"] == 32


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": "nope"}, "unknown axis 'nope'"),
    ({"axis": "train_size", "by": ["bogus"]}, "unknown axis 'bogus'"),
    ({"axis": "train_size", "by": ["train_size"]}, "cannot also be a --by axis"),
    ({"axis": "train_size", "target": 1.0}, r"target must be a probability in \(0, 1\)"),
    ({"axis": "weight_decay"}, r"needs values > 0"),
    ({"axis": "task"}, "is not numeric"),
    ({"axis": "train_size", "success": "test_eror<=0.1"}, "unknown metric 'test_eror'"),
])
def test_phase_boundary_errors(grid_store, kwargs, message):
    with pytest.raises(UsageError, match=message):
        phase_boundary(grid_store, "grid", **kwargs)


def test_phase_boundary_along_an_axis_named_n(tmp_path, make_store):
    # sparse parity's input dimension is called `n`, as is the seed count of `cells`: no clash here
    q = {(2, 10): 0, (2, 100): 0.25, (2, 1000): 0.75, (3, 10): 0.5, (3, 100): 1, (3, 1000): 1}
    trials = [{"trial_id": f"k{k}n{n}s{s}", "k": k, "n": n, "seed": s} for (k, n) in q for s in range(4)]
    metrics = [{"trial_id": t["trial_id"], "step": 10, "samples": 320,
                "test_error": 0.0 if t["seed"] < 4 * q[t["k"], t["n"]] else 0.5} for t in trials]
    store = Store(make_store(tmp_path / "r", "nk", ["n", "k"], trials, metrics))
    rows = phase_boundary(store, "nk", "n").to_pylist()
    assert [(r["k"], r["status"]) for r in rows] == [(2, "crossed"), (3, "always")]
    assert rows[0]["boundary"] == pytest.approx(log_interp(100, 1000, 0.25, 0.75), rel=1e-12)
    assert (rows[0]["p_lower"], rows[0]["p_upper"]) == (0.25, 0.75)
