"""Classic libpcap files (draft-ietf-opsawg-pcap): header check and a record-header walk per chunk."""

from __future__ import annotations

import mmap
import struct
from array import array
from typing import Any, Callable, Iterator

import numpy as np

from meshpcap.capture import accel
from meshpcap.capture.linktypes import linktype_name
from meshpcap.capture.parallel import parallel_batches, parallel_ok
from meshpcap.capture.source import Batch, CaptureInfo, MappedSource, Source, mapped_source

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

    def batches(self, work: Callable[[Batch], Any] | None = None,
                idle: Callable[[], bool] | None = None, begin: bool = False) -> Iterator[Any]:
        """The batches in file order; with ``work``, (batch, work(batch)) pairs instead.

        A large plain file is walked (and ``work`` done) in a forked child; see parallel.py (which
        calls ``idle`` while that child has not sent the next batch yet).  With ``begin``, one None
        comes first, as soon as the walk has begun (see Capture.start)."""
        if parallel_ok(self):
            yield from parallel_batches(self, work, idle, begin)
            return
        if begin:
            yield None
        mapped = mapped_source(self.source)
        if mapped is not None:  # chunks on page boundaries, so that each can be mapped
            items = self._walk(mapped, b"", 0, skip=FILE_HEADER_LEN, align=mmap.ALLOCATIONGRANULARITY)
        else:
            items = self._walk(self.source, self.rest, FILE_HEADER_LEN)
        for item in items:
            if item[0] == "batch":
                batch = self._batch(item[2], item[3], item[4])
                yield batch if work is None else (batch, work(batch))
            else:
                self._end(item)

    def _walk(self, source: Source, tail: bytes, base: int, skip: int = 0, align: int = 0) -> Iterator[tuple]:
        """Walk the record headers from ``tail[skip]``; ``base`` is the file offset of ``tail[0]``.

        Yields ("batch", base, data, offsets, fields) per chunk (offsets index ``data``, whose
        first byte is at file offset ``base``; fields are the record headers' four words when the
        compiled walk read them, else None), then one ("end", ...) item that :meth:`_end` turns
        into the capture's truncation note, if any.  With ``align``, every chunk after the
        first starts on a multiple of it (a few bytes already walked come first)."""
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
        mode = {"no": 0, "yes": 1, "maybe": 2}[self.swapped]
        big = int(self.order == ">")
        want = self.batch_bytes
        while True:
            data = source.read_after(tail, want)
            n = len(data)
            pos = skip
            fast = accel.WALK
            fields = None
            if fast is not None:  # the same loop, compiled (_walk.c), which also reads the record headers
                room = max(n - pos, 0) // hl + 1
                out = np.empty(room, dtype=np.int64)
                words = np.empty((room, 4), dtype=np.uint32)
                k, pos = fast.pcap_records(data, pos, hl, mode, big, limit, out, words)
                offs, fields = out[:k], words[:k]
            else:
                offs = array("q")
                app = offs.append
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
            if len(offs):
                yield ("batch", base, data, offs, fields)
            rem = n - pos
            incl = caplen_at(data, pos)[0] if rem >= len_end else -1
            if incl > limit:
                yield ("end", "damaged", base + pos, rem, incl, None)
                return
            keep = max(pos - (base + pos) % align, 0) if align else pos
            tail = data[keep:] if keep else data
            skip = pos - keep
            base += keep
            if source.eof:
                yield ("end", "eof", base + skip, rem, incl, source.error)
                return
            need = hl + incl - rem if incl >= 0 else hl - rem
            want = max(self.batch_bytes, need)

    def _end(self, item: tuple) -> None:
        """Record how the walk ended (see :meth:`_walk`) in the capture info."""
        _, how, offset, rem, incl, error = item
        info, hl = self.info, self.rec_len
        if how == "damaged":
            info._truncate(
                info.records,
                offset,
                f"record {info.records} claims {incl} captured bytes, more than the snapshot length "
                f"allows ({self.snaplen}): the file is damaged from here on",
            )
        elif rem:
            if rem < hl:
                why = f"file ends inside the header of record {info.records} ({rem} of {hl} bytes present)"
            else:
                why = f"file ends inside record {info.records} ({rem - hl} of {incl} captured bytes present)"
            if error:
                why += f"; {error}"
            info._truncate(info.records, offset, why)
        elif error:
            info._truncate(info.records, offset, error)

    # ------------------------------------------------------------------ two processes (parallel.py)
    def child_items(self, source: MappedSource) -> Iterator[tuple]:
        # From the file's first byte, so that every chunk begins on a page boundary.
        for item in self._walk(source, b"", 0, skip=FILE_HEADER_LEN, align=mmap.ALLOCATIONGRANULARITY):
            if item[0] == "batch":
                _, base, data, offs, fields = item
                yield "batch", base, len(data), self._batch(data, offs, fields), None
            else:
                yield "end", item

    def parent_state(self, state: None) -> None:
        """Nothing to carry: a pcap walk has no state beyond the file offset."""

    def parent_end(self, item: tuple) -> None:
        self._end(item)

    def resume(self, offset: int | None, state: None) -> Iterator[Batch]:
        offset = FILE_HEADER_LEN if offset is None else offset
        self.source.raw.seek(offset)
        self.source.eof = False
        for item in self._walk(self.source, b"", offset):
            if item[0] == "batch":
                yield self._batch(item[2], item[3], item[4])
            else:
                self._end(item)

    def _batch(self, data: bytes, offs: array | np.ndarray, fields: np.ndarray | None = None) -> Batch:
        o = offs if isinstance(offs, np.ndarray) else np.frombuffer(offs, dtype=np.int64)
        k = len(o)
        if fields is None:
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
