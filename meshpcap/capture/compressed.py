"""Decompressing readers for gzip (RFC 1952) and zstd (RFC 8878) captures.

Both hand out every byte decoded before damage and then end, with ``error`` saying what broke
and ``error_at`` at which compressed byte; both stop at the decompression limits of
:mod:`meshpcap.settings` (a bomb ends in a truncated report, not an exhausted machine), and
both bound their memory: the zstd reader feeds its decoder whole blocks, a few at a time, so
that one call never yields more than about :data:`ZSTD_OUT_BOUND` bytes, and refuses windows
above :data:`ZSTD_MAX_WINDOW`.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

from meshpcap import settings

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 section 2.3.1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 section 3.1.1
ZSTD_SKIPPABLE = 0x184D2A50  # RFC 8878 section 3.1.2: 0x184D2A50-0x184D2A5F
ZSTD_BLOCK_MAX = 128 << 10  # RFC 8878 section 3.1.1.2.4: Block_Maximum_Size
ZSTD_OUT_BOUND = 1 << 20  # at most this much output per decoder call (plus one block)
ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT): 128 MiB


class _Stream:
    """Common part: counters, the decompression limits, and the error that ends the stream."""

    CHUNK = 1 << 16
    kind = ""

    def __init__(self, raw: BinaryIO) -> None:
        s = settings.get()
        self.raw = raw
        self.consumed = 0  # compressed bytes read from raw
        self.produced = 0  # decompressed bytes handed out
        self.max_out, self.max_ratio = s.max_decompressed, s.max_ratio
        self.error: str | None = None
        self.error_at: int | None = None
        self.done = False

    def _raw(self, n: int) -> bytes:
        b = self.raw.read(n)
        if b:
            self.consumed += len(b)
        return b or b""

    def _end(self, why: str | None = None, at: int | None = None) -> None:
        self.done = True
        if why is not None and self.error is None:
            self.error, self.error_at = why, at

    def _limit(self, part: bytes, used: int) -> bytes:
        """``part`` as far as the limits allow; past them the stream ends with the reason.
        ``used``: the compressed bytes decoded so far (not those merely read ahead)."""
        total = self.produced + len(part)
        if self.max_out and total > self.max_out:
            part = part[: max(self.max_out - self.produced, 0)]
            self._end(f"decompression stopped after {self.max_out} bytes, the limit "
                      "(MESHPCAP_MAX_DECOMPRESSED)", self.consumed)
        elif self.max_ratio and total > settings.RATIO_FLOOR and total > self.max_ratio * max(used, 1):
            self._end(f"decompression stopped after {total} bytes from {used} compressed bytes: more than "
                      f"{self.max_ratio} times its size, which no capture compresses to (a decompression bomb?); "
                      "the limit is MESHPCAP_MAX_RATIO", self.consumed)
        self.produced += len(part)
        return part

    def close(self) -> None:
        pass


class GunzipStream(_Stream):
    """gzip members one after another (RFC 1952 section 2.2); zero padding after a member is
    tolerated (gzip(1) does too); anything else after a member ends the stream with a note."""

    kind = "gzip"

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(raw)
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""
        self.member_start = 0

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        have = 0
        while have < n and not self.done:
            if self.inflater.eof and not self._next_member():
                break
            if not self.pending:
                self.pending = self._raw(self.CHUNK)
                if not self.pending:
                    self._end(f"the gzip stream is cut: it ends at compressed byte {self.consumed}, inside the "
                              f"member that starts at byte {self.member_start}", self.consumed)
                    break
            saved = self.inflater.copy()
            try:
                part = self.inflater.decompress(self.pending, min(n - have, 1 << 20))
            except zlib.error as exc:
                part, at = self._salvage(saved)
                self._end(f"the gzip stream is damaged at or before compressed byte {at} ({exc})", at)
                if part:
                    out.append(self._limit(part, at))
                break
            self.pending = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            if part:
                part = self._limit(part, self.consumed - len(self.pending))
                out.append(part)
                have += len(part)
        return b"".join(out)

    def _salvage(self, inflater: zlib._Decompress) -> tuple[bytes, int]:
        """The output a failed call would have given before its error, from a copy of the
        decompressor made before the call, fed in small pieces (and where the error came)."""
        data, out, step = self.pending, [], 64
        at = self.consumed - len(data)
        for i in range(0, len(data), step):
            before = inflater.copy()
            try:
                out.append(inflater.decompress(data[i : i + step]))
            except zlib.error:  # the same piece byte by byte, from before it
                for j in range(i, min(i + step, len(data))):
                    try:
                        out.append(before.decompress(data[j : j + 1]))
                    except zlib.error:
                        break
                    at = self.consumed - len(data) + j + 1
                break
            at = self.consumed - len(data) + i + step
        return b"".join(out), min(at, self.consumed)

    def _next_member(self) -> bool:
        """After a member: start the next one (True), or end the stream (False)."""
        rest = self.inflater.unused_data + self.pending
        at = self.consumed - len(rest)  # compressed offset just past the member
        while True:
            stripped = rest.lstrip(b"\0")
            at += len(rest) - len(stripped)
            rest = stripped
            if len(rest) >= 2:
                break
            more = self._raw(self.CHUNK)
            if not more:
                if rest:
                    self._end(f"the gzip stream ends at compressed byte {at}; the byte after it is not a gzip "
                              "member (ignored)", at)
                else:
                    self._end()
                return False
            rest += more
        if not rest.startswith(GZIP_MAGIC):
            self._end(f"the gzip stream ends at compressed byte {at}; what follows is not a gzip member "
                      "(ignored)", at)
            return False
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = rest
        self.member_start = at
        return True


class UnzstdStream(_Stream):
    """zstd frames one after another (skippable frames skipped, zero padding after the last frame
    tolerated); block headers are read here so that each decoder call is bounded."""

    kind = "zstd"

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        super().__init__(raw)
        self._zstd = zstandard
        self.dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self.buf = b""
        self.pos = 0  # into buf
        self.mark = 0  # buf[mark:] is kept when more is read (the blocks not yet fed)
        self.base = 0  # compressed offset of buf[0]
        self.dobj = None
        self.state = "frame"
        self.block_max = ZSTD_BLOCK_MAX
        self.checksum = False
        self.frame_start = 0
        self.out = b""

    # -- input -----------------------------------------------------------------------------
    def _have(self, k: int) -> bool:
        """At least ``k`` unread input bytes in buf (reading more as needed)?"""
        while len(self.buf) - self.pos < k:
            more = self._raw(max(self.CHUNK, k))
            if not more:
                return False
            drop = min(self.mark, self.pos)
            self.base += drop
            self.buf = self.buf[drop:] + more
            self.pos -= drop
            self.mark -= drop
        return True

    def _take(self, k: int) -> bytes:
        b = self.buf[self.pos : self.pos + k]
        self.pos += k
        return b

    def _at(self) -> int:
        return self.base + self.pos

    # -- output ----------------------------------------------------------------------------
    def read(self, n: int) -> bytes:
        out = [self.out] if self.out else []
        have = len(self.out)
        self.out = b""
        while have < n and not self.done:
            part = self._step()
            if part:
                part = self._limit(part, self._at())
                out.append(part)
                have += len(part)
        joined = b"".join(out)
        if len(joined) > n:
            joined, self.out = joined[:n], joined[n:]
        return joined

    def _cut(self, what: str) -> None:
        self._end(f"the zstd stream is cut: it ends at compressed byte {self._at() + len(self.buf) - self.pos} "
                  f"inside {what} of the frame that starts at byte {self.frame_start}", self._at())

    def _feed(self, data: bytes) -> bytes:
        try:
            return self.dobj.decompress(data)
        except self._zstd.ZstdError as exc:
            detail = str(exc).removeprefix("zstd decompress error: ")
            self._end(f"the zstd stream is damaged in the frame that starts at compressed byte {self.frame_start}, "
                      f"before byte {self._at()} ({detail})", self._at())
            return b""

    def _step(self) -> bytes:
        self.mark = self.pos
        if self.state == "frame":
            return self._frame()
        if self.state == "blocks":
            return self._blocks()
        if not self._have(4):  # the frame's content checksum
            self._cut("the content checksum")
            return b""
        part = self._feed(self._take(4))
        self.state = "frame"
        return part

    def _frame(self) -> bytes:
        """At a frame boundary: start the next frame, skip a skippable one, or end."""
        if not self._have(1):
            self._end()
            return b""
        if self.buf[self.pos] == 0:  # zero padding after the last frame
            start = self._at()
            while self._have(1):
                rest = self.buf[self.pos :]
                stripped = rest.lstrip(b"\0")
                if stripped:
                    self.pos += len(rest) - len(stripped)
                    self._end(f"the zstd stream ends at compressed byte {start}; after zero padding, byte "
                              f"{self._at()} is not a zstd frame (ignored)", self._at())
                    return b""
                self.pos = self.mark = len(self.buf)
            self._end()
            return b""
        if not self._have(4):
            self._end(f"the zstd stream ends at compressed byte {self._at()}; the bytes after it are not a zstd frame "
                      "(ignored)", self._at())
            return b""
        magic = int.from_bytes(self.buf[self.pos : self.pos + 4], "little")
        self.frame_start = self._at()
        if magic & 0xFFFFFFF0 == ZSTD_SKIPPABLE:
            if not self._have(8):
                self._cut("the header")
                return b""
            size = int.from_bytes(self.buf[self.pos + 4 : self.pos + 8], "little")
            self.pos += 8
            while size:
                if not self._have(1):
                    self._cut("a skippable frame")
                    return b""
                k = min(size, len(self.buf) - self.pos)
                self.pos += k
                self.mark = self.pos
                size -= k
            return b""
        if self.buf[self.pos : self.pos + 4] != ZSTD_MAGIC:
            self._end(f"the zstd stream ends at compressed byte {self._at()}; what follows is not a zstd frame "
                      "(ignored)", self._at())
            return b""
        if not self._have(5):
            self._cut("the header")
            return b""
        fhd = self.buf[self.pos + 4]
        single = fhd >> 5 & 1
        fcs_size = (0, 2, 4, 8)[fhd >> 6] or (1 if single else 0)
        did_size = (0, 1, 2, 4)[fhd & 3]
        hlen = 5 + (0 if single else 1) + did_size + fcs_size
        if not self._have(hlen):
            self._cut("the header")
            return b""
        header = self._take(hlen)
        if single:
            window = int.from_bytes(header[5 + did_size : 5 + did_size + fcs_size], "little")
            if fcs_size == 2:
                window += 256
        else:
            wd = header[5]
            base = 1 << (10 + (wd >> 3))
            window = base + (base >> 3) * (wd & 7)
        self.block_max = max(min(ZSTD_BLOCK_MAX, window), 1)
        self.checksum = bool(fhd >> 2 & 1)
        self.dobj = self.dctx.decompressobj()
        self.state = "blocks"
        return self._feed(header)

    def _blocks(self) -> bytes:
        """Feed whole blocks, as many as keep the output of one call within ZSTD_OUT_BOUND."""
        self.mark, bound, last = self.pos, 0, False
        while bound < ZSTD_OUT_BOUND and not last:
            if not self._have(3) or not self._complete_block():
                if self.pos > self.mark:
                    break
                self._cut("a block")
                return b""
            hdr = int.from_bytes(self.buf[self.pos : self.pos + 3], "little")
            last, btype, bsize = bool(hdr & 1), hdr >> 1 & 3, hdr >> 3
            self.pos += 3 + (1 if btype == 1 else bsize)
            bound += bsize if btype < 2 else self.block_max
            if btype == 2 and bound > ZSTD_OUT_BOUND // 8:
                break  # one compressed block per call: damage loses no more than it
        data = self.buf[self.mark : self.pos]
        self.mark = self.pos
        if last:
            self.state = "checksum" if self.checksum else "frame"
        return self._feed(data)

    def _complete_block(self) -> bool:
        """Is the block at pos in buf entirely (reading more as needed)?  Always True for a
        block whose type is reserved: the decoder then reports the damage."""
        hdr = int.from_bytes(self.buf[self.pos : self.pos + 3], "little")
        btype, bsize = hdr >> 1 & 3, hdr >> 3
        if btype == 3:
            return True
        return self._have(3 + (1 if btype == 1 else bsize))
