"""Flow building: fragments, 5-tuple reuse, ICMP errors, exact counters, accounting, damage, batch boundaries."""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scapy.all import fragment
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, ICMPv6TimeExceeded, IPv6, IPv6ExtHdrFragment
from scapy.packet import Raw

from meshpcap import read_flows
from meshpcap.capture import open_capture
from meshpcap.errors import CaptureError
from meshpcap.pipeline import read_flows as pipeline_read_flows  # has batch_bytes
from tests import builders as B
from tests.conftest import capture_id, sample_captures, shared_captures

C, S, R = "10.0.0.1", "52.112.0.10", "192.0.2.254"
MS = 1_000_000


def _check_accounting(capture: dict) -> None:
    assert capture["packets"] == capture["decoded"] + sum(capture["undecoded"].values())


def _read(path, **kw):
    ft = pipeline_read_flows(path, **kw)
    _check_accounting(ft.capture)
    return ft


def _flows(tmp_path, ips, step=MS, name="c.pcap", linktype=101):
    p = B.write_pcap(tmp_path / name, [(B.T0 + i * step, ip) for i, ip in enumerate(ips)], linktype=linktype)
    return _read(p, names=False)


# ---------------------------------------------------------------- counters
def test_ip_layer_bytes_and_exact_timestamps(tmp_path):
    a = B.tcp4(C, 50000, S, 443, "S", seq=1)  # 40 bytes
    b = B.tcp4(S, 443, C, 50000, "SA", seq=7, ack=2)
    c = B.tcp4(C, 50000, S, 443, "PA", seq=2, ack=8, payload=b"x" * 100)  # 140 bytes
    pad = B.ether(b) + b"\0" * 6  # Ethernet minimum-size padding must not count (IPv4 total length does)
    t1, t2, t3 = B.T0 + 123_456_789, B.T0 + 123_456_790, B.T0 + 5 * B.SEC + 1
    p = B.write_pcap(tmp_path / "bytes.pcap", [(t1, B.ether(a)), (t2, pad), (t3, B.ether(c))])
    (f,) = _read(p, names=False).flows
    assert (f.packets_c2s, f.packets_s2c) == (2, 1)
    assert (f.bytes_c2s, f.bytes_s2c) == (40 + 140, 40)
    assert (f.first_ns, f.last_ns) == (t1, t3)
    assert isinstance(f.first_ns, int) and isinstance(f.last_ns, int)


def test_ipv6_bytes_are_40_plus_payload_length(tmp_path):
    c6, s6 = "2001:db8::1", "2001:db8::2"
    ips = [B.udp6(c6, 50000, s6, 3478, b"a" * 10), B.udp6(s6, 3478, c6, 50000, b"b" * 30)]
    (f,) = _flows(tmp_path, ips).flows
    assert (f.bytes_c2s, f.bytes_s2c) == (40 + 8 + 10, 40 + 8 + 30)


def test_snaplen_cut_packets_count_their_wire_length(tmp_path):
    full = B.udp4(C, 50000, S, 3478, b"z" * 500)
    p = B.write_pcap(tmp_path / "snap.pcap", [(B.T0, full[:64], len(full))], linktype=101, snaplen=64)
    (f,) = _read(p, names=False).flows
    assert f.bytes_c2s == len(full) == 528


# ---------------------------------------------------------------- fragments
def test_ipv4_fragments_of_a_udp_datagram(tmp_path):
    dgram = IP(src=C, dst=S, id=777) / UDP(sport=50006, dport=3479) / (b"m" * 100)
    frags = [bytes(f) for f in fragment(dgram, fragsize=48)]
    assert len(frags) == 3
    ips = frags + [B.udp4(S, 3479, C, 50006, b"ok")]
    ft = _flows(tmp_path, ips)
    (f,) = ft.flows
    assert (f.client, f.client_port, f.server, f.server_port) == (C, 50006, S, 3479)
    assert (f.packets_c2s, f.packets_s2c) == (3, 1)
    assert f.ip_fragments == 2
    assert f.bytes_c2s == sum(len(x) for x in frags)
    assert ft.capture["undecoded"] == {}


