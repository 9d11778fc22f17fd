"""Tests for the pcap/pcapng capture readers, on captures written by tests/capture/writers.py."""

from __future__ import annotations

import gzip
import mmap
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
import zstandard

from meshpcap.capture import LINKTYPE_NAMES, Batch, CaptureInfo, linktype_name, open_capture
from meshpcap.errors import CaptureError
from tests.capture import writers as w


def read_all(path, batch_bytes=16 << 20):
    """(info, [(bytes, ts_ns, caplen, origlen, linktype, interface), ...]) checking batch invariants."""
    cap = open_capture(path, batch_bytes=batch_bytes)
    packets = []
    with cap:
        for batch in cap.batches():
            assert isinstance(batch, Batch)
            assert batch.first_record == len(packets)
            assert len(batch) > 0
            for col, dt in (("offset", np.int64), ("caplen", np.int64), ("origlen", np.int64),
                            ("ts_ns", np.int64), ("linktype", np.int32), ("interface", np.int32)):
                arr = getattr(batch, col)
                assert arr.dtype == dt and arr.shape == (len(batch),), col
            # a plain file's chunks are mapped (read-only mmap), others read; slices are bytes either way
            assert isinstance(batch.data, (bytes, mmap.mmap))
            assert type(batch.data[0:1]) is bytes
            for i in range(len(batch)):
                o, c = int(batch.offset[i]), int(batch.caplen[i])
                assert o + c <= len(batch.data)
                packets.append((batch.data[o:o + c], int(batch.ts_ns[i]), c, int(batch.origlen[i]),
                                int(batch.linktype[i]), int(batch.interface[i])))
    assert cap.info.records == len(packets)
    return cap.info, packets


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


RECS = [(1_700_000_000, 123, b"\x01" * 60), (1_700_000_001, 999, b"\x02" * 7, 1500), (1_700_000_002, 0, b"")]


# ---- pcap ---------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_orders_and_resolutions(tmp_path, order, nano):
    p = write(tmp_path, "x.pcap", w.pcap(RECS, order=order, nano=nano, linktype=113))
    info, pkts = read_all(p)
    mult = 1 if nano else 1000
    assert [x[0] for x in pkts] == [r[2] for r in RECS]
    assert [x[1] for x in pkts] == [r[0] * 10**9 + r[1] * mult for r in RECS]
    assert [x[3] for x in pkts] == [60, 1500, 0]
    assert {x[4] for x in pkts} == {113} and {x[5] for x in pkts} == {0}
    assert info.format == "pcap" and info.byte_order == ("little" if order == "<" else "big")
    assert info.link_types == [113] and info.snaplen == 65535 and info.sections == 1
    assert info.records == 3 and info.bytes == 1560 and info.captured_bytes == 67 and info.cut_by_snaplen == 1
    assert info.first_ns == RECS[0][0] * 10**9 + 123 * mult and info.last_ns == RECS[2][0] * 10**9
    assert info.truncated is None and info.dropped_by_capture is None and info.compression is None
    d = info.to_dict()
    assert set(d) == {"path", "format", "compression", "link_types", "packets", "bytes", "first_ns", "last_ns",
                      "truncated", "dropped_by_capture", "unknown_blocks", "cut_by_snaplen", "sections", "interfaces",
                      "damaged_blocks", "changed_while_read"}
    assert d["link_types"] == ["linux_sll"] and d["packets"] == 3


def test_pcap_fcs_bits_in_linktype_field(tmp_path):
    # draft-ietf-opsawg-pcap: FCS length and F bit live above the 16-bit link type.
    p = write(tmp_path, "fcs.pcap", w.pcap(RECS, linktype=(4 << 28) | (1 << 27) | 1))
    info, pkts = read_all(p)
    assert info.link_types == [1] and {x[4] for x in pkts} == {1}


def test_pcap_empty_is_fine(tmp_path):
    info, pkts = read_all(write(tmp_path, "e.pcap", w.pcap([])))
    assert pkts == [] and info.truncated is None and info.first_ns is None


def test_linktype_names():
    assert linktype_name(1) == "ethernet" and linktype_name(276) == "linux_sll2"
    assert linktype_name(12) == linktype_name(14) == linktype_name(101) == "raw"
    assert linktype_name(0) == "null" and linktype_name(228) == "ipv4" and linktype_name(229) == "ipv6"
    assert linktype_name(4242) == "dlt-4242" and LINKTYPE_NAMES[113] == "linux_sll"


