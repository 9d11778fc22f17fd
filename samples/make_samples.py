"""Build the bundled sample captures (samples/*.pcap[ng]) and the sample service-tag file, deterministically."""

from __future__ import annotations

import argparse
import base64
import calendar
import datetime
import hashlib
import hmac
import json
import random
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import NameOID
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's meshpcap, installed or not
from meshpcap import testing as mt  # noqa: E402
from meshpcap.decode import quic, stun, tls  # noqa: E402

SEED = 20240612
EPOCH_NS = calendar.timegm((2024, 6, 20, 14, 0, 0)) * 1_000_000_000  # 2024-06-20T14:00:00Z
MS = 1_000_000  # nanoseconds per millisecond
SEC = 1_000_000_000

# --- addresses (see samples/README.md for which AzureCloud prefix covers each one) ---
CLIENT = "10.20.0.15"
CLIENT6 = "2001:db8:20::15"
GATEWAY = "10.20.0.1"  # resolver, firewall, default gateway
PROXY = "10.20.0.2"
PROXY_PORT = 8080
NAT_PUBLIC = "203.0.113.45"  # the client's address as the relay sees it (documentation range)
RELAY = "52.113.144.132"  # Teams transport relay; AzureCloud 52.113.144.0/21 (westeurope), M365 ID 11
RELAY2 = "52.115.136.55"  # second relay; AzureCloud 52.115.136.0/22 (centralfrance)
MEDIA_PEER = "52.112.146.55"  # media processor behind the relay; AzureCloud 52.112.144.0/20
MEDIA30K = "20.73.100.20"  # multi-room media on 30000-30499; AzureCloud 20.73.0.0/16
UNEXPECTED = "198.51.100.77"  # documentation range: in no Microsoft list

CLIENT_MAC = "3c:22:fb:20:00:15"
GATEWAY_MAC = "00:1b:17:20:00:01"
PROXY_MAC = "00:1b:17:20:00:02"

TTL_CLIENT = 128
TTL_LAN = 64  # resolver, firewall and proxy are one hop away
TTL_INTERNET = 114  # servers on the Internet

# name -> (CNAME chain, address). The DNS answers in the captures follow these.
HOSTS: dict[str, tuple[tuple[str, ...], str]] = {
    "mesh.office.com": (
        ("mesh-prod.trafficmanager.net", "meshprod-weu.westeurope.cloudapp.azure.com"),
        "20.73.96.14",  # AzureCloud 20.73.0.0/16
    ),
    "meshsvc-weu.westeurope.cloudapp.azure.com": ((), "20.50.2.40"),  # AzureCloud 20.50.0.0/18
    "ecs.office.com": (("s-0005.s-msedge.net",), "52.113.194.132"),  # not AzureCloud
    "ocws.officeapps.live.com": (("prod-ocws-weu.officeapps.live.com",), "52.108.8.12"),  # M365 ID 46
    "mesh.cloud.microsoft": ((), "13.107.246.60"),  # AzureFrontDoor.Frontend, not AzureCloud
    "graph.microsoft.com": (
        ("ags.privatelink.msidentity.com", "www.tm.ags.trafficmanager.net"),
        "40.126.32.134",  # AzureCloud 40.126.32.0/24
    ),
    "substrate.office.com": (("outlook.ms-acdc.office.com",), "2603:1026:2405::1a"),  # AzureCloud v6
    "res-1.cdn.office.net": (("res-1.cdn.office.net.edgekey.net",), "13.107.6.171"),
    "teams.cloud.microsoft": (("teams-cloud-microsoft.s-0005.dc-msedge.net",), "52.123.128.14"),
    "teams.microsoft.com": (("teams-office-com.s-0005.dc-msedge.net",), "52.123.130.7"),
    "api.flightproxy.teams.microsoft.com": (
        ("api-flightproxy-teams-microsoft-com.trafficmanager.net",),
        "52.112.97.20",  # AzureCloud 52.112.97.0/24
    ),
    "config.edge.skype.com": (("config.edge.skype.com.trafficmanager.net",), "13.107.42.16"),
    "aka.ms": ((), "20.76.201.171"),  # AzureCloud 20.76.0.0/16
    "compass-ssl.microsoft.com": (("compass-ssl.microsoft.com.akadns.net",), "13.107.42.254"),
    "proxy.corp.example": ((), PROXY),
}

# Prefixes copied verbatim from ServiceTags_Public_20251028.json (tests check this when shared/ is present).
SAMPLE_TAGS = [
    ("AzureCloud", 273, "", 0, "", ["API", "NSG"], [
        "20.50.0.0/18", "20.73.0.0/16", "20.76.0.0/16", "40.126.32.0/24", "52.112.97.0/24",
        "52.112.144.0/20", "52.113.144.0/21", "52.115.136.0/22", "2603:1026:2405::/48",
    ]),
    ("AzureCloud.westeurope", 168, "westeurope", 18, "", ["API", "NSG"], [
        "20.50.0.0/18", "20.73.0.0/16", "20.76.0.0/16", "40.126.32.0/24", "52.112.97.0/24",
        "52.112.144.0/20", "52.113.144.0/21", "2603:1026:2405::/48",
    ]),
    ("AppService.WestEurope", 6, "westeurope", 18, "AzureAppService", ["API", "NSG", "UDR", "FW"], [
        "20.50.2.0/23",
    ]),
    ("AzureFrontDoor.FirstParty", 20, "", 0, "AzureFrontDoor", ["API", "NSG", "UDR", "FW"], [
        "13.107.4.0/22", "13.107.42.0/23",
    ]),
]
SAMPLE_TAGS_COMMENT = (
    "SAMPLE for meshpcap tests - NOT Microsoft's list; prefixes copied from ServiceTags_Public_20251028.json"
)


# =====================================================================================
# Protocol bytes: the public builders of meshpcap.decode, plus the few pieces they lack
# =====================================================================================

def _u8(n: int) -> bytes:
    return struct.pack("!B", n)


def _u16(n: int) -> bytes:
    return struct.pack("!H", n)


def _u32(n: int) -> bytes:
    return struct.pack("!I", n)


def _vec8(b: bytes) -> bytes:
    return _u8(len(b)) + b


def _vec16(b: bytes) -> bytes:
    return _u16(len(b)) + b


# --- TLS (RFC 8446; RFC 5246 for the 1.2 flow) ---
CCS_RECORD = mt.tls.build_change_cipher_spec()
ALERT_FATAL, ACCESS_DENIED = 2, 49  # RFC 8446 section 6


def app_data(rng: random.Random, n: int) -> bytes:
    """An encrypted application_data record with n bytes of (random-looking) ciphertext."""
    return mt.tls.build_record(tls.CT_APPLICATION_DATA, rng.randbytes(n))


