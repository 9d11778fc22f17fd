"""Community ID v1 of a flow (corelight/community-id-spec), so flows join with Zeek's and Suricata's logs.

The hash is SHA-1 over: seed (2 bytes, network order), the two addresses, the IP protocol
number (1 byte), one zero byte, and, for protocols with ports, the two ports (2 bytes each);
the endpoint pair is ordered so that the smaller (address, port) comes first, so both
directions of a flow get the same ID.  ICMP and ICMPv6 use type and code (or the counterpart
type) as ports; one-way ICMP messages keep their direction.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
from functools import lru_cache

PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "sctp": 132}
_PORTED = {1, 6, 17, 58, 132}

# ICMP type -> its counterpart (Zeek's ICMP4_counterpart / ICMP6_counterpart, as the spec does)
ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_COUNTERPART = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
                     139: 140, 140: 139, 144: 145, 145: 144}


def icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int, bool]:
    """(port-equivalent 1, port-equivalent 2, one-way) of an ICMP/ICMPv6 message."""
    table = ICMP4_COUNTERPART if proto == 1 else ICMP6_COUNTERPART
    if icmp_type in table:
        return icmp_type, table[icmp_type], False
    return icmp_type, code, True


@lru_cache(maxsize=1 << 16)
def _packed(addr: str) -> bytes:
    """An address in network byte order (4 or 16 bytes); ValueError when it is none."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except OSError:
        raise ValueError(f"not an IP address: {addr!r}") from None


def community_id(proto: int, saddr: str, daddr: str, sport: int | None = None, dport: int | None = None,
                 seed: int = 0, base64_encoded: bool = True, one_way: bool = False) -> str:
    """The Community ID v1 string (``1:...``) of one flow tuple."""
    src = _packed(saddr)
    dst = _packed(daddr)
    ported = proto in _PORTED and sport is not None and dport is not None
    sp = sport if ported else 0
    dp = dport if ported else 0
    if not one_way and (src, sp) > (dst, dp):
        src, dst, sp, dp = dst, src, dp, sp
    data = struct.pack("!H", seed) + src + dst + struct.pack("BB", proto, 0)
    if ported:
        data += struct.pack("!HH", sp, dp)
    digest = hashlib.sha1(data)
    return "1:" + (base64.b64encode(digest.digest()).decode("ascii") if base64_encoded else digest.hexdigest())


def flow_community_id(transport: str, client: str, server: str, client_port: int | None,
                      server_port: int | None, seed: int = 0) -> str | None:
    """The Community ID of a meshpcap flow, or None when it cannot be formed (ICMP flows keep no
    type/code; an unknown transport)."""
    if transport in ("icmp", "icmpv6"):
        return None
    proto = PROTO_NUMBERS.get(transport)
    if proto is None:
        if not transport.startswith("ip-"):
            return None
        try:
            proto = int(transport[3:])
        except ValueError:
            return None
    try:
        return community_id(proto, client, server, client_port, server_port, seed)
    except ValueError:
        return None
