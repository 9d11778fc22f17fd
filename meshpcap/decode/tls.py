"""TLS record and handshake parsing for naming flows: ClientHello, server flight, alerts (RFC 8446, RFC 5246)."""

from __future__ import annotations

import ipaddress
import struct

from meshpcap._dataclass import dataclass
from meshpcap._native import load as _load_native
from meshpcap.decode.buffer import Buffer, DecodeError, NeedMore, raise_short
from meshpcap.decode.names import is_ip_literal, normalize_hostname
from meshpcap.decode.x509 import read_certificate_names

TLS_ABI = 2  # must equal TLS_ABI in _tls.c
_COMPILED = _load_native("meshpcap.decode._tls", TLS_ABI)  # ClientHello and server-flight fast paths in C; None: Python

# RFC 8446 section 5.1: ContentType
CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
_CONTENT_TYPES = frozenset((CT_CHANGE_CIPHER_SPEC, CT_ALERT, CT_HANDSHAKE, CT_APPLICATION_DATA))

# RFC 8446 section 4: HandshakeType
HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_CERTIFICATE = 11

# RFC 8446 section 4.2 (and the registries they cite): ExtensionType
EXT_SERVER_NAME = 0  # RFC 6066 section 3
EXT_STATUS_REQUEST = 5
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16  # RFC 7301 section 3.1
EXT_SCT = 18
EXT_PADDING = 21  # RFC 7685
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_KEY_SHARE = 51
EXT_QUIC_TRANSPORT_PARAMETERS = 57  # RFC 9001 section 8.2
EXT_ECH = 0xFE0D  # RFC 9849 (draft-ietf-tls-esni) section 5
EXT_RENEGOTIATION_INFO = 0xFF01  # RFC 5746

# RFC 8446 section 5.1: "The length MUST NOT exceed 2^14 bytes"; we allow the
# TLSCiphertext bound (2^14 + 256) so that sloppy senders still parse.
MAX_RECORD = 2**14 + 256

# RFC 8446 section 4.1.3: ServerHello.random of a HelloRetryRequest
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

# Named groups (IANA TLS Supported Groups registry); meshpcap.testing.tls builds key shares with them
GROUP_X25519 = 0x001D
GROUP_SECP256R1 = 0x0017
GROUP_X25519MLKEM768 = 0x11EC  # draft-ietf-tls-ecdhe-mlkem: 1184-byte ML-KEM key + 32-byte X25519 key
X25519MLKEM768_SHARE_LEN = 1216

TLS_VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}

# RFC 8446 section 6 (AlertDescription), with the names RFC 5246 used for values that
# RFC 8446 marks _RESERVED, plus ech_required (RFC 9849 section 11.2).
ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}


def is_grease(value: int) -> bool:
    """True for the RFC 8701 section 2 GREASE code points 0x0a0a, 0x1a1a, ... 0xfafa."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


# The same code points as a set, for 16-bit values (cipher suites, extensions, versions).
_GREASE = frozenset(range(0x0A0A, 0x10000, 0x1010))
_EXT_HEADER = struct.Struct("!HH").unpack_from  # extension_type, extension_data length (RFC 8446 section 4.2)


def _without_grease(values: tuple[int, ...]) -> tuple[int, ...]:
    return values if _GREASE.isdisjoint(values) else tuple(v for v in values if v not in _GREASE)


def _is_grease_alpn(proto: bytes) -> bool:
    # RFC 8701 section 2: GREASE ALPN identifiers are the two-byte strings 0x0A0A ... 0xFAFA
    return len(proto) == 2 and is_grease((proto[0] << 8) | proto[1])


def _alpn_text(proto: bytes) -> str:
    return proto.decode("ascii", "backslashreplace")


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The fields of a ClientHello that name and describe a flow."""

    sni: str | None
    """server_name host name, normalised; ``None`` if absent or invalid."""
    sni_raw_invalid: bool
    """An SNI was present but is not a valid host name (the caller counts it)."""
    alpn: tuple[str, ...]
    versions: tuple[int, ...]
    """supported_versions (GREASE removed), or ``(legacy_version,)`` without that extension."""
    legacy_version: int
    ech: bool
    """encrypted_client_hello (0xfe0d) present; ``sni`` is then the outer (public) name."""
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    length: int
    """Bytes of the handshake message, header included."""
    sni_literal: str | None = None
    """An IP address literal the client put in server_name (RFC 6066 section 3 forbids it, so it
    is no name and ``sni_raw_invalid`` is set), as address text: evidence of where the client
    meant to go (Teams media relays are reached this way)."""
    sslv2: bool = False
    """The hello came in the SSL 2.0-compatible form (RFC 5246 appendix E.2): no extensions, so no SNI."""


