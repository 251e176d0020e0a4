"""Frontier search against the full grid: trials and wall time to find the same phase boundary.

    python benchmarks/search.py

Runs `examples/frontier_search.yaml` (offline (10, 3)-sparse parity, 2 widths x 15 training-set sizes
x 8 seeds; bisection along train_size per width) into a fresh store, then the same spec without its
`search` key (the full grid) into another fresh store, both through `paretolab.run` on one local Ray
(started once, before either run, so neither pays its start-up; one unmeasured search into a
scratch store first, so that neither pays first-use costs: page cache, imports). Prints the trial counts and wall
times of both, and each width's boundary: the search's, and the grid's (the smallest training-set
size whose cell reaches p_success >= 1/2).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine_line, scratch  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "frontier_search.yaml"


def main() -> None:
    import ray

    import paretolab
    from paretolab.analysis.cells import cells

    print(machine_line())
    folder = scratch("plsearch-")
    grid_spec = folder / "grid.yaml"
    grid_spec.write_text("".join(line for line in EXAMPLE.read_text().splitlines(keepends=True)
                                 if not line.startswith("search:")).replace("sweep: frontier-search", "sweep: grid"))
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        paretolab.run(EXAMPLE, store=folder / "warm-up")
        t0 = time.monotonic()
        searched = paretolab.run(EXAMPLE, store=folder / "search")
        search_s = time.monotonic() - t0
        t0 = time.monotonic()
        grid = paretolab.run(grid_spec, store=folder / "grid")
        grid_s = time.monotonic() - t0
    finally:
        ray.shutdown()
    table = cells(paretolab.open_store(folder / "grid"), "grid").to_pylist()
    print(f"{'run':<16}{'trials':>8}{'wall s':>9}")
    print(f"{'frontier search':<16}{searched.ran:>8}{search_s:>9.1f}")
    print(f"{'full grid':<16}{grid.ran:>8}{grid_s:>9.1f}")
    print(f"trials: {grid.ran / searched.ran:.1f}x fewer; wall: {grid_s / search_s:.2f}x")
    for row in searched.search.rows():
        reached = [c["train_size"] for c in table if c["width"] == row["width"] and c["p_success"] >= 0.5]
        print(f"width {row['width']}: search boundary {row['boundary']} (95% bounds {row['ci_low']}..{row['ci_high']}, "
              f"{row['trials']} trials), grid boundary {min(reached) if reached else None}")


if __name__ == "__main__":
    main()
