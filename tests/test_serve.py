"""`paretolab serve`: every JSON and SVG route against stores of known content (Starlette's test
client over the real application, real Parquet files, real DuckDB), the token and the host check."""

from __future__ import annotations

import math
import time
import warnings
from datetime import datetime, timezone

import pytest

from support import make_store, wait_for

pytest.importorskip("httpx", reason="Starlette's test client needs httpx (the test extra installs it)")
with warnings.catch_warnings():  # Starlette >= 1.10 asks for httpx2, still in its first releases; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from paretolab.serve import data  # noqa: E402
from paretolab.serve.app import create_app  # noqa: E402
from paretolab.store import Store, StoreWriter  # noqa: E402

BASE = "http://127.0.0.1"
# width x train_size x seed: a trial succeeds (test_error <= 0.1) when its error after step 100 is
# 0.05; the seeds that do: width 64 all three, width 16 with train_size 100 seeds 0 and 1 only.
SUCCEEDS = {(64, None): 3, (64, 100): 3, (16, 100): 2, (16, None): 0}


def grid_trials():
    trials, metrics = [], []
    for (width, size), wins in SUCCEEDS.items():
        for seed in range(3):
            tid = f"w{width}-m{size}-s{seed}"
            ok = seed < wins
            trials.append({"trial_id": tid, "width": width, "train_size": size, "seed": seed, "success": ok, "wall_s": 1.0,
                           "steps_to_success": 200 if ok else None})
            for step, err in ((0, 0.5), (100, 0.4 if ok else 0.45), (200, 0.05 if ok else 0.3)):
                metrics.append({"trial_id": tid, "step": step, "samples": step * 32, "test_error": err,
                                "test_loss": 2 * err, "train_error": err})
    trials.append({"trial_id": "broken", "width": 16, "train_size": 100, "seed": 3, "status": "failed",
                   "success": False, "wall_s": 0.1, "error": "RuntimeError: boom"})
    return trials, metrics


@pytest.fixture
def store(tmp_path):
    trials, metrics = grid_trials()
    root = make_store(tmp_path / "r", "grid", ["width", "train_size"], trials, metrics)
    # a second sweep: two widths of one other trial each, compared with `grid` on one page
    make_store(root, "other", ["width"],
               [{"trial_id": f"o{w}", "width": w, "seed": 0, "success": w == 64, "wall_s": 1.0} for w in (16, 64)],
               [{"trial_id": f"o{w}", "step": s, "samples": s * 32, "test_error": e}
                for w in (16, 64) for s, e in ((0, 0.5), (100, 0.05 if w == 64 else 0.4))])
    return Store(root)


@pytest.fixture
def client(store):
    with TestClient(create_app(store), base_url=BASE) as c:
        yield c


def get(client, path: str, code: int = 200):
    r = client.get(path)
    assert r.status_code == code, (path, r.status_code, r.text[:500])
    return r.json() if r.headers["content-type"].startswith("application/json") else r.text


def test_sweeps_page_counts(client):
    sweeps = {s["sweep"]: s for s in get(client, "/api/sweeps")["sweeps"]}
    assert set(sweeps) == {"grid", "other"}
    g = sweeps["grid"]
    assert (g["total"], g["ended"], g["succeeded"], g["failed"], g["diverged"], g["running"]) == (13, 13, 8, 1, 0, 0)
    assert g["progress"] == 1.0
    assert "Sweeps" in get(client, "/") and "/static/app.js" in get(client, "/")
    assert "function poll" in get(client, "/static/app.js")


def test_meta_offers_the_sweeps_own_axes_and_values(client):
    m = get(client, "/api/meta?s=grid")
    assert m["axes"] == ["width", "train_size"] and set(m["parameters"]) >= {"width", "train_size", "seed"}
    assert m["values"]["width"] == ["16", "64"] and m["values"]["train_size"] == ["100", None]
    assert m["success"] == "test_error <= 0.1" and m["defaults"]["x"] == "train_size"
    assert "test_error" in m["metrics"] and m["numeric_axes"] == ["train_size", "width"]


