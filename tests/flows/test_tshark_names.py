"""Cross-check the server names meshpcap reads from TLS and QUIC ClientHellos against Wireshark's (skipped without tshark).

For every capture in samples/ and ../shared/captures, the set of (server address, server
port, SNI) of flows that meshpcap named by a ClientHello must equal what
``tshark -Y "tls.handshake.type==1 || quic"`` shows (tshark decrypts QUIC Initials itself).
Both sides' names go through ``normalize_hostname``.  Where we differ on purpose, the file is
listed in ``EXPLAINED`` with the reason and the number of differing triples.
"""

from __future__ import annotations

import pytest

from meshpcap import read_flows
from tests.conftest import capture_id, sample_captures, shared_captures
from tests.oracle.sni import meshpcap_snis, tshark_snis
from tests.oracle.tshark import TSHARK

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")

_IP_LITERAL = (
    "the client put an IP address literal in server_name; RFC 6066 section 3 says 'Literal IPv4 and IPv6 "
    "addresses are not permitted in HostName', so meshpcap does not name the flow by it (counted in "
    "stats['invalid_names']) but keeps it as the flow's sni_literal; tshark shows it as the SNI"
)
# capture id -> (why meshpcap and tshark differ, the (server, port, sni) triples only meshpcap finds,
# those only tshark finds, or ALL_OF_TSHARKS when meshpcap finds none of tshark's): which, not how many
EXPLAINED: dict[str, tuple[str, int]] = {
    "nDPI/teams.pcap": (_IP_LITERAL + " (52.114.250.152 and 52.114.250.153)", set(),
                        {("52.114.250.152", 443, "52.114.250.152"), ("52.114.250.153", 443, "52.114.250.153")}),
    "zeek/tls/tls-fragmented-handshake.pcap.gz": (_IP_LITERAL + " (104.236.167.107)", set(),
                                                  {("104.236.167.107", 4433, "104.236.167.107")}),
    "nDPI/quic_interop_V.pcapng": (
        _IP_LITERAL + " (71.202.41.169 on ports 443, 4433 and 4434; kept as sni_literal); the other 60 names, "
        "in Initials of the reserved version 0x0a0a0a0a sealed with another version's keys, are read by both",
        set(),
        {("71.202.41.169", 443, "71.202.41.169"), ("71.202.41.169", 4433, "71.202.41.169"),
         ("71.202.41.169", 4434, "71.202.41.169")},
    ),
    "tcpdump/quic_vn.pcap": (
        "after Version Negotiation (reserved version 0x1a2a3a4a) the client retries with v1 under the same "
        "connection IDs; tshark 4.0 keeps its keys from the first, undecryptable Initial and reports "
        "'Decryption (checktag) failed' for the v1 Initial, while meshpcap derives v1 keys for it and its "
        "AES-GCM tag verifies: SNI 'localhost' to [::1]:443 is only on our side",
        {("::1", 443, "localhost")},
        set(),
    ),
}


def _id(p) -> str:
    return capture_id(p)


CAPTURES = sample_captures() + shared_captures()


@pytest.mark.parametrize("path", CAPTURES, ids=[_id(p) for p in CAPTURES])
def test_sni_matches_wireshark(path) -> None:
    cid = capture_id(path)
    # No skip on CaptureError: a capture that was readable becoming unreadable must fail.
    ft = read_flows(path)
    ours = meshpcap_snis(ft)
    theirs = tshark_snis(path)
    only_ours, only_theirs = ours - theirs, theirs - ours
    reason, want_ours, want_theirs = EXPLAINED.get(cid, ("no explained differences", set(), set()))
    if want_theirs == "ALL_OF_TSHARKS":
        assert theirs and not ours & theirs, f"{cid}: {reason}; now meshpcap finds {sorted(ours & theirs)}"
        want_theirs = theirs
    assert (only_ours, only_theirs) == (want_ours, want_theirs), (
        f"{cid}: {reason}; only meshpcap {sorted(only_ours)}, only tshark {sorted(only_theirs)}")


def test_explained_files_exist() -> None:
    """Every explanation names a capture that the cross-check runs on (when shared/ is present)."""
    ids = {capture_id(p) for p in CAPTURES}
    if not shared_captures():
        pytest.skip("../shared/captures is not present")
    assert set(EXPLAINED) <= ids