def test_ipv6_fragments(tmp_path):
    c6, s6 = "2001:db8::1", "2001:db8::2"
    body = bytes(UDP(sport=50006, dport=3479) / (b"q" * 100))
    first = bytes(IPv6(src=c6, dst=s6) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=5) / Raw(body[:64]))
    last = bytes(IPv6(src=c6, dst=s6) / IPv6ExtHdrFragment(nh=17, offset=8, m=0, id=5) / Raw(body[64:]))
    (f,) = _flows(tmp_path, [first, last]).flows
    assert (f.client_port, f.server_port, f.packets_c2s, f.ip_fragments) == (50006, 3479, 2, 1)
    assert f.bytes_c2s == len(first) + len(last)


def test_fragment_without_its_first_fragment(tmp_path):
    dgram = IP(src=C, dst=S, id=778) / UDP(sport=50006, dport=3479) / (b"m" * 100)
    frags = [bytes(f) for f in fragment(dgram, fragsize=48)]
    ft = _flows(tmp_path, frags[1:] + [B.udp4(C, 50007, S, 3479)])
    assert ft.capture["undecoded"] == {"fragment without its first fragment": 2}
    assert [f.client_port for f in ft.flows] == [50007]


def test_fragments_of_different_datagrams_do_not_mix(tmp_path):
    d1 = [bytes(f) for f in fragment(IP(src=C, dst=S, id=1) / UDP(sport=50001, dport=3479) / (b"a" * 60), 32)]
    d2 = [bytes(f) for f in fragment(IP(src=C, dst=S, id=2) / UDP(sport=50002, dport=3479) / (b"b" * 60), 32)]
    ips = [d1[0], d2[0], d2[1], d1[1], d1[2], d2[2]]
    ft = _flows(tmp_path, ips)
    by = {f.client_port: f for f in ft.flows}
    assert by[50001].packets_c2s == by[50002].packets_c2s == 3
    assert by[50001].ip_fragments == by[50002].ip_fragments == 2


# ---------------------------------------------------------------- a 5-tuple reused
def _tcp(flags, seq, ack=0, fwd=True, payload=b""):
    if fwd:
        return B.tcp4(C, 50000, S, 443, flags, seq=seq, ack=ack, payload=payload)
    return B.tcp4(S, 443, C, 50000, flags, seq=seq, ack=ack, payload=payload)


def test_syn_after_fin_with_new_isn_is_a_new_flow(tmp_path):
    first = [_tcp("S", 100), _tcp("SA", 900, 101, False), _tcp("A", 101, 901), _tcp("FA", 101, 901),
             _tcp("FA", 901, 102, False), _tcp("A", 102, 902)]
    second = [_tcp("S", 5000), _tcp("SA", 7000, 5001, False), _tcp("A", 5001, 7001)]
    ft = _flows(tmp_path, first + second)
    assert [(f.id, f.state, f.packets_c2s + f.packets_s2c, f.syn_count) for f in ft.flows] == [
        (1, "closed", 6, 1), (2, "established", 3, 1)]
    assert ft.flows[1].first_ns == B.T0 + 6 * MS
    assert ft.flows[0].last_ns == B.T0 + 5 * MS


def test_retransmitted_syn_after_rst_with_same_isn_is_one_flow(tmp_path):
    ips = [_tcp("S", 100), _tcp("RA", 0, 101, False), _tcp("S", 100), _tcp("RA", 0, 101, False)]
    (f,) = _flows(tmp_path, ips).flows
    assert (f.syn_count, f.state, f.packets_c2s, f.packets_s2c) == (2, "rejected", 2, 2)