# ---- pcapng -------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_basic(tmp_path, order):
    data = (w.shb(order) + w.idb(order, 1, 262144, name="eth0")
            + w.epb(order, 0, 1_700_000_000_000_001, b"abc")
            + w.epb(order, 0, 1_700_000_000_000_002, b"defg", origlen=100))
    info, pkts = read_all(write(tmp_path, "x.pcapng", data))
    assert pkts == [(b"abc", 1_700_000_000_000_001_000, 3, 3, 1, 0), (b"defg", 1_700_000_000_000_002_000, 4, 100, 1, 0)]
    assert info.format == "pcapng" and info.byte_order == ("little" if order == "<" else "big")
    assert info.interfaces[0]["name"] == "eth0" and info.interfaces[0]["snaplen"] == 262144
    assert info.interfaces[0]["tsresol_ns"] == 1000 and info.cut_by_snaplen == 1 and info.sections == 1


def test_pcapng_two_sections_global_interfaces(tmp_path):
    data = (w.shb("<") + w.idb("<", 1) + w.idb("<", 113) + w.epb("<", 1, 5, b"a") + w.epb("<", 0, 6, b"b")
            + w.shb(">") + w.idb(">", 276) + w.idb(">", 101, tsresol=9) + w.epb(">", 1, 7, b"c")
            + w.epb(">", 0, 8, b"d"))
    info, pkts = read_all(write(tmp_path, "two.pcapng", data))
    assert [(x[0], x[4], x[5]) for x in pkts] == [(b"a", 113, 1), (b"b", 1, 0), (b"c", 101, 3), (b"d", 276, 2)]
    assert [x[1] for x in pkts] == [5000, 6000, 7, 8000]
    assert info.sections == 2 and info.byte_order == "little"
    assert info.link_types == [1, 101, 113, 276]
    assert [i["index"] for i in info.interfaces] == [0, 1, 2, 3]
    assert [i["section"] for i in info.interfaces] == [0, 0, 1, 1]
    assert info.to_dict()["link_types"] == ["ethernet", "raw", "linux_sll", "linux_sll2"]


