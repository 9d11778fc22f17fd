"""The naming stage through ``meshpcap.read_flows``: TLS, QUIC, DNS, HTTP, CONNECT, STUN/TURN, hostile names.

Each test builds a small capture with the sample generator's helpers (samples/make_samples.py),
writes it to ``tmp_path`` and reads it back, so the whole pipeline (capture reader, frame
decoder, flow builder, naming) is exercised.
"""

from __future__ import annotations

import ipaddress
import struct
import sys

import pytest

from meshpcap import read_flows
from meshpcap import testing as mt
from meshpcap.decode import quic
from meshpcap.flows.model import Flow, FlowTable
from meshpcap.flows.naming import NAME_PRIORITY
from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))
import make_samples as ms  # noqa: E402
from scapy.layers.inet import UDP  # noqa: E402
from scapy.packet import Raw  # noqa: E402

MS = ms.MS
SEQ_MOD = 0x100000000
SERVER = "20.73.96.14"  # mesh.office.com in the sample DNS data


def read(tmp_path, cap: ms.Capture) -> FlowTable:
    path = tmp_path / f"{cap.name}.pcapng"
    path.write_bytes(ms.pcapng_bytes(cap))
    return read_flows(path)


def flow_to(ft: FlowTable, server: str, port: int, transport: str | None = None) -> Flow:
    found = [f for f in ft.flows if f.server == server and f.server_port == port
             and (transport is None or f.transport == transport)]
    assert len(found) == 1, f"{len(found)} flows to {server}:{port}: {found}"
    return found[0]


# --------------------------------------------------------------------------- TLS over TCP

HELLO = mt.tls.build_client_hello("mesh.office.com", alpn=("h2", "http/1.1"), pq_key_share=True, grease=True)
SERVER_FLIGHT = mt.tls.build_server_hello(0x0304, alpn="h2") + ms.CCS_RECORD + mt.tls.build_application_data(900)


def tls_connection(cap: ms.Capture, hello: bytes, *, order: str = "in-order", client_isn: int | None = None,
                   server_flight: bytes = SERVER_FLIGHT, server: str = SERVER, port: int = 443,
                   split: int = 1000) -> None:
    """A handshake, then the ClientHello in two segments sent ``order``, then the server's flight."""
    conn = ms.TcpConn(cap, server, ms.ephemeral_port(cap), port)
    if client_isn is not None:
        conn.cseq = client_isn
    t = conn.handshake(0, 20 * MS)
    first, second = hello[:split], hello[split:]
    s0 = conn.cseq
    if order == "in-order":
        conn.seg(t + 1 * MS, True, "A", first)
        conn.seg(t + 2 * MS, True, "PA", second)
    elif order == "reversed":
        conn.cseq = (s0 + len(first)) % SEQ_MOD
        conn.seg(t + 1 * MS, True, "PA", second)
        conn.cseq = s0
        conn.seg(t + 2 * MS, True, "A", first)
    elif order == "retransmitted":
        conn.seg(t + 1 * MS, True, "A", first)
        conn.cseq = s0
        conn.seg(t + 2 * MS, True, "A", first)  # the first segment again (its ACK was lost)
        conn.seg(t + 3 * MS, True, "PA", second)
    else:
        raise ValueError(order)
    conn.cseq = (s0 + len(hello)) % SEQ_MOD
    conn.sack = conn.cseq
    if server_flight:
        conn.send(t + 25 * MS, False, server_flight)


def test_pq_client_hello_is_longer_than_one_segment() -> None:
    assert len(HELLO) > 1500  # the point of the split tests: one MSS cannot carry it


@pytest.mark.parametrize("order", ["in-order", "reversed", "retransmitted"])
def test_client_hello_over_two_segments(tmp_path, order) -> None:
    cap = ms.Capture(f"split-{order}")
    tls_connection(cap, HELLO, order=order)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert f.sni == "mesh.office.com"
    assert f.alpn == ("h2", "http/1.1")
    assert f.ech is False
    assert f.tls_version == "TLS 1.3"
    assert (f.name, f.name_source) == ("mesh.office.com", "sni")


def test_client_hello_across_sequence_wraparound(tmp_path) -> None:
    cap = ms.Capture("split-wrap")
    # the SYN takes 0xFFFFFC00; the hello's 1,800 bytes run from 0xFFFFFC01 past 2**32
    tls_connection(cap, HELLO, order="reversed", client_isn=0xFFFFFC00)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert f.sni == "mesh.office.com" and f.tls_version == "TLS 1.3"


def test_hello_without_syn_seen(tmp_path) -> None:
    """Mid-stream capture: no SYN, so the lowest sequence number starts the stream."""
    cap = ms.Capture("no-syn")
    conn = ms.TcpConn(cap, SERVER, ms.ephemeral_port(cap), 443)
    conn.cseq, conn.sseq = 0xFFFFFF00, 12345
    conn.cack, conn.sack = conn.sseq, conn.cseq
    s0 = conn.cseq
    conn.cseq = (s0 + 1000) % SEQ_MOD
    conn.seg(1 * MS, True, "PA", HELLO[1000:])
    conn.cseq = s0
    conn.seg(2 * MS, True, "A", HELLO[:1000])
    conn.cseq = (s0 + len(HELLO)) % SEQ_MOD
    conn.send(20 * MS, False, SERVER_FLIGHT)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert f.sni == "mesh.office.com"