def test_new_isn_after_rst_is_a_new_flow(tmp_path):
    ips = [_tcp("S", 100), _tcp("RA", 0, 101, False), _tcp("S", 4242), _tcp("SA", 1, 4243, False)]
    ft = _flows(tmp_path, ips)
    assert [f.state for f in ft.flows] == ["rejected", "established"]


@pytest.mark.parametrize("gap_s,flows", [(299, 1), (301, 2)])
def test_udp_idle_gap_splits_flows(tmp_path, gap_s, flows):
    u = B.udp4(C, 50006, S, 3479, b"ping")
    v = B.udp4(S, 3479, C, 50006, b"pong")
    recs = [(B.T0, u), (B.T0 + MS, v), (B.T0 + gap_s * B.SEC + MS, u), (B.T0 + gap_s * B.SEC + 2 * MS, v)]
    p = B.write_pcap(tmp_path / "idle.pcap", recs, linktype=101)
    ft = _read(p, names=False)
    assert len(ft.flows) == flows
    assert sum(f.packets_c2s for f in ft.flows) == 2 and sum(f.packets_s2c for f in ft.flows) == 2
    if flows == 2:
        assert [(f.first_ns, f.last_ns) for f in ft.flows] == [
            (B.T0, B.T0 + MS), (B.T0 + gap_s * B.SEC + MS, B.T0 + gap_s * B.SEC + 2 * MS)]
        assert all(f.state == "bidirectional" for f in ft.flows)


def test_idle_seconds_parameter(tmp_path):
    u = B.udp4(C, 50006, S, 3479, b"ping")
    p = B.write_pcap(tmp_path / "idle.pcap", [(B.T0, u), (B.T0 + 20 * B.SEC, u)], linktype=101)
    assert len(read_flows(p, names=False, idle_seconds=10).flows) == 2
    assert len(read_flows(p, names=False).flows) == 1


def test_tcp_does_not_split_on_idle(tmp_path):
    recs = [(B.T0, _tcp("S", 1)), (B.T0 + 1, _tcp("SA", 5, 2, False)), (B.T0 + 900 * B.SEC, _tcp("A", 2, 6))]
    p = B.write_pcap(tmp_path / "tcpidle.pcap", recs, linktype=101)
    assert len(read_flows(p, names=False).flows) == 1


# ---------------------------------------------------------------- ICMP errors
def test_icmp_admin_prohibited_quoting_udp(tmp_path):
    u = B.udp4(C, 50006, S, 3479, b"stun-ish payload")
    err = B.icmp4(R, C, 3, 13, u[:28])
    ft = _flows(tmp_path, [u, err])
    (f,) = [f for f in ft.flows if f.transport == "udp"]
    (e,) = f.icmp_errors
    assert (e.type, e.code, e.sender, e.toward) == (3, 13, R, "server")
    assert "administratively prohibited" in e.description
    assert e.ns == B.T0 + MS
    icmp = [f for f in ft.flows if f.transport == "icmp"]
    assert len(icmp) == 1 and icmp[0].client_port is None


def test_icmpv6_packet_too_big_quoting_tcp(tmp_path):
    c6, s6, r6 = "2001:db8::1", "2001:db8:1::2", "2001:db8:ff::1"
    seg = B.tcp6(c6, 50000, s6, 443, "PA", payload=b"x" * 1400)
    ptb = bytes(IPv6(src=r6, dst=c6) / ICMPv6PacketTooBig(mtu=1280) / Raw(seg[:1232]))
    ft = _flows(tmp_path, [B.tcp6(c6, 50000, s6, 443, "S", 1), seg, ptb])
    (f,) = [f for f in ft.flows if f.transport == "tcp"]
    (e,) = f.icmp_errors
    assert (e.type, e.code, e.sender, e.description, e.toward) == (2, 0, r6, "packet too big", "server")


