"""Faults, as a user meets them: worker processes SIGKILLed mid-trial again and again, the driver
SIGKILLed mid-sweep and the same command run again, and two drivers started on one store.

Every run is the real `paretolab run` in a subprocess with its own embedded Ray (in a private
RAY_TMPDIR, so other Ray instances on the machine are never touched). Synchronization is by polling
the store (or the lock file) with a deadline; every process this file starts or finds under its
drivers is gone when a test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

import paretolab
import support

# Trials that never meet the criterion (test_error <= -1) run all their steps: a few seconds each,
# with an evaluation (a metric row) every 1,000 steps, so steps 0, 1000, ..., MAX_STEPS.
MAX_STEPS, EVERY = 20000, 1000
ROWS_PER_TRIAL = MAX_STEPS // EVERY + 1
DEADLINE_S = 300  # generous: the 2-core machine may be shared with other test runs


def write_spec(folder: Path, seeds: int, extra: str = "") -> Path:
    """The faults sweep: widths 16 and 32 x `seeds`, never succeeding, 3 attempts at most."""
    return support.write_spec(folder, name="faults", seeds=seeds, max_steps=MAX_STEPS, every=EVERY, target=-1,
                              extra="max_attempts: 3\n" + extra)


@pytest.fixture
def ray_tmp():
    """A private RAY_TMPDIR (short: Ray's unix sockets live under it)."""
    import shutil

    path = tempfile.mkdtemp(prefix="plf", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(spec: Path, store: Path, ray_tmp: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PARETOLAB_STORE")}
    return subprocess.Popen(["paretolab", "run", str(spec), "--store", str(store), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env | {"RAY_TMPDIR": ray_tmp})


def wait_for(predicate, what: str, timeout_s: float = DEADLINE_S, proc=None):
    return support.wait_for(predicate, what, timeout_s, proc=proc)


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live, non-zombie process."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if stat[0] != "Z":
            out[int(pid)] = (int(stat[1]), cmd)
    return out


def descendants(root: int) -> dict[int, str]:
    """pid -> command line of every live process under `root` (Ray's GCS, raylet, agents, workers)."""
    table, found, todo = processes(), {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, cmd) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = cmd
                todo.append(pid)
    return found


def alive(pids) -> dict[int, str]:
    table = processes()
    return {p: table[p][1] for p in pids if p in table}


def kill_all(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL a driver still running (a failed test) and everything under it."""
    if proc.poll() is None:
        under = descendants(proc.pid)
        proc.kill()
        proc.wait()
        kill_all(under)


def query(store: Path, sql: str) -> list[dict]:
    return paretolab.open_store(store).query(sql).to_pylist()


def count(store: Path, sql: str) -> int:
    if not (store / "trials").is_dir() and not (store / "metrics").is_dir():
        return 0
    return query(store, sql)[0]["n"]


def check_every_trial_once(store: Path, total: int, max_attempts: int = 3) -> list[dict]:
    """Every trial ended exactly once; no metric row of the attempt that counts lost or duplicated."""
    assert count(store, "SELECT count(*) AS n FROM trials_all") == total
    trials = query(store, "SELECT trial_id, attempt, status, steps, error FROM trials")
    assert len(trials) == total
    for t in trials:
        if t["status"] == "failed":  # killed at every attempt
            assert t["attempt"] == max_attempts and f"gave up after {max_attempts} attempts" in t["error"], t
        else:
            assert (t["status"], t["steps"], t["error"]) == ("finished", MAX_STEPS, None), t
    curves = {r["trial_id"]: r for r in query(store, "SELECT trial_id, count(*) AS n, count(DISTINCT step) AS d, "
                                                     "min(attempt) AS lo, max(attempt) AS hi FROM metrics GROUP BY 1")}
    for t in trials:
        c = curves.get(t["trial_id"])
        if t["status"] == "finished":
            assert c is not None and (c["n"], c["d"], c["lo"], c["hi"]) == (ROWS_PER_TRIAL, ROWS_PER_TRIAL, t["attempt"], t["attempt"]), (t, c)
        elif c is not None:
            assert c["n"] == c["d"] and c["lo"] == c["hi"] == t["attempt"], (t, c)
    assert count(store, "SELECT count(*) AS n FROM (SELECT trial_id, attempt, step FROM metrics_all "
                        "GROUP BY ALL HAVING count(*) > 1)") == 0  # no row written twice, of any attempt
    return trials


@pytest.mark.slow  # starts Ray
def test_workers_killed_again_and_again_lose_nothing(tmp_path, ray_tmp):
    store, kills = tmp_path / "r", 3
    driver = start(write_spec(tmp_path, seeds=3), store, ray_tmp)
    killed: list[int] = []
    try:
        rows_at_kill = 0
        for _ in range(kills):
            # progress since the previous kill: rows of a live worker reached the store
            wait_for(lambda: driver.poll() is not None or count(store, "SELECT count(*) AS n FROM metrics_all") > rows_at_kill,
                     "new metric rows")
            assert driver.poll() is None, driver.communicate()
            workers = wait_for(lambda: sorted(p for p, cmd in descendants(driver.pid).items() if cmd.startswith("ray::Worker")),
                               "a worker actor process", proc=driver)
            victim = workers[len(killed) % len(workers)]
            rows_at_kill = count(store, "SELECT count(*) AS n FROM metrics_all")
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
        out, err = driver.communicate(timeout=DEADLINE_S)
    finally:
        stop(driver)
    assert driver.returncode == 0, err
    assert len(set(killed)) == kills
    trials = check_every_trial_once(store, total=6)
    assert max(t["attempt"] for t in trials) > 1  # the kills hit trials mid-way, and they ran again
    assert "6 trials (6 run now, 0 already in the store)" in out


@pytest.mark.slow  # starts Ray
def test_driver_killed_then_rerun_runs_only_unfinished_trials(tmp_path, ray_tmp):
    store, total = tmp_path / "r", 8
    spec = write_spec(tmp_path, seeds=4, extra="resources: {pack_size: 1}\n")  # trials end one by one
    driver = start(spec, store, ray_tmp)
    try:
        wait_for(lambda: driver.poll() is not None or count(store, "SELECT count(*) AS n FROM trials") >= 1,
                 "a first finished trial")
        assert driver.poll() is None, driver.communicate()
        ray = descendants(driver.pid)
        driver.kill()  # SIGKILL: no flush, no cleanup
        driver.wait()
    finally:
        stop(driver)
    with paretolab.open_store(store).lock():  # flock died with its holder
        pass
    # read after the kill: whatever the driver had flushed is what counts as done
    before = {r["trial_id"]: r for r in query(store, "SELECT trial_id, attempt, status, finished_at FROM trials_all")}
    assert 1 <= len(before) < total

    # the embedded Ray shares the driver's fate: GCS, raylet and workers exit on their own
    core = [p for p, cmd in ray.items() if "gcs_server" in cmd or "raylet" in cmd or cmd.startswith("ray::Worker")]
    assert any("raylet" in cmd for cmd in ray.values())
    wait_for(lambda: not alive(core), "the killed driver's raylet, GCS and workers exiting", timeout_s=120)

    rerun = start(spec, store, ray_tmp)
    try:
        out, err = rerun.communicate(timeout=DEADLINE_S)
    finally:
        stop(rerun)
    # Ray 2.60's dashboard and runtime-env agents outlive a SIGKILLed driver by a minute or more
    # before they notice their raylet is gone; they hold nothing of the store
    kill_all(alive(ray))
    assert rerun.returncode == 0, err
    assert f"{total} trials ({total - len(before)} run now, {len(before)} already in the store)" in out
    check_every_trial_once(store, total)
    after = {r["trial_id"]: r for r in query(store, "SELECT trial_id, attempt, status, finished_at FROM trials_all")}
    assert {t: after[t] for t in before} == before  # the trials done before the kill did not run again


@pytest.mark.slow  # starts Ray
def test_a_second_driver_on_the_same_store_is_refused(tmp_path, ray_tmp):
    store = tmp_path / "r"
    spec = write_spec(tmp_path, seeds=1, extra="resources: {pack_size: 1}\n")
    first = start(spec, store, ray_tmp)
    try:
        holder = f"{first.pid} on {socket.gethostname()}"
        lock = store / ".lock"
        wait_for(lambda: first.poll() is not None or (lock.exists() and lock.read_text() == holder), "the first run's lock")
        assert first.poll() is None, first.communicate()
        second = subprocess.run(["paretolab", "run", str(spec), "--store", str(store)], capture_output=True,
                                text=True, timeout=120, env={**os.environ, "RAY_TMPDIR": ray_tmp})
        out, err = first.communicate(timeout=DEADLINE_S)
    finally:
        stop(first)
    assert second.returncode == 2 and second.stdout == ""
    assert second.stderr.splitlines() == [
        f"error: the store {store} is being written by another paretolab run (pid {holder}); "
        "wait for it or use another --store"]
    assert first.returncode == 0, err
    assert "2 trials (2 run now, 0 already in the store)" in out
    check_every_trial_once(store, total=2)
    assert count(store, "SELECT count(*) AS n FROM sweeps_all") == 1  # the refused run wrote nothing


class _BrokenWorker:
    """A worker actor whose construction fails, as on a node where the worker code cannot import."""

    def __init__(self, *args):
        raise ImportError("the worker code does not import on this node")


def test_workers_that_cannot_start_stop_the_run_with_the_reason(ray_cluster, tmp_path):
    import ray

    from paretolab.store import Store, StoreWriter
    from paretolab.errors import ClusterError
    from paretolab.orchestrator.grid import expand
    from paretolab.orchestrator.scheduler import MAX_START_FAILURES, Scheduler, _Slot
    from paretolab.vocabulary.sweep import Resources
    from paretolab.spec import load_spec

    spawned = []

    class Unstartable(Scheduler):
        def _spawn(self):
            handle = ray.remote(_BrokenWorker).options(num_cpus=1, max_restarts=0).remote()
            spawned.append(handle)
            return _Slot(handle, handle.__ray_ready__.remote())

    trials = list(expand(load_spec(write_spec(tmp_path, seeds=2))))
    scheduler = Unstartable(StoreWriter(Store(tmp_path / "r")), 1, Resources(cpu=1))
    with pytest.raises(ClusterError, match="worker actors died while starting.*does not import"):
        scheduler.run(trials, {})
    assert len(spawned) == MAX_START_FAILURES  # replaced until the limit, then stopped


def test_a_trial_that_kills_its_worker_fails_alone(ray_cluster, tmp_path):
    """Two trials kill their worker process whenever it builds them, among 22 healthy ones that share
    their first packs: the two end failed after `max_attempts` worker deaths, with that reason,
    and every healthy trial finishes (a re-queued trial goes behind the queue, and runs its last
    attempt in a call of its own: re-queued in front, in the same packs, the poisoned trials took
    their pack-mates down at every attempt, and all 24 ended failed)."""
    spec = support.write_spec(tmp_path, name="poison", task="poisoned", widths="[16, 32]", seeds=12, max_steps=100,
                              every=50, extra="max_attempts: 3\n")
    spec.write_text(spec.read_text().replace("{n: 10, k: 2}", "{n: 10, k: 2, die_at_seed: 3}"))
    summary = paretolab.run(spec, store=tmp_path / "r", workers=2)
    trials = query(tmp_path / "r", "SELECT seed, width, attempt, status, error FROM trials ORDER BY width, seed")
    poisoned = [t for t in trials if t["seed"] == 3]
    healthy = [t for t in trials if t["seed"] != 3]
    assert len(poisoned) == 2 and len(healthy) == 22
    for t in poisoned:
        assert (t["status"], t["attempt"]) == ("failed", 3), t
        assert t["error"].startswith("worker lost (") and t["error"].endswith("; gave up after 3 attempts"), t
    assert [t["status"] for t in healthy] == ["finished"] * 22, healthy
    assert (summary.ran, summary.failed) == (24, 2)
    assert count(tmp_path / "r", "SELECT count(*) AS n FROM trials_all") == 24  # a death writes no trial row