def test_cells_sorted_and_filtered_on_the_server(client):
    t = get(client, "/api/cells?s=grid&sort=p_success&desc=1")
    rows = [dict(zip(t["columns"], r)) for r in t["rows"]]
    assert t["total"] == 4 and [r["p_success"] for r in rows] == sorted((r["p_success"] for r in rows), reverse=True)
    assert {(r["width"], r["train_size"]): r["successes"] for r in rows} == SUCCEEDS
    assert all(r["n_seeds"] == 3 for r in rows)  # the failed trial is left out, as the analysis does
    one = get(client, "/api/cells?s=grid&f.width=16")
    assert one["total"] == 2 and {r[t["columns"].index("width")] for r in one["rows"]} == {16}
    online = get(client, "/api/cells?s=grid&f.train_size=__null__&sort=width")
    assert [r[:2] for r in online["rows"]] == [[16, None], [64, None]]
    paged = get(client, "/api/cells?s=grid&sort=width&limit=1&offset=3")
    assert paged["total"] == 4 and len(paged["rows"]) == 1 and paged["rows"][0][0] == 64
    assert "unknown axis 'depth'" in get(client, "/api/cells?s=grid&f.depth=1", 400)["error"]
    assert "cannot sort the cells by 'nope'" in get(client, "/api/cells?s=grid&sort=nope", 400)["error"]
    assert "whole number" in get(client, "/api/cells?s=grid&limit=x", 400)["error"]


@pytest.mark.slow  # over a second
def test_comparison_puts_the_sweep_first(client):
    t = get(client, "/api/cells?s=grid&s=other")
    assert t["columns"][0] == "sweep" and {r[0] for r in t["rows"]} == {"grid", "other"}
    assert [s["sweep"] for s in get(client, "/api/status?s=grid&s=other")["sweeps"]] == ["grid", "other"]
    assert "<svg" in get(client, "/fig/phase.svg?s=grid&s=other")


def test_curve_bands_are_medians_over_seeds(store):
    bands = data.curve_bands(store, "grid", by="width")
    rows = {(r[0], r[1]): r[2:] for r in bands["rows"]}
    assert bands["keys"] == ["width"] and bands["metric"] == "test_error"
    median, q1, q3, reporting, trials = rows[(64, 200)]
    assert (median, reporting, trials) == (0.05, 6, 6)
    median, *_ = rows[(16, 200)]  # 2 of 6 trials of width 16 succeed: the median is a failure's 0.3
    assert median == pytest.approx(0.3)
    samples = data.curve_bands(store, "grid", x="samples")
    assert samples["rows"] and all(r[0] > 0 for r in samples["rows"])  # log bins over samples > 0
    flops = data.curve_bands(store, "grid", x="flops")
    assert max(r[0] for r in flops["rows"]) == pytest.approx(6 * 100 * 200 * 32, rel=0.05)


def test_transitions_failures_spec_and_trial(client):
    t = get(client, "/api/transitions?s=grid&by=width")
    rows = {r[0]: dict(zip(t["columns"], r)) for r in t["rows"]}
    assert rows[64]["curves"] == 6 and rows[64]["median_onset_step"] == 200
    f = get(client, "/api/failures?s=grid")
    assert f["total"] == 1 and f["rows"] == [["RuntimeError: boom", 1, ["broken"]]]
    assert get(client, "/api/spec?s=grid")["specs"] == [{"sweep": "grid", "spec": ""}]
    trial = get(client, "/api/trial?id=broken")
    assert trial["status"] == "failed" and trial["error"] == "RuntimeError: boom" and trial["sweeps"] == ["grid"]
    assert get(client, "/api/trial?id=w64-m100-s0")["curve_rows"] == 3
    assert "unknown trial 'nope'" in get(client, "/api/trial?id=nope", 404)["error"]
    assert "trial w64-m100-s0" in get(client, "/trial?id=w64-m100-s0")


