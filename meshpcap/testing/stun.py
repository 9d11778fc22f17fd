"""STUN/TURN messages for tests and sample captures (RFC 8489, RFC 8656): any method and class with
MESSAGE-INTEGRITY and FINGERPRINT, address and error attributes, ChannelData."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import zlib

from meshpcap.decode.stun import (
    _COOKIE_BYTES,
    ERROR_CODE,
    FINGERPRINT,
    FINGERPRINT_XOR,
    MAGIC_COOKIE,
    MESSAGE_INTEGRITY,
)

__all__ = ["build_stun", "build_error_code", "build_xor_address", "build_address", "build_channel_data"]

def _message_type(method: int, cls: int) -> int:
    # RFC 8489 section 5: M11..M7 C1 M6..M4 C0 M3..M0.
    if not 0 <= method <= 0xFFF or not 0 <= cls <= 3:
        raise ValueError("STUN method must be 0..0xFFF and class 0..3")
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7)




def build_stun(
    method: int,
    cls: int,
    attrs: list[tuple[int, bytes]],
    transaction_id: bytes,
    *,
    integrity_key: bytes | None = None,
    fingerprint: bool = False,
) -> bytes:
    """Encode a STUN message (RFC 8489 section 5).

    ``attrs`` are (type, value) pairs in order; values are padded with zero bytes to a
    multiple of 4. ``transaction_id`` is 12 bytes (the magic cookie is written before it),
    or 16 bytes for an RFC 3489 style message without the cookie. With ``integrity_key``
    a MESSAGE-INTEGRITY (HMAC-SHA1, section 14.5; the key is the short-term password or the
    long-term MD5 key) is appended, then with ``fingerprint`` a FINGERPRINT (section 14.7).
    """
    if len(transaction_id) == 12:
        prefix = _COOKIE_BYTES + bytes(transaction_id)
    elif len(transaction_id) == 16:
        prefix = bytes(transaction_id)
    else:
        raise ValueError("transaction_id must be 12 bytes (16 for a legacy message without the cookie)")
    body = b""
    for atype, value in attrs:
        value = bytes(value)
        if len(value) > 0xFFFF:
            raise ValueError(f"attribute 0x{atype:04x} value too long")
        body += struct.pack("!HH", atype, len(value)) + value + b"\x00" * (-len(value) % 4)
    msg_type = _message_type(method, cls)

    def header(extra: int) -> bytes:
        return struct.pack("!HH", msg_type, len(body) + extra) + prefix

    if integrity_key is not None:
        # The length covers MESSAGE-INTEGRITY itself but not a later FINGERPRINT (section 14.5).
        mac = hmac.new(integrity_key, header(24) + body, hashlib.sha1).digest()
        body += struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
    if fingerprint:
        crc = zlib.crc32(header(8) + body) ^ FINGERPRINT_XOR
        body += struct.pack("!HHI", FINGERPRINT, 4, crc)
    return header(0) + body


def build_error_code(code: int, reason: str) -> tuple[int, bytes]:
    """An ERROR-CODE attribute (RFC 8489 section 14.8) as a (type, value) pair for :func:`build_stun`."""
    if not 300 <= code <= 699:
        raise ValueError("STUN error code must be 300..699")
    return ERROR_CODE, bytes([0, 0, code // 100, code % 100]) + reason.encode("utf-8")


def build_xor_address(attr_type: int, ip: str, port: int, transaction_id: bytes) -> tuple[int, bytes]:
    """An XOR address attribute (RFC 8489 section 14.2) as a (type, value) pair for :func:`build_stun`.

    ``transaction_id`` is the message's 12-byte transaction ID (used for IPv6).
    """
    addr = ipaddress.ip_address(ip)
    xport = port ^ (MAGIC_COOKIE >> 16)
    if addr.version == 4:
        raw = bytes(a ^ b for a, b in zip(addr.packed, _COOKIE_BYTES))
        return attr_type, struct.pack("!BBH", 0, 1, xport) + raw
    if len(transaction_id) != 12:
        raise ValueError("transaction_id must be 12 bytes")
    key = _COOKIE_BYTES + bytes(transaction_id)
    raw = bytes(a ^ b for a, b in zip(addr.packed, key))
    return attr_type, struct.pack("!BBH", 0, 2, xport) + raw


def build_address(attr_type: int, ip: str, port: int) -> tuple[int, bytes]:
    """A plain address attribute such as MAPPED-ADDRESS (RFC 8489 section 14.1) as a (type, value) pair."""
    addr = ipaddress.ip_address(ip)
    return attr_type, struct.pack("!BBH", 0, 1 if addr.version == 4 else 2, port) + addr.packed


def build_channel_data(channel: int, payload: bytes, *, pad: bool = False) -> bytes:
    """A TURN ChannelData message (RFC 8656 section 12.4); ``pad`` adds the zero padding required over TCP."""
    if not 0x4000 <= channel <= 0x7FFF:
        raise ValueError("channel number must be 0x4000..0x7FFF")
    data = struct.pack("!HH", channel, len(payload)) + bytes(payload)
    return data + b"\x00" * (-len(data) % 4) if pad else data