def test_client_hello_on_the_syn(tmp_path) -> None:
    """TCP Fast Open (RFC 7413): the ClientHello rides on the SYN."""
    cap = ms.Capture("tfo")
    conn = ms.TcpConn(cap, SERVER, ms.ephemeral_port(cap), 443)
    hello = mt.tls.build_client_hello("mesh.office.com", alpn=("h2",))
    conn.seg(0, True, "S", hello, options=[("MSS", 1460), ("TFO", b"\x01\x02\x03\x04\x05\x06\x07\x08")])
    conn.seg(20 * MS, False, "SA", options=ms.TcpConn.SYNACK_OPTS)
    conn.seg(21 * MS, True, "A")
    conn.send(22 * MS, False, SERVER_FLIGHT)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert (f.sni, f.tls_version, f.state) == ("mesh.office.com", "TLS 1.3", "established")


def test_ech_keeps_outer_sni(tmp_path) -> None:
    cap = ms.Capture("ech")
    hello = mt.tls.build_client_hello("public.cloudflare-ech.example", alpn=("h2",), ech=True, pq_key_share=True)
    tls_connection(cap, hello)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert f.ech is True
    assert f.sni == "public.cloudflare-ech.example"
    assert (f.name, f.name_source) == ("public.cloudflare-ech.example", "sni")


def test_tls12_certificate_names(tmp_path) -> None:
    cap = ms.Capture("tls12")
    name = "meshsvc-weu.westeurope.cloudapp.azure.com"
    ms.tls12_session_with_certificate(cap, 0, name)
    f = flow_to(read(tmp_path, cap), ms.HOSTS[name][1], 443)
    assert f.tls_version == "TLS 1.2"
    assert f.sni == name and f.alpn == ("http/1.1",)
    assert f.cert_subject == f"CN={name}"
    assert f.cert_issuer == "CN=Microsoft Azure RSA TLS Issuing CA 04,O=Microsoft Corporation,C=US"
    assert f.tls_alert is None


def test_alert_right_after_client_hello(tmp_path) -> None:
    cap = ms.Capture("alert")
    tls_connection(cap, HELLO, server_flight=mt.tls.build_alert(ms.ALERT_FATAL, ms.ACCESS_DENIED))
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert (f.tls_alert, f.tls_alert_from) == ("access_denied", "server")
    assert f.tls_version is None
    assert f.sni == "mesh.office.com"


def test_client_alert(tmp_path) -> None:
    cap = ms.Capture("client-alert")
    hello = mt.tls.build_client_hello("mesh.office.com", alpn=("h2",))
    tls_connection(cap, hello + mt.tls.build_alert(ms.ALERT_FATAL, 48), split=100, server_flight=b"")
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert (f.tls_alert, f.tls_alert_from) == ("unknown_ca", "client")


# --------------------------------------------------------------------------- QUIC


def quic_flow(cap: ms.Capture, version: int, name: str, server: str, *, reverse: bool = False) -> int:
    """A ClientHello spread over two client Initials in two datagrams, then an opaque server reply."""
    sport = ms.ephemeral_port(cap)
    dcid, scid = cap.rng.randbytes(8), cap.rng.randbytes(8)
    hello = mt.tls.build_client_hello(name, alpn=("h3",), versions=(0x0304,), pq_key_share=True, grease=True,
                                   quic_transport_parameters=b"\x01\x02\x67\x10", record=False)
    first = 1000
    packets = [mt.quic.encrypt_client_initial(version, dcid, scid, 0, mt.quic.crypto_frame(0, hello[:first])),
               mt.quic.encrypt_client_initial(version, dcid, scid, 1, mt.quic.crypto_frame(first, hello[first:]))]
    if reverse:
        packets.reverse()
    for i, p in enumerate(packets):
        cap.emit(i * 100_000, UDP(sport=sport, dport=443) / Raw(p), ms.CLIENT, server)
    reply = mt.quic.build_long_header_packet(version, quic.PT_HANDSHAKE, scid, b"\x11" * 8, cap.rng.randbytes(600))
    cap.emit(20 * MS, UDP(sport=443, dport=sport) / Raw(reply), server, ms.CLIENT)
    return sport


@pytest.mark.parametrize("version,label", [(quic.QUIC_V1, "v1"), (quic.QUIC_V2, "v2"), (0xFF00001B, "draft-27"),
                                           (quic.DRAFT_29, "draft-29")])
@pytest.mark.parametrize("reverse", [False, True])
def test_quic_client_hello_over_two_initials(tmp_path, version, label, reverse) -> None:
    cap = ms.Capture(f"quic-{label}")
    quic_flow(cap, version, "teams.cloud.microsoft", "52.123.128.14", reverse=reverse)
    f = flow_to(read(tmp_path, cap), "52.123.128.14", 443, "udp")
    assert f.quic_version == label
    assert f.sni == "teams.cloud.microsoft"
    assert f.alpn == ("h3",)
    assert f.tls_version == "TLS 1.3"
    assert (f.name, f.name_source) == ("teams.cloud.microsoft", "sni")


@pytest.mark.parametrize("version,label", [(0xFF000016, "draft-22"), (0x0A0A0A0A, "0x0a0a0a0a")])
def test_quic_version_without_keys(tmp_path, version, label) -> None:
    """Versions we cannot decrypt (an old draft; a reserved version forcing Version Negotiation) still report it."""
    cap = ms.Capture(f"quic-{label}")
    initial = mt.quic.build_long_header_packet(version, quic.PT_INITIAL, b"\x01" * 8, b"\x02" * 8, bytes(1160))
    cap.emit(0, UDP(sport=50000, dport=443) / Raw(initial), ms.CLIENT, "52.123.128.14")
    f = flow_to(read(tmp_path, cap), "52.123.128.14", 443, "udp")
    assert (f.quic_version, f.sni, f.name) == (label, None, None)


