"""pcapng files (draft-ietf-opsawg-pcapng): sections, interfaces and packet blocks walked per chunk."""

from __future__ import annotations

import mmap
import struct
from array import array
from typing import Any, Callable, Iterator

import numpy as np

from meshpcap.capture import accel
from meshpcap.capture.linktypes import linktype_name
from meshpcap.capture.parallel import parallel_batches, parallel_ok
from meshpcap.capture.pcap import MAX_CAPLEN
from meshpcap.capture.source import INT64_MAX, INT64_MIN, Batch, CaptureInfo, MappedSource, Source, mapped_source

SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
# draft-ietf-opsawg-pcapng section 11.1 (block type codes)
SHB = 0x0A0D0D0A
IDB = 0x00000001
OPB = 0x00000002  # obsolete Packet Block, appendix A
SPB = 0x00000003
NRB = 0x00000004
ISB = 0x00000005
EPB = 0x00000006
KNOWN_SKIPPED = {NRB, 0x00000009, 0x0000000A, 0x00000BAD, 0x40000BAD}  # NRB, journal, DSB, custom x2
BYTE_ORDER_MAGIC = 0x1A2B3C4D  # section 4.1
MAX_BLOCK = MAX_CAPLEN + (1 << 20)
PACKET_BLOCKS = {EPB: "enhanced packet", SPB: "simple packet", OPB: "packet"}
BLOCK_NAMES = {SHB: "section header", IDB: "interface description", ISB: "interface statistics", NRB: "name resolution"}

# Option codes: section 4.2 (IDB), 4.6 (ISB)
IF_NAME, IF_TSRESOL, IF_TSOFFSET = 2, 9, 14
ISB_IFDROP, ISB_OSDROP = 5, 7

_S = {o: {k: struct.Struct(o + f) for k, f in (("hdr", "II"), ("epb", "IIIII"), ("u32", "I"), ("opb", "HHIIII"),
                                               ("idb", "HHI"), ("opt", "HH"), ("ver", "HH"))} for o in "<>"}


class _Damaged(Exception):
    """The walk cannot continue past this block; the message is the reason."""


def _options(data: bytes, pos: int, end: int, order: str) -> dict[int, bytes]:
    """First value of each option in data[pos:end] (section 3.5); malformed tails are ignored."""
    opt = _S[order]["opt"].unpack_from
    found: dict[int, bytes] = {}
    while pos + 4 <= end:
        code, length = opt(data, pos)
        if code == 0:  # opt_endofopt
            break
        if pos + 4 + length > end:
            break
        found.setdefault(code, data[pos + 4 : pos + 4 + length])
        pos += 4 + ((length + 3) & ~3)
    return found


