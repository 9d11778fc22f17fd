"""Media streams and round-trip times from a capture: the stateful, aggregating half of the media pass.

:class:`MediaCollector` is fed each decoded batch beside the flow builder (``pipeline.read_flows``)
and keeps, with numpy over the batch, only what media analysis needs: for UDP payloads that are RTP
or RTCP (RFC 7983 first byte 128-191), directly or inside TURN ChannelData, Send/Data indications or
MS-TURN multiplexed channels (:mod:`meshpcap.decode.rtp`), the 5-tuple, time, direction and RTP
header fields; STUN requests and responses (transaction ids, for RTT); TCP SYN and SYN-ACK times;
and the payload bytes of TCP flows that carry TURN framing (the TCP 443 fallback).  ``finish``
assigns them to the finished flows and computes, per stream (flow, direction, SSRC), the RFC 3550
statistics: packets, expected from the extended sequence number, loss, loss bursts, duplicates and
reordering (appendix A.1, A.3), interarrival jitter (A.8), payload types, bitrate, loss and jitter per
bin, gaps, and the worst windows the quality targets are judged on.  Per-packet Python runs only for TURN over
TCP and for the (few) STUN and SYN packets; the RTP statistics are array operations per stream.
"""

from __future__ import annotations

import pickle
import struct
import threading
from contextlib import contextmanager
from dataclasses import field, fields
from operator import attrgetter
from typing import Any, Callable, NamedTuple

import numpy as np

from meshpcap._dataclass import dataclass

from .. import _child
from ..decode import frames as F
from ..decode import rtp as R
from .engine import addr_text, group_batch
from .model import record_maker
from .records import FlowEnds, FlowRecords, build_records, records_from_columns

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
MAX_DROPOUT = 3000  # RFC 3550 appendix A.1: a larger jump is a restart of the sequence, not loss
CLOCK_CANDIDATES = (8000, 16000, 24000, 32000, 44100, 48000, 90000)  # the RTP clocks in use (RFC 3551, 7587, 6184)
CLOCK_TOLERANCE = 0.08  # inferred rate within 8% of a candidate
STUN_RTT_METHODS = {0x001: "Binding", 0x003: "Allocate", 0x004: "Refresh", 0x008: "CreatePermission",
                    0x009: "ChannelBind"}
# the RTP/RTCP rows kept per packet until the end, one column each (slot: the 5-tuple's index in
# MediaCollector.slot_keys, then after finish's lookup the flow id and the client-to-server flag)
RTP_COLUMNS = ("slot", "from_a", "ns", "kind", "framing", "payload_type", "sequence", "timestamp", "ssrc", "bytes")
RTP_DTYPES = (np.int32, np.bool_, np.int64, np.int8, np.int8, np.uint8, np.uint16, np.uint32, np.uint32, np.int32)


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
    # per bitrate bin from first_ns, None where no packet arrived in the bin:
    # loss: RFC 3550 A.3 per bin, percent: the bin expects the distinct extended sequence numbers above the
    # highest one first seen by the end of the previous bin, up to the highest first seen by its own end
    # (jumps over MAX_DROPOUT left out); lost are those of them never received (a late packet is not loss,
    # so the bins sum to ``expected`` and ``lost``); 0.0 where nothing new was expected (only late or
    # duplicated packets arrived)
    loss_series_pct: tuple[float | None, ...] = ()
    # jitter: the highest RFC 3550 A.8 value J reached in the bin, ms (all None without a clock rate)
    jitter_series_ms: tuple[float | None, ...] = ()

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
            "loss_series_pct": _rs(self.loss_series_pct), "jitter_series_ms": _rs(self.jitter_series_ms),
            "gaps": [{"start_ns": s, "ms": round(ms, 3)} for s, ms in self.gaps],
            "loss_window_pct": _r(self.loss_window_pct), "loss_window_ns": _w(self.loss_window_ns),
            "burst_window_pct": _r(self.burst_window_pct), "burst_window_ns": _w(self.burst_window_ns),
            "jitter_window_ms": _r(self.jitter_window_ms), "jitter_window_ns": _w(self.jitter_window_ns),
            "rtcp_packets": self.rtcp_packets,
        }


# MediaStream(*values) without its __init__ (which sets each field through object.__setattr__): every field
# given, in the class's order (a thousand streams a second are made)
_make_stream = record_maker(MediaStream)
_stream_values = attrgetter(*(f.name for f in fields(MediaStream)))
assert [f.name for f in fields(MediaStream)][19:22] == ["clock_source", "jitter_ms_mean", "jitter_ms_max"] \
    and len(fields(MediaStream)) == 41, "_chunk_streams gives MediaStream's fields by position"


# the columns of the streams table (CSV, DataFrame; lists are compact JSON in the CSV); bitrate_series and
# the windows' [start, end] are left to the JSON
STREAM_COLUMNS = ("flow_id", "direction", "transport", "src", "src_port", "dst", "dst_port", "framing", "ssrc",
                  "payload_types", "packets", "expected", "lost", "lost_pct", "lost_rfc3550", "loss_bursts", "max_burst",
                  "duplicates", "reordered", "reordered_pct", "seq_restarts", "clock_rate", "clock_source",
                  "jitter_ms_mean", "jitter_ms_max", "delta_ms_min", "delta_ms_mean", "delta_ms_max", "first_ns",
                  "last_ns", "bytes", "bitrate_kbps", "bitrate_max_kbps", "gaps", "loss_window_pct",
                  "burst_window_pct", "jitter_window_ms", "rtcp_packets", "loss_series_pct", "jitter_series_ms")


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


_make_rtt = record_maker(RttSample)  # RttSample(*values): a TCP scan has one per handshake
_rtt_values = attrgetter(*(f.name for f in fields(RttSample)))
_make_server_rtt = record_maker(ServerRtt)
_server_rtt_values = attrgetter(*(f.name for f in fields(ServerRtt)))


@dataclass(slots=True)
class MediaResult:
    streams: list[MediaStream] = field(default_factory=list)
    rtt: list[ServerRtt] = field(default_factory=list)
    rtt_samples: list[RttSample] = field(default_factory=list)
    options: MediaOptions = field(default_factory=MediaOptions)
    # what a later stage's renderer made of this result in MediaCollector.beside's child, by the renderer's
    # name: (the ids of the stream records it was made of, its value); a cache, read by rendered()
    made_beside: dict[str, tuple[tuple[int, ...], Any]] = field(default_factory=dict, compare=False, repr=False)
    # while those values are still to come from the child (inside MediaCollector.beside's block): what reads them
    renders_to_come: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def rendered(self, name: str) -> Any | None:
        """The value the renderer ``name`` made of this result beside (see MediaCollector.beside), while
        ``streams`` still holds the very records it was made of; else None (render it now).  Inside
        MediaCollector.beside's block, waits for the child's values first when they have not come yet."""
        if self.renders_to_come is not None:
            self.renders_to_come()
        got = self.made_beside.get(name)
        if got is None or len(got[0]) != len(self.streams) or any(i != id(s) for i, s in zip(got[0], self.streams)):
            return None
        return got[1]


_LENGTH = struct.Struct("<Q")


def _send(wfd: int, obj: Any) -> None:
    """One message of MediaCollector.beside's child: its pickle's length, then the pickle."""
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    _child.write_all(wfd, _LENGTH.pack(len(body)) + body)


def _received(pipe: Any) -> Any:
    """The next message :func:`_send` wrote; EOFError when the child ended without it."""
    head = _child.read_exact(pipe, _LENGTH.size)
    body = None if head is None else _child.read_exact(pipe, _LENGTH.unpack(head)[0])
    if body is None:
        raise EOFError("the media child ended early")
    return pickle.loads(body)


def _answer(wfd: int, result: MediaResult, render: dict[str, Callable[[MediaResult], Any]] | None,
            shared=None, free_at: int = 0) -> None:
    """What MediaCollector.beside's child sends: the result, then what each renderer makes of it.  A text
    value is put in ``shared`` (a spare child's memory) from ``free_at`` on, where it fits, and only where it is
    sent (:class:`_SharedText`): a text larger than the pipe would be read by a thread of the caller, which
    waits for the interpreter's lock between reads while the caller writes its report."""
    _send(wfd, _result_rows(result))
    made = {}
    for name, fn in (render or {}).items():
        try:
            made[name] = fn(result)
        except Exception:  # left to be made where it is needed
            pass
    if shared is not None:
        for name, value in made.items():
            if isinstance(value, str) and len(value) >= _SHARED_TEXT_MIN:
                data = value.encode("utf-8", "surrogatepass")
                at = (free_at + 7) & ~7
                if at + len(data) <= len(shared):
                    shared[at:at + len(data)] = data
                    made[name] = _SharedText(at, len(data))
                    free_at = at + len(data)
    _send(wfd, made)


_SHARED_TEXT_MIN = 1 << 16  # texts from this length on are passed in a spare child's shared memory


