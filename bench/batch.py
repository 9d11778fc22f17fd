"""Speed-up of `meshpcap.analyze_many` with 2 workers over 1, on 8 generated captures.

Writes 8 captures with bench/gen.py (different seeds, below the 64 MiB at which one capture
is read by two processes, so each capture is one process's work), then audits them with
jobs=1 and jobs=2 alternately, --runs times each (no result cache), and prints the medians
and their ratio.  The same run times a control, a pure-Python CPU loop in 1 and 2 processes:
its ratio is the parallelism the machine gave at that moment (on a shared machine with the
kernel's autogroup scheduling, one session's processes share one slice, so both ratios sink
towards 1 while other sessions are busy).  Usage: python bench/batch.py [--packets 85000] [--runs 3] [--dir DIR]
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


def _burn(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def control(jobs: int, n: int = 3_000_000, tasks: int = 4) -> float:
    from concurrent.futures import ProcessPoolExecutor

    began = time.perf_counter()
    with ProcessPoolExecutor(jobs) as ex:
        list(ex.map(_burn, [n] * tasks))
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=85_000)
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
    ctl: dict[int, list[float]] = {1: [], 2: []}
    meshpcap.analyze_many(paths[:1], jobs=1, progress=False, use_cache=False)  # imports, first reads
    for _ in range(args.runs):
        for jobs in (1, 2):
            began = time.perf_counter()
            b = meshpcap.analyze_many(paths, jobs=jobs, progress=False, use_cache=False)
            times[jobs].append(time.perf_counter() - began)
            assert len(b.captures) == len(paths) and (b.captures.verdict != "error").all()
            ctl[jobs].append(control(jobs))
    med = {j: statistics.median(t) for j, t in times.items()}
    cmed = {j: statistics.median(t) for j, t in ctl.items()}
    result = {"captures": len(paths), "packets_each": args.packets, "total_mb": round(size / 1e6, 1),
              "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
              "runs": args.runs, "seconds": {str(j): [round(x, 3) for x in t] for j, t in times.items()},
              "median_s": {str(j): round(m, 3) for j, m in med.items()}, "speedup": round(med[1] / med[2], 2),
              "control_median_s": {str(j): round(m, 3) for j, m in cmed.items()},
              "control_speedup": round(cmed[1] / cmed[2], 2),
              "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    print(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
