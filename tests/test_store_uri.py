"""A store off the head node: `--store s3://bucket/prefix` against a real S3-compatible server
(moto's, on 127.0.0.1), through the CLI: a sweep, a resume, an extension, query, status, compact;
and the write lease that replaces `flock` on object stores."""

from __future__ import annotations

import json
import time
import warnings

import pytest

import paretolab
from paretolab.store import lease as lease_mod
from paretolab.store.files import StoreWarning
from paretolab.store import Store, StoreWriter
from paretolab.cli import main
from paretolab.errors import StoreError


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sweep_resume_extend_query_status_compact_on_s3(ray_cluster, tmp_path, write_spec, s3_store, capsys):
    spec = write_spec(tmp_path, name="remote", widths="[16, 32]", seeds=2)
    code, out, err = cli(capsys, "run", str(spec), "--store", s3_store, "--workers", "2")
    assert code == 0, err
    assert "4 trials (4 run now, 0 already in the store)" in out and f"results: {s3_store}" in out
    assert f"--store {s3_store}" in out  # the next-step commands name the store

    code, out, _ = cli(capsys, "run", str(spec), "--store", s3_store)
    assert code == 0 and "remote: nothing to run: all 4 trials are in the store" in out

    more = write_spec(tmp_path, name="remote", widths="[16, 32, 64]", seeds=2)
    code, out, _ = cli(capsys, "run", str(more), "--store", s3_store, "--workers", "2")
    assert code == 0 and "6 trials (2 run now, 4 already in the store)" in out

    code, out, _ = cli(capsys, "query", "SELECT width, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1",
                       "--store", s3_store, "--format", "json")
    assert code == 0 and json.loads(out) == [{"width": w, "n": 2} for w in (16, 32, 64)]
    code, out, _ = cli(capsys, "status", "--store", s3_store)
    assert code == 0 and "remote" in out and "done" in out

    store = paretolab.open_store(s3_store)
    assert store.root is None and store.uri == s3_store
    curves = store.query("SELECT * FROM metrics ORDER BY ALL").to_pylist()
    assert len(store.files("metrics")) > 1
    code, out, _ = cli(capsys, "compact", "--store", s3_store)
    assert code == 0 and "metrics:" in out
    assert len(store.files("metrics")) == 1
    assert store.query("SELECT * FROM metrics ORDER BY ALL").to_pylist() == curves
    assert store.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == 6  # no trial ran twice
    assert not store.loc.read_bytes(lease_mod.LEASE)  # every run gave its lease back


def test_bad_store_uri_is_one_line(capsys):
    code, _, err = cli(capsys, "status", "--store", "nosuch://bucket/x")
    assert code == 2 and err.startswith("error: cannot open the store 'nosuch://bucket/x'") and len(err.splitlines()) == 1


def test_missing_s3_store_is_a_clear_error(s3_store, capsys):
    code, _, err = cli(capsys, "query", "SELECT 1", "--store", s3_store)
    assert code == 2 and f"no result store at {s3_store}" in err


def test_second_writer_refuses_while_the_lease_is_fresh(s3_store):
    first, second = Store(s3_store), Store(s3_store)
    with first.lock():
        with pytest.raises(StoreError, match="being written by another paretolab run .*lease fresh"):
            with second.lock():
                pass
        StoreWriter(first).append("trials", [{"trial_id": "a", "attempt": 1}])
    with second.lock():  # released: the next run takes it at once
        pass


def test_stale_lease_is_taken_over_with_a_message(s3_store):
    dead = Store(s3_store)
    body = json.dumps({"owner": "dead", "host": "gone", "pid": 1, "expires_at": time.time() - 1}).encode()
    dead.loc.put((lease_mod.LEASE,), lambda out: out.write(body))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Store(s3_store).lock():
            pass
    assert [str(w.message) for w in caught if issubclass(w.category, StoreWarning)] == [
        f"taking over the write lease of {s3_store} from pid 1 on gone: it was not refreshed for 60 s"]


def test_a_run_that_lost_its_lease_stops_writing(s3_store):
    store = Store(s3_store)
    lease = lease_mod.Lease(store.loc, ttl_s=0.3).acquire()
    store._lease = lease
    try:
        other = {"owner": "other", "host": "h", "pid": 2, "expires_at": time.time() + 60}
        store.loc.put((lease_mod.LEASE,), lambda out: out.write(json.dumps(other).encode()))
        deadline = time.monotonic() + 10
        while lease.lost_to is None and time.monotonic() < deadline:  # the refresher notices within ttl/3
            lease._stop.wait(0.05)
        writer = StoreWriter(store)
        writer.append("trials", [{"trial_id": "a", "attempt": 1}])
        with pytest.raises(StoreError, match="lost the write lease .* to pid 2 on h"):
            writer.flush()
    finally:
        lease.release()
    assert json.loads(store.loc.read_bytes(lease_mod.LEASE))["owner"] == "other"  # not ours to delete


def test_unreadable_object_is_skipped_and_doctor_moves_it_aside(s3_store, capsys):
    store = Store(s3_store)
    writer = StoreWriter(store)
    for b in range(3):
        writer.append("trials", [{"trial_id": f"t{b}", "attempt": 1, "status": "finished"}])
        writer.flush()
    bad = store.loc.list("trials")[1]
    whole = store.loc.read_bytes("trials", bad.name)
    store.loc.put(("trials", bad.name), lambda out: out.write(whole[: len(whole) // 2]))  # as a cut upload would
    with pytest.warns(StoreWarning, match=f"skipping unreadable file s3://{bad.path}"):
        assert store.query("SELECT trial_id FROM trials ORDER BY 1").column(0).to_pylist() == ["t0", "t2"]

    code, out, _ = cli(capsys, "doctor", "--check", "--store", s3_store)
    assert code == 1 and f"s3://{bad.path}: unreadable" in out
    code, out, _ = cli(capsys, "doctor", "--store", s3_store)
    assert code == 0 and f"moved to _quarantine/trials/{bad.name}" in out
    assert [e.name for e in store.loc.list("_quarantine/trials")] == [bad.name]
    assert len(store.loc.list("trials")) == 2
    assert cli(capsys, "doctor", "--store", s3_store)[0] == 0