class _SharedText(NamedTuple):
    """Where a renderer's text is in the memory a spare child shares (see _answer): UTF-8, ``length`` bytes."""

    offset: int
    length: int


def _joined(chunks: list[tuple[np.ndarray, ...]]) -> list[tuple[np.ndarray, ...]]:
    """Per-batch rows (STUN, SYN) as one chunk: what _stun_rtt and _tcp_rtt make of them first, and one array
    per column to pickle instead of one per batch."""
    return [tuple(map(np.concatenate, zip(*chunks)))] if len(chunks) > 1 else chunks


class _SharedRows(NamedTuple):
    """Where an RTP row column is in the memory a spare child shares (MediaCollector.share_rows)."""

    offset: int
    dtype: str
    count: int


def _finish_handed(wfd: int, receive_next: Callable[[], Any], shared, state: tuple,
                   render: dict[str, Callable[[MediaResult], Any]] | None) -> None:
    """MediaCollector.beside's work in a spare child: the rows (MediaCollector._rows_state, those in the shared
    memory read there) joined while the caller makes the flows' lookup, which comes next; then :func:`_answer`."""
    mc = MediaCollector(state[0])
    _, rtp, mc.stun, mc.syn, mc.tcp_turn, free_at = state  # no slot keys: the lookup (made there) is all that reads them
    mc.rtp = [[np.frombuffer(shared, a.dtype, a.count, a.offset) if isinstance(a, _SharedRows) else a for a in col]
              for col in rtp]
    cols = mc._rtp_columns()
    locate = receive_next()
    _answer(wfd, mc._finish(cols, locate, trim=False), render, shared, free_at)


def _renders_taker(pipe: Any, result: MediaResult, ids: tuple[int, ...], shared) -> Callable[[], None]:
    """:func:`_renders_reader` without a thread, for a spare child whose long texts come in its shared memory
    ``shared``: what waits for the renderers' values reads them then (once)."""

    def wait() -> None:
        result.renders_to_come = None
        try:
            made = _received(pipe)
        except Exception:  # the child failed, or the block ended without them: made where they are needed
            made = {}
        result.made_beside = {name: (ids, value) for name, value in _in_place(made, shared).items() if value is not None}

    return wait


def _in_place(made: dict, shared) -> dict:
    """The renderers' values with the texts a spare child left in its shared memory read from there (_answer)."""
    for name, value in made.items():
        if isinstance(value, _SharedText):
            made[name] = (bytes(shared[value.offset:value.offset + value.length]).decode("utf-8", "surrogatepass")
                          if shared is not None else None)
    return made


def _renders_reader(pipe: Any, result: MediaResult, ids: tuple[int, ...]) -> Callable[[], None]:
    """Begin reading the renderers' values that MediaCollector.beside's child sends after ``result`` (made of
    the stream records whose ids are ``ids``), in a thread, so that the child can send them and end while this
    process goes on (the values are larger than the pipe); returns what waits for them and puts them in
    ``result.made_beside`` (once)."""
    got: list = []

    def read() -> None:
        try:
            got.append(_received(pipe))
        except Exception:  # the child failed, or the block ended without them: made where they are needed
            pass

    reader = threading.Thread(target=read, name="meshpcap-media-renders", daemon=True)
    reader.start()

    def wait() -> None:
        result.renders_to_come = None
        reader.join()
        result.made_beside = {name: (ids, value) for name, value in (got[0] if got else {}).items()}

    return wait


def _result_rows(r: MediaResult) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """A result as plain tuples of its records' fields, what crosses the pipe from MediaCollector.beside's
    child (pickling the records themselves costs five times as much each way)."""
    return ([_stream_values(s) for s in r.streams], [_server_rtt_values(x) for x in r.rtt],
            [_rtt_values(x) for x in r.rtt_samples])


def _result_from_rows(rows: tuple[list[tuple], list[tuple], list[tuple]], options: MediaOptions) -> MediaResult:
    streams, rtt, samples = rows
    return MediaResult(_records_of_rows(MediaStream, streams), _records_of_rows(ServerRtt, rtt),
                       _records_of_rows(RttSample, samples), options)


def _records_of_rows(cls, rows: list[tuple]) -> list:
    """``cls(*row)`` of each row (each row all of the record's fields), made column by column."""
    return records_from_columns(cls, list(map(list, zip(*rows)))) if rows else []


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _nan_none(a: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in a.tolist()]


def _rs(xs: tuple[float | None, ...], nd: int = 3) -> list[float | None]:
    return [None if v is None else round(v, nd) for v in xs]


def _w(w: tuple[int, int] | None) -> list[int] | None:
    return None if w is None else [int(w[0]), int(w[1])]


def _ep(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


class _TcpTurn:
    """A TCP flow carrying TURN framing: its payload segments per direction (for reassembly at the end)."""

    __slots__ = ("prefixed", "segs")

    def __init__(self, prefixed: bool) -> None:
        self.prefixed = prefixed
        self.segs: list[tuple[bool, int, int, bytes]] = []  # (from a, ns, seq, payload)


def _malloc_trim():
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim  # glibc; absent elsewhere
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        return trim
    except (OSError, AttributeError, ImportError, TypeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def _give_back_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim``; nothing elsewhere).  The media
    pass frees its rows and working arrays in the middle of a heap that the reading left fragmented, where
    they stay counted in the process's resident size unless given back (measured on the 1M-packet
    benchmark: about 20 MiB more peak RSS for the rest of the run without; a call costs about a millisecond)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# RTP rows from which MediaCollector.beside forks: the 1M-packet benchmark has 278,000; a 5-minute audio call 30,000
# (there the statistics take a few milliseconds, less than the fork and the copy-on-write faults cost)
BESIDE_MIN_ROWS = 100_000


