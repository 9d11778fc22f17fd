"""Judging a FlowRecords from its columns (``judge_records``: plain unrelated flows never made) gives the
verdicts, findings and report bytes of the record path (``judge_flows`` over a list of ``Flow``), on a
capture with thousands of flows of every kind: plain UDP over IPv4 and IPv6 to servers no rule covers,
on media ports and on ports judged without a snapshot; allowed, blocked and unexpected flows to
AzureCloud and to a CIDR rule; flows matched by several rules; named TLS; TCP; ICMP echoes and errors;
a failed DNS lookup that blocks its flow; and on every sample."""

from __future__ import annotations

import pickle
import random
import textwrap

import numpy as np
import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP

from meshpcap.classify.verdicts import Verdicts, judge_flows, judge_records, notable
from meshpcap.flows.model import FlowTable
from meshpcap.pipeline import analyze, read_flows
from meshpcap.report import flows as RF
from meshpcap.report.analysis import _verdict_texts, render_report
from meshpcap.testing import tls
from tests import builders as B
from tests.classify import make as M
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
AZURE = ["52.113.144.132", "20.73.100.20", "20.50.2.40", "2603:1026:2405::1a"]  # AzureCloud in the sample
CIDR_NET = "198.51.100"  # the first half is in the extra rule's CIDR


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    rnd = random.Random(9)
    pkts = []
    hello = tls.build_client_hello("teams.microsoft.com")

    def udp(c, cp, s, sp, payload=b"x"):
        return (B.udp6 if ":" in s else B.udp4)(c, cp, s, sp, payload)

    for i in range(1200):  # plain UDP, most to servers no rule covers
        v6 = i % 9 == 0
        c = f"2001:db8:{i % 7}::5" if v6 else f"10.{i % 5}.{i % 251}.7"
        r = rnd.random()
        if r < 0.08:
            s = AZURE[3] if v6 else rnd.choice(AZURE[:3])
        elif r < 0.16 and not v6:
            s = f"{CIDR_NET}.{rnd.randrange(256)}"
        else:
            s = f"2001:db8:ff::{rnd.randrange(1, 65535):x}" if v6 else f"100.{64 + rnd.randrange(64)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        sp = rnd.choice((3478, 3479, 30010, 5004, 53, 443, 8443, rnd.randrange(1024, 65536), rnd.randrange(1024, 65536)))
        cp = 40000 + i
        pkts.append(udp(c, cp, s, sp))
        if rnd.random() < 0.4:  # answered: allowed under a rule
            pkts.append(udp(s, sp, c, cp, b"y"))
    for i in range(30):  # TCP: a SYN alone, or a whole handshake, to covered and uncovered servers
        s = AZURE[i % 3] if i % 2 else f"100.99.{i}.1"
        sp = (443, 80, 30020, 22)[i % 4]
        pkts.append(B.tcp4("10.7.0.1", 50000 + i, s, sp, "S", seq=1))
        if i % 3 == 0:
            pkts.append(B.tcp4(s, sp, "10.7.0.1", 50000 + i, "SA", seq=7, ack=2))
    for i in range(5):  # named: TLS to teams.microsoft.com on an AzureCloud address (by name and by address),
        s, sp = AZURE[i % 3], 443 if i < 4 else 8443  # and on a port its rule does not list (unexpected)
        pkts += [B.tcp4("10.8.0.1", 51000 + i, s, sp, "S", seq=1), B.tcp4(s, sp, "10.8.0.1", 51000 + i, "SA", seq=9, ack=2),
                 B.tcp4("10.8.0.1", 51000 + i, s, sp, "PA", seq=2, ack=10, payload=hello)]
    pkts.append(bytes(IP(src="10.9.0.1", dst="203.0.113.1") / ICMP(type=8) / b"ping"))
    quoted = B.udp4("10.9.0.2", 41000, AZURE[0], 3478, b"q")
    pkts += [quoted, B.icmp4("192.0.2.254", "10.9.0.2", 3, 13, quoted[:28])]
    nx = DNS(id=7, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname="nothere.teams.microsoft.com"))
    pkts += [B.udp4("10.9.0.3", 42000, "10.9.0.53", 53, bytes(DNS(id=7, rd=1, qd=DNSQR(qname="nothere.teams.microsoft.com")))),
             B.udp4("10.9.0.53", 53, "10.9.0.3", 42000, bytes(nx))]
    path = tmp_path_factory.mktemp("columns") / "many.pcap"
    return B.write_pcap(path, [(B.T0 + n * 997_001, B.ether(p)) for n, p in enumerate(pkts)])