def test_pcapng_tsresol_and_tsoffset(tmp_path):
    data = (w.shb() + w.idb(linktype=1, tsresol=9) + w.idb(linktype=1, tsresol=0x80 | 20)
            + w.idb(linktype=1, tsresol=3, tsoffset=1_600_000_000) + w.idb(linktype=1, tsresol=12)
            + w.epb(iface=0, ts=1_700_000_000_123_456_789)
            + w.epb(iface=1, ts=(1_700_000_000 << 20) + (1 << 19) + 1)
            + w.epb(iface=2, ts=1500)
            + w.epb(iface=3, ts=17_000_123_456_789_999))
    info, pkts = read_all(write(tmp_path, "res.pcapng", data))
    ts = [x[1] for x in pkts]
    assert ts[0] == 1_700_000_000_123_456_789
    assert ts[1] == 1_700_000_000 * 10**9 + 500_000_000 + (10**9 // (1 << 20))  # floor((2^-20 s) in ns)
    assert ts[2] == 1_600_000_001_500_000_000
    assert ts[3] == 17_000_123_456_789
    assert [i["tsresol"] for i in info.interfaces] == ["10^-9", "2^-20", "10^-3", "10^-12"]
    assert info.interfaces[2]["tsoffset_s"] == 1_600_000_000


def test_pcapng_ticks_exact_for_odd_resolutions():
    from meshpcap.capture.pcapng import ticks_to_ns

    ticks = np.array([0, 1, 2**40 + 12345, 2**63 + 5], dtype=np.uint64)
    for resol in (0, 3, 6, 9, 10, 15, 20, 30, 0x80 | 0, 0x80 | 10, 0x80 | 20, 0x80 | 32, 0x80 | 60):
        got = ticks_to_ns(ticks, resol, -3).tolist()
        n = resol & 0x7F
        num, den = (10**9, 2**n) if resol & 0x80 else (10**9, 10**n)
        want = [min(max(int(t) * num // den - 3 * 10**9, -(2**63)), 2**63 - 1) for t in ticks.tolist()]
        assert got == want, resol


def test_pcapng_spb_opb_isb_unknown(tmp_path):
    custom = w.block("<", 0x00000BAD, b"\0\0\0\0xyz")
    nrb = w.block("<", 4, b"\0\0\0\0")
    data = (w.shb() + w.idb(linktype=1, snaplen=8) + w.idb(linktype=228)
            + w.spb(data=b"0123", origlen=2)  # no timestamp yet: 0 (taking the next packet's, as before,
            # depended on where batches ended)
            + w.epb(iface=1, ts=10, data=b"e")
            + w.spb(data=b"01234567", origlen=50)  # room of 8 bytes; caplen = min(origlen, room)
            + w.opb(iface=1, ts=20, data=b"oo")
            + w.isb(iface=0, ifdrop=7, osdrop=1) + w.isb(iface=0, ifdrop=9) + w.isb(iface=1, osdrop=2)
            + custom + nrb + w.block("<", 0x12345678, b"junk") + w.block("<", 0x80000001, b""))
    info, pkts = read_all(write(tmp_path, "mix.pcapng", data))
    assert [(x[0], x[1], x[2], x[3], x[4], x[5]) for x in pkts] == [
        (b"01", 0, 2, 2, 1, 0),
        (b"e", 10_000, 1, 1, 228, 1),
        (b"01234567", 10_000, 8, 50, 1, 0),
        (b"oo", 20_000, 2, 2, 228, 1),
    ]
    assert info.dropped_by_capture == 9 + 2  # last ISB of interface 0 wins
    assert info.unknown_blocks == 2 and info.truncated is None


def test_pcapng_spb_timestamp_carries_across_batches(tmp_path):
    data = w.shb() + w.idb() + w.epb(ts=42, data=b"x" * 40) + w.spb(data=b"y" * 40)
    info, pkts = read_all(write(tmp_path, "spb.pcapng", data), batch_bytes=64)
    assert [x[1] for x in pkts] == [42_000, 42_000]


def test_pcapng_no_isb_means_unknown_drops(tmp_path):
    info, _ = read_all(write(tmp_path, "n.pcapng", w.shb() + w.idb() + w.isb()))
    assert info.dropped_by_capture is None and info.records == 0


# ---- compression --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gzip", "zstd"])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_compressed_with_misleading_name(tmp_path, kind, fmt):
    raw = w.pcap(RECS) if fmt == "pcap" else w.shb() + w.idb() + b"".join(w.epb(ts=i, data=bytes(i)) for i in range(5))
    packed = gzip.compress(raw) if kind == "gzip" else zstandard.ZstdCompressor().compress(raw)
    expect_info, expect = read_all(write(tmp_path, "plain", raw))
    for bb in (16 << 20, 64):
        info, pkts = read_all(write(tmp_path, "notes.txt", packed), batch_bytes=bb)
        assert pkts == expect and info.compression == kind and info.format == fmt and info.truncated is None


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compressed_cut_short_is_truncated(tmp_path, kind):
    rng = np.random.default_rng(7)
    recs = [(1, i, rng.integers(0, 256, 300, dtype=np.uint8).tobytes()) for i in range(2000)]
    raw = w.pcap(recs)
    packed = gzip.compress(raw) if kind == "gzip" else zstandard.ZstdCompressor().compress(raw)
    info, pkts = read_all(write(tmp_path, "cut.bin", packed[: len(packed) * 3 // 4]))
    assert 0 < len(pkts) < 2000
    assert [p[0] for p in pkts] == [r[2] for r in recs[: len(pkts)]]
    assert info.truncated is not None and f"{kind} stream" in info.truncated["reason"]
    assert info.truncated["record"] == len(pkts)


def test_zstd_several_frames(tmp_path):
    raw = w.pcap(RECS * 10)
    c = zstandard.ZstdCompressor()
    packed = c.compress(raw[:100]) + c.compress(raw[100:250]) + c.compress(raw[250:])
    info, pkts = read_all(write(tmp_path, "f.zst", packed), batch_bytes=50)
    assert len(pkts) == 30 and info.truncated is None


def test_gzip_of_text_is_rejected(tmp_path):
    with pytest.raises(CaptureError, match=r"gzip-compressed file: not a pcap or pcapng capture \(starts with 'hello"):
        open_capture(write(tmp_path, "t.gz", gzip.compress(b"hello world, this is text")))


# ---- truncation and damage ----------------------------------------------------------------

def _pcapng_small():
    blocks = [w.shb(), w.idb(linktype=1), w.epb(ts=1, data=b"abcde"), w.isb(ifdrop=1), w.spb(data=b"xy"),
              w.epb(ts=3, data=b""), w.block("<", 0x99, b"zz")]
    bounds, pos = [], 0
    for b in blocks:
        pos += len(b)
        bounds.append(pos)
    packet_ends = [bounds[2], bounds[4], bounds[5]]
    return b"".join(blocks), bounds, packet_ends


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_cut_at_every_offset(tmp_path, fmt):
    if fmt == "pcap":
        recs = [(1, 2, b"hello"), (3, 4, b""), (5, 6, b"world!!")]
        full = w.pcap(recs)
        bounds = [24] + w.pcap_record_bounds(recs)
        packet_ends = bounds[1:]
        header_end = 24
    else:
        full, bounds, packet_ends = _pcapng_small()
        header_end = bounds[0]
    _, all_pkts = read_all(write(tmp_path, "full", full))
    for cut in range(len(full) + 1):
        p = write(tmp_path, f"cut{cut}", full[:cut])
        if cut < header_end:
            with pytest.raises(CaptureError) as e:
                open_capture(p)
            assert str(p) in str(e.value)
            continue
        for bb in (1 << 20, 16):
            info, pkts = read_all(p, batch_bytes=bb)
            complete = sum(1 for e in packet_ends if e <= cut)
            assert pkts == all_pkts[:complete], (cut, bb)
            if cut in bounds:
                assert info.truncated is None, cut
            else:
                assert info.truncated is not None, cut
                assert info.truncated["record"] == complete
                assert info.truncated["offset"] == max(b for b in bounds if b <= cut)
                assert "file ends inside" in info.truncated["reason"]


def test_cut_inside_record_reason(tmp_path):
    full = w.pcap([(1, 2, b"hello"), (3, 4, b"world")])
    info, pkts = read_all(write(tmp_path, "c.pcap", full[:-2]))
    assert len(pkts) == 1
    assert info.truncated == {"record": 1, "offset": 45, "reason": "file ends inside record 1 (3 of 5 captured bytes present)"}


@pytest.mark.parametrize("claim,snaplen", [(300 << 20, 65535), (262145, 65535), (70000, 0)])
def test_pcap_damaged_caplen(tmp_path, claim, snaplen):
    good = w.pcap([(1, 2, b"ok")], snaplen=snaplen)
    bad = struct.pack("<IIII", 1, 2, claim, claim) + b"\0" * 100
    info, pkts = read_all(write(tmp_path, "d.pcap", good + bad + b"\0" * 1000))
    if claim <= max(snaplen, 262144):
        assert info.truncated["reason"].startswith("file ends inside record 1")
    else:
        assert len(pkts) == 1 and info.truncated["record"] == 1 and "damaged" in info.truncated["reason"]


@pytest.mark.parametrize("damage", ["not4", "not4-under", "short", "trailer", "caplen", "iface", "big"])
def test_pcapng_damaged_block_is_read_past(tmp_path, damage):
    """Issue 9 item 2: an EPB with inconsistent lengths is read past where its real end is
    unambiguous (its trailing length or captured length agrees, and a sound block follows); the
    block is counted; its packet is kept when the packet itself is sound."""
    good = w.shb() + w.idb() + w.epb(ts=1, data=b"good")
    bad = bytearray(w.epb(ts=2, data=b"bad!"))
    if damage == "not4":
        struct.pack_into("<I", bad, 4, len(bad) + 2)
    elif damage == "not4-under":  # what Wireshark itself reads (the length rounded up)
        struct.pack_into("<I", bad, 4, len(bad) - 2)
    elif damage == "short":
        struct.pack_into("<I", bad, 4, 8)
    elif damage == "trailer":
        struct.pack_into("<I", bad, len(bad) - 4, 99)
    elif damage == "caplen":
        struct.pack_into("<I", bad, 20, 5)
    elif damage == "iface":
        struct.pack_into("<I", bad, 8, 1)
    elif damage == "big":
        struct.pack_into("<I", bad, 4, 0xFFFFFFF0)
    data = good + bytes(bad) + w.epb(ts=3, data=b"after") + w.isb(ifdrop=2)
    kept = [b"good", b"after"] if damage in ("caplen", "iface") else [b"good", b"bad!", b"after"]
    for bb in (1 << 20, 16):
        info, pkts = read_all(write(tmp_path, "d.pcapng", data), batch_bytes=bb)
        assert [x[0] for x in pkts] == kept
        assert info.damaged_blocks == 1 and info.truncated is None and info.dropped_by_capture == 2
    if damage == "not4-under" and shutil.which("capinfos"):
        res = subprocess.run(["capinfos", "-M", "-c", "--", str(tmp_path / "d.pcapng")], capture_output=True,
                             text=True, timeout=60)
        assert f"Number of packets:   {len(kept)}" in res.stdout


@pytest.mark.parametrize("damage", ["garbage-after", "ambiguous"])
def test_pcapng_damaged_block_without_a_clear_end_stops(tmp_path, damage):
    good = w.shb() + w.idb() + w.epb(ts=1, data=b"good")
    bad = bytearray(w.epb(ts=2, data=b"bad!" * 4))  # 48 bytes
    struct.pack_into("<I", bad, len(bad) - 4, 99)  # trailing length wrong
    if damage == "garbage-after":
        after = b"\xee" * 64
    else:  # the leading length (48) and the captured length (the first 4 bytes) give two ends,
        struct.pack_into("<I", bad, 20, 4)  # each followed by a sound block
        struct.pack_into("<I", bad, 32, 36)  # the trailer a 36-byte block would have
        bad[36:48] = w.block("<", 4, b"")  # an empty (well-formed) name resolution block
        after = w.epb(ts=3, data=b"after")
    data = good + bytes(bad) + after
    info, pkts = read_all(write(tmp_path, "d.pcapng", data))
    assert [x[0] for x in pkts] == [b"good"]
    assert info.truncated["record"] == 1 and info.truncated["offset"] == len(good)
    assert "stops here" in info.truncated["reason"] and info.damaged_blocks == 0


def test_damaged_unknown_block_length(tmp_path):
    data = w.shb() + w.idb() + w.epb(data=b"1") + struct.pack("<II", 0x77, 13) + b"\0" * 40
    info, pkts = read_all(write(tmp_path, "d.pcapng", data))
    assert len(pkts) == 1 and "not a multiple of 4" in info.truncated["reason"]


# ---- bad input ----------------------------------------------------------------------------

def _bad(tmp_path, name, data):
    p = tmp_path / name
    if data is not None:
        p.write_bytes(data)
    with pytest.raises(CaptureError) as e:
        open_capture(p)
    msg = str(e.value)
    assert msg.startswith(str(p) + ": ") and "\n" not in msg
    return e.value.problem


def test_bad_inputs(tmp_path):
    assert _bad(tmp_path, "missing.pcap", None) == "no such file"
    assert "directory" in _bad(tmp_path, "", None)
    assert _bad(tmp_path, "empty.pcap", b"") == "empty file (0 bytes)"
    assert _bad(tmp_path, "hello.pcap", b"Hello world\n") == "not a pcap or pcapng capture (starts with 'Hello wo')"
    assert "HTML" in _bad(tmp_path, "page.pcapng", b"<!DOCTYPE html><html><body>404</body></html>")
    etl = bytes.fromhex("0000010000000000b0dc0000000000000000000000000000")
    assert _bad(tmp_path, "trace.etl", etl) == ("not a pcap or pcapng capture "
                                                "(starts with bytes 00 00 01 00 00 00 00 00)")
    assert "zip archive" in _bad(tmp_path, "x.pcap", b"PK\x03\x04" + b"\0" * 40)
    assert "pcap file header" in _bad(tmp_path, "cut.pcap", w.pcap([])[:10])
    assert "section header" in _bad(tmp_path, "cut.pcapng", w.shb()[:20])
    assert "section header" in _bad(tmp_path, "cut2.pcapng", w.shb()[:6])
    assert _bad(tmp_path, "v.pcap", w.pcap([], version=(3, 0))) == "unsupported pcap version 3.0 (only 2.x is defined)"
    assert "unsupported pcapng version 2.0" in _bad(tmp_path, "v.pcapng", w.shb(version=(2, 0)) + w.idb())
    assert "byte-order magic" in _bad(tmp_path, "bom.pcapng", w.shb()[:8] + b"\0" * 20)
    assert "not a multiple of 4" in _bad(tmp_path, "len.pcapng", w.shb()[:4] + b"\x1e\0\0\0" + w.shb()[8:])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    p = write(tmp_path, "secret.pcap", w.pcap(RECS))
    p.chmod(0)
    with pytest.raises(CaptureError, match="permission denied"):
        open_capture(p)


def test_single_pass_and_close(tmp_path):
    cap = open_capture(write(tmp_path, "x.pcap", w.pcap(RECS)))
    assert isinstance(cap.info, CaptureInfo)
    assert sum(len(b) for b in cap.batches()) == 3
    with pytest.raises(RuntimeError):
        list(cap.batches())


# ---- chunk boundaries ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pcap", "pcapng", "pcap.gz"])
def test_tiny_batches_and_big_packet(tmp_path, fmt):
    sizes = [0, 1, 5, 31, 64, 100, 1000, 3, 4096, 7]
    if fmt.startswith("pcap") and fmt != "pcapng":
        raw = w.pcap([(i, i, bytes([i]) * n) for i, n in enumerate(sizes)])
    else:
        raw = w.shb() + w.idb() + b"".join(w.epb(ts=i, data=bytes([i]) * n) for i, n in enumerate(sizes))
    if fmt.endswith(".gz"):
        raw = gzip.compress(raw)
    p = write(tmp_path, "b." + fmt, raw)
    _, ref = read_all(p)
    for bb in (1, 7, 64, 100, 5000):
        info, pkts = read_all(p, batch_bytes=bb)
        assert pkts == ref and info.truncated is None
    assert [x[2] for x in ref] == sizes


@pytest.mark.parametrize("minor", [0, 2, 3])
def test_pcap_old_versions_swap_lengths(tmp_path, minor):
    # libpcap: before 2.3 the record header holds orig_len first; 2.3 may hold either order.
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, minor, 0, 0, 65535, 1)
    rec1 = struct.pack("<IIII", 1, 0, 1500, 4) + b"abcd"  # swapped order
    rec2 = struct.pack("<IIII", 2, 0, 3, 3) + b"xyz"
    info, pkts = read_all(write(tmp_path, "old.pcap", hdr + rec1 + rec2))
    assert [(x[0], x[3]) for x in pkts] == [(b"abcd", 1500), (b"xyz", 3)]
    assert info.truncated is None


def test_many_interfaces_cost_one_clock_conversion_per_batch(tmp_path, monkeypatch):
    """Issue 9 item 6: 65,536 interfaces read 20x slower than one, a mask per interface and
    batch; now the timestamp conversion runs once per distinct clock (tsresol, tsoffset)."""
    import meshpcap.capture.pcapng as pcapng_mod

    nif = 4096
    blocks = [w.shb()] + [w.idb(linktype=1 if i % 3 else 101, tsresol=6 if i % 2 else 9) for i in range(nif)]
    want = []
    for k in range(3 * nif):
        i = (k * 7919) % nif
        blocks.append(w.epb(iface=i, ts=1_000_000 + k, data=b"p%d" % k))
        want.append((i, (1_000_000 + k) * (1000 if i % 2 else 1), 1 if i % 3 else 101))
    calls = []
    real = pcapng_mod.ticks_to_ns

    def counting(ticks, tsresol, offset):
        calls.append(len(ticks))
        return real(ticks, tsresol, offset)

    monkeypatch.setattr(pcapng_mod, "ticks_to_ns", counting)
    p = write(tmp_path, "many.pcapng", b"".join(blocks))
    info, pkts = read_all(p, batch_bytes=1 << 20)
    assert [(x[5], x[1], x[4]) for x in pkts] == want
    assert len(info.interfaces) == nif and info.link_types == [1, 101]
    assert len(calls) <= 2 * 2  # two clocks, at most two batches


@pytest.mark.parametrize("block", ["idb", "isb", "nrb"])
def test_pcapng_other_block_with_length_short_of_a_multiple_of_4(tmp_path, block):
    """Wireshark rounds a block length up to a multiple of 4 when the trailing length agrees;
    so do we, for every block, counting it as damaged."""
    body = {"idb": w.idb(name="eth0"), "isb": w.isb(ifdrop=7), "nrb": w.block("<", 4, b"\0" * 8)}[block]
    bad = bytearray(body)
    struct.pack_into("<I", bad, 4, len(bad) - 1)
    blocks = [w.shb(), w.idb()] + ([bytes(bad)] if block != "isb" else []) + [w.epb(data=b"one")]
    if block == "isb":
        blocks.append(bytes(bad))
    blocks.append(w.epb(data=b"two", iface=1 if block == "idb" else 0))
    info, pkts = read_all(write(tmp_path, "r.pcapng", b"".join(blocks)))
    assert [p[0] for p in pkts] == [b"one", b"two"]
    assert info.damaged_blocks == 1 and info.truncated is None
    if block == "isb":
        assert info.dropped_by_capture == 7
    if shutil.which("capinfos"):
        res = subprocess.run(["capinfos", "-M", "-c", "--", str(tmp_path / "r.pcapng")], capture_output=True,
                             text=True, timeout=60)
        assert "Number of packets:   2" in res.stdout, res.stderr