class MediaCollector:
    """Feed it every batch after the flow builder (``add``); ``finish(flows)`` returns :class:`MediaResult`."""

    def __init__(self, options: MediaOptions | None = None) -> None:
        self.options = options or MediaOptions()
        self.slots: dict[tuple, int] = {}
        self.slot_keys: list[tuple] = []
        self.rtp: list[list[np.ndarray]] = [[] for _ in RTP_DTYPES]  # per column (RTP_COLUMNS), one array per batch
        self.result: MediaResult | None = None
        self.stun: list[tuple[np.ndarray, ...]] = []
        self.syn: list[tuple[np.ndarray, ...]] = []
        self.tcp_turn: dict[int, _TcpTurn] = {}
        self.tcp_seen = np.zeros(1024, bool)  # per slot: a TCP flow whose first payload was looked at
        self._shared: Any = None  # memory a spare child sees (share_rows), where the RTP rows are kept
        self._shared_at = 0  # the first free byte there
        self._shared_rows: dict[int, int] = {}  # id of an RTP row array kept there -> its offset

    def share_rows(self, shared) -> None:
        """Keep the RTP rows in ``shared`` (the memory of a :class:`meshpcap._child.Spare`, while it holds
        them): the spare child that computes the streams (``beside``) then reads them there, and nothing
        about them is sent but where they are.  Rows that do not fit are kept as before (and sent)."""
        self._shared, self._shared_at = shared, 0

    def _keep(self, a: np.ndarray) -> np.ndarray:
        """A copy of the RTP row column ``a`` to keep to the end: in the shared memory while it has room."""
        shared = self._shared
        at = (self._shared_at + 7) & ~7
        if shared is None or a.size == 0 or at + a.nbytes > len(shared):
            return np.array(a)
        kept = np.frombuffer(shared, a.dtype, a.size, at)
        kept[:] = a
        self._shared_at = at + a.nbytes
        self._shared_rows[id(kept)] = at
        return kept

    def _slot_of(self, keys: tuple[np.ndarray, ...], groups: np.ndarray) -> np.ndarray:
        """Global slot ids for the batch groups ``groups`` (one dict lookup per distinct 5-tuple)."""
        mark = np.zeros(int(groups.max()) + 1 if groups.size else 0, bool)
        mark[groups] = True
        ug = np.flatnonzero(mark)  # the distinct groups, without a sort
        back = (np.cumsum(mark) - 1)[groups]
        out = np.empty(ug.size, np.int64)
        cols = [c[ug].tolist() for c in keys]
        slots = self.slots
        for i, key in enumerate(zip(*cols)):
            s = slots.get(key)
            if s is None:
                s = slots[key] = len(self.slot_keys)
                self.slot_keys.append(key)
            out[i] = s
        return out[back]

    def add(self, batch, d: F.Decoded, grouped=None, extracted: "MediaBatch | None" = None,
            dropped: np.ndarray | None = None) -> None:
        """Take in one decoded batch (``grouped``: the flow stage's grouping, when made; ``extracted``:
        :func:`extract` of it, when already made beside the reader; ``dropped``: the batch's packets the
        flow stage left out as capture duplicates, a mask over the batch, which the media rows leave out too)."""
        if len(batch) == 0:
            return
        if dropped is not None and grouped is None:
            grouped = group_batch(batch.data, d)  # the grouping the rows name, to find the dropped packets' rows
        mb = extracted if extracted is not None else extract(batch, d, grouped)
        if dropped is not None:
            mb = _without_copies(mb, batch, grouped, dropped)
        # the rows are kept to the end: copies (a batch's arrays may be the reader's memory, valid only until the
        # next batch: Capture.batches_with)
        if mb.rtp is not None:
            for col, a in zip(self.rtp, (self._slot_of(mb.keys, mb.rtp[0]).astype(np.int32), *mb.rtp[1:])):
                col.append(self._keep(a))
        for rows, out in ((mb.stun, self.stun), (mb.syn, self.syn)):
            if rows is not None:
                out.append((self._slot_of(mb.keys, rows[0]), *map(np.array, rows[1:])))
        if mb.tcp_first is not None:  # TURN over TCP: the stateful part (which flows carry it) is decided here
            self._tcp(batch, d, grouped, mb)

    def _tcp(self, batch, d, grouped, mb: "MediaBatch") -> None:
        groups, bare, pref = mb.tcp_first
        slot = self._slot_of(mb.keys, groups)
        if self.tcp_seen.size < len(self.slot_keys):
            grown = np.zeros(max(len(self.slot_keys), 2 * self.tcp_seen.size), bool)
            grown[: self.tcp_seen.size] = self.tcp_seen
            self.tcp_seen = grown
        new = ~self.tcp_seen[slot]
        if new.any():
            # a TCP flow's first payload decides (extract looked at it): a STUN message, bare or behind a length
            o = np.argsort(slot[new], kind="stable")
            ns_ = slot[new][o]
            self.tcp_seen[ns_] = True
            for s_, b_, q_ in zip(ns_.tolist(), bare[new][o].tolist(), pref[new][o].tolist()):
                if b_ or q_:
                    self.tcp_turn[s_] = _TcpTurn(prefixed=q_ and not b_)
        if not self.tcp_turn:
            return
        # per packet only while some flow carries TURN over TCP (the fallback: few)
        gb = grouped if grouped is not None else group_batch(batch.data, d)
        pidx = gb.pidx
        pos, cap, ts = d.payload[pidx], d.payload_cap[pidx], batch.ts_ns[pidx]
        t = np.nonzero((gb.proto == F.PROTO_TCP) & (cap > 0))[0]
        slot = self._slot_of(gb.keys, gb.inv[t])
        keep = np.isin(slot, np.fromiter(self.tcp_turn, np.int64, len(self.tcp_turn)))
        if not keep.any():
            return
        data = batch.data
        for i, s_ in zip(t[keep].tolist(), slot[keep].tolist()):
            p, c = int(pos[i]), int(cap[i])
            self.tcp_turn[s_].segs.append((bool(gb.src_a[i]), int(ts[i]), int(d.tcp_seq[pidx[i]]), data[p:p + c]))

    # ------------------------------------------------------------------ the end
    def finish(self, flows) -> MediaResult:
        """Assign what was gathered to ``flows`` (the finished flow records) and compute the streams and RTTs.
        The RTP rows are consumed (each column freed once joined): a later call returns the same result."""
        if self.result is not None:
            return self.result
        locate = _FlowLocator(flows, self.slot_keys)
        return self._finish(self._rtp_columns(), locate)

    def _finish(self, cols: list[np.ndarray], locate: "_FlowLocator", trim: bool = True) -> MediaResult:
        """:meth:`finish` from the joined RTP rows (:meth:`_rtp_columns`) and the flows' lookup; ``trim``: give
        the memory freed on the way back to the system (not in a child, which ends once it has answered)."""
        opts = self.options
        if trim:
            _give_back_memory()  # the per-batch arrays just joined
        streams: list[MediaStream] = []
        if cols[0].size:
            cols[0], cols[1] = locate(cols[0], cols[1], cols[2])  # slot, from a -> flow id, client to server
            streams = _streams(cols, locate, opts)
        del cols
        if trim:
            _give_back_memory()
        samples = _stun_rtt(self.stun, locate) + _tcp_rtt(self.syn, locate)
        self.result = MediaResult(streams, _per_server(samples), samples, opts)
        return self.result

    @contextmanager
    def beside(self, raw, render: dict[str, Callable[[MediaResult], Any]] | None = None,
               spare: "_child.Spare | None" = None):
        """Yield ``take(flows)``, which returns :meth:`finish` of ``flows`` (the records of ``raw``), for
        the caller to call when it needs the result.

        With many RTP rows and a spare core (the reader's second process has ended by now), a child
        runs :meth:`finish` meanwhile, while the caller names and judges the flows: it needs only the flows'
        ids, ends and orientation, which ``build_records(raw)`` has before any name, and is a pure function
        of the rows, so the child's result is this process's, float for float.  The child is ``spare``
        (a :class:`meshpcap._child.Spare` forked when the read began), which is sent the rows and then the
        flows' lookup, when given; else one forked now.  Should the child fail, ``take`` finishes here.
        ``render`` (name -> function of the result, such as the report's text of
        the streams) runs in the child too, after the result: what each returns comes as
        :meth:`MediaResult.rendered` of its name (a renderer that fails, or no child, gives None there).
        The child sends the result first and the renderers' values after it, which this process reads
        when the result's :meth:`MediaResult.rendered` first asks for one, or else when the block ends
        (before the child is ended): ``take`` does not wait for the renderers, whose work goes on while
        the caller judges the media and makes its report, and while it writes the report's first parts
        when the block lasts that long (``pipeline.analyzing``).  ``spare`` is closed by the time the block
        ends, used or not."""
        if self.result is not None or sum(a.size for a in self.rtp[0]) < BESIDE_MIN_ROWS or not _child.can_fork():
            if spare is not None:
                spare.close()
            yield self._finish_here
            return

        def work(wfd: int) -> None:
            _answer(wfd, self._finish(self._rtp_columns(), _FlowLocator(build_records(raw), self.slot_keys), trim=False),
                    render)

        if spare is not None:
            # the rows now, so that the child joins them while this process makes the flows' lookup
            child = _child.handed(spare, _finish_handed, self._rows_state(), render)
        else:
            # a pipe that holds the result (1,000 streams: about 0.57 MB), so that the child goes on to the
            # renderers without waiting for this process to read it
            child = _child.beside(work, pipe_bytes=1 << 20)
        with child as got:
            if got is None:  # no child could be started: finish here
                yield self._finish_here
                return
            pipe = got
            if spare is not None:
                pipe, send_next = got
                try:
                    send_next(_FlowLocator(build_records(raw), self.slot_keys))
                except OSError:  # the child has ended: take finishes here
                    pass
            taken: list[MediaResult] = []  # the result the child sent, once take has it

            def take(flows, idle: Callable[[], bool] | None = None) -> MediaResult:
                if self.result is None:
                    if idle is not None:  # while the child works on: the caller's own work, a piece at a time
                        _child.fill_wait(pipe, idle)
                    try:
                        result = _result_from_rows(_received(pipe), self.options)
                    except Exception:  # the child failed: finish here, from the rows still held
                        return self.finish(flows)
                    self.result = result
                    taken.append(result)
                    if render:
                        ids = tuple(map(id, result.streams))
                        if spare is not None and self._shared is not None:
                            # long texts come in the shared memory: what the pipe carries is small, so the child
                            # never waits on it and no thread need take it meanwhile (starting one costs 0.5-2 ms)
                            result.renders_to_come = _renders_taker(pipe, result, ids, self._shared)
                        else:
                            result.renders_to_come = _renders_reader(pipe, result, ids)
                    self.rtp = [[] for _ in RTP_DTYPES]
                    self.stun, self.syn, self.tcp_turn = [], [], {}
                    self._shared, self._shared_rows = None, {}
                    if spare is None:  # a spare's rows were in its shared memory, not in this process's heap
                        _give_back_memory()
                return self.result

            try:
                yield take
            except BaseException:  # the caller failed: the values are not waited for (made where needed, if ever)
                if taken:
                    taken[0].renders_to_come = None
                raise
            if taken and taken[0].renders_to_come is not None:  # not asked for yet: read before the child ends
                taken[0].renders_to_come()

    def _finish_here(self, flows, idle: Callable[[], bool] | None = None) -> MediaResult:
        """``take`` where no child works: :meth:`finish` now (nothing to wait for: ``idle`` is not called)."""
        return self.finish(flows)

    def _rows_state(self) -> tuple:
        """What :meth:`_finish` reads besides the flows' lookup, for :func:`_finish_handed` in a spare child:
        the RTP rows kept in the shared memory (share_rows) as where they are, (offset, dtype, count)."""
        at = self._shared_rows.get
        rtp = [[a if at(id(a)) is None else _SharedRows(at(id(a)), a.dtype.str, a.size) for a in col] for col in self.rtp]
        return self.options, rtp, _joined(self.stun), _joined(self.syn), self.tcp_turn, self._shared_at

    def _rtp_columns(self) -> list[np.ndarray]:
        """The RTP/RTCP rows of every batch and of the TURN-over-TCP flows, as one array per column
        (RTP_COLUMNS) in capture order; the per-batch arrays are let go column by column."""
        tcp_rows = [r for s_, tt in self.tcp_turn.items() for r in _tcp_rows(s_, tt)]
        cols = []
        for i, dt in enumerate(RTP_DTYPES):
            parts = self.rtp[i] + [r[i] for r in tcp_rows]
            self.rtp[i] = []
            cols.append(np.concatenate(parts).astype(dt, copy=False) if parts else np.zeros(0, dt))
            del parts
        if tcp_rows:  # they came last: capture order for everything (the UDP rows are in it already)
            order = np.argsort(cols[2], kind="stable")
            cols = [c[order] for c in cols]
        return cols


