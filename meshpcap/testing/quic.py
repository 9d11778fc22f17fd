"""Protected QUIC client Initial packets for tests and sample captures (RFC 9000, RFC 9001, RFC 9369),
sealed with the same keys :mod:`meshpcap.decode.quic` derives to open them."""

from __future__ import annotations

import struct

from meshpcap.decode.quic import (
    _TYPES_V1,
    _TYPES_V2,
    AEAD_TAG,
    FRAME_CRYPTO,
    PT_INITIAL,
    QUIC_V2,
    SAMPLE_LEN,
    _client_keys,
    _hp_mask,
    _nonce,
    key_versions,
)

__all__ = ["crypto_frame", "long_header_type_bits", "encrypt_client_initial", "build_long_header_packet"]


def _varint(v: int, size: int | None = None) -> bytes:
    """RFC 9000 section 16 variable-length integer, in ``size`` bytes or the shortest form."""
    if size is None:
        size = 1 if v < 0x40 else 2 if v < 0x4000 else 4 if v < 0x40000000 else 8
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    if v >= 1 << (8 * size - 2):
        raise ValueError(f"{v} does not fit a {size}-byte varint")
    return (v | (prefix << (8 * size - 2))).to_bytes(size, "big")


def crypto_frame(offset: int, data: bytes) -> bytes:
    """A CRYPTO frame (RFC 9000 section 19.6)."""
    return _varint(FRAME_CRYPTO) + _varint(offset) + _varint(len(data)) + data


def long_header_type_bits(version: int, packet_type: str) -> int:
    """The two type bits of ``packet_type`` for ``version`` (RFC 9000 section 17.2, RFC 9369 section 3.2)."""
    table = _TYPES_V2 if version == QUIC_V2 else _TYPES_V1
    return table.index(packet_type)


def encrypt_client_initial(
    version: int,
    dcid: bytes,
    scid: bytes,
    pn: int,
    frames_bytes: bytes,
    pad_to: int | None = 1200,
    *,
    token: bytes = b"",
    pn_len: int | None = None,
    key_dcid: bytes | None = None,
    key_version: int | None = None,
) -> bytes:
    """Build one protected client Initial packet, as a client would send it.

    ``frames_bytes`` is the plaintext payload (e.g. :func:`crypto_frame` output);
    PADDING frames are appended until the packet is ``pad_to`` bytes (RFC 9000 section
    14.1 wants datagrams with Initials to be at least 1200 bytes; pass ``None`` to not
    pad, e.g. to coalesce it with further packets).  Keys come from ``key_dcid`` when
    given (a later Initial sent to a server-chosen DCID), else from ``dcid``.  The packet
    number is encoded in ``pn_len`` bytes (default: the fewest that hold ``pn``) and the
    Length field in 2 bytes when it fits.  A version without a salt of its own is sealed
    with the keys of ``key_version`` (default: the first of :func:`key_versions`).
    """
    if pn_len is None:
        pn_len = 1 if pn < 0x100 else 2 if pn < 0x10000 else 4
    keys = _client_keys(key_versions(version)[0] if key_version is None else key_version,
                        key_dcid if key_dcid is not None else dcid)
    first = 0xC0 | (long_header_type_bits(version, PT_INITIAL) << 4) | (pn_len - 1)
    prefix = bytes((first,)) + struct.pack("!I", version) + bytes((len(dcid),)) + dcid + bytes((len(scid),)) + scid
    prefix += _varint(len(token)) + token

    payload = bytes(frames_bytes)
    # RFC 9001 section 5.4.2: the sample needs 4 + 16 bytes after the packet number start
    payload += bytes(max(0, 4 - pn_len - len(payload)))

    def size(p: bytes) -> tuple[int, int]:
        length = pn_len + len(p) + AEAD_TAG
        length_size = 2 if length < 0x4000 else 4
        return length, len(prefix) + length_size + length

    length, total = size(payload)
    if pad_to is not None and total < pad_to:
        payload += bytes(pad_to - total)
        length, total = size(payload)
        if total > pad_to:  # the Length field grew by 2 bytes
            payload = payload[: len(payload) - (total - pad_to)]
            length, total = size(payload)
    length_size = 2 if length < 0x4000 else 4
    pn_bytes = pn.to_bytes(pn_len, "big")
    header = prefix + _varint(length, length_size) + pn_bytes
    sealed = keys.aead.encrypt(_nonce(keys.iv, pn), payload, header)
    pn_offset = len(header) - pn_len
    sample = sealed[4 - pn_len : 4 - pn_len + SAMPLE_LEN]
    mask = _hp_mask(keys.hp, sample)
    protected = bytearray(header + sealed)
    protected[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        protected[pn_offset + i] ^= mask[1 + i]
    return bytes(protected)


def build_long_header_packet(version: int, packet_type: str, dcid: bytes, scid: bytes, body: bytes) -> bytes:
    """An unprotected-looking 0-RTT or Handshake packet (opaque ``body``) for coalescing tests and samples."""
    first = 0xC0 | (long_header_type_bits(version, packet_type) << 4) | 0x03
    head = bytes((first,)) + struct.pack("!I", version) + bytes((len(dcid),)) + dcid + bytes((len(scid),)) + scid
    return head + _varint(len(body)) + body
