"""Time `meshpcap flows` against tshark's conversation tables on a generated capture."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))
import gen  # noqa: E402  (bench/gen.py, next to this file)


@dataclass(slots=True)
class Run:
    wall_s: float
    max_rss_kib: int
    exit_code: int


@dataclass(slots=True)
class Tool:
    name: str  # label in the table
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def ok_codes(self) -> tuple[int, ...]:
        """The exit codes of a run that worked: analyze's verdicts are exit codes too (1 fail, 3
        inconclusive; 2 is bad input, a failure here)."""
        return (0, 1, 3) if "analyze" in self.name else (0,)

    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.exit_code in self.ok_codes]

    def median_s(self) -> float | None:
        ok = self.ok_runs()
        return statistics.median(r.wall_s for r in ok) if ok else None

    def peak_rss_mib(self) -> float | None:
        ok = self.ok_runs()
        return max(r.max_rss_kib for r in ok) / 1024 if ok else None


def measure(argv: list[str]) -> tuple[Run, str]:
    """Run argv once; wall time from perf_counter, peak RSS of this child alone from os.wait4."""
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; tell Popen
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace").strip()
    rss_kib = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss  # macOS reports bytes
    return Run(wall, rss_kib, proc.returncode), tail


def meshpcap_argv() -> tuple[list[str], bool] | None:
    """The meshpcap console script (the one beside this Python, else the first on PATH), or
    `python -m meshpcap.cli`, whichever answers `flows --help`, and whether `flows` offers --no-names."""
    candidates = []
    # The script installed for this interpreter first: a version manager's shim on PATH (pyenv's is
    # a bash script that runs `pyenv exec`) would add its own start-up to every timed run.
    beside = Path(sys.executable).with_name("meshpcap")
    if beside.is_file() and os.access(beside, os.X_OK):
        candidates.append([str(beside)])
    if script := shutil.which("meshpcap"):
        candidates.append([script])
    candidates.append([sys.executable, "-m", "meshpcap.cli"])
    for argv in candidates:
        try:
            done = subprocess.run(argv + ["flows", "--help"], capture_output=True, text=True, timeout=60,
                                  cwd=BENCH.parent)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return argv, "--no-names" in done.stdout
    return None


def tools_for(capture: Path, many_flows: bool = False, out_dir: Path | None = None) -> list[Tool]:
    """The commands to time; ``out_dir``: where the memory case writes its outputs (else /dev/null)."""
    tools: list[Tool] = []

    def target(name: str) -> str:
        return os.devnull if out_dir is None else str(out_dir / name)

    found = meshpcap_argv()
    if found is None:
        print("run.py: skipping meshpcap: neither `meshpcap flows --help` nor `python -m meshpcap.cli flows "
              "--help` works", file=sys.stderr)
    elif many_flows:  # the memory case: a flow per packet; tshark's conversation table is not the point here
        base = found[0]
        tools.append(Tool("meshpcap flows --format json", base + ["flows", str(capture), "--format", "json", "-o",
                                                                  target("flows.json")]))
        tools.append(Tool("meshpcap flows --format csv", base + ["flows", str(capture), "--format", "csv", "-o",
                                                                 target("flows.csv")]))
        tools.append(Tool("meshpcap analyze --format json", base + ["analyze", str(capture), "--format", "json",
                                                                    "-o", target("analyze.json"), "--fail-on",
                                                                    "never"]))
        return tools
    else:
        base, no_names = found
        flows = base + ["flows", str(capture), "--format", "json", "-o", os.devnull]
        tools.append(Tool("meshpcap flows --format json", flows))
        if no_names:
            tools.append(Tool("meshpcap flows --no-names --format json", flows[:-4] + ["--no-names"] + flows[-4:]))
        else:
            print("run.py: `meshpcap flows --help` has no --no-names; timing flows with names only", file=sys.stderr)
    if tshark := shutil.which("tshark"):
        tools.append(Tool("tshark -z conv,tcp -z conv,udp",
                          [tshark, "-q", "-n", "-r", str(capture), "-z", "conv,tcp", "-z", "conv,udp"]))
    else:
        print("run.py: skipping tshark: not installed (apt-get install tshark)", file=sys.stderr)
    return tools


def count_packets(path: Path) -> int:
    """Records in a classic pcap (walking record headers), or capinfos' count for anything else."""
    with open(path, "rb", buffering=1 << 20) as f:
        head = f.read(24)
        magic = head[:4]
        order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
                 b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
        if order is not None:
            rec = struct.Struct(order + "IIII")
            n = 0
            while len(hdr := f.read(16)) == 16:
                f.seek(rec.unpack(hdr)[2], 1)
                n += 1
            return n
    capinfos = shutil.which("capinfos")
    if capinfos is None:
        raise SystemExit(f"run.py: {path}: not a classic pcap and capinfos is not installed to count packets")
    done = subprocess.run([capinfos, "-M", "-c", str(path)], capture_output=True, text=True, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("Number of packets"):
            return int(line.split(":", 1)[1].strip())
    raise SystemExit(f"run.py: {path}: capinfos did not report a packet count")


def ensure_capture(packets: int, seed: int, tiny_flows: bool = False) -> tuple[Path, bool, float | None]:
    """Path of the generated capture, whether this call created it, and how long generating took.
    ``tiny_flows``: one UDP flow per packet (gen.write_tiny_flows) instead of the realistic mix."""
    OUT.mkdir(parents=True, exist_ok=True)
    kind = "tinyflows" if tiny_flows else "synthetic"
    path = OUT / f"{kind}-{packets}p-seed{seed}-v{gen.GEN_VERSION}.pcap"
    if path.exists():
        print(f"run.py: reusing {path}", file=sys.stderr)
        return path, False, None
    tmp = path.with_suffix(".pcap.partial")
    print(f"run.py: generating {packets} packets into {path} ...", file=sys.stderr)
    began = time.perf_counter()
    (gen.write_tiny_flows if tiny_flows else gen.write_pcap)(tmp, packets, seed)
    elapsed = time.perf_counter() - began
    tmp.rename(path)  # only a complete file carries the final name, so reuse is safe
    print(f"run.py: generated {path.stat().st_size / 1e6:.1f} MB in {elapsed:.1f} s", file=sys.stderr)
    return path, True, elapsed


def warm_cache(path: Path) -> None:
    """Read the file once so that every timed run finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 24):
            pass


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                break
    except OSError:
        info.setdefault("cpu", platform.processor() or "unknown")
    if tshark := shutil.which("tshark"):
        done = subprocess.run([tshark, "--version"], capture_output=True, text=True)
        info["tshark"] = done.stdout.splitlines()[0] if done.stdout else "unknown"
    done = subprocess.run(["git", "-C", str(BENCH.parent), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True)
    info["meshpcap_commit"] = done.stdout.strip() or "unknown"
    return info


def markdown(tools: list[Tool], packets: int, size: int, runs: int, flows: int | None = None) -> str:
    """The results table, ready to paste into bench/README.md (``flows``: the capture's flow count,
    for the memory case, which reports peak RSS per flow instead of the ratio to tshark)."""
    if flows:
        lines = [f"{flows:,} flows ({packets:,} packets, {size / 1e6:.1f} MB), median of {runs} run(s)", "",
                 "| Command | Median wall (s) | Peak RSS (MiB) | Peak RSS per flow (bytes) |", "|---|---:|---:|---:|"]
        for t in tools:
            med = t.median_s()
            if med is None:
                lines.append(f"| `{t.name}` | failed | | |")
            else:
                lines.append(f"| `{t.name}` | {med:.2f} | {t.peak_rss_mib():,.0f} | "
                             f"{t.peak_rss_mib() * 2**20 / flows:,.0f} |")
        return "\n".join(lines)
    tshark = next((t.median_s() for t in tools if t.name.startswith("tshark")), None)
    lines = [
        f"{packets:,} packets, {size / 1e6:.1f} MB, median of {runs} alternating run(s)",
        "",
        "| Command | Median wall (s) | Packets/s | Peak RSS (MiB) | tshark time ÷ this |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in tools:
        med = t.median_s()
        if med is None:
            lines.append(f"| `{t.name}` | failed | | | |")
            continue
        ratio = f"{tshark / med:.2f}×" if tshark else "n/a"
        lines.append(f"| `{t.name}` | {med:.2f} | {packets / med:,.0f} | {t.peak_rss_mib():,.0f} | {ratio} |")
    return "\n".join(lines)


def compile_package() -> None:
    """Byte-compile meshpcap as an installed package would be: an editable install under
    PYTHONDONTWRITEBYTECODE=1 (as on this project's machines) never writes .pyc files and would
    recompile every module on every timed run (about 30 ms)."""
    import compileall

    compileall.compile_dir(str(BENCH.parent / "meshpcap"), quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets to generate (default 1000000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per command (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep a capture this run generated (700 MB per 1M)")
    parser.add_argument("--file", type=Path, help="time this capture instead of generating one")
    parser.add_argument("--tiny-flows", type=int, metavar="N",
                        help="instead: N flows of one UDP datagram each (2000000: the 116 MB case of issue 9); "
                             "times `flows` (JSON and CSV) and `analyze --format json`, without tshark")
    parser.add_argument("--write-outputs", action="store_true",
                        help="with --tiny-flows: write the outputs to files (a temporary directory, removed at the "
                             "end: 2,000,000 flows make 2.1 GB of flows JSON and 2.6 GB of analyze JSON) rather "
                             "than to /dev/null, so that the time includes writing them")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    generated, gen_seconds = False, None
    out_dir = None
    if args.file is not None:
        capture = args.file
        if not capture.is_file():
            print(f"run.py: {capture}: no such file", file=sys.stderr)
            return 2
        packets = count_packets(capture)
    elif args.tiny_flows is not None:
        capture, generated, gen_seconds = ensure_capture(args.tiny_flows, args.seed, tiny_flows=True)
        packets = args.tiny_flows
    else:
        try:
            capture, generated, gen_seconds = ensure_capture(args.packets, args.seed)
        except ValueError as exc:
            print(f"run.py: {exc}", file=sys.stderr)
            return 2
        packets = args.packets
    size = capture.stat().st_size

    try:
        out_dir = Path(tempfile.mkdtemp(prefix="meshpcap-bench-")) if args.write_outputs else None
        tools = tools_for(capture, many_flows=args.tiny_flows is not None, out_dir=out_dir)
        if not tools:
            print("run.py: nothing to time", file=sys.stderr)
            return 1
        warm_cache(capture)
        compile_package()
        for i in range(args.runs):  # alternate the tools so drift in machine load hits all alike
            for t in tools:
                if t.error:
                    continue
                run, tail = measure(t.argv)
                t.runs.append(run)
                ok = run.exit_code in t.ok_codes
                status = "ok" if ok else f"exit {run.exit_code}"
                print(f"run.py: run {i + 1}/{args.runs} {t.name}: {run.wall_s:.2f} s, "
                      f"{run.max_rss_kib / 1024:.0f} MiB, {status}", file=sys.stderr)
                if not ok:
                    t.error = f"exit {run.exit_code}: {tail.splitlines()[-1] if tail else '(no stderr)'}"
                    print(f"run.py: {t.name} failed; not timing it again.\n{tail}", file=sys.stderr)
    finally:
        if generated and not args.keep:
            capture.unlink(missing_ok=True)
        if out_dir is not None:
            shutil.rmtree(out_dir, ignore_errors=True)

    table = markdown(tools, packets, size, args.runs, flows=args.tiny_flows)
    print(table)
    tshark = next((t.median_s() for t in tools if t.name.startswith("tshark")), None)
    results = {
        "capture": {"path": str(capture), "packets": packets, "bytes": size,
                    "generated": generated, "generate_seconds": gen_seconds,
                    "seed": None if args.file else args.seed, "generator_version": None if args.file else gen.GEN_VERSION},
        "runs": args.runs,
        "machine": machine(),
        "tools": [{
            "name": t.name,
            "argv": t.argv,
            "runs": [asdict(r) for r in t.runs],
            "median_wall_s": t.median_s(),
            "packets_per_s": packets / t.median_s() if t.median_s() else None,
            "peak_rss_mib": t.peak_rss_mib(),
            "tshark_over_this": tshark / t.median_s() if tshark and t.median_s() else None,
            "error": t.error,
        } for t in tools],
        "markdown": table,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / ("results-tinyflows.json" if args.tiny_flows else "results.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"run.py: wrote {out}", file=sys.stderr)
    return 1 if any(t.error for t in tools) else 0


if __name__ == "__main__":
    sys.exit(main())
