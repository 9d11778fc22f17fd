"""Property tests over every decoder (issue 9): structure-aware mutations of valid messages (bit flips,
byte swaps, cuts, insertions, deletions) may give a record, "need more" or the decoder's own
:class:`DecodeError`, never another exception; the batch frame decoder (link, IP, TCP, UDP, ICMP,
tunnels) never raises at all and keeps every offset inside the packet's captured bytes.

The fuzzers beside each decoder's tests (test_tls_fuzz, test_dns, test_stun, test_http, test_frames)
cut valid messages and append random bytes; these flip bits inside them, for the decoders and entry
points those did not reach.  Kept small (about 100-150 examples each)."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode import dns, frames, http, names, quic, stun, tls
from meshpcap.decode.buffer import DecodeError
from meshpcap.testing import quic as bquic
from meshpcap.testing import stun as bstun
from meshpcap.testing import tls as btls
from tests import builders as B
from tests.decode.test_frames import LINK_CASES
from tests.decode.test_tls import SSL2_HELLO

PROPS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SPECIAL = (0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x11, 0x14, 0x15, 0x16, 0x17, 0x20, 0x40, 0x45, 0x7F, 0x80, 0xC0,
            0xFF)


@st.composite
def mutated(draw, bases, max_ops: int = 4):
    data = bytearray(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 4))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and data:
            data[i] = draw(st.sampled_from(_SPECIAL))
        elif op == 2:
            del data[i:]
        elif op == 3:
            data[i:i] = draw(st.binary(min_size=1, max_size=6))
        else:
            del data[i : i + draw(st.integers(1, 6))]
    return bytes(data)


def only_decode_errors(parse, *args):
    """Call ``parse``; a DecodeError (or NeedMore) is the decoder's own outcome, anything else fails the test."""
    try:
        return parse(*args)
    except DecodeError:
        return None


# --------------------------------------------------------------------------- link, IP, TCP, UDP, ICMP, tunnels

C4, S4, C6, S6 = "10.0.0.1", "20.0.0.2", "2001:db8::1", "2001:db8:1::2"
_IP_PACKETS = [
    B.tcp4(C4, 50000, S4, 443, "S", seq=7),
    B.tcp4(C4, 50000, S4, 443, "PA", seq=8, payload=b"\x16\x03\x01\x00\x05hello"),
    B.udp4(C4, 50001, S4, 3478, b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)),
    B.tcp6(C6, 50002, S6, 443, "S"),
    B.udp6(C6, 50003, S6, 53, b"\x12\x34\x01\x00\x00\x01" + bytes(6)),
    B.icmp4("10.0.0.254", C4, 3, 13, B.udp4(C4, 50004, S4, 3478, b"stun")[:28]),
]
_FRAMES = (
    [(lt, wrap(ip)) for lt, wrap in LINK_CASES.values() for ip in _IP_PACKETS[:1]]
    + [(1, B.ether(ip)) for ip in _IP_PACKETS]
    + [(101, B.gre(_IP_PACKETS[1], 0x0800)), (1, B.ether(B.vxlan(B.ether(_IP_PACKETS[2])))),
       (1, B.ether(B.geneve(_IP_PACKETS[0]))), (1, B.ether(B.erspan3(B.ether(_IP_PACKETS[3]))))]
)


@st.composite
def frame_batches(draw):
    out = []
    for _ in range(draw(st.integers(1, 6))):
        lt, frame = draw(st.sampled_from(_FRAMES))
        out.append((lt, draw(mutated([frame]))))
    return out