def test_icmp_time_exceeded(tmp_path):
    u = bytes(IP(src=C, dst=S, ttl=1) / UDP(sport=50010, dport=33434) / (b"\0" * 12))
    te = B.icmp4(R, C, 11, 0, u)
    ft = _flows(tmp_path, [u, te])
    (f,) = [f for f in ft.flows if f.transport == "udp"]
    assert [(e.type, e.sender, e.description) for e in f.icmp_errors] == [(11, R, "time exceeded")]


def test_icmpv6_time_exceeded(tmp_path):
    c6, s6, r6 = "2001:db8::1", "2001:db8:1::2", "2001:db8:ff::1"
    u = B.udp6(c6, 50010, s6, 3479, b"hi")
    te = bytes(IPv6(src=r6, dst=c6) / ICMPv6TimeExceeded() / Raw(u))
    ft = _flows(tmp_path, [u, te])
    (f,) = [f for f in ft.flows if f.transport == "udp"]
    assert [(e.type, e.sender, e.description) for e in f.icmp_errors] == [(3, r6, "time exceeded")]


def test_icmp_error_quoting_a_server_packet_points_toward_the_client(tmp_path):
    c2s = B.tcp4(C, 50000, S, 443, "S", seq=1)
    s2c = B.tcp4(S, 443, C, 50000, "SA", seq=5, ack=2)
    err = B.icmp4(R, S, 3, 1, s2c[:28])
    ft = _flows(tmp_path, [c2s, s2c, err])
    (f,) = [f for f in ft.flows if f.transport == "tcp"]
    assert [(e.sender, e.toward, e.code) for e in f.icmp_errors] == [(R, "client", 1)]


def test_icmp_error_for_an_unknown_flow_is_ignored(tmp_path):
    q = B.udp4(C, 1234, S, 5678)
    ft = _flows(tmp_path, [B.icmp4(R, C, 3, 3, q[:28]), B.icmp4(R, C, 3, 3, q[:10])])
    assert [f.transport for f in ft.flows] == ["icmp"]
    assert ft.flows[0].icmp_errors == ()


# ---------------------------------------------------------------- damage
def test_truncated_capture_keeps_flows_up_to_the_cut(tmp_path):
    recs = [(B.T0 + i, B.ether(B.udp4(C, 50000 + i, S, 3479, b"p" * 40))) for i in range(5)]
    p = B.write_pcap(tmp_path / "full.pcap", recs)
    data = p.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])  # inside the last record's packet data
    ft = _read(cut, names=False)
    assert ft.capture["truncated"] is not None and ft.capture["truncated"]["record"] == 4
    assert ft.capture["packets"] == 4
    assert [f.client_port for f in ft.flows] == [50000, 50001, 50002, 50003]
    cut.write_bytes(data[: 24 + 2 * (16 + len(recs[0][1])) + 7])  # inside the third record header
    ft = _read(cut, names=False)
    assert ft.capture["truncated"] is not None and ft.capture["packets"] == 2
    assert len(ft.flows) == 2


# ---------------------------------------------------------------- batch boundaries
def _busy_capture(path):
    """A few hundred packets: interleaved TCP flows, a reused 5-tuple, UDP with an idle gap,
    fragments, retransmitted SYNs and ICMP errors, spread so that 256-byte batches split them."""
    rnd = random.Random(7)
    t = B.T0
    recs = []

    def add(ip, dt=MS):
        nonlocal t
        t += dt
        recs.append((t, B.ether(ip)))

    for rnd_i in range(100):
        port = 40000 + rnd_i % 12
        add(B.tcp4(C, port, S, 443, "PA", seq=rnd_i, payload=b"d" * rnd.randrange(0, 60)))
        add(B.tcp4(S, 443, C, port, "A", seq=rnd_i))
        if rnd_i == 5:
            add(_tcp("S", 100))
            add(_tcp("SA", 900, 101, False))
        if rnd_i == 10:
            add(B.udp4(C, 50006, S, 3479, b"before gap"))
            add(B.udp4(S, 3479, C, 50006, b"reply"))
        if rnd_i == 20:
            add(_tcp("FA", 101, 901))
            add(_tcp("FA", 901, 102, False))
        if rnd_i == 25:
            add(_tcp("S", 300))
            add(_tcp("S", 300))
        if rnd_i == 30:
            add(_tcp("SA", 77, 301, False))
            for f in fragment(IP(src=C, dst=S, id=9) / UDP(sport=50100, dport=3480) / (b"f" * 120), 40):
                add(bytes(f))
            add(B.icmp4(R, C, 3, 13, B.udp4(C, 50100, S, 3480)[:28]))
        if rnd_i == 40:
            add(B.udp4(C, 50006, S, 3479, b"after gap"), dt=400 * B.SEC)
        if rnd_i == 45:
            add(B.udp4(C, 50006, S, 3479, b"again"))
            add(_tcp("RA", 1, 1, False))
    B.write_pcap(path, recs)
    return len(recs)


