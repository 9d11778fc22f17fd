"""Speed-up of `meshpcap.analyze_many` with 2 workers over 1, on 8 generated captures.

Writes 8 captures with bench/gen.py (different seeds, below the 64 MiB at which one capture
is read by two processes, so each capture is one process's work), then audits them with
jobs=1 and jobs=2 alternately, --runs times each (no result cache), and prints the medians
and their ratio.  Usage: python bench/batch.py [--packets 60000] [--runs 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import gen  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=60_000)
    ap.add_argument("--captures", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the captures (default: a temp dir)")
    args = ap.parse_args(argv)

    import meshpcap

    tmp = None
    d = args.dir
    if d is None:
        tmp = tempfile.TemporaryDirectory(prefix="meshpcap-batch-bench-")
        d = Path(tmp.name)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(args.captures):
        p = d / f"capture-{i:02d}.pcap"
        if not p.exists():
            gen.write_pcap(p, args.packets, seed=100 + i)
        paths.append(str(p))
    size = sum(os.path.getsize(p) for p in paths)
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.runs):
        for jobs in (1, 2):
            began = time.perf_counter()
            b = meshpcap.analyze_many(paths, jobs=jobs, progress=False, use_cache=False)
            times[jobs].append(time.perf_counter() - began)
            assert len(b.captures) == len(paths) and (b.captures.verdict != "error").all()
    med = {j: statistics.median(t) for j, t in times.items()}
    result = {"captures": len(paths), "packets_each": args.packets, "total_mb": round(size / 1e6, 1),
              "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
              "runs": args.runs, "seconds": {str(j): [round(x, 3) for x in t] for j, t in times.items()},
              "median_s": {str(j): round(m, 3) for j, m in med.items()}, "speedup": round(med[1] / med[2], 2)}
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
