"""The field-by-field parsers that the index-based ones in meshpcap.decode replaced.

These are the ClientHello, ServerHello and DNS parsers as they were before they read
several fields per bounds check (commit 2dd6da0): one :class:`Buffer` read per field, every
host name through the careful normaliser; DNS name decompression is written here apart from
the package's (recursive where the package loops), so that it checks it rather than reuses it.  ``test_reference_parsers`` holds the fast parsers
to them: the same result, or the same exception class with the same message.
"""

from __future__ import annotations

import ipaddress
import struct

from meshpcap.decode.buffer import Buffer, DecodeError, NeedMore
from meshpcap.decode.dns import (
    _HOST_BYTES,
    _NAME_TYPES,
    TYPE_A,
    TYPE_AAAA,
    TYPE_NAMES,
    DnsMessage,
    Question,
    Record,
)
from meshpcap.decode.names import _normalize_careful, is_ip_literal
from meshpcap.decode.tls import (
    CT_HANDSHAKE,
    EXT_ALPN,
    EXT_ECH,
    EXT_SERVER_NAME,
    EXT_SUPPORTED_VERSIONS,
    HELLO_RETRY_RANDOM,
    HS_CLIENT_HELLO,
    MAX_RECORD,
    ClientHello,
    _alpn_text,
    _is_grease_alpn,
    _record_header,
    is_grease,
)

# --------------------------------------------------------------------------- TLS


def parse_sni(data: bytes) -> bytes | None:
    b = Buffer(data)
    names = b.sub(b.pull_u16())
    while not names.eof():
        name_type = names.pull_u8()
        name = names.pull_vector(2)
        if name_type == 0:
            return name
    return None


def parse_alpn_list(data: bytes) -> list[bytes]:
    b = Buffer(data)
    lst = b.sub(b.pull_u16())
    out = []
    while not lst.eof():
        proto = lst.pull_vector(1)
        if not proto:
            raise DecodeError("empty ALPN protocol name")
        out.append(proto)
    return out


def parse_client_hello(handshake: bytes) -> ClientHello:
    b = Buffer(handshake)
    msg_type = b.pull_u8()
    if msg_type != HS_CLIENT_HELLO:
        raise DecodeError(f"handshake type {msg_type} is not ClientHello")
    length = b.pull_u24()
    body = b.sub(length)
    try:
        return _parse_client_hello_body(body, 4 + length)
    except NeedMore as exc:
        raise DecodeError(f"ClientHello field overruns the message: {exc}") from None


def _parse_client_hello_body(b: Buffer, length: int) -> ClientHello:
    legacy_version = b.pull_u16()
    if legacy_version >> 8 != 3:
        raise DecodeError(f"ClientHello legacy_version 0x{legacy_version:04x} is not TLS")
    b.pull_bytes(32)  # random
    session_id = b.pull_vector(1)
    if len(session_id) > 32:
        raise DecodeError("ClientHello session id longer than 32 bytes")
    suites_raw = b.pull_vector(2)
    if len(suites_raw) % 2 or not suites_raw:
        raise DecodeError("ClientHello cipher_suites has a bad length")
    suites = struct.unpack(f"!{len(suites_raw) // 2}H", suites_raw)
    if not b.pull_vector(1):
        raise DecodeError("ClientHello has no compression methods")
    sni: str | None = None
    sni_invalid = False
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] | None = None
    ech = False
    literal = None
    ext_types: list[int] = []
    if not b.eof():
        exts = b.sub(b.pull_u16())
        if not b.eof():
            raise DecodeError("bytes after ClientHello extensions")
        seen: set[int] = set()
        while not exts.eof():
            ext_type = exts.pull_u16()
            data = exts.pull_vector(2)
            if ext_type in seen:
                raise DecodeError(f"duplicate extension {ext_type}")
            seen.add(ext_type)
            if not is_grease(ext_type):
                ext_types.append(ext_type)
            if ext_type == EXT_SERVER_NAME:
                raw = parse_sni(data)
                if raw is not None:
                    sni = _normalize_careful(raw)
                    if sni is None or is_ip_literal(sni):
                        sni, sni_invalid = None, True
                        try:
                            literal = str(ipaddress.ip_address(raw.decode("ascii").strip("[]")))
                        except (UnicodeDecodeError, ValueError):
                            literal = None
            elif ext_type == EXT_ALPN:
                alpn = tuple(_alpn_text(p) for p in parse_alpn_list(data) if not _is_grease_alpn(p))
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                vb = Buffer(data)
                raw_versions = vb.pull_vector(1)
                if len(raw_versions) % 2:
                    raise DecodeError("supported_versions has an odd length")
                versions = tuple(
                    v for v in struct.unpack(f"!{len(raw_versions) // 2}H", raw_versions) if not is_grease(v)
                )
            elif ext_type == EXT_ECH:
                ech = True
    return ClientHello(
        sni=sni,
        sni_raw_invalid=sni_invalid,
        alpn=alpn,
        versions=versions if versions else (legacy_version,),
        legacy_version=legacy_version,
        ech=ech,
        cipher_suites=tuple(s for s in suites if not is_grease(s)),
        extensions=tuple(ext_types),
        length=length,
        sni_literal=literal,
    )


