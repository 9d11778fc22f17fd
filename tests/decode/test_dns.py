"""Tests for meshpcap.decode.dns: header, questions, answers, compression, TCP framing, CNAME chains."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode.buffer import DecodeError, NeedMore
from meshpcap.decode.dns import (
    RCODE_NAMES,
    SINKHOLE_ADDRESSES,
    TYPE_NAMES,
    answers_by_address,
    cname_chain_targets,
    parse_dns,
    split_dns_tcp,
)

# A compressed response (built by scapy, DNS(...).compress(), checked by hand):
#   header   0007 8180 0001 0003 0000 0000   id 7, QR RD RA, 1 question, 3 answers
#   question a.teams.microsoft.com A IN                       (offset 12)
#   answer   c00c CNAME x.trafficmanager.net                  (owner -> question name)
#   answer   c033 CNAME 01 79 08 s-msedge c044                (target "y" + pointer to "net")
#   answer   c055 A 1.2.3.4
CHAIN = bytes.fromhex(
    "000781800001000300000000"
    "0161057465616d73096d6963726f736f667403636f6d0000010001"
    "c00c0005000100000000001601780e747261666669636d616e61676572036e657400"
    "c0330005000100000000000d017908732d6d7365646765c044"
    "c0550001000100000000000401020304"
)


def _name(text: str) -> bytes:
    out = b""
    for label in text.split(".") if text else []:
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def _header(flags: int, qd: int, an: int, msg_id: int = 0x1234) -> bytes:
    return struct.pack("!HHHHHH", msg_id, flags, qd, an, 0, 0)


def _rr(owner: bytes, rtype: int, rdata: bytes, ttl: int = 60) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _query(name: str, qtype: int = 1) -> bytes:
    return _header(0x0100, 1, 0) + _name(name) + struct.pack("!HH", qtype, 1)


def test_cname_chain_to_question_name() -> None:
    msg = parse_dns(CHAIN)
    assert msg.id == 7 and msg.is_response and msg.rcode == 0 and not msg.truncated
    assert msg.questions[0].name == "a.teams.microsoft.com"
    assert [(r.name, TYPE_NAMES[r.rtype], r.value) for r in msg.answers] == [
        ("a.teams.microsoft.com", "CNAME", "x.trafficmanager.net"),
        ("x.trafficmanager.net", "CNAME", "y.s-msedge.net"),
        ("y.s-msedge.net", "A", "1.2.3.4"),
    ]
    assert cname_chain_targets(msg) == {"1.2.3.4": "a.teams.microsoft.com"}
    assert answers_by_address(msg) == {"1.2.3.4": ("a.teams.microsoft.com", "x.trafficmanager.net", "y.s-msedge.net")}


def test_query_fields() -> None:
    msg = parse_dns(_query("World.Teams.Microsoft.COM", 65))
    assert not msg.is_response and msg.opcode == 0 and msg.answers == ()
    assert msg.questions == (msg.questions[0],)
    q = msg.questions[0]
    assert (q.name, TYPE_NAMES[q.qtype], q.qclass) == ("world.teams.microsoft.com", "HTTPS", 1)


@pytest.mark.parametrize("rcode,name", [(3, "NXDOMAIN"), (2, "SERVFAIL"), (5, "REFUSED"), (0, "NOERROR")])
def test_rcodes(rcode: int, name: str) -> None:
    payload = _header(0x8180 | rcode, 1, 0) + _name("nothere.example.com") + struct.pack("!HH", 1, 1)
    msg = parse_dns(payload)
    assert msg.rcode == rcode and RCODE_NAMES[msg.rcode] == name == msg.rcode_name
    assert msg.answers == () and cname_chain_targets(msg) == {}


def test_aaaa_and_truncated_flag() -> None:
    q = _name("teams.microsoft.com")
    payload = (
        _header(0x8380, 1, 1)
        + q
        + struct.pack("!HH", 28, 1)
        + _rr(b"\xc0\x0c", 28, bytes.fromhex("20010db8000000000000000000000001"))
    )
    msg = parse_dns(payload)
    assert msg.truncated
    assert msg.answers[0].value == "2001:db8::1" and msg.answers[0].rtype == 28
    assert cname_chain_targets(msg) == {"2001:db8::1": "teams.microsoft.com"}


def test_sinkhole_answers() -> None:
    q = _name("blocked.example.com")
    payload = (
        _header(0x8180, 1, 2)
        + q
        + struct.pack("!HH", 1, 1)
        + _rr(b"\xc0\x0c", 1, bytes(4))
        + _rr(b"\xc0\x0c", 28, bytes(16))
    )
    msg = parse_dns(payload)
    addrs = set(cname_chain_targets(msg))
    assert addrs == {"0.0.0.0", "::"} and addrs <= SINKHOLE_ADDRESSES


def test_compression_pointer_suffix() -> None:
    # Question www.example.com at 12; answer CNAME "cdn" + pointer to "example.com" (offset 16).
    payload = (
        _header(0x8180, 1, 1)
        + _name("www.example.com")
        + struct.pack("!HH", 1, 1)
        + _rr(b"\xc0\x0c", 5, b"\x03cdn\xc0\x10")
    )
    assert parse_dns(payload).answers[0].value == "cdn.example.com"


def test_forward_pointer_rejected() -> None:
    # The question name is a pointer to offset 20, after itself.
    payload = _header(0x0100, 1, 0) + b"\xc0\x14" + struct.pack("!HH", 1, 1) + _name("evil.example")
    with pytest.raises(DecodeError, match="forward"):
        parse_dns(payload)


def test_pointer_to_itself_rejected() -> None:
    payload = _header(0x0100, 1, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    with pytest.raises(DecodeError):
        parse_dns(payload)


def test_pointer_loop_rejected() -> None:
    # Offset 12: "a" then pointer to 20; offset 20: "b" then pointer back to 12 -> loop (second jump goes forward).
    body = b"\x01a\xc0\x14" + b"\x00\x01\x00\x01" + b"\x01b\xc0\x0c"
    payload = _header(0x0100, 1, 0) + body
    assert payload[20:22] == b"\x01b"
    with pytest.raises(DecodeError):
        parse_dns(payload)


def test_pointer_into_own_labels_rejected() -> None:
    payload = _header(0x0100, 1, 0) + b"\x01a\x01b\xc0\x0e" + struct.pack("!HH", 1, 1)
    with pytest.raises(DecodeError):
        parse_dns(payload)


def test_name_longer_than_255_rejected() -> None:
    long = b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\x00"  # 4*64+1 = 257 octets
    payload = _header(0x0100, 1, 0) + long + struct.pack("!HH", 1, 1)
    with pytest.raises(DecodeError, match="255"):
        parse_dns(payload)


def test_long_name_via_pointers_rejected() -> None:
    # 3 * 64 octets at offset 12, then a name of 64 octets pointing at it: 256 + 1 > 255.
    first = b"".join(b"\x3f" + b"b" * 63 for _ in range(3)) + b"\x00"
    second = b"\x3f" + b"c" * 63 + b"\xc0\x0c"
    payload = _header(0x0100, 2, 0) + first + struct.pack("!HH", 1, 1) + second + struct.pack("!HH", 1, 1)
    with pytest.raises(DecodeError, match="255"):
        parse_dns(payload)


def test_invalid_label_bytes_counted_not_raised() -> None:
    # Question label contains a space and a dot byte; the CNAME target is valid.
    payload = (
        _header(0x8180, 1, 2)
        + b"\x05ev l.\x03com\x00"
        + struct.pack("!HH", 1, 1)
        + _rr(b"\xc0\x0c", 5, _name("ok.example.net"))
        + _rr(b"\x03a\xffb\x00", 1, b"\x0a\x00\x00\x01")
    )
    msg = parse_dns(payload)
    assert msg.questions[0].name is None
    assert msg.answers[0].name is None and msg.answers[0].value == "ok.example.net"
    assert msg.answers[1].name is None and msg.answers[1].value == "10.0.0.1"
    assert msg.invalid_names == 3


def test_label_with_dot_byte_is_invalid() -> None:
    payload = _header(0x0100, 1, 0) + b"\x03a.b\x03com\x00" + struct.pack("!HH", 1, 1)
    msg = parse_dns(payload)
    assert msg.questions[0].name is None and msg.invalid_names == 1


def test_root_name_is_none_but_not_invalid() -> None:
    msg = parse_dns(_header(0x0100, 1, 0) + b"\x00" + struct.pack("!HH", 2, 1))
    assert msg.questions[0].name is None and msg.invalid_names == 0


def test_bad_a_rdata_length() -> None:
    payload = _header(0x8180, 1, 1) + _name("x.com") + struct.pack("!HH", 1, 1) + _rr(b"\xc0\x0c", 1, b"\x01\x02\x03")
    with pytest.raises(DecodeError, match="A record"):
        parse_dns(payload)


def test_cname_rdata_length_mismatch() -> None:
    payload = _header(0x8180, 1, 1) + _name("x.com") + struct.pack("!HH", 1, 1) + _rr(b"\xc0\x0c", 5, _name("y.com") + b"\x00")
    with pytest.raises(DecodeError):
        parse_dns(payload)


def test_unrelated_answer_not_mapped() -> None:
    payload = (
        _header(0x8180, 1, 2)
        + _name("asked.example.com")
        + struct.pack("!HH", 1, 1)
        + _rr(b"\xc0\x0c", 1, b"\x01\x01\x01\x01")
        + _rr(_name("injected.example.org"), 1, b"\x02\x02\x02\x02")
    )
    assert cname_chain_targets(parse_dns(payload)) == {"1.1.1.1": "asked.example.com"}


def test_cname_loop_does_not_hang() -> None:
    payload = (
        _header(0x8180, 1, 3)
        + _name("q.example.com")
        + struct.pack("!HH", 1, 1)
        + _rr(_name("a.example.com"), 5, _name("b.example.com"))
        + _rr(_name("b.example.com"), 5, _name("a.example.com"))
        + _rr(_name("b.example.com"), 1, b"\x03\x03\x03\x03")
    )
    assert cname_chain_targets(parse_dns(payload)) == {}


def test_other_types_have_no_value() -> None:
    payload = _header(0x8180, 1, 1) + _name("x.com") + struct.pack("!HH", 16, 1) + _rr(b"\xc0\x0c", 16, b"\x05hello")
    rec = parse_dns(payload).answers[0]
    assert rec.rtype == 16 and rec.value is None and rec.ttl == 60


def test_tcp_framing_two_messages_and_partial() -> None:
    m1 = _query("one.example.com")
    m2 = CHAIN
    m3 = _query("three.example.com")
    stream = struct.pack("!H", len(m1)) + m1 + struct.pack("!H", len(m2)) + m2 + struct.pack("!H", len(m3)) + m3[:5]
    msgs, used = split_dns_tcp(stream)
    assert msgs == [m1, m2]
    assert used == 4 + len(m1) + len(m2)
    assert parse_dns(msgs[1]).answers[-1].value == "1.2.3.4"
    # A lone length byte is also just "not yet".
    assert split_dns_tcp(stream[:1]) == ([], 0)
    assert split_dns_tcp(b"") == ([], 0)


def test_tcp_framing_rejects_tiny_length() -> None:
    with pytest.raises(DecodeError):
        split_dns_tcp(b"\x00\x03abc")


def test_truncation_at_every_length() -> None:
    for i in range(len(CHAIN)):
        with pytest.raises(DecodeError):
            parse_dns(CHAIN[:i])
    assert parse_dns(CHAIN).answers[-1].value == "1.2.3.4"


def test_truncation_mostly_needmore() -> None:
    # Cutting a valid message can only ever look "short", never malformed.
    for i in range(len(CHAIN)):
        with pytest.raises(NeedMore):
            parse_dns(CHAIN[:i])


def _scapy_cases(scapy_dns) -> list[bytes]:  # noqa: ANN001 - a module
    DNS, DNSQR, DNSRR = scapy_dns.DNS, scapy_dns.DNSQR, scapy_dns.DNSRR
    return [
        bytes(DNS(id=1, rd=1, qd=[DNSQR(qname="teams.microsoft.com", qtype="AAAA")])),
        bytes(
            DNS(
                id=2,
                qr=1,
                rcode=3,
                qd=[DNSQR(qname="nx.example.com")],
            )
        ),
        bytes(
            DNS(
                id=3,
                qr=1,
                qd=[DNSQR(qname="mesh.microsoft.com")],
                an=[
                    DNSRR(rrname="mesh.microsoft.com", type="CNAME", rdata="mesh.azureedge.net", ttl=30),
                    DNSRR(rrname="mesh.azureedge.net", type="A", rdata="13.107.6.1", ttl=31),
                    DNSRR(rrname="mesh.azureedge.net", type="AAAA", rdata="2603:1063::1", ttl=32),
                ],
            ).compress()
        ),
    ]


def test_cross_check_with_scapy() -> None:
    scapy_dns = pytest.importorskip("scapy.layers.dns")
    cases = _scapy_cases(scapy_dns)
    for raw in cases:
        ours = parse_dns(raw)
        theirs = scapy_dns.DNS(raw)
        assert ours.id == theirs.id and ours.rcode == theirs.rcode and ours.is_response == bool(theirs.qr)
        assert [q.name for q in ours.questions] == [q.qname.decode().rstrip(".") for q in theirs.qd]
        assert len(ours.answers) == len(theirs.an)
        for mine, rr in zip(ours.answers, theirs.an):
            assert mine.name == rr.rrname.decode().rstrip(".")
            assert (mine.rtype, mine.ttl) == (rr.type, rr.ttl)
            rdata = rr.rdata.decode().rstrip(".") if isinstance(rr.rdata, bytes) else str(rr.rdata)
            assert mine.value == rdata
    chain = answers_by_address(parse_dns(cases[2]))
    assert chain == {
        "13.107.6.1": ("mesh.microsoft.com", "mesh.azureedge.net"),
        "2603:1063::1": ("mesh.microsoft.com", "mesh.azureedge.net"),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=len(CHAIN)), tail=st.binary(max_size=80))
def test_fuzz_prefix_plus_random(cut: int, tail: bytes) -> None:
    try:
        msg = parse_dns(CHAIN[:cut] + tail)
    except DecodeError:
        return
    answers_by_address(msg)
    cname_chain_targets(msg)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        parse_dns(data)
    except DecodeError:
        pass
    try:
        split_dns_tcp(data)
    except DecodeError:
        pass
