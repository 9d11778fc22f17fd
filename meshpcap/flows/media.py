"""Media streams and round-trip times from a capture: the stateful, aggregating half of the media pass.

:class:`MediaCollector` is fed each decoded batch beside the flow builder (``pipeline.read_flows``)
and keeps, with numpy over the batch, only what media analysis needs: for UDP payloads that are RTP
or RTCP (RFC 7983 first byte 128-191), directly or inside TURN ChannelData, Send/Data indications or
MS-TURN multiplexed channels (:mod:`meshpcap.decode.rtp`), the 5-tuple, time, direction and RTP
header fields; STUN requests and responses (transaction ids, for RTT); TCP SYN and SYN-ACK times;
and the payload bytes of TCP flows that carry TURN framing (the TCP 443 fallback).  ``finish``
assigns them to the finished flows and computes, per stream (flow, direction, SSRC), the RFC 3550
statistics: packets, expected from the extended sequence number, loss, loss bursts, duplicates and
reordering (appendix A.1, A.3), interarrival jitter (A.8), payload types, bitrate over time, gaps,
and the worst windows the quality targets are judged on.  Per-packet Python runs only for TURN over
TCP and for the (few) STUN and SYN packets; the RTP statistics are array operations per stream.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decode import frames as F
from ..decode import rtp as R
from .engine import group_batch

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
MAX_DROPOUT = 3000  # RFC 3550 appendix A.1: a larger jump is a restart of the sequence, not loss
CLOCK_CANDIDATES = (8000, 16000, 24000, 32000, 44100, 48000, 90000)  # the RTP clocks in use (RFC 3551, 7587, 6184)
CLOCK_TOLERANCE = 0.08  # inferred rate within 8% of a candidate
STUN_RTT_METHODS = {0x001: "Binding", 0x003: "Allocate", 0x004: "Refresh", 0x008: "CreatePermission",
                    0x009: "ChannelBind"}
TCP_SYN, TCP_ACK = 0x02, 0x10


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """What counts as a stream and how it is cut into windows (the quality thresholds file sets these)."""

    min_packets: int = 3  # fewer RTP-looking packets with one SSRC are not a stream (random first bytes)
    gap_ms: float = 500.0  # media stopped for longer than this is a gap
    loss_window_ms: float = 15_000.0
    burst_window_ms: float = 200.0
    jitter_window_ms: float = 15_000.0
    min_window_packets: int = 5  # a window with fewer expected packets is not judged
    bitrate_bin_ms: float = 1000.0


@dataclass(frozen=True, slots=True)
class MediaStream:
    """One RTP stream: one SSRC in one direction of one flow."""

    flow_id: int
    direction: str  # c2s | s2c (client -> server as the flow is oriented)
    transport: str
    src: str
    src_port: int
    dst: str
    dst_port: int
    framing: str  # direct | turn-channel | turn-indication | ms-turn-multiplex (the most common one)
    ssrc: int
    payload_types: tuple[int, ...]
    packets: int
    expected: int  # RFC 3550 A.3: extended highest sequence - base + 1 (jumps > MAX_DROPOUT excluded)
    lost: int  # expected - distinct sequence numbers received (``lost_rfc3550`` in to_dict: expected - packets,
    # RFC 3550 A.3's cumulative loss, which duplicates offset; Wireshark's "Lost" column)
    loss_bursts: int  # runs of consecutive lost packets
    max_burst: int  # the longest run
    duplicates: int
    reordered: int  # packets that arrived after a later sequence number
    seq_restarts: int  # sequence jumps larger than MAX_DROPOUT
    clock_rate: int | None
    clock_source: str  # payload type | timestamps | unknown: <why>
    jitter_ms_mean: float | None  # RFC 3550 A.8, in milliseconds (None without a clock rate)
    jitter_ms_max: float | None
    delta_ms_min: float | None  # interarrival time between consecutive packets
    delta_ms_mean: float | None
    delta_ms_max: float | None
    first_ns: int
    last_ns: int
    bytes: int  # RTP bytes (UDP payload or TURN frame content)
    bitrate_kbps: float | None  # mean over the stream's duration
    bitrate_max_kbps: float | None  # highest bin of ``bitrate_series``
    bitrate_series: tuple[float, ...]  # kbit/s per bitrate bin from first_ns
    gaps: tuple[tuple[int, float], ...]  # (start ns, milliseconds) where media stopped longer than gap_ms
    loss_window_pct: float | None  # worst loss in any loss window (15 s), percent
    loss_window_ns: tuple[int, int] | None
    burst_window_pct: float | None  # worst loss in any burst window (200 ms), percent
    burst_window_ns: tuple[int, int] | None
    jitter_window_ms: float | None  # highest jitter, and the jitter window (15 s) it fell in
    jitter_window_ns: tuple[int, int] | None
    rtcp_packets: int = 0  # RTCP packets sent by this SSRC in the same direction (SRTCP: header only)

    @property
    def lost_pct(self) -> float:
        return 100.0 * self.lost / self.expected if self.expected else 0.0

    @property
    def reordered_pct(self) -> float:
        return 100.0 * self.reordered / self.packets if self.packets else 0.0

    @property
    def name(self) -> str:
        return (f"flow {self.flow_id} {self.direction} SSRC 0x{self.ssrc:08X} "
                f"{_ep(self.src, self.src_port)} -> {_ep(self.dst, self.dst_port)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id, "direction": self.direction, "transport": self.transport, "src": self.src,
            "src_port": self.src_port, "dst": self.dst, "dst_port": self.dst_port, "framing": self.framing,
            "ssrc": f"0x{self.ssrc:08X}", "payload_types": list(self.payload_types), "packets": self.packets,
            "expected": self.expected, "lost": self.lost, "lost_pct": round(self.lost_pct, 3),
            "lost_rfc3550": self.expected - self.packets,
            "loss_bursts": self.loss_bursts, "max_burst": self.max_burst, "duplicates": self.duplicates,
            "reordered": self.reordered, "reordered_pct": round(self.reordered_pct, 3),
            "seq_restarts": self.seq_restarts, "clock_rate": self.clock_rate, "clock_source": self.clock_source,
            "jitter_ms_mean": _r(self.jitter_ms_mean), "jitter_ms_max": _r(self.jitter_ms_max),
            "delta_ms_min": _r(self.delta_ms_min), "delta_ms_mean": _r(self.delta_ms_mean),
            "delta_ms_max": _r(self.delta_ms_max), "first_ns": self.first_ns, "last_ns": self.last_ns,
            "bytes": self.bytes, "bitrate_kbps": _r(self.bitrate_kbps), "bitrate_max_kbps": _r(self.bitrate_max_kbps),
            "bitrate_series": [round(x, 1) for x in self.bitrate_series],
            "gaps": [{"start_ns": s, "ms": round(ms, 3)} for s, ms in self.gaps],
            "loss_window_pct": _r(self.loss_window_pct), "loss_window_ns": _w(self.loss_window_ns),
            "burst_window_pct": _r(self.burst_window_pct), "burst_window_ns": _w(self.burst_window_ns),
            "jitter_window_ms": _r(self.jitter_window_ms), "jitter_window_ns": _w(self.jitter_window_ns),
            "rtcp_packets": self.rtcp_packets,
        }


# the flat columns of the streams table (CSV, DataFrame); nested ones are left to the JSON
STREAM_COLUMNS = ("flow_id", "direction", "transport", "src", "src_port", "dst", "dst_port", "framing", "ssrc",
                  "payload_types", "packets", "expected", "lost", "lost_pct", "lost_rfc3550", "loss_bursts", "max_burst",
                  "duplicates", "reordered", "reordered_pct", "seq_restarts", "clock_rate", "clock_source",
                  "jitter_ms_mean", "jitter_ms_max", "delta_ms_min", "delta_ms_mean", "delta_ms_max", "first_ns",
                  "last_ns", "bytes", "bitrate_kbps", "bitrate_max_kbps", "gaps", "loss_window_pct",
                  "burst_window_pct", "jitter_window_ms", "rtcp_packets")


@dataclass(frozen=True, slots=True)
class RttSample:
    """One round trip seen from the capture point: a request and its answer."""

    flow_id: int
    server: str
    server_port: int
    transport: str
    method: str  # STUN Binding / Allocate / ... or "TCP handshake"
    request_ns: int
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class ServerRtt:
    """Round trips to one server (address, port, transport), from every method that measured it."""

    server: str
    server_port: int
    transport: str
    methods: tuple[str, ...]
    samples: int
    rtt_ms_min: float
    rtt_ms_median: float
    rtt_ms_max: float
    flow_ids: tuple[int, ...]
    first_ns: int

    def to_dict(self) -> dict[str, Any]:
        return {"server": self.server, "server_port": self.server_port, "transport": self.transport,
                "methods": list(self.methods), "samples": self.samples, "rtt_ms_min": round(self.rtt_ms_min, 3),
                "rtt_ms_median": round(self.rtt_ms_median, 3), "rtt_ms_max": round(self.rtt_ms_max, 3),
                "latency_ms_estimate": round(self.rtt_ms_median / 2, 3), "flow_ids": list(self.flow_ids)}


@dataclass(slots=True)
class MediaResult:
    streams: list[MediaStream] = field(default_factory=list)
    rtt: list[ServerRtt] = field(default_factory=list)
    rtt_samples: list[RttSample] = field(default_factory=list)
    options: MediaOptions = field(default_factory=MediaOptions)


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _w(w: tuple[int, int] | None) -> list[int] | None:
    return None if w is None else [int(w[0]), int(w[1])]


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _addr(ver: int, hi: int, lo: int) -> str:
    if ver == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return ipaddress.IPv6Address((hi << 64) | lo).compressed


class _TcpTurn:
    """A TCP flow carrying TURN framing: its payload segments per direction (for reassembly at the end)."""

    __slots__ = ("prefixed", "segs")

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.segs: list[tuple[bool, int, int, bytes]] = []  # (from a, ns, seq, payload)


class MediaCollector:
    """Feed it every batch after the flow builder (``add``); ``finish(flows)`` returns :class:`MediaResult`."""

    def __init__(self, options: MediaOptions | None = None) -> None:
        self.options = options or MediaOptions()
        self.slots: dict[tuple, int] = {}
        self.slot_keys: list[tuple] = []
        self.rtp: list[tuple[np.ndarray, ...]] = []
        self.stun: list[tuple[np.ndarray, ...]] = []
        self.syn: list[tuple[np.ndarray, ...]] = []
        self.tcp_turn: dict[int, _TcpTurn] = {}
        self.tcp_seen = np.zeros(1024, bool)  # per slot: a TCP flow whose first payload was looked at

    def _slot_of(self, keys: tuple[np.ndarray, ...], groups: np.ndarray) -> np.ndarray:
        """Global slot ids for the batch groups ``groups`` (one dict lookup per distinct 5-tuple)."""
        ug, back = np.unique(groups, return_inverse=True)
        out = np.empty(ug.size, np.int64)
        cols = [c[ug].tolist() for c in keys]
        slots = self.slots
        for i, key in enumerate(zip(*cols)):
            s = slots.get(key)
            if s is None:
                s = slots[key] = len(self.slot_keys)
                self.slot_keys.append(key)
            out[i] = s
        return out[back.reshape(-1)]

    def add(self, batch, d: F.Decoded, grouped=None) -> None:
        """Gather the media facts of one decoded batch (``grouped``: the flow stage's grouping, when made)."""
        if len(batch) == 0:
            return
        gb = grouped if grouped is not None else group_batch(batch.data, d)
        pidx = gb.pidx
        if pidx.size == 0:
            return
        buf = np.frombuffer(batch.data, np.uint8)
        proto = gb.proto
        pos = d.payload[pidx]
        cap = d.payload_cap[pidx]
        ts = batch.ts_ns[pidx]
        # ---- UDP: RTP/RTCP directly or TURN-framed (RFC 7983 first bytes), and STUN transactions
        u = np.nonzero((proto == F.PROTO_UDP) & (cap >= 8))[0]
        if u.size:
            b0 = buf[pos[u]]
            cand = u[(b0 >= 128) & (b0 <= 191) | (b0 >= 64) & (b0 <= 79) | (b0 <= 3) | (b0 == 0xFF)]
            if cand.size:
                ipos, icap, fr = R.media_offsets(buf, pos[cand], cap[cand])
                m = fr != R.F_NONE
                if m.any():
                    c, ipos, icap, fr = cand[m], ipos[m], icap[m], fr[m]
                    cols = R.rtp_columns(buf, ipos, icap)
                    k = cols["kind"] != R.K_NONE
                    if k.any():
                        c = c[k]
                        slot = self._slot_of(gb.keys, gb.inv[c])
                        self.rtp.append((slot, gb.src_a[c], ts[c], cols["kind"][k], fr[k], cols["payload_type"][k],
                                         cols["sequence"][k], cols["timestamp"][k], cols["ssrc"][k],
                                         icap[k], d.payload_len[pidx[c]]))
                # STUN requests and responses with the RFC 8489 cookie (not indications: no answer comes)
                s = cand[(buf[pos[cand]] <= 3) & (cap[cand] >= 20)]
                if s.size:
                    p = pos[s]
                    cookie = R._u32(buf, p + 4)
                    mtype = R._u16(buf, p)
                    cls = ((mtype >> 4) & 1) | ((mtype >> 7) & 2)
                    ok = (cookie == R.STUN_COOKIE) & (cls != 1)
                    if ok.any():
                        s, p, mtype, cls = s[ok], p[ok], mtype[ok], cls[ok]
                        method = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2)
                        slot = self._slot_of(gb.keys, gb.inv[s])
                        self.stun.append((slot, gb.src_a[s], ts[s], cls, method, R._u32(buf, p + 8),
                                          R._u32(buf, p + 12), R._u32(buf, p + 16)))
        # ---- TCP: handshake times, and TURN framing (TCP 443 / 3478 fallback)
        tcp = proto == F.PROTO_TCP
        if tcp.any():
            flags = d.tcp_flags[pidx]
            syn = np.nonzero(tcp & ((flags & TCP_SYN) != 0))[0]
            if syn.size:
                self.syn.append((self._slot_of(gb.keys, gb.inv[syn]), gb.src_a[syn], ts[syn],
                                 (flags[syn] & TCP_ACK) != 0))
            t = np.nonzero(tcp & (cap > 0))[0]
            if t.size:
                self._tcp(batch, d, gb, pidx, buf, t, pos, cap, ts)

    def _tcp(self, batch, d, gb, pidx, buf, t, pos, cap, ts) -> None:
        slot = self._slot_of(gb.keys, gb.inv[t])
        if self.tcp_seen.size < len(self.slot_keys):
            grown = np.zeros(max(len(self.slot_keys), 2 * self.tcp_seen.size), bool)
            grown[: self.tcp_seen.size] = self.tcp_seen
            self.tcp_seen = grown
        new = ~self.tcp_seen[slot]
        if new.any():
            # a TCP flow's first payload decides: a STUN message, bare (RFC 8656) or behind an RFC 4571 length
            # (RFC 6544), marks TURN over TCP; the magic cookie sits at offset 4 or 6
            nt, ns_ = t[new], slot[new]
            first = np.unique(ns_, return_index=True)[1]
            nt, ns_ = nt[first], ns_[first]
            p, c = pos[nt], cap[nt]
            bare = (c >= 20) & (buf[p] <= 3) & (R._u32(buf, p + 4) == R.STUN_COOKIE)
            pref = (c >= 22) & (buf[np.minimum(p + 2, buf.size - 1)] <= 3) & (R._u32(buf, p + 6) == R.STUN_COOKIE)
            self.tcp_seen[ns_] = True
            for s_, b_, q_ in zip(ns_.tolist(), bare.tolist(), pref.tolist()):
                if b_ or q_:
                    self.tcp_turn[s_] = _TcpTurn(prefixed=q_ and not b_)
        if not self.tcp_turn:
            return
        keep = np.isin(slot, np.fromiter(self.tcp_turn, np.int64, len(self.tcp_turn)))
        if not keep.any():
            return
        data = batch.data
        for i, s_ in zip(t[keep].tolist(), slot[keep].tolist()):
            p, c = int(pos[i]), int(cap[i])
            self.tcp_turn[s_].segs.append((bool(gb.src_a[i]), int(ts[i]), int(d.tcp_seq[pidx[i]]), data[p:p + c]))

    # ------------------------------------------------------------------ the end
    def finish(self, flows) -> MediaResult:
        """Assign what was gathered to ``flows`` (the finished flow records) and compute the streams and RTTs."""
        opts = self.options
        locate = _FlowLocator(flows, self.slot_keys)
        rows = list(self.rtp)
        for s_, tt in self.tcp_turn.items():
            rows.extend(_tcp_rows(s_, tt))
        streams: list[MediaStream] = []
        if rows:
            cols = [np.concatenate([r[i] for r in rows]) for i in range(11)]
            slot, src_a, ts = cols[0].astype(np.int64), cols[1].astype(bool), cols[2].astype(np.int64)
            order = np.argsort(ts, kind="stable")  # TCP rows came last: capture order for everything
            cols = [c[order] for c in cols]
            slot, src_a, ts = slot[order], src_a[order], ts[order]
            fid, c2s = locate(slot, src_a, ts)
            cols[0], cols[1] = fid, c2s
            streams = _streams(cols, locate, opts)
        samples = _stun_rtt(self.stun, locate) + _tcp_rtt(self.syn, locate)
        return MediaResult(streams, _per_server(samples), samples, opts)


