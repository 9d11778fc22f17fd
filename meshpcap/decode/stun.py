"""STUN/TURN messages and TURN ChannelData (RFC 8489, RFC 8656, ICE RFC 8445, demux RFC 7983, MS-TURN).

Builders for tests and samples are in :mod:`meshpcap.testing.stun`."""

from __future__ import annotations

import ipaddress
import struct
import zlib

from meshpcap._dataclass import dataclass, record_maker
from meshpcap.decode.buffer import DecodeError, NeedMore

MAGIC_COOKIE = 0x2112A442  # RFC 8489 section 5
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
MS_TURN_MAGIC_COOKIE = 0x72C64BC6  # [MS-TURN] MAGIC-COOKIE attribute value
FINGERPRINT_XOR = 0x5354554E  # RFC 8489 section 14.7
HEADER_LEN = 20
CHANNEL_HEADER_LEN = 4

METHOD_NAMES = {
    0x001: "Binding",
    0x003: "Allocate",
    0x004: "Refresh",
    0x006: "Send",
    0x007: "Data",
    0x008: "CreatePermission",
    0x009: "ChannelBind",
    0x00A: "Connect",
    0x00B: "ConnectionBind",
    0x00C: "ConnectionAttempt",
}
CLASS_NAMES = {0: "request", 1: "indication", 2: "success", 3: "error"}
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3

# Attribute types (RFC 8489 section 18.3, RFC 8656 section 18, RFC 8445 section 16.1, MS-TURN/MS-ICE2).
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
MS_MAGIC_COOKIE = 0x000F
XOR_PEER_ADDRESS = 0x0012
DATA = 0x0013
REALM = 0x0014  # MS-TURN uses 0x0015
NONCE = 0x0015  # MS-TURN uses 0x0014
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
MESSAGE_INTEGRITY_SHA256 = 0x001C
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
MS_VERSION = 0x8008
MS_XOR_MAPPED_ADDRESS = 0x8020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

ATTRIBUTE_NAMES = {
    MAPPED_ADDRESS: "MAPPED-ADDRESS",
    USERNAME: "USERNAME",
    MESSAGE_INTEGRITY: "MESSAGE-INTEGRITY",
    ERROR_CODE: "ERROR-CODE",
    0x000A: "UNKNOWN-ATTRIBUTES",
    CHANNEL_NUMBER: "CHANNEL-NUMBER",
    LIFETIME: "LIFETIME",
    MS_MAGIC_COOKIE: "MAGIC-COOKIE",
    0x0010: "BANDWIDTH",
    0x0011: "DESTINATION-ADDRESS",
    XOR_PEER_ADDRESS: "XOR-PEER-ADDRESS",
    DATA: "DATA",
    REALM: "REALM",
    NONCE: "NONCE",
    XOR_RELAYED_ADDRESS: "XOR-RELAYED-ADDRESS",
    0x0017: "REQUESTED-ADDRESS-FAMILY",
    0x0018: "EVEN-PORT",
    REQUESTED_TRANSPORT: "REQUESTED-TRANSPORT",
    0x001A: "DONT-FRAGMENT",
    0x001B: "ACCESS-TOKEN",
    MESSAGE_INTEGRITY_SHA256: "MESSAGE-INTEGRITY-SHA256",
    0x001D: "PASSWORD-ALGORITHM",
    0x001E: "USERHASH",
    XOR_MAPPED_ADDRESS: "XOR-MAPPED-ADDRESS",
    0x0022: "RESERVATION-TOKEN",
    PRIORITY: "PRIORITY",
    USE_CANDIDATE: "USE-CANDIDATE",
    0x002A: "CONNECTION-ID",
    0x8000: "ADDITIONAL-ADDRESS-FAMILY",
    0x8001: "ADDRESS-ERROR-CODE",
    0x8002: "PASSWORD-ALGORITHMS",
    0x8003: "ALTERNATE-DOMAIN",
    0x8004: "ICMP",
    MS_VERSION: "MS-VERSION",
    MS_XOR_MAPPED_ADDRESS: "MS-XOR-MAPPED-ADDRESS",
    SOFTWARE: "SOFTWARE",
    0x8023: "ALTERNATE-SERVER",
    FINGERPRINT: "FINGERPRINT",
    ICE_CONTROLLED: "ICE-CONTROLLED",
    ICE_CONTROLLING: "ICE-CONTROLLING",
    0x802B: "RESPONSE-ORIGIN",
    0x802C: "OTHER-ADDRESS",
    0x8032: "MS-ALTERNATE-HOST-NAME",
    0x8037: "MS-APP-ID",
    0x8039: "MS-SECURE-TAG",
    0x8050: "MS-SEQUENCE-NUMBER",
    0x8054: "MS-CANDIDATE-IDENTIFIER",
    0x8055: "MS-SERVICE-QUALITY",
    0x8070: "MS-IMPLEMENTATION-VERSION",
    0x8090: "MS-ALT-MAPPED-ADDRESS",
    0x8095: "MS-MULTIPLEXED-TURN-SESSION-ID",
}