@pytest.mark.parametrize("version", [0x0A0A0A0A, 0x1A2A3A4A])
def test_quic_reserved_version_read_with_guessed_keys(tmp_path, version) -> None:
    """A version-negotiation test client seals its Initials with another version's keys (Wireshark guesses
    draft-29's, then v1's); the AEAD tag confirms the guess, so the SNI is read."""
    cap = ms.Capture("quic-reserved")
    sport = ms.ephemeral_port(cap)
    hello = mt.tls.build_client_hello("teams.cloud.microsoft", alpn=("h3",), versions=(0x0304,), record=False,
                                   quic_transport_parameters=b"\x01\x02\x67\x10")
    initial = mt.quic.encrypt_client_initial(version, b"\x01" * 8, b"\x02" * 8, 0, mt.quic.crypto_frame(0, hello),
                                          key_version=quic.QUIC_V1)
    cap.emit(0, UDP(sport=sport, dport=443) / Raw(initial), ms.CLIENT, "52.123.128.14")
    f = flow_to(read(tmp_path, cap), "52.123.128.14", 443, "udp")
    assert (f.quic_version, f.sni, f.name) == (f"0x{version:08x}", "teams.cloud.microsoft", "teams.cloud.microsoft")


def test_ip_literal_sni_kept_as_evidence(tmp_path) -> None:
    cap = ms.Capture("literal")
    tls_connection(cap, mt.tls.build_client_hello(b"52.114.250.152", alpn=("h2",)), split=100)
    ft = read(tmp_path, cap)
    f = flow_to(ft, SERVER, 443)
    assert (f.sni, f.sni_literal) == (None, "52.114.250.152")
    assert f.name != "52.114.250.152" and f.name_source != "sni"  # not a name
    assert f.to_dict()["sni_literal"] == "52.114.250.152"
    assert ft.stats["invalid_names"] == 1  # still no valid HostName (RFC 6066 section 3)


def test_sslv2_compatible_hello_is_tls(tmp_path) -> None:
    """An SSL 2.0-compatible ClientHello (RFC 5246 appendix E.2) answered by a TLS 1.0 ServerHello."""
    from tests.decode.test_tls import SSL2_HELLO

    cap = ms.Capture("sslv2")
    tls_connection(cap, SSL2_HELLO, split=20, server_flight=mt.tls.build_server_hello(0x0301))
    ft = read(tmp_path, cap)
    f = flow_to(ft, SERVER, 443)
    assert (f.sni, f.ech, f.tls_version) == (None, False, "TLS 1.0")
    assert not ft.stats["malformed"] and ft.stats["invalid_names"] == 0


def test_quic_sample_connection(tmp_path) -> None:
    cap = ms.Capture("quic-sample")
    ms.quic_connection(cap, 0, "teams.cloud.microsoft")
    f = flow_to(read(tmp_path, cap), "52.123.128.14", 443, "udp")
    assert (f.quic_version, f.sni, f.alpn) == ("v1", "teams.cloud.microsoft", ("h3",))
    assert f.dns_names == ("teams.cloud.microsoft", "teams-cloud-microsoft.s-0005.dc-msedge.net")


# --------------------------------------------------------------------------- DNS


def dns_name(name: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in name.split(b".") if label) + b"\x00"


def dns_message(txid: int, qname: bytes, *, response: bool, rcode: int = 0, qtype: int = 1,
                answers: tuple[tuple[bytes, int, bytes], ...] = ()) -> bytes:
    """A DNS message without compression (RFC 1035 section 4.1); answers are (owner, type, rdata)."""
    flags = (0x8180 if response else 0x0100) | rcode
    out = struct.pack("!HHHHHH", txid, flags, 1, len(answers), 0, 0) + dns_name(qname) + struct.pack("!HH", qtype, 1)
    for owner, rtype, rdata in answers:
        out += dns_name(owner) + struct.pack("!HHIH", rtype, 1, 60, len(rdata)) + rdata
    return out


def a_record(owner: bytes, address: str) -> tuple[bytes, int, bytes]:
    addr = ipaddress.ip_address(address)
    return owner, 1 if addr.version == 4 else 28, addr.packed


def cname(owner: bytes, target: bytes) -> tuple[bytes, int, bytes]:
    return owner, 5, dns_name(target)


def udp_dns(cap: ms.Capture, t: int, query: bytes | None, answer: bytes | None, sport: int | None = None) -> None:
    sport = sport or ms.ephemeral_port(cap)
    if query is not None:
        cap.emit(t, UDP(sport=sport, dport=53) / Raw(query), ms.CLIENT, ms.GATEWAY)
    if answer is not None:
        cap.emit(t + 5 * MS, UDP(sport=53, dport=sport) / Raw(answer), ms.GATEWAY, ms.CLIENT)


def syn_only(cap: ms.Capture, t: int, server: str, port: int = 443) -> None:
    conn = ms.TcpConn(cap, server, ms.ephemeral_port(cap), port)
    conn.handshake(t, 10 * MS)


def test_cname_chain_names_the_flow_with_the_asked_name_first(tmp_path) -> None:
    cap = ms.Capture("cname")
    ms.dns_exchange(cap, 0, "mesh.office.com")
    syn_only(cap, 20 * MS, SERVER)
    ft = read(tmp_path, cap)
    f = flow_to(ft, SERVER, 443)
    assert f.dns_names == ("mesh.office.com", "mesh-prod.trafficmanager.net",
                           "meshprod-weu.westeurope.cloudapp.azure.com")
    assert (f.name, f.name_source) == ("mesh.office.com", "dns")
    [ev] = ft.dns
    assert (ev.qname, ev.qtype, ev.rcode, ev.transport) == ("mesh.office.com", "A", "NOERROR", "udp")
    assert ev.answers == ("mesh-prod.trafficmanager.net", "meshprod-weu.westeurope.cloudapp.azure.com", SERVER)
    assert ev.client == ms.CLIENT and ev.server == ms.GATEWAY and ev.sinkhole is False
    assert ev.flow_id == flow_to(ft, ms.GATEWAY, 53).id


