"""Decompression limits (issue 9 item 5): a gzip or zstd bomb ends in a truncated report naming
the limit, and the zstd reader's memory stays bounded whatever a frame expands to."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
import zstandard

from meshpcap import settings
from meshpcap.capture import open_capture
from tests.capture import writers as w

HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # a pcap header, then zeros


def _bomb(kind: str, mib: int) -> bytes:
    zero = bytes(1 << 20)
    if kind == "gzip":
        c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(HEADER) + b"".join(c.compress(zero) for _ in range(mib)) + c.flush()
    c = zstandard.ZstdCompressor(level=3).compressobj()
    return c.compress(HEADER) + b"".join(c.compress(zero) for _ in range(mib)) + c.flush()


def _read(path) -> tuple[int, dict | None]:
    with open_capture(path, batch_bytes=1 << 20) as cap:
        return sum(len(b) for b in cap.batches()), cap.info.truncated


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_absolute_limit(tmp_path, kind):
    p = tmp_path / "bomb"
    p.write_bytes(_bomb(kind, 8))
    with settings.override(max_decompressed=2 << 20, max_ratio=0):
        n, truncated = _read(p)
    assert n == ((2 << 20) - 24) // 16  # zero-length records of 16 header bytes, up to the limit
    assert "MESHPCAP_MAX_DECOMPRESSED" in truncated["reason"] and truncated["compressed_offset"] > 0


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_ratio_limit(tmp_path, kind, monkeypatch):
    p = tmp_path / "bomb"
    p.write_bytes(_bomb(kind, 8))
    monkeypatch.setattr(settings, "RATIO_FLOOR", 1 << 20)
    n, truncated = _read(p)  # the default ratio (200) stops it early
    assert 0 < n < (3 << 20) // 16
    assert "MESHPCAP_MAX_RATIO" in truncated["reason"] and "bomb" in truncated["reason"]
    with settings.override(max_ratio=0):  # switched off: read to the end
        n, truncated = _read(p)
    assert n == (8 << 20) // 16 and truncated is None


def test_an_ordinary_capture_is_far_from_the_limits(tmp_path):
    recs = [(i, 0, bytes(1000)) for i in range(3000)]  # zero payloads compress about 100 times
    p = tmp_path / "x.pcap.gz"
    p.write_bytes(zlib.compress(w.pcap(recs), 9, wbits=16 + zlib.MAX_WBITS))
    assert _read(p) == (3000, None)


def test_zstd_reader_memory_is_bounded(tmp_path):
    """zstd of 512 MiB of zeros: reading the 24-byte header took 549 MB before; now a few MiB."""
    p = tmp_path / "bomb.zst"
    p.write_bytes(_bomb("zstd", 512))
    tracemalloc.start()
    try:
        with open_capture(p, batch_bytes=1 << 20) as cap:
            it = cap.batches()
            first = next(it)
            assert len(first) > 0
            it.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, peak
