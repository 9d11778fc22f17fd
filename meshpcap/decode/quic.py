"""QUIC long headers and client Initial decryption, to read the ClientHello (RFC 9000, RFC 9001, RFC 9369)."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

# cryptography is imported on first use (about 20 ms): most flows carry no QUIC.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshpcap._dataclass import dataclass
from meshpcap.decode.buffer import Buffer, DecodeError, NeedMore
from meshpcap.decode.tls import ClientHello, parse_client_hello

QUIC_V1 = 0x00000001  # RFC 9000
QUIC_V2 = 0x6B3343CF  # RFC 9369 section 3.1
DRAFT_29 = 0xFF00001D
VERSION_NEGOTIATION = 0x00000000  # RFC 9000 section 17.2.1

# Initial salts.  RFC 9001 section 5.2 (v1); RFC 9369 section 3.3.1 (v2);
# draft-ietf-quic-tls-29 section 5.2, unchanged through draft-32;
# draft-ietf-quic-tls-23 section 5.2, unchanged through draft-28 (same labels and header protection).
INITIAL_SALTS: dict[int, bytes] = {
    QUIC_V1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    QUIC_V2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
    **{v: bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899") for v in range(0xFF00001D, 0xFF000021)},
    **{v: bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502") for v in range(0xFF000017, 0xFF00001D)},
}
SUPPORTED_VERSIONS = frozenset(INITIAL_SALTS)
# A version with no salt of its own is tried with the salts of the versions it most likely
# follows, as Wireshark does, and the AEAD tag of the Initial says whether a guess was right (a
# wrong guess fails authentication and nothing is read).  Wireshark (epan/dissectors/packet-quic.c,
# quic_draft_version) keys the reserved 0x?a?a?a?a versions that force Version Negotiation
# (RFC 9000 section 15) with draft-29's salt; other unknown versions with v1's.
GUESS_RESERVED = (DRAFT_29, QUIC_V1)
GUESS_UNKNOWN = (QUIC_V1, DRAFT_29)


def is_reserved_version(v: int) -> bool:
    """RFC 9000 section 15: versions 0x?a?a?a?a are reserved to exercise Version Negotiation."""
    return (v & 0x0F0F0F0F) == 0x0A0A0A0A


def key_versions(v: int) -> tuple[int, ...]:
    """The versions whose Initial salt and labels are tried for packets of version ``v``, in order."""
    if v in INITIAL_SALTS:
        return (v,)
    return GUESS_RESERVED if is_reserved_version(v) else GUESS_UNKNOWN

# Long header packet types.  RFC 9000 section 17.2: Initial 0, 0-RTT 1, Handshake 2, Retry 3;
# RFC 9369 section 3.2 rotates them in v2: Initial 1, 0-RTT 2, Handshake 3, Retry 0.
PT_INITIAL, PT_0RTT, PT_HANDSHAKE, PT_RETRY = "initial", "0rtt", "handshake", "retry"
_TYPES_V1 = (PT_INITIAL, PT_0RTT, PT_HANDSHAKE, PT_RETRY)
_TYPES_V2 = (PT_RETRY, PT_INITIAL, PT_0RTT, PT_HANDSHAKE)

# Frame types allowed in an Initial that we walk (RFC 9000 section 12.4, table 3)
FRAME_PADDING = 0x00
FRAME_PING = 0x01
FRAME_ACK = 0x02
FRAME_ACK_ECN = 0x03
FRAME_CRYPTO = 0x06

MAX_CID_V1 = 20  # RFC 9000 section 17.2: connection IDs of v1 are at most 20 bytes
AEAD_TAG = 16
SAMPLE_LEN = 16  # RFC 9001 section 5.4.2
MAX_CRYPTO_OFFSET = 1 << 20  # ignore CRYPTO data this far out; no ClientHello is that big


def version_name(v: int) -> str:
    """Short name of a QUIC version: "v1", "v2", "draft-29", else "0x%08x"."""
    if v == QUIC_V1:
        return "v1"
    if v == QUIC_V2:
        return "v2"
    if 0xFF000001 <= v <= 0xFF0000FF:
        return f"draft-{v & 0xFF}"
    return f"0x{v:08x}"


def is_long_header(datagram: bytes) -> bool:
    """RFC 9000 section 17.2: the Header Form bit (0x80) of the first byte is set."""
    return bool(datagram) and bool(datagram[0] & 0x80)


def _packet_type(version: int, first: int) -> str:
    table = _TYPES_V2 if version == QUIC_V2 else _TYPES_V1
    return table[(first >> 4) & 0x03]


@dataclass(frozen=True, slots=True)
class LongHeader:
    """The invariant fields of a long header (RFC 8999 section 5.1) and its packet type."""

    version: int
    packet_type: str | None
    """"initial", "0rtt", "handshake", "retry"; ``None`` for version negotiation or an unknown version."""
    dcid: bytes
    scid: bytes


@dataclass(frozen=True, slots=True)
class InitialPacket:
    """A decrypted client Initial packet."""

    version: int
    dcid: bytes
    scid: bytes
    packet_number: int
    crypto: tuple[tuple[int, bytes], ...]
    """(offset, data) of its CRYPTO frames, in packet order."""


def _pull_cids(b: Buffer, version: int) -> tuple[bytes, bytes]:
    dcid = b.pull_vector(1)
    scid = b.pull_vector(1)
    if version in SUPPORTED_VERSIONS and (len(dcid) > MAX_CID_V1 or len(scid) > MAX_CID_V1):
        raise DecodeError("connection ID longer than 20 bytes")
    return dcid, scid


def parse_long_header(datagram: bytes) -> LongHeader:
    """The long header at the start of ``datagram`` (no decryption)."""
    if not is_long_header(datagram):
        raise DecodeError("not a QUIC long header packet")
    b = Buffer(datagram)
    first = b.pull_u8()
    version = b.pull_u32()
    dcid, scid = _pull_cids(b, version)
    ptype = _packet_type(version, first) if version in SUPPORTED_VERSIONS else None
    return LongHeader(version, ptype, dcid, scid)


# --------------------------------------------------------------------------- keys (RFC 9001 section 5)


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def _hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    # RFC 8446 section 7.1: HkdfLabel = length, "tls13 " + label, empty context
    full = b"tls13 " + label.encode("ascii")
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(secret)


@dataclass(frozen=True, slots=True)
class _Keys:
    aead: AESGCM
    iv: bytes
    hp: bytes


@lru_cache(maxsize=256)
def _client_keys(version: int, dcid: bytes) -> _Keys:
    """Client Initial keys of ``version`` (one with a salt) from the first Destination Connection ID
    (RFC 9001 section 5.2)."""
    initial_secret = _hkdf_extract(INITIAL_SALTS[version], dcid)
    secret = _hkdf_expand_label(initial_secret, "client in", 32)
    # RFC 9369 section 3.3.2: v2 uses "quicv2 key" / "quicv2 iv" / "quicv2 hp"
    prefix = "quicv2 " if version == QUIC_V2 else "quic "
    key = _hkdf_expand_label(secret, prefix + "key", 16)
    iv = _hkdf_expand_label(secret, prefix + "iv", 12)
    hp = _hkdf_expand_label(secret, prefix + "hp", 16)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return _Keys(AESGCM(key), iv, hp)


def _hp_mask(hp: bytes, sample: bytes) -> bytes:
    # RFC 9001 section 5.4.3: mask = AES-ECB(hp_key, sample)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def _nonce(iv: bytes, pn: int) -> bytes:
    # RFC 9001 section 5.3: the packet number, left-padded, XORed with the IV
    return bytes(a ^ b for a, b in zip(iv, pn.to_bytes(len(iv), "big")))


# --------------------------------------------------------------------------- decryption


def _parse_frames(payload: bytes) -> tuple[tuple[int, bytes], ...]:
    """CRYPTO frames of an Initial payload; stops quietly at other or malformed frames."""
    out: list[tuple[int, bytes]] = []
    b = Buffer(payload)
    try:
        while not b.eof():
            ftype = b.pull_varint()
            if ftype == FRAME_PADDING or ftype == FRAME_PING:
                continue
            if ftype in (FRAME_ACK, FRAME_ACK_ECN):
                # RFC 9000 section 19.3
                b.pull_varint()  # largest acknowledged
                b.pull_varint()  # ack delay
                ranges = b.pull_varint()
                b.pull_varint()  # first range
                if ranges > b.remaining():
                    break
                for _ in range(ranges):
                    b.pull_varint()  # gap
                    b.pull_varint()  # range length
                if ftype == FRAME_ACK_ECN:
                    b.pull_varint()
                    b.pull_varint()
                    b.pull_varint()
            elif ftype == FRAME_CRYPTO:
                # RFC 9000 section 19.6
                offset = b.pull_varint()
                data = b.pull_bytes(b.pull_varint())
                out.append((offset, data))
            else:
                break  # CONNECTION_CLOSE or a frame not allowed in Initials
    except DecodeError:
        pass
    return tuple(out)


def _decrypt_initial(datagram: bytes, start: int, pn_offset: int, end: int, keys: _Keys) -> tuple[int, bytes]:
    """(packet number, plaintext) of the protected packet ``datagram[start:end]``."""
    sample_at = pn_offset + 4
    if sample_at + SAMPLE_LEN > end:
        raise DecodeError("Initial packet too short for a header protection sample")
    mask = _hp_mask(keys.hp, datagram[sample_at : sample_at + SAMPLE_LEN])
    first = datagram[start] ^ (mask[0] & 0x0F)  # RFC 9001 section 5.4.1: long header, 4 bits
    pn_len = (first & 0x03) + 1
    pn_bytes = bytes(x ^ m for x, m in zip(datagram[pn_offset : pn_offset + pn_len], mask[1 : 1 + pn_len]))
    # The first packets of a connection: no earlier packet number to expand against
    # (RFC 9000 appendix A.3), so the truncated number is the number.
    pn = int.from_bytes(pn_bytes, "big")
    header = bytes((first,)) + datagram[start + 1 : pn_offset] + pn_bytes
    from cryptography.exceptions import InvalidTag

    try:
        plain = keys.aead.decrypt(_nonce(keys.iv, pn), datagram[pn_offset + pn_len : end], header)
    except InvalidTag:
        raise DecodeError("QUIC Initial packet failed authentication") from None
    return pn, plain


def _decrypt_with_guesses(datagram: bytes, start: int, pn_offset: int, end: int, version: int,
                          key_dcid: bytes) -> tuple[int, bytes]:
    """:func:`_decrypt_initial` with the keys of each of :func:`key_versions` in turn; the first
    whose tag verifies wins."""
    candidates = key_versions(version)
    for i, kv in enumerate(candidates):
        try:
            return _decrypt_initial(datagram, start, pn_offset, end, _client_keys(kv, key_dcid))
        except DecodeError:
            if i == len(candidates) - 1:
                raise
    raise AssertionError("unreachable")  # key_versions is never empty


def parse_client_initials(datagram: bytes, dcid_hint: bytes | None = None) -> list[InitialPacket]:
    """Decrypt every client Initial packet in a (possibly coalesced) datagram.

    Keys come from ``dcid_hint`` (the DCID of the connection's first client Initial,
    RFC 9001 section 5.2) when given, else from each packet's own DCID; a version without
    a salt of its own is tried with the salts of :func:`key_versions`.  Other long
    header packets (0-RTT, Handshake) are skipped using their Length field (RFC 9000
    section 12.2); a version negotiation packet gives ``[]``.  Raises
    :class:`DecodeError` when the datagram is not QUIC, or the first Initial is cut or
    fails authentication (so does a version guessed wrong); later packets are best effort.
    """
    if not is_long_header(datagram):
        raise DecodeError("not a QUIC long header packet")
    out: list[InitialPacket] = []
    pos = 0
    n = len(datagram)
    first_version: int | None = None
    while pos < n:
        first = datagram[pos]
        if not first & 0x80:
            break  # a short header packet runs to the end of the datagram
        later = first_version is not None
        try:
            b = Buffer(datagram, pos)
            b.pull_u8()
            version = b.pull_u32()
            if version == VERSION_NEGOTIATION:
                if later:
                    break
                return []
            if first_version is None:
                first_version = version  # an unknown version is tried with v1 keys (GUESS_SALT_VERSION)
            elif version != first_version:
                break  # RFC 9000 section 12.2: coalesced packets share the connection
            dcid, scid = _pull_cids(b, version)
            ptype = _packet_type(version, first)
            if ptype == PT_RETRY:
                break  # a Retry has no Length field and is sent only by servers
            if ptype == PT_INITIAL:
                b.pull_bytes(b.pull_varint())  # token (RFC 9000 section 17.2.2)
            length = b.pull_varint()
            pn_offset = b.pos
            end = pn_offset + length
            if end > n:
                raise NeedMore(f"QUIC packet length {length} runs past the datagram")
            if ptype == PT_INITIAL:
                pn, plain = _decrypt_with_guesses(datagram, pos, pn_offset, end, version,
                                                  dcid_hint if dcid_hint is not None else dcid)
                out.append(InitialPacket(version, dcid, scid, pn, _parse_frames(plain)))
            pos = end
        except DecodeError:
            if later or out:
                break
            raise
    return out


class CryptoReassembler:
    """Orders CRYPTO frame data by offset (RFC 9000 section 19.6); the one mutable helper here."""

    __slots__ = ("_data", "_pending")

    def __init__(self) -> None:
        self._data = bytearray()
        self._pending: dict[int, bytes] = {}

    def add(self, offset: int, data: bytes) -> None:
        if offset > MAX_CRYPTO_OFFSET or not data:
            return
        if offset > len(self._data):
            old = self._pending.get(offset)
            if old is None or len(data) > len(old):
                self._pending[offset] = bytes(data)
            return
        self._extend(offset, data)
        while self._pending:
            ready = [o for o in self._pending if o <= len(self._data)]
            if not ready:
                break
            for o in ready:
                self._extend(o, self._pending.pop(o))

    def _extend(self, offset: int, data: bytes) -> None:
        have = len(self._data)
        if offset + len(data) > have:
            self._data += data[have - offset :]

    def contiguous(self) -> bytes:
        """The bytes from offset 0 up to the first gap."""
        return bytes(self._data)


def client_hello_from_initials(datagrams: Iterable[bytes]) -> tuple[int, ClientHello] | None:
    """(version, ClientHello) from the client's first datagrams, in order, client to server only.

    CRYPTO data is reassembled from offset 0 across packets and datagrams, in any frame
    order.  Returns ``None`` when no complete ClientHello arrives; datagrams that do not
    decrypt are skipped.  Raises :class:`DecodeError` when the reassembled handshake
    message is not a valid ClientHello.
    """
    crypto = CryptoReassembler()
    version: int | None = None
    original_dcid: bytes | None = None
    for datagram in datagrams:
        try:
            packets = parse_client_initials(datagram, original_dcid)
        except DecodeError:
            if original_dcid is None:
                continue
            # after a Retry the client derives new keys from the Retry's SCID (RFC 9001 section 5.2)
            try:
                packets = parse_client_initials(datagram)
            except DecodeError:
                continue
        for packet in packets:
            if version is None:
                version, original_dcid = packet.version, packet.dcid
            for offset, data in packet.crypto:
                crypto.add(offset, data)
        hs = crypto.contiguous()
        if len(hs) >= 4:
            need = 4 + int.from_bytes(hs[1:4], "big")
            if len(hs) >= need:
                assert version is not None
                return version, parse_client_hello(hs[:need])
            if hs[0] != 1:
                raise DecodeError(f"first CRYPTO handshake message type {hs[0]} is not ClientHello")
    return None