def _comparable(ft):
    cap = dict(ft.capture)
    return cap, [asdict(f) for f in ft.flows]


@pytest.mark.parametrize("names", [False, True])
def test_batch_size_does_not_change_the_flows(tmp_path, names):
    p = tmp_path / "busy.pcap"
    n = _busy_capture(p)
    assert n > 150
    with open_capture(p, batch_bytes=256) as cap:
        assert sum(1 for _ in cap.batches()) > 50
    small = _read(p, names=names, batch_bytes=256)
    big = _read(p, names=names)
    assert _comparable(small) == _comparable(big)
    flows = big.flows
    reused = [f for f in flows if f.client_port == 50000 and f.transport == "tcp"]
    assert [f.state for f in reused] == ["closed", "reset"]
    assert reused[1].syn_count == 2
    udp = [f for f in flows if f.client_port == 50006]
    assert len(udp) == 2 and [f.packets_c2s for f in udp] == [1, 2]
    (frag,) = [f for f in flows if f.client_port == 50100]
    assert frag.ip_fragments == 3 and len(frag.icmp_errors) == 1


def test_one_packet_per_batch(tmp_path):
    p = tmp_path / "busy.pcap"
    _busy_capture(p)
    assert _comparable(_read(p, names=False, batch_bytes=1)) == _comparable(_read(p, names=False))


# ---------------------------------------------------------------- accounting on real captures
CAPTURES = sample_captures() + shared_captures()


@pytest.mark.parametrize("path", CAPTURES, ids=[capture_id(p) for p in CAPTURES])
def test_every_packet_is_decoded_or_counted(path):
    try:
        ft = read_flows(path, names=False)
    except CaptureError:
        pytest.skip("not a readable capture")
    _check_accounting(ft.capture)
    assert sum(f.packets_c2s + f.packets_s2c for f in ft.flows) == ft.capture["decoded"]


@pytest.mark.parametrize("batch_bytes", [None, 1, 100])
def test_icmp_error_after_an_idle_split_goes_to_the_new_flow(tmp_path, batch_bytes):
    # regression: the error used to go to the flow the 5-tuple had before the batch's idle splits
    u = B.udp4(C, 50006, S, 3479, b"x")
    recs = [(B.T0, u), (B.T0 + 400 * B.SEC, u), (B.T0 + 400 * B.SEC + 1, B.icmp4(R, C, 3, 13, u[:28])),
            (B.T0 + 900 * B.SEC, u)]
    p = B.write_pcap(tmp_path / "idleicmp.pcap", recs, linktype=101)
    ft = _read(p, names=False, batch_bytes=batch_bytes)
    assert [(f.transport, len(f.icmp_errors)) for f in ft.flows] == [("udp", 0), ("udp", 1), ("icmp", 0), ("udp", 0)]