@pytest.fixture(scope="module")
def extra_rules(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "extra.toml"
    path.write_text(textwrap.dedent(f"""
        [[rule]]
        id = "lab-media"
        description = "the lab's media servers"
        cidrs = ["{CIDR_NET}.0/25", "52.113.144.0/24"]
        transport = ["udp"]
        ports = ["3478-3481", "5004"]
        requirement = "required"
        source = "test"

        [[rule]]
        id = "lab-web"
        description = "the lab's web front (also named by MR-D2's domains)"
        cidrs = ["52.113.144.0/24"]
        transport = ["tcp"]
        ports = [443]
        requirement = "required"
        source = "test"
    """))
    return path


def _record_path(ft: FlowTable) -> FlowTable:
    """The same table with its flows as a plain list: judged by judge_flows, written record by record."""
    return FlowTable(ft.capture, list(ft.flows.stream()), ft.dns, ft.stats, ft.media)


def _same_reports(ft: FlowTable, **kw):
    col = analyze(ft, **kw)
    rec = analyze(_record_path(ft), **kw)
    assert isinstance(col.judgement.flows, Verdicts) and isinstance(rec.judgement.flows, list)
    assert col.judgement.flows == rec.judgement.flows
    assert list(col.judgement.flows) == rec.judgement.flows
    assert col.judgement.findings == rec.judgement.findings and col.judgement.counts == rec.judgement.counts
    assert col.judgement.checklist == rec.judgement.checklist and col.judgement.groups == rec.judgement.groups
    assert (col.verdict, col.reason, col.judgement.warnings) == (rec.verdict, rec.reason, rec.judgement.warnings)
    for fmt in ("json", "csv", "table", "markdown", "html"):
        for show in (True, False):
            assert render_report(col, fmt, show) == render_report(rec, fmt, show), (fmt, show)
    assert col.to_json() == rec.to_json()
    assert col.flows.equals(rec.flows) and col.findings.equals(rec.findings) and col.checklist.equals(rec.checklist)
    return col, rec


@pytest.mark.parametrize("with_tags, with_extra", [(True, True), (False, True), (False, False)])
def test_columns_judge_as_the_records_do(many, extra_rules, with_tags, with_extra):
    ft = read_flows(many, media=True)
    col, _ = _same_reports(ft, service_tags=TAGS if with_tags else None, use_cache=False,
                           rules=extra_rules if with_extra else None)
    verdicts = col.judgement.flows
    assert int(verdicts.unrelated.sum()) > len(verdicts) // 2  # most were never made
    said = notable(verdicts)
    assert {v.verdict for v in said} == {"allowed", "blocked", "unexpected", "unrelated"}
    assert any(len(v.rules) >= 2 for v in said) == (with_tags or with_extra)  # matched by several rules
    assert any(v.blocked_by == "dns-failure" for v in said)  # set on a position judged from the columns
    assert any(v.flow.ip_version == 6 and v.verdict != "unrelated" for v in said)
    assert any(v.flow.transport == "icmp" for v in said)
    if with_extra:
        assert any(v.rule == "lab-media" for v in said)
    bare = read_flows(many)  # (the media pass walks the records when the capture has media 5-tuples)
    analyze(bare, service_tags=TAGS if with_tags else None, use_cache=False).to_json()
    assert bare.flows.kept is None  # neither judging nor writing walked the records


def test_report_json_at_any_chunk_size(many):
    r = analyze(read_flows(many), service_tags=TAGS)
    verdicts = r.judgement.flows
    expect = ",\n    ".join(RF.json_indent2(v.to_dict(), "    ") for v in verdicts)
    for size in (1, 7, 64, 4096):
        assert ",\n    ".join(t for t in _verdict_texts(verdicts, r.flow_table.flows, "    ", size) if t) == expect


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".pcap", ".pcapng")))
def test_samples(sample):
    _same_reports(read_flows(SAMPLES / sample, media=True), service_tags=TAGS)


def test_verdicts_behave_as_a_list(many):
    ft = read_flows(many)
    ctx = M.context()
    got = judge_records(ft.flows, ctx)
    expect = judge_flows(list(ft.flows.stream()), M.context())
    n = len(expect)
    assert len(got) == n and got == expect and list(got) == expect
    assert got[-1] == expect[-1] and got[3:9] == expect[3:9] and got[::500] == expect[::500]
    with pytest.raises(IndexError):
        got[n]
    assert pickle.loads(pickle.dumps(got)) == expect
    i = int(np.flatnonzero(got.unrelated)[5])
    j = int(next(k for k in range(n) if not got.unrelated[k]))
    got[i], got[j] = expect[j], expect[i]  # replaced out of order: notable() stays in record order
    assert not got.unrelated[i] and got[i] == expect[j] and got[j] == expect[i]
    positions = sorted(got.made)
    assert got.notable() == [got[k] for k in positions] and positions == sorted(set(positions))
    assert got.index_of(1) == 0 and got.index_of(n) == n - 1 and got.index_of(0) is None and got.index_of(n + 1) is None
    # each flow's rule by its id, the replaced ones too, without making a record for an unrelated flow
    made_before = dict(got.made)
    assert [got.rule_of(k + 1) for k in range(n)] == [got[k].rule for k in range(n)]
    assert any(got.rule_of(k + 1) for k in range(n)) and got.rule_of(0) is None and got.rule_of(n + 1) is None
    assert got.made == made_before


@pytest.mark.parametrize("with_tags", [True, False])
def test_covers_columns_agrees_with_covers_many(with_tags):
    import ipaddress

    m = M.matcher(with_tags=with_tags)
    rnd = random.Random(4)
    addrs = AZURE + ["198.51.100.77", "52.112.0.1", "::1", "0.0.0.0", "255.255.255.255", "2603:1026:2405:ffff::1"]
    addrs += [str(ipaddress.ip_address(rnd.getrandbits(32))) for _ in range(300)]
    addrs += [f"52.{112 + rnd.randrange(4)}.{rnd.randrange(256)}.{rnd.randrange(256)}" for _ in range(300)]
    addrs += [f"2603:1026:{rnd.choice(('2405', '2406'))}::{rnd.randrange(65536):x}" for _ in range(100)]
    ints = [int(ipaddress.ip_address(a)) for a in addrs]
    ver = np.array([6 if ":" in a else 4 for a in addrs], np.uint8)
    hi = np.array([x >> 64 for x in ints], np.uint64)
    lo = np.array([x & (1 << 64) - 1 for x in ints], np.uint64)
    assert m.covers_columns(ver, hi, lo).tolist() == m.covers_many(addrs).tolist()
    assert m.covers_columns(ver, hi, lo).any() == with_tags
    assert m.covers_columns(ver[:0], hi[:0], lo[:0]).size == 0