@pytest.mark.parametrize("path", ["/fig/phase.svg?s=grid", "/fig/phase.svg?s=grid&x=width&y=train_size",
                                  "/fig/frontier.svg?s=grid", "/fig/frontier.svg?s=grid&by=width",
                                  "/fig/curves.svg?s=grid&by=width", "/fig/curves.svg?s=grid&x=flops",
                                  "/fig/luck.svg?s=grid&by=width", "/fig/trial.svg?id=w16-m100-s0"])
def test_figures_are_svg(client, path):
    svg = get(client, path)
    assert svg.startswith("<?xml") and "<svg" in svg and len(svg) > 3000


def test_phase_diagram_shows_successes_over_seeds(client):
    svg = get(client, "/fig/phase.svg?s=grid&x=train_size&y=width")
    assert "2/3" in svg and "0/3" in svg and "3/3" in svg  # each cell's successes / seeds, as text


def test_each_figures_numbers_as_json(client):
    """What each figure draws, as the figure draws it: the cells of the phase diagram, the frontier's
    cells with their quartiles, luck against k, the curves' bands, a trial's curve."""
    phase = get(client, "/api/phase?s=grid&x=train_size&y=width")
    assert (phase["x"], phase["y"], phase["by"]) == ("train_size", "width", [])
    seen = {(r["width"], r["train_size"]): (r["successes"], r["n_seeds"]) for r in phase["cells"]}
    assert seen == {(64, None): (3, 3), (64, 100): (3, 3), (16, 100): (2, 3), (16, None): (0, 3)}
    front = get(client, "/api/frontier?s=grid&x=train_size&by=width")
    assert (front["x"], front["y"], front["by"]) == ("train_size", "flops_to_success", ["width"])
    on = {(r["width"], r["train_size"]) for r in front["cells"] if r["on_frontier"]}
    assert on == {(16, 100), (64, 100)}  # the least data of the cells that learn (NULL: online, unbounded data)
    assert [r["flops_to_success_q1"] is None for r in front["cells"]] == [not r["successes"] for r in front["cells"]]
    luck = get(client, "/api/luck?s=grid&by=width")
    best = {(r["width"], r["k_seeds"]): r["p_any_success"] for r in luck["rows"]}
    assert best[(64, 1)] == 1 and 0 < best[(16, 1)] < 1 and best[(16, 1)] < best[(16, 2)]
    bands = get(client, "/api/curves?s=grid&by=width")
    assert bands["keys"] == ["width"] and bands["sweep"] == "grid" and bands["rows"]
    curve = get(client, "/api/trial_curve?id=w16-m100-s0")
    assert curve["trial_id"] == "w16-m100-s0" and [r[curve["columns"].index("step")] for r in curve["rows"]] == [0, 100, 200]
    assert "unknown axis 'depth'" in get(client, "/api/phase?s=grid&x=depth", 400)["error"]
    assert get(client, "/api/frontier?s=grid&x=depth", 400)["error"].startswith("unknown axis 'depth'; axes of the sweep")


def test_the_cli_figure_is_drawn_from_the_same_numbers(store):
    """The page's figure and `paretolab plot`'s: the numbers cross a process (pickled) and draw the
    same figure, with no store to read."""
    import pickle

    from paretolab.analysis import figure, plot_numbers, plots

    for numbers, cli in ((plot_numbers.phase_numbers(store, "grid"), plots.plot_phase(store, "grid")),
                         (plot_numbers.frontier_numbers(store, "grid"), plots.plot_frontier(store, "grid")),
                         (plot_numbers.luck_numbers(store, "grid"), plots.plot_luck(store, "grid"))):
        moved = pickle.loads(pickle.dumps(numbers))
        drawn = plots.draw(moved)
        assert figure.data(drawn).to_pylist() == figure.data(cli).to_pylist()
        assert [ax.get_title() for ax in drawn.axes] == [ax.get_title() for ax in cli.axes]


def test_the_same_numbers_draw_the_same_bytes(store):
    from paretolab.analysis import plot_numbers
    from paretolab.serve import figures

    numbers = plot_numbers.phase_numbers(store, "grid")
    assert figures._draw(figures.analysis_figure, numbers) == figures._draw(figures.analysis_figure, numbers)


