"""Cross-check the flow table against Wireshark's conversation tables (skipped without tshark).

The TCP and UDP flow sets (endpoint pairs and ports) and per-flow packet counts must
equal ``tshark -q -z conv,tcp -z conv,udp``.  Where we differ on purpose, the
adjustment or the per-file reason is written down here:

* IP fragments: Wireshark reassembles a fragmented datagram and counts it once, in
  the frame that completes it; we count every fragment toward the flow (they all
  crossed the network).  ``Flow.ip_fragments`` says how many extra packets that is,
  so we compare ``packets - ip_fragments``.  A datagram whose last fragment never
  came is not a UDP/TCP conversation for Wireshark at all, while its first fragment
  tells us the 5-tuple: such a flow adjusts to 0 packets and drops out.
* UDP idle splits: we start a new UDP flow after 300 s of silence on a 5-tuple;
  Wireshark never splits UDP conversations, so our flows of one 5-tuple are summed.
"""

from __future__ import annotations

from collections import Counter

import pytest

from meshpcap import read_flows
from meshpcap.errors import CaptureError
from tests.conftest import capture_id, sample_captures, shared_captures
from tests.oracle.tshark import TSHARK, conversations

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

# Files where Wireshark and meshpcap disagree for a reason we stand by: (reason, differing conversations)
EXPLAINED = {
    "tcpdump/ipv6-routing-header.pcap": (
        "IPv6 routing header type 0: Wireshark keys the conversation by the final destination inside the "
        "routing header; we key it by the destination address on the wire, which is what a firewall filters on",
        2,
    ),
    "zeek/ipv6-hbh-routing0.pcap": ("IPv6 routing header type 0, as above", 2),
    "nDPI/ip_fragmented_garbage.pcap": (
        "fuzzed fragments whose first fragment has an impossible TCP data offset: we count them as undecoded "
        "('bad TCP header length', 'fragment without its first fragment'); Wireshark reassembles the garbage "
        "into two one-frame TCP conversations",
        2,
    ),
    "tcpdump/udp-length-heapoverflow.pcap": (
        "a UDP header cut by the snapshot length after the ports: we count the packet toward its flow since the "
        "5-tuple is known; Wireshark marks the UDP layer truncated and leaves it out of the table",
        1,
    ),
}


def ours(ft) -> Counter:
    merged: Counter = Counter()
    tcp: Counter = Counter()
    for f in ft.flows:
        if f.transport not in ("tcp", "udp"):
            continue
        a, b = (f.client, f.client_port), (f.server, f.server_port)
        pair = frozenset((a, b)) if a != b else frozenset((a,))
        n = f.packets_c2s + f.packets_s2c - f.ip_fragments
        if f.transport == "udp":
            merged[pair] += n
        elif n > 0:
            tcp[("tcp", pair, n)] += 1
    out = Counter({("udp", pair, n): 1 for pair, n in merged.items() if n > 0})
    out.update(tcp)
    return out


CAPTURES = sample_captures() + shared_captures()


@pytest.mark.parametrize("path", CAPTURES, ids=[capture_id(p) for p in CAPTURES])
def test_flows_match_wireshark_conversations(path):
    try:
        ft = read_flows(path, names=False)
    except CaptureError:
        pytest.skip("not a readable capture (covered by the capture tests)")
    theirs = conversations(path)
    mine = ours(ft)
    only_theirs, only_mine = theirs - mine, mine - theirs
    diff = sum(only_theirs.values()) + sum(only_mine.values())
    key = capture_id(path)
    if key in EXPLAINED:
        reason, expected = EXPLAINED[key]
        assert diff == expected, f"{reason}; now differs in {diff}: tshark-only {only_theirs}, ours-only {only_mine}"
    else:
        assert not only_theirs and not only_mine, f"tshark-only {dict(only_theirs)}; ours-only {dict(only_mine)}"
