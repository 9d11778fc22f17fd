"""The flows JSON and CSV written from the columns (``FlowRecords.plain_chunk``) are the bytes of the record
path (``Flow.to_dict`` through json.dumps / cell()), on a table that mixes plain flows with every kind that
is not plain: named (SNI, DNS names), TCP, ICMP errors, STUN, interfaces from 64 on, non-ASCII text."""

from __future__ import annotations

import datetime
import hashlib
import json
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, UDP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6

from meshpcap.decode import stun
from meshpcap.flows.model import FlowTable
from meshpcap.pipeline import read_flows
from meshpcap.report import flows as RF
from meshpcap.testing import stun as build_stun, tls
from tests import builders as B
from tests.conftest import SAMPLES

C, S = "10.0.0.1", "20.73.96.14"


def _certificate(subject: str) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"meshpcap plain writer").digest())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(3).not_valid_before(datetime.datetime(2023, 1, 1))
            .not_valid_after(datetime.datetime(2030, 1, 1)).sign(key, None))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """A pcapng on 70 interfaces: plain UDP over IPv4 and IPv6 (one way and both ways, on one or two
    interfaces), ICMP and ICMPv6 echoes, SCTP, ESP and an unnamed protocol, a GRE-encapsulated flow, IP
    fragments; and flows that are not plain: TLS with an SNI and a non-ASCII certificate subject, DNS-named
    UDP, an ICMP error quoting a UDP flow, STUN, a flow on interface 66."""
    rnd = random.Random(5)
    hello = tls.build_client_hello("mesh.office.com")
    flight = tls.build_server_hello(0x0303) + tls.build_certificate_record(_certificate("Zürich Ω \u202e"))
    allocate = build_stun.build_stun(0x003, 0, [(stun.REALM, b"realm")], bytes(range(12)))
    dns = bytes(IP(src="10.0.0.53", dst=C) / UDP(sport=53, dport=40001) / DNS(
        id=1, qr=1, rd=1, ra=1, qd=DNSQR(qname="media.example.com"),
        an=DNSRR(rrname="media.example.com", type="A", ttl=60, rdata="198.51.100.7")))
    pkts = [
        (0, B.tcp4(C, 50000, S, 443, "S", seq=1)), (0, B.tcp4(S, 443, C, 50000, "SA", seq=9, ack=2)),
        (0, B.tcp4(C, 50000, S, 443, "PA", seq=2, ack=10, payload=hello)),
        (0, B.tcp4(S, 443, C, 50000, "PA", seq=10, ack=2 + len(hello), payload=flight)),
        (0, dns), (0, B.udp4(C, 40002, "198.51.100.7", 3478, b"to a named server")),
        (1, B.udp4(C, 50010, "52.112.0.11", 3478, allocate)),
        (66, B.udp4(C, 50011, "203.0.113.66", 9999)),
        (0, bytes(IP(src=C, dst="203.0.113.1") / ICMP(type=8) / b"ping")),
        (0, bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest())),
        (0, bytes(IP(src=C, dst="203.0.113.2", proto=132) / b"sctp-ish")),
        (0, bytes(IP(src=C, dst="203.0.113.3", proto=50) / b"esp-ish")),
        (0, bytes(IP(src=C, dst="203.0.113.4", proto=99) / b"unnamed")),
        (0, B.gre(B.udp4("10.9.0.1", 41000, "10.9.0.2", 41001), 0x0800)),
    ]
    quoted = B.udp4(C, 40100, "203.0.113.9", 7000, b"q")
    pkts += [(0, quoted), (0, B.icmp4("192.0.2.254", C, 3, 13, quoted[:28]))]
    pkts += [(0, bytes(f)) for f in fragment(IP(src=C, dst="203.0.113.10") / UDP(sport=40200, dport=8000)
                                             / (b"f" * 3000), fragsize=1000)]
    for i in range(40):
        v6 = i % 5 == 0
        c, s = ("2001:db8::10", f"2001:db8:1::{i + 1:x}") if v6 else (f"10.1.{i}.2", f"100.64.{i}.{200 - i}")
        cp, sp = rnd.randrange(1024, 65536), rnd.choice((53, 123, 3478, 8080, rnd.randrange(1024, 65536)))
        udp = B.udp6 if v6 else B.udp4
        pkts.append((i % 2, udp(c, cp, s, sp, b"x" * i)))
        if i % 3 == 0:
            pkts.append((2 if i % 4 else 0, udp(s, sp, c, cp, b"reply")))
    path = tmp_path_factory.mktemp("plain") / "varied.pcapng"
    return B.write_pcapng(path, [1] * 70, [(i, B.T0 + n * 1_000_003, B.ether(p))
                                           for n, (i, p) in enumerate(pkts)])


