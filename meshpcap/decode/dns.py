"""DNS messages (RFC 1035, AAAA from RFC 3596, TCP framing from RFC 7766): questions, answers, CNAME chains."""

from __future__ import annotations

import ipaddress
import struct

from meshpcap._dataclass import dataclass, record_maker
from meshpcap._native import load as _load_native
from meshpcap.decode.buffer import DecodeError, NeedMore, raise_short
from meshpcap.decode.names import normalize_hostname

DNS_ABI = 1  # must equal DNS_ABI in _dns.c
_COMPILED = _load_native("meshpcap.decode._dns", DNS_ABI)  # messages in their usual shape in C; None: all here

HEADER_LEN = 12  # RFC 1035 section 4.1.1
MAX_WIRE_NAME = 255  # RFC 1035 section 2.3.4: a name is at most 255 octets on the wire
MAX_POINTERS = 127  # more jumps than this cannot occur in a 64 KiB message with strictly decreasing targets

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_PTR = 12
TYPE_AAAA = 28

TYPE_NAMES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    41: "OPT",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}

RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}

# Answers that mean "blocked" rather than a real address (DNS filters and sinkholes).
SINKHOLE_ADDRESSES = frozenset({"0.0.0.0", "::", "127.0.0.1", "::1"})

_NAME_TYPES = frozenset({TYPE_NS, TYPE_CNAME, TYPE_PTR})
# RFC 1123 section 2.1 host-name characters, plus "_" which real DNS data carries (SRV, DKIM, ACME labels).
_HOST_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_HOST_BYTES_AND_DOT = bytes(sorted(_HOST_BYTES | {0x2E}))  # a bytes.translate deletion table

_HEADER = struct.Struct("!HHHHHH").unpack_from  # RFC 1035 section 4.1.1
_QUESTION_TAIL = struct.Struct("!HH").unpack_from  # QTYPE, QCLASS (section 4.1.2)
_RR_FIXED = struct.Struct("!HHIH").unpack_from  # TYPE, CLASS, TTL, RDLENGTH (section 4.1.3)


@dataclass(frozen=True, slots=True)
class Question:
    """One question entry; ``name`` is normalised, or ``None`` when it is not a valid host name (or is the root)."""

    name: str | None
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class Record:
    """One answer record.

    ``value`` is the address text for A/AAAA (``ipaddress`` compressed form), the
    normalised target for CNAME/NS/PTR (``None`` when invalid), and ``None`` for other types.
    """

    name: str | None
    rtype: int
    rclass: int
    ttl: int
    value: str | None


@dataclass(frozen=True, slots=True)
class DnsMessage:
    """A parsed DNS message; authority and additional sections are not decoded."""

    id: int
    is_response: bool
    opcode: int
    rcode: int
    truncated: bool
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    invalid_names: int  # names present on the wire but rejected by host-name validation

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, f"RCODE{self.rcode}")