class _FlowLocator:
    """Which flow (record id) and direction a slot's packet at a time belongs to."""

    def __init__(self, flows, slot_keys: list[tuple]) -> None:
        by_key: dict[tuple, list] = {}
        for f in flows:
            if f.transport not in ("tcp", "udp"):
                continue
            ends = tuple(sorted(((f.client, f.client_port), (f.server, f.server_port))))
            by_key.setdefault((f.transport,) + ends, []).append(f)
        self.by_id = {f.id: f for f in flows}
        self.slot_flows: list[tuple[np.ndarray, list, str]] = []  # per slot: first_ns, flows, a-side text
        self.a_text: list[tuple[str, int]] = []
        for key in slot_keys:
            proto, ver, ah, al, bh, bl, pa, pb = key
            a, b = (_addr(ver, ah, al), pa), (_addr(ver, bh, bl), pb)
            tr = "tcp" if proto == F.PROTO_TCP else "udp"
            fl = sorted(by_key.get((tr,) + tuple(sorted((a, b))), []), key=lambda f: f.first_ns)
            self.slot_flows.append((np.array([f.first_ns for f in fl], np.int64), fl, tr))
            self.a_text.append(a)

    def __call__(self, slot: np.ndarray, src_a: np.ndarray, ts: np.ndarray):
        fid = np.full(slot.size, -1, np.int64)
        c2s = np.zeros(slot.size, bool)
        for s in np.unique(slot).tolist():
            m = np.nonzero(slot == s)[0]
            firsts, fl, _ = self.slot_flows[s]
            if not fl:
                continue
            k = np.maximum(np.searchsorted(firsts, ts[m], "right") - 1, 0)
            ids = np.array([f.id for f in fl], np.int64)
            a_client = np.array([(f.client, f.client_port) == self.a_text[s] for f in fl], bool)
            fid[m] = ids[k]
            c2s[m] = src_a[m] == a_client[k]
        return fid, c2s


