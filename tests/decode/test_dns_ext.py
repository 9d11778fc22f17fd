"""The compiled DNS message parser (meshpcap/decode/_dns.c) against the Python parser it shortcuts.

Every input is parsed twice by ``dns.parse_dns``: with the compiled helper and without it.  Both must give
the same DnsMessage, or raise the same error with the same message.  The inputs are generated messages
(questions and answers of every kind, names plain, compressed, invalid, upper-case, at the length limits)
and the same messages cut, overwritten and lengthened anywhere, the DNS payloads of the samples, and of
../shared's captures when they are there.  The helper must take every message in the usual shape (names that
are labels, or a pointer to a name read whole before) and decline the others."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode import dns
from tests.conftest import SAMPLES
from tests.decode.test_dns import CHAIN
from tests.decode.twins import both_ways

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.decode import _dns as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled DNS parser is not built (no C compiler?)")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "captures"


def _both(msg: bytes) -> tuple:
    """(what parse_dns gives or raises with the compiled helper, without it)."""
    return both_ways(dns, COMPILED, dns.parse_dns, msg)


def _labels(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else name
    return b"".join(bytes([len(x)]) + x for x in raw.split(b".") if x) + b"\x00"


def _message(flags: int, questions: list, answers: list, msg_id: int = 0x4242) -> bytes:
    """A message of ``questions`` ((wire name, qtype)) and ``answers`` ((wire owner, rtype, rdata))."""
    out = struct.pack("!HHHHHH", msg_id, flags, len(questions), len(answers), 0, 0)
    for wire, qtype in questions:
        out += wire + struct.pack("!HH", qtype, 1)
    for owner, rtype, rdata in answers:
        out += owner + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    return out


QNAME = _labels("Teams.Microsoft.com")  # at offset 12; c00c points at it
TAKEN = [
    _message(0x0100, [(QNAME, 1)], []),
    _message(0x8180, [(QNAME, 1)], [(b"\xc0\x0c", 1, bytes([52, 113, 194, 132])), (b"\xc0\x0c", 1, b"\x0d\x6b\x06\x9c")]),
    _message(0x8180, [(QNAME, 28)], [(b"\xc0\x0c", 28, bytes(15) + b"\x01"),
                                     (b"\xc0\x0c", 28, bytes.fromhex("20010db8000000000000ff0000420001"))]),
    _message(0x8180, [(QNAME, 5)], [(b"\xc0\x0c", 5, _labels("teams.office.com")),
                                    (_labels("teams.office.com"), 1, b"\x01\x02\x03\x04")]),
    _message(0x8183, [(_labels("nosuch.example"), 1)], []),  # NXDOMAIN, no answers
    _message(0x8180, [(b"\x00", 2)], [(b"\x00", 2, _labels("a.root-servers.net"))]),  # the root, NS
    _message(0x8180, [(_labels("bad_.name-"), 1), (_labels(b"x y.example"), 1)],  # invalid names, counted
             [(b"\xc0\x0c", 16, b"\x05hello"), (b"\xc0\x0c", 12, _labels("-lead.example"))]),
    _message(0x8180, [(_labels("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61), 1)], []),  # 255 octets
    _message(0x0100, [(_labels("_sip._tls.teams.microsoft.com"), 33)], []),
    _message(0x8580, [], []),  # a header alone
]
LEFT = [
    CHAIN,  # a CNAME target of labels and a pointer: left to dns.py
    _message(0x8180, [(QNAME, 1)], [(b"\xc0\x0e", 1, b"\x01\x02\x03\x04")]),  # a pointer into the name
    _message(0x8180, [(QNAME, 1)], [(b"\xc0\x0c", 1, b"\x01\x02\x03")]),  # an A of 3 bytes
    _message(0x8180, [(QNAME, 5)], [(b"\xc0\x0c", 5, _labels("x.example") + b"\x00")]),  # RDATA longer than the name
    _message(0x8180, [(QNAME, 1)], [(b"\xc0\x40", 1, b"\x01\x02\x03\x04")]),  # a pointer forward
    _message(0x0100, [(b"\x41" + b"a" * 1 + b"\x00", 1)], []),  # label type 0x40
    _message(0x0100, [(b"\x41" + b"a" * 65 + b"\x00", 1)], []),  # the same, its "length" filled
    _message(0x8180, [(QNAME, 1)], [(b"\xc0\x0c", 1, b"\x01\x02\x03\x04\x05")]),  # an A of 5 bytes
    _message(0x0100, [(_labels("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62), 1)], []),  # 256 octets
    _message(0x0100, [(QNAME, 1)], [])[:-2],  # the question cut
    b"\x00\x01\x02",
]


@needs_ext
@pytest.mark.parametrize("msg", TAKEN + LEFT, ids=range(len(TAKEN + LEFT)))
def test_messages_are_read_alike(msg):
    assert (COMPILED.message_fields(msg) is not None) == (msg in TAKEN)
    fast, slow = _both(msg)
    assert fast == slow
    if fast[0] == "ok":
        m = fast[1]
        assert [type(x) for x in (m.id, m.is_response, m.opcode, m.rcode, m.truncated, m.invalid_names)] == [
            int, bool, int, int, bool, int]


@needs_ext
def test_the_usual_messages_count_what_dns_counts():
    m = dns.parse_dns(TAKEN[6])
    assert m.invalid_names == 5 and m.questions[0].name is None and m.answers[1].value is None
    assert dns.parse_dns(TAKEN[0]).questions[0].name == "teams.microsoft.com"
    assert dns.parse_dns(TAKEN[2]).answers[1].value == "2001:db8::ff00:42:1"


@needs_ext
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=st.sampled_from(TAKEN + LEFT), data=st.data())
def test_damaged_messages_read_alike(msg, data):
    """Overwritten (counts, lengths, pointers, name bytes), cut or lengthened anywhere: the compiled helper
    gives the Python parser's message or declines, so the error is the Python parser's."""
    raw = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["set", "set", "set", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw)))
        if how == "set" and at < len(raw):
            raw[at] = data.draw(st.sampled_from([0, 1, 2, 3, 4, 12, 0x2D, 0x2E, 0x41, 0x5F, 0x7F, 0xC0, 0xFF,
                                                 data.draw(st.integers(0, 255))]))
        elif how == "cut":
            del raw[at:at + data.draw(st.integers(1, 12))]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=6))
    fast, slow = _both(bytes(raw))
    assert fast == slow


@needs_ext
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes_read_alike(data):
    """A response header (one question, two answers) before random bytes."""
    fast, slow = _both(b"\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00" + data)
    assert fast == slow


def _dns_payloads(path: Path, limit: int = 400) -> list[bytes]:
    from meshpcap.capture import open_capture
    from meshpcap.decode import frames as F

    out = []
    with open_capture(path) as cap:
        for batch in cap.batches():
            d = F.decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
            for i in range(len(batch)):
                if d.reason[i] == F.OK and d.proto[i] == F.PROTO_UDP and 53 in (d.sport[i], d.dport[i]):
                    p, c = int(d.payload[i]), int(d.payload_cap[i])
                    out.append(bytes(batch.data[p:p + c]))
                    if len(out) >= limit:
                        return out
    return out


@needs_ext
def test_the_samples_dns_reads_alike():
    payloads = [p for s in sorted(SAMPLES.glob("*.pcap*")) for p in _dns_payloads(s)]
    assert payloads
    for p in payloads:
        fast, slow = _both(p)
        assert fast == slow


@needs_ext
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/captures is not here")
def test_shared_captures_dns_reads_alike():
    files = sorted(f for f in SHARED.rglob("*") if f.suffix in (".pcap", ".pcapng", ".cap") and f.stat().st_size < 50 << 20)
    taken = 0
    for f in files:
        try:
            payloads = _dns_payloads(f, 200)
        except Exception:  # a capture the reader refuses is the reader's tests' business
            continue
        for p in payloads:
            taken += COMPILED.message_fields(p) is not None
            fast, slow = _both(p)
            assert fast == slow, f"{f.name}: {p.hex()}"
    assert taken > 0