def test_lookup_after_the_flow_began_does_not_name_it(tmp_path) -> None:
    cap = ms.Capture("late-dns")
    syn_only(cap, 0, SERVER)
    ms.dns_exchange(cap, 100 * MS, "mesh.office.com")
    syn_only(cap, 200 * MS, SERVER)
    ft = read(tmp_path, cap)
    early, late = sorted((f for f in ft.flows if f.server == SERVER), key=lambda f: f.first_ns)
    assert early.dns_names is None and early.name is None and early.name_source is None
    assert late.dns_names[0] == "mesh.office.com" and late.name_source == "dns"


def test_newest_lookup_first(tmp_path) -> None:
    cap = ms.Capture("two-names")
    udp_dns(cap, 0, dns_message(1, b"old.example.com", response=False),
            dns_message(1, b"old.example.com", response=True, answers=(a_record(b"old.example.com", SERVER),)))
    udp_dns(cap, 50 * MS, dns_message(2, b"new.example.com", response=False),
            dns_message(2, b"new.example.com", response=True, answers=(a_record(b"new.example.com", SERVER),)))
    syn_only(cap, 100 * MS, SERVER)
    f = flow_to(read(tmp_path, cap), SERVER, 443)
    assert f.dns_names == ("new.example.com", "old.example.com")
    assert f.name == "new.example.com"


@pytest.mark.parametrize("resolver,port", [("10.20.0.1", 53), ("10.20.0.200", 53), ("224.0.0.251", 5353),
                                           ("10.20.0.200", 5355)])
def test_a_lookup_names_flows_whichever_side_of_the_key_its_port_is(tmp_path, resolver, port) -> None:
    """A resolver whose address sorts before the client's (its port on the "a" side of the flow's key) or after
    it (on the "b" side), and mDNS and LLMNR ports: the DNS pass reads the lookup either way."""
    cap = ms.Capture("dns-sides")
    sport = ms.ephemeral_port(cap)
    q = dns_message(7, b"mesh.office.com", response=False)
    r = dns_message(7, b"mesh.office.com", response=True, answers=(a_record(b"mesh.office.com", SERVER),))
    cap.emit(0, UDP(sport=sport, dport=port) / Raw(q), ms.CLIENT, resolver)
    cap.emit(5 * MS, UDP(sport=port, dport=sport) / Raw(r), resolver, ms.CLIENT)
    syn_only(cap, 20 * MS, SERVER)
    ft = read(tmp_path, cap)
    assert [(e.qname, e.server) for e in ft.dns] == [("mesh.office.com", resolver)]
    assert flow_to(ft, SERVER, 443).dns_names == ("mesh.office.com",)


@pytest.mark.parametrize("rcode,label", [(3, "NXDOMAIN"), (2, "SERVFAIL"), (5, "REFUSED")])
def test_dns_error_answers(tmp_path, rcode, label) -> None:
    cap = ms.Capture(f"dns-{label}")
    udp_dns(cap, 0, dns_message(7, b"mesh-telemetry.office.com", response=False),
            dns_message(7, b"mesh-telemetry.office.com", response=True, rcode=rcode))
    [ev] = read(tmp_path, cap).dns
    assert (ev.qname, ev.rcode, ev.answers, ev.sinkhole) == ("mesh-telemetry.office.com", label, (), False)


def test_unanswered_query_and_sinkhole(tmp_path) -> None:
    cap = ms.Capture("dns-misc")
    udp_dns(cap, 0, dns_message(8, b"lost.example.com", response=False), None)
    udp_dns(cap, 10 * MS, dns_message(9, b"blocked.example.com", response=False),
            dns_message(9, b"blocked.example.com", response=True, answers=(a_record(b"blocked.example.com", "0.0.0.0"),)))
    syn_only(cap, 50 * MS, "0.0.0.0")
    ft = read(tmp_path, cap)
    events = {e.qname: e for e in ft.dns}
    assert set(events) == {"lost.example.com", "blocked.example.com"}
    lost, blocked = events["lost.example.com"], events["blocked.example.com"]
    assert lost.rcode is None and lost.answers == () and lost.sinkhole is False
    assert lost.ns == ms.EPOCH_NS  # the query's time
    assert blocked.rcode == "NOERROR" and blocked.sinkhole is True and blocked.answers == ("0.0.0.0",)
    assert flow_to(ft, "0.0.0.0", 443).dns_names is None  # a sinkhole answer names nothing


def test_dns_over_tcp(tmp_path) -> None:
    cap = ms.Capture("dns-tcp")
    conn = ms.TcpConn(cap, ms.GATEWAY, ms.ephemeral_port(cap), 53)
    t = conn.handshake(0, 2 * MS)
    q = dns_message(0x1234, b"Graph.Microsoft.COM", response=False)
    a = dns_message(0x1234, b"graph.microsoft.com", response=True,
                    answers=(cname(b"graph.microsoft.com", b"www.tm.ags.trafficmanager.net"),
                             a_record(b"www.tm.ags.trafficmanager.net", "40.126.32.134")))
    conn.send(t + 1 * MS, True, struct.pack("!H", len(q)) + q)
    conn.send(t + 5 * MS, False, struct.pack("!H", len(a))[:1])  # the length prefix split over two segments
    conn.send(t + 6 * MS, False, struct.pack("!H", len(a))[1:] + a)
    conn.close(t + 10 * MS, 2 * MS)
    syn_only(cap, 50 * MS, "40.126.32.134")
    ft = read(tmp_path, cap)
    [ev] = ft.dns
    assert (ev.transport, ev.qname, ev.rcode) == ("tcp", "graph.microsoft.com", "NOERROR")
    assert ev.answers == ("www.tm.ags.trafficmanager.net", "40.126.32.134")
    assert ev.ns == ms.EPOCH_NS + t + 1 * MS  # the query's time
    assert (ev.client, ev.server) == (ms.CLIENT, ms.GATEWAY)
    assert flow_to(ft, "40.126.32.134", 443).dns_names == ("graph.microsoft.com", "www.tm.ags.trafficmanager.net")