# Error codes (RFC 8489 section 14.8, RFC 8656 section 19, RFC 6062 section 6.3, MS-TURN).
ERROR_NAMES = {
    300: "Try Alternate",
    400: "Bad Request",
    401: "Unauthenticated",
    403: "Forbidden",
    420: "Unknown Attribute",
    437: "Allocation Mismatch",
    438: "Stale Nonce",
    440: "Address Family not Supported",
    441: "Wrong Credentials",
    442: "Unsupported Transport Protocol",
    443: "Peer Address Family Mismatch",
    446: "Connection Already Exists",
    447: "Connection Timeout or Failure",
    486: "Allocation Quota Reached",
    487: "Role Conflict",
    500: "Server Error",
    508: "Insufficient Capacity",
}
# Allocate errors that are steps of a working exchange, not a refusal: the 401 challenge that asks for
# credentials and the 438 that asks for a fresh nonce (RFC 8489 section 9.2), the 300 redirect to
# another server (section 10), and 437, which says an allocation already exists (RFC 8656 section 7.2).
ALLOCATE_RETRY_CODES = frozenset({300, 401, 437, 438})

_ICE_ATTRIBUTES = frozenset({PRIORITY, USE_CANDIDATE, ICE_CONTROLLED, ICE_CONTROLLING})
_AFTER_INTEGRITY = frozenset({FINGERPRINT, MESSAGE_INTEGRITY_SHA256, MESSAGE_INTEGRITY})
_XOR_ADDRESS_TYPES = frozenset({XOR_MAPPED_ADDRESS, MS_XOR_MAPPED_ADDRESS, XOR_RELAYED_ADDRESS, XOR_PEER_ADDRESS})


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A parsed STUN/TURN message; absent attributes are ``None``."""

    method: int
    cls: int
    method_name: str
    class_name: str
    transaction_id: bytes  # 12 bytes with the magic cookie; 16 bytes (RFC 3489 style) without
    length: int  # the header's message length (attributes only)
    magic_cookie: bool  # False for legacy RFC 3489 / MS-TURN messages without it
    error_code: int | None  # ERROR-CODE: class * 100 + number
    error_reason: str | None
    realm: str | None
    nonce: bytes | None
    username: bytes | None
    software: str | None
    xor_mapped: tuple[str, int] | None  # XOR-MAPPED-ADDRESS, else MS-XOR-MAPPED-ADDRESS
    mapped: tuple[str, int] | None  # MAPPED-ADDRESS
    relayed: tuple[str, int] | None  # XOR-RELAYED-ADDRESS
    lifetime: int | None
    ms_version: int | None
    ice: bool  # an ICE connectivity check attribute is present
    has_integrity: bool
    has_fingerprint: bool
    attributes: tuple[int, ...]  # attribute types in wire order (as on the wire, before the MS-TURN swap)
    ms_turn: bool = False  # first attribute is the MS-TURN MAGIC-COOKIE: REALM/NONCE numbers swapped

    @property
    def type_name(self) -> str:
        return f"{self.method_name} {self.class_name}"


_message = record_maker(StunMessage)


@dataclass(frozen=True, slots=True)
class ChannelData:
    """A TURN ChannelData message header (RFC 8656 section 12.4)."""

    channel: int
    length: int



def _split_type(msg_type: int) -> tuple[int, int]:
    method = (msg_type & 0x000F) | ((msg_type & 0x00E0) >> 1) | ((msg_type & 0x3E00) >> 2)
    cls = ((msg_type & 0x0010) >> 4) | ((msg_type & 0x0100) >> 7)
    return method, cls


def _walk_attributes(data: bytes, padded: bool) -> list[tuple[int, bytes]] | None:
    """Attributes between offset 20 and the end, or ``None`` when they do not tile the body exactly."""
    attrs: list[tuple[int, bytes]] = []
    pos = HEADER_LEN
    end = len(data)
    while pos < end:
        if end - pos < 4:
            return None
        atype, alen = struct.unpack_from("!HH", data, pos)
        step = (alen + 3) & ~3 if padded else alen
        if pos + 4 + step > end:
            return None
        attrs.append((atype, data[pos + 4 : pos + 4 + alen]))
        pos += 4 + step
    return attrs


def _ipv4_text(ip: int) -> str:
    """What ``str(IPv4Address(ip))`` gives, at a third of its cost."""
    return "%d.%d.%d.%d" % (ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255)


def _plain_address(value: bytes, attr: int) -> tuple[str, int]:
    # RFC 8489 section 14.1: reserved byte, family (1 IPv4, 2 IPv6), port, address.
    if len(value) < 4:
        raise DecodeError(f"STUN attribute 0x{attr:04x} too short for an address")
    family = value[1]
    port = (value[2] << 8) | value[3]
    if family == 1 and len(value) == 8:
        return _ipv4_text(int.from_bytes(value[4:8], "big")), port
    if family == 2 and len(value) == 20:
        return ipaddress.IPv6Address(value[4:20]).compressed, port
    raise DecodeError(f"STUN attribute 0x{attr:04x}: bad address family {family} or length {len(value)}")


def _xor_address(value: bytes, attr: int, key: bytes) -> tuple[str, int]:
    # RFC 8489 section 14.2: port XOR the cookie's top 16 bits; IPv4 XOR the cookie; IPv6 XOR cookie + transaction ID.
    # ``key`` is header bytes 4..20 (cookie + transaction ID), also used for legacy/MS-TURN messages.
    if len(value) < 4:
        raise DecodeError(f"STUN attribute 0x{attr:04x} too short for an address")
    family = value[1]
    port = ((value[2] << 8) | value[3]) ^ (MAGIC_COOKIE >> 16)
    if family == 1 and len(value) == 8:
        return _ipv4_text(int.from_bytes(value[4:8], "big") ^ MAGIC_COOKIE), port
    if family == 2 and len(value) == 20:
        raw = bytes(a ^ b for a, b in zip(value[4:20], key))
        return ipaddress.IPv6Address(raw).compressed, port
    raise DecodeError(f"STUN attribute 0x{attr:04x}: bad address family {family} or length {len(value)}")


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def looks_like_stun(payload: bytes) -> bool:
    """Cheap test: RFC 7983 first byte 0..3, length field matches and is a multiple of 4, magic cookie present."""
    return (
        len(payload) >= HEADER_LEN
        and payload[0] <= 3
        and ((payload[2] << 8) | payload[3]) + HEADER_LEN == len(payload)
        and payload[3] & 3 == 0
        and payload[4:8] == _COOKIE_BYTES
    )


# [MS-TURN] section 2.2.1: message types whose meaning differs from RFC 8489's reading of the bits.
# Send request (0x0004) may get no response (0x0104 and 0x0114 "MUST NOT" be sent), so it is counted as
# what RFC 8656 calls it, an indication; 0x0115 is the Data Indication, not an error class.
MS_TURN_TYPES: dict[int, tuple[int, int, str]] = {  # type -> (method, class, method name)
    0x0004: (0x006, INDICATION, "Send"),
    0x0115: (0x007, INDICATION, "Data"),
    0x0006: (0x006, REQUEST, "Set Active Destination"),
    0x0106: (0x006, SUCCESS, "Set Active Destination"),
    0x0116: (0x006, ERROR, "Set Active Destination"),
}


def parse_stun(payload: bytes) -> StunMessage:
    """Parse one complete STUN/TURN message (a UDP payload, or one frame from :func:`split_stun_tcp`).

    Raises :class:`NeedMore` when the data stops before the length in the header says,
    :class:`DecodeError` when it is not STUN or is malformed.

    MS-TURN: as Wireshark does in its "Auto" mode, a message whose first attribute is
    MAGIC-COOKIE (0x000F, [MS-TURN] section 2.2.2.8 puts it first) is read as MS-TURN, where
    0x0014 is NONCE and 0x0015 is REALM (swapped from RFC 8489), attributes may be unpadded, and
    the message types of :data:`MS_TURN_TYPES` mean what [MS-TURN] section 2.2.1 says.
    All other messages use the RFC 8489 numbers.
    """
    data = bytes(payload)
    msg_type, length = _check_header(data)
    attrs, ms_turn = _attributes(data, length)
    method, cls = _split_type(msg_type)
    method_name = METHOD_NAMES.get(method, f"0x{method:03x}")
    if ms_turn and msg_type in MS_TURN_TYPES:
        method, cls, method_name = MS_TURN_TYPES[msg_type]
    cookie = data[4:8] == _COOKIE_BYTES
    fields = _read_attributes(attrs, data[4:20], ms_turn, strict_order=cookie and not ms_turn)
    # the fields in StunMessage's order, stored without its __init__ (record_maker: a third of the parse)
    return _message((method, cls, method_name, CLASS_NAMES[cls], data[8:20] if cookie else data[4:20], length, cookie,
                     *fields, tuple(a for a, _ in attrs), ms_turn))


def _check_header(data: bytes) -> tuple[int, int]:
    """(message type, message length) of the header, checked against the bytes present (RFC 8489 section 6)."""
    if len(data) < HEADER_LEN:
        if data and data[0] & 0xC0:
            raise DecodeError("not STUN: the first two bits are not zero")
        raise NeedMore(f"STUN header needs 20 bytes, have {len(data)}")
    msg_type, length = struct.unpack_from("!HH", data, 0)
    if msg_type & 0xC000:
        # RFC 8489 section 6: the most significant two bits are zero.
        raise DecodeError("not STUN: the first two bits are not zero")
    if HEADER_LEN + length > len(data):
        raise NeedMore(f"STUN message length {length} needs {HEADER_LEN + length} bytes, have {len(data)}")
    if HEADER_LEN + length < len(data):
        raise DecodeError(f"STUN message length {length} leaves {len(data) - HEADER_LEN - length} trailing bytes")
    return msg_type, length


def _attributes(data: bytes, length: int) -> tuple[list[tuple[int, bytes]], bool]:
    """The (type, value) attributes of the message and whether it is MS-TURN (first attribute MAGIC-COOKIE)."""
    attrs: list[tuple[int, bytes]] | None
    ms_turn = False
    if length >= 8 and struct.unpack_from("!HHI", data, HEADER_LEN) == (MS_MAGIC_COOKIE, 4, MS_TURN_MAGIC_COOKIE):
        ms_turn = True
        attrs = _walk_attributes(data, padded=True)
        if attrs is None:
            attrs = _walk_attributes(data, padded=False)  # MS-TURN / RFC 3489 attributes are not padded
    elif length & 3 == 0:
        # RFC 8489 section 5: "the message length MUST contain a multiple of 4"; legacy messages
        # without the cookie are accepted only when this and the attribute layout hold too.
        attrs = _walk_attributes(data, padded=True)
    else:
        raise DecodeError(f"STUN message length {length} is not a multiple of 4")
    if attrs is None:
        raise DecodeError("STUN attributes do not fill the message exactly")
    return attrs, ms_turn


def _fixed_u32(value: bytes, name: str) -> int:
    if len(value) != 4:
        raise DecodeError(f"STUN {name} is not 4 bytes")
    return int.from_bytes(value, "big")


def _read_attributes(attrs: list[tuple[int, bytes]], key: bytes, ms_turn: bool, strict_order: bool) -> tuple:
    """The :class:`StunMessage` fields the attributes give, in its order from ``error_code`` to
    ``has_fingerprint`` (``key``: header bytes 4..20, for XOR addresses).

    ``strict_order``: RFC 8489 messages, where only FINGERPRINT / MESSAGE-INTEGRITY-SHA256 may follow
    MESSAGE-INTEGRITY (section 14.5); FINGERPRINT is last in every message (section 14.7)."""
    realm_type, nonce_type = (0x0015, 0x0014) if ms_turn else (REALM, NONCE)
    error_code = error_reason = realm = nonce = username = software = None
    xor_mapped = mapped = relayed = lifetime = ms_version = ms_xor_mapped = None
    ice = has_integrity = has_fingerprint = False
    for atype, value in attrs:
        if has_fingerprint:
            raise DecodeError("STUN attribute after FINGERPRINT")
        if has_integrity and strict_order and atype not in _AFTER_INTEGRITY:
            raise DecodeError(f"STUN attribute 0x{atype:04x} after MESSAGE-INTEGRITY")
        if atype == ERROR_CODE:
            # RFC 8489 section 14.8: 21 reserved bits, class (3 bits, 3..6), number (0..99), reason.
            if len(value) < 4:
                raise DecodeError("STUN ERROR-CODE shorter than 4 bytes")
            error_code = (value[2] & 0x07) * 100 + value[3]
            error_reason = _text(value[4:])
        elif atype == realm_type:
            realm = _text(value)
        elif atype == nonce_type:
            nonce = value
        elif atype == USERNAME:
            username = value
        elif atype == SOFTWARE:
            software = _text(value)
        elif atype == XOR_MAPPED_ADDRESS:
            xor_mapped = _xor_address(value, atype, key)
        elif atype == MS_XOR_MAPPED_ADDRESS:
            ms_xor_mapped = _xor_address(value, atype, key)
        elif atype == MAPPED_ADDRESS:
            mapped = _plain_address(value, atype)
        elif atype == XOR_RELAYED_ADDRESS:
            relayed = _xor_address(value, atype, key)
        elif atype == LIFETIME:
            lifetime = _fixed_u32(value, "LIFETIME")
        elif atype == MS_VERSION:
            ms_version = _fixed_u32(value, "MS-VERSION")
        elif atype == MESSAGE_INTEGRITY or atype == MESSAGE_INTEGRITY_SHA256:
            has_integrity = True
        elif atype == FINGERPRINT:
            _fixed_u32(value, "FINGERPRINT")
            has_fingerprint = True
        if atype in _ICE_ATTRIBUTES:
            ice = True
    if xor_mapped is None:
        xor_mapped = ms_xor_mapped
    return (error_code, error_reason, realm, nonce, username, software, xor_mapped, mapped, relayed, lifetime,
            ms_version, ice, has_integrity, has_fingerprint)


def verify_fingerprint(payload: bytes) -> bool:
    """True when ``payload`` ends in a FINGERPRINT attribute whose CRC-32 matches (RFC 8489 section 14.7)."""
    data = bytes(payload)
    if len(data) < HEADER_LEN + 8 or data[-8:-4] != b"\x80\x28\x00\x04":
        return False
    return zlib.crc32(data[:-8]) ^ FINGERPRINT_XOR == int.from_bytes(data[-4:], "big")


def verify_integrity(payload: bytes, key: bytes) -> bool:
    """True when the MESSAGE-INTEGRITY (HMAC-SHA1) of ``payload`` matches ``key`` (RFC 8489 section 14.5).

    ``key`` is the short-term password, or MD5(username:realm:password) for long-term credentials.
    """
    data = bytes(payload)
    if len(data) < HEADER_LEN or data[4:8] != _COOKIE_BYTES:
        return False
    pos = HEADER_LEN
    while pos + 4 <= len(data):
        atype, alen = struct.unpack_from("!HH", data, pos)
        if atype == MESSAGE_INTEGRITY:
            if alen != 20 or pos + 24 > len(data):
                return False
            # The HMAC covers the header, with the length counting up to the end of this attribute.
            head = data[:2] + struct.pack("!H", pos + 24 - HEADER_LEN) + data[4:pos]
            import hashlib  # here, not at the top: hmac and hashlib load OpenSSL (a few ms of every start)
            import hmac

            mac = hmac.new(key, head, hashlib.sha1).digest()
            return hmac.compare_digest(mac, data[pos + 4 : pos + 24])
        pos += 4 + ((alen + 3) & ~3)
    return False


def parse_channel_data(payload: bytes) -> ChannelData:
    """Parse a TURN ChannelData header (RFC 8656 section 12.4).

    Channel numbers 0x4000-0x4FFF (RFC 8656) and 0x4000-0x7FFF (RFC 5766) are accepted; the
    data may be followed by padding (required over TCP, section 12.5). Raises :class:`NeedMore`
    when the data is shorter than the length field says.
    """
    data = bytes(payload)
    if data and not 0x40 <= data[0] <= 0x7F:
        raise DecodeError(f"not TURN ChannelData: first byte 0x{data[0]:02x}")
    if len(data) < CHANNEL_HEADER_LEN:
        raise NeedMore(f"ChannelData header needs 4 bytes, have {len(data)}")
    channel, length = struct.unpack_from("!HH", data, 0)
    if length > len(data) - CHANNEL_HEADER_LEN:
        raise NeedMore(f"ChannelData length {length} exceeds the {len(data) - CHANNEL_HEADER_LEN} bytes present")
    if len(data) - CHANNEL_HEADER_LEN - length > 3:
        raise DecodeError(f"ChannelData length {length} leaves {len(data) - CHANNEL_HEADER_LEN - length} trailing bytes")
    return ChannelData(channel, length)


def split_stun_tcp(stream: bytes) -> tuple[list[bytes], int]:
    """Split STUN/TURN over TCP into frames; return the complete frames and the bytes consumed.

    STUN messages follow each other back to back (RFC 8489 section 6.2.2); ChannelData
    messages are padded to a multiple of 4 over TCP (RFC 8656 section 12.5). Frames are
    returned without that padding. A trailing partial frame is left for later. Raises
    :class:`DecodeError` when a frame starts with a byte that is neither STUN nor ChannelData.
    """
    frames: list[bytes] = []
    pos = 0
    n = len(stream)
    while pos < n:
        first = stream[pos]
        if first <= 3:
            kind = "stun"
        elif 0x40 <= first <= 0x7F:
            kind = "channel"
        else:
            raise DecodeError(f"not STUN framing: byte 0x{first:02x} at offset {pos}")
        if n - pos < 4:
            break
        length = (stream[pos + 2] << 8) | stream[pos + 3]
        if kind == "stun":
            if n - pos >= 8 and length & 3 and stream[pos + 4 : pos + 8] == _COOKIE_BYTES:
                raise DecodeError(f"STUN message length {length} at offset {pos} is not a multiple of 4")
            size = HEADER_LEN + length
            total = size
        else:
            size = CHANNEL_HEADER_LEN + length
            total = (size + 3) & ~3
        if n - pos < total:
            break
        frames.append(bytes(stream[pos : pos + size]))
        pos += total
    return frames, pos


def demux_first_byte(b: int) -> str:
    """RFC 7983 section 7: which protocol a packet on a shared 5-tuple is, from its first byte."""
    if 0 <= b <= 3:
        return "stun"
    if 16 <= b <= 19:
        return "zrtp"
    if 20 <= b <= 63:
        return "dtls"
    if 64 <= b <= 79:
        return "turn-channel"
    if 128 <= b <= 191:
        return "rtp"
    return "other"