@dataclass(slots=True)
class MediaBatch:
    """The stateless half of the media pass over one batch (:func:`extract`): rows of RTP/RTCP packets,
    STUN requests and responses, and TCP SYNs, each row naming its 5-tuple group in ``keys``.  A pure
    function of the batch, so the reader's second process can make it."""

    keys: tuple[np.ndarray, ...]  # the batch's groups: proto, ip version, a_hi, a_lo, b_hi, b_lo, a_port, b_port
    rtp: tuple[np.ndarray, ...] | None  # group, then RTP_COLUMNS[1:], of RTP_DTYPES
    stun: tuple[np.ndarray, ...] | None  # group, from a, ns, class, method, transaction id (3 x 32 bits)
    syn: tuple[np.ndarray, ...] | None  # group, from a, ns, ACK set
    # TCP groups with payload: group (each once), and whether its first payload here is a STUN message bare
    # (RFC 8656) or behind an RFC 4571 length (RFC 6544): TURN over TCP, decided by the collector
    tcp_first: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def extract(batch, d: F.Decoded, grouped=None) -> MediaBatch:
    """Find the media facts of one decoded batch (see :class:`MediaBatch`): :func:`meshpcap.decode.rtp.batch_media`
    over its grouped packets."""
    gb = grouped if grouped is not None else group_batch(batch.data, d)
    pidx = gb.pidx
    if len(batch) == 0 or pidx.size == 0:
        return MediaBatch(gb.keys, None, None, None, None)
    found = R.batch_media(batch.data, pidx, gb.proto, gb.inv, gb.src_a, gb.perm, d.payload, d.payload_cap,
                          d.tcp_flags, batch.ts_ns)
    return MediaBatch(gb.keys, *found)


def _without_copies(mb: "MediaBatch", batch, gb, dropped: np.ndarray) -> "MediaBatch":
    """``mb`` less one RTP, STUN and SYN row for each packet in ``dropped`` (copies the flow stage counted once:
    a capture merged with itself, a SPAN port mirroring both directions).  The rows carry no packet number, so a
    copy is found by its 5-tuple group and time: a row of the same group and time as a dropped packet is its
    copy's row or the row of an identical packet, and either may go."""
    j = np.flatnonzero(dropped[gb.pidx])  # the dropped packets, as positions among the grouped ones
    if not j.size:
        return mb
    group, ns = gb.inv[j], batch.ts_ns[gb.pidx[j]]
    rtp, stun, syn = (None if rows is None else _less(rows, group, ns) for rows in (mb.rtp, mb.stun, mb.syn))
    return MediaBatch(mb.keys, rtp, stun, syn, mb.tcp_first)


def _less(rows: tuple, group: np.ndarray, ns: np.ndarray) -> tuple | None:
    """``rows`` (group first, time third) without one row per (group, time) pair of ``group``/``ns``, the
    earliest such rows in their order; None when none is left."""
    rg, rn = rows[0].astype(np.int64), rows[2].astype(np.int64)
    times, rank = np.unique(np.concatenate([rn, ns.astype(np.int64)]), return_inverse=True)
    width = np.int64(times.size)
    row_key = rg * width + rank[: rn.size]
    drop_key = group.astype(np.int64) * width + rank[rn.size:]
    order = np.argsort(row_key, kind="stable")
    sorted_keys = row_key[order]
    occurrence = np.arange(sorted_keys.size) - np.searchsorted(sorted_keys, sorted_keys, side="left")
    keys, counts = np.unique(drop_key, return_counts=True)
    at = np.minimum(np.searchsorted(keys, sorted_keys), keys.size - 1)
    gone = (keys[at] == sorted_keys) & (occurrence < counts[at])
    if not gone.any():
        return rows
    keep = np.ones(rg.size, bool)
    keep[order[gone]] = False
    if not keep.any():
        return None
    return tuple(c[keep] for c in rows)


class _FlowLocator:
    """Which flow (record id) and direction a slot's packet at a time belongs to."""

    def __init__(self, flows, slot_keys: list[tuple]) -> None:
        # one row per (slot, flow), slots in order, each slot's flows in the order of their first packets; only
        # the slots' 5-tuples are looked for (of millions of flows, few carry media)
        if isinstance(flows, FlowRecords) and flows.kept is None:  # from the columns: no record is made
            kf = flows.flows_of_keys(slot_keys)
            self.by_id = dict(zip((kf.position + 1).tolist(), flows.ends_at(kf.position)))  # as Flow names them
            self.count = np.bincount(kf.key, minlength=len(slot_keys)).astype(np.int64)
            self.row_first, self.row_id, self.row_a_client = kf.first_ns, kf.position + 1, kf.a_client
        else:
            self._from_records(flows, slot_keys)
        self.offset = np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)
        # each slot's one flow (id -1 where none), when no slot has more
        self.single = None
        if self.count.size == 0 or int(self.count.max()) <= 1:
            self.single = self.count == 1
            self.single_id = np.full(self.count.size, -1, np.int64)
            self.single_id[self.single] = self.row_id
            self.single_a_client = np.zeros(self.count.size, bool)
            self.single_a_client[self.single] = self.row_a_client

    def _from_records(self, flows, slot_keys: list[tuple]) -> None:
        """The lookup's rows from flow records (a list of :class:`Flow`): by transport and unordered endpoint
        pair, each slot's flows in the order of their first packets."""
        wanted: list[tuple] = []
        for proto, ver, ah, al, bh, bl, pa, pb in slot_keys:
            a, b = (addr_text(ver, ah, al), pa), (addr_text(ver, bh, bl), pb)
            tr = "tcp" if proto == F.PROTO_TCP else "udp"
            wanted.append(((tr, a, b) if a <= b else (tr, b, a), a))
        by_key = _by_key(flows, [k for k, _ in wanted])
        self.by_id = {f.id: f for fl in by_key.values() for f in fl}  # FlowEnds from the columns: the same names
        counts, first, ids, a_client = [], [], [], []
        for k, a in wanted:
            fl = by_key[k]
            if len(fl) > 1:
                fl = sorted(fl, key=lambda f: f.first_ns)
            counts.append(len(fl))
            for f in fl:
                first.append(f.first_ns)
                ids.append(f.id)
                a_client.append(f.client == a[0] and f.client_port == a[1])
        self.count = np.array(counts, np.int64)
        self.row_first = np.array(first, np.int64)
        self.row_id = np.array(ids, np.int64)
        self.row_a_client = np.array(a_client, bool)

    def __getstate__(self) -> dict:
        """Pickled with its flows' ends (``by_id``) as columns: a tuple per flow costs the pickle twice as much
        (MediaCollector.beside sends the lookup to its spare child); unpickled, they are FlowEnds."""
        state = dict(self.__dict__)
        ends = list(map(_ends_of, self.by_id.values()))
        state["by_id"] = tuple(map(list, zip(*ends))) if ends else ()
        return state

    def __setstate__(self, state: dict) -> None:
        columns = state.pop("by_id")
        self.__dict__.update(state)
        self.by_id = dict(zip(columns[0], map(FlowEnds._make, zip(*columns)))) if columns else {}

    def __call__(self, slot: np.ndarray, src_a: np.ndarray, ts: np.ndarray):
        """Flow ids (-1: no flow) and client-to-server flags of packets given by slot, side and time."""
        fid = np.full(slot.size, -1, np.int64)
        c2s = np.zeros(slot.size, bool)
        if slot.size == 0 or self.row_id.size == 0:
            return fid, c2s
        if self.single is not None:  # no 5-tuple reused: one gather per column
            fid = self.single_id[slot]
            return fid, (src_a == self.single_a_client[slot]) & (fid >= 0)
        cnt = self.count[slot]
        row = self.offset[slot].copy()
        many = np.flatnonzero(cnt > 1)  # a 5-tuple reused by later flows: the last flow begun by then
        for s in sorted(set(slot[many].tolist())):  # not np.unique: it imports numpy.ma (6 ms)
            m = many[slot[many] == s]
            lo = int(self.offset[s])
            k = np.searchsorted(self.row_first[lo:lo + int(self.count[s])], ts[m], "right") - 1
            row[m] = lo + np.maximum(k, 0)
        has = cnt > 0
        fid[has] = self.row_id[row[has]]
        c2s[has] = src_a[has] == self.row_a_client[row[has]]
        return fid, c2s