def _tcp_rows(slot: int, tt: _TcpTurn) -> list[tuple[np.ndarray, ...]]:
    """RTP and RTCP inside one TURN-over-TCP flow: each direction reassembled in sequence order, split
    into frames (:func:`meshpcap.decode.rtp.split_tcp`), unwrapped and parsed (per frame: TCP fallback
    flows are few)."""
    out = []
    for side in (True, False):
        segs = sorted((s for s in tt.segs if s[0] == side), key=lambda s: s[1])
        if not segs:
            continue
        base = segs[0][2]
        stream = bytearray()
        times: list[tuple[int, int]] = []  # (stream offset where a segment's new bytes begin, ns)
        for _, ns, seq, data in sorted(segs, key=lambda s: ((s[2] - base) % TS_MOD, s[1])):
            off = (seq - base) % TS_MOD
            if off + len(data) <= len(stream):
                continue  # a retransmission
            if off > len(stream):
                break  # a hole (segment not captured): the rest cannot be framed
            times.append((len(stream), ns))
            stream += data[len(stream) - off:]
        try:
            frames, _ = R.split_tcp(bytes(stream), tt.prefixed)
        except R.DecodeError:
            frames = []
        offs = np.array([t[0] for t in times], np.int64)
        tns = np.array([t[1] for t in times], np.int64)
        rows: list[list[int]] = []
        pos = 0
        for fr in frames:
            start = pos
            pos += len(fr) + (2 if tt.prefixed else 0)
            if not tt.prefixed and 64 <= fr[0] <= 79:
                pos += (-len(fr)) % 4
            try:
                inner, framing = R.unwrap(fr)
            except R.DecodeError:
                continue
            if framing == R.F_NONE or len(inner) < R.RTCP_HEADER_LEN:
                continue
            kind = R.K_RTCP if R.is_rtcp(inner[1]) else R.K_RTP
            try:
                if kind == R.K_RTP:
                    h = R.parse_rtp(inner)
                    vals = (h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc, len(inner))
                else:
                    c = R.parse_rtcp(inner)
                    vals = (False, c.packet_type, 0, 0, c.ssrc, len(inner))
            except R.DecodeError:
                continue
            # the frame's time: when the segment holding its last byte arrived
            at = int(tns[max(int(np.searchsorted(offs, pos - 1, "right")) - 1, 0)])
            rows.append([at, kind, framing, vals[1], vals[2], vals[3], vals[4], vals[5]])
            del start
        if rows:
            a = np.array(rows, np.int64)
            n = len(rows)
            out.append((np.full(n, slot, np.int64), np.full(n, side), a[:, 0], a[:, 1].astype(np.int8),
                        a[:, 2].astype(np.int8), a[:, 3].astype(np.int16), a[:, 4], a[:, 5], a[:, 6], a[:, 7], a[:, 7]))
    return out


