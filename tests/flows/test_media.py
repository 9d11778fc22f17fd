"""Media streams from captures built with known impairments (the expected numbers are worked out here
from the generator's parameters), TURN framings over UDP and TCP, several SSRCs on one 5-tuple, RTT,
and Wireshark's RTP analysis (``tshark -z rtp,streams``) on built and real captures."""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from meshpcap.flows.media import MediaCollector, _FlowLocator, _jitter_segments
from meshpcap.pipeline import read_flows
from tests.builders import MAC_A, MAC_B, SEC, T0, write_pcap
from tests.conftest import SHARED_CAPTURES
from tests.media_builders import Call, channel_data, eth_udp, rtp, write_calls

CLIENT = ("10.0.0.1", 50010)
RELAY = ("52.112.0.1", 3478)
UP = CLIENT + RELAY
DOWN = RELAY + CLIENT


def media(path: Path, batch_bytes: int | None = None):
    m = MediaCollector()
    ft = read_flows(path, media=m, batch_bytes=batch_bytes)
    return m.finish(ft.flows)


def runs(indices: set[int]) -> list[int]:
    """Lengths of the runs of consecutive integers."""
    out, prev = [], None
    for i in sorted(indices):
        if prev is not None and i == prev + 1:
            out[-1] += 1
        else:
            out.append(1)
        prev = i
    return out


def test_known_loss_duplicates_reordering_and_gap(tmp_path):
    lost = {10, 11, 12, 100, 400}
    call = Call(count=600, lost=lost, duplicated={50, 51}, swapped={200, 300}, gap=(250, 50))
    r = media(write_calls(tmp_path / "c.pcap", [(call, UP)]))
    (s,) = r.streams
    assert (s.direction, s.src, s.src_port, s.dst_port, s.ssrc) == ("c2s", "10.0.0.1", 50010, 3478, call.ssrc)
    assert s.packets == call.count - len(lost) + 2
    assert s.expected == call.count  # first and last packets arrive; the sequence wraps at 65536 on the way
    assert s.lost == len(lost)
    assert (s.loss_bursts, s.max_burst) == (len(runs(lost)), max(runs(lost)))
    assert s.duplicates == 2
    assert s.reordered == len(call.swapped)
    assert (s.clock_rate, s.clock_source) == (48000, "timestamps")
    assert s.payload_types == (111,)
    # the pause: packets 249 and 250 are (1 + 50) intervals apart
    assert [round(ms, 6) for _, ms in s.gaps] == [(1 + 50) * call.interval_ns / 1e6]
    # the stream lasts (600 + 50) * 20 ms = 13 s < 15 s: one loss window, the whole stream
    assert s.loss_window_pct == pytest.approx(100 * len(lost) / call.count)
    # 200 ms holds 10 packets at 20 ms: the worst window has the burst of 3
    assert s.burst_window_pct == pytest.approx(100 * 3 / 10)
    # every packet is 12 + 40 bytes
    assert s.bytes == s.packets * 52


def test_jitter_matches_rfc3550_closed_form(tmp_path):
    # odd packets arrive d late: every |D| after the first packet is d, so J_k = d (1 - (15/16)^k)
    d_ns, n = 4_000_000, 300
    call = Call(count=n, delay_ns={i: d_ns for i in range(1, n, 2)})
    (s,) = media(write_calls(tmp_path / "j.pcap", [(call, UP)])).streams
    d_ms = d_ns / 1e6
    expect = [d_ms * (1 - (15 / 16) ** k) for k in range(1, n)]
    assert s.jitter_ms_max == pytest.approx(expect[-1], rel=1e-9)
    assert s.jitter_ms_mean == pytest.approx(sum(expect) / len(expect), rel=1e-9)


@pytest.mark.parametrize("lengths", [[1000], [1, 127, 128, 129, 3, 600], [5] * 70, [300, 1, 1, 256]])
def test_jitter_blocks_equal_the_plain_recurrence(lengths):
    import numpy as np

    rng = random.Random(sum(lengths))
    x, first, plain = [], [], []
    for n in lengths:  # streams end to end: J restarts at 0 at each stream's first packet (which has no D)
        j = 0.0
        for i in range(n):
            v = 0.0 if i == 0 else rng.random() * 50
            j += (v - j) / 16
            x.append(v)
            first.append(i == 0)
            plain.append(j)
    got = _jitter_segments(np.array(x), np.array(first))
    assert np.allclose(got, plain, rtol=1e-11, atol=1e-11)


def test_streams_do_not_depend_on_batches(tmp_path):
    call = Call(count=300, lost={5, 6}, swapped={40}, delay_ns={i: (i * 7919) % 9_000_000 for i in range(300)})
    p = write_calls(tmp_path / "b.pcap", [(call, UP)])
    assert media(p).streams == media(p, batch_bytes=4096).streams


@pytest.mark.parametrize("framing", ["channel", "indication", "ms-multiplex"])
def test_turn_framings_over_udp(tmp_path, framing):
    call = Call(count=100, lost={20}, framing=framing)
    (s,) = media(write_calls(tmp_path / "t.pcap", [(call, DOWN)])).streams
    assert s.framing == {"channel": "turn-channel", "indication": "turn-indication",
                         "ms-multiplex": "ms-turn-multiplex"}[framing]
    assert (s.packets, s.expected, s.lost, s.direction) == (99, 100, 1, "s2c")


def test_several_ssrcs_on_one_five_tuple(tmp_path):
    audio = Call(ssrc=1, pt=111, clock=48000, count=200, lost={7})
    video = Call(ssrc=2, pt=102, clock=90000, interval_ns=33_000_000, count=120, lost={30, 31}, seq0=10)
    screen = Call(ssrc=3, pt=103, clock=90000, interval_ns=100_000_000, count=40, seq0=500)
    back = Call(ssrc=4, pt=111, count=200)
    r = media(write_calls(tmp_path / "m.pcap", [(audio, UP), (video, UP), (screen, UP), (back, DOWN)]))
    by = {s.ssrc: s for s in r.streams}
    assert sorted(by) == [1, 2, 3, 4]
    assert len({s.flow_id for s in r.streams}) == 1
    assert (by[1].lost, by[2].lost, by[3].lost, by[4].lost) == (1, 2, 0, 0)
    assert (by[1].clock_rate, by[2].clock_rate, by[3].clock_rate) == (48000, 90000, 90000)
    assert by[4].direction == "s2c"


