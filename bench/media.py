"""The cost of the media pass (issue 15): `meshpcap analyze` of the benchmark capture with media quality
on and off, alternating in one run, and the ratio of the medians.

    python bench/media.py [CAPTURE] [--runs 7]

Without CAPTURE it generates the 1,000,000-packet benchmark capture (bench/gen.py: 500 UDP media flows
with RTP, plain and in TURN ChannelData) into bench/out/.  Each run is a fresh process; the number that
matters is the ratio, taken within one run on a machine that may be shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TAGS = REPO / "samples" / "ServiceTags_Public_SAMPLE.json"


def once(argv: list[str]) -> float:
    began = time.perf_counter()
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - began
    if res.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.decode()[-500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("capture", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    cap = args.capture
    if cap is None:
        cap = BENCH / "out" / "bench-1m.pcap"
        if not cap.is_file():
            cap.parent.mkdir(exist_ok=True)
            subprocess.run([sys.executable, str(BENCH / "gen.py"), str(cap)], check=True)
    exe = [sys.executable, "-m", "meshpcap.cli"] if not os.environ.get("MESHPCAP_BIN") else [os.environ["MESHPCAP_BIN"]]
    base = exe + ["analyze", str(cap), "--service-tags", str(TAGS), "--format", "json", "-o", os.devnull]
    on, off = base + ["--quality"], base + ["--no-quality"]
    once(on)  # warm the page cache and the byte-compiled modules
    times: dict[str, list[float]] = {"quality on": [], "quality off": []}
    for i in range(args.runs):
        for name, cmd in (("quality on", on), ("quality off", off)) if i % 2 == 0 else (("quality off", off),
                                                                                         ("quality on", on)):
            times[name].append(once(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k:12} median {med[k]:.3f} s  runs {' '.join(f'{x:.3f}' for x in v)}")
    ratio = med["quality on"] / med["quality off"]
    print(f"ratio on/off: {ratio:.3f} ({100 * (ratio - 1):+.1f}%) over {args.runs} alternating runs of {cap.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
