"""Duplicate packets (SPAN mirroring both directions, Windows pktmon, a capture merged with itself)
are counted once; the repeats an endpoint really sends are kept; each flow names its interfaces."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict

import pytest

from meshpcap.pipeline import read_flows
from tests import builders as B

C, S, D = "10.0.0.1", "52.112.0.10", "52.112.0.53"
US = 1_000


def _session() -> list[tuple[int, bytes]]:
    """(ns, Ethernet frame): a TCP connection with data, bare ACKs, FIN and RST; UDP both ways."""
    ips = [
        B.tcp4(C, 50000, S, 443, "S", seq=100),
        B.tcp4(S, 443, C, 50000, "SA", seq=900, ack=101),
        B.tcp4(C, 50000, S, 443, "A", seq=101, ack=901),
        B.tcp4(C, 50000, S, 443, "PA", seq=101, ack=901, payload=b"\x16\x03\x01hello"),
        B.tcp4(S, 443, C, 50000, "A", seq=901, ack=111),
        B.udp4(C, 50006, S, 3479, b"ping"),
        B.udp4(S, 3479, C, 50006, b"pong"),
        B.tcp4(S, 443, C, 50000, "PA", seq=901, ack=111, payload=b"\x16\x03\x03world"),
        B.tcp4(C, 50000, S, 443, "A", seq=111, ack=911),
        B.tcp4(C, 50000, S, 443, "FA", seq=111, ack=911),
        B.tcp4(S, 443, C, 50000, "R", seq=911),
        B.udp4(C, 50007, D, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x00\x00\x01\x00\x01"),
    ]
    return [(B.T0 + i * 10 * B.SEC // 1000, B.ether(ip)) for i, ip in enumerate(ips)]  # 10 ms apart


def _flows(ft) -> list[dict]:
    return [asdict(f) for f in ft.flows]


def _accounting(ft) -> None:
    c = ft.capture
    assert c["packets"] == c["decoded"] + sum(c["undecoded"].values())
    assert c["undecoded"].get("duplicate", 0) == c["duplicates_dropped"]


def test_a_capture_merged_with_itself_counts_each_packet_once(tmp_path):
    recs = _session()
    once = read_flows(B.write_pcap(tmp_path / "once.pcap", recs))
    twice = read_flows(B.write_pcap(tmp_path / "twice.pcap", [r for r in recs for _ in (0, 1)]))
    assert once.capture["duplicates_dropped"] == 0
    assert twice.capture["duplicates_dropped"] == len(recs)
    assert _flows(twice) == _flows(once)
    _accounting(twice)
    assert [e.to_dict() for e in twice.dns] == [e.to_dict() for e in once.dns]


@pytest.mark.parametrize("batch_bytes", [1, 64, 300])
def test_duplicates_do_not_depend_on_batches(tmp_path, batch_bytes):
    recs = _session()
    p = B.write_pcap(tmp_path / "twice.pcap", [(t + k * 2 * US, f) for t, f in recs for k in (0, 1)])
    whole = read_flows(p)
    cut = read_flows(p, batch_bytes=batch_bytes)
    assert whole.capture["duplicates_dropped"] == cut.capture["duplicates_dropped"] == len(recs)
    assert _flows(cut) == _flows(whole)


def test_pktmon_copies_on_other_interfaces_are_dropped(tmp_path):
    """pktmon writes one packet once per component it passed, a few microseconds apart, each
    component an interface of the pcapng; a flow only one component saw keeps its interface."""
    recs = _session()
    packets = [(k, t + k * 3 * US, f) for t, f in recs for k in (0, 1, 2)]
    packets.append((2, B.T0 + 5 * B.SEC, B.ether(B.udp4(C, 50100, S, 30001, b"only on 2"))))
    ft = read_flows(B.write_pcapng(tmp_path / "pktmon.pcapng", [1, 1, 1], packets))
    once = read_flows(B.write_pcap(tmp_path / "once.pcap", recs))
    assert ft.capture["duplicates_dropped"] == 2 * len(recs)
    _accounting(ft)
    mine = _flows(ft)
    assert mine[:-1] == _flows(once)  # interfaces (0,) on both: the copies on 1 and 2 were dropped
    assert mine[-1]["interfaces"] == (2,) and mine[-1]["packets_c2s"] == 1


def test_a_flow_on_several_interfaces_names_them_all(tmp_path):
    a = B.ether(B.udp4(C, 50006, S, 3479, b"out"))
    b = B.ether(B.udp4(S, 3479, C, 50006, b"back"))
    ft = read_flows(B.write_pcapng(tmp_path / "two.pcapng", [1, 1, 1], [(0, B.T0, a), (2, B.T0 + B.SEC, b)]))
    (f,) = ft.flows
    assert f.interfaces == (0, 2) and f.to_dict()["interfaces"] == [0, 2]


def test_repeats_that_endpoints_send_are_kept(tmp_path):
    rst = B.ether(B.tcp4(C, 50000, S, 443, "R", seq=5))
    dup_ack = B.ether(B.tcp4(C, 50001, S, 443, "A", seq=7, ack=9))
    synack = B.ether(B.tcp4(S, 443, C, 50002, "SA", seq=1, ack=2))
    datagram = B.ether(B.udp4(C, 50003, S, 3478, b"same"))
    recs = [
        (B.T0, rst), (B.T0 + 30 * US, rst),  # a RST per incoming segment, 30 us apart
        (B.T0 + B.SEC, dup_ack), (B.T0 + B.SEC, dup_ack),  # duplicate ACKs without timestamps
        (B.T0 + 2 * B.SEC, synack), (B.T0 + 2 * B.SEC + 6_000 * US, synack),  # a SYN-ACK retransmitted after 6 ms
        (B.T0 + 3 * B.SEC, datagram), (B.T0 + 3 * B.SEC + 2_000 * US, datagram),  # 2 ms apart: outside the window
    ]
    ft = read_flows(B.write_pcap(tmp_path / "repeats.pcap", recs))
    assert ft.capture["duplicates_dropped"] == 0
    assert sum(f.packets_c2s + f.packets_s2c for f in ft.flows) == len(recs)


def test_bare_copies_go_once_the_capture_shows_it_duplicates(tmp_path):
    # two copies of a SYN and a datagram (no endpoint sends those twice within a millisecond),
    # then copies of a bare ACK: dropped too
    syn = B.ether(B.tcp4(C, 50000, S, 443, "S", seq=100))
    udp = B.ether(B.udp4(C, 50006, S, 3479, b"x"))
    ack = B.ether(B.tcp4(C, 50000, S, 443, "A", seq=101, ack=901))
    recs = [(B.T0, syn), (B.T0 + US, syn), (B.T0 + B.SEC, udp), (B.T0 + B.SEC + US, udp),
            (B.T0 + 2 * B.SEC, ack), (B.T0 + 2 * B.SEC + US, ack)]
    ft = read_flows(B.write_pcap(tmp_path / "span.pcap", recs))
    assert ft.capture["duplicates_dropped"] == 3
    tcp = [f for f in ft.flows if f.transport == "tcp"]
    assert tcp[0].syn_count == 1 and tcp[0].packets_c2s == 2


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap is not installed")
def test_agrees_with_editcap_on_a_merged_capture(tmp_path):
    recs = _session()
    p = B.write_pcap(tmp_path / "twice.pcap", [r for r in recs for _ in (0, 1)])
    done = subprocess.run(["editcap", "-D", "1024", "--", str(p), str(tmp_path / "out.pcap")], capture_output=True,
                          text=True, check=True)
    skipped = int(re.search(r"(\d+) packets? skipped", done.stdout + done.stderr)[1])
    assert read_flows(p).capture["duplicates_dropped"] == skipped == len(recs)


def test_interfaces_above_63(tmp_path):
    out = B.ether(B.udp4(C, 50006, S, 3479, b"out"))
    back = B.ether(B.udp4(S, 3479, C, 50006, b"back"))
    other = B.ether(B.udp4(C, 50007, S, 3479, b"x"))
    packets = [(3, B.T0, out), (65, B.T0 + B.SEC, back), (69, B.T0 + 2 * B.SEC, out), (64, B.T0 + 3 * B.SEC, other)]
    ft = read_flows(B.write_pcapng(tmp_path / "many.pcapng", [1] * 70, packets), batch_bytes=64)
    assert [f.interfaces for f in ft.flows] == [(3, 65, 69), (64,)]


@pytest.mark.parametrize("junk", [False, True])
def test_the_window_of_earlier_packets_holds_across_batches(tmp_path, monkeypatch, junk):
    """Copies within the last `packets` decoded packets are found whether the original is in the same
    batch or an earlier one (the tail), and copies further back are not, for any batch size; also when
    large frames that do not decode lie between them (the tail then copies its packets one by one)."""
    import random

    from meshpcap.flows import engine

    rng = random.Random(5)
    frames = []
    for i in range(160 if junk else 400):  # UDP datagrams 10 us apart from few payloads: copies at every distance
        port = 50000 + rng.randrange(3)
        frames.append((B.T0 + i * 10 * US, B.ether(B.udp4(C, port, S, 3479, b"x%d" % rng.randrange(6)))))
        if junk and i % 2 == 0:  # a 40 kB frame of an EtherType nothing decodes
            frames.append((B.T0 + i * 10 * US + 1, B.ether(bytes(40_000), ethertype=0x88B5)))
    p = B.write_pcap(tmp_path / "copies.pcap", frames)
    monkeypatch.setattr(engine._DuplicateFinder.__init__, "__defaults__", (engine.DUP_WINDOW_NS, 8))
    whole = read_flows(p, batch_bytes=1 << 20)
    dropped = whole.capture["duplicates_dropped"]
    assert 0 < dropped
    for batch_bytes in (1, 200, 700, 3000):
        cut = read_flows(p, batch_bytes=batch_bytes)
        assert cut.capture["duplicates_dropped"] == dropped
        assert _flows(cut) == _flows(whole)
    monkeypatch.setattr(engine._DuplicateFinder.__init__, "__defaults__", (engine.DUP_WINDOW_NS, 1024))
    assert read_flows(p, batch_bytes=700).capture["duplicates_dropped"] > dropped  # the window matters


@pytest.mark.parametrize("later_ns", [0, 1_000])
def test_media_quality_counts_a_doubled_capture_once(tmp_path, later_ns):
    """The media pass leaves out the copies the flow table drops: a Teams capture with every record written
    twice (the copy at the same time, or a microsecond later) measures the very streams and round-trip times
    of the capture as it was (the duplicates once lost every stream: each sequence number came twice)."""
    import struct

    from tests.conftest import SAMPLES

    src = SAMPLES / "single-room-teams.pcap"
    data = src.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # microsecond pcap, little-endian
    out, pos = [data[:24]], 24
    while pos + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        rec = data[pos:pos + 16 + incl]
        out += [rec, struct.pack("<IIII", sec, usec + later_ns // 1000, incl, orig) + rec[16:]]
        pos += 16 + incl
    doubled = tmp_path / "doubled.pcap"
    doubled.write_bytes(b"".join(out))
    once, twice = read_flows(src, media=True), read_flows(doubled, media=True)
    assert twice.capture["duplicates_dropped"] == once.capture["packets"]
    assert len(once.media.streams) == 2 and twice.media.streams == once.media.streams
    assert twice.media.rtt == once.media.rtt and twice.media.rtt_samples == once.media.rtt_samples
    assert _flows(twice) == _flows(once)


@pytest.mark.parametrize("batch_bytes", [256, 1024, 1 << 20])
def test_interfaces_when_batches_change_interface(tmp_path, batch_bytes):
    """Batches on one interface, then on another, then mixed: every flow names exactly the interfaces its packets
    came on, whatever the batches (the builder marks only the new flows while every batch so far was on the one
    interface of every flow)."""
    packets = []
    t = B.T0
    for k in range(30):  # interface 0 alone, then 1 alone, then both by turns; flows begun in each part
        iface = 0 if k < 10 else 1 if k < 20 else k % 2
        for port in (50100, 50100 + k):  # one flow throughout, and a new one now and then (no packet a copy)
            t += 2_000_000
            packets.append((iface, t, B.ether(B.udp4(C, port, S, 3478, b"m%d" % k))))
    path = B.write_pcapng(tmp_path / "switch.pcapng", [1, 1], packets)
    ft = read_flows(path, batch_bytes=batch_bytes)
    want: dict[int, set] = {}
    for iface, _, frame in packets:
        want.setdefault(int.from_bytes(frame[34:36], "big"), set()).add(iface)
    got = {f.client_port: set(f.interfaces) for f in ft.flows}
    assert got == want and got[50100] == {0, 1}