def read_client_hello(stream: bytes) -> ClientHello | None:
    hs = bytearray()
    pos = 0
    n = len(stream)
    while True:
        if n - pos < 5:
            part = stream[pos:]
            if part and (part[0] != CT_HANDSHAKE or (len(part) > 1 and part[1] != 3)):
                raise DecodeError("not a TLS handshake record")
            return None
        ctype, version, length = _record_header(stream, pos)
        if ctype != CT_HANDSHAKE:
            raise DecodeError(f"record type {ctype} before the ClientHello is complete")
        if version >> 8 != 3:
            raise DecodeError(f"record version 0x{version:04x} is not TLS")
        if length == 0 or length > MAX_RECORD:
            raise DecodeError(f"bad handshake record length {length}")
        hs += stream[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if hs and hs[0] != HS_CLIENT_HELLO:
            raise DecodeError(f"first handshake message type {hs[0]} is not ClientHello")
        if len(hs) >= 4:
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if len(hs) >= need:
                return parse_client_hello(bytes(hs[:need]))
        if pos > n:
            return None


def parse_server_hello(body: Buffer) -> tuple[int, int, str | None, bool]:
    legacy_version = body.pull_u16()
    random = body.pull_bytes(32)
    sid = body.pull_vector(1)
    if len(sid) > 32:
        raise DecodeError("ServerHello session id longer than 32 bytes")
    suite = body.pull_u16()
    body.pull_u8()  # compression
    version = legacy_version
    alpn = None
    if not body.eof():
        exts = body.sub(body.pull_u16())
        while not exts.eof():
            ext_type = exts.pull_u16()
            data = exts.pull_vector(2)
            if ext_type == EXT_SUPPORTED_VERSIONS and len(data) == 2:
                version = (data[0] << 8) | data[1]
            elif ext_type == EXT_ALPN:
                protos = parse_alpn_list(data)
                if protos:
                    alpn = _alpn_text(protos[0])
    return version, suite, alpn, random == HELLO_RETRY_RANDOM


# --------------------------------------------------------------------------- DNS

NAME_MAX_OCTETS = 255  # RFC 1035 section 2.3.4
POINTER_HOPS_MAX = 127  # the package's bound on compression pointers followed in one name


def _read_name(data: bytes, pos: int, end: int) -> tuple[list[bytes], int]:
    """RFC 1035 section 4.1.4 name decompression, written apart from the package's loop (recursion over
    label runs), for the reference parser.  A pointer must point before the run of labels holding it (so
    no forward pointer and no loop), at most :data:`POINTER_HOPS_MAX` are followed, and the name is at
    most 255 octets on the wire.  Returns the labels and the offset after the name where it was written."""
    labels: list[bytes] = []
    after = _read_run(data, pos, end, pos, labels, [1], 0)
    return labels, after


def _read_run(data: bytes, pos: int, limit: int, run_start: int, labels: list[bytes], octets: list[int],
              hops: int) -> int:
    """Read the labels of one run starting at ``pos`` into ``labels``; returns the offset after this run's
    own bytes (after its terminating zero or its pointer)."""
    while True:
        if pos >= limit:
            raise NeedMore(f"DNS name runs past the end at offset {pos}")
        first = data[pos]
        if first >> 6 == 3:  # a pointer: 14 bits of offset
            if pos + 1 >= limit:
                raise NeedMore(f"DNS compression pointer cut at offset {pos}")
            target = (first & 0x3F) * 256 + data[pos + 1]
            if not target < run_start:
                raise DecodeError(f"DNS compression pointer at offset {pos} points forward or loops (to {target})")
            if hops + 1 > POINTER_HOPS_MAX:
                raise DecodeError("DNS name has too many compression pointers")
            # the rest of the name is wherever the pointer says, anywhere earlier in the message
            _read_run(data, target, len(data), target, labels, octets, hops + 1)
            return pos + 2
        if first >> 6:
            raise DecodeError(f"DNS label type 0x{first & 0xC0:02x} at offset {pos} is not supported")
        if first == 0:
            return pos + 1
        octets[0] += first + 1
        if octets[0] > NAME_MAX_OCTETS:
            raise DecodeError("DNS name longer than 255 octets")
        if pos + 1 + first > limit:
            raise NeedMore(f"DNS label runs past the end at offset {pos}")
        labels.append(data[pos + 1 : pos + 1 + first])
        pos += 1 + first


def _name_text(labels: list[bytes]) -> tuple[str | None, bool]:
    if not labels:
        return None, False
    for label in labels:
        if not _HOST_BYTES.issuperset(label):
            return None, True
    name = _normalize_careful(b".".join(labels))
    return name, name is None


def parse_dns(payload: bytes) -> DnsMessage:
    data = bytes(payload)
    buf = Buffer(data)
    msg_id = buf.pull_u16()
    flags = buf.pull_u16()
    qdcount = buf.pull_u16()
    ancount = buf.pull_u16()
    buf.pull_u16()
    buf.pull_u16()
    invalid = 0

    questions: list[Question] = []
    for _ in range(qdcount):
        labels, buf.pos = _read_name(data, buf.pos, len(data))
        name, bad = _name_text(labels)
        invalid += bad
        qtype = buf.pull_u16()
        qclass = buf.pull_u16()
        questions.append(Question(name, qtype, qclass))

    answers: list[Record] = []
    for _ in range(ancount):
        labels, buf.pos = _read_name(data, buf.pos, len(data))
        name, bad = _name_text(labels)
        invalid += bad
        rtype = buf.pull_u16()
        rclass = buf.pull_u16()
        ttl = buf.pull_u32()
        rdlength = buf.pull_u16()
        rd_start = buf.pos
        rdata = buf.pull_bytes(rdlength)
        value: str | None = None
        if rtype == TYPE_A:
            if rdlength != 4:
                raise DecodeError(f"DNS A record with {rdlength}-byte RDATA")
            value = str(ipaddress.IPv4Address(rdata))
        elif rtype == TYPE_AAAA:
            if rdlength != 16:
                raise DecodeError(f"DNS AAAA record with {rdlength}-byte RDATA")
            value = ipaddress.IPv6Address(rdata).compressed
        elif rtype in _NAME_TYPES:
            target_labels, target_end = _read_name(data, rd_start, rd_start + rdlength)
            if target_end != rd_start + rdlength:
                raise DecodeError(f"DNS {TYPE_NAMES[rtype]} RDATA length {rdlength} does not match its name")
            value, bad = _name_text(target_labels)
            invalid += bad
        answers.append(Record(name, rtype, rclass, ttl, value))

    return DnsMessage(
        id=msg_id,
        is_response=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        rcode=flags & 0xF,
        truncated=bool(flags & 0x0200),
        questions=tuple(questions),
        answers=tuple(answers),
        invalid_names=invalid,
    )
