"""Classic libpcap files (draft-ietf-opsawg-pcap): header check and a record-header walk per chunk."""

from __future__ import annotations

import struct
from array import array
from typing import Iterator

import numpy as np

from meshpcap.capture.linktypes import linktype_name
from meshpcap.capture.reader import Batch, CaptureInfo, Source

# draft-ietf-opsawg-pcap section 4: magic -> (byte order, ns per fraction unit, record header length).
# 0xA1B2CD34 is Alexey Kuznetzov's "modified" pcap whose record headers carry 8 more bytes.
MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24),
}

FILE_HEADER_LEN = 24
MAX_CAPLEN = 256 << 20  # a record claiming more than this is damage, not a packet
NORMAL_MAX_SNAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN


class PcapWalker:
    """Validates the file header on construction; :meth:`batches` walks the records."""

    def __init__(self, source: Source, info: CaptureInfo, head: bytes, batch_bytes: int) -> None:
        if len(head) < FILE_HEADER_LEN:
            raise ValueError(f"file ends inside its pcap file header ({len(head)} of {FILE_HEADER_LEN} bytes)")
        order, self.frac_ns, self.rec_len = MAGICS[head[:4]]
        major, minor, _zone, _sigfigs, snaplen, linkfield = struct.unpack_from(order + "HHiIII", head, 4)
        if major != 2:
            raise ValueError(f"unsupported pcap version {major}.{minor} (only 2.x is defined)")
        # draft-ietf-opsawg-pcap section 4: the upper bits of LinkType carry FCS information;
        # the link type proper is the low 16 bits.
        self.linktype = linkfield & 0xFFFF
        # libpcap sf-pcap.c: before version 2.3 the record header held orig_len before incl_len;
        # 2.3 files may hold either order (the smaller one is the captured length).
        self.swapped = "yes" if minor < 3 else "maybe" if minor == 3 else "no"
        self.version = (major, minor)
        self.snaplen = snaplen
        self.limit = min(MAX_CAPLEN, max(snaplen, NORMAL_MAX_SNAPLEN))
        self.order = order
        self.source = source
        self.info = info
        self.rest = head[FILE_HEADER_LEN:]
        self.batch_bytes = batch_bytes
        info.format = "pcap"
        info.byte_order = "little" if order == "<" else "big"
        info.snaplen = snaplen
        info.sections = 1
        info.link_types = [self.linktype]
        info.interfaces = [
            {
                "index": 0,
                "linktype": self.linktype,
                "linktype_name": linktype_name(self.linktype),
                "name": None,
                "snaplen": snaplen,
                "tsresol_ns": self.frac_ns,
                "fcs_bits": linkfield >> 16,
            }
        ]

    def batches(self) -> Iterator[Batch]:
        info, source = self.info, self.source
        hl, limit = self.rec_len, self.limit
        caplen_at = struct.Struct(self.order + "8xI").unpack_from  # incl_len, 8 bytes into the record
        len_end = 12
        if self.swapped == "yes":
            caplen_at = struct.Struct(self.order + "12xI").unpack_from
            len_end = 16
        elif self.swapped == "maybe":
            both = struct.Struct(self.order + "8xII").unpack_from

            def caplen_at(data: bytes, pos: int) -> tuple[int]:
                return (min(both(data, pos)),)

            len_end = 16
        struct_error = struct.error
        tail = self.rest
        base = FILE_HEADER_LEN  # decompressed file offset of tail[0]
        want = self.batch_bytes
        while True:
            data = source.read_after(tail, want)
            n = len(data)
            offs = array("q")
            app = offs.append
            pos = 0
            # The hot loop: one unpack per record, nothing allocated but the offset.
            try:
                while True:
                    (incl,) = caplen_at(data, pos)
                    end = pos + hl + incl
                    if end > n or incl > limit:
                        break
                    app(pos)
                    pos = end
            except struct_error:
                pass
            if offs:
                yield self._batch(data, offs)
            rem = n - pos
            incl = caplen_at(data, pos)[0] if rem >= len_end else -1
            if incl > limit:
                info._truncate(
                    info.records,
                    base + pos,
                    f"record {info.records} claims {incl} captured bytes, more than the snapshot length "
                    f"allows ({self.snaplen}): the file is damaged from here on",
                )
                return
            tail = data[pos:] if pos else data
            base += pos
            if source.eof:
                if rem:
                    if rem < hl:
                        why = f"file ends inside the header of record {info.records} ({rem} of {hl} bytes present)"
                    else:
                        why = f"file ends inside record {info.records} ({rem - hl} of {incl} captured bytes present)"
                    if source.error:
                        why += f"; {source.error}"
                    info._truncate(info.records, base, why)
                elif source.error:
                    info._truncate(info.records, base, source.error)
                return
            need = hl + incl - rem if incl >= 0 else hl - rem
            want = max(self.batch_bytes, need)

    def _batch(self, data: bytes, offs: array) -> Batch:
        o = np.frombuffer(offs, dtype=np.int64)
        k = len(o)
        fields = _gather_u32(data, o, 4, self.order)
        caplen = fields[:, 2].astype(np.int64)
        origlen = fields[:, 3].astype(np.int64)
        if self.swapped == "yes":
            caplen, origlen = origlen, caplen
        elif self.swapped == "maybe":
            caplen, origlen = np.minimum(caplen, origlen), np.maximum(caplen, origlen)
        ts_ns = fields[:, 0].astype(np.int64) * 1_000_000_000 + fields[:, 1].astype(np.int64) * self.frac_ns
        info = self.info
        batch = Batch(
            data=data,
            offset=o + self.rec_len,
            caplen=caplen,
            origlen=origlen,
            ts_ns=ts_ns,
            linktype=np.full(k, self.linktype, dtype=np.int32),
            interface=np.zeros(k, dtype=np.int32),
            first_record=info.records,
        )
        info._account(caplen, origlen, ts_ns)
        return batch


def _gather_u32(data: bytes, offs: np.ndarray, nfields: int, order: str) -> np.ndarray:
    """``nfields`` consecutive 32-bit words at each offset, as a (len(offs), nfields) uint32 array.

    A view with a one-byte stride (element i = the word at byte i) lets one fancy index
    read words at any alignment without copying the chunk."""
    out = np.empty((len(offs), nfields), dtype=np.uint32)
    if len(offs):
        words = np.ndarray(shape=(len(data) - 3,), dtype=np.dtype(order + "u4"), buffer=data, strides=(1,))
        for f in range(nfields):
            out[:, f] = words[offs + 4 * f]
    return out
