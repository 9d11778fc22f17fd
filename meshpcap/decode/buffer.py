"""A small byte cursor for the protocol parsers (after aioquic's buffer.py).

Every parser in ``meshpcap.decode`` is a pure function of bytes.  Running off the end
of the data raises :class:`NeedMore`; content that can never be valid raises
:class:`DecodeError`.  ``NeedMore`` subclasses ``DecodeError`` so a caller that does
not reassemble can treat both alike, while one that does (TLS over TCP, QUIC CRYPTO
frames) catches ``NeedMore`` first and waits for more bytes.
"""

from __future__ import annotations

import struct
from typing import NoReturn


class DecodeError(ValueError):
    """The bytes are not a valid message of the protocol being parsed."""


class NeedMore(DecodeError):
    """The bytes are a valid prefix, but the message continues beyond them."""


_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Buffer:
    """Read-only cursor over ``data``; every short read raises :class:`NeedMore`."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = bytes(data) if not isinstance(data, bytes) else data
        self.pos = pos
        self.end = len(self.data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def eof(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int) -> None:
        if n < 0:
            raise DecodeError("negative length")
        if self.pos + n > self.end:
            raise NeedMore(f"need {n} bytes at offset {self.pos}, have {self.end - self.pos}")

    def pull_bytes(self, n: int) -> bytes:
        self._need(n)
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def pull_u8(self) -> int:
        self._need(1)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def pull_u16(self) -> int:
        self._need(2)
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return v

    def pull_u24(self) -> int:
        self._need(3)
        d = self.data
        p = self.pos
        self.pos += 3
        return (d[p] << 16) | (d[p + 1] << 8) | d[p + 2]

    def pull_u32(self) -> int:
        self._need(4)
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return v

    def pull_u64(self) -> int:
        self._need(8)
        (v,) = _U64.unpack_from(self.data, self.pos)
        self.pos += 8
        return v

    def pull_varint(self) -> int:
        """QUIC variable-length integer (RFC 9000 section 16)."""
        first = self.pull_u8()
        length = 1 << (first >> 6)
        v = first & 0x3F
        for _ in range(length - 1):
            v = (v << 8) | self.pull_u8()
        return v

    def pull_vector(self, length_size: int) -> bytes:
        """A length-prefixed opaque vector (TLS presentation language, RFC 8446 section 3.4)."""
        if length_size == 1:
            n = self.pull_u8()
        elif length_size == 2:
            n = self.pull_u16()
        elif length_size == 3:
            n = self.pull_u24()
        else:
            raise ValueError("length_size must be 1, 2 or 3")
        return self.pull_bytes(n)

    def sub(self, n: int) -> "Buffer":
        """A cursor over the next ``n`` bytes; this cursor skips past them."""
        self._need(n)
        b = Buffer(self.data, self.pos, self.pos + n)
        self.pos += n
        return b


def raise_short(data: bytes, pos: int, end: int, *sizes: int) -> NoReturn:
    """Raise what reading fields of ``sizes`` bytes one after another from ``pos`` raises.

    For parsers that check several fields with one comparison instead of one :class:`Buffer`
    read each: when the comparison fails, this gives exactly the error those reads would have
    given.  The caller must have found that the fields do not all fit before ``end``.
    """
    buf = Buffer(data, pos, end)
    for n in sizes:
        buf.pull_bytes(n)
    raise AssertionError(f"fields of {sizes} bytes at offset {pos} fit before {end}")
