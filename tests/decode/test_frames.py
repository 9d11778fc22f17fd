"""Columnar frame decoding: every link type, tunnels, IPv6 extension headers, fragments, damaged headers, fuzz."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.packet import Raw

from meshpcap import read_flows as _read_flows
from meshpcap.decode import frames as F
from tests import builders as B

C4, S4 = "10.0.0.1", "20.0.0.2"
C6, S6 = "2001:db8::1", "2001:db8:1::2"
TCP4 = B.tcp4(C4, 50000, S4, 443, "S", seq=7)
UDP6 = B.udp6(C6, 50001, S6, 3478, b"hello")

LINK_CASES = {
    # name: (linktype, wrap)
    "ethernet": (1, B.ether),
    "vlan": (1, B.vlan),
    "qinq": (1, B.qinq),
    "pppoe": (1, B.pppoe),
    "pppoe-pfc": (1, lambda ip: B.pppoe(ip, compressed=True)),
    "sll": (113, B.sll),
    "sll2": (276, B.sll2),
    "raw-101": (101, lambda ip: ip),
    "raw-12": (12, lambda ip: ip),
    "raw-14": (14, lambda ip: ip),
    "null-le": (0, lambda ip: B.null(ip, "<")),
    "null-be": (0, lambda ip: B.null(ip, ">")),
    "null-le-af28": (0, lambda ip: B.null(ip, "<", af6=28)),
    "null-be-af30": (0, lambda ip: B.null(ip, ">", af6=30)),
    "loop": (108, B.loop),
    "loop-af28": (108, lambda ip: B.loop(ip, af6=28)),
    "ppp": (9, B.ppp),
    "ppp-acfc": (9, lambda ip: B.ppp(ip, acf=False)),
    "ppp-pfc": (9, lambda ip: B.ppp(ip, compressed=True)),
}


def read_flows(path, names=False):
    """read_flows plus the accounting invariant: every record is decoded or counted by reason."""
    ft = _read_flows(path, names=names)
    c = ft.capture
    assert c["packets"] == c["decoded"] + sum(c["undecoded"].values())
    return ft


def _addr4(d, i):
    return int(d.src_lo[i]), int(d.dst_lo[i])


@pytest.mark.parametrize("name", list(LINK_CASES))
def test_link_types_decode_ipv4_and_ipv6(name):
    lt, wrap = LINK_CASES[name]
    d = B.decode([wrap(TCP4), wrap(UDP6)], lt)
    assert d.reason.tolist() == [0, 0]
    assert d.ip_version.tolist() == [4, 6]
    assert d.proto.tolist() == [6, 17]
    assert _addr4(d, 0) == (B.ipv4_int(C4), B.ipv4_int(S4))
    assert (int(d.src_hi[1]) << 64 | int(d.src_lo[1])) == 0x20010DB8 << 96 | 1
    assert d.sport.tolist() == [50000, 50001]
    assert d.dport.tolist() == [443, 3478]
    assert d.tcp_flags[0] == 0x02 and d.tcp_seq[0] == 7
    assert d.ip_len.tolist() == [len(TCP4), len(UDP6)]
    assert not d.encapsulated.any()


@pytest.mark.parametrize("lt,ip", [(228, TCP4), (229, UDP6)])
def test_raw_ipv4_and_ipv6_link_types(tmp_path, lt, ip):
    d = B.decode([ip], lt)
    assert d.reason[0] == 0
    assert d.ip_version[0] == (4 if lt == 228 else 6)
    # a second later: the same packet 1 ns later would be a duplicate, counted once
    p = B.write_pcap(tmp_path / f"lt{lt}.pcap", [(B.T0, ip), (B.T0 + B.SEC, ip)], linktype=lt)
    (f,) = read_flows(p, names=False).flows
    assert (f.ip_version, f.packets_c2s, f.bytes_c2s) == (d.ip_version[0], 2, 2 * len(ip))
    wrong = TCP4 if lt == 229 else UDP6  # the link type fixes the IP version
    p = B.write_pcap(tmp_path / f"wrong{lt}.pcap", [(B.T0, wrong)], linktype=lt)
    assert read_flows(p, names=False).capture["undecoded"] == {"bad IP version": 1}


@pytest.mark.parametrize("name", list(LINK_CASES))
def test_link_types_give_flows(tmp_path, name):
    lt, wrap = LINK_CASES[name]
    p = B.write_pcap(tmp_path / f"{name}.pcap", [
        (B.T0, wrap(TCP4)),
        (B.T0 + 1, wrap(B.tcp4(S4, 443, C4, 50000, "SA", seq=9, ack=8))),
        (B.T0 + 2, wrap(UDP6)),
    ], linktype=lt)
    ft = read_flows(p, names=False)
    assert ft.capture["decoded"] == 3 and ft.capture["undecoded"] == {}
    got = {(f.transport, f.client, f.client_port, f.server, f.server_port, f.packets_c2s, f.packets_s2c) for f in ft.flows}
    assert got == {("tcp", C4, 50000, S4, 443, 1, 1), ("udp", C6, 50001, S6, 3478, 1, 0)}


def test_pcapng_mixing_ethernet_sll2_and_raw(tmp_path):
    p = B.write_pcapng(tmp_path / "mixed.pcapng", [1, 276, 101], [
        (0, B.T0, B.ether(TCP4)),
        (1, B.T0 + 10, B.sll2(B.tcp4(S4, 443, C4, 50000, "SA", seq=9, ack=8))),
        (2, B.T0 + 20, B.tcp4(C4, 50000, S4, 443, "A", seq=8, ack=10)),
        (1, B.T0 + 30, B.sll2(UDP6)),
    ])
    ft = read_flows(p, names=False)
    assert sorted(ft.capture["link_types"]) == ["ethernet", "linux_sll2", "raw"]
    assert ft.capture["decoded"] == 4
    tcp = [f for f in ft.flows if f.transport == "tcp"]
    assert len(tcp) == 1 and (tcp[0].packets_c2s, tcp[0].packets_s2c) == (2, 1)
    assert tcp[0].state == "established"
    assert (tcp[0].first_ns, tcp[0].last_ns) == (B.T0, B.T0 + 20)


def test_unknown_link_type_is_counted_not_fatal(tmp_path):
    p = B.write_pcapng(tmp_path / "unknown.pcapng", [147, 1], [
        (0, B.T0, b"\x01\x02\x03" + TCP4),
        (1, B.T0 + 1, B.ether(TCP4)),
        (0, B.T0 + 2, TCP4),
    ])
    ft = read_flows(p, names=False)
    assert ft.capture["undecoded"] == {"unknown link type": 2}
    assert ft.capture["decoded"] == 1 and len(ft.flows) == 1


def test_pcap_with_unknown_link_type(tmp_path):
    p = B.write_pcap(tmp_path / "dlt147.pcap", [(B.T0, TCP4), (B.T0 + 1, TCP4)], linktype=147)
    ft = read_flows(p, names=False)
    assert ft.flows == [] and ft.capture["undecoded"] == {"unknown link type": 2}


def test_non_ip_frames_get_their_reasons():
    arp = B.ether(b"\0" * 28, 0x0806)
    lldp = B.ether(b"\0" * 30, 0x88CC)
    stp = bytes.fromhex("0180c2000000" "02000000000a") + struct.pack("!H", 38) + b"\x42\x42\x03" + b"\0" * 35
    d = B.decode([arp, lldp, stp])
    assert [F.REASONS[r] for r in d.reason.tolist()] == ["not IP (ARP)", "not IP (other ethertype)",
                                                         "not IP (LLC or other non-IP frame)"]


def test_mpls_label_stack():
    labels = struct.pack("!II", (100 << 12) | 64, (200 << 12) | (1 << 8) | 64)
    d = B.decode([B.ether(labels + TCP4, 0x8847)])
    assert d.reason[0] == 0 and d.dport[0] == 443


# ---------------------------------------------------------------- tunnels
INNER = B.tcp4("172.16.0.5", 51000, "172.16.9.9", 8443, "S", seq=1)
INNER_FRAME = B.ether(INNER)

TUNNELS = {
    "gre-ip": lambda: B.gre(INNER, 0x0800),
    "gre-ip-key-seq": lambda: B.gre(INNER, 0x0800, flags=0x3000, extra=struct.pack("!II", 5, 6)),
    "gre-teb": lambda: B.gre(INNER_FRAME, 0x6558),
    "erspan2": lambda: B.erspan2(INNER_FRAME),
    "erspan3": lambda: B.erspan3(INNER_FRAME),
    "erspan3-platform": lambda: B.erspan3(INNER_FRAME, platform=True),
    "vxlan": lambda: B.vxlan(INNER_FRAME),
    "geneve-teb": lambda: B.geneve(INNER_FRAME),
    "geneve-ip-opts": lambda: B.geneve(INNER, 0x0800, options=b"\x01\x02\x03\x01" + b"\0" * 4),
}


@pytest.mark.parametrize("name", list(TUNNELS))
def test_tunnels_yield_the_inner_five_tuple(tmp_path, name):
    outer = TUNNELS[name]()
    d = B.decode([B.ether(outer)])
    assert d.reason[0] == 0 and d.encapsulated[0]
    assert _addr4(d, 0) == (B.ipv4_int("172.16.0.5"), B.ipv4_int("172.16.9.9"))
    assert (d.sport[0], d.dport[0], d.proto[0]) == (51000, 8443, 6)
    assert d.ip_len[0] == len(INNER)

    reply = B.tcp4("172.16.9.9", 8443, "172.16.0.5", 51000, "SA", seq=3, ack=2)
    outer_reply = {"gre-ip": lambda: B.gre(reply, 0x0800), "gre-ip-key-seq": lambda: B.gre(reply, 0x0800)}.get(
        name, lambda: TUNNELS[name]().replace(INNER, reply))()
    p = B.write_pcap(tmp_path / "t.pcap", [(B.T0, B.ether(outer)), (B.T0 + 5, B.ether(outer_reply))])
    ft = read_flows(p, names=False)
    assert len(ft.flows) == 1
    f = ft.flows[0]
    assert (f.client, f.client_port, f.server, f.server_port) == ("172.16.0.5", 51000, "172.16.9.9", 8443)
    assert f.encapsulated and f.state == "established"
    assert (f.packets_c2s, f.packets_s2c, f.bytes_c2s, f.bytes_s2c) == (1, 1, len(INNER), len(reply))


def test_plain_udp_on_tunnel_ports_without_vxlan_flag_is_not_peeled():
    d = B.decode([B.ether(B.udp4(C4, 50000, S4, 4789, b"\0" * 30))])
    assert d.reason[0] == 0 and not d.encapsulated[0] and d.dport[0] == 4789


# ---------------------------------------------------------------- IPv6 extension headers, fragments
def test_ipv6_hop_by_hop_and_destination_options_before_tcp():
    pkt = bytes(IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=50000, dport=443, flags="S"))
    d = B.decode([B.ether(pkt)])
    assert d.reason[0] == 0
    assert (d.proto[0], d.sport[0], d.dport[0], d.tcp_flags[0]) == (6, 50000, 443, 2)
    assert d.ip_len[0] == len(pkt)
    assert d.l4[0] == 14 + 40 + 8 + 8


def test_ipv6_extension_headers_in_a_capture(tmp_path):
    syn = bytes(IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=50000, dport=443, flags="S"))
    synack = bytes(IPv6(src=S6, dst=C6) / IPv6ExtHdrDestOpt() / TCP(sport=443, dport=50000, flags="SA"))
    p = B.write_pcap(tmp_path / "ext.pcap", [(B.T0, B.ether(syn)), (B.T0 + 7, B.ether(synack))])
    (f,) = read_flows(p, names=False).flows
    assert (f.client, f.client_port, f.server, f.server_port, f.state) == (C6, 50000, S6, 443, "established")
    assert (f.bytes_c2s, f.bytes_s2c) == (len(syn), len(synack))


def test_ipv6_fragment_header():
    body = bytes(UDP(sport=50000, dport=3478) / (b"z" * 100))
    first = bytes(IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=99) / Raw(body[:56]))
    later = bytes(IPv6(src=C6, dst=S6) / IPv6ExtHdrFragment(nh=17, offset=7, m=0, id=99) / Raw(body[56:]))
    d = B.decode([first, later], 101)
    assert d.reason.tolist() == [0, 0]
    assert d.ip_id.tolist() == [99, 99]
    assert d.frag_offset.tolist() == [0, 56] and d.more_frags.tolist() == [True, False]
    assert (d.sport[0], d.dport[0]) == (50000, 3478)
    assert d.sport[1] == -1  # a later fragment has no transport header; the flow builder supplies the ports


def test_ipv4_fragments():
    pkt = IP(src=C4, dst=S4, id=4242) / UDP(sport=50000, dport=3478) / (b"q" * 100)
    frags = [bytes(f) for f in __import__("scapy.all", fromlist=["fragment"]).fragment(pkt, fragsize=40)]
    d = B.decode(frags, 101)
    assert d.reason.tolist() == [0] * len(frags)
    assert d.more_frags.tolist() == [True] * (len(frags) - 1) + [False]
    assert d.frag_offset[0] == 0 and d.frag_offset[1] == 40
    assert d.sport[0] == 50000 and (d.sport[1:] == -1).all()


# ---------------------------------------------------------------- damaged packets
def test_damaged_headers_are_counted_by_reason():
    tcp = bytearray(TCP4)
    bad_ihl = bytearray(TCP4)
    bad_ihl[0] = 0x44  # IHL 4 (16 bytes) is less than the 20-byte minimum (RFC 791 section 3.1)
    bad_doff = bytearray(TCP4)
    bad_doff[20 + 12] = 0x40  # data offset 4 words (RFC 9293 section 3.1)
    frames = [
        B.ether(bytes(tcp[:12])),  # truncated IP header
        B.ether(bytes(bad_ihl)),
        B.ether(bytes(bad_doff)),
        B.ether(bytes(tcp[:30])),  # TCP header cut before its flags
        B.ether(B.udp4(C4, 1, S4, 2)[:22]),  # UDP header cut before the destination port
        B.ether(bytes(IP(src=C4, dst=S4, proto=1)) + b"\x03"),  # ICMP header cut
        b"\x02\x00\x00",  # shorter than an Ethernet header
        B.ether(bytes([0x75]) + bytes(tcp[1:])),  # IP version 7 under ethertype 0x0800
    ]
    d = B.decode(frames)
    assert [F.REASONS.get(r, "ok") for r in d.reason.tolist()] == [
        "truncated IP header", "bad IPv4 header length", "bad TCP header length", "truncated TCP header",
        "truncated UDP header", "truncated ICMP header", "truncated link header", "bad IP version",
    ]


def test_damaged_packets_are_counted_in_the_capture(tmp_path):
    bad_ihl = bytearray(TCP4)
    bad_ihl[0] = 0x43
    bad_doff = bytearray(TCP4)
    bad_doff[32] = 0x30
    p = B.write_pcap(tmp_path / "damaged.pcap", [
        (B.T0, B.ether(TCP4[:10])),
        (B.T0 + 1, B.ether(bytes(bad_ihl))),
        (B.T0 + 2, B.ether(bytes(bad_doff))),
        (B.T0 + 3, B.ether(TCP4)),
    ])
    ft = read_flows(p, names=False)
    c = ft.capture
    assert c["undecoded"] == {"truncated IP header": 1, "bad IPv4 header length": 1, "bad TCP header length": 1}
    assert c["packets"] == 4 and c["decoded"] == 1 and len(ft.flows) == 1


def test_ipv6_extension_chain_truncated():
    pkt = bytes(IPv6(src=C6, dst=S6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP())
    d = B.decode([pkt[:40 + 8 + 4]], 101)
    assert F.REASONS[int(d.reason[0])] == "IPv6 extension header chain too long or truncated"


def test_tunnels_nested_too_deep():
    frame = B.gre(B.gre(B.gre(B.gre(INNER, 0x0800), 0x0800), 0x0800), 0x0800)
    d = B.decode([frame], 101)
    assert F.REASONS[int(d.reason[0])] == "encapsulation nested too deep"
    d = B.decode([B.gre(B.gre(B.gre(INNER, 0x0800), 0x0800), 0x0800)], 101)
    assert d.reason[0] == 0 and d.dport[0] == 8443


def test_empty_batch():
    d = B.decode([], 1)
    assert d.reason.size == 0


# ---------------------------------------------------------------- fuzz
FUZZ_LINKTYPES = sorted({lt for lt, _ in LINK_CASES.values()} | {228, 229, 50, 204, 147})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(FUZZ_LINKTYPES), st.binary(max_size=120)), max_size=12))
def test_decode_batch_random_bytes_never_raise(pkts):
    d = B.decode([p for _, p in pkts], [lt for lt, _ in pkts])
    assert all(r == 0 or r in F.REASONS for r in d.reason.tolist())
    assert d.reason.size == len(pkts)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(list(LINK_CASES) + ["gre", "vxlan", "erspan3"]), st.integers(0, 200), st.binary(max_size=80))
def test_decode_batch_valid_prefix_plus_random(name, cut, tail):
    if name in LINK_CASES:
        lt, wrap = LINK_CASES[name]
        frame = wrap(TCP4)
    else:
        lt, frame = 1, B.ether({"gre": TUNNELS["gre-teb"], "vxlan": TUNNELS["vxlan"], "erspan3": TUNNELS["erspan3"]}[name]())
    frame = frame[: cut % (len(frame) + 1)] + tail
    d = B.decode([B.ether(UDP6), frame, B.ether(TCP4)], [1, lt, 1])
    assert d.reason[0] == 0 and d.reason[2] == 0  # neighbours are unaffected
    assert int(d.reason[1]) == 0 or int(d.reason[1]) in F.REASONS
    if d.reason[1] == 0:
        assert d.ip_version[1] in (4, 6)
    assert np.all(d.payload_cap >= 0)


@pytest.mark.parametrize("name", ["gre-ip", "gre-teb", "erspan2", "erspan3"])
def test_gre_cut_inside_its_header_or_inner_frame_is_a_truncated_tunnel(name):
    # regression: such packets used to become a GRE flow between the mirror and the collector
    outer = TUNNELS[name]()
    inner = INNER if name == "gre-ip" else INNER_FRAME
    cuts = [20 + 2, 20 + 4 + 4, len(outer) - len(inner) + 8]  # in GRE, in ERSPAN or inner header, in the inner frame
    d = B.decode([outer[:c] for c in cuts], 101)
    assert [F.REASONS[int(r)] for r in d.reason] == ["truncated tunnel header"] * len(cuts)


def test_gre_with_another_payload_stays_a_gre_packet():
    d = B.decode([B.gre(b"\xc0\x21" + b"\0" * 30, 0x880B, flags=0x2001, extra=b"\0" * 4)], 101)  # PPTP
    assert d.reason[0] == 0 and d.proto[0] == 47 and not d.encapsulated[0]