@dataclass(frozen=True, slots=True)
class TlsAlert:
    level: int
    description: int
    name: str


@dataclass(frozen=True, slots=True)
class ServerFlight:
    """What the server said in cleartext before encryption started."""

    server_hello: bool
    version: int | None
    cipher_suite: int | None
    alpn: str | None
    alert: TlsAlert | None
    cert_subject: str | None
    cert_issuer: str | None
    hello_retry: bool
    encrypted: bool
    complete: bool
    """False when the bytes ended inside a record or handshake message we wanted."""


def make_alert(level: int, description: int) -> TlsAlert:
    return TlsAlert(level, description, ALERT_NAMES.get(description, f"alert-{description}"))


def looks_like_sslv2_hello(first_bytes: bytes) -> bool:
    """Cheap check of a stream's first bytes: an SSL 2.0-compatible ClientHello (RFC 5246 appendix
    E.2): a 2-byte header with the top bit set, msg_type 1, then version 3.x."""
    n = len(first_bytes)
    return (n >= 3 and first_bytes[0] & 0x80 != 0 and first_bytes[2] == HS_CLIENT_HELLO
            and (n < 4 or first_bytes[3] == 3) and (n < 5 or first_bytes[4] <= 4))


def looks_like_tls(first_bytes: bytes) -> bool:
    """Cheap check of a stream's first bytes: a handshake record with version 0x0300..0x0304."""
    if len(first_bytes) < 3 or first_bytes[0] != CT_HANDSHAKE or first_bytes[1] != 3 or first_bytes[2] > 4:
        return False
    if len(first_bytes) >= 5:
        n = (first_bytes[3] << 8) | first_bytes[4]
        return 0 < n <= MAX_RECORD
    return True


# --------------------------------------------------------------------------- ClientHello


def _parse_sni(data: bytes) -> bytes | None:
    # RFC 6066 section 3: ServerNameList; take the first host_name (type 0)
    if len(data) >= 5 and data[2] == 0:
        # the usual list, a host_name first: the loop below would return just this
        end = 2 + ((data[0] << 8) | data[1])
        stop = 5 + ((data[3] << 8) | data[4])
        if stop <= end <= len(data):
            return data[5:stop]
    b = Buffer(data)
    names = b.sub(b.pull_u16())
    while not names.eof():
        name_type = names.pull_u8()
        name = names.pull_vector(2)
        if name_type == 0:
            return name
    return None


def _parse_alpn_list(data: bytes) -> list[bytes]:
    # RFC 7301 section 3.1: ProtocolNameList protocol_name_list<2..2^16-1>
    pos, end = _u16_vector(data, 0, len(data))
    out = []
    while pos < end:
        start, pos = _u8_vector(data, pos, end)  # ProtocolName opaque<1..2^8-1>
        if pos == start:
            raise DecodeError("empty ALPN protocol name")
        out.append(data[start:pos])
    return out


def parse_client_hello(handshake: bytes) -> ClientHello:
    """Parse a ClientHello handshake message starting at its msg_type byte.

    Raises :class:`NeedMore` when ``handshake`` is shorter than the message says, and
    :class:`DecodeError` when it is not a well-formed ClientHello.
    """
    data = handshake if isinstance(handshake, bytes) else bytes(handshake)
    n = len(data)
    if n < 1:
        raise_short(data, 0, n, 1)
    msg_type = data[0]
    if msg_type != HS_CLIENT_HELLO:
        raise DecodeError(f"handshake type {msg_type} is not ClientHello")
    if n < 4:
        raise_short(data, 1, n, 3)
    length = (data[1] << 16) | (data[2] << 8) | data[3]
    if n - 4 < length:
        raise_short(data, 4, n, length)
    try:
        return _parse_client_hello_body(data, 4, 4 + length)
    except NeedMore as exc:
        # the message length is known, so a short field inside it is malformed
        raise DecodeError(f"ClientHello field overruns the message: {exc}") from None


