"""Per-update cost of the streaming clip aggregators (``stream.aggregate``) against frames seen.

Each kind, whole clip and a 300-frame window, is brought to 10² and to 10⁵ frames, then the next
``k`` updates are timed one by one; mean, median, p99 and max in µs. The max is mostly the OS scheduler
on a loaded machine; a window's flip (one vectorised pass over the window every ``window`` frames) shows
in the p99. Writes the rows as JSON (``--out``) and prints a table.

    python tools/bench_aggregate.py --out results/bench/aggregate.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stream.aggregate import KINDS, N_SCORES, make_aggregator


def benchmark(sizes: Sequence[int] = (100, 100_000), k: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(N_SCORES), size=max(sizes) + k).astype(np.float32)
    rows = []
    clock = time.perf_counter_ns
    for kind in KINDS:
        for window in (None, 300):
            for n in sizes:
                agg = make_aggregator(kind, [0.05, 0.1, 0.2, 0.3], window_frames=window)
                for i in range(n):
                    agg.update(probs[i], t_ns=i)
                times = np.empty(k)
                for j in range(k):
                    row = probs[n + j]
                    t0 = clock()
                    agg.update(row, t_ns=n + j)
                    times[j] = clock() - t0
                us = times / 1000
                rows.append({
                    "kind": kind, "window": window, "frames_seen": n,
                    "mean_us": round(float(us.mean()), 2), "median_us": round(float(np.median(us)), 2),
                    "p99_us": round(float(np.percentile(us, 99)), 2), "max_us": round(float(us.max()), 1),
                })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--updates", type=int, default=2000, help="timed updates per row")
    args = p.parse_args(argv)
    rows = benchmark(k=args.updates)
    for r in rows:
        print(f"{r['kind']:<12} window={r['window']!s:<5} after {r['frames_seen']:>6} frames: "
              f"mean {r['mean_us']:6.2f} µs  median {r['median_us']:6.2f} µs  "
              f"p99 {r['p99_us']:6.2f} µs  max {r['max_us']:7.1f} µs")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