def sample_certificate(common_name: str) -> bytes:
    """A DER certificate for common_name, signed by a fixed sample Ed25519 key (Ed25519 signs deterministically)."""
    ca_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"meshpcap sample CA").digest())
    leaf_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(common_name.encode()).digest())
    issuer = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Microsoft Corporation"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Microsoft Azure RSA TLS Issuing CA 04"),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer)
        .public_key(leaf_key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(common_name.encode()).digest()[:15], "big"))
        .not_valid_before(datetime.datetime(2024, 5, 2, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(2025, 4, 27, tzinfo=datetime.timezone.utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(ca_key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


# --- QUIC v1: the server's Initial (meshpcap.decode.quic builds only the client's) ---
QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")  # RFC 9001 section 5.2


def _hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    info = _u16(length) + _vec8(b"tls13 " + label.encode()) + _vec8(b"")  # RFC 8446 section 7.1
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def _initial_keys(dcid: bytes, side: str) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) of the client or server Initial keys for the client's first dcid (RFC 9001 section 5.2)."""
    initial_secret = hmac.new(QUIC_V1_SALT, dcid, hashlib.sha256).digest()  # HKDF-Extract
    secret = _hkdf_expand_label(initial_secret, f"{side} in", 32)
    return (_hkdf_expand_label(secret, "quic key", 16), _hkdf_expand_label(secret, "quic iv", 12),
            _hkdf_expand_label(secret, "quic hp", 16))


def encrypt_server_initial(client_dcid: bytes, dcid: bytes, scid: bytes, pn: int, frames: bytes) -> bytes:
    """A protected QUIC v1 server Initial packet, 4-byte packet number (RFC 9001 sections 5.3-5.4)."""
    key, iv, hp = _initial_keys(client_dcid, "server")
    length = 4 + len(frames) + 16
    header = (_u8(0xC3) + _u32(quic.QUIC_V1) + _vec8(dcid) + _vec8(scid) + b"\x00"  # no token
              + _u16(0x4000 | length) + _u32(pn))
    sealed = AESGCM(key).encrypt((int.from_bytes(iv, "big") ^ pn).to_bytes(12, "big"), frames, header)
    encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = encryptor.update(sealed[:16]) + encryptor.finalize()  # sample starts 4 bytes after the pn start
    pn_bytes = bytes(b ^ m for b, m in zip(header[-4:], mask[1:5]))
    return _u8(header[0] ^ (mask[0] & 0x0F)) + header[1:-4] + pn_bytes + sealed


def quic_varint(n: int) -> bytes:
    """RFC 9000 section 16 variable-length integer (up to 2**30 - 1 here)."""
    return _u8(n) if n < 0x40 else _u16(0x4000 | n) if n < 0x4000 else _u32(0x80000000 | n)


# --- STUN / TURN (RFC 8489, RFC 8656) ---
BINDING, ALLOCATE, REFRESH, CREATE_PERMISSION, CHANNEL_BIND = 0x001, 0x003, 0x004, 0x008, 0x009
REQUEST, SUCCESS, ERROR = 0, 2, 3  # RFC 8489 section 5 classes
UDP_TRANSPORT = (stun.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")  # RFC 8656 section 18.11: protocol 17
TURN_REALM = "rtcmedia"
TURN_USER = "AgAAJMk2ZyQB2mE0p9Zy7X3o0lWk"  # opaque token-style user name
TURN_PASSWORD = "sample-password"


def long_term_key(user: str = TURN_USER, realm: str = TURN_REALM, password: str = TURN_PASSWORD) -> bytes:
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).digest()  # RFC 8489 section 9.2.2


def rtp_packet(rng: random.Random, seq: int, ts: int, ssrc: int, size: int, pt: int = 111) -> bytes:
    """An SRTP packet: 12-byte RTP header (RFC 3550), opaque payload, 10-byte auth tag."""
    return b"\x80" + _u8(pt) + _u16(seq & 0xFFFF) + _u32(ts & 0xFFFFFFFF) + _u32(ssrc) + rng.randbytes(size + 10)


# =====================================================================================
# Capture model and file writers
# =====================================================================================

@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    description: str
    tsresol: int = 6  # decimal digits: 6 = microseconds, 9 = nanoseconds


ETH0 = Interface(r"\Device\NPF_{4C1B7E2A-20F5-4D15-9E0C-2024061200A1}", "Ethernet")
ETH1 = Interface(r"\Device\NPF_{9D02A6F3-7B44-4E51-A1C8-2024061200B2}", "Ethernet 2", tsresol=9)


@dataclass
class Capture:
    """Frames of one sample; helpers append (time, order, interface, bytes) and the writer sorts by time."""

    name: str
    interfaces: tuple[Interface, ...] = (ETH0,)
    rng: random.Random = field(init=False)
    frames: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    _client_ip_id: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{SEED}:{self.name}")  # str seeds are stable across runs and hash seeds
        self._client_ip_id = self.rng.randrange(0x1000, 0x8000)

    def ip_id(self, src: str) -> int:
        if src == CLIENT:  # Windows: one global counter
            self._client_ip_id = (self._client_ip_id + 1) & 0xFFFF
            return self._client_ip_id
        return self.rng.randrange(0, 0x10000)

    def emit(self, t: int, l4, src: str, dst: str, iface: int = 0, ttl: int | None = None, df: bool = True) -> None:
        """Wrap a layer-4 scapy packet in IP/IPv6 and Ethernet and record it at time t (ns from EPOCH)."""
        assert t % 1000 == 0, "keep times on whole microseconds so every resolution stores them exactly"
        if ttl is None:
            ttl = TTL_CLIENT if src in (CLIENT, CLIENT6) else (TTL_LAN if src in (GATEWAY, PROXY) else TTL_INTERNET)
        if ":" in src:
            net = IPv6(src=src, dst=dst, hlim=ttl)
        else:
            net = IP(src=src, dst=dst, ttl=ttl, id=self.ip_id(src), flags="DF" if df else 0)
        outbound = src in (CLIENT, CLIENT6)
        lan_peer = PROXY_MAC if PROXY in (src, dst) else GATEWAY_MAC
        eth = Ether(src=CLIENT_MAC, dst=lan_peer) if outbound else Ether(src=lan_peer, dst=CLIENT_MAC)
        self.frames.append((t, len(self.frames), iface, bytes(eth / net / l4)))

    def sorted_frames(self) -> list[tuple[int, int, bytes]]:
        return [(t, iface, data) for t, _, iface, data in sorted(self.frames)]


def _pad4(b: bytes) -> bytes:
    return b + bytes(-len(b) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad4(value)


def _block(block_type: int, body: bytes) -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def pcapng_bytes(cap: Capture) -> bytes:
    """pcapng (draft-ietf-opsawg-pcapng): SHB, one IDB per interface, one EPB per frame."""
    shb_opts = _option(4, b"meshpcap samples/make_samples.py") + _option(0, b"")
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts)]
    for itf in cap.interfaces:
        opts = (_option(2, itf.name.encode()) + _option(3, itf.description.encode())
                + _option(9, bytes([itf.tsresol])) + _option(0, b""))
        out.append(_block(1, struct.pack("<HHI", 1, 0, 262144) + opts))  # LINKTYPE_ETHERNET
    for t, iface, data in cap.sorted_frames():
        ticks = (EPOCH_NS + t) // 10 ** (9 - cap.interfaces[iface].tsresol)
        header = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
        out.append(_block(6, header + data))
    return b"".join(out)


def pcap_bytes(cap: Capture) -> bytes:
    """Classic libpcap file, microsecond timestamps, Ethernet."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for t, _, data in cap.sorted_frames():
        sec, ns = divmod(EPOCH_NS + t, SEC)
        out.append(struct.pack("<IIII", sec, ns // 1000, len(data), len(data)) + data)
    return b"".join(out)


# =====================================================================================
# Traffic helpers
# =====================================================================================

class TcpConn:
    """One TCP connection with correct sequence/acknowledgement numbers (RFC 9293)."""

    SYN_OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None), ("SAckOK", b"")]
    SYNACK_OPTS = [("MSS", 1440), ("NOP", None), ("WScale", 8), ("SAckOK", b""), ("EOL", None)]

    def __init__(self, cap: Capture, server: str, sport: int, dport: int = 443, client: str = CLIENT,
                 iface: int = 0, server_ttl: int | None = None, mss: int = 1460):
        self.cap, self.client, self.server = cap, client, server
        self.sport, self.dport, self.iface, self.server_ttl = sport, dport, iface, server_ttl
        self.mss = mss - (20 if ":" in client else 0)
        self.cseq = cap.rng.getrandbits(32)  # next sequence number to send, per side
        self.sseq = cap.rng.getrandbits(32)
        self.cack = 0  # what the client acknowledges
        self.sack = 0

    def seg(self, t: int, from_client: bool, flags: str, payload: bytes = b"", options=None) -> None:
        """Send one segment from one side; sequence numbers advance by payload length (+1 for SYN/FIN)."""
        if from_client:
            seq, ack, src, dst, sp, dp, win, ttl = (self.cseq, self.cack, self.client, self.server, self.sport,
                                                    self.dport, 1026, None)
        else:
            seq, ack, src, dst, sp, dp, win, ttl = (self.sseq, self.sack, self.server, self.client, self.dport,
                                                    self.sport, 2050, self.server_ttl)
        if "S" in flags and "A" not in flags:
            win = 64240
        if "S" in flags and "A" in flags:
            win = 65535
        tcp = TCP(sport=sp, dport=dp, seq=seq, ack=ack if "A" in flags else 0, flags=flags, window=win,
                  options=options or [])
        self.cap.emit(t, tcp / Raw(payload) if payload else tcp, src, dst, self.iface, ttl)
        advance = len(payload) + ("S" in flags) + ("F" in flags)
        if from_client:
            self.cseq = (self.cseq + advance) & 0xFFFFFFFF
            self.sack = self.cseq if advance else self.sack
        else:
            self.sseq = (self.sseq + advance) & 0xFFFFFFFF
            self.cack = self.sseq if advance else self.cack

    def handshake(self, t: int, rtt: int) -> int:
        self.seg(t, True, "S", options=self.SYN_OPTS)
        self.seg(t + rtt, False, "SA", options=self.SYNACK_OPTS)
        self.seg(t + rtt + 60_000, True, "A")
        return t + rtt + 60_000

    def send(self, t: int, from_client: bool, data: bytes, gap: int = 40_000) -> int:
        """Send data in MSS-sized segments, PSH on the last one; returns the time of the last segment."""
        chunks = [data[i:i + self.mss] for i in range(0, len(data), self.mss)]
        for i, chunk in enumerate(chunks):
            self.seg(t, from_client, "PA" if i == len(chunks) - 1 else "A", chunk)
            if i < len(chunks) - 1:
                t += gap
        return t

    def ack(self, t: int, from_client: bool) -> int:
        self.seg(t, from_client, "A")
        return t

    def close(self, t: int, rtt: int, from_client: bool = True) -> int:
        """FIN from one side, FIN/ACK back, last ACK (RFC 9293 section 3.6)."""
        self.seg(t, from_client, "FA")
        self.seg(t + rtt, not from_client, "FA")
        self.seg(t + rtt + 50_000, from_client, "A")
        return t + rtt + 50_000


def ephemeral_port(cap: Capture) -> int:
    return cap.rng.randrange(49152, 65536)  # Windows dynamic port range


def dns_exchange(cap: Capture, t: int, name: str, qtype: str = "A", nxdomain: bool = False, rtt: int = 9 * MS) -> int:
    """Client query to the resolver and its answer (CNAME chain then address), names compressed (RFC 1035 4.1.4)."""
    sport = ephemeral_port(cap)
    txid = cap.rng.getrandbits(16)
    query = DNS(id=txid, rd=1, qd=DNSQR(qname=name, qtype=qtype))
    cap.emit(t, UDP(sport=sport, dport=53) / query, CLIENT, GATEWAY)
    if nxdomain:
        reply = DNS(id=txid, qr=1, rd=1, ra=1, rcode=3, qd=DNSQR(qname=name, qtype=qtype))
    else:
        chain, addr = HOSTS[name]
        rrs, owner = [], name
        for target in chain:
            rrs.append(DNSRR(rrname=owner, type="CNAME", ttl=cap.rng.randrange(30, 3600), rdata=target))
            owner = target
        rrs.append(DNSRR(rrname=owner, type=qtype, ttl=cap.rng.randrange(10, 300), rdata=addr))
        reply = DNS(id=txid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name, qtype=qtype), an=rrs)
    cap.emit(t + rtt, UDP(sport=53, dport=sport) / DNS(bytes(reply)).compress(), GATEWAY, CLIENT)
    return t + rtt


def tls13_session(cap: Capture, t: int, sni: str, server: str | None = None, *, rtt: int = 18 * MS,
                  pq_key_share: bool = False, requests: int = 2, close: bool = True, dns: bool = True,
                  client: str = CLIENT, iface: int = 0) -> int:
    """DNS, then a TCP 443 connection carrying a TLS 1.3 handshake and a few request/response records."""
    if dns:
        t = dns_exchange(cap, t, sni, "AAAA" if ":" in client else "A") + 2 * MS
    server = server or HOSTS[sni][1]
    conn = TcpConn(cap, server, ephemeral_port(cap), client=client, iface=iface)
    t = conn.handshake(t, rtt)
    hello = mt.tls.build_client_hello(sni, alpn=("h2", "http/1.1"), ech=True, pq_key_share=pq_key_share, grease=True)
    return _tls13_after_hello(cap, conn, t, hello, rtt, requests, close)


def _tls13_after_hello(cap: Capture, conn: TcpConn, t: int, hello: bytes, rtt: int, requests: int,
                       close: bool) -> int:
    rng = cap.rng
    t = conn.send(t + 1 * MS, True, hello)
    flight = (mt.tls.build_server_hello(0x0304, alpn="h2") + CCS_RECORD
              + app_data(rng, rng.randrange(1800, 3200)) + app_data(rng, 53))  # EE+Cert+CV, Finished
    t = conn.send(t + rtt, False, flight, gap=80_000)
    t = conn.send(t + 2 * MS, True, CCS_RECORD + app_data(rng, 53) + app_data(rng, rng.randrange(300, 700)))
    for _ in range(requests):
        t = conn.send(t + rtt, False, app_data(rng, rng.randrange(200, 1600)), gap=60_000)
        t = conn.ack(t + 30 * MS, True)
        t = conn.send(t + rng.randrange(50, 400) * MS, True, app_data(rng, rng.randrange(120, 900)))
    t = conn.ack(t + rtt, False)
    if close:
        t = conn.close(t + 200 * MS, rtt)
    return t


def tls12_session_with_certificate(cap: Capture, t: int, sni: str, rtt: int = 21 * MS) -> int:
    """TLS 1.2 (ECDHE-RSA-AES128-GCM): the server's Certificate is visible in clear (RFC 5246 section 7.3)."""
    rng = cap.rng
    t = dns_exchange(cap, t, sni) + 2 * MS
    conn = TcpConn(cap, HOSTS[sni][1], ephemeral_port(cap))
    t = conn.handshake(t, rtt)
    t = conn.send(t + 1 * MS, True, mt.tls.build_client_hello(sni, alpn=("http/1.1",), padding_to=517, grease=True))
    # ServerKeyExchange (ECDHE x25519, rsa_pss_rsae_sha256 signature) and ServerHelloDone: RFC 8422 section 5.4
    ske = b"\x03" + _u16(tls.GROUP_X25519) + _vec8(rng.randbytes(32)) + _u16(0x0804) + _vec16(rng.randbytes(256))
    flight = (mt.tls.build_server_hello(0x0303, alpn="http/1.1") + mt.tls.build_certificate_record(sample_certificate(sni))
              + mt.tls.build_record(tls.CT_HANDSHAKE, mt.tls.build_handshake(12, ske) + mt.tls.build_handshake(14, b"")))
    t = conn.send(t + rtt, False, flight)
    cke = mt.tls.build_record(tls.CT_HANDSHAKE, mt.tls.build_handshake(16, _vec8(rng.randbytes(32))))
    finished = mt.tls.build_record(tls.CT_HANDSHAKE, rng.randbytes(40))  # encrypted Finished
    t = conn.send(t + 2 * MS, True, cke + CCS_RECORD + finished)
    t = conn.send(t + rtt, False, CCS_RECORD + mt.tls.build_record(tls.CT_HANDSHAKE, rng.randbytes(40)))
    t = conn.send(t + 1 * MS, True, app_data(rng, 420))
    t = conn.send(t + rtt + 30 * MS, False, app_data(rng, 1900))
    t = conn.ack(t + 1 * MS, True)
    return conn.close(t + 300 * MS, rtt)


@dataclass
class TurnClient:
    """One TURN allocation from one client 5-tuple (RFC 8656), over UDP or framed on TCP."""

    cap: Capture
    relay: str
    relay_port: int = 3478
    sport: int = 0
    iface: int = 0
    tcp: TcpConn | None = None
    channel: int = 0x4000
    ssrc: int = 0
    rtp_seq: int = 0
    mapped_port: int = 0  # the client's port as the relay sees it, after NAT
    auth: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sport = self.sport or ephemeral_port(self.cap)
        self.mapped_port = self.cap.rng.randrange(1024, 65536)
        self.ssrc = self.cap.rng.getrandbits(32)
        self.rtp_seq = self.cap.rng.getrandbits(16)

    def tid(self) -> bytes:
        return self.cap.rng.randbytes(12)

    def allocate_request(self) -> bytes:
        """An unauthenticated Allocate request with a new transaction ID (resent unchanged on retransmission)."""
        return mt.stun.build_stun(ALLOCATE, REQUEST, [UDP_TRANSPORT], self.tid(), fingerprint=True)

    def send(self, t: int, data: bytes, from_client: bool = True) -> None:
        if self.tcp is not None:
            self.tcp.send(t, from_client, data)
        elif from_client:
            self.cap.emit(t, UDP(sport=self.sport, dport=self.relay_port) / Raw(data), CLIENT, self.relay, self.iface)
        else:
            self.cap.emit(t, UDP(sport=self.relay_port, dport=self.sport) / Raw(data), self.relay, CLIENT, self.iface)

    def exchange(self, t: int, request: bytes, response: bytes, rtt: int) -> int:
        self.send(t, request)
        self.send(t + rtt, response, from_client=False)
        return t + rtt

    def transaction(self, t: int, method: int, request_attrs, response_cls: int, response_attrs, *,
                    signed: bool, rtt: int) -> int:
        """One request and its response on the same transaction ID; signed ones carry MESSAGE-INTEGRITY."""
        tid = self.tid()
        key = long_term_key() if signed else None
        extra = self.auth if signed else []
        request = mt.stun.build_stun(method, REQUEST, request_attrs(tid) + extra, tid, integrity_key=key,
                                  fingerprint=True)
        response = mt.stun.build_stun(method, response_cls, response_attrs(tid), tid,
                                   integrity_key=key if response_cls == SUCCESS else None, fingerprint=True)
        return self.exchange(t, request, response, rtt)

    def binding(self, t: int, rtt: int = 22 * MS) -> int:
        """Server-reflexive discovery: Binding request -> success with XOR-MAPPED-ADDRESS (RFC 8489)."""
        return self.transaction(
            t, BINDING, lambda tid: [], SUCCESS,
            lambda tid: [mt.stun.build_xor_address(stun.XOR_MAPPED_ADDRESS, NAT_PUBLIC, self.mapped_port, tid),
                         (stun.SOFTWARE, b"Microsoft Teams Transport Relay")],
            signed=False, rtt=rtt)

    def allocate(self, t: int, peer: str = MEDIA_PEER, rtt: int = 22 * MS) -> int:
        """Allocate -> 401 (REALM, NONCE) -> authenticated Allocate -> success; CreatePermission; ChannelBind."""
        rng = self.cap.rng
        nonce = rng.randbytes(16).hex().encode()
        realm = (stun.REALM, TURN_REALM.encode())
        t = self.transaction(t, ALLOCATE, lambda tid: [UDP_TRANSPORT], ERROR,
                             lambda tid: [mt.stun.build_error_code(401, "Unauthorized"), realm, (stun.NONCE, nonce)],
                             signed=False, rtt=rtt)
        # The retry carries the credentials and the NONCE from the 401 (RFC 8489 section 9.2.4).
        self.auth = [(stun.USERNAME, TURN_USER.encode()), realm, (stun.NONCE, nonce)]
        lifetime = (stun.LIFETIME, _u32(600))
        relayed_port, peer_port = rng.randrange(50000, 60000), rng.randrange(50000, 60000)
        t = self.transaction(
            t + 2 * MS, ALLOCATE, lambda tid: [UDP_TRANSPORT, lifetime], SUCCESS,
            lambda tid: [mt.stun.build_xor_address(stun.XOR_RELAYED_ADDRESS, self.relay, relayed_port, tid),
                         mt.stun.build_xor_address(stun.XOR_MAPPED_ADDRESS, NAT_PUBLIC, self.mapped_port, tid), lifetime],
            signed=True, rtt=rtt)

        def peer_address(tid: bytes) -> tuple[int, bytes]:
            return mt.stun.build_xor_address(stun.XOR_PEER_ADDRESS, peer, peer_port, tid)

        t = self.transaction(t + 2 * MS, CREATE_PERMISSION, lambda tid: [peer_address(tid)], SUCCESS,
                             lambda tid: [], signed=True, rtt=rtt)
        channel = (stun.CHANNEL_NUMBER, _u16(self.channel) + b"\x00\x00")  # RFC 8656 section 18.1
        return self.transaction(t + 2 * MS, CHANNEL_BIND, lambda tid: [channel, peer_address(tid)], SUCCESS,
                                lambda tid: [], signed=True, rtt=rtt)

    def refused_allocate(self, t: int, code: int, reason: str, rtt: int = 22 * MS) -> int:
        """Allocate -> 401 (REALM, NONCE) -> Allocate with credentials -> error ``code``: the relay (or a
        TURN-aware proxy) refuses the allocation by policy (RFC 8656 section 7.2: 403, 486, 508 ...)."""
        nonce = self.cap.rng.randbytes(16).hex().encode()
        realm = (stun.REALM, TURN_REALM.encode())
        t = self.transaction(t, ALLOCATE, lambda tid: [UDP_TRANSPORT], ERROR,
                             lambda tid: [mt.stun.build_error_code(401, "Unauthorized"), realm, (stun.NONCE, nonce)],
                             signed=False, rtt=rtt)
        self.auth = [(stun.USERNAME, TURN_USER.encode()), realm, (stun.NONCE, nonce)]
        return self.transaction(t + 2 * MS, ALLOCATE, lambda tid: [UDP_TRANSPORT], ERROR,
                                lambda tid: [mt.stun.build_error_code(code, reason)], signed=True, rtt=rtt)

    def media(self, t: int, seconds: float, interval: int = 40 * MS, rtt: int = 22 * MS) -> int:
        """Audio both ways as ChannelData (RFC 8656 section 12) carrying SRTP; padded to 4 bytes over TCP."""
        rng, pad = self.cap.rng, self.tcp is not None
        remote_ssrc, remote_seq = rng.getrandbits(32), rng.getrandbits(16)
        n = int(seconds * SEC / interval)
        for i in range(n):
            at = t + i * interval + rng.randrange(0, 3000) * 1000
            up = rtp_packet(rng, self.rtp_seq + i, i * 1920, self.ssrc, rng.randrange(60, 140))
            self.send(at, mt.stun.build_channel_data(self.channel, up, pad=pad))
            down = rtp_packet(rng, remote_seq + i, i * 1920, remote_ssrc, rng.randrange(60, 140))
            back = at + rtt // 2 + rng.randrange(0, 4000) * 1000
            self.send(back, mt.stun.build_channel_data(self.channel, down, pad=pad), from_client=False)
        self.rtp_seq += n
        return t + n * interval + rtt

    def refresh(self, t: int, lifetime: int, rtt: int = 22 * MS) -> int:
        """Refresh (RFC 8656 section 7); lifetime 0 deletes the allocation."""
        if not self.auth:  # allocated before the capture began: credentials and nonce not seen
            self.auth = [(stun.USERNAME, TURN_USER.encode()), (stun.REALM, TURN_REALM.encode()),
                         (stun.NONCE, self.cap.rng.randbytes(16).hex().encode())]
        attrs = [(stun.LIFETIME, _u32(lifetime))]
        return self.transaction(t, REFRESH, lambda tid: attrs, SUCCESS, lambda tid: attrs, signed=True, rtt=rtt)


def udp_media(cap: Capture, t: int, server: str, dport: int, seconds: float, *, sport: int | None = None,
              both_ways: bool = True, interval: int = 50 * MS, iface: int = 0, rtt: int = 24 * MS) -> int:
    """Opaque UDP datagrams (e.g. the multi-room 30000-30499 traffic, whose protocol is undocumented)."""
    rng = cap.rng
    sport = sport or ephemeral_port(cap)
    n = int(seconds * SEC / interval)
    for i in range(n):
        at = t + i * interval + rng.randrange(0, 2000) * 1000
        cap.emit(at, UDP(sport=sport, dport=dport) / Raw(rng.randbytes(rng.randrange(80, 260))), CLIENT, server, iface)
        if both_ways:
            cap.emit(at + rtt, UDP(sport=dport, dport=sport) / Raw(rng.randbytes(rng.randrange(80, 400))), server,
                     CLIENT, iface)
    return t + n * interval + rtt


def syn_retries(cap: Capture, t: int, server: str, dport: int, tries: int = 3) -> int:
    """A SYN that nobody answers: Windows retransmits after 1 s, then 2 s (RFC 6298 doubling)."""
    conn = TcpConn(cap, server, ephemeral_port(cap), dport)
    gap = 1 * SEC
    for _ in range(tries):
        conn.seg(t, True, "S", options=TcpConn.SYN_OPTS)
        conn.cseq = (conn.cseq - 1) & 0xFFFFFFFF  # a retransmission reuses the sequence number
        t += gap
        gap *= 2
    return t


def icmp_unreachable(cap: Capture, t: int, code: int, original: bytes, quote: int | None) -> None:
    """ICMP type 3 from the firewall quoting the dropped packet (RFC 792; RFC 1812 4.3.2.3 allows more)."""
    quoted = original if quote is None else original[:quote]
    cap.emit(t, ICMP(type=3, code=code) / Raw(quoted), GATEWAY, CLIENT, df=False)


def last_ip_packet(cap: Capture) -> bytes:
    """The IP datagram of the frame appended last (strip the 14-byte Ethernet header)."""
    return cap.frames[-1][3][14:]


# =====================================================================================
# The samples (one function each; samples/README.md says what meshpcap should report)
# =====================================================================================


def signalling(cap: Capture, t: int, names=("mesh.office.com", "ecs.office.com", "mesh.cloud.microsoft")) -> int:
    """The healthy HTTPS part of a session; the first hello carries a post-quantum key share (two segments)."""
    end = t
    for i, name in enumerate(names):
        end = max(end, tls13_session(cap, t + i * 150 * MS, name, pq_key_share=(i == 0)))
    return end


def healthy_multi_room() -> Capture:
    cap = Capture("healthy-multi-room", interfaces=(ETH0, ETH1))
    signalling(cap, 0, ("mesh.office.com", "ocws.officeapps.live.com", "mesh.cloud.microsoft", "ecs.office.com",
                        "graph.microsoft.com"))
    tls12_session_with_certificate(cap, 900 * MS, "meshsvc-weu.westeurope.cloudapp.azure.com")
    turn = TurnClient(cap, RELAY, 3478, iface=1)
    t = turn.allocate(1500 * MS)
    t = turn.media(t + 20 * MS, 2.0)
    turn.refresh(t + 50 * MS, 0)
    udp_media(cap, 2000 * MS, MEDIA30K, 30012, 2.5, interval=100 * MS, iface=1)
    return cap


def relay_udp_dropped() -> Capture:
    cap = Capture("relay-udp-dropped")
    signalling(cap, 0)
    turn = TurnClient(cap, RELAY, 3478)
    request = turn.allocate_request()
    start = 1000 * MS
    for at in (0, 500, 1500, 3500, 7500):  # RFC 8489 section 6.2.1: RTO 500 ms, doubling; same transaction ID
        turn.send(start + at * MS, request)
    # Fallback: TURN framed directly on TCP 443 to the same relay (RFC 8656 section 3.1, no TLS).
    conn = TcpConn(cap, RELAY, ephemeral_port(cap), 443)
    t = conn.handshake(start + 9500 * MS, 22 * MS)
    tcp_turn = TurnClient(cap, RELAY, 443, sport=conn.sport, tcp=conn)
    t = tcp_turn.allocate(t + 1 * MS)
    t = tcp_turn.media(t + 20 * MS, 1.5)
    t = conn.ack(t + 1 * MS, True)
    conn.close(t + 100 * MS, 22 * MS)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def azure_30000_dropped() -> Capture:
    cap = Capture("azure-30000-dropped")
    signalling(cap, 0)
    turn = TurnClient(cap, RELAY, 3478)
    t = turn.allocate(1200 * MS)
    turn.media(t + 20 * MS, 2.0)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 3.0, both_ways=False, interval=100 * MS)
    udp_media(cap, 1700 * MS, MEDIA30K, 30013, 1.0, both_ways=False, interval=250 * MS)
    syn_retries(cap, 1600 * MS, MEDIA30K, 30012, tries=3)
    return cap


def rst_refused(cap: Capture, t: int, name: str, tries: int = 3) -> int:
    """SYN answered by RST/ACK carrying the server's address but the firewall's TTL; Windows retries twice."""
    t = dns_exchange(cap, t, name) + 2 * MS
    conn = TcpConn(cap, HOSTS[name][1], ephemeral_port(cap), 443, server_ttl=TTL_LAN)
    for _ in range(tries):
        conn.seg(t, True, "S", options=TcpConn.SYN_OPTS)
        conn.sseq = 0
        conn.seg(t + 1 * MS, False, "RA")
        conn.cseq = (conn.cseq - 1) & 0xFFFFFFFF
        t += 500 * MS
    return t


def reject_rst() -> Capture:
    cap = Capture("reject-rst")
    signalling(cap, 0, ("mesh.office.com", "ecs.office.com"))
    rst_refused(cap, 400 * MS, "meshsvc-weu.westeurope.cloudapp.azure.com")
    rst_refused(cap, 700 * MS, "mesh.cloud.microsoft")
    turn = TurnClient(cap, RELAY, 3478)
    t = turn.allocate(1200 * MS)
    turn.media(t + 20 * MS, 2.0)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def reject_icmp() -> Capture:
    cap = Capture("reject-icmp")
    signalling(cap, 0)
    turn = TurnClient(cap, RELAY, 3478)
    request = turn.allocate_request()
    start = 1000 * MS
    for at in (0, 500, 1500):
        turn.send(start + at * MS, request)
        # RFC 792 minimum quote: the IP header and the first 8 bytes of the datagram (the UDP header).
        icmp_unreachable(cap, start + at * MS + 1 * MS, 13, last_ip_packet(cap), quote=28)
    t = dns_exchange(cap, 1200 * MS, "meshsvc-weu.westeurope.cloudapp.azure.com") + 2 * MS
    conn = TcpConn(cap, HOSTS["meshsvc-weu.westeurope.cloudapp.azure.com"][1], ephemeral_port(cap), 443)
    for _ in range(2):
        conn.seg(t, True, "S", options=TcpConn.SYN_OPTS)
        conn.cseq = (conn.cseq - 1) & 0xFFFFFFFF
        icmp_unreachable(cap, t + 1 * MS, 10, last_ip_packet(cap), quote=None)  # RFC 1812: whole SYN quoted
        t += 1 * SEC
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def tls_refused() -> Capture:
    cap = Capture("tls-refused")
    signalling(cap, 0)
    name = "res-1.cdn.office.net"
    t = dns_exchange(cap, 600 * MS, name) + 2 * MS
    for desc in (ACCESS_DENIED, ACCESS_DENIED):  # fatal access_denied, then the client's retry gets the same
        conn = TcpConn(cap, HOSTS[name][1], ephemeral_port(cap), 443)
        t = conn.handshake(t, 20 * MS)
        t = conn.send(t + 1 * MS, True, mt.tls.build_client_hello(name, alpn=("h2", "http/1.1"), ech=True, grease=True))
        conn.seg(t + 3 * MS, False, "PA", mt.tls.build_alert(ALERT_FATAL, desc))
        conn.seg(t + 3 * MS + 10_000, False, "RA")
        t += 1 * SEC
    turn = TurnClient(cap, RELAY, 3478)
    t = turn.allocate(1200 * MS)
    turn.media(t + 20 * MS, 2.0)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def http_connect(cap: Capture, t: int, host: str, allowed: bool) -> int:
    """CONNECT host:443 through the explicit proxy (RFC 9110 section 9.3.6), TLS inside when allowed."""
    conn = TcpConn(cap, PROXY, ephemeral_port(cap), PROXY_PORT)
    t = conn.handshake(t, 1 * MS)
    request = (f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nProxy-Connection: keep-alive\r\n"
               "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Mesh/5.2406\r\n\r\n").encode()
    t = conn.send(t + 1 * MS, True, request)
    if not allowed:
        body = (b"<html><head><title>403 Forbidden</title></head><body><h1>Access denied</h1>"
                b"<p>The requested URL is blocked by policy.</p></body></html>\n")
        answer = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\nConnection: close\r\nProxy-Connection: close\r\n\r\n" + body)
        t = conn.send(t + 2 * MS, False, answer)
        return conn.close(t + 1 * MS, 1 * MS, from_client=False)
    t = conn.send(t + 35 * MS, False, b"HTTP/1.1 200 Connection established\r\n\r\n")
    hello = mt.tls.build_client_hello(host, alpn=("h2", "http/1.1"), ech=True, grease=True)
    return _tls13_after_hello(cap, conn, t, hello, 36 * MS, 1, True)


def http_connect_authenticated(cap: Capture, t: int, host: str, *, granted: bool = True, chunked: bool = False) -> int:
    """CONNECT answered 407 Proxy Authentication Required, re-sent on the same connection with
    Proxy-Authorization (the Negotiate/NTLM exchange of RFC 4559, RFC 9110 section 11.7.1), then 200 and TLS
    inside, or 407 again when ``granted`` is false.  ``chunked``: the 407 body is chunked (RFC 9112 section 7.1)."""
    conn = TcpConn(cap, PROXY, ephemeral_port(cap), PROXY_PORT)
    t = conn.handshake(t, 1 * MS)
    head = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nProxy-Connection: keep-alive\r\n"
    body = b"<html><body><h1>407 Proxy Authentication Required</h1></body></html>\n"
    if chunked:
        framing, payload = b"Transfer-Encoding: chunked", b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        framing, payload = b"Content-Length: " + str(len(body)).encode(), body
    challenge = (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\n"
                 b"Proxy-Authenticate: NTLM\r\nContent-Type: text/html\r\n" + framing + b"\r\n\r\n" + payload)
    t = conn.send(t + 1 * MS, True, (head + "\r\n").encode())
    t = conn.send(t + 2 * MS, False, challenge)
    token = base64.b64encode(cap.rng.randbytes(48)).decode()
    t = conn.send(t + 1 * MS, True, (head + f"Proxy-Authorization: Negotiate {token}\r\n\r\n").encode())
    if not granted:
        t = conn.send(t + 2 * MS, False, challenge)
        return conn.close(t + 1 * MS, 1 * MS, from_client=False)
    t = conn.send(t + 35 * MS, False, b"HTTP/1.1 200 Connection established\r\n\r\n")
    hello = mt.tls.build_client_hello(host, alpn=("h2", "http/1.1"), grease=True)
    return _tls13_after_hello(cap, conn, t, hello, 36 * MS, 1, True)


def proxy_403() -> Capture:
    cap = Capture("proxy-403")
    t = dns_exchange(cap, 0, "proxy.corp.example")
    for i, (host, allowed) in enumerate((("mesh.office.com", True), ("ecs.office.com", True),
                                         ("ocws.officeapps.live.com", True), ("mesh.cloud.microsoft", False),
                                         ("graph.microsoft.com", True))):
        http_connect(cap, t + 5 * MS + i * 120 * MS, host, allowed)
    turn = TurnClient(cap, RELAY, 3478)  # media goes direct: the proxy only carries HTTP
    t = turn.allocate(1000 * MS)
    turn.media(t + 20 * MS, 1.5)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def proxy_auth() -> Capture:
    """Every HTTPS connection through the explicit proxy, each authenticated on the connection (407, then
    the CONNECT again with Negotiate credentials, then 200 and TLS); media direct."""
    cap = Capture("proxy-auth")
    t = dns_exchange(cap, 0, "proxy.corp.example")
    for i, host in enumerate(("mesh.office.com", "ecs.office.com", "mesh.cloud.microsoft", "graph.microsoft.com")):
        http_connect_authenticated(cap, t + 5 * MS + i * 150 * MS, host, chunked=(i == 1))
    turn = TurnClient(cap, RELAY, 3478)
    t = turn.allocate(1000 * MS)
    turn.media(t + 20 * MS, 1.5)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def relay_refused() -> Capture:
    """The relay answers, but refuses the allocation: 403 Forbidden after the 401 on UDP 3478, and 486
    Allocation Quota Reached on the TCP 443 fallback to the same relay; the rest is healthy."""
    cap = Capture("relay-refused")
    signalling(cap, 0)
    TurnClient(cap, RELAY, 3478).refused_allocate(1000 * MS, 403, "Forbidden")
    conn = TcpConn(cap, RELAY, ephemeral_port(cap), 443)
    t = conn.handshake(1200 * MS, 22 * MS)
    t = TurnClient(cap, RELAY, 443, sport=conn.sport, tcp=conn).refused_allocate(t + 1 * MS, 486,
                                                                                "Allocation Quota Reached")
    t = conn.ack(t + 1 * MS, True)
    conn.close(t + 100 * MS, 22 * MS)
    udp_media(cap, 1500 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


def mid_session() -> Capture:
    cap = Capture("mid-session")
    rng = cap.rng
    # Established connections: no SYN; the first segment of one starts in the middle of a TLS record.
    for i, name in enumerate(("mesh.office.com", "ecs.office.com", "graph.microsoft.com")):
        conn = TcpConn(cap, HOSTS[name][1], ephemeral_port(cap), 443)
        conn.cack, conn.sack = conn.sseq, conn.cseq
        t = i * 70 * MS
        if i == 0:
            t = conn.send(t, False, rng.randbytes(700)) + 1 * MS  # tail of a record that began before the capture
            conn.ack(t, True)
        for _ in range(4):
            t = conn.send(t + rng.randrange(150, 450) * MS, True, app_data(rng, rng.randrange(90, 600)))
            t = conn.send(t + 25 * MS, False, app_data(rng, rng.randrange(90, 1800)))
            conn.ack(t + 20 * MS, True)
        if name == "ecs.office.com":
            conn.close(t + 300 * MS, 25 * MS, from_client=False)
    turn = TurnClient(cap, RELAY, 3478)  # allocation and ChannelBind happened before the capture started
    turn.media(0, 3.0)
    turn.refresh(2000 * MS + 7 * MS, 600)
    udp_media(cap, 10 * MS, MEDIA30K, 30012, 3.0, interval=100 * MS)
    tls13_session(cap, 1500 * MS, "ocws.officeapps.live.com", requests=1)
    return cap


def single_room_teams() -> Capture:
    cap = Capture("single-room-teams")
    signalling(cap, 0, ("teams.microsoft.com", "api.flightproxy.teams.microsoft.com", "config.edge.skype.com",
                        "aka.ms", "compass-ssl.microsoft.com"))
    audio = TurnClient(cap, RELAY, 3478, sport=50010)
    audio.binding(900 * MS)
    TurnClient(cap, RELAY2, 3480, sport=50020).binding(920 * MS)
    turn = TurnClient(cap, RELAY, 3479, sport=50010)
    t = turn.allocate(1000 * MS)
    t = turn.media(t + 20 * MS, 2.0)
    turn.refresh(t + 30 * MS, 0)
    return cap


def quic_connection(cap: Capture, t: int, name: str, rtt: int = 20 * MS) -> int:
    """QUIC v1 on UDP 443: a ClientHello too large for one Initial is split over two datagrams (RFC 9000 17.2.2)."""
    rng = cap.rng
    t = dns_exchange(cap, t, name) + 2 * MS
    server, sport = HOSTS[name][1], ephemeral_port(cap)
    dcid, scid, server_cid = rng.randbytes(8), rng.randbytes(8), rng.randbytes(8)
    params = b"".join(quic_varint(k) + quic_varint(len(v)) + v for k, v in (
        (0x01, quic_varint(30000)), (0x04, quic_varint(15728640)), (0x05, quic_varint(6291456)),
        (0x08, quic_varint(100)), (0x0F, scid)))
    hello = mt.tls.build_client_hello(name, alpn=("h3",), versions=(0x0304,), pq_key_share=True, grease=True,
                                   quic_transport_parameters=params, record=False)
    first = 1100
    parts = [mt.quic.crypto_frame(0, hello[:first]), mt.quic.crypto_frame(first, hello[first:])]
    assert len(hello) > first + 200, "the hello must really need two Initials"

    def up(at: int, payload: bytes) -> None:
        cap.emit(at, UDP(sport=sport, dport=443) / Raw(payload), CLIENT, server)

    def down(at: int, payload: bytes) -> None:
        cap.emit(at, UDP(sport=443, dport=sport) / Raw(payload), server, CLIENT)

    up(t, mt.quic.encrypt_client_initial(quic.QUIC_V1, dcid, scid, 0, parts[0]))
    up(t + 100_000, mt.quic.encrypt_client_initial(quic.QUIC_V1, dcid, scid, 1, parts[1]))
    sh = mt.tls.build_server_hello(0x0304, alpn="h3", record=False)
    ack = b"\x02\x01\x00\x00\x01"  # ACK largest 1, delay 0, 0 extra ranges, first range 1 (RFC 9000 19.3)
    initial = encrypt_server_initial(dcid, scid, server_cid, 0, ack + mt.quic.crypto_frame(0, sh))
    # Handshake packets are opaque without the TLS secrets: random bytes stand for them
    handshake = mt.quic.build_long_header_packet(quic.QUIC_V1, quic.PT_HANDSHAKE, scid, server_cid, rng.randbytes(1000))
    t += rtt
    down(t, initial + handshake)
    down(t + 200_000, mt.quic.build_long_header_packet(quic.QUIC_V1, quic.PT_HANDSHAKE, scid, server_cid,
                                                    rng.randbytes(900)))
    t += 1 * MS
    client_hs = mt.quic.build_long_header_packet(quic.QUIC_V1, quic.PT_HANDSHAKE, server_cid, scid, rng.randbytes(80))
    ack0 = b"\x02\x00\x00\x00\x00"  # ACK of the server's Initial 0
    # Keys stay those of the client's first dcid; the datagram is padded to 1200 (RFC 9000 section 14.1).
    up(t, mt.quic.encrypt_client_initial(quic.QUIC_V1, server_cid, scid, 2, ack0, pad_to=1200 - len(client_hs),
                                      key_dcid=dcid) + client_hs)
    for i in range(12):  # 1-RTT packets, short header (RFC 9000 section 17.3)
        at = t + (i + 1) * 60 * MS
        up(at, _u8(0x40 | rng.getrandbits(5)) + server_cid + rng.randbytes(rng.randrange(40, 300)))
        down(at + rtt, _u8(0x40 | rng.getrandbits(5)) + scid + rng.randbytes(rng.randrange(40, 1200)))
    return t + 13 * 60 * MS


def quic_and_ipv6() -> Capture:
    cap = Capture("quic-and-ipv6")
    signalling(cap, 0, ("mesh.office.com",))
    quic_connection(cap, 300 * MS, "teams.cloud.microsoft")
    tls13_session(cap, 600 * MS, "substrate.office.com", client=CLIENT6)
    dns_exchange(cap, 900 * MS, "mesh-telemetry.office.com", nxdomain=True)
    udp_media(cap, 1000 * MS, UNEXPECTED, 30005, 2.0, interval=100 * MS)
    turn = TurnClient(cap, RELAY, 3478)  # the rest of the session is healthy
    t = turn.allocate(1100 * MS)
    turn.media(t + 20 * MS, 1.5)
    udp_media(cap, 1200 * MS, MEDIA30K, 30012, 2.0, interval=100 * MS)
    return cap


SAMPLES = {
    "healthy-multi-room.pcapng": healthy_multi_room,
    "relay-udp-dropped.pcapng": relay_udp_dropped,
    "azure-30000-dropped.pcapng": azure_30000_dropped,
    "reject-rst.pcapng": reject_rst,
    "reject-icmp.pcapng": reject_icmp,
    "tls-refused.pcapng": tls_refused,
    "proxy-403.pcapng": proxy_403,
    "proxy-auth.pcapng": proxy_auth,
    "relay-refused.pcapng": relay_refused,
    "mid-session.pcapng": mid_session,
    "single-room-teams.pcap": single_room_teams,
    "quic-and-ipv6.pcapng": quic_and_ipv6,
}
SERVICE_TAGS_FILE = "ServiceTags_Public_SAMPLE.json"


def service_tags_json() -> str:
    """The sample service-tag file in the official layout (SPEC 4a) plus a _comment key."""
    values = [{
        "name": name, "id": name,
        "properties": {"changeNumber": cn, "region": region, "regionId": region_id, "platform": "Azure",
                       "systemService": system_service, "addressPrefixes": prefixes, "networkFeatures": features},
    } for name, cn, region, region_id, system_service, features, prefixes in SAMPLE_TAGS]
    doc = {"_comment": SAMPLE_TAGS_COMMENT, "changeNumber": 375, "cloud": "Public", "values": values}
    return json.dumps(doc, indent=2) + "\n"


def build_all() -> dict[str, bytes]:
    """File name -> bytes for every sample file."""
    files = {}
    for fname, make in SAMPLES.items():
        cap = make()
        files[fname] = pcap_bytes(cap) if fname.endswith(".pcap") else pcapng_bytes(cap)
    files[SERVICE_TAGS_FILE] = service_tags_json().encode()
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for fname, data in build_all().items():
        (args.out / fname).write_bytes(data)
        print(f"{fname}: {len(data)} bytes")


if __name__ == "__main__":
    main()