def test_figures_drawn_on_one_core_and_after_a_renderer_died(store, monkeypatch):
    """One core: figures are drawn in the server's process. A renderer killed: the figure it was
    asked for is drawn here, and the next one by a new pool."""
    import os
    import signal

    from paretolab.analysis import plot_numbers
    from paretolab.serve import figures

    numbers = plot_numbers.phase_numbers(store, "grid")
    want = figures._draw(figures.analysis_figure, numbers)
    monkeypatch.setattr(figures, "_drawn", type(figures._drawn)())
    figures.stop_renderers()
    monkeypatch.setattr(figures, "RENDERERS", 1)
    assert figures.svg(figures.analysis_figure, numbers) == want and figures._pool is None
    monkeypatch.setattr(figures, "RENDERERS", 2)
    monkeypatch.setattr(figures, "_drawn", type(figures._drawn)())
    figures.start_renderers()
    try:
        pool = figures._pool
        os.kill(next(iter(pool._processes)), signal.SIGKILL)
        wait_for(lambda: pool._broken, "the pool to notice its dead renderer", 60)
        assert figures.svg(figures.analysis_figure, numbers) == want  # drawn here: the pool broke
        assert figures._pool is None
        monkeypatch.setattr(figures, "_drawn", type(figures._drawn)())
        assert figures.svg(figures.analysis_figure, numbers) == want and figures._pool not in (None, pool)
    finally:
        figures.stop_renderers()


def test_a_figure_whose_numbers_did_not_change_is_not_drawn_again(store, client, monkeypatch):
    """A flush of curve rows alone changes the curves, not the phase diagram: only the curves are
    drawn again."""
    from paretolab.serve import figures, snapshot

    drawn = []
    render = figures._render
    monkeypatch.setattr(figures, "_drawn", type(figures._drawn)())  # none kept from the tests before
    monkeypatch.setattr(figures, "_render", lambda draw, numbers: drawn.append(draw.__name__) or render(draw, numbers))
    monkeypatch.setattr(snapshot, "SIGNATURE_TTL_S", 0.0)
    phase = get(client, "/fig/phase.svg?s=grid&v=1")
    curves = get(client, "/fig/curves.svg?s=grid&by=width&v=1")
    assert drawn == ["analysis_figure", "bands_figure"]
    writer = StoreWriter(store)
    # four width-16 trials that never succeeded, one step further: no success or cost changes
    writer.append("metrics", [{"trial_id": t, "attempt": 1, "step": 300, "samples": 9600, "test_error": 0.3}
                              for t in ("w16-m100-s2", "w16-mNone-s0", "w16-mNone-s1", "w16-mNone-s2")])
    writer.flush()
    assert get(client, "/fig/phase.svg?s=grid&v=2") == phase
    assert get(client, "/fig/curves.svg?s=grid&by=width&v=2") != curves
    wait_for(lambda: drawn.count("bands_figure") >= 2, "the curves drawn again", 60)
    assert drawn.count("analysis_figure") == 1


def test_bad_input_names_the_problem(client):
    assert "unknown sweep 'nope'" in get(client, "/api/meta?s=nope", 404)["error"]
    assert "unknown sweep &#x27;nope&#x27;" in get(client, "/sweep?s=nope", 404)  # escaped in the page
    assert "name the sweep" in get(client, "/api/cells", 400)["error"]
    assert "unknown axis 'depth'" in get(client, "/fig/phase.svg?s=grid&x=depth", 400)
    assert "unknown metric 'nope'" in get(client, "/fig/curves.svg?s=grid&metric=nope", 400)
    assert "aligned on step" in get(client, "/fig/curves.svg?s=grid&x=epochs", 400)