def _record_path_csv(ft: FlowTable) -> str:
    listed = FlowTable(ft.capture, list(ft.flows.stream()), ft.dns, ft.stats)  # a list: the record path
    return RF.render_flows(listed, "csv")


@pytest.mark.parametrize("names", [True, False])
def test_columns_give_the_record_paths_bytes(varied, names):
    ft = read_flows(varied, names=names)
    recs = ft.flows
    chunk = recs.plain_chunk(0, len(recs))
    plain = len(recs) - len(chunk.special)
    assert plain >= 40 and len(chunk.special) >= (5 if names else 4)  # both paths are exercised
    kinds = {recs[j].transport for j in range(len(recs)) if j not in chunk.special}
    assert {"udp", "icmp", "icmpv6", "sctp", "esp", "ip-99"} <= kinds
    if names:
        named = [f for f in recs.stream() if f.dns_names or f.sni]
        assert {f.id - 1 for f in named} <= set(chunk.special)
        assert any(f.cert_subject and not f.cert_subject.isascii() for f in recs.stream())
    assert any(f.interfaces == (66,) for f in recs.stream())
    assert any(f.encapsulated for f in recs.stream()) and any(f.ip_fragments for f in recs.stream())
    assert any(len(f.interfaces) == 2 for f in recs.stream()) and any(f.client_port is None for f in recs.stream())

    assert RF.render_flows(ft, "json") == json.dumps(ft.to_dict(), indent=2) + "\n"
    assert RF.render_flows(ft, "csv") == _record_path_csv(ft)
    per_call = RF.ORJSON_CHUNK
    for size, RF.ORJSON_CHUNK in ((1, per_call), (3, per_call), (7, per_call), (7, 2)):  # chunk edges, orjson's share
        try:
            texts = ",\n    ".join(RF._flow_texts(recs, "    ", size))
        finally:
            RF.ORJSON_CHUNK = per_call
        assert texts == ",\n    ".join(RF.json_indent2(f.to_dict(), "    ") for f in recs.stream())
        lines = "".join(RF._flow_csv_lines(recs, size))
        assert RF.render_flows(ft, "csv") == _record_path_csv(ft).split("\n", 1)[0] + "\n" + lines
    assert recs._kept is None  # the writers kept no records
    list(recs)  # kept: the special flows come from the kept list, the same bytes
    assert RF.render_flows(ft, "json") == json.dumps(ft.to_dict(), indent=2) + "\n"


def test_template_keeps_order_and_fills_rows():
    from meshpcap.flows.records import PLAIN_FIELDS

    d = {"a%": "50%", "id": 0, "b": None, "client": ""}
    t = RF.plain_template(d, json.dumps, more=("b",))
    assert t.names == ["id", "b", "client"] + [f for f in PLAIN_FIELDS if f not in d]
    # a text field's quotes are the template's; any other's are the cell's
    rows = [{name: f"<{name} {j}>" if name in RF.TEXT_FIELDS else json.dumps(f"<{name} {j}>") for name in t.names}
            for j in range(4)]
    cells = {name: [r[name] for r in rows] for name in t.names}
    expect = [json.dumps({**d, **{name: f"<{name} {j}>" for name in t.names}}) for j in range(4)]
    assert t.fill(cells, 4, {}, ", ") == ", ".join(expect)
    assert t.fill(cells, 4, {0: "zero", 3: "three"}, ", ") == ", ".join(["zero", *expect[1:3], "three"])
    one = {name: v[:1] for name, v in cells.items()}
    assert t.fill(one, 1, {0: "only"}, ", ") == "only" and t.fill(one, 1, {}, ", ") == expect[0]
    assert t.fill({name: [] for name in cells}, 0, {}) == ""