# ---------------------------------------------------------------- per-stream statistics (arrays)
def _segments(key: np.ndarray):
    """Sort order grouping equal keys (stable: arrival order within a group), group starts and ends."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    start = np.ones(ks.size, bool)
    start[1:] = ks[1:] != ks[:-1]
    starts = np.flatnonzero(start)
    ends = np.append(starts[1:], ks.size)
    return order, starts, ends


def _jitter(absd_ms: np.ndarray, block: int = 128) -> np.ndarray:
    """RFC 3550 appendix A.8, ``J += (|D| - J) / 16``, for one stream: J after each packet (J before the
    first is 0).  The recurrence is linear, J_k = a J_(k-1) + x_k / 16 with a = 15/16, so within a block
    J_k = a^(k+1) J_start + sum_j a^(k-j) x_j / 16: a cumulative sum per block, a loop over blocks only
    (a^-127 is about 3,700: no precision lost)."""
    a = 15.0 / 16.0
    n = absd_ms.size
    out = np.empty(n)
    up = a ** -np.arange(block)
    down = a ** np.arange(block)
    prev = 0.0
    for s in range(0, n, block):
        x = absd_ms[s:s + block]
        m = x.size
        c = np.cumsum(x * up[:m]) / 16.0
        out[s:s + m] = down[:m] * c + (down[:m] * a) * prev
        prev = float(out[s + m - 1])
    return out


def _infer_clock(pts: np.ndarray, ext_ts: np.ndarray, t_ns: np.ndarray) -> tuple[int | None, str]:
    """The RTP clock rate: from a static payload type (RFC 3551), else from how fast the timestamp
    advances against arrival time over the whole stream, snapped to a clock in use."""
    static = {R.STATIC_CLOCK.get(int(p)) for p in np.unique(pts)}
    if len(static) == 1 and None not in static:
        return static.pop(), "payload type"
    span_s = (int(t_ns.max()) - int(t_ns.min())) / 1e9
    if t_ns.size < 5 or span_s < 0.1:
        return None, "unknown: too few packets or too short to infer the clock from timestamps"
    # the timestamps' least-squares slope against arrival time (robust to jitter, unlike two end points)
    rate = float(np.polyfit((t_ns - t_ns[0]) / 1e9, (ext_ts - ext_ts[0]).astype(float), 1)[0])
    c = min(CLOCK_CANDIDATES, key=lambda c: abs(rate - c) / c)
    if abs(rate - c) <= CLOCK_TOLERANCE * c:
        return c, "timestamps"
    return None, f"unknown: timestamps advance {rate:,.0f}/s, not a known RTP clock"


def _worst_window(t_ns: np.ndarray, lost: np.ndarray, window_ns: int, min_packets: int):
    """Worst loss ratio over the windows [s, s + window) that lie inside the stream, anchored at every
    packet (received or lost: ``lost`` marks the lost ones, ``t_ns`` sorted) and at the stream's end; a
    stream shorter than the window is one window.  Returns (percent, (start, end)), or (None, None) when
    no window holds ``min_packets`` expected packets."""
    n = t_ns.size
    if n == 0:
        return None, None
    t_end = int(t_ns[-1])
    if t_end - int(t_ns[0]) < window_ns:
        starts = t_ns[:1]
    else:
        starts = np.append(t_ns[t_ns + window_ns <= t_end], t_end - window_ns + 1)
    lo = np.searchsorted(t_ns, starts, "left")
    hi = np.searchsorted(t_ns, starts + window_ns, "left")
    total = hi - lo
    cum = np.concatenate([[0], np.cumsum(lost)])
    nlost = cum[hi] - cum[lo]
    ok = total >= min_packets
    if not ok.any():
        return None, None
    ratio = np.where(ok, nlost / np.maximum(total, 1), -1.0)
    i = int(np.argmax(ratio))
    return 100.0 * float(ratio[i]), (int(starts[i]), int(starts[i]) + window_ns)


def _streams(cols: list[np.ndarray], locate: _FlowLocator, o: MediaOptions) -> list[MediaStream]:
    fid, c2s, ts, kind, fr, pt, seq, rts, ssrc, size, _wire = cols
    ok = fid >= 0
    rtp = ok & (kind == R.K_RTP)
    rtcp = ok & (kind == R.K_RTCP)
    rtcp_count: dict[tuple[int, bool, int], int] = {}
    if rtcp.any():
        keys, counts = np.unique(np.stack([fid[rtcp], c2s[rtcp].astype(np.int64), ssrc[rtcp]]), axis=1,
                                 return_counts=True)
        rtcp_count = {(int(a), bool(b), int(c)): int(n) for (a, b, c), n in zip(keys.T.tolist(), counts.tolist())}
    idx = np.flatnonzero(rtp)
    if idx.size == 0:
        return []
    skey = ((fid[idx] * 2 + c2s[idx]) << 32) | ssrc[idx]
    order, starts, ends = _segments(skey)
    out = []
    for s0, s1 in zip(starts.tolist(), ends.tolist()):
        if s1 - s0 < o.min_packets:
            continue
        ii = idx[order[s0:s1]]  # arrival order
        st = _one_stream(ii, fid, c2s, ts, fr, pt, seq, rts, ssrc, size, locate, o, rtcp_count)
        if st is not None:
            out.append(st)
    out.sort(key=lambda s: (s.flow_id, s.direction != "c2s", s.first_ns))
    return out


def _one_stream(ii, fid, c2s, ts, fr, pt, seq, rts, ssrc, size, locate, o: MediaOptions, rtcp_count):
    t = ts[ii]
    sq = seq[ii]
    n = ii.size
    # RFC 3550 A.1: extend the 16-bit sequence by counting wraps; each step is the shortest signed delta
    d = (np.diff(sq) + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2
    # random first bytes (DNS ids, encrypted data) make "streams" whose numbers do not follow on
    if n > 1 and np.mean((d >= -100) & (d <= 100)) < 0.5:
        return None
    ext = np.concatenate([[0], np.cumsum(d)]) + int(sq[0])
    restarts = np.abs(d) > MAX_DROPOUT
    uniq = np.unique(ext)
    dup = n - uniq.size
    gaps = np.diff(uniq) - 1
    jump = gaps > MAX_DROPOUT
    loss_gaps = np.where(jump, 0, gaps)
    expected = int(uniq.size + loss_gaps.sum())
    lost = int(loss_gaps.sum())
    bursts = int((loss_gaps > 0).sum())
    max_burst = int(loss_gaps.max()) if loss_gaps.size else 0
    # reordered: arrived after a higher sequence number had (and is not a duplicate of one seen)
    runmax = np.maximum.accumulate(ext)
    first_seen = np.zeros(n, bool)
    first_seen[np.unique(ext, return_index=True)[1]] = True
    reordered = int(((ext[1:] < runmax[:-1]) & first_seen[1:]).sum()) if n > 1 else 0
    # timestamps: unwrapped the same way, for the clock and for jitter
    r = rts[ii]
    dts = (np.diff(r) + TS_MOD // 2) % TS_MOD - TS_MOD // 2
    ext_ts = np.concatenate([[0], np.cumsum(dts)]).astype(np.int64)
    good = ~(np.isin(np.arange(n - 1), np.flatnonzero(restarts)))
    pts = pt[ii]
    clock, clock_src = _infer_clock(pts, ext_ts[np.concatenate([[True], good])], t[np.concatenate([[True], good])])
    dt_ms = np.diff(t) / 1e6
    jit = None
    jit_mean = jit_max = None
    jit_win = jit_win_ns = None
    if clock:
        # RFC 3550 A.8: D = (R_j - R_i) - (S_j - S_i), arrival order, in ms here
        dd = np.abs(dt_ms - dts * 1000.0 / clock)
        dd = np.where(restarts, 0.0, dd)
        jit = np.concatenate([[0.0], _jitter(dd)])
        # the mean over the packets that have a D (all but the first), as Wireshark's RTP analysis reports it
        jit_mean, jit_max = float(jit[1:].mean()) if n > 1 else 0.0, float(jit.max())
        k = int(np.argmax(jit))
        w = int(o.jitter_window_ms * 1e6)
        ws = int(t[0]) + ((int(t[k]) - int(t[0])) // w) * w
        jit_win, jit_win_ns = float(jit[k]), (ws, ws + w)
    # loss over time: lost packets placed between their neighbours' arrival times
    first_t = np.empty(uniq.size, np.int64)
    srt = np.lexsort((t, ext))
    first_idx = srt[np.r_[True, np.diff(ext[srt]) != 0]]
    first_t[:] = t[first_idx]
    if lost:
        g = np.flatnonzero(loss_gaps)
        cnt = loss_gaps[g]
        rep = np.repeat(g, cnt)
        within = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
        lt = first_t[rep] + (first_t[rep + 1] - first_t[rep]) * within // (cnt[np.searchsorted(g, rep)] + 1)
        ev_t = np.concatenate([first_t, lt])
        ev_l = np.concatenate([np.zeros(uniq.size, np.int64), np.ones(lt.size, np.int64)])
        so = np.argsort(ev_t, kind="stable")
        ev_t, ev_l = ev_t[so], ev_l[so]
    else:
        ev_t, ev_l = np.sort(first_t), np.zeros(uniq.size, np.int64)
    lw, lw_ns = _worst_window(ev_t, ev_l, int(o.loss_window_ms * 1e6), o.min_window_packets)
    bw, bw_ns = _worst_window(ev_t, ev_l, int(o.burst_window_ms * 1e6), o.min_window_packets)
    # bitrate and gaps
    by = size[ii]
    span_ns = int(t[-1] - t[0])
    binw = int(o.bitrate_bin_ms * 1e6)
    bins = np.bincount((t - t[0]) // binw, weights=by.astype(float)) * 8 / (binw / 1e9) / 1000
    gap_at = np.flatnonzero(dt_ms > o.gap_ms)
    fl = locate.by_id[int(fid[ii[0]])]
    forward = bool(c2s[ii[0]])
    src, sport, dst, dport = ((fl.client, fl.client_port, fl.server, fl.server_port) if forward
                              else (fl.server, fl.server_port, fl.client, fl.client_port))
    framings, fcount = np.unique(fr[ii], return_counts=True)
    ss = int(ssrc[ii[0]])
    return MediaStream(
        flow_id=fl.id, direction="c2s" if forward else "s2c", transport=fl.transport, src=src, src_port=sport,
        dst=dst, dst_port=dport, framing=R.FRAMING[int(framings[np.argmax(fcount)])], ssrc=ss,
        payload_types=tuple(int(x) for x in np.unique(pts)), packets=int(n), expected=expected, lost=lost,
        loss_bursts=bursts, max_burst=max_burst, duplicates=int(dup), reordered=reordered,
        seq_restarts=int(restarts.sum()), clock_rate=clock, clock_source=clock_src, jitter_ms_mean=jit_mean,
        jitter_ms_max=jit_max, delta_ms_min=float(dt_ms.min()) if n > 1 else None,
        delta_ms_mean=float(dt_ms.mean()) if n > 1 else None, delta_ms_max=float(dt_ms.max()) if n > 1 else None,
        first_ns=int(t[0]), last_ns=int(t[-1]), bytes=int(by.sum()),
        bitrate_kbps=float(by.sum()) * 8 / (span_ns / 1e9) / 1000 if span_ns > 0 else None,
        bitrate_max_kbps=float(bins.max()) if bins.size else None, bitrate_series=tuple(bins.tolist()),
        gaps=tuple((int(t[i]), float(dt_ms[i])) for i in gap_at.tolist()),
        loss_window_pct=lw, loss_window_ns=lw_ns, burst_window_pct=bw, burst_window_ns=bw_ns,
        jitter_window_ms=jit_win, jitter_window_ns=jit_win_ns,
        rtcp_packets=rtcp_count.get((fl.id, forward, ss), 0),
    )


# ---------------------------------------------------------------- round-trip times
def _stun_rtt(chunks, locate: _FlowLocator) -> list[RttSample]:
    """STUN request -> response by transaction id in the opposite direction of the same flow.  A request
    sent more than once is left out (which copy was answered cannot be told: Karn's rule)."""
    if not chunks:
        return []
    cols = [np.concatenate([c[i] for c in chunks]) for i in range(8)]
    slot, src_a, ts, cls, method = cols[0], cols[1].astype(bool), cols[2], cols[3], cols[4]
    fid, c2s = locate(slot, src_a, ts)
    reqs: dict[tuple, list[int]] = {}
    out = []
    rows = list(zip(fid.tolist(), c2s.tolist(), ts.tolist(), cls.tolist(), method.tolist(), cols[5].tolist(),
                    cols[6].tolist(), cols[7].tolist()))
    for f, fwd, t, c, m, t1, t2, t3 in rows:
        if f < 0:
            continue
        key = (f, m, t1, t2, t3)
        if c == 0:
            reqs.setdefault(key, []).append((t, fwd))
        elif key in reqs:
            sent = reqs.pop(key)
            if len(sent) != 1 or sent[0][1] == fwd or m not in STUN_RTT_METHODS:
                continue
            fl = locate.by_id[f]
            # the answer's sender is the server of this round trip
            server, port = (fl.server, fl.server_port) if sent[0][1] else (fl.client, fl.client_port)
            out.append(RttSample(f, server, port, fl.transport, f"STUN {STUN_RTT_METHODS[m]}", sent[0][0],
                                 (t - sent[0][0]) / 1e6))
    return out


def _tcp_rtt(chunks, locate: _FlowLocator) -> list[RttSample]:
    """SYN -> SYN-ACK of each TCP flow whose SYN was sent once (a retransmitted SYN is ambiguous)."""
    if not chunks:
        return []
    cols = [np.concatenate([c[i] for c in chunks]) for i in range(4)]
    fid, c2s = locate(cols[0], cols[1].astype(bool), cols[2])
    syns: dict[int, list[tuple[int, bool]]] = {}
    out = []
    done: set[int] = set()
    for f, fwd, t, ack in zip(fid.tolist(), c2s.tolist(), cols[2].tolist(), cols[3].tolist()):
        if f < 0 or f in done:
            continue
        if not ack:
            syns.setdefault(f, []).append((t, fwd))
            continue
        sent = syns.get(f)
        done.add(f)
        if not sent or len(sent) != 1 or sent[0][1] == fwd:
            continue
        fl = locate.by_id[f]
        server, port = (fl.server, fl.server_port) if sent[0][1] else (fl.client, fl.client_port)
        out.append(RttSample(f, server, port, "tcp", "TCP handshake", sent[0][0], (t - sent[0][0]) / 1e6))
    return out


def _per_server(samples: list[RttSample]) -> list[ServerRtt]:
    by: dict[tuple, list[RttSample]] = {}
    for s in samples:
        by.setdefault((s.server, s.server_port, s.transport), []).append(s)
    out = []
    for (server, port, tr), ss in by.items():
        v = np.array([s.rtt_ms for s in ss])
        out.append(ServerRtt(server, port, tr, tuple(sorted({s.method for s in ss})), len(ss), float(v.min()),
                             float(np.median(v)), float(v.max()), tuple(sorted({s.flow_id for s in ss})),
                             min(s.request_ns for s in ss)))
    out.sort(key=lambda r: r.first_ns)
    return out
