"""meshpcap at every size: ~200, 100,000 and 1,000,000 packets, pcap and pcapng, beside tshark and nfstream.

For each capture (made by bench/gen.py; pcapng by `editcap -F pcapng`) the commands run in turn, round after
round, so that a change in machine load hits all of them alike:

- `meshpcap flows FILE --format json -o /dev/null`, the same with `--no-names`
- `meshpcap analyze FILE --format json -o /dev/null --service-tags TAGS` (the official file from
  ../shared/spec when it is there; its binary index is cached by a warm-up run first, as after `tags update`)
- `tshark -q -n -r FILE -z conv,tcp -z conv,udp`, and nfstream's `NFStreamer(source=FILE).to_pandas()` when
  nfstream is installed
- `python -c "import numpy"`, the floor of any numpy program's start-up

It prints one Markdown table of medians (wall seconds, and the ratios tshark ÷ analyze and nfstream ÷ analyze
taken within the run), then the cost per flow of naming by kind (TLS, QUIC, DNS, STUN), measured inside the
library, and writes everything to bench/out/sizes.json.

    python bench/sizes.py                 # 200, 100000 and 1000000 packets, 5 rounds (1M: 3)
    python bench/sizes.py --quick         # 200 and 20000 packets, pcap only, 2 rounds: a smoke run
    python bench/sizes.py --sizes 100000 --runs 9 --formats pcap
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT = BENCH / "out"
SPEC = REPO / ".." / "shared" / "spec"
sys.path.insert(0, str(BENCH))
import gen  # noqa: E402  (bench/gen.py, next to this file; owned by the flows branch, used as is)

NFSTREAM = "import sys\nfrom nfstream import NFStreamer\nNFStreamer(source=sys.argv[1]).to_pandas()\n"


@dataclass(slots=True)
class Cmd:
    key: str
    argv: list[str]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    error: str | None = None
    env: dict[str, str] | None = None  # added to the environment of the command

    def median(self) -> float | None:
        return statistics.median(self.walls) if self.walls and not self.error else None

    def median_cpu(self) -> float | None:
        return statistics.median(self.cpus) if self.cpus and not self.error else None


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int, str]:
    """(wall s, CPU s of the child and what it waited for, peak RSS MiB of the largest, exit code, stderr tail)."""
    with tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO,
                                env=None if env is None else {**os.environ, **env})
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-1500:].decode("utf-8", "replace").strip()
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, proc.returncode, tail


def meshpcap_script() -> list[str]:
    beside = Path(sys.executable).with_name("meshpcap")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    return [sys.executable, "-m", "meshpcap.cli"]


def official_tags() -> Path | None:
    found = sorted(SPEC.glob("ServiceTags_Public_*.json")) if SPEC.is_dir() else []
    return found[-1].resolve() if found else None


def have_nfstream() -> bool:
    return subprocess.run([sys.executable, "-c", "import nfstream"], capture_output=True).returncode == 0


def capture(packets: int, fmt: str, seed: int, made: list[Path]) -> Path:
    """The generated capture (reused when bench/run.py or an earlier run left it in bench/out)."""
    OUT.mkdir(parents=True, exist_ok=True)
    pcap = OUT / f"synthetic-{packets}p-seed{seed}-v{gen.GEN_VERSION}.pcap"
    if not pcap.exists():
        print(f"sizes.py: generating {packets:,} packets ...", file=sys.stderr)
        tmp = pcap.with_suffix(".pcap.partial")
        gen.write_pcap(tmp, packets, seed)
        tmp.rename(pcap)
        made.append(pcap)
    if fmt == "pcap":
        return pcap
    ng = pcap.with_suffix(".pcapng")
    if not ng.exists():
        editcap = shutil.which("editcap")
        if editcap is None:
            raise SystemExit("sizes.py: pcapng needs editcap (apt-get install wireshark-common), or --formats pcap")
        tmp = ng.with_suffix(".pcapng.partial")
        subprocess.run([editcap, "-F", "pcapng", str(pcap), str(tmp)], check=True)
        tmp.rename(ng)
        made.append(ng)
    return ng


def commands(path: Path, tags: Path | None, nfstream: bool, no_tags_dir: Path | None = None) -> list[Cmd]:
    """The commands timed on ``path``; with ``no_tags_dir`` (an empty cache directory) also `analyze` without
    any service-tag file (the start-up line reports both)."""
    m = meshpcap_script()
    flows = m + ["flows", str(path), "--format", "json", "-o", os.devnull]
    cmds = [Cmd("flows", flows), Cmd("flows --no-names", flows + ["--no-names"])]
    analyze = m + ["analyze", str(path), "--format", "json", "-o", os.devnull]
    cmds.append(Cmd("analyze", analyze + (["--service-tags", str(tags)] if tags else [])))
    if no_tags_dir is not None and tags:
        cmds.append(Cmd("analyze, no tag file", analyze, env={"MESHPCAP_CACHE_DIR": str(no_tags_dir)}))
    if tshark := shutil.which("tshark"):
        cmds.append(Cmd("tshark", [tshark, "-q", "-n", "-r", str(path), "-z", "conv,tcp", "-z", "conv,udp"]))
    if nfstream:
        cmds.append(Cmd("nfstream", [sys.executable, "-c", NFSTREAM, str(path)]))
    cmds.append(Cmd("import numpy", [sys.executable, "-c", "import numpy"]))
    return cmds


def run_capture(path: Path, cmds: list[Cmd], runs: int) -> None:
    with open(path, "rb", buffering=0) as f:  # into the page cache before timing
        while f.read(1 << 24):
            pass
    for c in cmds:  # warm-up, untimed: writes the service-tag index, loads tshark's and nfstream's libraries
        wall, _cpu, _rss, code, tail = measure(c.argv, c.env)
        # analyze: 1/3 on findings; but 1 is also Python's exit on an uncaught exception, which meshpcap never
        # lets through (a broken install, say), so a traceback on stderr fails the command whatever its code
        crashed = "Traceback (most recent call last)" in tail
        if crashed or code not in (0, 1, 3) or (not c.key.startswith("analyze") and code != 0):
            c.error = f"exit {code}: {tail.splitlines()[-1] if tail else '(no stderr)'}"
            print(f"sizes.py: {c.key} failed on {path.name}; not timed.\n{tail}", file=sys.stderr)
    for i in range(runs):
        for c in cmds:
            if c.error:
                continue
            wall, cpu, rss, _code, _tail = measure(c.argv, c.env)
            c.walls.append(wall)
            c.cpus.append(cpu)
            c.rss_mib.append(rss)
        done = ", ".join(f"{c.key} {c.walls[-1]:.2f}" for c in cmds if c.walls)
        print(f"sizes.py: {path.name} round {i + 1}/{runs}: {done}", file=sys.stderr)


# -- naming cost per flow, by kind, inside the library ---------------------------------------------


def naming_cost(path: Path, repeats: int) -> dict[str, dict]:
    """Seconds spent in each kind's naming code per flow of that kind (one process, MESHPCAP_NO_FORK=1)."""
    code = r"""
import json, os, sys, time, statistics
os.environ["MESHPCAP_NO_FORK"] = "1"
from meshpcap import pipeline
from meshpcap.flows import naming
acc = {}
def wrap(owner, name, kind):
    fn = getattr(owner, name)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            acc[kind] = acc.get(kind, 0.0) + time.perf_counter() - t
    setattr(owner, name, timed)
wrap(naming, "reassemble", "TLS")                   # TCP streams for the ClientHello and the server's flight
wrap(naming.Namer, "_tls", "TLS")
wrap(naming.quicp, "client_hello_from_initials", "QUIC")
wrap(naming.Namer, "_dns_pass", "DNS")
wrap(naming, "parse_dns_or_error", "DNS")          # DNS parsed early, while flows are still built
wrap(naming.stunp, "parse_stun", "STUN")
wrap(naming, "_stun_summary", "STUN")
rounds = {}
for r in range(int(sys.argv[2])):
    acc.clear()
    t = time.perf_counter(); ft = pipeline.read_flows(sys.argv[1]); total = time.perf_counter() - t
    t = time.perf_counter(); pipeline.read_flows(sys.argv[1], names=False); bare = time.perf_counter() - t
    fl = ft.flows
    n = {"TLS": sum(1 for f in fl if f.transport == "tcp" and f.sni), "QUIC": sum(1 for f in fl if f.quic_version),
         "DNS": len(ft.dns) if hasattr(ft, "dns") else 0, "STUN": sum(1 for f in fl if getattr(f, "stun", None))}
    for k, v in acc.items():
        rounds.setdefault(k, []).append(v)
    rounds.setdefault("_names", []).append(total - bare)
print(json.dumps({"seconds": {k: statistics.median(v) for k, v in rounds.items()}, "flows": n, "all": len(fl)}))
"""
    done = subprocess.run([sys.executable, "-c", code, str(path), str(repeats)], capture_output=True, text=True,
                          cwd=REPO)
    if done.returncode != 0:
        print(f"sizes.py: naming cost on {path.name} failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return {}
    got = json.loads(done.stdout.strip().splitlines()[-1])
    out = {}
    for kind in ("TLS", "QUIC", "DNS", "STUN"):
        n, s = got["flows"].get(kind, 0), got["seconds"].get(kind, 0.0)
        out[kind] = {"flows": n, "seconds": s, "ms_per_flow": 1000 * s / n if n else None}
    out["all"] = {"flows": got["all"], "seconds": got["seconds"]["_names"],
                  "ms_per_flow": 1000 * got["seconds"]["_names"] / got["all"] if got["all"] else None}
    return out


# -- report ------------------------------------------------------------------------------------------


def fmt_s(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}" if v < 1 else f"{v:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}×"


def table(rows: list[dict], runs_note: str) -> str:
    lines = [
        f"Medians of {runs_note} alternating runs, whole process (wall seconds); ratios within the same run.",
        "",
        "| capture | packets | MB | flows | flows --no-names | analyze | tshark conv | nfstream | tshark ÷ analyze "
        "| nfstream ÷ analyze | analyze peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["cmds"]
        med = {k: v["median_wall_s"] for k, v in c.items()}
        lines.append(
            f"| {r['format']} | {r['packets']:,} | {r['bytes'] / 1e6:.1f} | {fmt_s(med.get('flows'))} "
            f"| {fmt_s(med.get('flows --no-names'))} | {fmt_s(med.get('analyze'))} | {fmt_s(med.get('tshark'))} "
            f"| {fmt_s(med.get('nfstream'))} | {ratio(med.get('tshark'), med.get('analyze'))} "
            f"| {ratio(med.get('nfstream'), med.get('analyze'))} "
            f"| {c['analyze']['peak_rss_mib']:.0f} |" if c.get("analyze", {}).get("peak_rss_mib") else
            f"| {r['format']} | {r['packets']:,} | {r['bytes'] / 1e6:.1f} | | | failed | | | | | |")
    lines += ["", "CPU seconds (user + sys of the process and the children it waited for; less sensitive than wall time to "
              "other load on the machine; a two-process read counts both processes, so this does not show what the second core saves):", "",
              "| capture | packets | flows | flows --no-names | analyze | tshark conv | nfstream | import numpy "
              "| tshark ÷ analyze | nfstream ÷ analyze |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cpu = {k: v["median_cpu_s"] for k, v in r["cmds"].items()}
        lines.append(f"| {r['format']} | {r['packets']:,} | " + " | ".join(
            fmt_s(cpu.get(k)) for k in ("flows", "flows --no-names", "analyze", "tshark", "nfstream", "import numpy"))
            + f" | {ratio(cpu.get('tshark'), cpu.get('analyze'))} | {ratio(cpu.get('nfstream'), cpu.get('analyze'))} |")
    small = min(rows, key=lambda r: r["packets"])
    sm = small["cmds"]
    if sm.get("analyze", {}).get("median_wall_s") and sm.get("import numpy", {}).get("median_wall_s"):
        a, n = sm["analyze"], sm["import numpy"]
        lines += ["", f"Start-up ({small['packets']:,}-packet {small['format']}): `analyze` {a['median_wall_s']:.3f} s "
                  f"against `python -c \"import numpy\"` {n['median_wall_s']:.3f} s, "
                  f"+{a['median_wall_s'] - n['median_wall_s']:.3f} s wall; CPU time (user+sys) "
                  f"{a['median_cpu_s']:.3f} s against {n['median_cpu_s']:.3f} s, "
                  f"+{a['median_cpu_s'] - n['median_cpu_s']:.3f} s."]
        b = sm.get("analyze, no tag file", {})
        if b.get("median_wall_s"):
            lines[-1] += (f" Without a tag file: {b['median_wall_s']:.3f} s, +{b['median_wall_s'] - n['median_wall_s']:.3f} s "
                          f"wall; CPU +{b['median_cpu_s'] - n['median_cpu_s']:.3f} s.")
    return "\n".join(lines)


def naming_table(cost: dict, packets: int, fmt: str) -> str:
    lines = [f"Naming cost per flow, by kind (in the library, one process, {packets:,}-packet {fmt}; medians):", "",
             "| kind | flows | seconds | ms per flow |", "|---|---:|---:|---:|"]
    for kind in ("TLS", "QUIC", "DNS", "STUN", "all"):
        v = cost.get(kind)
        if not v:
            continue
        per = "—" if v["ms_per_flow"] is None else f"{v['ms_per_flow']:.3f}"
        name = {"all": "all (flows − flows --no-names, per flow of any kind)", "DNS": "DNS (per exchange)"}.get(kind, kind)
        if v.get("source"):
            name += f" (from {v['source']})"
        lines.append(f"| {name} | {v['flows']:,} | {v['seconds']:.3f} | {per} |")
    return "\n".join(lines)


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:
        pass
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    info["meshpcap_commit"] = done.stdout.strip() or "unknown"
    if tshark := shutil.which("tshark"):
        info["tshark"] = subprocess.run([tshark, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="packet counts (default 200 100000 1000000)")
    parser.add_argument("--formats", nargs="+", default=None, choices=("pcap", "pcapng"), help="default: both")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per capture (default 5)")
    parser.add_argument("--runs-large", type=int, default=3, help="rounds for captures of 500,000 packets or more")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tags", type=Path, default=None, help="service-tag file (default: the newest in ../shared/spec)")
    parser.add_argument("--no-nfstream", action="store_true", help="skip nfstream even when installed")
    parser.add_argument("--naming-size", type=int, default=None, help="capture for the naming cost (default 100000)")
    parser.add_argument("--quic-capture", type=Path, default=REPO / "samples" / "quic-and-ipv6.pcapng",
                        help="capture for QUIC's naming cost (gen.py makes no QUIC)")
    parser.add_argument("--keep", action="store_true", help="keep the captures this run generated (1M: 720 MB)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 and 20000 packets, pcap, 2 rounds")
    parser.add_argument("--render", type=Path, help="print the tables of an earlier run's sizes.json and stop")
    args = parser.parse_args(argv)
    if args.render:
        done = json.loads(args.render.read_text())
        print(table(done["rows"], done.get("runs_note", "the")))
        if done.get("naming"):
            print("\n" + naming_table(done["naming"], done.get("naming_size", 100_000), "pcap"))
        return 0
    if args.quick:
        sizes, formats, runs, runs_large = args.sizes or [200, 20_000], args.formats or ["pcap"], 2, 1
    else:
        sizes, formats = args.sizes or [200, 100_000, 1_000_000], args.formats or ["pcap", "pcapng"]
        runs, runs_large = args.runs, args.runs_large
    naming_size = args.naming_size or (100_000 if 100_000 in sizes else max(sizes))
    tags = args.tags.resolve() if args.tags else official_tags()
    if tags is None:
        print("sizes.py: no ServiceTags_Public_*.json in ../shared/spec: analyze runs without a tag file "
              "(give --tags FILE)", file=sys.stderr)
    nfstream = not args.no_nfstream and have_nfstream()
    if not nfstream and not args.no_nfstream:
        print("sizes.py: nfstream is not installed (pip install nfstream): its column stays empty", file=sys.stderr)

    import compileall  # an editable install under PYTHONDONTWRITEBYTECODE=1 would recompile every run

    compileall.compile_dir(str(REPO / "meshpcap"), quiet=1)
    made: list[Path] = []
    rows = []
    cost: dict = {}
    no_cache = Path(tempfile.mkdtemp(prefix="sizes-no-cache-"))  # `analyze` of the smallest capture without tags
    try:
        for packets in sizes:
            for fmt in formats:
                path = capture(packets, fmt, args.seed, made)
                cmds = commands(path, tags, nfstream, no_cache if packets == min(sizes) else None)
                n = runs_large if packets >= 500_000 else runs
                run_capture(path, cmds, n)
                rows.append({"packets": packets, "format": fmt, "bytes": path.stat().st_size, "runs": n,
                             "cmds": {c.key: {"argv": c.argv, "walls": c.walls, "cpus": c.cpus, "rss_mib": c.rss_mib,
                                              "median_wall_s": c.median(), "median_cpu_s": c.median_cpu(),
                                              "peak_rss_mib": max(c.rss_mib) if c.rss_mib else None,
                                              "error": c.error} for c in cmds}})
            if packets == naming_size:
                cost = naming_cost(capture(packets, "pcap", args.seed, made), 3 if not args.quick else 1)
        if cost and args.quic_capture.is_file():  # gen.py makes no QUIC: take QUIC's cost from a capture with some
            quic = naming_cost(args.quic_capture, 5 if args.quick else 20).get("QUIC")
            if quic and quic["flows"]:
                cost["QUIC"] = dict(quic, source=args.quic_capture.name)
    finally:
        shutil.rmtree(no_cache, ignore_errors=True)
        if not args.keep:
            for p in made:
                p.unlink(missing_ok=True)
    note = f"{runs}" if runs == runs_large or all(r["packets"] < 500_000 for r in rows) else \
        f"{runs} (1M packets: {runs_large})"
    text = table(rows, note)
    if cost:
        text += "\n\n" + naming_table(cost, naming_size, "pcap")
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "sizes.json").write_text(json.dumps({"machine": machine(), "tags": str(tags) if tags else None,
                                                "nfstream": nfstream, "rows": rows, "naming": cost,
                                                "runs_note": note, "naming_size": naming_size,
                                                "markdown": text}, indent=2) + "\n")
    print(f"sizes.py: wrote {OUT / 'sizes.json'}", file=sys.stderr)
    return 1 if any(c["error"] for r in rows for c in r["cmds"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
