"""Damaged gzip and zstd captures (issue 9 item 1): every packet decoded before the damage is
kept, ``capture.truncated`` says where the stream broke, and what Wireshark accepts (gzip members
one after another, zero padding after a zstd frame) reads cleanly.  Counts are compared with
capinfos where it is installed."""

from __future__ import annotations

import gzip
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from meshpcap.capture import open_capture
from meshpcap.errors import CaptureError
from tests.capture import writers as w
from tests.conftest import SAMPLES, SHARED_CAPTURES

SAMPLE = SAMPLES / "single-room-teams.pcap"
TEAMS = SHARED_CAPTURES / "nDPI" / "teams.pcap"  # the real Teams capture of the issue (1,540 packets)
CAPINFOS = shutil.which("capinfos")


def packets(path: Path, batch_bytes: int = 4096) -> tuple[list[bytes], dict | None]:
    with open_capture(path, batch_bytes=batch_bytes) as cap:
        out = [bytes(b.data[o:o + c]) for b in cap.batches() for o, c in zip(b.offset.tolist(), b.caplen.tolist())]
        return out, cap.info.truncated


def capinfos_count(path: Path) -> int:
    """Packets capinfos reads (before its error, if it stops with one)."""
    res = subprocess.run([CAPINFOS, "-M", "-c", "--", str(path)], capture_output=True, text=True, timeout=60)
    m = re.search(r"Number of packets:\s+(\d+)", res.stdout) or re.search(r"after reading (\d+) packets", res.stderr)
    assert m, (res.stdout, res.stderr)
    return int(m[1])


def _incompressible() -> bytes:
    """A pcap of 600 packets of seeded random bytes: many zstd blocks, long gzip output."""
    rng = random.Random(9)
    return w.pcap([(i, 0, rng.randbytes(200 + rng.randrange(1000))) for i in range(600)])


@pytest.fixture(scope="module")
def plain() -> tuple[bytes, list[bytes]]:
    data = SAMPLE.read_bytes()
    return data, packets(SAMPLE)[0]


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("wrap", ["gzip", "zstd"])
def test_trailing_junk_keeps_every_packet(tmp_path, plain, wrap):
    data, want = plain
    comp = gzip.compress(data) if wrap == "gzip" else zstandard.ZstdCompressor().compress(data)
    p = _write(tmp_path, "x.cap", comp + b"\x13junk after the end!")
    got, truncated = packets(p)
    assert got == want
    assert truncated is not None and truncated["compressed_offset"] == len(comp)
    assert f"ends at compressed byte {len(comp)}" in truncated["reason"]


@pytest.mark.skipif(not TEAMS.is_file(), reason="../shared/captures is absent")
def test_real_teams_capture_gzipped_with_junk(tmp_path):
    comp = gzip.compress(TEAMS.read_bytes())
    p = _write(tmp_path, "teams.pcap.gz", comp + bytes(range(1, 17)))
    got, truncated = packets(p, 1 << 16)
    assert len(got) == 1540 and truncated["compressed_offset"] == len(comp)
    if CAPINFOS:  # capinfos reads the junk as a record and stops there, after every packet
        assert capinfos_count(p) == len(got)


def test_zero_padding_after_zstd_frame(tmp_path, plain):
    data, want = plain
    p = _write(tmp_path, "x.cap", zstandard.ZstdCompressor(write_checksum=True).compress(data) + b"\0" * 4096)
    assert packets(p) == (want, None)


def test_zstd_skippable_frame_and_several_frames(tmp_path, plain):
    data, want = plain
    c = zstandard.ZstdCompressor()
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"hello"
    p = _write(tmp_path, "x.cap", skippable + c.compress(data[:1000]) + skippable + c.compress(data[1000:]))
    assert packets(p) == (want, None)


def test_gzip_members_one_after_another(tmp_path, plain):
    data, want = plain
    members = gzip.compress(data[:20001]) + gzip.compress(data[20001:])
    p = _write(tmp_path, "x.cap", members)
    assert packets(p) == (want, None)
    if CAPINFOS:
        assert capinfos_count(p) == capinfos_count(SAMPLE) == len(want)
    # zero padding between members, as gzip(1) tolerates it
    assert packets(_write(tmp_path, "y.cap", gzip.compress(data[:20001]) + b"\0" * 8 + gzip.compress(data[20001:]))) \
        == (want, None)


@pytest.mark.parametrize("where", ["crc", "isize"])
def test_gzip_bad_trailer_keeps_every_packet(tmp_path, plain, where):
    data, want = plain
    comp = bytearray(gzip.compress(data))
    comp[-8 if where == "crc" else -2] ^= 0x40
    got, truncated = packets(_write(tmp_path, "x.cap", bytes(comp)))
    assert got == want  # the data check comes after the last byte: nothing is lost
    assert "damaged" in truncated["reason"] and truncated["compressed_offset"] <= len(comp)
    if CAPINFOS:
        assert capinfos_count(tmp_path / "x.cap") <= len(got)


def test_gzip_flipped_bit_keeps_the_packets_before(tmp_path, plain):
    data, want = plain
    comp = gzip.compress(data, compresslevel=1)
    for at in (len(comp) // 3, len(comp) // 2, 2 * len(comp) // 3):
        bad = bytearray(comp)
        bad[at] ^= 0x08
        got, truncated = packets(_write(tmp_path, "x.cap", bytes(bad)))
        # a flipped bit may decode to wrong bytes for a while; what came before it is intact
        intact = 0
        while intact < min(len(got), len(want)) and got[intact] == want[intact]:
            intact += 1
        assert intact >= 1 and truncated is not None
        assert truncated.get("compressed_offset") is None or truncated["compressed_offset"] <= len(comp)


@pytest.mark.parametrize("wrap", ["gzip", "zstd"])
def test_cut_stream_keeps_the_packets_before_and_says_where(tmp_path, wrap):
    data = _incompressible()
    comp = gzip.compress(data) if wrap == "gzip" else zstandard.ZstdCompressor(level=1).compress(data)
    want = packets(_write(tmp_path, "plain.cap", data))[0]
    cut = comp[: len(comp) * 3 // 4]
    got, truncated = packets(_write(tmp_path, "x.cap", cut))
    assert 0 < len(got) < len(want) and got == want[: len(got)]
    assert "cut" in truncated["reason"] and truncated["compressed_offset"] <= len(cut)
    # zstd decodes whole blocks (<= 128 KiB), gzip nearly every byte present
    assert len(got) >= len(want) * (0.6 if wrap == "gzip" else 0.4)


def test_zstd_damaged_block_keeps_the_blocks_before(tmp_path):
    data = _incompressible()
    comp = bytearray(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data))
    want = packets(_write(tmp_path, "plain.cap", data))[0]
    comp[len(comp) * 3 // 4] ^= 0xFF
    got, truncated = packets(_write(tmp_path, "x.cap", bytes(comp)))
    assert len(got) >= len(want) // 3 and got[: len(want) // 3] == want[: len(want) // 3]
    assert truncated is not None


def test_zstd_cut_inside_the_only_block_is_a_capture_error(tmp_path, plain):
    data, _ = plain
    comp = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(CaptureError, match="zstd stream is cut"):
        packets(_write(tmp_path, "x.cap", comp[:100]))