def _read_name(data: bytes, pos: int, end: int) -> tuple[list[bytes], int]:
    """Decompress the name at ``pos``; return its labels and the offset just after it in the stream.

    ``end`` bounds the uncompressed part (the record's RDATA, or the message end).
    """
    labels: list[bytes] = []
    wire_len = 1  # the root label
    after: int | None = None  # where reading continues once the first pointer is followed
    segment_start = pos  # start of the run of labels being read (the name itself, then each pointer target)
    hops = 0
    limit = end
    while True:
        if pos >= limit:
            raise NeedMore(f"DNS name runs past the end at offset {pos}")
        length = data[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            # RFC 1035 section 4.1.4 message compression.
            if pos + 1 >= limit:
                raise NeedMore(f"DNS compression pointer cut at offset {pos}")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            # A pointer must go strictly backwards: before the start of the labels that hold it.
            # Legitimate compressors only point at names written earlier, so this rejects forward
            # pointers and, since targets strictly decrease, every loop.
            if target >= segment_start:
                raise DecodeError(f"DNS compression pointer at offset {pos} points forward or loops (to {target})")
            hops += 1
            if hops > MAX_POINTERS:
                raise DecodeError("DNS name has too many compression pointers")
            if after is None:
                after = pos + 2
            pos = target
            segment_start = target
            limit = len(data)  # pointer targets may lie anywhere earlier in the message
            continue
        if kind != 0:
            # 0x40 extended label types (RFC 6891 section 5) and 0x80 are not in use.
            raise DecodeError(f"DNS label type 0x{kind:02x} at offset {pos} is not supported")
        if length == 0:
            pos += 1
            break
        wire_len += length + 1
        if wire_len > MAX_WIRE_NAME:
            raise DecodeError("DNS name longer than 255 octets")
        if pos + 1 + length > limit:
            raise NeedMore(f"DNS label runs past the end at offset {pos}")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return labels, (after if after is not None else pos)


def _name_at(data: bytes, pos: int, end: int, seen: dict[int, tuple[str | None, bool]]) -> tuple[str | None, bool, int]:
    """(normalised name or None, whether it counts as invalid, offset after it) of the name at ``pos``.

    ``end`` bounds the uncompressed part, as for :func:`_read_name`.  ``seen`` maps the offset
    of each name without pointers read so far in this message to its text.  A name that is
    nothing but a pointer to one of them (RFC 1035 section 4.1.4; typically ``c00c``, the
    question name) gets that text without reading it again: :func:`_read_name` would follow
    the same labels from the same start, with the same limit (the rest of the message) and
    the same 255-octet count, after one hop.
    """
    if pos + 1 < end and data[pos] >= 0xC0:
        target = ((data[pos] & 0x3F) << 8) | data[pos + 1]
        if target < pos:
            hit = seen.get(target)
            if hit is not None:
                return hit[0], hit[1], pos + 2
    labels, after = _read_name(data, pos, end)
    if not labels:
        return None, False, after  # the root name: not a host name, but nothing wrong with it
    joined = b".".join(labels)
    # Every label holds host-name bytes only exactly when the joined name holds nothing but
    # those bytes and dots, and no more dots than the join put in: a "." byte inside a label
    # must not pass as a separator.
    if joined.count(b".") != len(labels) - 1 or joined.translate(None, _HOST_BYTES_AND_DOT):
        name, bad = None, True
    else:
        name = normalize_hostname(joined)
        bad = name is None
    # Without a pointer the name is its labels with their length octets, and the root label;
    # a name that stops at a pointer has fewer wire bytes than that.
    if after - pos == len(joined) + 2:
        seen[pos] = (name, bad)
    return name, bad, after


_make_question, _make_record, _make_message = record_maker(Question), record_maker(Record), record_maker(DnsMessage)


def _message_of(msg_id: int, flags: int, questions: tuple, answers: tuple, invalid: int) -> DnsMessage:
    """The DnsMessage of what ``_dns.c`` message_fields read (an AAAA record's value as its 16 bytes)."""
    if answers and any(a[1] == TYPE_AAAA for a in answers):
        answers = tuple((a[0], a[1], a[2], a[3], ipaddress.IPv6Address(a[4]).compressed) if a[1] == TYPE_AAAA else a
                        for a in answers)
    return _make_message((msg_id, bool(flags & 0x8000), (flags >> 11) & 0xF, flags & 0xF, bool(flags & 0x0200),
                          tuple(map(_make_question, questions)), tuple(map(_make_record, answers)), invalid))


def parse_dns(payload: bytes) -> DnsMessage:
    """Parse the header, questions and answers of one DNS message (UDP payload, or a TCP message without its length prefix).

    Raises :class:`DecodeError` (or its subclass :class:`NeedMore` when the data stops early)
    for malformed messages. Names that are not valid host names become ``None`` and are counted
    in ``invalid_names``; they do not fail the message.  A message in the usual shape (each name
    labels, or a pointer to a name read before) is read by the compiled helper where it is built
    (``_dns.c``); every other, and every error, here.
    """
    data = bytes(payload)
    if _COMPILED is not None:
        fields = _COMPILED.message_fields(data)
        if fields is not None:
            return _message_of(*fields)
    n = len(data)
    # RFC 1035 section 4.1.1 header; NSCOUNT and ARCOUNT are read but their sections not decoded.
    if n < HEADER_LEN:
        raise_short(data, 0, n, 2, 2, 2, 2, 2, 2)
    msg_id, flags, qdcount, ancount, _, _ = _HEADER(data)
    pos = HEADER_LEN
    invalid = 0
    seen: dict[int, tuple[str | None, bool]] = {}

    questions: list[Question] = []
    for _ in range(qdcount):
        name, bad, pos = _name_at(data, pos, n, seen)
        invalid += bad
        if pos + 4 > n:
            raise_short(data, pos, n, 2, 2)
        qtype, qclass = _QUESTION_TAIL(data, pos)
        pos += 4
        questions.append(Question(name, qtype, qclass))

    answers: list[Record] = []
    for _ in range(ancount):
        name, bad, pos = _name_at(data, pos, n, seen)
        invalid += bad
        if pos + 10 > n:
            raise_short(data, pos, n, 2, 2, 4, 2)
        rtype, rclass, ttl, rdlength = _RR_FIXED(data, pos)
        rd_start = pos + 10
        pos = rd_end = rd_start + rdlength
        if rd_end > n:
            raise_short(data, rd_start, n, rdlength)
        value: str | None = None
        if rtype == TYPE_A:
            if rdlength != 4:
                raise DecodeError(f"DNS A record with {rdlength}-byte RDATA")
            value = "%d.%d.%d.%d" % (data[rd_start], data[rd_start + 1], data[rd_start + 2], data[rd_start + 3])
        elif rtype == TYPE_AAAA:
            # RFC 3596 section 2.2: 16 octets.
            if rdlength != 16:
                raise DecodeError(f"DNS AAAA record with {rdlength}-byte RDATA")
            value = ipaddress.IPv6Address(data[rd_start:rd_end]).compressed
        elif rtype in _NAME_TYPES:
            value, bad, target_end = _name_at(data, rd_start, rd_end, seen)
            if target_end != rd_end:
                raise DecodeError(f"DNS {TYPE_NAMES[rtype]} RDATA length {rdlength} does not match its name")
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


def split_dns_tcp(stream: bytes) -> tuple[list[bytes], int]:
    """Split DNS over TCP into messages (RFC 7766 section 8: each message has a 2-byte length prefix).

    Returns the complete messages (without prefixes) and the number of bytes consumed; a
    trailing partial message is left for the caller to complete. A length shorter than a DNS
    header raises :class:`DecodeError`: the stream is not DNS framing.
    """
    messages: list[bytes] = []
    pos = 0
    n = len(stream)
    while n - pos >= 2:
        length = (stream[pos] << 8) | stream[pos + 1]
        if length < HEADER_LEN:
            raise DecodeError(f"DNS over TCP length prefix {length} at offset {pos} is shorter than a DNS header")
        if n - pos - 2 < length:
            break
        messages.append(bytes(stream[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    return messages, pos


def answers_by_address(msg: DnsMessage) -> dict[str, tuple[str, ...]]:
    """Map each A/AAAA address in the answers to the chain of names that leads to it.

    The chain runs from the question name through each CNAME to the owner of the address
    record, e.g. ``("a.teams.microsoft.com", "x.trafficmanager.net", "y.s-msedge.net")``.
    When the message has questions, only addresses reachable from a question name are
    returned (unrelated records are not trusted); without questions the chain starts at
    the first name reachable backwards through the CNAMEs.
    """
    canonical_of: dict[str, str] = {}  # CNAME target -> owner
    for rec in msg.answers:
        if rec.rtype == TYPE_CNAME and rec.name and rec.value and rec.value not in canonical_of:
            canonical_of[rec.value] = rec.name
    qnames = {q.name for q in msg.questions if q.name}
    result: dict[str, tuple[str, ...]] = {}
    for rec in msg.answers:
        if rec.rtype not in (TYPE_A, TYPE_AAAA) or rec.value is None or rec.name is None:
            continue
        chain = [rec.name]
        seen = {rec.name}
        cur = rec.name
        while cur not in qnames and cur in canonical_of:
            cur = canonical_of[cur]
            if cur in seen:  # CNAME loop in hostile data
                break
            seen.add(cur)
            chain.append(cur)
        if msg.questions and chain[-1] not in qnames:
            continue
        result[rec.value] = tuple(reversed(chain))
    return result


def cname_chain_targets(msg: DnsMessage) -> dict[str, str]:
    """Map each answered address to the question name it was asked for, following CNAME chains."""
    return {addr: chain[0] for addr, chain in answers_by_address(msg).items()}