def test_random_and_repeated_payloads_are_not_streams(tmp_path):
    rng = random.Random(1)
    pkts = [(T0 + i * 1_000_000, eth_udp("10.0.0.1", 5353, "10.0.0.2", 53, bytes([0x80 + rng.randrange(64)])
                                         + rng.randbytes(40))) for i in range(200)]
    # the same datagram again and again (a NetBIOS name query retried): RTP-shaped, but its "sequence" stands still
    same = bytes.fromhex("8a05 0110 0001 0000 0000 0000") + b"\x20" + b"A" * 32
    pkts += [(T0 + SEC + i * 750_000_000, eth_udp("10.0.0.1", 137, "10.0.0.255", 137, same)) for i in range(6)]
    assert media(write_pcap(tmp_path / "r.pcap", pkts)).streams == []


def _tcp_frames(payloads: list[bytes], seq0: int = 1000) -> list[bytes]:
    """TCP segments (PSH|ACK) carrying ``payloads`` back to back, cut at arbitrary points."""
    data = b"".join(payloads)
    cuts = list(range(0, len(data), 37)) + [len(data)]
    out = []
    for a, b in zip(cuts, cuts[1:]):
        tcp = struct.pack("!HHIIBBHHH", 50020, 443, seq0 + a, 1, 0x50, 0x18, 65535, 0, 0)
        body = tcp + data[a:b]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                         bytes([52, 112, 0, 1]))
        mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
        out.append(mac(MAC_B) + mac(MAC_A) + b"\x08\x00" + ip + body)
    return out


@pytest.mark.parametrize("prefixed", [False, True])
def test_turn_over_tcp_with_and_without_rfc4571(tmp_path, prefixed):
    alloc = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + b"\x05" * 12
    frames = [alloc] + [channel_data(0x4001, rtp(111, 100 + i, 960 * i, 77)) for i in range(60) if i != 33]
    if prefixed:  # RFC 4571: a length before each frame; ChannelData then needs no padding
        wire = [struct.pack("!H", len(f)) + f for f in frames]
    else:  # RFC 8656 section 12.5: ChannelData padded to 4
        wire = [f + b"\x00" * (-len(f) % 4) for f in frames]
    segs = _tcp_frames(wire)
    p = write_pcap(tmp_path / "tcp.pcap", [(T0 + i * 5_000_000, s) for i, s in enumerate(segs)])
    (s,) = media(p).streams
    assert (s.transport, s.framing, s.ssrc, s.packets, s.expected, s.lost) == ("tcp", "turn-channel", 77, 59, 60, 1)


def test_rtt_from_stun_and_tcp(tmp_path):
    from tests.builders import tcp4

    tid = b"\x09" * 12
    req = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid
    resp = struct.pack("!HHI", 0x0101, 0, 0x2112A442) + tid
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
    eth = lambda ip: mac(MAC_B) + mac(MAC_A) + b"\x08\x00" + ip  # noqa: E731
    pkts = [(T0, eth_udp(*UP, req)), (T0 + 42_000_000, eth_udp(*DOWN, resp)),
            (T0 + SEC, eth(tcp4("10.0.0.1", 50001, "52.113.0.9", 443, "S", seq=7))),
            (T0 + SEC + 23_500_000, eth(tcp4("52.113.0.9", 443, "10.0.0.1", 50001, "SA", seq=9, ack=8)))]
    r = media(write_pcap(tmp_path / "rtt.pcap", pkts))
    got = {(x.server, x.server_port): (x.methods, round(x.rtt_ms_median, 6)) for x in r.rtt}
    assert got == {RELAY: (("STUN Binding",), 42.0), ("52.113.0.9", 443): (("TCP handshake",), 23.5)}


def test_flows_located_from_columns_as_from_records(tmp_path):
    """The streams and round trips are assigned to flows from the flow table's columns (no record made)
    exactly as from the records: a 5-tuple reused by a later flow after an idle gap, both directions,
    two 5-tuples, a STUN transaction and a TCP handshake."""
    from tests.builders import tcp4

    tid = b"\x07" * 12
    req = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid
    resp = struct.pack("!HHI", 0x0101, 0, 0x2112A442) + tid
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
    eth = lambda ip: mac(MAC_B) + mac(MAC_A) + b"\x08\x00" + ip  # noqa: E731
    later = T0 + 400 * SEC  # after the UDP idle timeout: a new flow on the same 5-tuple
    extra = [(T0, eth_udp(*UP, req)), (T0 + 30_000_000, eth_udp(*DOWN, resp)),
             (T0 + 2 * SEC, eth(tcp4("10.0.0.1", 50001, "52.113.0.9", 443, "S", seq=7))),
             (T0 + 2 * SEC + 9_000_000, eth(tcp4("52.113.0.9", 443, "10.0.0.1", 50001, "SA", seq=9, ack=8)))]
    p = write_calls(tmp_path / "reuse.pcap", [
        (Call(count=60), UP), (Call(ssrc=0x55, count=60), DOWN),
        (Call(ssrc=0x66, count=60, start_ns=later), UP),
        (Call(ssrc=0x77, count=60), ("10.0.0.2", 50020) + RELAY)], extra)

    def located(as_list: bool):
        m = MediaCollector()
        ft = read_flows(p, media=m, idle_seconds=60)
        flows = list(ft.flows) if as_list else ft.flows
        r = m.finish(flows)
        assert as_list or ft.flows.kept is None  # the columns' way: no record was made
        return [s.to_dict() for s in r.streams], [x.to_dict() for x in r.rtt], r.rtt_samples

    m = MediaCollector()
    ft = read_flows(p, media=m, idle_seconds=60)
    from_columns, from_records = _FlowLocator(ft.flows, m.slot_keys), _FlowLocator(list(ft.flows), m.slot_keys)
    for name in ("count", "offset", "row_first", "row_id", "row_a_client"):
        a, b = getattr(from_columns, name), getattr(from_records, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert from_columns.count.tolist().count(2) == 1  # the reused 5-tuple: two flows, in time order
    assert {i: tuple(f) for i, f in from_columns.by_id.items()} == {
        i: (f.id, f.transport, f.first_ns, f.client, f.client_port, f.server, f.server_port)
        for i, f in from_records.by_id.items()}
    streams, rtt, samples = located(False)
    # flow 4 is the reused 5-tuple's second flow; the relay answered in both directions of flow 1
    assert [(s["flow_id"], s["direction"], s["ssrc"]) for s in streams] == [
        (1, "c2s", "0x11223344"), (1, "s2c", "0x00000055"), (2, "c2s", "0x00000077"), (4, "c2s", "0x00000066")]
    assert [(x["server"], x["methods"], x["flow_ids"]) for x in rtt] == [
        ("52.112.0.1", ["STUN Binding"], [1]), ("52.113.0.9", ["TCP handshake"], [3])]
    assert (streams, rtt, samples) == located(True)


# ---------------------------------------------------------------- Wireshark's RTP analysis
TSHARK = shutil.which("tshark")
_ROW = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s+0x([0-9A-Fa-f]{8})\s+(.*?)\s+(\d+)\s+(-?\d+) "
                  r"\([^)]*\)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*X?\s*$")


