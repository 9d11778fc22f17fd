"""Tiny struct-based pcap and pcapng writers for the capture tests."""

from __future__ import annotations

import struct


def pcap(records, order="<", nano=False, snaplen=65535, linktype=1, version=(2, 4)) -> bytes:
    """records: (sec, frac, data[, origlen]) tuples."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for rec in records:
        sec, frac, data = rec[:3]
        orig = rec[3] if len(rec) > 3 else len(data)
        out.append(struct.pack(order + "IIII", sec, frac, len(data), orig) + data)
    return b"".join(out)


def pcap_record_bounds(records, hl=16) -> list[int]:
    """File offsets at which each record ends (the header is 24 bytes)."""
    pos, ends = 24, []
    for rec in records:
        pos += hl + len(rec[2])
        ends.append(pos)
    return ends


def opt(order, code, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def end_opts(order) -> bytes:
    return struct.pack(order + "HH", 0, 0)


def block(order, btype, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def shb(order="<", version=(1, 0)) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
    return block(order, 0x0A0D0D0A, body)


def idb(order="<", linktype=1, snaplen=65535, name=None, tsresol=None, tsoffset=None) -> bytes:
    opts = b""
    if name is not None:
        opts += opt(order, 2, name.encode())
    if tsresol is not None:
        opts += opt(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += opt(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += end_opts(order)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order="<", iface=0, ts=0, data=b"", origlen=None) -> bytes:
    orig = len(data) if origlen is None else origlen
    body = struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), orig) + data
    return block(order, 6, body)


def opb(order="<", iface=0, ts=0, data=b"", origlen=None) -> bytes:
    orig = len(data) if origlen is None else origlen
    body = struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), orig) + data
    return block(order, 2, body)


def spb(order="<", data=b"", origlen=None) -> bytes:
    orig = len(data) if origlen is None else origlen
    return block(order, 3, struct.pack(order + "I", orig) + data)


def isb(order="<", iface=0, ts=0, ifdrop=None, osdrop=None) -> bytes:
    opts = b""
    if ifdrop is not None:
        opts += opt(order, 5, struct.pack(order + "Q", ifdrop))
    if osdrop is not None:
        opts += opt(order, 7, struct.pack(order + "Q", osdrop))
    if opts:
        opts += end_opts(order)
    return block(order, 5, struct.pack(order + "III", iface, ts >> 32, ts & 0xFFFFFFFF) + opts)