# --------------------------------------------------------------------------- HTTP and CONNECT


def test_http_host_on_8080(tmp_path) -> None:
    cap = ms.Capture("http")
    conn = ms.TcpConn(cap, "198.51.100.80", ms.ephemeral_port(cap), 8080)
    t = conn.handshake(0, 10 * MS)
    t = conn.send(t + 1 * MS, True, b"GET /config HTTP/1.1\r\nHost: Config.Example.COM:8080\r\nAccept: */*\r\n\r\n")
    conn.send(t + 10 * MS, False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    f = flow_to(read(tmp_path, cap), "198.51.100.80", 8080)
    assert f.http_host == "config.example.com"
    assert (f.name, f.name_source) == ("config.example.com", "http")
    assert f.sni is None and f.connect_target is None


def test_connect_refused(tmp_path) -> None:
    cap = ms.Capture("connect-403")
    ms.http_connect(cap, 0, "mesh.cloud.microsoft", allowed=False)
    f = flow_to(read(tmp_path, cap), ms.PROXY, ms.PROXY_PORT)
    assert (f.connect_target, f.connect_status) == ("mesh.cloud.microsoft:443", 403)
    assert (f.name, f.name_source) == ("mesh.cloud.microsoft", "connect")
    assert f.sni is None and f.http_host is None


def test_connect_tunnel_reads_the_hello_inside(tmp_path) -> None:
    cap = ms.Capture("connect-200")
    ms.http_connect(cap, 0, "graph.microsoft.com", allowed=True)
    f = flow_to(read(tmp_path, cap), ms.PROXY, ms.PROXY_PORT)
    assert (f.connect_target, f.connect_status) == ("graph.microsoft.com:443", 200)
    assert f.sni == "graph.microsoft.com" and f.ech is True and f.tls_version == "TLS 1.3"
    assert (f.name, f.name_source) == ("graph.microsoft.com", "sni")


@pytest.mark.parametrize("chunked", [False, True])
def test_connect_after_proxy_authentication(tmp_path, chunked) -> None:
    """407, the CONNECT again with Proxy-Authorization on the same connection, 200, TLS inside: judged by the 200."""
    cap = ms.Capture("connect-407-200")
    ms.http_connect_authenticated(cap, 0, "teams.microsoft.com", chunked=chunked)
    f = flow_to(read(tmp_path, cap), ms.PROXY, ms.PROXY_PORT)
    assert (f.connect_target, f.connect_status) == ("teams.microsoft.com:443", 200)
    assert f.sni == "teams.microsoft.com" and f.tls_version == "TLS 1.3"


def test_connect_authentication_refused(tmp_path) -> None:
    cap = ms.Capture("connect-407-407")
    ms.http_connect_authenticated(cap, 0, "teams.microsoft.com", granted=False)
    f = flow_to(read(tmp_path, cap), ms.PROXY, ms.PROXY_PORT)
    assert (f.connect_target, f.connect_status, f.sni) == ("teams.microsoft.com:443", 407, None)


def test_proxy_authenticated_tunnel_is_not_denied(tmp_path) -> None:
    from meshpcap import analyze

    cap = ms.Capture("connect-auth")
    ms.http_connect_authenticated(cap, 0, "mesh.cloud.microsoft")
    path = tmp_path / "auth.pcapng"
    path.write_bytes(ms.pcapng_bytes(cap))
    d = analyze(path, service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json").to_dict()
    [f] = [f for f in d["flows"] if f["server"] == ms.PROXY]
    assert (f["verdict"], f["blocked_by"], f["connect_status"]) == ("allowed", None, 200)
    assert not [x for x in d["findings"] if x["blocked_by"] == "proxy-denied"]


def test_connect_ipv6_literal(tmp_path) -> None:
    cap = ms.Capture("connect-v6")
    conn = ms.TcpConn(cap, ms.PROXY, ms.ephemeral_port(cap), ms.PROXY_PORT)
    t = conn.handshake(0, 1 * MS)
    t = conn.send(t + 1 * MS, True, b"CONNECT [2603:1026:2405::1A]:8443 HTTP/1.1\r\nHost: x\r\n\r\n")
    conn.send(t + 5 * MS, False, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    f = flow_to(read(tmp_path, cap), ms.PROXY, ms.PROXY_PORT)
    assert (f.connect_target, f.connect_status) == ("[2603:1026:2405::1a]:8443", 407)
    assert f.name == "2603:1026:2405::1a" and f.name_source == "connect"


# --------------------------------------------------------------------------- name priority


def test_name_priority_order() -> None:
    assert NAME_PRIORITY == ("sni", "connect", "http", "dns")


def test_name_priority_on_flows(tmp_path) -> None:
    cap = ms.Capture("priority")
    t = ms.dns_exchange(cap, 0, "proxy.corp.example")  # resolves the proxy's address
    t = ms.dns_exchange(cap, t, "mesh.office.com")
    ms.http_connect(cap, t + 5 * MS, "graph.microsoft.com", allowed=True)  # sni + connect + dns
    ms.http_connect(cap, t + 200 * MS, "mesh.cloud.microsoft", allowed=False)  # connect + dns
    tls13 = ms.TcpConn(cap, SERVER, ms.ephemeral_port(cap), 443)  # sni + dns
    t2 = tls13.handshake(t + 400 * MS, 5 * MS)
    tls13.send(t2 + 1 * MS, True, mt.tls.build_client_hello("other.example.com", alpn=("h2",)))
    web = ms.TcpConn(cap, SERVER, ms.ephemeral_port(cap), 80)  # http + dns
    t3 = web.handshake(t + 500 * MS, 5 * MS)
    web.send(t3 + 1 * MS, True, b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    syn_only(cap, t + 600 * MS, SERVER, 8443)  # dns only
    ft = read(tmp_path, cap)
    proxied = sorted((f for f in ft.flows if f.server == ms.PROXY), key=lambda f: f.first_ns)
    assert [(f.name, f.name_source) for f in proxied] == [("graph.microsoft.com", "sni"),
                                                           ("mesh.cloud.microsoft", "connect")]
    assert all(f.dns_names == ("proxy.corp.example",) for f in proxied)
    assert (flow_to(ft, SERVER, 443).name, flow_to(ft, SERVER, 443).name_source) == ("other.example.com", "sni")
    assert (flow_to(ft, SERVER, 80).name, flow_to(ft, SERVER, 80).name_source) == ("www.example.com", "http")
    assert (flow_to(ft, SERVER, 8443).name, flow_to(ft, SERVER, 8443).name_source) == ("mesh.office.com", "dns")


# --------------------------------------------------------------------------- STUN / TURN


def test_turn_allocation_over_udp(tmp_path) -> None:
    cap = ms.Capture("turn-udp")
    turn = ms.TurnClient(cap, ms.RELAY, 3478)
    t = turn.allocate(0)
    turn.media(t + 20 * MS, 0.4)  # 10 ChannelData each way
    f = flow_to(read(tmp_path, cap), ms.RELAY, 3478, "udp")
    s = f.stun
    assert s is not None
    # Allocate (401), Allocate (success), CreatePermission, ChannelBind
    assert (s.requests, s.successes, s.errors, s.indications) == (4, 3, 1, 0)
    assert s.channel_data == 20
    assert s.error_codes == (401,)
    assert s.methods == ("Allocate request", "Allocate error 401", "Allocate success", "CreatePermission request",
                         "CreatePermission success", "ChannelBind request", "ChannelBind success")
    assert len(s.relayed) == 1 and s.relayed[0].startswith(ms.RELAY + ":")
    assert s.mapped == (f"{ms.NAT_PUBLIC}:{turn.mapped_port}",)
    assert s.realm == ms.TURN_REALM
    assert s.ms_turn is False


def test_stun_over_tcp(tmp_path) -> None:
    cap = ms.Capture("turn-tcp")
    conn = ms.TcpConn(cap, ms.RELAY, ms.ephemeral_port(cap), 443)
    t = conn.handshake(0, 20 * MS)
    turn = ms.TurnClient(cap, ms.RELAY, 443, sport=conn.sport, tcp=conn)
    t = turn.allocate(t + 1 * MS)
    turn.media(t + 20 * MS, 0.12)  # 3 ChannelData each way, padded to 4 bytes (RFC 8656 section 12.5)
    f = flow_to(read(tmp_path, cap), ms.RELAY, 443, "tcp")
    s = f.stun
    assert s is not None
    assert (s.requests, s.successes, s.errors) == (4, 3, 1)
    assert s.error_codes == (401,)
    assert s.channel_data == 6
    assert len(s.relayed) == 1 and s.realm == ms.TURN_REALM
    assert f.sni is None and f.name is None


def ms_turn_message(msg_type: int, attrs: list[tuple[int, bytes]], tid: bytes) -> bytes:
    """An MS-TURN message ([MS-TURN] 2.2.1): MAGIC-COOKIE first, attributes unpadded; ``tid`` is 16 bytes
    (legacy, no RFC cookie) or 12 (the RFC cookie is written before it)."""
    body = struct.pack("!HHI", 0x000F, 4, 0x72C64BC6)
    body += b"".join(struct.pack("!HH", t, len(v)) + v for t, v in attrs)
    head = bytes.fromhex("2112a442") + tid if len(tid) == 12 else tid
    return struct.pack("!HH", msg_type, len(body)) + head + body


def test_ms_turn_responses_and_data_indications_counted(tmp_path) -> None:
    """nDPI/teams.pcap's exchange: unpadded MS-TURN Allocate responses (with the RFC cookie) are counted,
    and the Data Indication 0x0115 (no RFC cookie) is an indication, not an error class."""
    cap = ms.Capture("ms-turn")
    sport, relay = 50016, "52.114.250.141"

    def emit(t: int, data: bytes, up: bool) -> None:
        if up:
            cap.emit(t, UDP(sport=sport, dport=3478) / Raw(data), ms.CLIENT, relay)
        else:
            cap.emit(t, UDP(sport=3478, dport=sport) / Raw(data), relay, ms.CLIENT)

    version = (0x8008, b"\x00\x00\x00\x06")  # MS-VERSION 6
    emit(0, ms_turn_message(0x0003, [version], b"\x01" * 12), True)
    err = ms_turn_message(0x0113, [(0x0009, b"\x00\x00\x04\x01Unauthenticated."), (0x0015, b"realm")], b"\x01" * 12)
    assert len(err) % 4  # unpadded: the length is no multiple of 4
    emit(20 * MS, err, False)
    emit(30 * MS, ms_turn_message(0x0003, [version, (0x0006, b"user")], b"\x02" * 12), True)
    emit(50 * MS, ms_turn_message(0x0103, [(0x000D, b"\x00\x00\x00\x3c"), (0x0001, b"\x00\x01\x0d\x98\x34\x72\xfa\x8d")],
                                  b"\x02" * 12), False)
    emit(60 * MS, ms_turn_message(0x0004, [(0x0013, b"media")], b"\x03" * 12), True)  # Send request
    emit(70 * MS, ms_turn_message(0x0115, [(0x0013, b"media!")], b"\x04" * 16), False)  # Data Indication
    s = flow_to(read(tmp_path, cap), relay, 3478, "udp").stun
    assert (s.requests, s.indications, s.successes, s.errors) == (2, 2, 1, 1)
    assert s.methods == ("Allocate request", "Allocate error 401", "Allocate success", "Send indication",
                         "Data indication")
    assert s.error_codes == (401,) and s.ms_turn and s.realm == "realm"


def test_channel_data_needs_a_channel_a_fitting_length_and_stun(tmp_path) -> None:
    """ChannelData (RFC 8656 section 12.4): channel 0x4000-0x4FFF, a length that fits the datagram, on a flow
    that spoke STUN.  QUIC short headers and LLMNR queries whose first byte is 0x40-0x4F are not ChannelData."""
    cap = ms.Capture("channel-data")
    quic_short = bytes([0x45, 0x8A, 0x00, 0x20]) + bytes(60)  # QUIC 1-RTT packet (RFC 9000 section 17.3.1)
    llmnr = struct.pack("!HHHHHH", 0x4A1B, 0, 1, 0, 0, 0) + dns_name(b"wpad") + struct.pack("!HH", 1, 1)
    for i in range(3):
        cap.emit(i * MS, UDP(sport=50100, dport=443) / Raw(quic_short), ms.CLIENT, "52.123.128.14")
        cap.emit(i * MS, UDP(sport=50101, dport=5355) / Raw(llmnr), ms.CLIENT, "224.0.0.252")
    turn = ms.TurnClient(cap, ms.RELAY, 3478)
    t = turn.allocate(10 * MS)
    turn.media(t + 20 * MS, 0.08)  # 2 ChannelData each way on channel 0x4000
    rtp = bytes(40)
    for i, (channel, length) in enumerate([(0x5000, len(rtp)), (0x4001, len(rtp) - 8), (0x4001, len(rtp) + 1)]):
        # outside 0x4000-0x4FFF; 8 spare bytes (more than 3 of padding); longer than the datagram
        turn.send(t + (200 + i) * MS, struct.pack("!HH", channel, length) + rtp)
    ft = read(tmp_path, cap)
    assert flow_to(ft, "52.123.128.14", 443, "udp").stun is None
    assert flow_to(ft, "224.0.0.252", 5355, "udp").stun is None
    assert flow_to(ft, ms.RELAY, 3478, "udp").stun.channel_data == 4


def test_real_teams_capture_stun_summaries() -> None:
    """nDPI/teams.pcap (skipped without ../shared): counts agree with tshark's dissection of each TURN flow."""
    from tests.conftest import SHARED_CAPTURES

    path = SHARED_CAPTURES / "nDPI" / "teams.pcap"
    if not path.is_file():
        pytest.skip("../shared/captures is not present")
    ft = read_flows(path)
    by = {(f.server, f.client_port): f.stun for f in ft.flows if f.stun is not None}
    counts = {k: (s.requests, s.indications, s.successes, s.errors, s.channel_data) for k, s in by.items()}
    # tshark -Y stun, udp.stream 26, 29, 30, 31: Allocate / 401 / success; Allocate and 3 Sends answered by
    # 3 Data Indications; the lifetime-0 Allocates that end an allocation
    assert counts[("52.114.250.123", 50016)] == (1, 0, 1, 1, 0)
    assert counts[("52.114.250.141", 50016)] == (1, 6, 0, 0, 0)
    assert counts[("52.114.250.141", 50017)] == (3, 0, 2, 1, 0)
    assert counts[("52.114.250.137", 50036)] == (2, 6, 1, 0, 0)
    assert "Data indication" in by[("52.114.250.141", 50016)].methods
    assert not any(m.startswith("0x") for s in by.values() for m in s.methods)
    assert all(s.requests + s.indications + s.successes + s.errors for s in by.values())  # no ChannelData-only flow


# --------------------------------------------------------------------------- hostile names


def test_invalid_sni_dropped_and_counted(tmp_path) -> None:
    cap = ms.Capture("bad-sni")
    tls_connection(cap, mt.tls.build_client_hello(b"bad-.example.com", alpn=("h2",), pq_key_share=True))
    tls_connection(cap, mt.tls.build_client_hello(b"ok\x00.example.com", alpn=("h2",)), port=8443, split=50)
    ft = read(tmp_path, cap)
    for port in (443, 8443):
        f = flow_to(ft, SERVER, port)
        assert f.sni is None and f.name is None and f.alpn == ("h2",)
    assert ft.stats["invalid_names"] == 2


def test_sni_ip_literal_is_not_a_name(tmp_path) -> None:
    cap = ms.Capture("ip-sni")
    tls_connection(cap, mt.tls.build_client_hello("20.73.96.14", alpn=("h2",)), split=60)
    ft = read(tmp_path, cap)
    f = flow_to(ft, SERVER, 443)
    assert f.sni is None and f.name is None  # RFC 6066 section 3 forbids address literals
    assert ft.stats["invalid_names"] == 1


def test_sni_lowercased_without_trailing_dot(tmp_path) -> None:
    cap = ms.Capture("case-sni")
    tls_connection(cap, mt.tls.build_client_hello("Mesh.Office.COM.", alpn=("h2",)), split=60)
    ft = read(tmp_path, cap)
    assert flow_to(ft, SERVER, 443).sni == "mesh.office.com"
    assert ft.stats["invalid_names"] == 0


def test_bad_dns_names_dropped_and_counted(tmp_path) -> None:
    cap = ms.Capture("bad-dns")
    bad = b"evil\xff\x01.example.com"
    # the chain's middle name has bad bytes: the address is not reachable from the question any more
    udp_dns(cap, 0, dns_message(1, b"good.example.com", response=False),
            dns_message(1, b"good.example.com", response=True,
                        answers=(cname(b"good.example.com", bad), a_record(bad, SERVER))))
    # an answer whose owner is the question but which points through a hostile CNAME target
    udp_dns(cap, 10 * MS, None, dns_message(2, b"MiXeD.Example.Com.", response=True,
                                            answers=(a_record(b"MiXeD.Example.Com.", "198.51.100.9"),)))
    syn_only(cap, 50 * MS, SERVER)
    syn_only(cap, 60 * MS, "198.51.100.9")
    ft = read(tmp_path, cap)
    assert ft.stats["invalid_names"] == 2  # the CNAME target and the A record's owner
    assert flow_to(ft, SERVER, 443).dns_names is None
    assert flow_to(ft, "198.51.100.9", 443).dns_names == ("mixed.example.com",)
    for ev in ft.dns:
        for text in (ev.qname, *ev.answers):
            assert text.isascii() and text.isprintable() and text == text.lower()
    good = [e for e in ft.dns if e.qname == "good.example.com"]
    assert len(good) == 1 and good[0].answers == (SERVER,)


def test_bad_dns_question_dropped(tmp_path) -> None:
    cap = ms.Capture("bad-question")
    udp_dns(cap, 0, dns_message(3, b"sp ace.example.com", response=False),
            dns_message(3, b"sp ace.example.com", response=True, answers=(a_record(b"sp ace.example.com", SERVER),)))
    syn_only(cap, 50 * MS, SERVER)
    ft = read(tmp_path, cap)
    assert ft.dns == []  # no question name to report
    assert flow_to(ft, SERVER, 443).dns_names is None
    assert ft.stats["invalid_names"] == 3  # the question in the query and the answer, the answer's owner



def test_linked_dns_events_keep_every_field():
    """link_dns_events gives each event its flow id and changes nothing else."""
    import dataclasses

    from meshpcap.capture import open_capture
    from meshpcap.decode.frames import decode_batch
    from meshpcap.flows.engine import FlowBuilder
    from meshpcap.flows.naming import Namer
    from meshpcap.flows.records import build_records
    from tests.conftest import SAMPLES

    fb = FlowBuilder()
    with open_capture(SAMPLES / "healthy-multi-room.pcapng") as cap:
        for b in cap.batches():
            fb.add(b, decode_batch(b.data, b.offset, b.caplen, b.linktype))
    raw = fb.finish()
    n = Namer(raw)
    linked = n.link_dns_events(build_records(raw, lambda fid, a: n.names_for(fid, a)))
    assert linked and all(e.flow_id for e in linked)
    assert [dataclasses.replace(e, flow_id=None) for e in linked] == [dataclasses.replace(e, flow_id=None)
                                                                       for e in n.dns_events]


def test_sslv2_hellos_in_a_real_capture_match_wireshark() -> None:
    """nfstream/skype.pcap (skipped without ../shared or tshark): every TCP connection whose client sent
    an SSL 2.0-compatible ClientHello (tshark: protocol SSLv2, Client Hello) is read as TLS without SNI."""
    import subprocess

    from tests.conftest import SHARED_CAPTURES
    from tests.oracle.tshark import TSHARK

    path = SHARED_CAPTURES / "nfstream" / "skype.pcap"
    if TSHARK is None or not path.is_file():
        pytest.skip("needs tshark and ../shared/captures")
    out = subprocess.run([TSHARK, "-n", "-r", str(path), "-Y", "tls", "-T", "fields", "-e", "_ws.col.Protocol",
                          "-e", "_ws.col.Info", "-e", "ip.dst", "-e", "tcp.dstport", "-e", "tcp.srcport"],
                         capture_output=True, text=True, timeout=120).stdout
    theirs = {(dst, int(dport), int(sport)) for proto, info, dst, dport, sport in
              (line.split("\t") for line in out.splitlines() if line.count("\t") == 4)
              if proto == "SSLv2" and info.startswith("Client Hello")}
    assert len(theirs) >= 20
    ft = read_flows(path)
    ours = {(f.server, f.server_port, f.client_port) for f in ft.flows
            if f.transport == "tcp" and f.ech is False and f.sni is None}
    assert theirs <= ours
    assert not ft.stats["malformed"]


def _names_before_reference(lst, i):
    """names_resolving_to as first written: every lookup of the window, newest first."""
    from meshpcap.flows.naming import MAX_DNS_NAMES, MAX_LOOKUPS_SCANNED

    out: list[str] = []
    for k in range(i - 1, max(i - 1 - MAX_LOOKUPS_SCANNED, -1), -1):
        for name in lst[k][1]:
            if name not in out:
                out.append(name)
        if len(out) >= MAX_DNS_NAMES:
            break
    return tuple(out[:MAX_DNS_NAMES])


def test_names_before_reads_runs_of_one_answer_as_every_lookup():
    """The window of lookups read as runs of one chain gives what reading each lookup gives."""
    import random

    from meshpcap.flows.naming import _chain_runs, _names_before

    rng = random.Random(3)
    chains = [("a.example",), ("b.example", "cdn.example"), ("c.example",), tuple(f"n{k}.example" for k in range(9))]
    chains += [(f"x{k}.example",) for k in range(12)]
    for _ in range(300):
        n = rng.randrange(0, 200)
        lst, cur = [], rng.choice(chains)
        for k in range(n):
            if rng.random() < rng.choice((0.02, 0.3, 1.0)):
                cur = rng.choice(chains)
            lst.append((k, cur))
        runs = _chain_runs(lst)
        for i in range(n + 1):
            assert _names_before(runs, i) == _names_before_reference(lst, i)

