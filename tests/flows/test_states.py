"""TCP outcomes and client/server orientation of flows built from small captures."""

from __future__ import annotations

import pytest

from meshpcap import read_flows
from tests import builders as B

C, S = "10.0.0.1", "52.112.0.10"
CP, SP = 50000, 443


def _flows(tmp_path, ips, name="c.pcap"):
    """Raw-IP capture, one packet per millisecond."""
    p = B.write_pcap(tmp_path / name, [(B.T0 + i * 1_000_000, ip) for i, ip in enumerate(ips)], linktype=101)
    ft = read_flows(p, names=False)
    c = ft.capture
    assert c["packets"] == c["decoded"] + sum(c["undecoded"].values())
    return ft.flows


def c2s(flags, seq=100, ack=0, payload=b""):
    return B.tcp4(C, CP, S, SP, flags, seq=seq, ack=ack, payload=payload)


def s2c(flags, seq=900, ack=0, payload=b""):
    return B.tcp4(S, SP, C, CP, flags, seq=seq, ack=ack, payload=payload)


HANDSHAKE = [c2s("S", 100), s2c("SA", 900, 101), c2s("A", 101, 901)]

STATES = {
    "established": HANDSHAKE + [c2s("PA", 101, 901, b"GET"), s2c("A", 901, 104)],
    "rejected": [c2s("S", 100), s2c("RA", 0, 101)],
    "no-answer": [c2s("S", 100), c2s("S", 100), c2s("S", 100)],
    "reset": HANDSHAKE + [c2s("PA", 101, 901, b"hi"), s2c("RA", 901, 103)],
    "closed": HANDSHAKE + [c2s("FA", 101, 901), s2c("FA", 901, 102), c2s("A", 102, 902)],
    "midstream": [s2c("PA", 900, 100, b"data"), c2s("A", 100, 904), c2s("PA", 100, 904, b"more")],
    "one-way": [c2s("PA", 100, 900, b"x"), c2s("PA", 101, 900, b"y")],
}


@pytest.mark.parametrize("state", list(STATES))
def test_tcp_states(tmp_path, state):
    flows = _flows(tmp_path, STATES[state])
    assert len(flows) == 1
    f = flows[0]
    assert f.state == state
    assert (f.client, f.client_port, f.server, f.server_port) == (C, CP, S, SP)
    assert f.transport == "tcp" and f.ip_version == 4
    assert f.packets_c2s + f.packets_s2c == len(STATES[state])


def test_no_answer_counts_retransmitted_syns(tmp_path):
    (f,) = _flows(tmp_path, STATES["no-answer"])
    assert f.syn_count == 3 and f.packets_c2s == 3 and f.packets_s2c == 0
    assert f.orientation == "syn"
    assert (f.first_ns, f.last_ns) == (B.T0, B.T0 + 2_000_000)


def test_handshake_flows_count_one_syn(tmp_path):
    (f,) = _flows(tmp_path, STATES["established"])
    assert f.syn_count == 1 and f.orientation == "syn"


def test_rst_after_data_from_client_is_reset(tmp_path):
    (f,) = _flows(tmp_path, HANDSHAKE + [c2s("R", 101)])
    assert f.state == "reset"


def test_syn_sender_is_client_even_on_a_service_port(tmp_path):
    # the SYN decides, not the port numbers: 3478 is a TURN port, 55555 is ephemeral
    ips = [B.tcp4(C, 3478, S, 55555, "S", seq=1), B.tcp4(S, 55555, C, 3478, "SA", seq=5, ack=2)]
    (f,) = _flows(tmp_path, ips)
    assert (f.client, f.client_port, f.server, f.server_port) == (C, 3478, S, 55555)
    assert f.orientation == "syn" and f.state == "established"


def test_syn_ack_only_client_is_its_receiver(tmp_path):
    # capture started after the SYN: the SYN-ACK goes from the server to the client
    ips = [B.tcp4(S, 55555, C, 3478, "SA", seq=5, ack=2), B.tcp4(C, 3478, S, 55555, "A", seq=2, ack=6)]
    (f,) = _flows(tmp_path, ips)
    assert (f.client, f.client_port, f.server, f.server_port) == (C, 3478, S, 55555)
    assert f.orientation == "syn-ack"
    assert (f.packets_c2s, f.packets_s2c) == (1, 1)


@pytest.mark.parametrize("cport,sport", [(50000, 443), (50006, 3479), (61000, 8443), (40000, 30001)])
def test_without_handshake_the_ephemeral_port_is_the_client(tmp_path, cport, sport):
    ips = [B.tcp4(S, sport, C, cport, "PA", payload=b"srv"), B.tcp4(C, cport, S, sport, "A")]
    (f,) = _flows(tmp_path, ips)
    assert (f.client, f.client_port, f.server_port) == (C, cport, sport)
    assert f.orientation == "ports" and f.state == "midstream"
    assert (f.packets_c2s, f.packets_s2c) == (1, 1)


def test_udp_bidirectional_and_one_way(tmp_path):
    ips = [
        B.udp4(C, 50006, S, 3479, b"req"), B.udp4(S, 3479, C, 50006, b"resp"),
        B.udp4(C, 50010, S, 3480, b"lonely"), B.udp4(C, 50010, S, 3480, b"lonely"),
    ]
    flows = _flows(tmp_path, ips)
    by_port = {f.client_port: f for f in flows}
    assert by_port[50006].state == "bidirectional"
    assert (by_port[50006].packets_c2s, by_port[50006].packets_s2c) == (1, 1)
    assert by_port[50010].state == "one-way"
    assert (by_port[50010].packets_c2s, by_port[50010].packets_s2c) == (2, 0)
    assert all(f.syn_count == 0 for f in flows)


def test_udp_relay_port_is_the_server_even_when_it_speaks_first(tmp_path):
    ips = [B.udp4(S, 3479, C, 50006, b"first"), B.udp4(C, 50006, S, 3479, b"second")]
    (f,) = _flows(tmp_path, ips)
    assert (f.client, f.client_port, f.server, f.server_port) == (C, 50006, S, 3479)
    assert f.orientation == "ports"


def test_same_ports_fall_back_to_the_first_talker(tmp_path):
    ips = [B.udp4(S, 5000, C, 5000, b"a"), B.udp4(C, 5000, S, 5000, b"b")]
    (f,) = _flows(tmp_path, ips)
    assert f.client == S and f.orientation == "first-packet"


def test_ipv6_tcp_flow(tmp_path):
    c6, s6 = "2001:db8::1", "2603:1063::5"
    ips = [B.tcp6(c6, 50000, s6, 443, "S", 1), B.tcp6(s6, 443, c6, 50000, "SA", 9), B.tcp6(c6, 50000, s6, 443, "A", 2)]
    (f,) = _flows(tmp_path, ips)
    assert (f.client, f.server, f.ip_version, f.state) == (c6, s6, 6, "established")
    assert (f.bytes_c2s, f.bytes_s2c) == (2 * (40 + 20), 40 + 20)