def _parse_client_hello_body(data: bytes, pos: int, end: int) -> ClientHello:
    """The ClientHello whose body is ``data[pos:end]`` (its 4-byte header just before ``pos``)."""
    # RFC 8446 section 4.1.2.  Fields are read by index, several to a bounds check; when a
    # check fails, raise_short raises what Buffer reads of those fields always raised.
    length = end - pos + 4
    if _COMPILED is not None:  # a well-formed hello in its usual shape; None leaves every other to the walk below
        fields = _COMPILED.client_hello_fields(data, pos, end)
        if fields is not None:
            return _hello_of_fields(length, *fields)
    legacy_version, suites, pos = _hello_fixed_fields(data, pos, end)
    ext = _HelloExtensions()
    if pos < end:  # RFC 5246 section 7.4.1.2: extensions may be absent before TLS 1.3
        _hello_extensions(data, pos, end, ext)
    return _client_hello(length, legacy_version, _without_grease(suites), tuple(ext.types), ext)


def _hello_of_fields(length: int, legacy_version: int, suites: tuple[int, ...], types: tuple[int, ...],
                     sni: bytes | None, alpn: tuple[bytes, ...] | None, versions: tuple[int, ...] | None,
                     ech: bool) -> ClientHello:
    """The ClientHello of what ``_tls.c`` client_hello_fields read (GREASE already left out), as the walk
    below makes it."""
    ext = _HelloExtensions()
    if sni is not None:
        _hello_host_name(sni, ext)
    if alpn:
        ext.alpn = tuple(map(_alpn_text, alpn))
    ext.versions, ext.ech = versions, ech
    return _client_hello(length, legacy_version, suites, types, ext)


def _client_hello(length: int, legacy_version: int, suites: tuple[int, ...], types: tuple[int, ...],
                  ext: _HelloExtensions) -> ClientHello:
    return ClientHello(
        sni=ext.sni,
        sni_raw_invalid=ext.sni_invalid,
        alpn=ext.alpn,
        versions=ext.versions if ext.versions else (legacy_version,),
        legacy_version=legacy_version,
        ech=ext.ech,
        cipher_suites=suites,
        extensions=types,
        length=length,
        sni_literal=ext.sni_literal,
    )


def _hello_fixed_fields(data: bytes, pos: int, end: int) -> tuple[int, tuple[int, ...], int]:
    """(legacy_version, cipher_suites, offset of the extensions) of a ClientHello body: legacy_version,
    random, legacy_session_id, cipher_suites, legacy_compression_methods (RFC 8446 section 4.1.2)."""
    if end - pos < 2:
        raise_short(data, pos, end, 2)
    legacy_version = (data[pos] << 8) | data[pos + 1]
    if legacy_version >> 8 != 3:
        raise DecodeError(f"ClientHello legacy_version 0x{legacy_version:04x} is not TLS")
    pos += 2
    if end - pos < 33:
        raise_short(data, pos, end, 32, 1)  # random, legacy_session_id length
    pos = _skip_session_id(data, pos + 32, end, "ClientHello")
    start, pos = _u16_vector(data, pos, end)
    n = pos - start
    if n % 2 or not n:
        raise DecodeError("ClientHello cipher_suites has a bad length")
    suites = struct.unpack_from(f"!{n // 2}H", data, start)
    start, pos = _u8_vector(data, pos, end)
    if pos == start:
        raise DecodeError("ClientHello has no compression methods")
    return legacy_version, suites, pos


# Vectors and extensions (RFC 8446 section 3.4: a vector is its length, in 1 or 2 bytes, then its bytes),
# read by index; when one does not fit, raise_short raises what Buffer reads would have raised.