def tshark_start(path: Path) -> subprocess.Popen:
    """Wireshark's RTP streams of a capture, with the RTP-over-UDP and RTP-over-STUN/TURN heuristics on."""
    return subprocess.Popen([TSHARK, "-n", "-r", str(path), "-o", "rtp.heuristic_rtp:TRUE", "--enable-heuristic",
                             "rtp_stun", "--enable-heuristic", "rtp_udp", "-q", "-z", "rtp,streams"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def tshark_rows(proc: subprocess.Popen) -> list[dict]:
    out = proc.communicate(timeout=300)[0]
    rows = []
    for line in out.splitlines():
        m = _ROW.match(line)
        if m:
            g = m.groups()
            rows.append({"src": g[2], "sport": int(g[3]), "dst": g[4], "dport": int(g[5]), "ssrc": int(g[6], 16),
                         "packets": int(g[8]), "lost": int(g[9]), "delta": tuple(float(x) for x in g[10:13]),
                         "jitter": tuple(float(x) for x in g[13:16])})
    return rows


def compare(path: Path, rows: list[dict], jitter: bool = False) -> list[str]:
    """Every stream tshark reports with 3 packets or more must be ours with the same packet count, loss
    (expected - received, duplicates offsetting loss, as RFC 3550 A.3 counts) and interarrival deltas, and
    every stream of ours must be one of tshark's."""
    ours = {(s.src, s.src_port, s.dst, s.dst_port, s.ssrc): s for s in media(path).streams}
    theirs = {(t["src"], t["sport"], t["dst"], t["dport"], t["ssrc"]) for t in rows}
    assert set(ours) <= theirs, f"streams tshark does not see: {set(ours) - theirs}"
    checked = []
    for t in rows:
        if t["packets"] < 3:
            continue  # below min_packets: not taken for a stream here
        s = ours.get((t["src"], t["sport"], t["dst"], t["dport"], t["ssrc"]))
        assert s is not None, f"tshark's stream {t} not found"
        assert s.packets == t["packets"]
        assert s.expected - s.packets == t["lost"]
        if t["delta"][0] >= 0:
            assert (round(s.delta_ms_min, 3), round(s.delta_ms_mean, 3), round(s.delta_ms_max, 3)) == pytest.approx(
                t["delta"], abs=0.0011)
        if jitter:
            assert round(s.jitter_ms_max, 3) == pytest.approx(t["jitter"][2], abs=0.0011)
            assert round(s.jitter_ms_mean, 3) == pytest.approx(t["jitter"][1], abs=0.0011)
        checked.append(f"0x{t['ssrc']:08X}")
    return checked


# real captures -> the streams (SSRC) both tools report with 3 packets or more
REAL = {"nDPI/teams.pcap": 1, "nDPI/skype-conference-call.pcap": 1, "nDPI/stun.pcap": 1,
        "nDPI/stun_dtls_rtp.pcapng": 2, "nDPI/stun_google_meet.pcapng": 6, "nDPI/stun_signal.pcapng": 4,
        "zeek/tls/webrtc-stun.pcap": 0,
        # no RTP: repeated NetBIOS and DNS datagrams whose first byte is 128-191 must not make streams
        "suricata-verify/tls/tls-subjectaltname/input.pcap": 0, "nDPI/malformed_dns.pcap": 0}


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
def test_tshark_agrees_on_a_built_call_and_real_captures(tmp_path):
    """One tshark per capture, all started at once (tshark's start-up is most of its time)."""
    # PT 0 (PCMU, 8 kHz: RFC 3551) is one whose clock Wireshark knows, so its jitter is comparable too
    rng = random.Random(5)
    call = Call(pt=0, clock=8000, count=400, lost={30, 31, 200}, swapped={100}, duplicated={150},
                delay_ns={i: rng.randint(0, 30_000_000) for i in range(400)})
    built = write_calls(tmp_path / "g711.pcap", [(call, UP)])
    real = {n: SHARED_CAPTURES / n for n in REAL if (SHARED_CAPTURES / n).is_file()}
    procs = {None: tshark_start(built)} | {n: tshark_start(p) for n, p in real.items()}
    rows = {n: tshark_rows(p) for n, p in procs.items()}
    assert compare(built, rows[None], jitter=True) == ["0x11223344"]
    for n, p in real.items():
        assert len(compare(p, rows[n])) == REAL[n], n
    if len(real) < len(REAL):
        pytest.skip(f"../shared/captures lacks {sorted(set(REAL) - set(real))} (the built call was compared)")


@pytest.mark.parametrize("in_order", [False, True])
def test_vectorised_streams_equal_the_per_stream_reference(tmp_path, in_order):
    """The array code computes every stream at once; tests/flows/media_reference.py computes one stream at a
    time as first written: on random calls (loss, duplicates, reordering, jitter, pauses, sequence and timestamp
    wraps, several SSRCs, both directions, static and dynamic payload types) both give the same streams.
    ``in_order``: no packet overtakes another (no swap, delays under the interval), the case where the array
    code skips its sorts by sequence number and by time (loss and duplicates still there)."""
    from dataclasses import fields

    import numpy as np

    from meshpcap.flows import media as M
    from tests.flows import media_reference as ref

    rng = random.Random(11)
    calls = []
    for k in range(6):
        n = rng.randint(3, 400)
        c = Call(ssrc=1000 + k, pt=rng.choice([0, 8, 96, 111]), clock=rng.choice([8000, 48000, 90000]),
                 count=n, seq0=rng.randrange(65536), ts0=rng.randrange(1 << 32),
                 lost={i for i in range(1, n - 1) if rng.random() < 0.05},
                 duplicated={i for i in range(n) if rng.random() < 0.02},
                 swapped=set() if in_order else {i for i in range(n - 1) if rng.random() < 0.02},
                 delay_ns={i: rng.randint(0, 18_000_000 if in_order else 25_000_000) for i in range(n)
                           if rng.random() < 0.3},
                 gap=(n // 2, rng.randint(1, 60)) if rng.random() < 0.5 else None)
        calls.append((c, UP if k % 2 else DOWN))
    calls.append((Call(ssrc=7, count=900), UP))  # lossless and longer than 15 s: its first windows are its worst
    calls.append((Call(ssrc=8, count=4, interval_ns=60_000_000), DOWN))  # too few packets for any window
    p = write_calls(tmp_path / "v.pcap", calls)
    m = _KeepColumns()
    ft = read_flows(p, media=m)
    cols = list(m.cols)
    locate = M._FlowLocator(ft.flows, m.slot_keys)
    fid, c2s = locate(cols[0], cols[1], cols[2])
    cols[0], cols[1] = fid, c2s
    seen = []
    real_seen = M._seen
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "_seen", lambda p: seen.append(real_seen(p)) or seen[-1])
        got = M._streams(cols, locate, m.options)
    assert [u.in_order for u in seen] == [in_order]  # the path meant is the path taken
    assert any(s.duplicates for s in got) and any(s.lost for s in got)
    want = ref.streams([c.astype(np.int64) if c.dtype.kind in "ui" else c for c in cols], locate, m.options)
    assert len(got) == len(want) == 8

    by_ssrc = {c.ssrc: c for c, _ in calls}
    for g, w in zip(got, want):
        # the per-bin series against a plain computation from the generator's packets
        loss, jitter = series_by_hand(by_ssrc[g.ssrc], g.clock_rate)
        assert len(g.loss_series_pct) == len(g.jitter_series_ms) == len(g.bitrate_series)
        assert close(g.loss_series_pct, loss) and close(g.jitter_series_ms, jitter), g.ssrc
        for f in fields(g):
            if f.name in ("loss_series_pct", "jitter_series_ms"):
                continue  # the reference module predates them: checked above
            a, b = getattr(g, f.name), getattr(w, f.name)
            if isinstance(b, float) or (isinstance(b, tuple) and b and isinstance(b[0], float)):
                assert a == pytest.approx(b, rel=1e-9, abs=1e-9), f.name
            else:
                assert a == b, f.name


class _KeepColumns(MediaCollector):
    """A collector that keeps the joined RTP columns its finish consumed (for the tests below)."""

    def _rtp_columns(self):
        cols = super()._rtp_columns()
        self.cols = list(cols)  # finish replaces the slot and side columns in its list
        return cols


def test_streams_in_chunks_equal_streams_at_once(tmp_path, monkeypatch):
    """_streams cuts the streams into chunks of about CHUNK_PACKETS packets: chunks of a few dozen packets
    (every chunk boundary inside a jitter block, streams left out by the RTP checks among them) give the
    very same streams, floats bit for bit, as one chunk of everything."""
    from meshpcap.flows import media as M

    rng = random.Random(5)
    calls = []
    for k in range(9):
        n = 2 if k == 4 else rng.randint(3, 300)  # 2: fewer than min_packets, left out
        calls.append((Call(ssrc=500 + k, pt=rng.choice([0, 96, 111]), clock=rng.choice([8000, 48000, 90000]),
                           count=n, seq0=rng.randrange(65536), ts0=rng.randrange(1 << 32),
                           lost={i for i in range(1, n - 1) if rng.random() < 0.05},
                           delay_ns={i: rng.randint(0, 25_000_000) for i in range(n) if rng.random() < 0.3}),
                      UP if k % 2 else DOWN))
    m = _KeepColumns()
    ft = read_flows(write_calls(tmp_path / "c.pcap", calls), media=m)
    cols = list(m.cols)
    locate = M._FlowLocator(ft.flows, m.slot_keys)
    cols[0], cols[1] = locate(cols[0], cols[1], cols[2])
    whole = M._streams(cols, locate, m.options)
    assert len(whole) == 8 and whole == m.result.streams
    for chunk in (1, 37, 200):
        monkeypatch.setattr(M, "CHUNK_PACKETS", chunk)
        assert M._streams(cols, locate, m.options) == whole, chunk


def test_a_time_that_steps_back_inside_a_stream_is_held(tmp_path):
    # a clock step or a damaged record: one packet stamped 30 s before its stream began (the mutation
    # tests found windows and bitrate bins built from such a time: an IndexError, a negative bincount)
    call = Call(count=200, lost={40, 41})
    pkts = [(at, eth_udp(*UP, call.payload(seq, ts))) for at, _i, seq, ts in call.packets()]
    pkts.sort(key=lambda p: p[0])
    pkts[100] = (pkts[0][0] - 30 * SEC, pkts[100][1])
    p = write_pcap(tmp_path / "back.pcap", pkts)  # written in this order: the 101st record goes back in time
    (s,) = media(p).streams
    assert s.packets == 198 and s.lost == 2  # 200 sent, 2 lost
    assert all(b >= 0 for b in s.bitrate_series) and s.first_ns == pkts[0][0]
    assert s.loss_window_ns[0] >= s.first_ns and s.burst_window_ns[0] >= s.first_ns


def close(got, want) -> bool:
    """Series equal to 1e-9, None where None."""
    return len(got) == len(want) and all((a is None) == (b is None) and (a is None or a == pytest.approx(b, rel=1e-9,
                                          abs=1e-9)) for a, b in zip(got, want))


def series_by_hand(call: Call, clock: int | None, bin_ns: int = SEC):
    """``loss_series_pct`` and ``jitter_series_ms`` of one call worked out packet by packet from what the
    generator sent: packet index i is the extended sequence number, its timestamp is unwrapped already."""
    arr = call.packets()  # (arrival, index, sequence, timestamp) in arrival order
    t0 = arr[0][0]
    nbins = (arr[-1][0] - t0) // bin_ns + 1
    received = {i for _, i, _, _ in arr}
    in_bin: list[list[tuple[int, int, int]]] = [[] for _ in range(nbins)]
    for at, i, _, ts in arr:
        in_bin[(at - t0) // bin_ns].append((at, i, ts))
    loss, high = [], min(received) - 1
    for pk in in_bin:
        if not pk:
            loss.append(None)
            continue
        top = max(high, max(i for _, i, _ in pk))
        expected = range(high + 1, top + 1)  # the numbers above the last bin's highest, up to this bin's
        loss.append(100 * sum(i not in received for i in expected) / len(expected) if expected else 0.0)
        high = top
    jitter, j, prev = [], 0.0, None
    for pk in in_bin:
        top = None
        for at, _, ts in pk:
            if prev is not None:  # RFC 3550 A.8
                d = (at - prev[0]) / 1e6 - (ts - prev[1]) * 1000 / clock if clock else 0.0
                j += (abs(d) - j) / 16
            prev = (at, ts)
            top = j if top is None else max(top, j)
        jitter.append(top if clock else None)
    return loss, jitter


def test_loss_and_jitter_per_bin(tmp_path):
    # 20 ms packets over 20 s: 5 lost in second 5 (of its 50), every odd packet of second 12 10 ms late
    lost = set(range(260, 265))
    late = {i: 10_000_000 for i in range(601, 650, 2)}
    call = Call(count=1000, lost=lost, delay_ns=late)
    # another stream: one packet overtaken across a bin edge (49 arrives after 50, in second 1): not loss
    swap = Call(ssrc=0x99, count=200, swapped={49})
    r = media(write_calls(tmp_path / "s.pcap", [(call, UP), (swap, DOWN)]))
    s, w = sorted(r.streams, key=lambda x: x.ssrc != call.ssrc)
    per_bin = SEC // call.interval_ns
    assert len(s.loss_series_pct) == len(s.jitter_series_ms) == len(s.bitrate_series) == call.count // per_bin
    want = [0.0] * 20
    want[5] = 100 * len(lost) / per_bin  # second 5 expects its 50 numbers and 5 never arrive
    assert s.loss_series_pct == pytest.approx(want, abs=1e-12)
    # jitter: exactly 0 up to second 12; there 49 |D| of 10 ms (601..649), the 50th (650) in second 13,
    # then D = 0 again: J decays by 15/16 a packet
    j = [10 * (1 - (15 / 16) ** k) for k in (49, 50)]
    assert s.jitter_series_ms[:12] == (0.0,) * 12
    assert s.jitter_series_ms[12:14] == pytest.approx(j, rel=1e-9)
    assert s.jitter_series_ms[14] == pytest.approx(j[1] * (15 / 16) ** 50, rel=1e-9)
    assert max(s.jitter_series_ms) == pytest.approx(s.jitter_ms_max, rel=1e-12)
    assert (w.reordered, w.lost) == (1, 0) and set(w.loss_series_pct) == {0.0}
    d = s.to_dict()
    assert d["loss_series_pct"][5] == 10.0 and d["jitter_series_ms"][13] == round(j[1], 3)


def test_bins_without_packets_have_no_loss_or_jitter(tmp_path):
    # the sender pauses for 3 s (150 packet times) before packet 100: 99 arrives at 1.98 s, 100 at 5 s
    call = Call(count=300, gap=(100, 150), lost={250})
    (s,) = media(write_calls(tmp_path / "g.pcap", [(call, UP)])).streams
    loss, jitter = series_by_hand(call, 48000)
    assert loss.count(None) == 3 and s.loss_series_pct == tuple(loss)  # seconds 2 to 4 hold no packet
    assert [v is None for v in s.jitter_series_ms] == [v is None for v in loss]
    assert close(s.jitter_series_ms, jitter)
    # too few packets to infer a dynamic payload type's clock: no jitter
    (u,) = media(write_calls(tmp_path / "u.pcap", [(Call(count=4, pt=96, interval_ns=10_000_000), UP)])).streams
    assert u.clock_rate is None and u.jitter_series_ms == (None,) and u.loss_series_pct == (0.0,)


def test_floor_div_is_integer_floor_division():
    import numpy as np

    from meshpcap.flows.media import _floor_div

    rng = np.random.default_rng(3)
    for w in (1, 3, 7, 200_000_000, 999_999_999, 1_000_000_000):
        top = (1 << 52) // w * w
        x = np.concatenate([rng.integers(0, 1 << 52, 20_000), np.arange(0, 40 * w, max(w // 3, 1))[:20_000],
                            [0, w - 1, w, w + 1, top - 1, top, (1 << 52) - 1]]).astype(np.int64)
        assert np.array_equal(_floor_div(x, w), x // w), w
        odd = np.array([-w - 1, -1, 1 << 60, 5], np.int64)  # outside the float path's range: // itself
        assert np.array_equal(_floor_div(odd, w), odd // w), w
def _delayed_calls(seed: int, ssrc0: int, n: int, counts: tuple[int, int], lost: tuple[int, int],
                   delay: tuple[int, float]) -> list:
    """``n`` calls, alternately each way, of random lengths, each losing a tenth of the packets numbered in
    ``lost`` and delaying the first 200's (``delay``: the most, in ns, and how many of them)."""
    rng = random.Random(seed)
    most, share = delay
    return [(Call(ssrc=ssrc0 + k, count=rng.randint(*counts), lost={i for i in range(*lost) if rng.random() < 0.1},
                  delay_ns={i: rng.randint(0, most) for i in range(200) if rng.random() < share}),
             UP if k % 2 else DOWN) for k in range(n)]


def test_streams_made_beside_the_naming_equal_those_made_here(tmp_path, monkeypatch):
    """From BESIDE_MIN_ROWS RTP rows on, a forked child makes the streams and round-trip times while this
    process names the flows: the very same result (floats bit for bit) as made here; a child that fails is
    made up for here, and below the threshold nothing forks."""
    import os

    from meshpcap import _child
    from meshpcap.flows import media as M

    if not _child.can_fork():
        pytest.skip("no second process here (MESHPCAP_NO_FORK, one CPU or no fork)")
    path = write_calls(tmp_path / "b.pcap", _delayed_calls(11, 700, 6, (50, 250), (1, 40), (20_000_000, 0.4)))
    forks = []
    real_beside = _child.beside
    monkeypatch.setattr(_child, "beside", lambda work, *a, **k: forks.append(work) or real_beside(work, *a, **k))
    here = read_flows(path, media=True).media
    assert not forks and len(here.streams) == 6  # 900-odd rows: below the threshold
    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    beside = read_flows(path, media=True).media
    assert len(forks) == 1 and beside == here
    assert [s.jitter_ms_max for s in beside.streams] == [s.jitter_ms_max for s in here.streams]
    monkeypatch.setattr(_child, "write_all", lambda fd, data: os._exit(1))  # the child dies before it answers
    assert read_flows(path, media=True).media == here and len(forks) == 2


def test_streams_made_in_the_spare_child_equal_those_made_here(tmp_path, monkeypatch):
    """For a capture large enough (SPARE_MIN_BYTES; here: any), the child that makes the streams is forked
    as the read begins (a spare) and given the rows at its end (below, one is forked then): the RTP rows in
    the memory it shares, the STUN, SYN and TURN-over-TCP rows and then the flows' lookup sent.  The result is the one made here, floats bit for
    bit: so it is when the shared memory is too small for the rows (they are sent), and when the spare dies
    before it answers (made up for here); no child is left behind."""
    from meshpcap import _child, pipeline
    from meshpcap.flows import media as M
    from tests.builders import tcp4
    from tests.conftest import fork_pids, reaped

    if not _child.can_fork():
        pytest.skip("no second process here (MESHPCAP_NO_FORK, one CPU or no fork)")
    calls = _delayed_calls(23, 300, 4, (60, 200), (2, 50), (15_000_000, 0.3))
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
    eth = lambda ip: mac(MAC_B) + mac(MAC_A) + b"\x08\x00" + ip  # noqa: E731
    extra = []
    for k in range(4):  # STUN transactions and TCP handshakes spread over the capture: rows in several batches
        tid = bytes([k + 1]) * 12
        at = T0 + k * 700_000_000
        extra += [(at + 3_000_000, eth_udp(*UP, struct.pack("!HHI", 0x0001, 0, 0x2112A442) + tid)),
                  (at + 40_000_000 + k * 1_000_000, eth_udp(*DOWN, struct.pack("!HHI", 0x0101, 0, 0x2112A442) + tid)),
                  (at + 5_000_000, eth(tcp4("10.0.0.1", 50001 + k, "52.113.0.9", 443, "S", seq=7))),
                  (at + 26_000_000 + k * 1_000_000, eth(tcp4("52.113.0.9", 443, "10.0.0.1", 50001 + k, "SA", seq=9, ack=8)))]
    alloc = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + b"\x05" * 12
    turn = [alloc] + [channel_data(0x4001, rtp(111, 100 + i, 960 * i, 78)) for i in range(40) if i != 7]
    extra += [(T0 + 2 * SEC + i * 5_000_000, f) for i, f in enumerate(_tcp_frames([f + b"\x00" * (-len(f) % 4) for f in turn]))]
    path = write_calls(tmp_path / "spare.pcap", calls, extra=sorted(extra, key=lambda x: x[0]))
    here = read_flows(path, media=True, batch_bytes=8192).media  # many batches: their rows are joined
    assert len(here.streams) == 5 and any(s.transport == "tcp" for s in here.streams) and len(here.rtt_samples) == 8

    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    spares, forked_late = [], []
    real_spare, real_beside = _child.spare, _child.beside
    monkeypatch.setattr(_child, "spare", lambda *a, **k: spares.append(a) or real_spare(*a, **k))
    monkeypatch.setattr(_child, "beside", lambda work, *a, **k: forked_late.append(work) or real_beside(work, *a, **k))
    assert read_flows(path, media=True, batch_bytes=8192).media == here
    assert not spares and len(forked_late) == 1  # a small file: the child forked at the end
    monkeypatch.setattr(pipeline, "SPARE_MIN_BYTES", 0)
    handed, shared = [], []
    real_handed, real_share = _child.handed, M.MediaCollector.share_rows
    monkeypatch.setattr(_child, "handed", lambda *a: handed.append(a[1]) or real_handed(*a))
    monkeypatch.setattr(M.MediaCollector, "share_rows", lambda self, mem: shared.append(len(mem)) or real_share(self, mem))
    answers = []  # the results a child sent (a child that fails sends none: they are made here then)
    real_answer = M._result_from_rows
    monkeypatch.setattr(M, "_result_from_rows", lambda rows, options: answers.append(rows) or real_answer(rows, options))
    pids = fork_pids(monkeypatch)
    spared = read_flows(path, media=True, batch_bytes=8192).media
    # the spare made them, from the shared rows
    assert handed == [M._finish_handed] and len(shared) == 1 and len(answers) == 1 and len(forked_late) == 1
    assert spared == here
    assert [s.jitter_ms_max for s in spared.streams] == [s.jitter_ms_max for s in here.streams]
    assert all(reaped(pid) for pid in pids)

    real_limited = _child.address_space_limited
    monkeypatch.setattr(_child, "address_space_limited", lambda: True)  # a batch audit's worker: no shared memory
    assert read_flows(path, media=True, batch_bytes=8192).media == here and len(answers) == 2 and len(shared) == 1
    monkeypatch.setattr(_child, "address_space_limited", real_limited)
    monkeypatch.setattr(_child, "spare", lambda pipe_bytes=None, shared_bytes=0, preload=(): real_spare(pipe_bytes, 4096, preload))
    assert read_flows(path, media=True, batch_bytes=8192).media == here and len(answers) == 3  # most rows sent, not shared
    monkeypatch.setattr(M, "_answer", lambda *args: os._exit(1))  # the spare dies before it answers
    assert read_flows(path, media=True, batch_bytes=8192).media == here and len(handed) == 4 and len(answers) == 3
    assert all(reaped(pid) for pid in pids)


def _lossy_calls_forking(path, seed: int, ssrc0: int, counts: tuple[int, int], loss: tuple[int, int, float]):
    """Four calls, two each way, with random loss, written to ``path``; skips where no child can be forked."""
    from meshpcap import _child

    if not _child.can_fork():
        pytest.skip("no second process here (MESHPCAP_NO_FORK, one CPU or no fork)")
    rng = random.Random(seed)
    lo, hi, p = loss
    calls = [(Call(ssrc=ssrc0 + k, count=rng.randint(*counts), lost={i for i in range(lo, hi) if rng.random() < p}),
              UP if k % 2 else DOWN) for k in range(4)]
    return write_calls(path, calls)


def test_analyze_takes_the_streams_made_beside_after_judging(tmp_path, monkeypatch):
    """analyze leaves the child at its statistics while it names and judges the flows, then takes them:
    the report is the one made without a child, byte for byte."""
    from meshpcap import _child
    from meshpcap.flows import media as M
    from meshpcap.pipeline import analyze

    path = _lossy_calls_forking(tmp_path / "a.pcap", seed=5, ssrc0=900, counts=(80, 200), loss=(2, 30, 0.2))

    def report_json() -> str:
        out = []
        analyze(path).write_json(out.append)
        return "".join(out)

    here = report_json()
    forks = []
    real_beside = _child.beside
    monkeypatch.setattr(_child, "beside", lambda work, *a, **k: forks.append(work) or real_beside(work, *a, **k))
    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    assert report_json() == here and len(forks) == 1
    assert '"streams": [' in here and here.count('"ssrc"') >= 4
    # the streams' text was made in the child too, and the report writes that text
    from meshpcap.report import analysis

    report = analyze(path)
    made = report.quality.media.rendered(analysis.STREAMS_JSON)
    assert made == analysis.streams_json(report.quality.media) and made in here
    monkeypatch.setattr(analysis, "write_streams_json", lambda media, write: pytest.fail("the streams' text made again"))
    out = []
    report.write_json(out.append)
    assert "".join(out) == here


def test_what_renderers_make_beside_comes_with_the_result(tmp_path, monkeypatch):
    """MediaCollector.beside runs the given renderers in its child after the result: each one's value comes
    back as MediaResult.rendered(name), equal to what it makes of the result here; a renderer that fails,
    no child, or a streams list changed since gives None (the caller then renders it itself)."""
    from meshpcap.flows import media as M
    from meshpcap.flows.engine import FlowBuilder
    from meshpcap.flows.records import build_records

    path = _lossy_calls_forking(tmp_path / "r.pcap", seed=7, ssrc0=500, counts=(60, 160), loss=(3, 30, 0.15))
    here = read_flows(path, media=True).media

    def text(result):
        return "|".join(f"{s.ssrc:x}:{s.packets}:{s.jitter_ms_max!r}" for s in result.streams)

    def fails(result):
        raise ValueError("no")

    def collected():
        from meshpcap.pipeline import _read_files

        collector = MediaCollector()
        builder = FlowBuilder(evidence=False)
        _read_files([str(path)], builder, None, collector, None)
        raw = builder.finish()
        return collector, raw

    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    collector, raw = collected()
    with collector.beside(raw, {"text": text, "fails": fails}) as take:
        got = take(build_records(raw))
    assert got == here and len(got.streams) == 4
    assert got.rendered("text") == text(here) and got.rendered("fails") is None and got.rendered("other") is None
    got.streams.reverse()  # no longer the records the text was made of
    assert got.rendered("text") is None

    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 10**9)  # no child: nothing made beside
    collector, raw = collected()
    with collector.beside(raw, {"text": text}) as take:
        got = take(build_records(raw))
    assert got == here and got.rendered("text") is None


def test_take_does_not_wait_for_the_renderers(tmp_path, monkeypatch):
    """The child sends the result before it runs the renderers: ``take`` returns while a renderer is still at
    work (here one that waits for this process to say that take has returned), and its value is there once
    the block ends.  A child that dies after the result, before the renderers' values, leaves the result as
    it sent it and nothing rendered (the caller renders it itself)."""
    import os
    import time

    from meshpcap.flows import media as M
    from meshpcap.flows.engine import FlowBuilder
    from meshpcap.flows.records import build_records
    from meshpcap.pipeline import _read_files

    path = _lossy_calls_forking(tmp_path / "w.pcap", seed=9, ssrc0=300, counts=(60, 120), loss=(3, 20, 0.1))
    here = read_flows(path, media=True).media
    signal = tmp_path / "taken"

    def waits_for_take(result):
        deadline = time.monotonic() + 10
        while not signal.exists():
            if time.monotonic() > deadline:
                return "take waited for the renderer"
            time.sleep(0.01)
        return f"made after take, {len(result.streams)} streams"

    def dies(result):
        os._exit(1)

    def collected():
        collector = MediaCollector()
        builder = FlowBuilder(evidence=False)
        _read_files([str(path)], builder, None, collector, None)
        return collector, builder.finish()

    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    collector, raw = collected()
    with collector.beside(raw, {"slow": waits_for_take}) as take:
        got = take(build_records(raw))
        signal.touch()
    assert got == here and got.rendered("slow") == "made after take, 4 streams"

    collector, raw = collected()
    with collector.beside(raw, {"dies": dies}) as take:
        got = take(build_records(raw))
    assert got == here and got.rendered("dies") is None and not got.made_beside


def test_analyzing_writes_the_report_while_the_streams_text_is_made(tmp_path, monkeypatch):
    """``pipeline.analyzing`` yields the report while the child still makes the streams' text (here a renderer
    that waits until the block has the report): the report written inside the block is analyze's, byte for byte,
    with the child's text, and the child is reaped when the block ends.  A block left by an error does not wait
    for the text, and reaps the child too."""
    import time

    from meshpcap.flows import media as M
    from meshpcap.pipeline import analyze, analyzing
    from meshpcap.report import analysis
    from tests.conftest import fork_pids, reaped

    path = _lossy_calls_forking(tmp_path / "z.pcap", seed=13, ssrc0=200, counts=(80, 200), loss=(2, 30, 0.2))
    out = []
    analyze(path, quality=True).write_json(out.append)
    here = "".join(out)
    signal = tmp_path / "yielded"
    real = analysis.streams_json

    def after_the_block_has_the_report(media):
        deadline = time.monotonic() + 10
        while not signal.exists():
            if time.monotonic() > deadline:
                return "the block waited for the streams' text"
            time.sleep(0.01)
        return real(media)

    monkeypatch.setattr(analysis, "streams_json", after_the_block_has_the_report)
    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    pids = fork_pids(monkeypatch)
    with analyzing(path) as report:
        signal.touch()
        monkeypatch.setattr(analysis, "write_streams_json", lambda media, write: pytest.fail("the text made again"))
        out = []
        report.write_json(out.append)
    assert "".join(out) == here and '"ssrc"' in here
    assert pids and all(reaped(p) for p in pids)

    signal.unlink()
    pids.clear()
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        with analyzing(path):
            raise RuntimeError("the caller failed")
    assert time.monotonic() - started < 5 and pids and all(reaped(p) for p in pids)


def test_analyzing_for_json_makes_the_flows_texts_while_it_waits_and_writes_analyze_s_report(tmp_path, monkeypatch):
    """With ``json_ahead`` (the CLI writing JSON), the flows' JSON texts are made while the judging waits for
    the media child (here a spare, slowed down), and the streams' text comes in the spare's shared memory
    (not through the pipe): the report written is analyze's, byte for byte, and again when written twice."""
    import pickle
    import time

    from meshpcap import pipeline
    from meshpcap.flows import media as M
    from meshpcap.pipeline import analyze, analyzing
    from meshpcap.report import analysis
    from tests.conftest import fork_pids, reaped

    path = _lossy_calls_forking(tmp_path / "j.pcap", seed=17, ssrc0=400, counts=(80, 200), loss=(2, 30, 0.2))
    out = []
    analyze(path, quality=True).write_json(out.append)
    here = "".join(out)
    monkeypatch.setattr(M, "BESIDE_MIN_ROWS", 1)
    monkeypatch.setattr(pipeline, "SPARE_MIN_BYTES", 0)
    monkeypatch.setattr(M, "_SHARED_TEXT_MIN", 1)
    from meshpcap import _child

    real_spare = _child.spare  # shared memory with room for the text (a quarter of this small file has not)
    monkeypatch.setattr(_child, "spare", lambda pipe_bytes=None, shared_bytes=0, preload=(): real_spare(pipe_bytes, 4 << 20, preload))
    real_streams = M._streams
    monkeypatch.setattr(M, "_streams", lambda *a: (time.sleep(0.3), real_streams(*a))[1])  # the child is slow
    steps = []
    real_step = analysis.FlowTexts.step
    monkeypatch.setattr(analysis.FlowTexts, "step", lambda self: steps.append(real_step(self)) or steps[-1])
    messages = []
    real_received = M._received
    def received(pipe):  # what came, as it came (the renders' values are put in place once read)
        got = real_received(pipe)
        messages.append(dict(got) if isinstance(got, dict) else got)
        return got

    monkeypatch.setattr(M, "_received", received)
    pids = fork_pids(monkeypatch)
    with analyzing(path, json_ahead=True) as report:
        monkeypatch.setattr(analysis, "write_streams_json", lambda media, write: pytest.fail("the text made again"))
        out = []
        report.write_json(out.append)
        assert "".join(out) == here and '"ssrc"' in here
        assert steps and steps[0] and not steps[-1]  # texts made, then none left, while it waited
        renders = [m for m in messages if isinstance(m, dict)]
        assert len(renders) == 1 and all(isinstance(v, M._SharedText) for v in renders[0].values())
    out = []
    report.write_json(out.append)  # the texts made ahead are taken once: made again, the same
    assert "".join(out) == here
    assert pids and all(reaped(p) for p in pids)
    texts = analysis.FlowTexts(report.judgement.flows, report.flow_table.flows)
    assert texts.step() and not pickle.loads(pickle.dumps(texts)).of(report.judgement.flows, report.flow_table.flows)
