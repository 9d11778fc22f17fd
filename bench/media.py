"""The cost of the media pass (issue 15): `meshpcap analyze` of the benchmark capture with media quality
on and off, alternating in one run, and the ratio of the medians.

    python bench/media.py [CAPTURE] [--runs 7] [--service-tags FILE]

Without CAPTURE it generates the 1,000,000-packet benchmark capture (bench/gen.py: 500 UDP media flows
with RTP, plain and in TURN ChannelData) into bench/out/.  Each run is a fresh process; the number that
matters is the ratio, taken within one run on a machine that may be shared; CPU time (the analyzing process and
the reader's second process) and the peak RSS (of the larger) come beside the wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TAGS = REPO / "samples" / "ServiceTags_Public_SAMPLE.json"


def once(argv: list[str]) -> tuple[float, float, float]:
    """One run: (wall s, CPU s of the process and the children it reaped, peak RSS MiB of the largest)."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-1500:].decode("utf-8", "replace").strip()
    # 1 is a FAIL verdict, and also Python's exit on an uncaught exception, which meshpcap never lets through
    if proc.returncode not in (0, 1) or "Traceback (most recent call last)" in tail:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}\n{tail}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("capture", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--service-tags", type=Path, default=TAGS, help="the tag file analyze is given (default: the sample)")
    args = ap.parse_args(argv)
    cap = args.capture
    if cap is None:
        cap = BENCH / "out" / "bench-1m.pcap"
        if not cap.is_file():
            cap.parent.mkdir(exist_ok=True)
            subprocess.run([sys.executable, str(BENCH / "gen.py"), str(cap)], check=True)
    exe = [sys.executable, "-m", "meshpcap.cli"] if not os.environ.get("MESHPCAP_BIN") else [os.environ["MESHPCAP_BIN"]]
    base = exe + ["analyze", str(cap), "--service-tags", str(args.service_tags), "--format", "json", "-o", os.devnull]
    on, off = base + ["--quality"], base + ["--no-quality"]
    once(on)  # warm the page cache and the byte-compiled modules
    runs: dict[str, list[tuple[float, float, float]]] = {"quality on": [], "quality off": []}
    for i in range(args.runs):
        for name, cmd in (("quality on", on), ("quality off", off)) if i % 2 == 0 else (("quality off", off),
                                                                                         ("quality on", on)):
            runs[name].append(once(cmd))
    med = {k: [statistics.median(x[j] for x in v) for j in range(3)] for k, v in runs.items()}
    for k, v in runs.items():
        print(f"{k:12} median {med[k][0]:.3f} s wall, {med[k][1]:.3f} s CPU; peak RSS {max(x[2] for x in v):.0f} MiB; "
              f"runs {' '.join(f'{x[0]:.3f}' for x in v)}")
    ratio = med["quality on"][0] / med["quality off"][0]
    cpu = med["quality on"][1] / med["quality off"][1]
    print(f"ratio on/off: {ratio:.3f} ({100 * (ratio - 1):+.1f}%) wall, {cpu:.3f} CPU (both processes), over "
          f"{args.runs} alternating runs of {cap.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