_ends_of = attrgetter(*FlowEnds._fields)  # a Flow's or FlowEnds' fields that FlowEnds holds, in its order


def _by_key(flows, keys: list[tuple]) -> dict[tuple, list]:
    """The records of ``flows`` by (transport, endpoint, endpoint), endpoints (address, port) in order,
    for the keys asked for, each list in record order."""
    by_key: dict[tuple, list] = {k: [] for k in keys}
    ports = {p for (_, a, b) in by_key for p in (a[1], b[1])}
    for f in flows if by_key else ():
        if f.server_port not in ports or f.client_port not in ports or f.transport not in ("tcp", "udp"):
            continue
        c, s_ = (f.client, f.client_port), (f.server, f.server_port)
        fl = by_key.get((f.transport, c, s_) if c <= s_ else (f.transport, s_, c))
        if fl is not None:
            fl.append(f)
    return by_key


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
        if rows:
            a = np.array(rows, np.int64)
            n = len(rows)
            out.append((np.full(n, slot, np.int32), np.full(n, side), a[:, 0]) + tuple(
                a[:, j].astype(dt) for j, dt in zip(range(1, 8), RTP_DTYPES[3:])))
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


def _jitter_segments(x: np.ndarray, first: np.ndarray, block: int = 128) -> np.ndarray:
    """RFC 3550 appendix A.8, ``J += (|D| - J) / 16``, over many streams laid end to end (``first`` marks
    each stream's first packet, where J starts at 0; x there is 0).  The recurrence is linear,
    J_k = a J_(k-1) + x_k / 16 with a = 15/16, so within a block of ``block`` packets
    J_k = a^(k+1) J_before + sum_j a^(k-j) x_j / 16, the sum taken from the block's start or from the
    last stream start in the block: one cumulative sum per block for every block at once, and a loop
    over blocks only for the value carried from one block to the next (a^-127 is about 3,700: no
    precision is lost)."""
    a = 15.0 / 16.0
    n = x.size
    m = -(-n // block)
    X = np.zeros(m * block)
    X[:n] = x
    Rm = np.zeros(m * block, bool)
    Rm[:n] = first
    X, Rm = X.reshape(m, block), Rm.reshape(m, block)
    k = np.arange(block)
    up, down = a ** -k, a ** k
    C = np.cumsum(X * up, axis=1) / 16.0
    last = np.maximum.accumulate(np.where(Rm, k, -1), axis=1)  # the latest stream start at or before k
    base = np.where(last > 0, np.take_along_axis(C, np.maximum(last - 1, 0), axis=1), 0.0)
    local = down * (C - base)
    carry = np.where(last < 0, down * a, 0.0)  # a^(k+1) where the block's earlier J carries in
    ends = np.empty(m)
    e = 0.0
    for b, (lv, cv) in enumerate(zip(local[:, -1].tolist(), carry[:, -1].tolist())):
        ends[b] = e  # the J carried into block b
        e = lv + cv * e
    return (local + carry * ends[:, None]).reshape(-1)[:n]


def _never_backwards(t: np.ndarray, starts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Arrival times per stream (streams laid end to end from ``starts``, ``n`` packets each) held at the
    latest time seen: a time that steps back inside a stream (a clock step, a damaged or merged record)
    would otherwise make windows and bins start before the stream does.  The usual capture needs no copy."""
    back = np.flatnonzero(np.diff(t) < 0) + 1
    if back.size == 0:
        return t
    t = t.copy()
    first = np.zeros(t.size, bool)
    first[starts] = True
    for s in sorted(set((np.searchsorted(starts, back[~first[back]], "right") - 1).tolist())):  # np.unique: numpy.ma
        seg = slice(int(starts[s]), int(starts[s] + n[s]))
        np.maximum.accumulate(t[seg], out=t[seg])
    return t


def _first_argmax(values: np.ndarray, seg_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment (non-empty, laid end to end from ``seg_starts``): the maximum of ``values`` and the
    index of its first occurrence."""
    mx = np.maximum.reduceat(values, seg_starts)
    seg = np.repeat(np.arange(seg_starts.size), np.diff(np.append(seg_starts, values.size)))
    at = np.minimum.reduceat(np.where(values == mx[seg], np.arange(values.size), values.size), seg_starts)
    return mx, at


_STATIC = np.zeros(256, np.int64)
for _pt, _c in R.STATIC_CLOCK.items():
    _STATIC[_pt] = _c
_CANDS = np.array(CLOCK_CANDIDATES, float)
JITTER_BLOCK = 128
CHUNK_PACKETS = 1 << 15  # RTP packets per chunk of streams in _streams (bounds its working memory)
_T_BITS = 46  # per-stream times (ns from the stream's start) are packed beside the stream index: 19.5 h


class _Packets(NamedTuple):
    """The RTP packets kept, grouped by stream (stream then arrival order), shared by every section."""
    ii: np.ndarray  # index of each packet in the batch columns
    sid: np.ndarray  # stream index of each packet
    starts: np.ndarray  # first packet of each stream
    last: np.ndarray  # last packet of each stream
    n: np.ndarray  # packets per stream
    is_first: np.ndarray  # the packet is its stream's first
    t: np.ndarray  # arrival time, never backwards inside a stream
    d: np.ndarray  # signed sequence step from the packet before (0 at a stream's first)
    ext: np.ndarray  # extended sequence number
    restart: np.ndarray  # the step jumps over MAX_DROPOUT
    kept: np.ndarray  # which of the streams given each stream is
    every: bool  # every stream given was kept: ii is 0, 1, 2, ... (see take)

    def take(self, col: np.ndarray) -> np.ndarray:
        """``col[ii]``: the kept packets' values of a column given in the chunk's order (the column itself
        where every stream was kept)."""
        return col if self.every else col[self.ii]


class _Seen(NamedTuple):
    """Distinct sequence numbers per stream (first arrival of each) and the loss counted from them."""
    o2: np.ndarray | None  # packets in stream then extended-number order (None: the order they are in)
    newu: np.ndarray  # in that order: the first packet of each distinct number
    first_seen: np.ndarray  # per packet: it is the first arrival of its number
    u_sid: np.ndarray
    u_t: np.ndarray
    nu: np.ndarray  # distinct numbers per stream
    loss_gap: np.ndarray  # numbers missing after each distinct one (0 over a jump past MAX_DROPOUT)
    lost: np.ndarray
    bursts: np.ndarray
    max_burst: np.ndarray
    ustart: np.ndarray  # each stream's first distinct number (index into the u_ arrays)
    in_order: bool  # no number stepped back: o2 is the identity (None) and nothing is reordered


class _Clock(NamedTuple):
    dts: np.ndarray  # signed RTP timestamp step from the packet before
    pts: np.ndarray  # payload type of each packet
    clock: np.ndarray  # clock rate per stream (0: unknown)
    static: np.ndarray
    fit_ok: np.ndarray
    snapped: np.ndarray
    rate: np.ndarray


class _Events(NamedTuple):
    """Arrivals and lost packets (placed between their neighbours) per stream, in stream then time order."""
    ev_sid: np.ndarray
    ekey: np.ndarray  # stream index and time from the stream's first event, packed
    estart: np.ndarray
    et0: np.ndarray
    erel: np.ndarray
    ecum: np.ndarray  # lost events before each event
    te: np.ndarray  # each stream's last event, from its first
    first_of_run: np.ndarray  # for each event, the first event of its stream at the same time


def _rtcp_counts(fid, c2s, kind, ssrc, ok) -> dict[tuple[int, bool, int], int]:
    """RTCP packets per (flow, direction, SSRC)."""
    rtcp = ok & (kind == R.K_RTCP)
    if not rtcp.any():
        return {}
    keys, counts = np.unique(((fid[rtcp] * 2 + c2s[rtcp]) << 32) | ssrc[rtcp], return_counts=True)
    return {(k >> 33, bool((k >> 32) & 1), k & 0xFFFFFFFF): c for k, c in zip(keys.tolist(), counts.tolist())}


def _packets(starts: np.ndarray, ts: np.ndarray, seq: np.ndarray, o: MediaOptions) -> _Packets | None:
    """RTP packets grouped by stream (the columns given in stream then arrival order, each stream's first
    packet at ``starts``), the streams whose numbers do not follow on left out, sequence numbers extended
    (RFC 3550 A.1); None when no stream is left."""
    if ts.size == 0:
        return None
    ends = np.append(starts[1:], ts.size)
    ii = np.arange(ts.size)
    n = ends - starts
    sid = np.repeat(np.arange(n.size), n)
    # RFC 3550 A.1: extend the 16-bit sequence; each step is the shortest signed delta from the packet before
    sq = seq.astype(np.int64)
    d = np.zeros(ii.size, np.int64)
    d[1:] = ((np.diff(sq) + SEQ_MOD // 2) & (SEQ_MOD - 1)) - SEQ_MOD // 2  # & for % of a power of two (int % is slow)
    d[starts] = 0
    # random first bytes (DNS ids, encrypted data) make "streams" whose numbers do not follow on, and
    # repeated datagrams (NetBIOS, DNS retries) ones whose numbers stand still: most steps must go 1-100 on
    step = (d >= 1) & (d <= 100)
    step[starts] = False
    near = np.bincount(sid, weights=step, minlength=n.size)
    keep = (n >= o.min_packets) & ((n == 1) | (near >= 0.5 * (n - 1)))
    kept = np.flatnonzero(keep)
    if not keep.all():
        pk = np.repeat(keep, n)
        ii, d, sq = ii[pk], d[pk], sq[pk]
        n = n[keep]
        if n.size == 0:
            return None
        sid = np.repeat(np.arange(n.size), n)
    starts = np.concatenate([[0], np.cumsum(n)[:-1]])
    is_first = np.zeros(ii.size, bool)
    is_first[starts] = True
    every = kept.size == ends.size
    t = _never_backwards(ts if every else ts[ii], starts, n)
    cd = np.cumsum(d)
    ext = cd + (sq[starts] - cd[starts])[sid]
    return _Packets(ii=ii, sid=sid, starts=starts, last=starts + n - 1, n=n, is_first=is_first, t=t, d=d,
                    ext=ext, restart=np.abs(d) > MAX_DROPOUT, kept=kept, every=every)


def _seen(p: _Packets) -> _Seen:
    """Distinct sequence numbers per stream, the first arrival of each, and the numbers never received."""
    sid, ext, P = p.sid, p.ext, p.ii.size
    # no step back in any stream (p.d is 0 at a stream's first packet): every extended number at or above the
    # one before, so that the sort into stream then number order below is the identity (the usual capture)
    in_order = bool((p.d >= 0).all())
    if in_order:
        o2 = None
        se, ss = ext, sid
    else:
        emin = np.minimum.reduceat(ext, p.starts)
        erange = int((ext - emin[sid]).max())
        if erange < (1 << 30):  # one stable sort of a packed key (the usual case), else by three keys
            o2 = np.argsort((sid.astype(np.int64) << 30) | (ext - emin[sid]), kind="stable")
        else:
            o2 = np.lexsort((np.arange(P), ext, sid))
        se, ss = ext[o2], sid[o2]
    newu = np.ones(P, bool)
    newu[1:] = (se[1:] != se[:-1]) | (ss[1:] != ss[:-1])
    if o2 is None:
        first_seen = newu
        if newu.all():  # no duplicate either: the distinct numbers are the packets
            u_ext, u_sid, u_t = se, ss, p.t
        else:
            u_ext, u_sid, u_t = se[newu], ss[newu], p.t[newu]
    else:
        first_seen = np.zeros(P, bool)
        first_seen[o2[newu]] = True
        u_ext, u_sid, u_t = se[newu], ss[newu], p.t[o2[newu]]
    gaps = np.diff(u_ext) - 1
    same = u_sid[1:] == u_sid[:-1]
    loss_gap = np.where(same & (gaps <= MAX_DROPOUT), gaps, 0)
    # per stream (each one run of u_sid from ustart): the numbers missing before each distinct one (0 at a
    # stream's first) summed, counted where not 0 and their highest, all exact in integers
    ustart = np.flatnonzero(np.r_[True, ~same])
    before = np.zeros(u_sid.size, np.int64)
    before[1:] = loss_gap
    return _Seen(o2=o2, newu=newu, first_seen=first_seen, u_sid=u_sid, u_t=u_t,
                 nu=np.diff(np.append(ustart, u_sid.size)), loss_gap=loss_gap,
                 lost=np.add.reduceat(before, ustart), bursts=np.add.reduceat((before > 0).astype(np.int64), ustart),
                 max_burst=np.maximum.reduceat(before, ustart), ustart=ustart, in_order=in_order)


def _reordered(p: _Packets, u: _Seen) -> np.ndarray:
    """Per stream: packets that arrived after a higher sequence number had, and are not duplicates."""
    if u.in_order:  # no number below one before it
        return np.zeros(p.n.size, np.int64)
    e2 = p.ext + p.sid.astype(np.int64) * (1 << 40)
    runmax = np.maximum.accumulate(e2)
    late = np.zeros(p.ii.size, bool)
    late[1:] = (e2[1:] < runmax[:-1]) & u.first_seen[1:]
    late &= ~p.is_first
    return np.bincount(p.sid, weights=late, minlength=p.n.size).astype(np.int64)


def _clock(p: _Packets, rts: np.ndarray, pt: np.ndarray) -> _Clock:
    """Timestamps unwrapped as the sequence is; the clock from a static payload type or from their slope
    over arrival time (snapped to a known RTP clock)."""
    sid, starts, n, t, S = p.sid, p.starts, p.n, p.t, p.n.size
    r = p.take(rts).astype(np.int64)
    dts = np.zeros(p.ii.size, np.int64)
    dts[1:] = ((np.diff(r) + TS_MOD // 2) & (TS_MOD - 1)) - TS_MOD // 2
    dts[starts] = 0
    cts = np.cumsum(dts)
    ext_ts = (cts - cts[starts][sid]).astype(float)
    pts = p.take(pt).astype(np.int64)
    cl = _STATIC[pts & 0xFF]
    smin, smax = np.minimum.reduceat(cl, starts), np.maximum.reduceat(cl, starts)
    static = (smin == smax) & (smin > 0)
    x = (t - t[starts][sid]) / 1e9
    sx, sy = np.bincount(sid, x, S), np.bincount(sid, ext_ts, S)
    sxx, sxy = np.bincount(sid, x * x, S), np.bincount(sid, x * ext_ts, S)
    den = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(den > 0, (n * sxy - sx * sy) / np.where(den > 0, den, 1), 0.0)
    span_ns = t[p.last] - t[starts]
    fit_ok = (n >= 5) & (span_ns >= 100_000_000)
    rel = np.abs(rate[:, None] - _CANDS) / _CANDS
    best = np.argmin(rel, axis=1)
    snapped = rel[np.arange(S), best] <= CLOCK_TOLERANCE
    clock = np.where(static, smin, np.where(fit_ok & snapped, _CANDS[best].astype(np.int64), 0))
    return _Clock(dts=dts, pts=pts, clock=clock, static=static, fit_ok=fit_ok, snapped=snapped, rate=rate)


def _interarrival_ms(p: _Packets) -> np.ndarray:
    """Time from the packet before in the stream, in ms (0 at a stream's first)."""
    dt_ms = np.zeros(p.ii.size)
    dt_ms[1:] = np.diff(p.t) / 1e6
    dt_ms[p.starts] = 0.0
    return dt_ms


def _jitter(p: _Packets, c: _Clock, dt_ms: np.ndarray, lead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RFC 3550 A.8 jitter J after each packet, in ms (0 where the clock is unknown), and the values of
    |D| the next chunk of streams needs in front (``lead`` here: those of the chunks before, see
    :func:`_streams`)."""
    # D = (R_j - R_i) - (S_j - S_i), arrival order, in ms here
    ck = c.clock[p.sid]
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(ck > 0, np.abs(dt_ms - c.dts * 1000.0 / np.where(ck > 0, ck, 1)), 0.0)
    dd[p.is_first | p.restart] = 0.0
    # _jitter_segments works in blocks of JITTER_BLOCK laid from the first stream of all: the chunk goes in
    # behind the |D| of its block's earlier packets, so that every sum is made as over all streams at once
    x = np.concatenate([lead, dd])
    first = np.zeros(x.size, bool)
    first[lead.size:] = p.is_first
    jit = _jitter_segments(x, first, JITTER_BLOCK)[lead.size:]
    return jit, x[x.size - x.size % JITTER_BLOCK:]


def _jitter_stats(p: _Packets, jit: np.ndarray, jw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stream: the sum and the highest of J, and the start of the ``jw`` ns window where it peaks."""
    t, starts = p.t, p.starts
    jmax, jat = _first_argmax(jit, starts)
    return np.bincount(p.sid, jit, p.n.size), jmax, t[starts] + ((t[jat] - t[starts]) // jw) * jw


def _delta_stats(p: _Packets, dt_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per stream: the lowest, highest and summed interarrival deltas (ms; +-inf for a single packet)."""
    S, sid = p.n.size, p.sid
    # each stream's packets are one run from p.starts: its first packet (no delta) counts as +-inf
    dmin = np.minimum.reduceat(np.where(p.is_first, np.inf, dt_ms), p.starts)
    dmax = np.maximum.reduceat(np.where(p.is_first, -np.inf, dt_ms), p.starts)
    return dmin, dmax, np.bincount(sid, dt_ms, S)


def _events(p: _Packets, u: _Seen) -> _Events:
    """Loss over time: each stream's arrivals and its lost packets, placed between their neighbours'
    arrival times, sorted by stream then time."""
    S, t, starts = p.n.size, p.t, p.starts
    u_sid, u_t, loss_gap = u.u_sid, u.u_t, u.loss_gap
    g = np.flatnonzero(loss_gap)
    cnt = loss_gap[g]
    rep = np.repeat(g, cnt)
    within = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt) + 1
    lt = u_t[rep] + (u_t[rep + 1] - u_t[rep]) * within // (np.repeat(cnt, cnt) + 1)
    ev_sid = np.concatenate([u_sid, u_sid[rep]])
    ev_t = np.concatenate([u_t, lt])
    ev_l = np.concatenate([np.zeros(u_sid.size, np.int64), np.ones(lt.size, np.int64)])
    # every event is at or after its stream's first packet: times from there, packed beside the stream index
    ekey = (ev_sid.astype(np.int64) << _T_BITS) + (ev_t - t[starts][ev_sid])
    if lt.size or not u.in_order:  # else the arrivals alone, in stream then time order already
        eo = np.argsort(ekey, kind="stable")
        ev_sid, ev_t, ev_l, ekey = ev_sid[eo], ev_t[eo], ev_l[eo], ekey[eo]
    ecount = np.bincount(ev_sid, minlength=S)
    estart = np.concatenate([[0], np.cumsum(ecount)[:-1]])
    et0 = ev_t[estart]
    erel = ev_t - et0[ev_sid]
    runstart = np.ones(ekey.size, bool)
    runstart[1:] = ekey[1:] != ekey[:-1]
    return _Events(ev_sid=ev_sid, ekey=ekey, estart=estart, et0=et0, erel=erel,
                   ecum=np.concatenate([[0], np.cumsum(ev_l)]), te=erel[estart + ecount - 1],
                   first_of_run=np.maximum.accumulate(np.where(runstart, np.arange(ekey.size), 0)))


def _worst_window(e: _Events, lost: np.ndarray, W: int, min_packets: int) -> tuple[np.ndarray, np.ndarray]:
    """Per stream: the highest lost fraction over windows of W ns holding at least ``min_packets`` events
    (-1 when none does), and where the first such window starts."""
    # a window [s, s + W) starts at every event that leaves room for it before the stream's last event, and
    # one more ends at that last event; a stream shorter than W is one window from its first event
    ev_sid, ekey, estart, et0, erel, ecum, te = e.ev_sid, e.ekey, e.estart, e.et0, e.erel, e.ecum, e.te
    short = te < W
    # a stream without loss whose first window holds enough packets has its worst window there (0%):
    # the search over every window is only for the others
    first_count = np.searchsorted(ekey, ekey[estart] + W, "left") - estart
    need = (lost > 0) | (first_count < min_packets)
    wmax = np.zeros(lost.size)
    wstart = et0.copy()
    if not need.any():
        return wmax, wstart
    sel = need[ev_sid]
    cand = np.flatnonzero(sel & np.where(short[ev_sid], np.arange(ev_sid.size) == estart[ev_sid],
                                         erel + W <= te[ev_sid]))
    c_sid = ev_sid[cand]
    lo = e.first_of_run[cand]
    hi = np.searchsorted(ekey, ekey[cand] + W, "left")
    tot = hi - lo
    ratio = np.where(tot >= min_packets, (ecum[hi] - ecum[lo]) / np.maximum(tot, 1), -1.0)
    cstart = np.flatnonzero(np.r_[True, c_sid[1:] != c_sid[:-1]])  # every stream has a candidate
    mx, at = _first_argmax(ratio, cstart)
    ns_ = c_sid[cstart]
    wmax[ns_] = mx
    wstart[ns_] = et0[ns_] + erel[cand[at]]
    # the window that ends at each long stream's last event
    xs = np.flatnonzero(need & ~short)
    xkey = (xs.astype(np.int64) << _T_BITS) + te[xs] - W + 1
    xlo = np.searchsorted(ekey, xkey, "left")
    xhi = np.searchsorted(ekey, xkey + W, "left")
    xt = xhi - xlo
    xr = np.where(xt >= min_packets, (ecum[xhi] - ecum[xlo]) / np.maximum(xt, 1), -1.0)
    better = xr > wmax[xs]
    wmax[xs[better]] = xr[better]
    wstart[xs[better]] = et0[xs[better]] + te[xs[better]] - W + 1
    return wmax, wstart


class _Bins(NamedTuple):
    bit_all: list[float]  # bitrate per bin (kbit/s), every stream's bins laid end to end
    loss_all: list[float | None]  # loss % per bin, every stream's bins laid end to end
    jit_all: list[float | None]  # highest jitter per bin (ms), laid out alike
    b_lo: list[int]  # each stream's first bin in those lists
    b_hi: list[int]


def _bins(p: _Packets, u: _Seen, by: np.ndarray, jit: np.ndarray, binw: int) -> _Bins:
    """Per-bin series: bitrate, loss and jitter, bins of ``binw`` ns from each stream's first packet."""
    sid, t, starts, P = p.sid, p.t, p.starts, p.ii.size
    b = _floor_div(t - t[starts][sid], binw)
    nb = b[p.last] + 1
    boff = np.concatenate([[0], np.cumsum(nb)[:-1]])
    bins = np.bincount(boff[sid] + b, weights=by.astype(float), minlength=int(nb.sum())) * 8 / (binw / 1e9) / 1000
    # loss and jitter per bin.  Loss as RFC 3550 A.3 counts it per reporting interval: a bin expects the
    # distinct sequence numbers above the highest one first seen by the end of the bin before, up to the
    # highest first seen by its own end (ranked with the jumps over MAX_DROPOUT left out, as ``expected``),
    # and loses those of them never received (in any bin: a late packet is not loss), so the bins add up to
    # ``expected`` and ``lost``.  Jitter: the highest A.8 value J reached in the bin.  Bins where no packet
    # arrived are NaN (None in the stream).  Packets are in stream then time order: the flat bin index never
    # decreases, so each non-empty bin is one run of packets.
    fb = boff[sid] + b
    brun = np.flatnonzero(np.r_[True, fb[1:] != fb[:-1]])  # first packet of each non-empty bin
    # each packet's distinct sequence number (index into the u_ arrays)
    if u.o2 is None:
        uidx = np.cumsum(u.newu) - 1
    else:
        uidx = np.empty(P, np.int64)
        uidx[u.o2] = np.cumsum(u.newu) - 1
    hi = np.maximum.accumulate(np.maximum.reduceat(uidx, brun))  # streams' u_ indices follow one another
    ustart = u.ustart
    hs = u.u_sid[hi]
    lost_before = np.concatenate([[0], np.cumsum(u.loss_gap)])  # lost numbers below each distinct one (global)
    cum_lost = lost_before[hi] - lost_before[ustart[hs]]
    cum_exp = hi - ustart[hs] + 1 + cum_lost
    new_stream = np.r_[True, hs[1:] != hs[:-1]]
    b_lost = cum_lost - np.where(new_stream, 0, np.r_[0, cum_lost[:-1]])
    b_exp = cum_exp - np.where(new_stream, 0, np.r_[0, cum_exp[:-1]])
    loss_bins = np.full(bins.size, np.nan)
    loss_bins[fb[brun]] = np.where(b_exp > 0, 100.0 * b_lost / np.maximum(b_exp, 1), 0.0)
    jit_bins = np.full(bins.size, np.nan)
    jit_bins[fb[brun]] = np.maximum.reduceat(jit, brun)
    return _Bins(bit_all=bins.tolist(), loss_all=_nan_none(loss_bins), jit_all=_nan_none(jit_bins),
                 b_lo=boff.tolist(), b_hi=(boff + nb).tolist())


def _floor_div(x: np.ndarray, w: int) -> np.ndarray:
    """``x // w`` for int64 ``x`` from 0 to 2**52 and w > 0, exactly, without numpy's integer division (some
    30 times slower than a float one): the float quotient is within one of the true one, then corrected.
    Other ``x`` through ``//``."""
    if x.size and (int(x.min()) < 0 or int(x.max()) >= 1 << 52):
        return x // w
    q = (x / w).astype(np.int64)
    q -= q * w > x
    q += (q + 1) * w <= x
    return q


def _clock_source(static: bool, fit_ok: bool, snapped: bool, rate: float) -> str:
    if static:
        return "payload type"
    if not fit_ok:
        return "unknown: too few packets or too short to infer the clock from timestamps"
    if snapped:
        return "timestamps"
    return f"unknown: timestamps advance {rate:,.0f}/s, not a known RTP clock"


def _streams(cols: list[np.ndarray], locate: _FlowLocator, o: MediaOptions) -> list[MediaStream]:
    """Every stream's statistics, as array operations over the packets grouped by stream: one sort of all
    RTP packets by stream, then chunks of whole streams (about CHUNK_PACKETS packets each, so that the
    working arrays stay small) each computed at once."""
    fid, c2s, ts, kind, fr, pt, seq, rts, ssrc, size = cols
    ok = fid >= 0
    rtcp_count = _rtcp_counts(fid, c2s, kind, ssrc, ok)
    ii = np.flatnonzero(ok & (kind == R.K_RTP)).astype(np.int32 if fid.size < (1 << 31) else np.int64)
    del ok
    skey = fid[ii].astype(np.int64, copy=False)  # ((fid * 2 + c2s) << 32) | ssrc, in place (a new array)
    skey *= 2
    skey += c2s[ii]
    skey <<= 32
    skey |= ssrc[ii]
    order = np.argsort(skey, kind="stable")
    ii = ii[order]
    sk = skey[order]
    new = np.ones(sk.size, bool)
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    del skey, order
    # a chunk begins at the last stream start at or before each multiple of CHUNK_PACKETS
    cuts = starts[np.searchsorted(starts, np.arange(0, ii.size, CHUNK_PACKETS), "right") - 1]
    cuts = cuts[np.r_[True, cuts[1:] != cuts[:-1]]] if cuts.size else cuts  # sorted: unique without np.unique (numpy.ma)
    out: list[MediaStream] = []
    lead = np.zeros(0)
    first = ii[starts]  # each stream's first packet: its flow, direction and SSRC
    keys = (fid[first], c2s[first], ssrc[first])
    del first
    s_lo = 0
    for a, b in zip(cuts.tolist(), cuts[1:].tolist() + [ii.size]):
        sub = ii[a:b]
        s_hi = int(np.searchsorted(starts, b))
        got, lead = _chunk_streams(starts[s_lo:s_hi] - a, [k[s_lo:s_hi] for k in keys],
                                   [c[sub] for c in (ts, fr, pt, seq, rts, size)], locate, o, rtcp_count, lead)
        s_lo = s_hi
        out += got
    out.sort(key=lambda s: (s.flow_id, s.direction != "c2s", s.first_ns))
    return out


def _chunk_streams(starts, keys, cols, locate, o, rtcp_count, lead) -> tuple[list[MediaStream], np.ndarray]:
    """The streams of one chunk (columns in stream then arrival order, each stream's first packet at
    ``starts``, its flow id, direction and SSRC in ``keys``); and the jitter lead for the next chunk."""
    ts, fr, pt, seq, rts, size = cols
    p = _packets(starts, ts, seq, o)
    if p is None:
        return [], lead
    sid, starts, last, n, t = p.sid, p.starts, p.last, p.n, p.t
    S = n.size
    u = _seen(p)
    reordered = _reordered(p, u)
    c = _clock(p, rts, pt)
    dt_ms = _interarrival_ms(p)
    jit, lead = _jitter(p, c, dt_ms, lead)
    jw = int(o.jitter_window_ms * 1e6)
    jsum, jmax, jws = _jitter_stats(p, jit, jw)
    inner = ~p.is_first
    dmin, dmax, dsum = _delta_stats(p, dt_ms)
    e = _events(p, u)
    windows = {name: (*_worst_window(e, u.lost, int(wms * 1e6), o.min_window_packets), int(wms * 1e6))
               for name, wms in (("loss", o.loss_window_ms), ("burst", o.burst_window_ms))}
    by = p.take(size).astype(np.int64)
    bn = _bins(p, u, by, jit, int(o.bitrate_bin_ms * 1e6))
    total = np.bincount(sid, by, S)
    gaps_of: dict[int, list[tuple[int, float]]] = {}
    for k in np.flatnonzero(inner & (dt_ms > o.gap_ms)).tolist():
        gaps_of.setdefault(int(sid[k]), []).append((int(t[k - 1]), float(dt_ms[k])))
    # payload types and the most common framing
    pt_of: dict[int, list[int]] = {}
    for k in np.flatnonzero(np.bincount(sid * 256 + (c.pts & 0xFF), minlength=S * 256)).tolist():
        pt_of.setdefault(k >> 8, []).append(k & 0xFF)
    fmain = np.bincount(sid * 8 + p.take(fr).astype(np.int64), minlength=S * 8).reshape(S, 8).argmax(axis=1)

    # assembling the records: one MediaStream per stream from the per-stream columns (one Python step
    # per stream, none per packet); the 30 columns are zipped here so each is read once as a list
    out = []
    L = lambda a: a.tolist()  # noqa: E731
    cols_ = zip(range(S), L(keys[0][p.kept]), L(keys[1][p.kept]), L(keys[2][p.kept]), L(n), L(u.nu), L(u.lost),
                L(u.bursts), L(u.max_burst), L(reordered), L(np.bincount(sid, weights=p.restart, minlength=S).astype(np.int64)),
                L(c.clock), L(c.static), L(c.fit_ok), L(c.snapped), L(c.rate), L(jsum), L(jmax), L(jws), L(dmin), L(dmax),
                L(dsum), L(t[starts]), L(t[last]), L(total), L(fmain), L(windows["loss"][0]), L(windows["loss"][1]),
                L(windows["burst"][0]), L(windows["burst"][1]))
    loss_w, burst_w = windows["loss"][2], windows["burst"][2]
    by_id, rtcp_get, framing, bit_all, loss_all, jit_all = (locate.by_id, rtcp_count.get, R.FRAMING, bn.bit_all,
                                                            bn.loss_all, bn.jit_all)
    make, b_lo, b_hi = _make_stream, bn.b_lo, bn.b_hi
    for (s_, f_, fwd, ss_, n_, nu_, lost_, bu_, mb_, re_, rs_, ck_, st_, fo_, sn_, rt_, js_, jm_, jws_, dmi_, dma_,
         ds_, t0_, t1_, by_, fm_, lw_, lws_, bw_, bws_) in cols_:
        fl = by_id[f_]
        src, sport, dst, dport = ((fl.client, fl.client_port, fl.server, fl.server_port) if fwd
                                  else (fl.server, fl.server_port, fl.client, fl.client_port))
        has_clock = ck_ > 0
        span = t1_ - t0_
        lo, hi = b_lo[s_], b_hi[s_]
        ser = tuple(bit_all[lo:hi])
        lw_ok, bw_ok = lw_ >= 0, bw_ >= 0
        many = n_ > 1
        # MediaStream's fields in their order (see _make_stream)
        out.append(make((
            fl.id, "c2s" if fwd else "s2c", fl.transport, src, sport, dst, dport, framing[fm_], ss_,
            tuple(pt_of[s_]), n_, nu_ + lost_, lost_, bu_, mb_, n_ - nu_, re_, rs_, ck_ if has_clock else None,
            _clock_source(st_, fo_, sn_, rt_),
            (js_ / (n_ - 1) if many else 0.0) if has_clock else None, jm_ if has_clock else None,
            dmi_ if many else None, ds_ / (n_ - 1) if many else None, dma_ if many else None, t0_, t1_, by_,
            by_ * 8 / (span / 1e9) / 1000 if span > 0 else None, max(ser) if ser else None, ser,
            tuple(gaps_of.get(s_, ())),
            100.0 * lw_ if lw_ok else None, (lws_, lws_ + loss_w) if lw_ok else None,
            100.0 * bw_ if bw_ok else None, (bws_, bws_ + burst_w) if bw_ok else None,
            jm_ if has_clock else None, (jws_, jws_ + jw) if has_clock else None,
            rtcp_get((fl.id, fwd, ss_), 0), tuple(loss_all[lo:hi]),
            tuple(jit_all[lo:hi]) if has_clock else (None,) * len(ser),
        )))
    return out, lead


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
            out.append(_make_rtt((f, server, port, fl.transport, f"STUN {STUN_RTT_METHODS[m]}", sent[0][0],
                                  (t - sent[0][0]) / 1e6)))
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
        out.append(_make_rtt((f, server, port, "tcp", "TCP handshake", sent[0][0], (t - sent[0][0]) / 1e6)))
    return out


def _per_server(samples: list[RttSample]) -> list[ServerRtt]:
    by: dict[tuple, list[RttSample]] = {}
    for s in samples:
        by.setdefault((s.server, s.server_port, s.transport), []).append(s)
    out = []
    for (server, port, tr), ss in by.items():
        v = sorted(s.rtt_ms for s in ss)
        mid = len(v) // 2
        median = v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2
        out.append(ServerRtt(server, port, tr, tuple(sorted({s.method for s in ss})), len(ss), v[0], median, v[-1],
                             tuple(sorted({s.flow_id for s in ss})), min(s.request_ns for s in ss)))
    out.sort(key=lambda r: r.first_ns)
    return out