def ticks_to_ns(ticks: np.ndarray, tsresol: int, offset_s: int) -> np.ndarray:
    """64-bit timestamp units -> int64 ns since the epoch, exactly (section 4.2, if_tsresol / if_tsoffset).

    tsresol: top bit clear -> 10^-n s per unit, set -> 2^-n. Results outside int64 saturate."""
    n = tsresol & 0x7F
    off_ns = offset_s * 1_000_000_000
    ticks = ticks.astype(np.uint64, copy=False)
    if len(ticks) == 0:
        return np.zeros(0, dtype=np.int64)
    top = int(ticks.max())
    if not tsresol & 0x80:
        if n <= 9:
            mult = 10 ** (9 - n)
            if INT64_MIN <= off_ns and top * mult + off_ns <= INT64_MAX and top <= INT64_MAX:
                return ticks.astype(np.int64) * mult + off_ns
            num, den = mult, 1
        else:
            den = 10 ** (n - 9)
            if den < (1 << 64) and top // den + abs(off_ns) <= INT64_MAX:
                return (ticks // np.uint64(den)).astype(np.int64) + off_ns
            num = 1
    else:
        if n <= 30 and (top >> n) * 1_000_000_000 + abs(off_ns) + 1_000_000_000 <= INT64_MAX:
            hi = (ticks >> np.uint64(n)).astype(np.int64)
            lo = (ticks & np.uint64((1 << n) - 1)).astype(np.int64)
            return hi * 1_000_000_000 + ((lo * 1_000_000_000) >> n) + off_ns
        num, den = 1_000_000_000, 1 << n
    # Rare resolutions or absurd values: exact Python integers.
    out = [min(max((int(t) * num) // den + off_ns, INT64_MIN), INT64_MAX) for t in ticks.tolist()]
    return np.array(out, dtype=np.int64)


def _resol_text(tsresol: int) -> tuple[str, int | float]:
    n = tsresol & 0x7F
    if tsresol & 0x80:
        return f"2^-{n}", 1e9 / (1 << n)
    return f"10^-{n}", (10 ** (9 - n) if n <= 9 else 10.0 ** (9 - n))


def _block_len_problem(blen: int, minimum: int) -> str | None:
    if blen & 3:
        return f"its length {blen} is not a multiple of 4"
    if blen < minimum:
        return f"its length {blen} is shorter than the {minimum}-byte minimum"
    if blen > MAX_BLOCK:
        return f"its length {blen} is implausibly large"
    return None


class PcapngWalker:
    """Validates the first section header on construction; :meth:`batches` walks the blocks."""

    def __init__(self, source: Source, info: CaptureInfo, head: bytes, batch_bytes: int) -> None:
        buf = head
        if len(buf) < 12:
            buf += source.read(12 - len(buf))
        if len(buf) < 12:
            raise ValueError(f"file ends inside its pcapng section header block ({len(buf)} bytes)")
        order = _byte_order(buf, 8)
        if order is None:
            raise ValueError("not a pcapng capture (section header without a valid byte-order magic)")
        blen = _S[order]["u32"].unpack_from(buf, 4)[0]
        problem = _block_len_problem(blen, 28)
        if problem:
            raise ValueError(f"the pcapng section header block is damaged: {problem}")
        if len(buf) < blen:
            buf += source.read(blen - len(buf))
        if len(buf) < blen:
            raise ValueError(f"file ends inside its pcapng section header block ({len(buf)} of {blen} bytes)")
        major, minor = _S[order]["ver"].unpack_from(buf, 12)
        if major != 1:
            raise ValueError(f"unsupported pcapng version {major}.{minor} (only 1.x is defined)")
        if _S[order]["u32"].unpack_from(buf, blen - 4)[0] != blen:
            raise ValueError("the pcapng section header block is damaged: its trailing length differs")
        self.source = source
        self.info = info
        self.head = buf
        self.batch_bytes = batch_bytes
        info.format = "pcapng"
        info.byte_order = "little" if order == "<" else "big"
        self.order = order
        self.sec_base = 0
        self.sec_nif = 0
        self.if_ts: list[tuple[int, int]] = []
        self.if_lt: list[int] = []
        self._tables_for = -1  # len(if_lt) when _tables_cache was built
        self._sent = 0  # interfaces already reported to the reading process (parallel.py)
        self._tables_cache: tuple = ()
        self.drops: dict[int, int] = {}
        self.last_ts: int | None = None
        self.base = 0
        self.need = 0
        self.resume_at = 0

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
        for batch in self._batches():
            yield batch if work is None else (batch, work(batch))

    def _batches(self, start: int = 0, source: MappedSource | None = None) -> Iterator[Batch]:
        """Walk the blocks from file offset ``start`` (a block boundary, with the walker's state
        as it was there), from ``source`` or, if None, the file mapped or read."""
        info = self.info
        source, tail, align, skip = self._start_at(start, source)
        want = self.batch_bytes
        while True:
            data = source.read_after(tail, want)
            n = len(data)
            rec, spb_rows, pos, damaged = self._walk_chunk(data, skip, source)
            if len(rec):
                self.resume_at = self.base + pos  # where the walk goes on after this batch
                yield self._batch(data, rec, spb_rows)
            if damaged:
                info._truncate(info.records, self.base + pos, damaged)
                return
            rem = n - pos
            keep = max(pos - (self.base + pos) % align, 0) if align else pos
            tail = data[keep:] if keep else data
            skip = pos - keep
            self.base += keep
            if source.eof:
                self._end_of_source(source, data, pos, skip)
                return
            want = max(self.batch_bytes, self.need if rem >= 8 else 8 - rem)

    def _start_at(self, start: int, source: MappedSource | None) -> tuple[Source | MappedSource, bytes, int, int]:
        """Where the walk reads from, for a walk from file offset ``start``: (the source, the bytes
        already read that come first, the chunk alignment (0: none), the bytes of the first chunk
        walked already); sets ``base``, the file offset of the first chunk's first byte."""
        if source is None:
            source = mapped_source(self.source)
        if source is not None:  # mapped chunks, kept on page boundaries
            align = mmap.ALLOCATIONGRANULARITY
            self.base = source.pos = start - start % align  # file offset of data[0]
            return source, b"", align, start - self.base  # skip: bytes at the start of the chunk walked already
        if start:
            source = self.source
            source.raw.seek(start)
            source.eof = False
            self.base = start
            return source, b"", 0, 0
        self.base = 0
        return self.source, self.head, 0, 0

    def _walk_chunk(self, data: bytes, pos: int,
                    source: Source | MappedSource) -> tuple[array | np.ndarray, list[int], int, str | None]:
        """Walk the whole blocks in ``data`` from ``pos``: (the packet records, the rows of simple
        packet blocks, the position after the last whole block, why the walk stops there when the
        file is damaged, else None). ``need`` says how many bytes the next block wants.

        The per-block loop is the capture walk's hot loop: its lookups are bound to locals, and
        plain EPBs are taken inline (runs of them by the compiled walker when it is built)."""
        n = len(data)
        rec = array("q")
        ext = rec.extend
        spb_rows: list[int] = []
        damaged = None
        self.need = 0
        order, sec_base, nif = self.order, self.sec_base, self.sec_nif
        hdr, epb, u32 = _S[order]["hdr"].unpack_from, _S[order]["epb"].unpack_from, _S[order]["u32"].unpack_from
        fast = accel.WALK
        out = np.empty(6 * (n // 32 + 1), dtype=np.int64) if fast is not None else None
        try:
            while n - pos >= 8:
                if fast is not None:  # a run of plain EPBs, compiled (_walk.c); the rest comes here
                    k, pos = fast.pcapng_epbs(data, pos, order == ">", nif, sec_base, MAX_BLOCK, out)
                    if k:
                        if n - pos < 8 and not rec:  # the whole chunk in one run (the common case): its rows as
                            return out[: 6 * k], spb_rows, pos, damaged  # they are, not copied twice into rec
                        rec.frombytes(out[: 6 * k].tobytes())
                        if n - pos < 8:
                            break
                btype, blen = hdr(data, pos)
                if btype == EPB:
                    end = pos + blen
                    if not (blen & 3 or blen < 32 or blen > MAX_BLOCK) and end <= n:
                        iface, tsh, tsl, cap, orig = epb(data, pos + 8)
                        if cap <= blen - 32 and iface < nif and u32(data, end - 4)[0] == blen:
                            ext((pos + 28, sec_base + iface, tsh, tsl, cap, orig))
                            pos = end
                            continue
                    end = self._odd_epb(data, pos, n, source.eof, blen, rec)
                    if end < 0:
                        break
                    pos = end
                    continue
                end = self._block(data, pos, n, btype, blen, rec, spb_rows)
                if end < 0:
                    break
                pos = end
                order, sec_base, nif = self.order, self.sec_base, self.sec_nif
                hdr, epb = _S[order]["hdr"].unpack_from, _S[order]["epb"].unpack_from
                u32 = _S[order]["u32"].unpack_from
        except _Damaged as exc:
            damaged = str(exc)
        return rec, spb_rows, pos, damaged

    def _end_of_source(self, source: Source | MappedSource, data: bytes, pos: int, skip: int) -> None:
        """The source is used up at ``pos`` in ``data``: note a cut (bytes left that are not a whole
        block) or a read error as where the capture was truncated."""
        info = self.info
        if len(data) != pos:  # bytes left that are not a whole block
            why = self._cut_reason(data[pos:])
            if source.error:
                why += f"; {source.error}"
            info._truncate(info.records, self.base + skip, why)
        elif source.error:
            info._truncate(info.records, self.base + skip, source.error)

    # ------------------------------------------------------------------ two processes (parallel.py)
    _INFO_STATE = ("link_types", "sections", "snaplen", "unknown_blocks", "dropped_by_capture", "damaged_blocks")

    def _state(self) -> dict[str, Any]:
        """What the walk has learnt since the last report (interfaces are only ever added: the new
        ones; with 65,536 interfaces, all of them with every batch cost more than the walk) and
        where it goes on."""
        info, sent = self.info, self._sent
        self._sent = len(self.if_lt)
        return {"resume_at": self.resume_at, "order": self.order, "sec_base": self.sec_base, "sec_nif": self.sec_nif,
                "if_from": sent, "if_ts": self.if_ts[sent:], "if_lt": self.if_lt[sent:],
                "interfaces": info.interfaces[sent:], "drops": dict(self.drops), "last_ts": self.last_ts,
                "info": {k: getattr(info, k) for k in self._INFO_STATE}}

    def child_items(self, source: MappedSource) -> Iterator[tuple]:
        for batch in self._batches(0, source):
            yield "batch", self.base, len(batch.data), batch, self._state()
        yield "end", (self._state(), self.info.truncated)

    def parent_state(self, state: dict[str, Any]) -> None:
        for k in ("resume_at", "order", "sec_base", "sec_nif", "drops", "last_ts"):
            setattr(self, k, state[k])
        k = state["if_from"]
        for have, new in ((self.if_ts, state["if_ts"]), (self.if_lt, state["if_lt"]),
                          (self.info.interfaces, state["interfaces"])):
            del have[k:]
            have.extend(new)
        for key, v in state["info"].items():
            setattr(self.info, key, v)

    def parent_end(self, end: tuple) -> None:
        state, truncated = end
        self.parent_state(state)
        self.info.truncated = truncated

    def resume(self, offset: int | None, state: dict[str, Any] | None) -> Iterator[Batch]:
        """The batches after the last one the child reported (``state`` came with it)."""
        yield from self._batches(state["resume_at"] if state is not None else 0)

    def _cut_reason(self, tail: bytes) -> str:
        rem = len(tail)
        if rem < 8:
            return f"file ends inside a block header ({rem} of 8 bytes present)"
        btype = struct.unpack_from("<I", tail)[0]
        order = self.order
        if btype == SHB:
            order = (_byte_order(tail, 8) if rem >= 12 else None) or order
        else:
            btype = _S[order]["u32"].unpack_from(tail)[0]
        blen = _S[order]["u32"].unpack_from(tail, 4)[0]
        if btype in PACKET_BLOCKS:
            return f"file ends inside record {self.info.records} ({rem} of {blen} block bytes present)"
        name = BLOCK_NAMES.get(btype, f"type 0x{btype:08x}")
        return f"file ends inside a {name} block ({rem} of {blen} bytes present)"

    def _odd_epb(self, data: bytes, pos: int, n: int, eof: bool, blen: int, rec: array) -> int:
        """An EPB the plain path did not take: -1 to wait for more data (``need`` set) or for the
        end of the walk (cut inside it), else the position after it, read past when damaged but
        its end is clear (counted; its packet kept when sound); :class:`_Damaged` otherwise."""
        bad_len = blen & 3 or blen < 32 or blen > MAX_BLOCK
        short = not bad_len and pos + blen > n
        if not eof and (short or n - pos < 32):
            self.need = pos + blen - n if short else 32 - (n - pos)
            return -1
        why = None
        if bad_len:
            why = self._bad_len(pos, EPB, blen, 32)
        elif not short:
            iface, _tsh, _tsl, cap, _orig = _S[self.order]["epb"].unpack_from(data, pos + 8)
            why = self._bad_packet(data, pos, blen, iface, cap, self.sec_nif, len(rec) // 6)
        end = self._recover(data, pos, n, eof, blen)
        if end == -1:  # the next block header is not in this chunk yet
            return -1
        if end is None:
            if why is None:  # cut inside the block: reported at the end of the walk
                return -1
            raise _Damaged(why)
        self.info.damaged_blocks += 1
        iface, tsh, tsl, cap, orig = _S[self.order]["epb"].unpack_from(data, pos + 8)
        if cap <= end - pos - 32 and iface < self.sec_nif:  # the packet itself is sound
            rec.extend((pos + 28, self.sec_base + iface, tsh, tsl, cap, orig))
        return end

    def _recover(self, data: bytes, pos: int, n: int, eof: bool, blen: int) -> int | None:
        """Where a damaged Enhanced Packet Block really ends, when that is unambiguous; None
        when it is not; -1 when more data is needed to tell.

        Wireshark reads an EPB whose length is not a multiple of 4 as if rounded up; beyond
        that, a block end is taken when the block's own trailing length agrees with it (or it
        is where the leading length points) and a sound block header (or the end of the file)
        follows it.  Candidates: the leading length (rounded up), and the end a block without
        options would have (from the captured length)."""
        u32 = _S[self.order]["u32"].unpack_from
        cands = {pos + ((blen + 3) & ~3)} if 32 <= blen <= MAX_BLOCK else set()
        if n - pos >= 24:
            cap = u32(data, pos + 20)[0]
            if cap <= MAX_CAPLEN:
                cands.add(pos + 32 + ((cap + 3) & ~3))
        found = []
        for end in sorted(cands):
            if end > n:
                if not eof:
                    self.need = end + 12 - n
                    return -1
                continue
            trail = u32(data, end - 4)[0]
            if trail not in (blen, end - pos) and end != pos + ((blen + 3) & ~3):
                continue
            ok = self._sound_header(data, end, n, eof)
            if ok == -1:
                return -1
            if ok:
                found.append(end)
        return found[0] if len(found) == 1 else None

    def _sound_header(self, data: bytes, pos: int, n: int, eof: bool) -> int | bool:
        """Does a well-formed block start at ``pos`` (or the file end there)?  -1: cannot tell yet."""
        if n - pos < 12:
            self.need = pos + 12 - n
            return -1 if not eof else pos == n
        order = self.order
        btype = _S[order]["u32"].unpack_from(data, pos)[0]
        if btype == SHB:
            order = _byte_order(data, pos + 8)
            if order is None:
                return False
        elif btype not in (IDB, OPB, SPB, NRB, ISB, EPB) and btype not in KNOWN_SKIPPED:
            return False
        blen = _S[order]["u32"].unpack_from(data, pos + 4)[0]
        if _block_len_problem(blen, 12):
            return False
        if pos + blen > n:
            self.need = pos + blen - n
            return -1 if not eof else False
        return _S[order]["u32"].unpack_from(data, pos + blen - 4)[0] == blen

    def _bad_len(self, pos: int, btype: int, blen: int, minimum: int) -> str:
        problem = _block_len_problem(blen, minimum) or "its length is invalid"
        name = PACKET_BLOCKS.get(btype) or BLOCK_NAMES.get(btype) or f"type 0x{btype:08x}"
        return f"{name} block at byte {self.base + pos} is damaged: {problem}; reading stops here"

    def _bad_packet(self, data: bytes, pos: int, blen: int, iface: int, cap: int, nif: int, row: int) -> str:
        record = self.info.records + row
        room = blen - 32
        if cap > room:
            return f"record {record} claims {cap} captured bytes but its block has room for {room}; reading stops here"
        if iface >= nif:
            return (f"record {record} refers to interface {iface} but its section describes {nif}; "
                    "reading stops here")
        trail = _S[self.order]["u32"].unpack_from(data, pos + blen - 4)[0]
        return (f"record {record}'s block at byte {self.base + pos} is damaged: its length is {blen} at the start "
                f"and {trail} at the end; reading stops here")

    def _block(self, data: bytes, pos: int, n: int, btype: int, blen: int, rec: array, spb_rows: list[int]) -> int:
        """Handle any block but an EPB; return the position after it, or -1 to wait for more data."""
        info = self.info
        if btype == SHB:
            if n - pos < 12:
                self.need = 12 - (n - pos)
                return -1
            order = _byte_order(data, pos + 8)
            if order is None:
                raise _Damaged(f"section header at byte {self.base + pos} has no valid byte-order magic; "
                               "reading stops here")
            blen = _S[order]["u32"].unpack_from(data, pos + 4)[0]
            if _block_len_problem(blen, 28):
                raise _Damaged(self._bad_len(pos, btype, blen, 28))
        else:
            order = self.order
            said = blen
            if blen & 3 and 12 <= blen <= MAX_BLOCK:  # as Wireshark reads it: rounded up to a multiple of 4,
                rounded = (blen + 3) & ~3  # when the trailing length agrees
                if pos + rounded > n:
                    self.need = pos + rounded - n
                    return -1
                if _S[order]["u32"].unpack_from(data, pos + rounded - 4)[0] in (blen, rounded):
                    self.info.damaged_blocks += 1
                    blen = rounded
            if _block_len_problem(blen, 12):
                raise _Damaged(self._bad_len(pos, btype, blen, 12))
        end = pos + blen
        if end > n:
            self.need = end - n
            return -1
        u32 = _S[order]["u32"].unpack_from
        trail = u32(data, end - 4)[0]
        if trail != blen and (btype == SHB or trail != said):
            name = PACKET_BLOCKS.get(btype) or BLOCK_NAMES.get(btype) or f"type 0x{btype:08x}"
            raise _Damaged(f"{name} block at byte {self.base + pos} is damaged: its length is {blen} at the start "
                           f"and {trail} at the end; reading stops here")
        if btype == SHB:
            major, minor = _S[order]["ver"].unpack_from(data, pos + 12)
            if major != 1:
                raise _Damaged(f"section {info.sections} at byte {self.base + pos} has unsupported pcapng version "
                               f"{major}.{minor}; reading stops here")
            # Section 4.1: interface numbering restarts in every section; ours stays global.
            self.order = order
            self.sec_base = len(self.if_lt)
            self.sec_nif = 0
            info.sections += 1
        elif btype == IDB:
            if blen < 20:
                raise _Damaged(self._bad_len(pos, btype, blen, 20))
            self._interface(data, pos, end, order)
        elif btype == SPB:
            if blen < 16:
                raise _Damaged(self._bad_len(pos, btype, blen, 16))
            if self.sec_nif == 0:
                raise _Damaged(f"record {info.records + len(rec) // 6} is a simple packet block in a section "
                               "without interfaces; reading stops here")
            orig = u32(data, pos + 8)[0]
            # Section 4.4: the captured length is the smaller of the original length and the block's room.
            rec.extend((pos + 12, self.sec_base, 0, 0, min(orig, blen - 16), orig))
            spb_rows.append(len(rec) // 6 - 1)
        elif btype == OPB:
            if blen < 32:
                raise _Damaged(self._bad_len(pos, btype, blen, 32))
            iface, _drops, tsh, tsl, cap, orig = _S[order]["opb"].unpack_from(data, pos + 8)
            if cap > blen - 32 or iface >= self.sec_nif:
                raise _Damaged(self._bad_packet(data, pos, blen, iface, cap, self.sec_nif, len(rec) // 6))
            rec.extend((pos + 28, self.sec_base + iface, tsh, tsl, cap, orig))
        elif btype == ISB:
            if blen < 24:
                raise _Damaged(self._bad_len(pos, btype, blen, 24))
            self._statistics(data, pos, end, order)
        elif btype not in KNOWN_SKIPPED:
            info.unknown_blocks += 1
        return end

    def _interface(self, data: bytes, pos: int, end: int, order: str) -> None:
        linktype, _reserved, snaplen = _S[order]["idb"].unpack_from(data, pos + 8)
        opts = _options(data, pos + 16, end - 4, order)
        tsresol = opts[IF_TSRESOL][0] if len(opts.get(IF_TSRESOL, b"")) >= 1 else 6
        tsoffset = 0
        if len(opts.get(IF_TSOFFSET, b"")) >= 8:
            tsoffset = int.from_bytes(opts[IF_TSOFFSET][:8], "little" if order == "<" else "big", signed=True)
        name = opts[IF_NAME].split(b"\0", 1)[0].decode("utf-8", "replace") if IF_NAME in opts else None
        resol, resol_ns = _resol_text(tsresol)
        index = len(self.if_lt)
        info = self.info
        info.interfaces.append({
            "index": index,
            "section": info.sections - 1,
            "linktype": linktype,
            "linktype_name": linktype_name(linktype),
            "name": name,
            "snaplen": snaplen,
            "tsresol": resol,
            "tsresol_ns": resol_ns,
            "tsoffset_s": tsoffset,
        })
        self.if_lt.append(linktype)
        self.if_ts.append((tsresol, tsoffset))
        self.sec_nif += 1
        if linktype not in info.link_types:
            info.link_types = sorted(info.link_types + [linktype])
        info.snaplen = snaplen if info.snaplen is None else max(info.snaplen, snaplen)

    def _statistics(self, data: bytes, pos: int, end: int, order: str) -> None:
        iface = _S[order]["u32"].unpack_from(data, pos + 8)[0]
        opts = _options(data, pos + 20, end - 4, order)
        said = [int.from_bytes(opts[c][:8], "little" if order == "<" else "big")
                for c in (ISB_IFDROP, ISB_OSDROP) if len(opts.get(c, b"")) >= 8]
        if said and iface < self.sec_nif:
            self.drops[self.sec_base + iface] = sum(said)  # the last ISB of an interface wins
            self.info.dropped_by_capture = sum(self.drops.values())

    def _tables(self) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
        """Per-interface lookups as arrays (linktype; index of its clock in the distinct
        (tsresol, tsoffset) pairs) and those pairs, rebuilt only when interfaces were added:
        with 65,536 interfaces a batch costs what it costs with one (issue 9 item 6)."""
        k = len(self.if_lt)
        if self._tables_for != k:
            kinds: dict[tuple[int, int], int] = {}
            clock_of = np.fromiter((kinds.setdefault(t, len(kinds)) for t in self.if_ts), dtype=np.int32, count=k)
            self._tables_cache = (np.asarray(self.if_lt, dtype=np.int32), clock_of, list(kinds))
            self._tables_for = k
        return self._tables_cache

    def _batch(self, data: bytes, rec: array | np.ndarray, spb_rows: list[int]) -> Batch:
        cols = np.frombuffer(rec, dtype=np.int64).reshape(-1, 6)
        k = len(cols)
        iface = cols[:, 1].astype(np.int32)
        ticks = (cols[:, 2].astype(np.uint64) << np.uint64(32)) | cols[:, 3].astype(np.uint64)
        ts_ns = np.empty(k, dtype=np.int64)
        linktypes, clock_of, clocks = self._tables()
        if len(clocks) == 1:
            ts_ns[:] = ticks_to_ns(ticks, *clocks[0])
        else:  # one pass per distinct clock (resolution, offset), not per interface
            clock = clock_of[iface]
            present = np.unique(clock, return_counts=True)[0]  # (without return_counts numpy asks numpy.ma: 6 ms)
            for g in present.tolist():
                sel = clock == g if len(present) > 1 else slice(None)
                ts_ns[sel] = ticks_to_ns(ticks[sel], *clocks[g])
        if spb_rows:
            # Simple packet blocks carry no timestamp: take the previous packet's (section 4.4);
            # before any packet with a timestamp, 0 (whatever the batch boundaries).
            has = np.ones(k, dtype=bool)
            has[spb_rows] = False
            src = np.where(has, np.arange(k), -1)
            np.maximum.accumulate(src, out=src)
            fallback = self.last_ts if self.last_ts is not None else 0
            ts_ns = np.where(src >= 0, ts_ns[np.maximum(src, 0)], fallback)
        self.last_ts = int(ts_ns[-1])
        caplen = np.ascontiguousarray(cols[:, 4])
        origlen = np.ascontiguousarray(cols[:, 5])
        info = self.info
        batch = Batch(
            data=data,
            offset=np.ascontiguousarray(cols[:, 0]),
            caplen=caplen,
            origlen=origlen,
            ts_ns=ts_ns,
            linktype=linktypes[iface],
            interface=iface,
            first_record=info.records,
        )
        info._account(caplen, origlen, ts_ns)
        return batch


def _byte_order(data: bytes, pos: int) -> str | None:
    if struct.unpack_from("<I", data, pos)[0] == BYTE_ORDER_MAGIC:
        return "<"
    if struct.unpack_from(">I", data, pos)[0] == BYTE_ORDER_MAGIC:
        return ">"
    return None
