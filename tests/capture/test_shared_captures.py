"""Every file of the shared public capture corpus either reads cleanly or fails with CaptureError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meshpcap.capture import open_capture
from meshpcap.errors import CaptureError
from tests.oracle import capinfos

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "captures"
MANIFEST = SHARED / "MANIFEST.md"

pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/captures is absent")


def _files() -> list[Path]:
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.rglob("*") if p.is_file())


def _manifest_rows() -> list[dict[str, str]]:
    """The MANIFEST table as dicts keyed by its header cells."""
    if not MANIFEST.is_file():
        return []
    header: list[str] | None = None
    rows = []
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            if cells and cells[0] == "#":
                header = cells
            continue
        if len(cells) == len(header) and cells[0].isdigit():
            rows.append(dict(zip(header, cells)))
    return rows


def _read(path: Path):
    cap = open_capture(path, batch_bytes=1 << 16)
    n = 0
    for batch in cap.batches():
        assert batch.first_record == n
        assert int((batch.offset + batch.caplen).max()) <= len(batch.data)
        n += len(batch)
    assert n == cap.info.records
    return cap.info


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SHARED)))
def test_reads_or_capture_error(path):
    """Every file reads or fails with the one-line capture error; and where capinfos reads a file
    fully (issue 9, accounting against Wireshark), capture.packets equals ``capinfos -M -c``."""
    try:
        info = _read(path)
    except CaptureError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        if capinfos.CAPINFOS is not None:
            assert not capinfos.count(path)[1], f"capinfos reads {path} fully, meshpcap not at all: {exc}"
        return
    if capinfos.CAPINFOS is not None:
        n, whole = capinfos.count(path)
        if whole:
            assert info.records == n, (info.records, n, info.truncated)


def _countable() -> list[tuple[str, int]]:
    out = []
    for row in _manifest_rows():
        pkts, cat, fmt = row.get("Pkts", ""), row.get("Cat", ""), row.get("Format", "")
        if not pkts.isdigit() or "MALFORMED" in cat or "damaged" in fmt or "truncated" in fmt:
            continue
        out.append((row["Path (under captures/)"].strip("`"), int(pkts)))
    return out


def test_manifest_parsed():
    if MANIFEST.is_file():
        assert len(_countable()) > 50


@pytest.mark.parametrize("rel,pkts", _countable(), ids=lambda v: str(v))
def test_record_count_matches_capinfos(rel, pkts):
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"{rel} listed in MANIFEST but absent")
    info = _read(path)
    assert info.records == pkts, (rel, info.truncated)
    assert info.truncated is None, info.truncated
    assert re.fullmatch(r"pcap|pcapng", info.format)