@PROPS
@given(frame_batches())
def test_frame_decoder_never_raises_and_stays_inside_each_packet(batch):
    datas = [B.raw(f) for _, f in batch]
    lens = np.array([len(x) for x in datas], np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    d = frames.decode_batch(b"".join(datas), offs, lens, np.array([lt for lt, _ in batch], np.int64))
    assert d.reason.size == len(batch)
    assert all(r == 0 or r in frames.REASONS for r in d.reason.tolist())
    ok = d.reason == frames.OK
    end = offs + lens
    # a decoded packet's payload starts and (as captured) ends inside its own bytes, never a neighbour's
    assert np.all(d.payload_cap[ok] >= 0) and np.all(d.payload_len[ok] >= 0)
    has = ok & (d.payload_cap > 0)
    assert np.all(d.payload[has] >= offs[has]) and np.all(d.payload[has] + d.payload_cap[has] <= end[has])
    assert np.all((d.ip_version[ok] == 4) | (d.ip_version[ok] == 6))
    assert np.all((d.sport[ok] >= -1) & (d.sport[ok] <= 0xFFFF) & (d.dport[ok] <= 0xFFFF))


# --------------------------------------------------------------------------- TLS

_HELLOS = [btls.build_client_hello("teams.microsoft.com", alpn=("h2",), grease=True, pq_key_share=True, max_fragment=600),
           btls.build_client_hello(b"52.114.250.152", ech=True), SSL2_HELLO]
_FLIGHTS = [btls.build_server_hello(0x0303, alpn="h2") + btls.build_certificate_record(b"\x30\x82\x00\x03\x02\x01\x01")
            + btls.build_alert(1, 112) + btls.build_alert(2, 40),
            btls.build_server_hello(0x0304, hello_retry=True) + btls.build_change_cipher_spec()
            + btls.build_server_hello(0x0304) + btls.build_application_data(40)]


@PROPS
@given(mutated(_HELLOS))
def test_tls_client_hello_bit_flips(data):
    hello = only_decode_errors(tls.read_client_hello, data)
    if hello is not None:
        assert hello.sni is None or names.normalize_hostname(hello.sni) == hello.sni
        assert hello.length <= len(data)
    if data and data[0] & 0x80:
        only_decode_errors(tls.parse_sslv2_client_hello, data)


@PROPS
@given(mutated(_FLIGHTS), mutated(_HELLOS))
def test_tls_server_flight_and_alerts(flight, hello):
    only_decode_errors(tls.read_server_flight, flight)
    for stream in (flight, hello, hello + flight):
        alert = tls.read_alerts(stream)  # never raises
        assert alert is None or alert.name


# --------------------------------------------------------------------------- QUIC

_DCID, _SCID = bytes(range(8)), b"\x51" * 8
_Q_HELLO = btls.build_client_hello("teams.cloud.microsoft", alpn=("h3",), versions=(0x0304,), record=False,
                                   quic_transport_parameters=b"\x01\x02\x67\x10", pq_key_share=True)
_INITIALS = [bquic.encrypt_client_initial(v, _DCID, _SCID, pn, bquic.crypto_frame(off, _Q_HELLO[off : off + 1000]),
                                          key_version=kv)
             for v, kv in ((quic.QUIC_V1, None), (quic.QUIC_V2, None), (0x0A0A0A0A, quic.DRAFT_29))
             for pn, off in ((0, 0), (1, 1000))]


@PROPS
@given(st.lists(mutated(_INITIALS, max_ops=2), min_size=1, max_size=3))
def test_quic_initials_bit_flips(datagrams):
    for d in datagrams:
        only_decode_errors(quic.parse_long_header, d)
        for packet in only_decode_errors(quic.parse_client_initials, d) or ():
            assert all(off >= 0 for off, _ in packet.crypto)
    res = only_decode_errors(quic.client_hello_from_initials, datagrams)
    if res is not None:
        assert res[1].sni in (None, "teams.cloud.microsoft")  # an AEAD tag lets no flipped byte through


# --------------------------------------------------------------------------- DNS

def _name(text: str) -> bytes:
    return b"".join(bytes([len(x)]) + x.encode() for x in text.split(".")) + b"\x00"


_DNS = [struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 3, 0, 0) + _name("teams.microsoft.com") + struct.pack("!HH", 1, 1)
        + b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 2) + b"\xc0\x2b"
        + _name("t.example") + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([52, 113, 194, 132])
        + b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) + bytes(16)]