@pytest.mark.parametrize("batch_bytes", [None, 1])
def test_icmp_error_before_a_new_syn_stays_with_the_old_flow(tmp_path, batch_bytes):
    ips = [_tcp("S", 100), B.icmp4(R, C, 3, 13, _tcp("S", 100)[:28]), _tcp("S", 200), _tcp("SA", 5, 201, False)]
    p = B.write_pcap(tmp_path / "synicmp.pcap", [(B.T0 + i, x) for i, x in enumerate(ips)], linktype=101)
    ft = _read(p, names=False, batch_bytes=batch_bytes)
    tcp = [f for f in ft.flows if f.transport == "tcp"]
    assert [(f.state, len(f.icmp_errors)) for f in tcp] == [("no-answer", 1), ("established", 0)]


# ---------------------------------------------------------------- property: batch size never matters
_POOL = [
    _tcp("S", 100), _tcp("S", 200), _tcp("SA", 900, 101, False), _tcp("A", 101, 901), _tcp("FA", 101, 901),
    _tcp("FA", 901, 102, False), _tcp("RA", 0, 101, False), _tcp("PA", 101, 901, payload=b"\x16\x03\x01hello"),
    B.udp4(C, 50006, S, 3479, b"ping"), B.udp4(S, 3479, C, 50006, b"pong"),
    B.icmp4(R, C, 3, 13, B.udp4(C, 50006, S, 3479, b"ping")[:28]), B.icmp4(R, C, 3, 3, _tcp("S", 100)[:28]),
    B.udp4(C, 50007, S, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"),
] + [bytes(f) for f in fragment(IP(src=C, dst=S, id=3) / UDP(sport=50008, dport=3480) / (b"f" * 60), 32)]


_POOL += [
    B.udp6("2001:db8::1", 50010, "2001:db8::2", 3478,  # a STUN Binding request over IPv6 (RFC 8489 section 5)
           b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"t" * 12),
    B.udp4(S, 53, C, 50007, b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"
           b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x34\x70\x00\x0a"),  # its answer: a -> S
    B.tcp4(C, 50011, S, 443, "A", seq=5, ack=6),  # a bare ACK (copies of it are dropped only once copies are systematic)
]


def _full(ft):
    """Everything a reader sees: capture, flows, DNS events and stats."""
    cap, flows = _comparable(ft)
    return cap, flows, [e.to_dict() for e in ft.dns], ft.stats


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# found by CI: ICMP errors quoting a 5-tuple whose own packets follow later in the same batch
@example(pkts=[(8, 1, 0, 0), (10, 1, 0, 0), (10, 1, 0, 0), (11, 1, 0, 0), (0, 1, 0, 0)], batch_bytes=64)
@example(pkts=[(8, 1, 0, 0), (10, 1, 0, 0), (10, 1, 0, 0), (11, 1, 0, 0), (0, 1, 0, 0)], batch_bytes=300)
# copies across a batch boundary, on another interface, and a bare ACK copied after two strong copies
@example(pkts=[(0, 1, 1, 0), (8, 1000, 1, 1), (len(_POOL) - 1, 1, 2, 0), (7, 1, 1, 1)], batch_bytes=1)
@given(st.lists(st.tuples(st.integers(0, len(_POOL) - 1), st.sampled_from([1, 1000, 200 * B.SEC, 400 * B.SEC]),
                          st.integers(0, 2),  # copies of the packet that follow it, 1 us apart (SPAN, pktmon)
                          st.integers(0, 1)),  # the interface its copies come on: 0 the same, 1 the other
                min_size=1, max_size=40),
       st.sampled_from([1, 64, 300]))
def test_batch_size_never_matters(tmp_path, pkts, batch_bytes):
    """Whatever the batches, the same flows, DNS events and stats, on a two-interface pcapng with
    copies; and every packet is a flow's, undecoded, or a dropped copy."""
    t = B.T0
    recs = []
    for k, dt, copies, other in pkts:
        t += dt
        recs.append((0, t, B.ether(_POOL[k])))
        for c in range(copies):
            recs.append((other, t + (c + 1) * 1000, B.ether(_POOL[k])))
        t += copies * 1000
    p = B.write_pcapng(tmp_path / "prop.pcapng", [1, 1], recs)
    small, whole = _read(p, batch_bytes=batch_bytes), _read(p)
    assert _full(small) == _full(whole)
    assert sum(f.packets_c2s + f.packets_s2c for f in whole.flows) == whole.capture["decoded"]
    assert whole.capture["undecoded"].get("duplicate", 0) == whole.capture["duplicates_dropped"]


# ---------------------------------------------------------------- the slot table: hash collisions
@pytest.mark.parametrize("buckets", [1, 4])
@pytest.mark.parametrize("batch_bytes", [None, 256])
def test_hash_collisions_change_nothing(tmp_path, monkeypatch, buckets, batch_bytes):
    """5-tuples are found by a 64-bit hash, confirmed against the key: with a hash of one or four
    values (every key colliding, in one batch and across batches) the flows are the same."""
    import numpy as np

    from meshpcap.flows import engine

    p = tmp_path / "busy.pcap"
    _busy_capture(p)
    want = _comparable(_read(p, batch_bytes=batch_bytes))
    real = engine._key_hash
    monkeypatch.setattr(engine, "_key_hash", lambda cols: real(cols) & np.uint64(buckets - 1))
    # the compiled grouping (_group.c) hashes in C: the numpy twin groups here, with the narrowed hash
    # (the compiled one hands a batch with a collision to that twin: tests/flows/test_group_ext.py)
    monkeypatch.setattr(engine, "GROUP", None)
    got = _read(p, batch_bytes=batch_bytes)
    assert _comparable(got) == want
    assert len(got.flows) > 10


def test_slot_table_finds_each_key_once():
    import numpy as np

    from meshpcap.flows.engine import SlotTable, _key_columns, _key_hash

    keys = [(6, 4, 0, 1, 0, 2, 40000, 443), (17, 4, 0, 1, 0, 2, 40000, 443), (17, 6, 2**63, 5, 2**64 - 1, 7, 1, 2)]
    table = SlotTable()
    dtypes = (np.int64, np.int64, np.uint64, np.uint64, np.uint64, np.uint64, np.int64, np.int64)  # as group_batch's
    cols = tuple(np.array(c, dtype=dt) for c, dt in zip(zip(*keys), dtypes))
    h = _key_hash(_key_columns(*cols))
    first = table.lookup(cols, h)
    again = table.lookup(tuple(c[::-1] for c in cols), h[::-1])
    assert first.tolist() == [0, 1, 2] and again.tolist() == [2, 1, 0]
    assert [table[s] for s in range(3)] == keys and list(table) == keys
    assert [table.find(k) for k in keys] == [0, 1, 2]
    assert table.find((6, 4, 0, 1, 0, 2, 40000, 444)) is None
    asked = keys[::-1] + [(6, 4, 0, 1, 0, 2, 40000, 444)]
    many = tuple(np.array(c, dtype=dt) for c, dt in zip(zip(*asked), SlotTable.KEY_DTYPES))
    assert table.find_many(many).tolist() == [2, 1, 0, -1]  # find() of each, at once, nothing added
    assert len(table) == 3
    # a key whose hash another key holds lives in the collided dict: found there too
    more = ((17,), (4,), (0,), (9,), (0,), (9,), (5,), (6,))
    table.lookup(tuple(np.array(c, dtype=dt) for c, dt in zip(more, dtypes)), h[:1])
    assert table.collided and table.find_many(tuple(np.array(c, dtype=dt) for c, dt in zip(more, SlotTable.KEY_DTYPES))
                                              ).tolist() == [table.find(tuple(c[0] for c in more))] == [3]


# ---------------------------------------------------------------- FlowRecords: a sequence made when read
def test_flow_records_behave_as_a_list(tmp_path):
    p = tmp_path / "busy.pcap"
    _busy_capture(p)
    ft = _read(p)
    recs = ft.flows
    streamed = list(recs.stream(chunk=3))
    assert recs._kept is None  # stream() keeps nothing
    assert len(recs) == len(streamed) > 10
    assert recs[0] == streamed[0] and recs[-1] == streamed[-1] and recs[2:5] == streamed[2:5]
    assert [f.id for f in streamed] == list(range(1, len(streamed) + 1))
    with pytest.raises(IndexError):
        recs[len(recs)]
    assert recs == streamed and list(recs) == streamed and recs[1] == streamed[1]
    assert recs._kept is not None  # a full iteration keeps the records for the next

    import copy
    import pickle

    assert pickle.loads(pickle.dumps(ft)).flows == streamed  # a plain list on the other side
    assert copy.deepcopy(ft).flows == streamed


# ---------------------------------------------------------------- flows started at once
def _scan_capture(path):
    """Runs of new UDP 5-tuples (IPv4 and IPv6, some answered, some over an idle gap) between TCP flows,
    ICMP errors quoting them and DNS: the events FlowBuilder starts at once and the ones it takes one by one."""
    rnd = random.Random(11)
    recs, t = [], B.T0
    for i in range(400):
        t += rnd.choice((1000, MS, 70 * B.SEC))
        r = rnd.random()
        if r < 0.1:
            ip = B.tcp4(C, 41000 + i % 30, S, 443, rnd.choice(("S", "SA", "A", "F", "R")), seq=i % 3)
        elif r < 0.13:
            ip = B.icmp4("192.0.2.1", C, 3, 13, B.udp4(C, 42000 + i % 50, f"100.64.0.{i % 50}", 7777)[:28])
        elif r < 0.25:
            ip = B.udp6("2001:db8::1", 42000 + i % 50, f"2001:db8:1::{i % 50:x}", 7777)
        elif r < 0.35:
            ip = B.udp4(f"100.64.0.{i % 50}", 7777, C, 42000 + i % 50)  # an answer, or the first packet
        else:
            ip = B.udp4(C, 42000 + i % 50, f"100.64.0.{i % 50}", 7777)
        recs.append((t, B.ether(ip)))
    return B.write_pcap(path, recs)


@pytest.mark.parametrize("batch_bytes", [None, 256, 4096])
@pytest.mark.parametrize("run", [1, 3])
def test_flows_started_at_once_are_the_ones_started_one_by_one(tmp_path, monkeypatch, batch_bytes, run):
    from meshpcap.flows import engine

    _busy_capture(tmp_path / "busy.pcap")
    for p in (tmp_path / "busy.pcap", _scan_capture(tmp_path / "scan.pcap")):
        monkeypatch.setattr(engine, "_RUN", 1 << 30)  # never: every event one by one
        want = _full(_read(p, batch_bytes=batch_bytes))
        monkeypatch.setattr(engine, "_RUN", run)
        calls = []
        real = engine.FlowBuilder._new_flows
        monkeypatch.setattr(engine.FlowBuilder, "_new_flows",
                            lambda self, *a, calls=calls, real=real: calls.append(1) or real(self, *a))
        assert _full(_read(p, batch_bytes=batch_bytes)) == want
        assert calls or p.name == "busy.pcap"  # in the scan, some runs were started at once
        monkeypatch.undo()


# ---------------------------------------------------------------- --max-flows
def test_max_flows_stops_with_one_line(tmp_path):
    from meshpcap.flows.engine import FlowLimitError

    p = tmp_path / "busy.pcap"
    _busy_capture(p)
    n = len(_read(p, names=False).flows)
    assert len(_read(p, names=False, max_flows=n).flows) == n
    with pytest.raises(FlowLimitError) as err:
        _read(p, names=False, max_flows=n - 1, batch_bytes=256)
    assert str(err.value).startswith(f"{p}: more than {n - 1:,} flows") and "\n" not in str(err.value)
