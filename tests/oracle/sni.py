"""Run tshark as an oracle for server names: (server address, server port, SNI) of every TLS and QUIC ClientHello."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from meshpcap.decode.names import normalize_hostname
from tests.oracle.tshark import TSHARK, file_arg

FIELDS = ("ip.dst", "ipv6.dst", "tcp.dstport", "udp.dstport", "tls.handshake.extensions_server_name")


def _address(text: str) -> str:
    return ipaddress.ip_address(text).compressed


def tshark_snis(path: Path, decode_as: tuple[str, ...] = (), timeout: int = 120) -> set[tuple[str, int, str]]:
    """{(server, port, sni)} of the ClientHellos tshark finds in ``path`` (one tshark run).

    tshark joins repeated fields with commas (tunnels carry two ``ip.dst``; coalesced QUIC
    packets in one datagram carry several names), so the innermost address is the last one
    and each name is taken separately.  Names are normalised like meshpcap's
    (``normalize_hostname``: lower case, no trailing dot, valid labels only); address
    literals are kept, so that the caller sees where tshark reports one (meshpcap drops
    them: RFC 6066 section 3 forbids them in HostName).
    """
    cmd = [TSHARK, "-n", "-r", file_arg(path)]
    for spec in decode_as:
        cmd += ["-d", spec]
    cmd += ["-Y", "tls.handshake.type==1 || quic", "-T", "fields"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    found: set[tuple[str, int, str]] = set()
    for line in out.splitlines():
        ip4, ip6, tport, uport, names = (line.split("\t") + [""] * 5)[:5]
        if not names:
            continue  # not a ClientHello (a QUIC packet tshark could not or need not decrypt)
        addrs = [a for a in (ip6 or ip4).split(",") if a]
        ports = [p for p in (tport or uport).split(",") if p]
        if not addrs or not ports:
            continue
        server, port = _address(addrs[-1]), int(ports[-1])
        for raw in names.split(","):
            name = normalize_hostname(raw)
            if name is not None:
                found.add((server, port, name))
    return found


def meshpcap_snis(flow_table) -> set[tuple[str, int, str]]:
    """(server, server port, SNI) of every flow meshpcap named by a ClientHello."""
    return {(_address(f.server), f.server_port, f.sni) for f in flow_table.flows if f.sni is not None}