def test_updates_follow_new_files(store, client):
    before = get(client, "/api/signature")["signature"]
    assert get(client, "/api/signature")["signature"] == before
    cells = get(client, "/api/cells?s=other")
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "o32", "attempt": 1, "status": "finished", "width": 32, "seed": 0, "success": True, "wall_s": 1.0,
                              "finished_at": datetime(2026, 1, 2, tzinfo=timezone.utc)}])
    writer.append("metrics", [{"trial_id": "o32", "attempt": 1, "step": 0, "test_error": 0.01}])
    writer.append("sweeps", [{"sweep": "other", "spec": "", "path": "", "submitted_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
                              "trial_ids": ["o16", "o64", "o32"], "axes": ["width"], "parameters": ["seed", "width"],
                              "success_metric": "test_error", "success_op": "<=", "success_value": 0.1}])
    writer.flush()
    from paretolab.serve import snapshot

    snapshot.SIGNATURE_TTL_S, ttl = 0.0, snapshot.SIGNATURE_TTL_S  # the next poll lists the store again
    try:
        assert get(client, "/api/signature")["signature"] != before
        # the poll that found the change starts computing the parts pages asked for, before they ask
        snaps, key = client.app.state.snapshots, ("cells", (("s", "other"),))
        wait_for(lambda: snaps.holds(key), "the cells computed again after the change", 60)
        after = get(client, "/api/cells?s=other")
    finally:
        snapshot.SIGNATURE_TTL_S = ttl
    assert cells["total"] == 2 and after["total"] == 3


def end_a_trial(store, trial_id: str, width: int = 8, success: bool = False, sweep_lists_it: bool = False) -> None:
    """A driver's flush: a trial of `other` ended (listed in the sweep's row where `sweep_lists_it`)."""
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": trial_id, "attempt": 1, "status": "finished", "width": width, "seed": 0,
                              "success": success, "wall_s": 1.0, "finished_at": datetime(2026, 1, 2, tzinfo=timezone.utc)}])
    if sweep_lists_it:
        writer.append("sweeps", [{"sweep": "other", "spec": "", "path": "", "submitted_at": datetime(2026, 1, 2, tzinfo=timezone.utc),
                                  "trial_ids": ["o16", "o64", trial_id], "axes": ["width"], "parameters": ["seed", "width"],
                                  "success_metric": "test_error", "success_op": "<=", "success_value": 0.1}])
    writer.flush()


def test_the_server_watches_the_store_while_a_page_is_open(store, monkeypatch):
    """A flush starts the parts a page asked for again by itself: no page has to poll first."""
    from paretolab.serve import snapshot

    monkeypatch.setattr(snapshot, "SIGNATURE_TTL_S", 0.0)
    monkeypatch.setattr(snapshot, "WATCH_EVERY_S", 0.05)
    snaps = snapshot.Snapshots(store)
    made = []
    totals = lambda: data.cells_table(store, "other")["total"]  # noqa: E731
    assert snaps.cached("cells", lambda: made.append(totals()) or made[-1]) == 2
    stop = snaps.watch()
    try:
        end_a_trial(store, "o32", width=32, success=True, sweep_lists_it=True)
        # nothing here asks for the signature or the part: the watcher finds the change and computes it
        wait_for(lambda: len(made) == 2, "the part computed again after the flush, unasked", 60)
    finally:
        stop()
    assert made == [2, 3]
    assert snaps.holds("cells")


def test_the_tables_before_the_figures(store):
    """A figure asked for while a table is computed waits for it: the tables of an update arrive
    first, the figures (most of the server's time) after."""
    import threading

    from paretolab.serve import snapshot

    snaps = snapshot.Snapshots(store)
    order, release = [], threading.Event()

    def table():
        order.append("table started")
        release.wait(60)
        order.append("table done")
        return 1

    t = threading.Thread(target=lambda: snaps.cached(("cells", ()), table))
    t.start()
    wait_for(lambda: order, "the table started", 60)
    f = threading.Thread(target=lambda: snaps.cached(("fig:phase", ()), lambda: order.append("figure") or 2))
    f.start()
    time.sleep(0.3)  # a window, not a synchronization: a figure that did not wait would be made in it
    assert order == ["table started"]
    release.set()
    t.join(60)
    f.join(60)
    assert order == ["table started", "table done", "figure"]