def test_empty_table(tmp_path):
    p = B.write_pcap(tmp_path / "empty.pcap", [])
    ft = read_flows(p)
    assert RF.render_flows(ft, "json") == json.dumps(ft.to_dict(), indent=2) + "\n"
    assert RF.render_flows(ft, "csv") == _record_path_csv(ft)


@pytest.mark.parametrize("names", [True, False])
def test_records_made_from_the_columns_are_the_per_flow_ones(varied, names):
    import dataclasses
    import pickle

    from meshpcap.flows.model import FLOW_COLUMNS, Flow, record_maker

    recs = read_flows(varied, names=names).flows
    fast = [f for lo in range(0, len(recs), 4) for f in recs._chunk(lo, min(lo + 4, len(recs)))]
    slow = recs._make(range(len(recs)))  # one flow at a time
    assert fast == slow and all(type(f) is Flow for f in fast)
    assert [dataclasses.astuple(f) for f in fast] == [dataclasses.astuple(f) for f in slow]
    f = fast[-1]
    values = tuple(getattr(f, n) for n in FLOW_COLUMNS)
    assert f == Flow(*values) == record_maker(Flow)(values) and hash(f) == hash(slow[-1])
    assert type(record_maker(Flow)(values)) is Flow
    assert pickle.loads(pickle.dumps(f)) == f
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.id = 0


@pytest.mark.parametrize("per_call", [256, 2])  # orjson's share of a chunk: one call, or many
def test_report_json_from_the_columns(varied, per_call, monkeypatch):
    from meshpcap.pipeline import analyze
    from meshpcap.report import analysis

    monkeypatch.setattr(analysis, "ORJSON_CHUNK", per_call)
    from meshpcap.report.analysis import _verdict_texts, records_kept

    r = analyze(varied, service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json")
    verdicts = r.judgement.flows
    assert records_kept(r.flow_table.flows, verdicts)
    kinds = {v.verdict for v in verdicts}
    assert "unrelated" in kinds and len(kinds) >= 2  # plain unrelated ones and verdicts that say more
    assert r.to_json() == json.dumps(r.to_dict(), indent=2) + "\n"
    assert r.to_json(False) == json.dumps(r.to_dict(False), indent=2) + "\n"
    for size in (1, 5):
        assert ",\n    ".join(t for t in _verdict_texts(verdicts, r.flow_table.flows, "    ", size)) == ",\n    ".join(
            RF.json_indent2(v.to_dict(), "    ") for v in verdicts)


def test_addresses_at_once_are_addr_text():
    import numpy as np

    from meshpcap.flows.engine import addr_text
    from meshpcap.flows.records import addr_texts

    rng = np.random.default_rng(3)
    n = 300
    ver = np.where(np.arange(n) % 7 == 0, 6, 4).astype(np.uint8)
    hi = rng.integers(0, 1 << 63, n).astype(np.uint64)
    lo = np.where(ver == 4, rng.integers(0, 1 << 32, n), rng.integers(0, 1 << 63, n)).astype(np.uint64)
    lo[1], lo[2], hi[0], lo[0] = 0, 0xFFFFFFFF, 0, 1  # 0.0.0.0, 255.255.255.255, ::1
    for sel in (slice(None), ver == 4, ver == 6):
        expect = [addr_text(int(v), int(h), int(x)) for v, h, x in zip(ver[sel], hi[sel], lo[sel])]
        assert addr_texts(ver[sel], hi[sel], lo[sel]) == expect
    many = rng.integers(0, 1 << 32, 3000).astype(np.uint64)  # distinct enough for the 16-bit halves' table
    many[:4] = [0, 0xFFFFFFFF, 0x0A00FF01, 0x0A00FF01]
    got = addr_texts(np.full(many.size, 4, np.uint8), np.zeros(many.size, np.uint64), many)
    assert got == [addr_text(4, 0, int(x)) for x in many] and got[2] is got[3]
    assert addr_texts(ver[:3], hi[:3], lo[:3]) == ["::1", "0.0.0.0", "255.255.255.255"]
    same = addr_texts(np.full(3, 4, np.uint8), np.zeros(3, np.uint64), np.array([7, 9, 7], np.uint64))
    assert same == ["0.0.0.7", "0.0.0.9", "0.0.0.7"] and same[0] is same[2]  # one str per address: memory