@PROPS
@given(mutated(_DNS), st.integers(0, 3))
def test_dns_bit_flips_and_tcp_framing(msg, copies):
    parsed = only_decode_errors(dns.parse_dns, msg)
    if parsed is not None:
        dns.answers_by_address(parsed)  # the naming stage's views of a parse never raise
        dns.cname_chain_targets(parsed)
    stream = b"".join(struct.pack("!H", len(msg)) + msg for _ in range(copies)) + msg[: len(msg) // 2]
    got = only_decode_errors(dns.split_dns_tcp, stream)
    if got is not None:
        msgs, used = got
        # the frames tile the consumed bytes; the first ``copies`` are the messages framed above
        assert used <= len(stream) and sum(2 + len(m) for m in msgs) == used
        assert len(msgs) < copies or msgs[:copies] == [msg] * copies


# --------------------------------------------------------------------------- STUN / TURN

_TID = bytes(range(12))
_STUN = [bstun.build_stun(0x003, 3, [bstun.build_error_code(403, "Forbidden"), (stun.REALM, b"rtcmedia")], _TID,
                          integrity_key=b"k", fingerprint=True),
         bstun.build_stun(0x001, 2, [bstun.build_xor_address(stun.XOR_MAPPED_ADDRESS, "2001:db8::7", 3478, _TID)], _TID,
                          fingerprint=True),
         struct.pack("!HH", 0x0115, 22) + bytes(range(16)) + struct.pack("!HHI", 0x000F, 4, 0x72C64BC6)
         + struct.pack("!HH", 0x0013, 6) + b"media!",  # MS-TURN Data Indication, unpadded
         bstun.build_channel_data(0x4001, b"rtp-payload"), bstun.build_channel_data(0x4001, b"rtp", pad=True)]


@PROPS
@given(mutated(_STUN), st.integers(0, 3))
def test_stun_bit_flips(msg, copies):
    only_decode_errors(stun.parse_stun, msg)
    only_decode_errors(stun.parse_channel_data, msg)
    assert isinstance(stun.verify_fingerprint(msg), bool) and isinstance(stun.verify_integrity(msg, b"k"), bool)
    stun.looks_like_stun(msg)
    got = only_decode_errors(stun.split_stun_tcp, msg * copies)
    if got is not None:
        frames_, used = got
        assert used <= len(msg) * copies and all(frames_)


# --------------------------------------------------------------------------- HTTP

_REQS = [b"CONNECT teams.microsoft.com:443 HTTP/1.1\r\nHost: teams.microsoft.com:443\r\n\r\n"
         b"CONNECT teams.microsoft.com:443 HTTP/1.1\r\nProxy-Authorization: Negotiate abc=\r\n\r\n\x16\x03\x01",
         b"POST /x HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"]
_RESPS = [b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 4\r\n\r\nnope"
          b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03",
          b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"]


@PROPS
@given(mutated(_REQS), mutated(_RESPS))
def test_http_conversation_bit_flips(client, server):
    conv = only_decode_errors(http.read_conversation, client, server)
    if conv is not None:
        assert len(conv.exchanges) <= http.MAX_EXCHANGES
        if conv.tunnel_client is not None:
            assert conv.tunnel_client <= len(client) and conv.tunnel_server <= len(server)
    only_decode_errors(http.read_request_head, client)
    only_decode_errors(http.read_response_head, server)


@PROPS
@given(st.one_of(st.binary(max_size=80), st.text(max_size=80)))
def test_host_names_never_raise(raw):
    name = names.normalize_hostname(raw)
    assert name is None or (name == name.lower() and not name.endswith(".") and len(name) <= 253)
    if isinstance(raw, str):
        names.is_ip_literal(raw)
