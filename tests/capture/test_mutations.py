"""The proof of issue 9: seeded, structure-aware mutations of whole captures run through
``meshpcap analyze``; every run ends in a report (exit 0, 1 or 3, a JSON document whose packets
are all accounted for) or the one-line capture error (exit 2), within a time and memory bound.

Variants (all from the samples, deterministic for a seed): truncations at any offset and inside
file, record and block headers; bit and byte flips in link/IP/TCP/UDP headers and in payloads
(where TLS, QUIC, DNS and STUN live); absurd captured/original lengths and block lengths;
duplicated, removed and reordered records and pcapng blocks; wrong magics and byte-order
magics; gzip and zstd around damaged files, and damaged gzip and zstd.

About 200 variants by default (a few seconds); ``MESHPCAP_MUTATIONS=5000`` for a nightly run,
``MESHPCAP_MUTATION_SEED`` for another set.  The runs happen in one forked child whose address
space is limited (RLIMIT_AS) and each run has a timer, so a blow-up or a hang is a failure
reported with the variant's name, not a stuck suite; a few variants also run through the real
entry point in a subprocess.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
import zstandard

from meshpcap import _child
from tests.conftest import REPO, SAMPLES, sample_captures

COUNT = int(os.environ.get("MESHPCAP_MUTATIONS", "200"))
SEED = int(os.environ.get("MESHPCAP_MUTATION_SEED", "20261201"))
RUN_SECONDS = 20  # per run, generous: the machine is shared
MEMORY_BYTES = 1 << 30  # address space the runs may add to the child's
TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
ABSURD = [0, 1, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0, 65536, 262145, 1 << 28]


# -- the structure of a sample --------------------------------------------------------------
def _layout(data: bytes) -> dict:
    """Where the file's headers and packets are: ``units`` (start, length) of records or blocks,
    ``packets`` (file offset, captured length), ``kind``."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        order = "<" if struct.unpack_from("<I", data, 8)[0] == 0x1A2B3C4D else ">"
        units, packets, pos = [], [], 0
        while pos + 12 <= len(data):
            btype, blen = struct.unpack_from(order + "II", data, pos)
            if blen < 12 or pos + blen > len(data):
                break
            units.append((pos, blen))
            if btype == 6:
                packets.append((pos + 28, struct.unpack_from(order + "I", data, pos + 20)[0]))
            pos += blen
        return {"kind": "pcapng", "order": order, "units": units, "packets": packets}
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    units, packets, pos = [], [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(order + "I", data, pos + 8)[0]
        units.append((pos, 16 + incl))
        packets.append((pos + 16, incl))
        pos += 16 + incl
    return {"kind": "pcap", "order": order, "units": units, "packets": packets}


# -- mutations: each takes (rng, data, layout) and returns new bytes ----------------------------
def truncate(rng, data, lay):
    return data[: rng.randrange(len(data))]


def truncate_in_header(rng, data, lay):
    if rng.random() < 0.3:
        return data[: rng.randrange(min(len(data), 64))]
    start, _ = rng.choice(lay["units"])
    return data[: min(start + rng.randrange(16 if lay["kind"] == "pcap" else 32), len(data))]


def _flip(rng, data, lo, hi, n=1):
    out = bytearray(data)
    hi = min(hi, len(out))  # a layout from before an earlier mutation may reach past the end
    for _ in range(n):
        if hi > lo:
            at = rng.randrange(lo, hi)
            out[at] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
    return bytes(out)


def flip_headers(rng, data, lay):
    off, cap = rng.choice(lay["packets"])
    return _flip(rng, data, off, off + min(cap, 64), rng.randrange(1, 4))  # link, IP, TCP/UDP


def flip_payload(rng, data, lay):
    off, cap = rng.choice(lay["packets"])
    return _flip(rng, data, off + min(cap, 42), off + cap, rng.randrange(1, 6))  # TLS, QUIC, DNS, STUN


def flip_anywhere(rng, data, lay):
    return _flip(rng, data, 0, len(data), rng.randrange(1, 9))


def absurd_lengths(rng, data, lay):
    out = bytearray(data)
    start, length = rng.choice(lay["units"])
    o = lay["order"]
    if lay["kind"] == "pcap":
        where = start + rng.choice((8, 12))  # incl_len, orig_len
    else:
        where = rng.choice((start + 4, start + length - 4, start + 20, start + 24, start + 12))
    if where + 4 <= len(out):
        struct.pack_into(o + "I", out, where, rng.choice(ABSURD + [length + rng.randrange(-8, 9) & 0xFFFFFFFF]))
    return bytes(out)


def reorder_units(rng, data, lay):
    units = lay["units"]
    head_end = units[0][0] if lay["kind"] == "pcap" else 0
    pieces = [data[s:s + n] for s, n in units]
    if len(pieces) < 2:
        return data
    i = rng.randrange(len(pieces))
    op = rng.choice(("dup", "drop", "swap", "move"))
    if op == "dup":
        pieces.insert(i, pieces[i])
    elif op == "drop":
        pieces.pop(i)
    elif op == "swap" and i + 1 < len(pieces):
        pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
    else:
        pieces.insert(rng.randrange(len(pieces)), pieces.pop(i))
    return data[:head_end] + b"".join(pieces)


def wrong_magic(rng, data, lay):
    out = bytearray(data)
    choice = rng.randrange(4)
    if choice == 0:
        out[0:4] = out[0:4][::-1]  # the other byte order
    elif choice == 1:
        out[0:4] = rng.choice([b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x34\xcd\xb2\xa1", b"\x0a\x0d\x0d\x0a",
                               b"\x1f\x8b\x08\x00", b"\x28\xb5\x2f\xfd"])
    elif choice == 2 and lay["kind"] == "pcapng":
        out[8:12] = out[8:12][::-1]  # byte-order magic
    else:
        out[4:8] = struct.pack("<HH", rng.randrange(4), rng.randrange(6))  # version
    return bytes(out)


PLAIN = [truncate, truncate_in_header, flip_headers, flip_payload, flip_anywhere, absurd_lengths, reorder_units,
         wrong_magic]


def compressed(rng, data, lay):
    inner = rng.choice(PLAIN)(rng, data, lay) if rng.random() < 0.7 else data
    comp = gzip.compress(inner, 6, mtime=0) if rng.random() < 0.5 else zstandard.ZstdCompressor(
        write_checksum=rng.random() < 0.5).compress(inner)
    damage = rng.randrange(5)
    if damage == 0:
        comp = comp[: rng.randrange(len(comp))]
    elif damage == 1:
        comp = _flip(rng, comp, 0, len(comp), rng.randrange(1, 4))
    elif damage == 2:
        comp += rng.choice([b"\0" * rng.randrange(1, 64), rng.randbytes(rng.randrange(1, 64))])
    elif damage == 3:
        comp += comp  # two members/frames
    return comp


OPERATORS = PLAIN + [compressed]


def variants(count: int = COUNT, seed: int = SEED) -> list[tuple[str, bytes]]:
    """``count`` (name, bytes) variants: samples and operators taken in turn, stacked now and then."""
    rng = random.Random(seed)
    bases = [(p.name, p.read_bytes()) for p in sample_captures()]
    bases = [(n, d, _layout(d)) for n, d in bases]
    out = []
    for i in range(count):
        name, data, lay = bases[i % len(bases)]
        ops = [OPERATORS[(i // len(bases) + i) % len(OPERATORS)]]
        if rng.random() < 0.15:
            ops.append(rng.choice(PLAIN))
        for op in ops:
            data = op(rng, data, lay) if data else data
        out.append((f"{i}:{name}:{'+'.join(op.__name__ for op in ops)}", data))
    return out


# -- running them ----------------------------------------------------------------------------
class _Timeout(Exception):
    pass


def _check(name: str, res) -> str | None:
    """What is wrong with one run's outcome, or None."""
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return f"{name}: {''.join(traceback.format_exception(res.exception))[-1500:]}"
    out = res.stdout
    if "Traceback" in out or "Traceback" in res.stderr:
        return f"{name}: a traceback in the output"
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("meshpcap: "):
            return f"{name}: exit 2 without the one-line error: {res.stderr!r}"
        return None
    if res.exit_code not in (0, 1, 3):
        return f"{name}: exit {res.exit_code}: {res.stderr[-500:]!r}"
    try:
        cap = json.loads(out)["capture"]
    except (ValueError, KeyError) as exc:
        return f"{name}: exit {res.exit_code} but no JSON report ({exc})"
    if cap["packets"] != cap["decoded"] + sum(cap["undecoded"].values()):
        return f"{name}: packets {cap['packets']} != decoded {cap['decoded']} + undecoded {cap['undecoded']}"
    return None


def _run_all(items: list[tuple[str, bytes]], wfd: int) -> None:
    """In the child: bound the address space, run every variant with a timer, report."""
    import resource

    from typer.testing import CliRunner

    from meshpcap.cli import app

    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_BYTES, resource.RLIM_INFINITY))

    def alarm(signum, frame):
        raise _Timeout()

    signal.signal(signal.SIGALRM, alarm)
    runner = CliRunner()
    problems, codes = [], {}
    with tempfile.TemporaryDirectory() as d:
        for name, data in items:
            path = Path(d) / "variant.cap"
            path.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, RUN_SECONDS)
            try:
                res = runner.invoke(app, ["analyze", str(path), "--service-tags", str(TAGS), "-f", "json"])
                problem = _check(name, res)
            except _Timeout:
                problem = f"{name}: no result within {RUN_SECONDS} s"
            except MemoryError:
                problem = f"{name}: more than {MEMORY_BYTES >> 20} MiB"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if isinstance(res.exception, MemoryError):
                problem = f"{name}: more than {MEMORY_BYTES >> 20} MiB"
            codes[res.exit_code] = codes.get(res.exit_code, 0) + 1
            if problem:
                problems.append(problem)
    _child.write_all(wfd, json.dumps({"problems": problems, "codes": codes}).encode())


@pytest.mark.skipif(not hasattr(os, "fork") or not Path("/proc/self/statm").exists(), reason="needs fork and /proc")
def test_every_variant_ends_in_a_report_or_the_capture_error():
    items = variants()
    assert len(items) == COUNT and len({d for _, d in items}) > COUNT * 0.9  # really different
    with _child.beside(lambda wfd: _run_all(items, wfd)) as pipe:
        raw = pipe.read()
    assert raw, "the child running the variants died (signal, or out of memory outside a run)"
    result = json.loads(raw)
    assert not result["problems"], "\n".join(result["problems"][:20])
    codes = {int(k): v for k, v in result["codes"].items()}
    # both outcomes occur: damage is reported in a report, and whole-file damage is the capture error
    assert codes.get(2, 0) > 0 and codes.get(0, 0) + codes.get(1, 0) + codes.get(3, 0) > COUNT // 4, codes


def test_variants_are_deterministic():
    assert variants(30) == variants(30)
    assert variants(30) != variants(30, SEED + 1)


@pytest.mark.parametrize("index", [3, 7])
def test_a_few_variants_through_the_real_entry_point(index, tmp_path):
    name, data = variants(max(COUNT, index + 1))[index]
    p = tmp_path / "variant.cap"
    p.write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", "from meshpcap.cli import main; main()", "analyze", str(p),
                           "--service-tags", str(TAGS), "-f", "json"], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode in (0, 1, 2, 3), (name, proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("meshpcap: ")
    else:
        cap = json.loads(proc.stdout)["capture"]
        assert cap["packets"] == cap["decoded"] + sum(cap["undecoded"].values())