def _u8_vector(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of the bytes of the vector whose 1-byte length is at ``pos``."""
    if end - pos < 1:
        raise_short(data, pos, end, 1)
    n = data[pos]
    pos += 1
    if end - pos < n:
        raise_short(data, pos, end, n)
    return pos, pos + n


def _u16_vector(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, stop) of the bytes of the vector whose 2-byte length is at ``pos``."""
    if end - pos < 2:
        raise_short(data, pos, end, 2)
    n = (data[pos] << 8) | data[pos + 1]
    pos += 2
    if end - pos < n:
        raise_short(data, pos, end, n)
    return pos, pos + n


def _skip_session_id(data: bytes, pos: int, end: int, message: str) -> int:
    """Offset after the legacy_session_id whose length byte is at ``pos``: at most 32 bytes
    (RFC 8446 sections 4.1.2 and 4.1.3)."""
    start, stop = _u8_vector(data, pos, end)
    if stop - start > 32:
        raise DecodeError(f"{message} session id longer than 32 bytes")
    return stop


def _extension_at(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(extension_type, start, stop of extension_data) of the extension at ``pos`` (RFC 8446 section 4.2)."""
    if end - pos < 4:
        raise_short(data, pos, end, 2, 2)  # extension_type, extension_data length
    ext_type, n = _EXT_HEADER(data, pos)
    start = pos + 4
    if start + n > end:
        raise_short(data, start, end, n)
    return ext_type, start, start + n


class _HelloExtensions:
    """What :func:`_hello_extensions` found (a plain holder, filled in one pass)."""

    __slots__ = ("sni", "sni_invalid", "sni_literal", "alpn", "versions", "ech", "types")

    def __init__(self) -> None:
        self.sni: str | None = None
        self.sni_invalid = False
        self.sni_literal: str | None = None
        self.alpn: tuple[str, ...] = ()
        self.versions: tuple[int, ...] | None = None
        self.ech = False
        self.types: list[int] = []


def _hello_extensions(data: bytes, pos: int, end: int, out: _HelloExtensions) -> None:
    """Walk the extensions block at ``data[pos:end]`` (RFC 8446 section 4.2) into ``out``."""
    pos, stop = _u16_vector(data, pos, end)
    if stop != end:
        raise DecodeError("bytes after ClientHello extensions")
    seen: set[int] = set()
    while pos < end:
        ext_type, start, pos = _extension_at(data, pos, end)
        if ext_type in seen:
            # RFC 8446 section 4.2: "There MUST NOT be more than one extension of the same type"
            raise DecodeError(f"duplicate extension {ext_type}")
        seen.add(ext_type)
        if ext_type not in _GREASE:
            out.types.append(ext_type)
        if ext_type == EXT_SERVER_NAME:
            _hello_sni(data[start:pos], out)
        elif ext_type == EXT_ALPN:
            out.alpn = tuple(_alpn_text(p) for p in _parse_alpn_list(data[start:pos]) if not _is_grease_alpn(p))
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            # RFC 8446 section 4.2.1: ProtocolVersion versions<2..254>, a u8-length vector
            k = data[start] if start < pos else 0
            if pos - start < 1 + k:
                ext = data[start:pos]
                raise_short(ext, 0, len(ext), 1, k)  # offsets within the extension, as always
            if k % 2:
                raise DecodeError("supported_versions has an odd length")
            out.versions = _without_grease(struct.unpack_from(f"!{k // 2}H", data, start + 1))
        elif ext_type == EXT_ECH:
            out.ech = True


def _hello_sni(ext: bytes, out: _HelloExtensions) -> None:
    raw = _parse_sni(ext)
    if raw is not None:
        _hello_host_name(raw, out)


def _hello_host_name(raw: bytes, out: _HelloExtensions) -> None:
    sni = normalize_hostname(raw)
    # RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName"
    # (a host name can only be an IPv4 literal, which ends in a digit)
    if sni is None or (sni[-1] in "0123456789" and is_ip_literal(sni)):
        out.sni, out.sni_invalid, out.sni_literal = None, True, _ip_literal(raw)
    else:
        out.sni = sni


def _ip_literal(raw: bytes) -> str | None:
    """The address text of an IPv4 or IPv6 literal (brackets allowed), else ``None``."""
    try:
        return ipaddress.ip_address(raw.decode("ascii").strip("[]")).compressed
    except (UnicodeDecodeError, ValueError):
        return None


SSL2_HEADER = 2  # RFC 5246 appendix E.2: msg_length, 15 bits with the top bit of the first byte set
SSL2_CLIENT_HELLO_FIXED = 9  # msg_type, version, cipher_spec_length, session_id_length, challenge_length


def parse_sslv2_client_hello(stream: bytes) -> ClientHello:
    """The SSL 2.0-compatible ClientHello at the start of ``stream`` (RFC 5246 appendix E.2, RFC 6101
    appendix E), sent by old clients that offer TLS to servers that may only speak SSL 2.0.

    It has no extensions, so no SNI or ALPN; ``versions`` is the highest version offered (3.x) and
    ``cipher_suites`` the TLS suites among the 3-byte cipher specs (first byte 0).  Raises
    :class:`NeedMore` when the message is cut and :class:`DecodeError` when it is malformed or
    offers SSL 2.0 only.
    """
    data = stream if isinstance(stream, bytes) else bytes(stream)
    n = len(data)
    if n < SSL2_HEADER:
        raise_short(data, 0, n, SSL2_HEADER)
    if not data[0] & 0x80:
        raise DecodeError("not an SSL 2.0 record with a 2-byte header")
    length = ((data[0] & 0x7F) << 8) | data[1]
    end = SSL2_HEADER + length
    if length < SSL2_CLIENT_HELLO_FIXED:
        raise DecodeError(f"SSL 2.0 ClientHello length {length} is too short")
    if n < end:
        raise_short(data, SSL2_HEADER, n, length)
    msg_type, version, spec_len, sid_len, chal_len = struct.unpack_from("!BHHHH", data, SSL2_HEADER)
    if msg_type != HS_CLIENT_HELLO:
        raise DecodeError(f"SSL 2.0 message type {msg_type} is not CLIENT-HELLO")
    if version >> 8 != 3:
        raise DecodeError(f"SSL 2.0 ClientHello version 0x{version:04x} offers no TLS")
    if spec_len % 3 or not spec_len:
        raise DecodeError("SSL 2.0 ClientHello cipher_spec_length is not a positive multiple of 3")
    if sid_len not in (0, 16) or not 16 <= chal_len <= 32:
        # RFC 6101 appendix E.2: session id 0 or 16 bytes; challenge 16 to 32 bytes
        raise DecodeError("SSL 2.0 ClientHello session id or challenge has a bad length")
    pos = SSL2_HEADER + SSL2_CLIENT_HELLO_FIXED
    if pos + spec_len + sid_len + chal_len != end:
        raise DecodeError("SSL 2.0 ClientHello fields do not fill the message")
    suites = tuple((data[i + 1] << 8) | data[i + 2] for i in range(pos, pos + spec_len, 3) if data[i] == 0)
    return ClientHello(
        sni=None, sni_raw_invalid=False, alpn=(), versions=(version,), legacy_version=version, ech=False,
        cipher_suites=_without_grease(suites), extensions=(), length=end, sslv2=True,
    )


def _record_header(stream: bytes, pos: int) -> tuple[int, int, int]:
    """(content_type, version, length) of the record at ``pos``; the caller checked 5 bytes exist."""
    ctype = stream[pos]
    version = (stream[pos + 1] << 8) | stream[pos + 2]
    length = (stream[pos + 3] << 8) | stream[pos + 4]
    return ctype, version, length


def read_client_hello(stream: bytes) -> ClientHello | None:
    """The ClientHello at the start of a client's TCP byte stream.

    Returns ``None`` while ``stream`` is a valid but incomplete prefix: the hello may
    span several records and segments (RFC 8446 section 5.1 lets a handshake message be
    fragmented over records).  Raises :class:`DecodeError` when it is not TLS or the
    hello is malformed.  An SSL 2.0-compatible hello (:func:`parse_sslv2_client_hello`) is read too.
    """
    if stream and stream[0] & 0x80:
        try:
            return parse_sslv2_client_hello(stream)
        except NeedMore:
            return None
    hs = bytearray()
    pos = 0
    n = len(stream)
    while True:
        if n - pos < 5:
            # check what we have of the header so that garbage fails early
            part = stream[pos:]
            if part and (part[0] != CT_HANDSHAKE or (len(part) > 1 and part[1] != 3)):
                raise DecodeError("not a TLS handshake record")
            return None
        ctype, version, length = _record_header(stream, pos)
        if ctype != CT_HANDSHAKE:
            # RFC 8446 section 5.1: handshake messages MUST NOT be interleaved with other record types
            raise DecodeError(f"record type {ctype} before the ClientHello is complete")
        if version >> 8 != 3:
            raise DecodeError(f"record version 0x{version:04x} is not TLS")
        if length == 0 or length > MAX_RECORD:
            # RFC 8446 section 5.1: zero-length handshake fragments MUST NOT be sent
            raise DecodeError(f"bad handshake record length {length}")
        if not hs and length >= 4 and n - pos >= 9 and stream[pos + 5] == HS_CLIENT_HELLO:
            # the usual case, a first record that holds the whole hello: no copy into hs
            need = 4 + ((stream[pos + 6] << 16) | (stream[pos + 7] << 8) | stream[pos + 8])
            if need <= length and pos + 5 + need <= n:
                return parse_client_hello(stream[pos + 5 : pos + 5 + need])
        hs += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if hs and hs[0] != HS_CLIENT_HELLO:
            raise DecodeError(f"first handshake message type {hs[0]} is not ClientHello")
        if len(hs) >= 4:
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if len(hs) >= need:
                return parse_client_hello(bytes(hs[:need]))
        if pos > n:  # the record itself is cut
            return None


# --------------------------------------------------------------------------- server side


def _parse_server_hello(body: Buffer) -> tuple[int, int, str | None, bool]:
    """(version, cipher_suite, alpn, hello_retry) of a ServerHello body (RFC 8446 section 4.1.3)."""
    # Read by index like the ClientHello; raise_short gives the errors of field-by-field reads.
    data, pos, end = body.data, body.pos, body.end
    if end - pos < 35:
        raise_short(data, pos, end, 2, 32, 1)  # legacy_version, random, legacy_session_id_echo length
    legacy_version = (data[pos] << 8) | data[pos + 1]
    random = data[pos + 2 : pos + 34]
    pos = _skip_session_id(data, pos + 34, end, "ServerHello")
    if end - pos < 3:
        raise_short(data, pos, end, 2, 1)  # cipher_suite, legacy_compression_method
    suite = (data[pos] << 8) | data[pos + 1]
    pos += 3
    version = legacy_version
    alpn = None
    if pos < end:
        pos, end = _u16_vector(data, pos, end)  # bytes after the extensions are not looked at
        while pos < end:
            ext_type, start, pos = _extension_at(data, pos, end)
            if ext_type == EXT_SUPPORTED_VERSIONS and pos - start == 2:
                version = (data[start] << 8) | data[start + 1]
            elif ext_type == EXT_ALPN:
                protos = _parse_alpn_list(data[start:pos])
                if protos:
                    alpn = _alpn_text(protos[0])
    return version, suite, alpn, random == HELLO_RETRY_RANDOM


def _first_certificate(body: Buffer) -> bytes:
    """DER of the first certificate of a Certificate message (RFC 5246 section 7.4.2 layout)."""
    certs = body.sub(body.pull_u24())
    return certs.pull_vector(3)


def _first_certificate_tls13(body: Buffer) -> bytes:
    # RFC 8446 section 4.4.2: certificate_request_context, then CertificateEntry list
    body.pull_vector(1)
    certs = body.sub(body.pull_u24())
    return certs.pull_vector(3)


def _cert_names(der: bytes) -> tuple[str | None, str | None]:
    """(subject, issuer) of a certificate as RFC 4514 strings; (None, None) when it cannot be read (a hostile
    or cut certificate only loses the names)."""
    try:
        names = read_certificate_names(der)
    except DecodeError:
        return None, None
    return (None, None) if names is None else (names.subject, names.issuer)


class _Flight:
    """What :func:`read_server_flight` has read so far (filled record by record)."""

    __slots__ = ("server_hello", "hello_retry", "encrypted", "version", "suite", "alpn", "alert", "subject",
                 "issuer", "complete")

    def __init__(self) -> None:
        self.server_hello = self.hello_retry = self.encrypted = False
        self.version: int | None = None
        self.suite: int | None = None
        self.alpn: str | None = None
        self.alert: TlsAlert | None = None
        self.subject: str | None = None
        self.issuer: str | None = None
        self.complete = True

    def result(self) -> ServerFlight:
        return ServerFlight(
            server_hello=self.server_hello,
            version=self.version,
            cipher_suite=self.suite,
            alpn=self.alpn,
            alert=self.alert,
            cert_subject=self.subject,
            cert_issuer=self.issuer,
            hello_retry=self.hello_retry,
            encrypted=self.encrypted,
            complete=self.complete,
        )


def read_server_flight(stream: bytes) -> ServerFlight:
    """Best-effort summary of the server's cleartext records, from its first byte.

    Parses records until application data, ChangeCipherSpec (unless a HelloRetryRequest
    means a cleartext ServerHello still follows), the end, or malformed input.  Raises
    :class:`DecodeError` only when the first record is not TLS at all.
    """
    if _COMPILED is not None:  # a TLS 1.3 server's usual start; None leaves every other stream to the walk below
        fields = _COMPILED.server_flight_fields(stream)
        if fields is not None:
            version, suite, alpn, encrypted, complete = fields
            return ServerFlight(server_hello=True, version=version, cipher_suite=suite,
                                alpn=None if alpn is None else _alpn_text(alpn), alert=None, cert_subject=None,
                                cert_issuer=None, hello_retry=False, encrypted=encrypted, complete=complete)
    n = len(stream)
    head = stream[:3]
    if head and (
        head[0] not in _CONTENT_TYPES or (len(head) > 1 and head[1] != 3) or (len(head) > 2 and head[2] > 4)
    ):
        raise DecodeError("server stream does not start with a TLS record")
    fl = _Flight()
    hs = bytearray()
    pos = 0
    while True:
        if pos == n:
            fl.complete = not hs and n > 0
            break
        if n - pos < 5:
            fl.complete = False
            break
        ctype, rversion, length = _record_header(stream, pos)
        if ctype not in _CONTENT_TYPES or rversion >> 8 != 3 or length > MAX_RECORD:
            if pos == 0:
                raise DecodeError("server stream does not start with a TLS record")
            break
        payload = stream[pos + 5 : pos + 5 + length]
        cut = len(payload) < length
        pos += 5 + length
        if not _flight_record(fl, ctype, payload, cut, hs):
            break
    return fl.result()


def _flight_record(fl: _Flight, ctype: int, payload: bytes, cut: bool, hs: bytearray) -> bool:
    """Take one server record into ``fl`` (handshake bytes gather in ``hs``); False when the cleartext
    part of the flight ends here."""
    if ctype == CT_APPLICATION_DATA:
        fl.encrypted = True
        return False
    if ctype == CT_CHANGE_CIPHER_SPEC:
        fl.encrypted = True
        # RFC 8446 section 4.1.4 / appendix D.4: after a HelloRetryRequest (and its
        # compatibility CCS) the real ServerHello still comes in cleartext.
        return _hrr_pending(fl.server_hello, fl.hello_retry)
    if ctype == CT_ALERT:
        if len(payload) >= 2 and fl.alert is None:
            fl.alert = make_alert(payload[0], payload[1])
        if cut:
            fl.complete = False
        # a fatal alert ends the handshake; a warning (e.g. unrecognized_name) may not
        return not (fl.alert is not None and fl.alert.level != 1)
    hs += payload
    ok = _flight_handshake(fl, hs)
    if cut:
        fl.complete = False
        return False
    return ok


def _flight_handshake(fl: _Flight, hs: bytearray) -> bool:
    """Read the complete handshake messages at the start of ``hs`` (consumed); False on a malformed one."""
    while len(hs) >= 4:
        need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
        if len(hs) < need:
            break
        msg_type = hs[0]
        body = Buffer(bytes(hs[4:need]))
        del hs[:need]
        try:
            if msg_type == HS_SERVER_HELLO:
                v, s, a, hrr = _parse_server_hello(body)
                if hrr:
                    fl.hello_retry = True
                else:
                    fl.server_hello = True
                fl.version, fl.suite = v, s
                if a is not None:
                    fl.alpn = a
            elif msg_type == HS_CERTIFICATE and fl.subject is None:
                first, second = _first_certificate, _first_certificate_tls13
                if fl.version == 0x0304:
                    first, second = second, first
                try:
                    der = first(Buffer(body.data))
                except DecodeError:
                    der = second(Buffer(body.data))
                fl.subject, fl.issuer = _cert_names(der)
        except DecodeError:
            return False
    return True


def _hrr_pending(server_hello: bool, hello_retry: bool) -> bool:
    """A HelloRetryRequest was seen and the real ServerHello has not come yet."""
    return hello_retry and not server_hello


def read_alerts(stream: bytes) -> TlsAlert | None:
    """The first cleartext alert in a TLS stream (either direction); never raises."""
    pos = 0
    n = len(stream)
    while n - pos >= 5:
        ctype, rversion, length = _record_header(stream, pos)
        if ctype not in _CONTENT_TYPES or rversion >> 8 != 3 or length > MAX_RECORD:
            return None
        if ctype in (CT_APPLICATION_DATA, CT_CHANGE_CIPHER_SPEC):
            return None
        payload = stream[pos + 5 : pos + 5 + length]
        if ctype == CT_ALERT:
            return make_alert(payload[0], payload[1]) if len(payload) >= 2 else None
        pos += 5 + length
    return None
