"""Differential tests: the fast parsers against the careful ones they must agree with.

The ClientHello, ServerHello and DNS parsers read several fields per bounds check, and
``normalize_hostname`` and the DNS name reader have shortcuts for the common case.  Here
hypothesis feeds mutated valid messages (bit flips, special bytes, cuts, insertions,
deletions) and random names to both sides: each input must give the same result, or the
same exception class (``NeedMore`` versus ``DecodeError``) with the same message.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap import testing as mt
from meshpcap.decode import dns, names, tls
from meshpcap.decode.buffer import Buffer, NeedMore, raise_short
from tests.decode import reference_parsers as ref
from tests.decode.test_dns import CHAIN, _header, _name, _rr

DIFF = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bytes that make interesting mutations: lengths, name characters, a compression pointer, 0xff
_SPECIAL = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0A, 0x10, 0x20, 0x2D, 0x2E, 0x30, 0x3F, 0x40, 0x41, 0x5F, 0x80, 0xC0, 0xFF)


def outcome(parse, data):
    try:
        return "ok", parse(data)
    except Exception as exc:  # the class and message are what must agree
        return type(exc), str(exc)


@st.composite
def mutated(draw, bases):
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[i] = draw(st.sampled_from(_SPECIAL))
        elif op == 2:
            del data[i:]
        elif op == 3:
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[i : i + draw(st.integers(1, 4))]
    return bytes(data)


# --------------------------------------------------------------------------- TLS

_NO_EXTENSIONS = mt.tls.build_handshake(1, bytes.fromhex("0303") + bytes(32) + b"\x00" + bytes.fromhex("0002c02f") + b"\x01\x00")
HELLOS = [
    mt.tls.build_client_hello(sni, alpn=alpn, grease=grease, ech=ech, versions=versions, padding_to=pad, record=False)
    for sni, alpn, grease, ech, versions, pad in [
        ("teams.microsoft.com", ("h2", "http/1.1"), False, False, (0x0304, 0x0303), None),
        ("Upper.Example.COM.", ("h3",), True, True, (0x0304, 0x0303), None),
        ("1.2.3.4", (), False, False, (0x0303,), None),
        (b"bad name!", ("h2",), True, False, (0x0304,), 600),
        (b"x" * 63 + b".example", (), False, False, (0x0304, 0x0303), None),
        (None, ("http/1.1",), False, True, (0x0304, 0x0303), None),
    ]
] + [_NO_EXTENSIONS]
SERVER_HELLOS = [
    mt.tls.build_server_hello(version, alpn=alpn, hello_retry=hrr, record=False)[4:]
    for version, alpn, hrr in [(0x0304, None, False), (0x0304, "h2", True), (0x0303, "h2", False), (0x0303, None, False)]
]


def test_grease_set_is_is_grease():
    assert tls._GREASE == {v for v in range(0x10000) if tls.is_grease(v)}


@DIFF
@given(msg=mutated(HELLOS))
def test_parse_client_hello_matches_reference(msg):
    assert outcome(tls.parse_client_hello, msg) == outcome(ref.parse_client_hello, msg)


@DIFF
@given(msg=mutated(HELLOS), fragment=st.sampled_from([2**14, 300, 40]), record_cut=st.integers(0, 2000))
def test_read_client_hello_matches_reference(msg, fragment, record_cut):
    stream = mt.tls.build_record(tls.CT_HANDSHAKE, msg, version=0x0301, max_fragment=fragment)
    for data in (stream, stream[:record_cut], stream + b"\x14\x03\x03\x00\x01\x01"):
        assert outcome(tls.read_client_hello, data) == outcome(ref.read_client_hello, data)


@DIFF
@given(data=st.one_of(st.binary(max_size=40), mutated([b"\x00\x0e\x00\x00\x0bexample.com", b"\x00\x0c\x02h2\x08http/1.1"])))
def test_sni_and_alpn_lists_match_reference(data):
    assert outcome(tls._parse_sni, data) == outcome(ref.parse_sni, data)
    assert outcome(tls._parse_alpn_list, data) == outcome(ref.parse_alpn_list, data)


@DIFF
@given(body=mutated(SERVER_HELLOS))
def test_parse_server_hello_matches_reference(body):
    assert outcome(lambda b: tls._parse_server_hello(Buffer(b)), body) == outcome(lambda b: ref.parse_server_hello(Buffer(b)), body)


# --------------------------------------------------------------------------- DNS

DNS_MESSAGES = [
    CHAIN,
    _header(0x0100, 1, 0) + _name("World.Teams.Microsoft.COM") + struct.pack("!HH", 65, 1),
    # the question name, then answers that point at it (c00c) or at a suffix of it (c010)
    _header(0x8180, 1, 4)
    + _name("www.example.com")
    + struct.pack("!HH", 1, 1)
    + _rr(b"\xc0\x0c", 5, b"\x03cdn\xc0\x10")
    + _rr(b"\x03cdn\xc0\x10", 1, b"\x01\x02\x03\x04")
    + _rr(b"\xc0\x0c", 28, bytes.fromhex("20010db8000000000000000000000001"))
    + _rr(b"\xc0\x0c", 16, b"\x05hello"),
    # an answer name read first as CNAME RDATA, then pointed at
    _header(0x8180, 1, 2)
    + _name("q.example")
    + struct.pack("!HH", 1, 1)
    + _rr(b"\xc0\x0c", 5, _name("t.example"))
    + _rr(b"\xc0\x27", 1, b"\x0a\x00\x00\x01"),
    _header(0x8180, 1, 1) + b"\x05ev l.\x03com\x00" + struct.pack("!HH", 1, 1) + _rr(b"\xc0\x0c", 1, bytes(4)),
    _header(0x8180, 1, 1) + b"\x00" + struct.pack("!HH", 2, 1) + _rr(b"\xc0\x0c", 2, b"\xc0\x0c"),
]


def test_dns_bases_parse():
    # the bases are valid (mutations of them then reach every branch), and the CNAME target
    # at offset 39 that the last answer of the fourth base points at is where it is meant to be
    for msg in DNS_MESSAGES:
        assert dns.parse_dns(msg) == ref.parse_dns(msg)
    assert dns.parse_dns(DNS_MESSAGES[3]).answers[1].name == "t.example"


@pytest.mark.parametrize("first_link", [b"", b"\x01b"])
@pytest.mark.parametrize("questions", [128, 129])
def test_dns_pointer_hop_limit_matches_reference(questions, first_link):
    # Question 0 is "a", question 1 is first_link and a pointer to it, and every later one is
    # only a pointer to the one before: reading question k takes k hops.  127 are allowed, 128
    # are not, although each of these names is a pointer to one read before.
    starts = [12]
    body = _name("a") + struct.pack("!HH", 1, 1)
    for k in range(1, questions):
        starts.append(12 + len(body))
        body += (first_link if k == 1 else b"") + struct.pack("!HHH", 0xC000 | starts[-2], 1, 1)
    msg = _header(0x0100, questions, 0) + body
    assert outcome(dns.parse_dns, msg) == outcome(ref.parse_dns, msg)
    if questions == 128:
        assert len({q.name for q in dns.parse_dns(msg).questions[1:]}) == 1
    else:
        with pytest.raises(dns.DecodeError, match="too many compression pointers"):
            dns.parse_dns(msg)


_Q = struct.pack("!HH", 1, 1)


@pytest.mark.parametrize("name,expected", [
    (b"\xc0\x0c", "points forward or loops (to 12)"),  # the question's name points at itself
    (b"\x01a\xc0\x0c", "points forward or loops (to 12)"),  # at the start of its own run of labels
    (b"\x01a\xc0\x0e", "points forward or loops (to 14)"),  # at itself, after a label
    (b"\xc0\x20", "points forward or loops (to 32)"),  # forward
    (b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3d" + b"d" * 61 + b"\x00", None),  # 255
    (b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3e" + b"d" * 62 + b"\x00",
     "longer than 255 octets"),  # 256
    (b"\x01a\x40", "label type 0x40"),
    (b"\x01a\x80", "label type 0x80"),
    (b"\x02a", "label runs past the end"),
    (b"\x01a\xc0", "compression pointer cut"),
])
def test_dns_name_edges_match_reference(name, expected):
    """Decompression edges the mutation tests may not reach: each against the independent reference."""
    msg = _header(0x0100, 1, 0) + name + (_Q if expected is None else b"")
    got = outcome(dns.parse_dns, msg)
    assert got == outcome(ref.parse_dns, msg)
    if expected is None:
        assert got[0] == "ok" and len(got[1].questions[0].name) == 253  # 255 octets on the wire
    else:
        assert expected in got[1]


@DIFF
@given(msg=mutated(DNS_MESSAGES))
def test_parse_dns_matches_reference(msg):
    assert outcome(dns.parse_dns, msg) == outcome(ref.parse_dns, msg)


@DIFF
@given(data=st.binary(max_size=120))
def test_parse_dns_random_bytes_match_reference(data):
    data = _header(0x8180, 2, 3) + data
    assert outcome(dns.parse_dns, data) == outcome(ref.parse_dns, data)


# --------------------------------------------------------------------------- host names

_label = st.text("abcxyzABCXYZ0189-_", min_size=0, max_size=65)
_plainish = st.builds(
    lambda labels, dot: ".".join(labels) + ("." if dot else ""),
    st.lists(st.one_of(_label, st.sampled_from(["a" * 62, "b" * 63, "c" * 64, "-a", "a-", "a--b"])), min_size=1, max_size=8),
    st.booleans(),
)
_long = st.builds(lambda n, dot: ".".join(["x" * 62] * 4)[:n] + ("." if dot else ""), st.integers(245, 256), st.booleans())
_any_text = st.text(st.sampled_from("abZ09-_. \t\x00é\u0130K"), max_size=20)
HOSTNAMES = st.one_of(_plainish, _long, _any_text)


@DIFF
@given(raw=HOSTNAMES)
def test_normalize_hostname_fast_path_matches_careful(raw):
    assert names.normalize_hostname(raw) == names._normalize_careful(raw)
    data = raw.encode("utf-8")
    for value in (data, bytearray(data), memoryview(data)):
        assert names.normalize_hostname(value) == names._normalize_careful(value)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("x" * 63 + ".com", "x" * 63 + ".com"),
        ("x" * 64 + ".com", None),
        (".".join(["a" * 63] * 3) + "." + "b" * 61, ".".join(["a" * 63] * 3) + "." + "b" * 61),  # 253
        (".".join(["a" * 63] * 3) + "." + "b" * 62, None),  # 254
        (".".join(["a" * 63] * 3) + "." + "b" * 61 + ".", ".".join(["a" * 63] * 3) + "." + "b" * 61),
        ("A-B.c_D.", "a-b.c_d"),
        (" a.com ", "a.com"),  # the careful path strips spaces
        ("a..b", None),
        ("a.b..", None),
        ("-a.b", None),
        ("a-.b", None),
        ("\u0130.com", None),  # lower-cases to non-ASCII
    ],
)
def test_normalize_hostname_edges(raw, expected):
    assert names.normalize_hostname(raw) == expected == names._normalize_careful(raw)
    assert names.normalize_hostname(raw.encode("utf-8")) == names._normalize_careful(raw.encode("utf-8"))


# --------------------------------------------------------------------------- raise_short


@given(data=st.binary(max_size=12), pos=st.integers(0, 12), sizes=st.lists(st.integers(0, 6), min_size=1, max_size=4))
def test_raise_short_raises_like_field_reads(data, pos, sizes):
    pos = min(pos, len(data))
    if pos + sum(sizes) <= len(data):
        with pytest.raises(AssertionError):
            raise_short(data, pos, len(data), *sizes)
        return
    buf = Buffer(data, pos)
    with pytest.raises(NeedMore) as expected:
        for n in sizes:
            buf.pull_bytes(n)
    with pytest.raises(NeedMore) as got:
        raise_short(data, pos, len(data), *sizes)
    assert str(got.value) == str(expected.value)
