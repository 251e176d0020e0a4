"""The store defends itself: a query cannot write or reach the network, a corrupt manifest is one
line that `doctor` repairs, `doctor` publishes a complete temporary file and finds what only DuckDB
cannot read (no Ray: stores written by hand)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import paretolab
from paretolab.store import files as _files
from paretolab.store import StoreWriter
from paretolab.cli import main

TRIALS = [{"trial_id": f"t{i}", "width": 8 * (i + 1), "curve_rows": 3} for i in range(4)]
METRICS = [{"trial_id": f"t{i}", "step": s, "samples": 32 * s, "test_error": 0.5 - s / 1000}
           for i in range(4) for s in (0, 100, 200)]


@pytest.fixture
def store(tmp_path, make_store):
    return make_store(tmp_path / "r", "s", ["width"], TRIALS, METRICS)


def test_a_query_over_a_url_neither_downloads_nor_installs_anything(store, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PARETOLAB_STORE"} | {"HOME": str(home)}
    out = subprocess.run(["paretolab", "query", "SELECT * FROM 'https://example.com/x.parquet'", "--store", str(store)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "not other files, URLs or extensions" in out.stderr
    assert list(home.iterdir()) == []  # no ~/.duckdb: no extension was fetched or installed


def test_the_python_api_connection_is_locked_too(store):
    con = paretolab.open_store(store).connect()
    target = str(paretolab.open_store(store).files("trials")[0])
    for sql in (f"COPY (SELECT 1) TO '{store}/x.csv'", "SET enable_external_access = true", "LOAD httpfs",
                f"ATTACH '{store}/x.db'"):
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    with pytest.raises(paretolab.errors.StoreError, match="got COPY"):
        paretolab.open_store(store).query(f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet, USE_TMP_FILE false)")
    assert pq.read_table(target).num_rows == 4  # the store's file untouched
    assert not (store / "x.csv").exists() and not (store / "x.db").exists()


def test_a_corrupt_manifest_is_one_line_and_doctor_rebuilds_it(store, capsys):
    st = paretolab.open_store(store)
    old = st.files("metrics")[0]
    merged = old.with_name("99999999999999999999-merged.parquet")  # a compaction of an older version
    shutil.copy(old, merged)
    (store / "metrics" / "_compactions.json").write_text('{"99999999999999999999-merged.parq')  # cut short
    assert main(["query", "SELECT count(*) AS n FROM metrics", "--store", str(store)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "_compactions.json is corrupt; run `paretolab doctor --store" in line

    assert main(["doctor", "--check", "--store", str(store)]) == 1
    assert "corrupt (does not parse)" in capsys.readouterr().out
    assert main(["doctor", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "rebuilt from the files (1 merged)" in out and f"replaced by {merged.name}" in out
    assert json.loads((store / "metrics" / "_compactions.json").read_text()) == {merged.name: [old.name]}
    assert (store / "_quarantine" / "metrics" / "_compactions.json").exists()
    assert st.query("SELECT count(*) FROM metrics").column(0)[0].as_py() == 12  # each row once
    assert main(["doctor", "--store", str(store)]) == 0 and "nothing to do" in capsys.readouterr().out


def leave_temporary(store: Path, table: str, rows: list[dict]) -> Path:
    """A complete, fsynced temporary file, as a driver killed between fsync and rename leaves it."""
    tmp = store / table / ".00000000000000000009-deadbeef.parquet.tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp, write_page_checksum=True)
    return tmp


def test_doctor_publishes_a_complete_temporary_and_the_curve_is_whole_again(store, capsys):
    st = paretolab.open_store(store)
    writer = StoreWriter(st)
    writer.append("trials", [{"trial_id": "t9", "attempt": 1, "status": "finished", "width": 99, "curve_rows": 2}])
    writer.flush()  # a result whose curve's file never got its name
    tmp = leave_temporary(store, "metrics", [{"trial_id": "t9", "attempt": 1, "step": s, "samples": 32 * s,
                                              "test_error": 0.4} for s in (0, 100)])
    assert "t9" not in st.ended()  # its curve is short: it would run again
    assert main(["doctor", "--store", str(store)]) == 0
    assert "published as 00000000000000000009-deadbeef.crc32-" in capsys.readouterr().out
    assert not tmp.exists() and "t9" in st.ended()
    assert st.query("SELECT count(*) FROM metrics WHERE trial_id = 't9'").column(0)[0].as_py() == 2


def test_doctor_moves_aside_a_temporary_whose_rows_were_written_again(store, capsys):
    leave_temporary(store, "metrics", [{"trial_id": "t0", "attempt": 1, "step": 0, "samples": 0, "test_error": 0.5}])
    assert main(["doctor", "--store", str(store)]) == 0
    assert "1 of its rows were written again since" in capsys.readouterr().out
    assert paretolab.open_store(store).query("SELECT count(*) FROM metrics").column(0)[0].as_py() == 12


def test_doctor_reads_with_duckdb_what_pyarrow_reads(store, capsys):
    """A file written before files were sealed, flipped where pyarrow still reads it and DuckDB does
    not (the store's queries failed while `doctor --check` found nothing): found and moved aside."""
    legacy = store / "trials" / "00000000000000000001-0badf11e.parquet"  # the name files had before seals
    pq.write_table(pa.Table.from_pylist([{"trial_id": f"x{i}", "attempt": 1, "status": "finished",
                                          "error": "e" * (i % 7)} for i in range(300)]), legacy)
    original, rng = legacy.read_bytes(), random.Random(0)
    for _ in range(2000):  # seeded: the first flip that pyarrow reads past and DuckDB does not
        data = bytearray(original)
        bit = rng.randrange(len(data) * 8)
        data[bit // 8] ^= 1 << (bit % 8)
        legacy.write_bytes(bytes(data))
        if pyarrow_reads(legacy) and not duckdb_reads(legacy):
            break
    else:
        pytest.fail("no such flip among 2000")
    assert main(["doctor", "--check", "--store", str(store)]) == 1
    assert f"{legacy}: unreadable" in capsys.readouterr().out


def pyarrow_reads(path: Path) -> bool:
    try:
        pq.read_table(path, page_checksum_verification=True)
        return True
    except (OSError, pa.ArrowException):
        return False


def duckdb_reads(path: Path) -> bool:
    try:
        duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
        return True
    except duckdb.Error:
        return False


def test_every_file_written_is_sealed_and_checksummed(store):
    for path in store.rglob("*.parquet"):
        entry = _files.FileEntry(path.name, str(path), path.stat().st_size, 0.0)
        assert _files.SEALED.search(path.name) and _files.seal_error(_files.Location.parse(store), entry) is None
        assert pq.read_table(path, page_checksum_verification=True).num_rows > 0