def test_a_change_is_shown_no_sooner_than_its_last_update_took(store, monkeypatch):
    """After the parts of a change took t seconds, the next change waits `PACE` x t to be shown:
    the view leaves the machine to the run writing the store, however often the driver flushes."""
    from paretolab.serve import snapshot

    monkeypatch.setattr(snapshot, "SIGNATURE_TTL_S", 0.0)
    monkeypatch.setattr(snapshot, "PACE", 10_000.0)  # a hold of hours: nothing but the rule can show the change
    monkeypatch.setattr(snapshot, "HOLD_AT_MOST_S", 3600.0)
    snaps = snapshot.Snapshots(store)
    first = snaps.signature()
    snaps.cached("cells", lambda: data.cells_table(store, "other")["total"])
    end_a_trial(store, "o8")
    second = snaps.signature()  # shown at once: no update took any time yet; its parts are computed again
    assert second != first
    wait_for(lambda: snaps.holds("cells") and not snaps._refreshing, "the update's parts computed", 60)
    end_a_trial(store, "o9")
    assert snaps.signature() == second  # held back: the update before took a while
    snaps._held_until = time.monotonic()  # as when the hold ends
    assert snaps.signature() not in (first, second)


def test_a_hold_is_bounded(store, monkeypatch):
    """However long the last change's parts took (or a part hangs on a slow store), the next change
    is held back `HOLD_AT_MOST_S` at most."""
    from paretolab.serve import snapshot

    monkeypatch.setattr(snapshot, "SIGNATURE_TTL_S", 0.0)
    monkeypatch.setattr(snapshot, "HOLD_AT_MOST_S", 0.0)
    monkeypatch.setattr(snapshot, "PACE", 10_000.0)
    snaps = snapshot.Snapshots(store)
    first = snaps.signature()
    snaps.cached("spec", lambda: data.specs(store, "other"))
    for trial_id in ("o8", "o9"):  # the second is the test: the first change's parts took some time
        end_a_trial(store, trial_id)
        wait_for(lambda: not snaps._refreshing, "the last change's parts computed", 60)
        assert snaps.signature() != first  # shown at once: a hold of at most 0 s
        first = snaps.signature()


def test_no_page_open_no_watching(store, monkeypatch):
    """Parts asked longer ago than `REFRESH_WITHIN_S`: the watcher does not list the store."""
    from paretolab.serve import snapshot

    monkeypatch.setattr(snapshot, "WATCH_EVERY_S", 0.01)
    monkeypatch.setattr(snapshot, "REFRESH_WITHIN_S", 0.0)
    snaps = snapshot.Snapshots(store)
    listed = []
    real = snaps.signature
    monkeypatch.setattr(snaps, "signature", lambda: listed.append(1) or real())
    snaps.cached("spec", lambda: "x")
    asked = len(listed)
    stop = snaps.watch()
    try:
        time.sleep(0.3)  # a window, not a synchronization: a watcher that ignored the rule lists ~30 times in it
    finally:
        stop()
    assert len(listed) == asked


@pytest.mark.slow  # over a second: every route of two stores
def test_a_sweep_with_nothing_to_show_answers_every_route(tmp_path):
    """No trial yet; then trials that never succeed, one diverged with NaN: every route answers 200."""
    empty = Store(make_store(tmp_path / "empty", "fresh", ["lr"], [], []))
    nan = Store(make_store(tmp_path / "nan", "bad", ["lr"],
                           [{"trial_id": f"b{i}", "lr": lr, "success": False, "wall_s": 1.0, "status": "diverged" if i == 0 else "finished"}
                            for i, lr in enumerate((0.1, 1.0))],
                           [{"trial_id": f"b{i}", "step": s, "samples": s, "test_error": math.nan if i == 0 and s else 0.5}
                            for i in range(2) for s in (0, 10)]))
    routes = ["/api/sweeps", "/api/meta?s={s}", "/api/status?s={s}", "/api/cells?s={s}", "/api/transitions?s={s}&by=lr",
              "/api/failures?s={s}", "/api/spec?s={s}", "/fig/phase.svg?s={s}", "/fig/frontier.svg?s={s}",
              "/fig/curves.svg?s={s}&by=lr", "/fig/curves.svg?s={s}&x=flops", "/fig/luck.svg?s={s}", "/sweep?s={s}", "/"]
    for st, name in ((empty, "fresh"), (nan, "bad")):
        with TestClient(create_app(st), base_url=BASE) as c:
            for route in routes:
                get(c, route.format(s=name))
    with TestClient(create_app(nan), base_url=BASE) as c:
        assert get(c, "/api/sweeps")["sweeps"][0]["diverged"] == 1


