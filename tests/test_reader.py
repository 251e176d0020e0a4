"""A reader in another process queries the store continuously while a sweep writes and compacts it:
it never errors, never sees a partial file or a duplicated row, and its counts never go backwards."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import paretolab
from paretolab.store import StoreWriter

READER = textwrap.dedent("""
    import sys
    import paretolab
    from paretolab.errors import StoreError

    store = paretolab.open_store(sys.argv[1])
    sql = ("SELECT (SELECT count(*) FROM trials_all) AS t, (SELECT count(*) FROM metrics_all) AS m, "
           "(SELECT count(DISTINCT (trial_id, attempt, step)) FROM metrics_all) AS d")
    while True:
        try:
            r = store.query(sql).to_pylist()[0]
        except StoreError as e:
            if "no result store" not in str(e):
                raise
            r = {"t": 0, "m": 0, "d": 0}
        print(r["t"], r["m"], r["d"], flush=True)
""")


def test_reader_during_a_sweep_with_compactions(ray_cluster, tmp_path, write_spec, monkeypatch):
    root = tmp_path / "r"
    flush = StoreWriter.flush

    def flush_then_compact(self):  # compact after every write: the most a reader can be disturbed
        flush(self)
        for table in ("trials", "metrics"):
            self.store.compact(table)

    monkeypatch.setattr(StoreWriter, "flush", flush_then_compact)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(root)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    seen: list[tuple[int, int, int]] = []
    arrived = threading.Condition()

    def collect() -> None:
        for line in reader.stdout:
            with arrived:
                seen.append(tuple(map(int, line.split())))
                arrived.notify_all()
        with arrived:
            arrived.notify_all()

    threading.Thread(target=collect, daemon=True).start()

    def wait_for(condition, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        with arrived:
            while not condition() and reader.poll() is None:
                assert arrived.wait(deadline - time.monotonic()), "the reader stopped reporting"

    try:
        wait_for(lambda: len(seen) > 0)
        total = 0
        for widths in ("[16, 32]", "[16, 32, 64]"):
            spec = write_spec(tmp_path, name="live", widths=widths, seeds=3, max_steps=400, every=20)
            total = paretolab.run(spec, store=root, workers=2).total
        wait_for(lambda: seen[-1][0] == total)
    finally:
        reader.terminate()
        _, err = reader.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert seen[-1][0] == total == 9
    assert all(m == d for _, m, d in seen)  # never a duplicated curve row (compaction hid what it merged)
    assert [t for t, _, _ in seen] == sorted(t for t, _, _ in seen)  # finished trials only grow
    assert [m for _, m, _ in seen] == sorted(m for _, m, _ in seen)  # no curve row lost once seen
    assert len({m for _, m, _ in seen}) > 2  # it read while the sweep wrote, not only before and after