def test_no_store_yet(tmp_path):
    with TestClient(create_app(Store(tmp_path / "none")), base_url=BASE) as c:
        assert get(c, "/api/sweeps") == {"sweeps": [], "why": f"no result store at {tmp_path / 'none'} yet: "
                                                             "this page fills in once a run writes it"}
        assert "no result store" in get(c, "/api/meta?s=x", 404)["error"]
        assert get(c, "/api/signature")["signature"]


def test_token_is_required_on_every_request(store):
    app = create_app(store, token="s3cret", hosts=None)
    with TestClient(app, base_url="http://192.0.2.1:8765") as c:
        for path in ("/", "/api/sweeps", "/fig/phase.svg?s=grid", "/static/app.js", "/api/signature"):
            r = c.get(path)
            assert r.status_code == 401 and "token" in r.text, path
        assert c.get("/api/sweeps?token=wrong").status_code == 401
        assert c.get("/api/sweeps", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        r = c.get("/sweep?s=grid&token=s3cret", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/sweep?s=grid" and "token" not in r.headers["location"]
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/api/sweeps").status_code == 200  # the cookie now carries it


def test_loopback_refuses_other_host_names(store):
    with TestClient(create_app(store), base_url="http://evil.example:8765") as c:
        assert c.get("/api/sweeps").status_code == 400
    with TestClient(create_app(store), base_url="http://localhost:8765") as c:
        assert c.get("/api/sweeps").status_code == 200


def test_bind_loopback_port_in_use_and_token():
    from paretolab.serve import server
    from paretolab.vocabulary.errors import UsageError

    first = server.bind("127.0.0.1", 0)
    try:
        port = first.sock.getsockname()[1]
        assert first.token is None and first.url == f"http://127.0.0.1:{port}/"
        with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}: .*pass another --port"):
            server.bind("127.0.0.1", port)
    finally:
        first.sock.close()
    with pytest.raises(UsageError, match="--port takes 0 to 65535"):
        server.bind("127.0.0.1", 70000)
    wide = server.bind("0.0.0.0", 0)
    try:
        assert wide.token and len(wide.token) >= 32 and wide.url.endswith(f"/?token={wide.token}")
        assert not wide.loopback
    finally:
        wide.sock.close()
    assert server.is_loopback("localhost") and server.is_loopback("::1") and not server.is_loopback("0.0.0.0")


def test_one_database_per_snapshot_of_a_single_sweep_store(tmp_path):
    from paretolab.analysis.cells import cells
    from paretolab.serve.shared import SharedSnapshots

    trials, metrics = grid_trials()
    plain = Store(make_store(tmp_path / "one", "grid", ["width", "train_size"], trials, metrics))
    shared = SharedSnapshots(plain)
    assert cells(shared, "grid").equals(cells(plain, "grid"))
    assert cells(shared, "grid", axes=["width"]).equals(cells(plain, "grid", axes=["width"]))
    assert len(shared._bases) == 1  # both queries read cursors of one database
    writer = StoreWriter(plain)
    writer.append("metrics", [{"trial_id": "w16-mNone-s0", "attempt": 1, "step": 300, "test_error": 0.01}])
    writer.flush()
    assert cells(shared, "grid").equals(cells(plain, "grid"))  # a new file: a new snapshot, read afresh
    assert len(shared._bases) == 1
    with pytest.raises(Exception, match="unknown sweep 'nope'"):
        shared.connect("nope")
