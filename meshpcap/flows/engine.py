"""Build bidirectional flows from decoded batches: the only stateful stage of the hot path.

Packets are grouped per batch with numpy (a 64-bit hash of the canonical 5-tuple,
verified against the full key), aggregated with ``bincount``, and only the packets
that decide a flow's fate go through Python one by one: TCP SYN/FIN/RST, ICMP
errors, IP fragments and the first packet of a 5-tuple in each batch.

Flow boundaries (a 5-tuple reused): a TCP SYN starts a new flow when the current
flow on that 5-tuple saw a FIN or RST, has no SYN of its own, or began with a SYN of
another initial sequence number (a retransmitted SYN has the same one and is folded
in, counted by ``syn_count``).  Any other transport starts a new flow after
``idle_ns`` of silence on the 5-tuple.

Besides the aggregates, the builder keeps *evidence*: the first payloads of each
direction, every DNS payload and the STUN messages, bounded per flow, for the
naming stage.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter, defaultdict
from dataclasses import field
from functools import partial
from itertools import compress
from typing import NamedTuple

import numpy as np

from meshpcap._dataclass import dataclass
from ..decode import frames as F
from ..errors import MeshpcapError
from .._native import load as _load_native
from .model import IcmpError, icmp_description

UDP_IDLE_NS = 300 * 1_000_000_000
DNS_PORTS = (53, 5353, 5355)  # DNS, mDNS (RFC 6762), LLMNR (RFC 4795): up to EVIDENCE_DNS datagrams kept
TCP_SYN, TCP_RST, TCP_ACK, TCP_FIN = 0x02, 0x04, 0x10, 0x01
STUN_COOKIE = 0x2112A442  # RFC 8489 section 5

EVIDENCE_TCP = 16  # payload segments kept per flow direction (ClientHello, ServerHello, certificate, HTTP heads)
EVIDENCE_UDP = 8  # datagrams kept per flow direction (QUIC Initials, first STUN messages)
EVIDENCE_STUN = 64  # STUN messages kept per flow direction beyond the first datagrams
EVIDENCE_DNS = 10_000  # DNS datagrams kept per flow

# Duplicate packets (a SPAN port mirroring both directions, Windows pktmon seeing one packet at
# several points of the stack, a capture merged with itself).  A copy is a decoded packet whose bytes
# equal those of the latest earlier packet with the same prefilter key, among the last DUP_PACKETS
# decoded packets and less than DUP_WINDOW_NS from it.  A copy is dropped (counted once) when it came on
# another interface, or carries a payload, a SYN or a FIN (or is not TCP): no endpoint sends those
# twice within a millisecond.  A TCP ACK or RST without payload legitimately repeats byte for byte
# (a host answers each segment of a closed connection with the same RST, IP ID 0; duplicate ACKs
# without timestamps are identical: six real captures have such pairs), so such a copy is dropped
# only after DUP_SYSTEMATIC copies of the first kind, which show that the capture duplicates.
# (editcap -D compares by packet count alone: it also drops a SYN-ACK retransmitted 6 ms later.)
DUP_WINDOW_NS = 1_000_000
DUP_PACKETS = 1024
DUP_SYSTEMATIC = 2

_K = [np.uint64(x) for x in (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                             0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63)]


GROUP_ABI = 10  # must equal GROUP_ABI in _group.c
GROUP = _load_native("meshpcap.flows._group", GROUP_ABI)  # None: the numpy twin groups (_groups_numpy)


DEFAULT_MAX_FLOWS = 10_000_000  # about 10 GB of memory at the peak of `analyze`; see FlowLimitError


class FlowLimitError(MeshpcapError):
    """The capture has more flows than the limit the caller set (``--max-flows``): reading stops
    with one line rather than with an exhausted machine."""

    def __init__(self, limit: int, path: str | None = None) -> None:
        self.limit = limit
        self.path = path
        super().__init__(f"{path + ': ' if path else ''}more than {limit:,} flows (the --max-flows limit; each flow needs about 1 KB of memory): "
                         f"give a larger --max-flows, or 0 for no limit, to read it all")


class TcpFacts:
    """Handshake and teardown facts of one TCP flow (mutable while the flow is built)."""

    __slots__ = ("syn_count", "syn_dir", "isn", "synack_dir", "synack_ns", "rst_dir", "rst_ns", "rst_ttl", "rst_count",
                 "fin_a", "fin_b", "first_syn_ns", "synack_isn")

    def __init__(self) -> None:
        self.syn_count = 0
        self.syn_dir: int | None = None  # 1: the a-side sent the SYN
        self.isn: int | None = None
        self.synack_dir: int | None = None
        self.synack_ns: int | None = None
        self.rst_dir: int | None = None
        self.rst_ns: int | None = None
        self.rst_ttl: int | None = None  # TTL / hop limit of the first RST
        self.rst_count = 0
        self.fin_a = False
        self.fin_b = False
        self.first_syn_ns: int | None = None
        self.synack_isn: int | None = None


class Evidence(NamedTuple):
    """One payload kept for the naming stage (a tuple: the builder makes tens of thousands)."""

    record: int
    ns: int
    from_a: bool
    seq: int
    flags: int
    data: bytes
    wire_len: int


def _evidence_items_py(cls, data, pay, cap, record, ts, src_a, seq, flags, wire) -> list:
    """One ``cls`` (Evidence) per row of the columns (record, ts, seq, wire, pay, cap int64; src_a bool; flags
    int16), its payload ``data[pay:pay + cap]``: the pure-Python twin of ``_group.c``'s evidence_items."""
    new = partial(tuple.__new__, cls)
    return list(map(new, zip(record.tolist(), ts.tolist(), src_a.tolist(), seq.tolist(), flags.tolist(),
                             [data[p : p + c] for p, c in zip(pay.tolist(), cap.tolist())], wire.tolist())))


def _evidence_items(cls, data, pay, cap, record, ts, src_a, seq, flags, wire) -> list:
    """:func:`_evidence_items_py`, by the compiled helper where it is built (the builder keeps tens of
    thousands of payloads a second)."""
    if GROUP is not None:
        return GROUP.evidence_items(cls, data, pay, cap, record, ts, src_a, seq, flags, wire)
    return _evidence_items_py(cls, data, pay, cap, record, ts, src_a, seq, flags, wire)


_RUN = 16  # the shortest run of flow-starting events FlowBuilder._packet_events starts at once


class _Grow:
    """A growable numpy column (by half its size: with millions of flows, doubling would leave
    up to half of every per-flow column unused)."""

    __slots__ = ("a",)

    def __init__(self, dtype, fill=0) -> None:
        self.a = np.full(1024, fill, dtype)

    def ensure(self, n: int, fill=0) -> None:
        if n > len(self.a):
            new = np.full(max(n, len(self.a) + len(self.a) // 2), fill, self.a.dtype)
            new[: len(self.a)] = self.a
            self.a = new


class SlotTable:
    """Canonical 5-tuples and their slot numbers, held in columns: no Python object per 5-tuple
    (a dict of key tuples cost about 400 bytes per flow of a scan).

    A sorted array of key hashes maps each hash to the first slot that had it, and the key
    columns confirm the match; a key whose hash another key already holds (a 64-bit
    collision) lives in a small dict instead.  ``table[slot]`` is the key tuple
    ``(proto, ip_version, a_hi, a_lo, b_hi, b_lo, a_port, b_port)``."""

    KEY_DTYPES = (np.uint8, np.uint8, np.uint64, np.uint64, np.uint64, np.uint64, np.int32, np.int32)

    def __init__(self) -> None:
        self.columns = [_Grow(dt) for dt in self.KEY_DTYPES]
        self.n = 0
        self.hashes = np.zeros(0, np.uint64)  # sorted
        self.hash_slot = np.zeros(0, np.int64)  # the slot of each hash
        self.collided: dict[tuple, int] = {}
        self._tuples: dict[int, tuple] = {}  # slot -> key tuple, as asked for (at most 8,192 kept)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, slot: int) -> tuple:
        key = self._tuples.get(slot)  # a slot's key never changes: the naming stage asks for each several times
        if key is None:
            if not -self.n <= slot < self.n:
                raise IndexError(slot)
            slot %= self.n
            key = tuple([c.a.item(slot) for c in self.columns])
            if len(self._tuples) >= 1 << 13:  # bounded: a scan asks for millions of slots, each once or twice
                self._tuples.clear()
            self._tuples[slot] = key
        return key

    def _append(self, keys: tuple[np.ndarray, ...]) -> np.ndarray:
        """New slots for these keys (columns); returns their numbers."""
        k = len(keys[0])
        first = self.n
        self.n += k
        for col, part in zip(self.columns, keys):
            col.ensure(self.n)
            col.a[first : self.n] = part
        return np.arange(first, self.n, dtype=np.int64)

    def lookup(self, keys: tuple[np.ndarray, ...], key_hash: np.ndarray) -> np.ndarray:
        """The slot of each key (distinct keys, one per batch group), new ones added."""
        slot = np.full(key_hash.size, -1, np.int64)
        slow = np.zeros(key_hash.size, bool)
        if self.hashes.size:
            pos = np.minimum(np.searchsorted(self.hashes, key_hash), self.hashes.size - 1)
            hit = self.hashes[pos] == key_hash
            cand = self.hash_slot[pos]
            same = hit.copy()
            for col, part in zip(self.columns, keys):
                same &= col.a[cand] == part
            slot[same] = cand[same]
            slow = hit & ~same  # a collision with an earlier key, or a key that collided before
        fresh = np.nonzero((slot < 0) & ~slow)[0]
        if fresh.size:
            # two new keys of one hash (a collision inside the batch): the later ones go the slow way
            fh = key_hash[fresh]
            order = np.argsort(fh, kind="stable")
            dup = np.zeros(fresh.size, bool)
            dup[order[1:]] = fh[order[1:]] == fh[order[:-1]]
            slow[fresh[dup]] = True
            fresh = fresh[~dup]
            new = self._append(tuple(part[fresh] for part in keys))
            slot[fresh] = new
            by_hash = np.argsort(key_hash[fresh], kind="stable")  # np.insert keeps the order it is given
            nh, new = key_hash[fresh][by_hash], new[by_hash]
            at = np.searchsorted(self.hashes, nh)
            self.hashes = np.insert(self.hashes, at, nh)
            self.hash_slot = np.insert(self.hash_slot, at, new)
        if slow.any():
            for g in np.nonzero(slow)[0].tolist():
                key = tuple(int(part[g]) for part in keys)
                s = self.collided.get(key)
                if s is None:
                    s = self.collided[key] = int(self._append(tuple(part[g : g + 1] for part in keys))[0])
                slot[g] = s
        return slot

    def find_many(self, keys: tuple[np.ndarray, ...]) -> np.ndarray:
        """The slot of each key (columns, as :meth:`lookup` takes them), -1 where a key has none; nothing
        is added."""
        slot = np.full(len(keys[0]), -1, np.int64)
        if not self.n or not slot.size:
            return slot
        if self.hashes.size:
            h = _key_hash(_key_columns(*keys))
            pos = np.minimum(np.searchsorted(self.hashes, h), self.hashes.size - 1)
            cand = self.hash_slot[pos]
            same = self.hashes[pos] == h
            for col, part in zip(self.columns, keys):
                same &= col.a[cand] == part
            slot[same] = cand[same]
        if self.collided:  # keys whose hash another key holds
            for j in np.flatnonzero(slot < 0).tolist():
                got = self.collided.get(tuple(int(c[j]) for c in keys))
                if got is not None:
                    slot[j] = got
        return slot

    def find(self, key: tuple) -> int | None:
        """The slot of one key tuple, or None."""
        s = self.collided.get(key)
        if s is not None or not self.hashes.size:
            return s
        h = _key_hash(_key_columns(*([v] for v in key)))
        pos = min(int(np.searchsorted(self.hashes, h[0])), self.hashes.size - 1)
        if self.hashes[pos] != h[0]:
            return None
        s = int(self.hash_slot[pos])
        return s if self[s] == tuple(key) else None


@dataclass(slots=True)
class RawFlows:
    """What the builder hands to the naming stage and the record writer."""

    slot_keys: SlotTable  # slot -> canonical 5-tuple
    flow_slot: np.ndarray
    pk_a: np.ndarray
    pk_b: np.ndarray
    by_a: np.ndarray
    by_b: np.ndarray
    first_ns: np.ndarray
    last_ns: np.ndarray
    first_rec: np.ndarray
    first_from_a: np.ndarray
    encapsulated: np.ndarray
    fragments: np.ndarray
    stun_counts: np.ndarray  # (flows, 5): request, indication, success, error, channel data
    interface_mask: np.ndarray  # uint64 per flow: bit i set when the flow had a packet on interface i < 64
    tcp: dict[int, TcpFacts]
    icmp: dict[int, list[tuple[IcmpError, bool]]]  # (error, quoted packet went a->b)
    evidence: dict[int, list[Evidence]]
    undecoded: Counter = field(default_factory=Counter)
    dns_parsed: dict[int, object] = field(default_factory=dict)  # record -> DNS parse (or DecodeError) made early
    decoded: int = 0
    interfaces_high: dict[int, set] = field(default_factory=dict)  # flow -> interfaces numbered 64 and up
    duplicates: int = 0  # packets dropped as duplicates (counted in undecoded["duplicate"] too)


@dataclass(slots=True)
class Grouped:
    """The stateless half of adding a batch: which packets decoded, their canonical 5-tuples
    grouped, and the STUN / TURN ChannelData datagrams among them.  A pure function of the
    batch (:func:`group_batch`), so the reader's second process can make it."""

    undecoded: list[tuple[str, int]]  # (reason, packets)
    pidx: np.ndarray  # batch indices of the decoded packets; the arrays below follow this order
    proto: np.ndarray  # int64
    src_a: np.ndarray  # bool: the source is the canonical "a" endpoint, the smaller (address, port)
    perm: np.ndarray  # stable order grouping each 5-tuple's packets, capture order within a group
    first_pos: np.ndarray  # each group's first packet
    inv: np.ndarray  # each packet's group
    keys: tuple[np.ndarray, ...]  # per group: proto, ip version, a_hi, a_lo, b_hi, b_lo, a_port, b_port
    key_hash: np.ndarray  # per group: the 64-bit hash of its key (:func:`_key_hash`; equal for different keys only on a collision)
    stun_at: np.ndarray  # packets that are STUN messages (RFC 8489 section 5)
    stun_cls: np.ndarray  # their class: 0 request, 1 indication, 2 success, 3 error
    chan_at: np.ndarray  # packets that are TURN ChannelData (RFC 8656 section 12.4)
    # the batch's half of the duplicate search (:func:`dup_prefilter`), made beside the reader; None: not made
    dup_key: np.ndarray | None = None  # each packet's prefilter key (32 bits)
    dup_prev: np.ndarray | None = None  # the latest earlier packet of the batch with the same key, -1: none
    # the packets that may become evidence (:func:`evidence_candidates`), in capture order; None: not made
    ev_cand: np.ndarray | None = None
    ev_idle_ns: int = 0  # the idle split the candidates were chosen under


def _key_hash(cols) -> np.ndarray:
    """A 64-bit hash per row of up to 8 uint64 columns (for 5-tuples: proto<<8|version, a_hi, a_lo,
    b_hi, b_lo, a_port<<16|b_port); by the compiled helper where it is built (``_group.c``: 8 columns
    of a 23,000-packet batch in about a tenth of numpy's time), else :func:`_key_hash_numpy`."""
    assert len(cols) <= len(_K)
    if GROUP is not None and cols and all(type(c) is np.ndarray and c.dtype == np.uint64 for c in cols):
        out = np.empty(cols[0].size, np.uint64)
        GROUP.key_hash(tuple(np.ascontiguousarray(c) for c in cols), _HASH_MULTIPLIERS, out)
        return out
    return _key_hash_numpy(cols)


def _key_hash_numpy(cols) -> np.ndarray:
    """:func:`_key_hash` in numpy (the pure-Python twin of ``_group.c``'s key_hash)."""
    with np.errstate(over="ignore"):
        h = np.zeros(cols[0].size, np.uint64)
        for c, k in zip(cols, _K):
            h = (h ^ c) * k
            h ^= h >> np.uint64(29)
    return h


def _key_columns(proto, ver, ah, al, bh, bl, ap, bp) -> tuple[np.ndarray, ...]:
    """The columns :func:`_key_hash` hashes, from the eight parts of canonical 5-tuples."""
    ports = ((np.asarray(ap, np.int64) << 16) | np.asarray(bp, np.int64)).astype(np.uint64)
    pv = ((np.asarray(proto, np.int64) << 8) | np.asarray(ver, np.int64)).astype(np.uint64)
    return (pv, np.asarray(ah, np.uint64), np.asarray(al, np.uint64), np.asarray(bh, np.uint64),
            np.asarray(bl, np.uint64), ports)


def _groups_numpy(d: F.Decoded, pidx: np.ndarray) -> tuple[np.ndarray, ...]:
    """The canonical 5-tuples of the decoded packets ``pidx`` and their grouping (the pure-Python twin of
    :func:`_groups_compiled`): proto, ip version, a_hi, a_lo, b_hi, b_lo, a_port, b_port and src_a per
    packet, the key hashes, then ``perm`` (a stable argsort of the hashes), each group's first packet and
    each packet's group; keys that share a hash are grouped exactly."""
    proto = d.proto[pidx].astype(np.int64)
    ver = d.ip_version[pidx].astype(np.int64)
    # ---- canonical bidirectional key: the "a" endpoint is the smaller (addr, port)
    sh, sl, dh, dl = d.src_hi[pidx], d.src_lo[pidx], d.dst_hi[pidx], d.dst_lo[pidx]
    sp = np.maximum(d.sport[pidx], 0).astype(np.int64)
    dp = np.maximum(d.dport[pidx], 0).astype(np.int64)
    src_a = (sh < dh) | ((sh == dh) & ((sl < dl) | ((sl == dl) & (sp <= dp))))
    ah, al, ap = np.where(src_a, sh, dh), np.where(src_a, sl, dl), np.where(src_a, sp, dp)
    bh, bl, bp = np.where(src_a, dh, sh), np.where(src_a, dl, sl), np.where(src_a, dp, sp)
    cols = _key_columns(proto, ver, ah, al, bh, bl, ap, bp)
    h = _key_hash(cols)
    # one stable sort groups the batch: ``perm`` lists each 5-tuple's packets together, in capture order
    perm = np.argsort(h, kind="stable")
    hs = h[perm]
    newgrp = np.ones(perm.size, bool)
    newgrp[1:] = hs[1:] != hs[:-1]
    first_pos = perm[newgrp]
    inv = np.empty(perm.size, np.int64)
    inv[perm] = np.cumsum(newgrp) - 1
    if not all(np.array_equal(c, c[first_pos][inv]) for c in cols):  # a hash collision: group exactly
        stacked = np.stack([c.astype(np.uint64) for c in cols], axis=1)
        _, first_pos, inv = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        perm = np.argsort(inv, kind="stable")
    return proto, ver, ah, al, bh, bl, ap, bp, src_a, h, perm, first_pos, inv


_GROUP_INPUTS = (("proto", np.int16), ("ip_version", np.int8), ("src_hi", np.uint64), ("src_lo", np.uint64),
                 ("dst_hi", np.uint64), ("dst_lo", np.uint64), ("sport", np.int32), ("dport", np.int32))
_GROUP_OUTPUTS = (np.int64, np.int64, np.uint64, np.uint64, np.uint64, np.uint64, np.int64, np.int64, np.bool_,
                  np.uint64, np.int64, np.int64, np.int64)  # _group.c's out tuple: proto ... src_a, hash, perm, first, inv
_HASH_MULTIPLIERS = tuple(int(k) for k in _K)  # group_keys reads the first six


def _groups_compiled(d: F.Decoded, pidx: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """:func:`_groups_numpy` by the compiled helper (``_group.c``: about five times faster on a batch),
    or None where the numpy twin must do it: columns of other types, or two keys of one hash."""
    cols = []
    for name, dtype in _GROUP_INPUTS:
        c = getattr(d, name)
        if c is None or c.dtype != dtype or not c.flags.c_contiguous:
            return None
        cols.append(c)
    n = pidx.size
    out = tuple(np.empty(n, dt) for dt in _GROUP_OUTPUTS)
    groups, collided = GROUP.group_keys(np.ascontiguousarray(pidx, np.int64), *cols, _HASH_MULTIPLIERS, out)
    if collided:
        return None
    return out[:11] + (out[11][:groups], out[12])


def group_batch(data, d: F.Decoded) -> Grouped:
    """Group a decoded batch by canonical 5-tuple (see :class:`Grouped`)."""
    ok = d.reason == F.OK
    bad = ~ok
    undecoded: list[tuple[str, int]] = []
    if bad.any():
        for code, cnt in zip(*np.unique(d.reason[bad], return_counts=True)):
            undecoded.append((F.REASONS[int(code)], int(cnt)))
    pidx = np.nonzero(ok)[0]
    got = _groups_compiled(d, pidx) if GROUP is not None else None
    if got is None:
        got = _groups_numpy(d, pidx)
    proto, ver, ah, al, bh, bl, ap, bp, src_a, h, perm, first_pos, inv = got
    keys = (proto[first_pos], ver[first_pos], ah[first_pos], al[first_pos], bh[first_pos], bl[first_pos],
            ap[first_pos], bp[first_pos])

    # ---- STUN and TURN ChannelData, looked for in UDP payloads only (RFC 8489 section 5, RFC 8656 section 12.4)
    stun_at = chan_at = np.zeros(0, np.int64)
    stun_cls = np.zeros(0, np.int8)
    pcap_ = d.payload_cap[pidx]
    ui = np.nonzero((proto == F.PROTO_UDP) & (pcap_ >= 4))[0]
    if ui.size:
        ustun, ucls, uchan = _stun_datagrams(data, d.payload[pidx[ui]], pcap_[ui], d.payload_len[pidx[ui]])
        stun_at, stun_cls, chan_at = ui[ustun], ucls, ui[uchan]
    return Grouped(undecoded, pidx, proto, src_a, perm, first_pos, inv, keys, h[first_pos], stun_at, stun_cls,
                   chan_at)


MS_TURN_FIRST_ATTRIBUTE = (0x000F0004, 0x72C64BC6)  # [MS-TURN] 2.2.2.8: MAGIC-COOKIE, length 4, first
MS_TURN_INDICATIONS = (0x0004, 0x0115)  # [MS-TURN] 2.2.1: Send request (never answered), Data Indication


def _stun_datagrams(data, pay, cap, plen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_stun_datagrams_numpy` by the compiled helper where it is built (``_group.c``: one pass over the
    payloads instead of a dozen gathers), else in numpy."""
    if GROUP is not None and all(type(c) is np.ndarray and c.dtype == np.int64 for c in (pay, cap, plen)):
        n = pay.size
        ustun, cls, uchan = np.empty(n, bool), np.empty(n, np.int8), np.empty(n, bool)
        if GROUP.stun_datagrams(data, np.ascontiguousarray(pay), np.ascontiguousarray(cap), np.ascontiguousarray(plen),
                                STUN_COOKIE, MS_TURN_FIRST_ATTRIBUTE, MS_TURN_INDICATIONS, ustun, cls, uchan):
            return ustun, cls[ustun], uchan
    return _stun_datagrams_numpy(F._Gather(data), pay, cap, plen)


def _stun_datagrams_numpy(g, pay, cap, plen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which UDP datagrams (payload offsets ``pay``, captured and wire lengths) are STUN messages,
    their classes (0 request, 1 indication, 2 success, 3 error), and which are TURN ChannelData.

    STUN: first byte 0-3 (RFC 7983), then either the RFC 8489 magic cookie with a length that is a
    multiple of 4, or an MS-TURN message (whose first attribute is MAGIC-COOKIE, [MS-TURN] 2.2.2.8,
    with or without the RFC cookie, unpadded) whose length fills the datagram.  MS-TURN's Send
    request (0x0004, no response allowed) and Data Indication (0x0115) are indications, whatever
    the RFC 8489 class bits of their types say.  ChannelData (RFC 8656 section 12.4): channel
    0x4000-0x4FFF and a length that fits the datagram with at most 3 bytes of padding;
    :func:`meshpcap.flows.records.build_records` keeps the count only for flows that also spoke STUN."""
    b0 = g.u8(pay)
    mtype = g.u16(pay)
    mlen = g.u16(pay + 2)
    cookie = g.u32(pay + 4)
    ms_turn = (cap >= 28) & (mlen + 20 == plen) & (g.u32(pay + 20) == MS_TURN_FIRST_ATTRIBUTE[0]) \
        & (g.u32(pay + 24) == MS_TURN_FIRST_ATTRIBUTE[1])
    ustun = (cap >= 20) & (b0 < 4) & (((cookie == STUN_COOKIE) & ((mlen & 3) == 0)) | ms_turn)
    cls = (((mtype >> 4) & 1) | ((mtype >> 7) & 2)).astype(np.int8)
    cls[ms_turn & np.isin(mtype, MS_TURN_INDICATIONS)] = 1
    spare = plen - 4 - mlen
    uchan = (b0 >= 0x40) & (b0 <= 0x4F) & (spare >= 0) & (spare <= 3)
    return ustun, cls[ustun], uchan


# Decoded columns FlowBuilder.add does not read for a batch that prepare grouped
UNUSED_WHEN_PREPARED = ("proto", "dst_hi", "dst_lo", "ip_id", "frag_offset", "more_frags", "tcp_ack", "l4")


def prepare(batch, d: F.Decoded, trim: bool = False) -> Grouped | None:
    """:func:`group_batch` where it does not depend on earlier batches: None for a batch with
    IP fragments, whose later fragments take their ports from state (FlowBuilder._fragments).

    With ``trim``, a batch it grouped loses the :data:`UNUSED_WHEN_PREPARED` columns of ``d``
    (set to None), so that less crosses from the reader's process."""
    if len(batch) == 0 or ((d.reason == F.OK) & (d.more_frags | (d.frag_offset > 0))).any():
        return None
    grouped = group_batch(batch.data, d)
    dup_prefilter(batch, d, grouped)
    evidence_candidates(batch, d, grouped)
    if trim:
        for name in UNUSED_WHEN_PREPARED:
            setattr(d, name, None)
    return grouped


def evidence_candidates(batch, d: F.Decoded, gb: Grouped, idle_ns: int = UDP_IDLE_NS) -> None:
    """The packets of the batch that FlowBuilder._evidence may keep, a superset made without the
    builder's state (so the reader's second process can make it, and the builder ranks only these):
    TCP and UDP packets with payload whose rank among the payload packets of their 5-tuple and
    direction, counted from the latest packet of the 5-tuple in the batch that could start a flow,
    is under the bound of their kind, and every STUN message.  Flows start only at such packets
    (the 5-tuple's first in the batch, a TCP SYN without ACK, a UDP datagram after more than
    ``idle_ns`` of silence), so a packet's rank in its flow is at least the rank counted here: a
    packet left out is past its bound, and so is every later payload of its flow direction in the
    batch, after at least that many candidates of its own.  Set on ``gb`` (``ev_cand``, indices into
    ``gb.pidx``, with ``ev_idle_ns``): valid for a builder whose idle split is ``idle_ns`` or longer.
    By the compiled helper where it is built (``_group.c``: one pass instead of a dozen), else
    :func:`_evidence_candidates_numpy`."""
    cols = (gb.pidx, gb.perm, gb.proto, gb.inv, gb.src_a, gb.keys[6], gb.keys[7], gb.stun_at, d.payload_cap,
            d.tcp_flags, batch.ts_ns)
    if GROUP is not None and all(type(c) is np.ndarray and c.dtype == dt for c, dt in zip(cols, _CANDIDATE_INPUTS)):
        out = np.empty(gb.pidx.size, np.int32)
        k = GROUP.evidence_candidates(*(np.ascontiguousarray(c) for c in cols), out, idle_ns,
                                      (EVIDENCE_TCP, EVIDENCE_UDP, EVIDENCE_DNS), DNS_PORTS)
        gb.ev_cand = out[:k]
        gb.ev_idle_ns = idle_ns
        return
    _evidence_candidates_numpy(batch, d, gb, idle_ns)


# the dtypes of the columns _group.c's keep_evidence reads (FlowBuilder._evidence)
_KEEP_INPUTS = (np.int32, np.int64, np.bool_, np.bool_, np.bool_, np.int64, np.int64, np.int32, np.int32, np.int64,
                np.int64, np.int64, np.int16, np.int64)

# the dtypes of what _group.c's evidence_candidates reads (Grouped's columns, then the batch's)
_CANDIDATE_INPUTS = (np.int64, np.int64, np.int64, np.int64, np.bool_, np.int64, np.int64, np.int64, np.int64,
                     np.int16, np.int64)


def _evidence_candidates_numpy(batch, d: F.Decoded, gb: Grouped, idle_ns: int = UDP_IDLE_NS) -> None:
    """:func:`evidence_candidates` in numpy (the twin of ``_group.c``'s)."""
    pidx, o = gb.pidx, gb.perm
    n = pidx.size
    po = pidx[o]  # perm order from here on: each 5-tuple's packets together, in capture order
    proto_o = gb.proto[o]
    tcp_o, udp_o = proto_o == F.PROTO_TCP, proto_o == F.PROTO_UDP
    pay_o = (d.payload_cap[po] > 0) & (tcp_o | udp_o)
    inv_o = gb.inv[o]
    start = np.ones(n, bool)  # a packet that could start a flow
    start[1:] = inv_o[1:] != inv_o[:-1]
    start |= tcp_o & ((d.tcp_flags[po] & (TCP_SYN | TCP_ACK)) == TCP_SYN)
    ts_o = batch.ts_ns[po]
    gap = np.zeros(n, bool)
    gap[1:] = (ts_o[1:] - ts_o[:-1]) > idle_ns
    start |= udp_o & gap
    seg = np.maximum.accumulate(np.where(start, np.arange(n), 0))  # each packet's segment's first packet
    a_o = gb.src_a[o]
    ranks = []
    for side in (a_o, ~a_o):  # each payload's rank among its direction's in its segment (others: unused)
        m = pay_o & side
        c = np.cumsum(m)
        ranks.append(c - 1 - (c[seg] - m[seg]))
    rank = np.where(a_o, ranks[0], ranks[1])
    dns_g = np.zeros(gb.keys[6].size, bool)  # per 5-tuple, from its ports
    for port in DNS_PORTS:
        dns_g |= (gb.keys[6] == port) | (gb.keys[7] == port)
    bound = np.where(tcp_o, EVIDENCE_TCP, np.where(dns_g[inv_o], EVIDENCE_DNS, EVIDENCE_UDP))
    stun = np.zeros(n, bool)
    stun[gb.stun_at] = True
    keep = pay_o & ((rank < bound) | stun[o])
    gb.ev_cand = np.sort(o[keep]).astype(np.int32)
    gb.ev_idle_ns = idle_ns


def _without(g: Grouped, drop: np.ndarray) -> Grouped:
    """``g`` as :func:`group_batch` makes it when the batch packets in ``drop`` are left out."""
    keep = ~drop[g.pidx]
    new_pos = np.cumsum(keep) - 1  # position of each kept packet among the kept
    old_inv = g.inv[keep]
    alive = np.zeros(g.first_pos.size, bool)
    alive[old_inv] = True
    renumber = np.cumsum(alive) - 1
    inv = renumber[old_inv]
    perm = np.argsort(inv, kind="stable")  # groups in their old (hash) order, capture order within
    starts = np.ones(perm.size, bool)
    starts[1:] = inv[perm][1:] != inv[perm][:-1]
    stun_kept, chan_kept = keep[g.stun_at], keep[g.chan_at]
    return Grouped(g.undecoded, g.pidx[keep], g.proto[keep], g.src_a[keep], perm, perm[starts], inv,
                   tuple(k[alive] for k in g.keys), g.key_hash[alive], new_pos[g.stun_at[stun_kept]],
                   g.stun_cls[stun_kept], new_pos[g.chan_at[chan_kept]])


def dup_prefilter(batch, d: F.Decoded, gb: Grouped) -> None:
    """The part of the duplicate search that needs no earlier batch (so the reader's second process
    can make it): each decoded packet's prefilter key (5-tuple, direction, IP length, TCP sequence
    number and flags, payload length, TTL, captured length, hashed to 32 bits) and the latest earlier
    packet of the batch with the same key; set on ``gb``."""
    keys = _dup_keys(batch, d, gb).astype(np.uint32)  # 32-bit columns: half as much to send
    gb.dup_key, gb.dup_prev = keys, _dup_links(keys)


def _dup_links(keys: np.ndarray) -> np.ndarray:
    """For each packet, the latest earlier packet of the batch with the same key (uint32), or -1 (int32): by the
    compiled helper where it is built (``_group.c`` dup_links: a hash table, one pass), else
    :func:`_dup_links_numpy`."""
    prev = np.empty(keys.size, np.int32)
    if GROUP is not None and keys.size < 1 << 31:
        GROUP.dup_links(np.ascontiguousarray(keys, np.uint32), prev)
        return prev
    return _dup_links_numpy(keys)


def _dup_links_numpy(keys: np.ndarray) -> np.ndarray:
    """:func:`_dup_links` by a sort (the twin of ``_group.c``'s)."""
    # sorted by key, capture order within a key: the position in the low 32 bits makes every
    # value distinct, so the faster unstable sort gives the stable order
    order = np.sort((keys.astype(np.uint64) << np.uint64(32)) | np.arange(keys.size, dtype=np.uint64))
    same = (order[1:] >> np.uint64(32)) == (order[:-1] >> np.uint64(32))
    pos = (order & np.uint64(0xFFFFFFFF)).astype(np.int32)
    prev = np.full(keys.size, -1, np.int32)
    prev[pos[1:][same]] = pos[:-1][same]
    return prev


def _first_of_keys(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each of the keys ``wanted`` (the duplicate search gives each once), the first packet whose key
    (``keys``, uint32) it is, or -1 (int64): by the compiled helper where it is built (``_group.c``
    first_of_keys, one pass), else :func:`_first_of_keys_numpy`."""
    first = np.empty(wanted.size, np.int64)
    if GROUP is not None:
        GROUP.first_of_keys(np.ascontiguousarray(keys, np.uint32), np.ascontiguousarray(wanted, np.uint32), first)
        return first
    return _first_of_keys_numpy(keys, wanted)


def _first_of_keys_numpy(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """:func:`_first_of_keys` by a stable sort (the twin of ``_group.c``'s)."""
    if keys.size == 0:
        return np.full(wanted.size, -1, np.int64)
    order = np.argsort(keys, kind="stable")
    at = np.minimum(np.searchsorted(keys[order], wanted), keys.size - 1)
    return np.where(keys[order][at] == wanted, order[at], -1).astype(np.int64)


def _dup_keys(batch, d: F.Decoded, gb: Grouped) -> np.ndarray:
    """dup_prefilter's key of each decoded packet (the upper 32 bits of the hash of its columns), by the
    compiled helper where it is built (``_group.c`` dup_keys: one pass instead of eight gathers), else
    :func:`_dup_keys_numpy`."""
    pidx = gb.pidx
    cols = (pidx, gb.inv, gb.key_hash, gb.src_a, d.ip_len, d.tcp_seq, d.tcp_flags, d.payload_len, d.ttl, batch.caplen)
    if GROUP is not None and all(type(c) is np.ndarray and c.dtype == dt for c, dt in zip(cols, _DUP_INPUTS)):
        out = np.empty(pidx.size, np.uint64)
        GROUP.dup_keys(*(np.ascontiguousarray(c) for c in cols), _HASH_MULTIPLIERS, out)
        return out
    return _dup_keys_numpy(batch, d, gb)


_DUP_INPUTS = (np.int64, np.int64, np.uint64, np.bool_, np.int64, np.int64, np.int16, np.int64, np.uint8, np.int64)


def _dup_keys_numpy(batch, d: F.Decoded, gb: Grouped) -> np.ndarray:
    """:func:`_dup_keys` in numpy (the twin of ``_group.c``'s)."""
    pidx = gb.pidx
    cols = [gb.key_hash[gb.inv], gb.src_a.astype(np.uint64), d.ip_len[pidx].astype(np.uint64),
            d.tcp_seq[pidx].astype(np.uint64), d.tcp_flags[pidx].astype(np.uint64),
            d.payload_len[pidx].astype(np.uint64), d.ttl[pidx].astype(np.uint64),
            batch.caplen[pidx].astype(np.uint64)]
    return _key_hash_numpy(cols) >> np.uint64(32)


def _same_bytes(a, a_off: np.ndarray, a_cap: np.ndarray, b, b_off: np.ndarray, b_cap: np.ndarray) -> np.ndarray:
    """For each pair, whether ``a[a_off:a_off + a_cap] == b[b_off:b_off + b_cap]`` (the duplicate search's byte
    comparison), by the compiled helper where it is built (``_group.c`` same_bytes), else one pair at a time."""
    out = np.zeros(a_off.size, bool)
    if GROUP is not None:
        GROUP.same_bytes(a, a_off, a_cap, b, b_off, b_cap, out)
        return out
    return _same_bytes_py(a, a_off, a_cap, b, b_off, b_cap, out)


def _same_bytes_py(a, a_off, a_cap, b, b_off, b_cap, out: np.ndarray) -> np.ndarray:
    """:func:`_same_bytes` in Python (the twin of ``_group.c``'s)."""
    for i, (p, k, q, j) in enumerate(zip(a_off.tolist(), a_cap.tolist(), b_off.tolist(), b_cap.tolist())):
        out[i] = a[p : p + k] == b[q : q + j]
    return out


class _DuplicateFinder:
    """Finds copies among the decoded packets, across batches (see DUP_WINDOW_NS): a prefilter key
    per packet from the decoded columns (:func:`dup_prefilter`, made per batch), and a byte comparison
    only for the packets whose key equals the latest earlier one's within the window: in the batch,
    or else among the last ``packets`` decoded packets of earlier batches (the tail)."""

    def __init__(self, window_ns: int = DUP_WINDOW_NS, packets: int = DUP_PACKETS) -> None:
        self.window_ns = window_ns
        self.packets = packets
        # the last `packets` decoded packets of earlier batches: keys, timestamps, interfaces, and their
        # bytes as one copied run of the batch (tail_blob[tail_off[i]:tail_off[i] + tail_cap[i]])
        self.tail_key = np.zeros(0, np.uint32)
        self.tail_ts = np.zeros(0, np.int64)
        self.tail_iface = np.zeros(0, np.int64)
        self.tail_blob = b""
        self.tail_off = np.zeros(0, np.int64)
        self.tail_cap = np.zeros(0, np.int64)

    def find(self, batch, d: F.Decoded, gb: Grouped) -> tuple[np.ndarray, np.ndarray]:
        """Masks over the decoded packets (``gb.pidx``): those that copy an earlier one, and those of
        them whose original came on another interface."""
        if gb.dup_key is None:
            dup_prefilter(batch, d, gb)
        keys, prev_in = gb.dup_key, gb.dup_prev
        pidx = gb.pidx
        n = pidx.size
        nt = self.tail_key.size
        # each packet's columns are gathered only where they are compared (pairs of one key) or kept (the tail)
        at_of = pidx.astype(np.int64, copy=False).__getitem__
        ts_all, iface_all, off_all, cap_all, data = batch.ts_ns, batch.interface, batch.offset, batch.caplen, batch.data

        def cols(pos: np.ndarray) -> tuple[np.ndarray, ...]:
            """Time, interface, offset and captured length of the decoded packets at ``pos`` (int64)."""
            at = at_of(pos)
            return (ts_all[at].astype(np.int64), iface_all[at].astype(np.int64), off_all[at].astype(np.int64),
                    cap_all[at].astype(np.int64))

        # pairs inside the batch: a packet and the latest earlier one of its key
        cur = np.flatnonzero(prev_in >= 0)
        prev = prev_in[cur].astype(np.int64)
        (ts_c, if_c, off_c, cap_c), (ts_p, if_p, off_p, cap_p) = cols(cur), cols(prev)
        near = (cur - prev <= self.packets) & (np.abs(ts_c - ts_p) < self.window_ns)
        copy = np.zeros(n, bool)
        other_iface = np.zeros(n, bool)
        if near.any():
            cur, if_c, if_p = cur[near], if_c[near], if_p[near]
            same = _same_bytes(data, off_c[near], cap_c[near], data, off_p[near], cap_p[near])
            copy[cur[same]] = True
            other_iface[cur[same]] = if_c[same] != if_p[same]
        if nt and n:  # a batch's first packet of a key and the tail's latest packet of that key
            tail_order = np.sort((self.tail_key.astype(np.uint64) << np.uint64(32)) | np.arange(nt, dtype=np.uint64))
            tail_keys = (tail_order >> np.uint64(32)).astype(np.uint32)
            latest = np.ones(nt, bool)  # the tail's latest packet of each key
            latest[:-1] = tail_keys[1:] != tail_keys[:-1]
            tail_keys, tail_pos = tail_keys[latest], (tail_order[latest] & np.uint64(0xFFFFFFFF)).astype(np.int64)
            first = _first_of_keys(keys, tail_keys)
            hit = first >= 0
            c2, p2 = first[hit], tail_pos[hit]
            ts2, if2, off2, cap2 = cols(c2)
            near2 = (c2 + nt - p2 <= self.packets) & (np.abs(ts2 - self.tail_ts[p2]) < self.window_ns)
            if near2.any():  # a packet's first of its key in the batch: no pair inside the batch marked it
                c2, p2, if2 = c2[near2], p2[near2], if2[near2]
                same = _same_bytes(data, off2[near2], cap2[near2], self.tail_blob, self.tail_off[p2], self.tail_cap[p2])
                copy[c2[same]] = True
                other_iface[c2[same]] = if2[same] != self.tail_iface[p2[same]]
        last = np.arange(n - min(self.packets, n), n, dtype=np.int64)  # the batch's part of the new tail
        ts_t, if_t, off_t, cap_t = cols(last)
        self._keep_tail(data, off_t, cap_t, keys[last], ts_t, if_t)
        return copy, other_iface

    def _keep_tail(self, data, off, cap, keys, ts, iface) -> None:
        """The new tail: the last ``packets`` decoded packets, this batch's included (``off``, ``cap``,
        ``keys``, ``ts``, ``iface``: the batch's last packets, up to ``packets`` of them, or all); their
        bytes copied as one run (one slice instead of one per packet)."""
        n, nt = keys.size, self.tail_key.size
        keep = min(self.packets, nt + n)
        from_batch = min(keep, n)
        old = keep - from_batch
        if from_batch:
            o, c = off[n - from_batch :].astype(np.int64), cap[n - from_batch :].astype(np.int64)
            lo, hi = int(o.min()), int((o + c).max())
            if hi - lo <= 2 * int(c.sum()) + 65536:
                blob, b_off = data[lo:hi], o - lo
            else:  # decoded packets far apart (among many that did not decode): copy only theirs
                blob = b"".join([data[p : p + k] for p, k in zip(o.tolist(), c.tolist())])
                b_off = np.cumsum(c) - c
        else:
            blob, b_off, c = b"", np.zeros(0, np.int64), np.zeros(0, np.int64)
        if old:
            t_off, t_cap = self.tail_off[nt - old :], self.tail_cap[nt - old :]
            lo = int(t_off.min())
            head = self.tail_blob[lo : int((t_off + t_cap).max())]
            blob, b_off, c = head + blob, np.concatenate([t_off - lo, b_off + len(head)]), np.concatenate([t_cap, c])
            keys, ts, iface = (np.concatenate([self.tail_key[nt - old :], keys]),
                               np.concatenate([self.tail_ts[nt - old :], ts]),
                               np.concatenate([self.tail_iface[nt - old :], iface]))
        # kept for the next batch: copies (the batch's keys may be the reader's memory, see Capture.batches_with)
        self.tail_key = keys[keys.size - keep :].copy()
        self.tail_ts, self.tail_iface = ts[ts.size - keep :].copy(), iface[iface.size - keep :].copy()
        self.tail_blob, self.tail_off, self.tail_cap = blob, b_off, c


class FlowBuilder:
    """Feed it decoded batches in capture order; ``finish()`` returns :class:`RawFlows`."""

    def __init__(self, idle_ns: int = UDP_IDLE_NS, evidence: bool = True, max_flows: int | None = None,
                 duplicates: bool = True) -> None:
        self.idle_ns = idle_ns
        self.dups = _DuplicateFinder() if duplicates else None  # None: every packet counts, duplicates too
        self.duplicates = 0
        self.dropped: np.ndarray | None = None  # the last batch's packets dropped as copies (a mask over it), or None
        self.strong_copies = 0  # copies seen that no endpoint would send (see DUP_SYSTEMATIC)
        self.f_ifmask = _Grow(np.uint64)
        self.if_high: dict[int, set] = {}
        # while every batch so far came on one interface below 64, the same one: that interface, and the flows
        # marked with it so far (all of them); -1 once a batch did not (see _count)
        self.if_only: int | None = None
        self.if_marked = 0
        self.max_flows = max_flows  # None or 0: no limit (see FlowLimitError)
        self.keep_evidence = evidence
        self.slot_keys = SlotTable()  # canonical 5-tuple of each slot; a slot holds one 5-tuple's flows in turn
        self.slot_cur = _Grow(np.int64, -1)
        self.slot_last = _Grow(np.int64, 0)
        self.nflows = 0
        self.f_slot = _Grow(np.int64)
        self.f_pk_a = _Grow(np.int64)
        self.f_pk_b = _Grow(np.int64)
        self.f_by_a = _Grow(np.int64)
        self.f_by_b = _Grow(np.int64)
        self.f_first = _Grow(np.int64, np.iinfo(np.int64).max)
        self.f_last = _Grow(np.int64, np.iinfo(np.int64).min)
        self.f_first_rec = _Grow(np.int64, np.iinfo(np.int64).max)
        self.f_first_a = _Grow(bool)
        self.f_encap = _Grow(bool)
        self.f_frag = _Grow(np.int64)  # IP fragments that are not the last of their datagram
        self.f_pay_a = _Grow(np.int64)  # payload packets seen so far per direction (evidence ranks)
        self.f_pay_b = _Grow(np.int64)
        self.f_stun_a = _Grow(np.int64)
        self.f_stun_b = _Grow(np.int64)
        self.f_stun = np.zeros((1024, 5), np.int64)
        self.tcp: dict[int, TcpFacts] = {}
        self.icmp: dict[int, list[tuple[IcmpError, bool]]] = {}
        self.evidence: defaultdict[int, list[Evidence]] = defaultdict(list)
        self.dns_new: list[Evidence] = []  # DNS datagrams kept since the caller last took them
        self.dns_parsed: dict[int, object] = {}  # record -> parse, filled by naming.prefetch_dns
        self.frags: dict[tuple, tuple[int, int]] = {}
        self.undecoded: Counter = Counter()
        self.decoded = 0

    # ------------------------------------------------------------------ flows
    def _new_flow(self, slot: int, record: int, from_a: bool, ns: int) -> int:
        fid = self.nflows
        if self.max_flows and fid >= self.max_flows:
            raise FlowLimitError(self.max_flows)
        self.nflows += 1
        if self.nflows > len(self.f_slot.a):  # grow every per-flow column at once, doubling
            for g in (self.f_slot, self.f_pk_a, self.f_pk_b, self.f_by_a, self.f_by_b, self.f_first_a, self.f_encap,
                      self.f_frag, self.f_pay_a, self.f_pay_b, self.f_stun_a, self.f_stun_b, self.f_ifmask):
                g.ensure(self.nflows)
            self.f_first.ensure(self.nflows, np.iinfo(np.int64).max)
            self.f_last.ensure(self.nflows, np.iinfo(np.int64).min)
            self.f_first_rec.ensure(self.nflows, np.iinfo(np.int64).max)
        if self.nflows > len(self.f_stun):
            self.f_stun = np.concatenate([self.f_stun, np.zeros_like(self.f_stun)])
        self.f_slot.a[fid] = slot
        self.f_first_a.a[fid] = from_a
        self.slot_cur.a[slot] = fid
        if self.slot_keys.columns[0].a[slot] == F.PROTO_TCP:
            self.tcp[fid] = TcpFacts()
        return fid

    def _new_flows(self, slots: np.ndarray, from_a: np.ndarray) -> np.ndarray:
        """:meth:`_new_flow` for each of ``slots`` in turn (distinct slots, none of them TCP), at once: the
        first packets of a scan's millions of UDP 5-tuples.  Returns the flows' numbers."""
        k = slots.size
        fid0 = self.nflows
        if self.max_flows and fid0 + k > self.max_flows:
            raise FlowLimitError(self.max_flows)
        self.nflows += k
        while self.nflows > len(self.f_slot.a):  # grown by the steps one flow at a time takes (the same sizes)
            n = len(self.f_slot.a) + 1
            for g in (self.f_slot, self.f_pk_a, self.f_pk_b, self.f_by_a, self.f_by_b, self.f_first_a, self.f_encap,
                      self.f_frag, self.f_pay_a, self.f_pay_b, self.f_stun_a, self.f_stun_b, self.f_ifmask):
                g.ensure(n)
            self.f_first.ensure(n, np.iinfo(np.int64).max)
            self.f_last.ensure(n, np.iinfo(np.int64).min)
            self.f_first_rec.ensure(n, np.iinfo(np.int64).max)
        while self.nflows > len(self.f_stun):
            self.f_stun = np.concatenate([self.f_stun, np.zeros_like(self.f_stun)])
        fids = np.arange(fid0, self.nflows, dtype=np.int64)
        self.f_slot.a[fids] = slots
        self.f_first_a.a[fids] = from_a
        self.slot_cur.a[slots] = fids
        return fids

    # ------------------------------------------------------------------ batches
    def add(self, batch, d: F.Decoded, grouped: Grouped | None = None) -> None:
        """Add one decoded batch; ``grouped`` is :func:`group_batch` of it, when already made
        (by :func:`prepare`, beside the reader), else it is made here.

        The steps: group the packets by 5-tuple (less duplicates), map the groups to slots, go
        through the packets that decide flow boundaries one by one, split idle 5-tuples, give
        every packet its flow, then add the batch to the per-flow counters."""
        if len(batch) == 0:
            return
        gb = self._group(batch, d, grouped)
        if gb.pidx.size == 0:
            return
        slot = self.slot_keys.lookup(gb.keys, gb.key_hash)[gb.inv]  # each packet's slot
        self.slot_cur.ensure(len(self.slot_keys), -1)
        self.slot_last.ensure(len(self.slot_keys), 0)
        flow_before = self.slot_cur.a[slot].copy()  # each packet's 5-tuple's flow before this batch (-1: none)
        started = np.full(gb.pidx.size, -1, np.int64)  # the flow a packet starts, -1 where it starts none
        icmp_events = self._packet_events(batch, d, gb, slot, flow_before, started)
        ts = batch.ts_ns[gb.pidx]
        self._idle_splits(batch.first_record, gb, slot, ts, flow_before, started)
        flow = self._flow_of_each_packet(gb, slot, ts, flow_before, started)
        if icmp_events:
            self._icmp_errors(batch.data, d, gb, slot, flow, flow_before, icmp_events)
        self._count(batch, d, gb, flow, ts, prepared=grouped is not None)

    def _group(self, batch, d: F.Decoded, grouped: Grouped | None) -> Grouped:
        """The batch grouped by 5-tuple, without the duplicate packets; counts what did not decode."""
        if grouped is None:
            self._fragments(d, batch.first_record)
            gb = group_batch(batch.data, d)
        else:  # made by prepare: the batch has no IP fragments
            gb = grouped
        for reason, cnt in gb.undecoded:
            self.undecoded[reason] += cnt
        self.dropped = None
        if self.dups is not None:
            dup = self._duplicates(batch, d, gb)
            self.dropped = dup  # for the media pass, which must leave the same copies out (see MediaCollector.add)
            if dup is not None:
                gb = _without(gb, dup)
                self.duplicates += int(dup.sum())
                self.undecoded["duplicate"] += int(dup.sum())
        self.decoded += int(gb.pidx.size)
        return gb

    def _packet_events(self, batch, d: F.Decoded, gb: Grouped, slot, flow_before, started) -> list[tuple[int, int]]:
        """One by one, the packets that decide flow boundaries and outcomes: the first packet of a
        5-tuple without a flow, TCP SYN, FIN and RST, ICMP errors.  Starts flows (noted in
        ``started``) and fills TcpFacts; returns the ICMP errors (position, ns) to match later."""
        pidx = gb.pidx
        flags = d.tcp_flags[pidx].astype(np.int64)
        is_tcp = gb.proto == F.PROTO_TCP
        control = is_tcp & ((flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0)
        icmp4, icmp6 = gb.proto == F.PROTO_ICMP, gb.proto == F.PROTO_ICMPV6
        if icmp4.any() or icmp6.any():
            itype = d.icmp_type[pidx].astype(np.int64)
            icmp_err = (icmp4 & np.isin(itype, F.ICMP4_ERRORS)) | (icmp6 & np.isin(itype, F.ICMP6_ERRORS))
        else:  # the usual batch: no ICMP at all
            icmp_err = np.zeros(pidx.size, bool)
        first_without_flow = np.zeros(pidx.size, bool)
        first_without_flow[gb.first_pos[flow_before[gb.first_pos] < 0]] = True
        events = np.nonzero(control | icmp_err | first_without_flow)[0]
        icmp_events: list[tuple[int, int]] = []  # matched once every packet of the batch has its flow
        # a run of events that only start a flow (the first packet of a 5-tuple that is neither TCP nor an ICMP
        # error: a scan's millions) is started at once, in order; the others one by one, in between
        only_start = (first_without_flow & ~is_tcp & ~icmp_err)[events]
        padded = np.zeros(only_start.size + 2, bool)  # np.diff with prepend and append, without their copies
        padded[1:-1] = only_start
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        done = 0
        for lo, hi in zip(edges[0::2].tolist(), edges[1::2].tolist()):  # the runs of only_start
            if hi - lo < _RUN:
                continue
            self._events(batch, d, gb, slot, events[done:lo], is_tcp, flags, icmp_err, started, icmp_events)
            run = events[lo:hi]
            started[run] = self._new_flows(slot[run], gb.src_a[run])
            done = hi
        self._events(batch, d, gb, slot, events[done:], is_tcp, flags, icmp_err, started, icmp_events)
        return icmp_events

    def _events(self, batch, d: F.Decoded, gb: Grouped, slot, events, is_tcp, flags, icmp_err, started,
                icmp_events: list) -> None:
        """:meth:`_packet_events` of these events (packet positions, in order), one by one."""
        at = gb.pidx[events]
        columns = zip(events.tolist(), slot[events].tolist(), gb.src_a[events].tolist(), is_tcp[events].tolist(),
                      flags[events].tolist(), icmp_err[events].tolist(), batch.ts_ns[at].tolist(),
                      d.tcp_seq[at].tolist(), d.ttl[at].tolist(), (at + batch.first_record).tolist())
        for e, s, from_a, tcp, fl, icmp, ns, seq, ttl, record in columns:
            fid = int(self.slot_cur.a[s])
            created = fid < 0
            if created:
                fid = started[e] = self._new_flow(s, record, from_a, ns)
            if tcp:
                t = self.tcp[fid]
                # a SYN of a new attempt; the same ISN is a retransmitted SYN of the same attempt,
                # even after a RST (Wireshark agrees)
                if fl & TCP_SYN and not fl & TCP_ACK and not created and (t.isn is None or t.isn != seq):
                    fid = started[e] = self._new_flow(s, record, from_a, ns)
                    t = self.tcp[fid]
                _tcp_event(t, fl, from_a, ns, seq, ttl)
            elif icmp:
                icmp_events.append((e, ns))

    def _idle_splits(self, rec0: int, gb: Grouped, slot, ts, flow_before, started) -> None:
        """Start a new flow where a transport without handshakes (not TCP) was silent on its
        5-tuple for more than ``idle_ns`` (across batches too)."""
        order = gb.perm
        for pos in self._idle_positions(gb, slot, ts, flow_before, started).tolist():
            e = int(order[pos])
            started[e] = self._new_flow(int(slot[e]), int(gb.pidx[e]) + rec0, bool(gb.src_a[e]), int(ts[e]))

    def _idle_positions(self, gb: Grouped, slot, ts, flow_before, started) -> np.ndarray:
        """The positions in ``gb.perm`` of the packets that start a flow after silence (ascending), by the
        compiled helper where it is built (``_group.c`` idle_positions), else :meth:`_idle_positions_numpy`."""
        cols = (gb.perm, slot, ts, gb.proto, flow_before, started, self.slot_last.a)
        if GROUP is None or not _all_int64(cols):
            return self._idle_positions_numpy(gb, slot, ts, flow_before, started)
        out = np.empty(gb.perm.size, np.int64)
        return out[:GROUP.idle_positions(*cols, self.idle_ns, F.PROTO_TCP, out)]

    def _idle_positions_numpy(self, gb: Grouped, slot, ts, flow_before, started) -> np.ndarray:
        """:meth:`_idle_positions` in numpy (the twin of ``_group.c``'s)."""
        order = gb.perm  # grouped by 5-tuple (hence by slot), capture order within each group
        slot_o, ts_o = slot[order], ts[order]
        tuple_start = np.ones(order.size, bool)
        tuple_start[1:] = slot_o[1:] != slot_o[:-1]
        previous_ns = np.empty(order.size, np.int64)  # the 5-tuple's previous packet, in this batch or before
        previous_ns[1:] = ts_o[:-1]
        previous_ns[tuple_start] = self.slot_last.a[slot_o[tuple_start]]
        had_flow = flow_before[order] >= 0
        idle = (gb.proto[order] != F.PROTO_TCP) & (ts_o - previous_ns > self.idle_ns) & (~tuple_start | had_flow)
        idle &= started[order] < 0
        return np.nonzero(idle)[0]

    def _flow_of_each_packet(self, gb: Grouped, slot, ts, flow_before, started) -> np.ndarray:
        """Each packet's flow: the latest flow started in its 5-tuple up to it, else the one the
        5-tuple had before the batch.  Notes each slot's flow and last time for the next batch.
        By the compiled helper where it is built (``_group.c`` fill_flows), else :meth:`_flow_of_each_packet_numpy`."""
        cols = (gb.perm, slot, ts, flow_before, started, self.slot_cur.a, self.slot_last.a)
        if GROUP is None or not _all_int64(cols):
            return self._flow_of_each_packet_numpy(gb, slot, ts, flow_before, started)
        flow = np.empty(gb.pidx.size, np.int64)
        GROUP.fill_flows(*cols, flow)
        return flow

    def _flow_of_each_packet_numpy(self, gb: Grouped, slot, ts, flow_before, started) -> np.ndarray:
        """:meth:`_flow_of_each_packet` in numpy (the twin of ``_group.c``'s fill_flows)."""
        order = gb.perm
        slot_o = slot[order]
        tuple_start = np.ones(order.size, bool)
        tuple_start[1:] = slot_o[1:] != slot_o[:-1]
        flow_o = started[order]
        inherit = tuple_start & (flow_o < 0)
        flow_o[inherit] = flow_before[order][inherit]
        latest = np.where(flow_o >= 0, np.arange(order.size), 0)  # forward fill within each 5-tuple
        np.maximum.accumulate(latest, out=latest)
        flow_o = flow_o[latest]
        flow = np.empty(gb.pidx.size, np.int64)
        flow[order] = flow_o
        tuple_end = np.ones(order.size, bool)
        tuple_end[:-1] = slot_o[1:] != slot_o[:-1]
        self.slot_cur.a[slot_o[tuple_end]] = flow_o[tuple_end]
        self.slot_last.a[slot_o[tuple_end]] = ts[order][tuple_end]
        return flow

    def _icmp_errors(self, data, d: F.Decoded, gb: Grouped, slot, flow, flow_before, icmp_events) -> None:
        order = gb.perm
        slot_o = slot[order]
        starts = np.flatnonzero(np.r_[True, slot_o[1:] != slot_o[:-1]])  # each 5-tuple's packets are contiguous
        ends = np.append(starts[1:], order.size)
        ranges = dict(zip(slot_o[starts].tolist(), zip(starts.tolist(), ends.tolist())))
        for e, ns in icmp_events:
            self._icmp_error(data, d, int(gb.pidx[e]), ns, e, order, ranges, flow, flow_before)

    def _count(self, batch, d: F.Decoded, gb: Grouped, flow, ts, prepared: bool) -> None:
        """Add the batch to the per-flow counters and keep its evidence."""
        pidx, src_a = gb.pidx, gb.src_a
        rec0 = batch.first_record
        nf = self.nflows
        self._count_packets(d, pidx, src_a, flow, ts, rec0, nf)
        more_fragments = None if prepared else d.more_frags[pidx]  # a prepared batch has no fragments
        if more_fragments is not None and more_fragments.any():
            self.f_frag.a[:nf] += np.bincount(flow[more_fragments], minlength=nf)
        enc = d.encapsulated[pidx]
        if enc.any():
            self.f_encap.a[flow[enc]] = True
        iface = batch.interface
        lo, hi = int(iface.min()), int(iface.max())
        if lo == hi and hi < 64 and self.if_only in (None, hi):
            # one interface, the one of every flow so far: only the flows this batch began lack its bit
            self.f_ifmask.a[self.if_marked:nf] |= np.uint64(1 << hi)
            self.if_only, self.if_marked = hi, nf
        else:
            self.if_only = -1
            self._interfaces(iface[pidx], flow)

        # STUN and TURN ChannelData counted on every UDP datagram (classified by group_batch)
        if gb.stun_cls.size:
            stun_flow = flow[gb.stun_at]
            for k in range(4):
                sel = gb.stun_cls == k
                if sel.any():
                    self.f_stun[:nf, k] += np.bincount(stun_flow[sel], minlength=nf)
        if gb.chan_at.size:
            self.f_stun[:nf, 4] += np.bincount(flow[gb.chan_at], minlength=nf)

        if self.keep_evidence:
            stun = np.zeros(pidx.size, bool)
            stun[gb.stun_at] = True
            is_tcp, is_udp = gb.proto == F.PROTO_TCP, gb.proto == F.PROTO_UDP
            cand = gb.ev_cand if gb.ev_cand is not None and self.idle_ns >= gb.ev_idle_ns else None
            self._evidence(batch.data, d, pidx, flow, src_a, is_tcp, is_udp, stun, rec0, ts, nf, cand)

    # ------------------------------------------------------------------ helpers
    def _count_packets(self, d: F.Decoded, pidx, src_a, flow, ts, rec0: int, nf: int) -> None:
        """Packets and IP bytes per flow direction, first and last times, first records: by the compiled
        helper where it is built (``_group.c`` count_flows), else :meth:`_count_packets_numpy`."""
        counters = (self.f_pk_a.a, self.f_pk_b.a, self.f_by_a.a, self.f_by_b.a, self.f_first.a, self.f_last.a,
                    self.f_first_rec.a)
        if GROUP is None or not (_all_int64((flow, pidx, d.ip_len, ts) + counters) and src_a.dtype == np.bool_
                                 and src_a.flags.c_contiguous):
            return self._count_packets_numpy(d, pidx, src_a, flow, ts, rec0, nf)
        GROUP.count_flows(flow, src_a, pidx, d.ip_len, ts, rec0, nf, *counters)

    def _count_packets_numpy(self, d: F.Decoded, pidx, src_a, flow, ts, rec0: int, nf: int) -> None:
        """:meth:`_count_packets` in numpy (the twin of ``_group.c``'s count_flows)."""
        # one count over (flow, direction): even slots the b->a direction, odd slots a->b
        flow_dir = flow * 2 + src_a
        pk = np.bincount(flow_dir, minlength=2 * nf)
        self.f_pk_a.a[:nf] += pk[1::2]
        self.f_pk_b.a[:nf] += pk[0::2]
        by = np.bincount(flow_dir, weights=d.ip_len[pidx], minlength=2 * nf).astype(np.int64)
        self.f_by_a.a[:nf] += by[1::2]
        self.f_by_b.a[:nf] += by[0::2]
        np.minimum.at(self.f_first.a, flow, ts)
        np.maximum.at(self.f_last.a, flow, ts)
        np.minimum.at(self.f_first_rec.a, flow, pidx + rec0)

    def _duplicates(self, batch, d: F.Decoded, gb: Grouped) -> np.ndarray | None:
        """The decoded packets of the batch to drop as copies (see DUP_SYSTEMATIC): a mask over the
        batch, or None."""
        copy, other_iface = self.dups.find(batch, d, gb)
        if not copy.any():
            return None
        pidx = gb.pidx
        # TCP ACKs and RSTs without payload (no SYN, no FIN: those are not re-sent so soon)
        bare = ((gb.proto == F.PROTO_TCP) & (d.payload_len[pidx] == 0)
                & ((d.tcp_flags[pidx] & (TCP_SYN | TCP_FIN)) == 0))
        strong = copy & (~bare | other_iface)
        before = self.strong_copies + np.cumsum(strong) - strong  # strong copies earlier in the capture
        self.strong_copies += int(strong.sum())
        drop = strong | (copy & bare & (before >= DUP_SYSTEMATIC))
        if not drop.any():
            return None
        out = np.zeros(len(batch), bool)
        out[pidx[drop]] = True
        return out

    def _interfaces(self, iface: np.ndarray, fid: np.ndarray) -> None:
        """Note the capture interface of each packet's flow (pcapng: several interfaces)."""
        lo, hi = int(iface.min()), int(iface.max())
        if lo == hi and hi < 64:  # the usual batch: one interface
            self.f_ifmask.a[fid] |= np.uint64(1 << hi)  # repeated flows: the same value, set again
            return
        low = iface < 64
        np.bitwise_or.at(self.f_ifmask.a, fid[low], np.left_shift(np.uint64(1), iface[low].astype(np.uint64)))
        for f, i in zip(fid[~low].tolist(), iface[~low].tolist()):
            self.if_high.setdefault(f, set()).add(i)

    def _evidence(self, data, d, pidx, fid, src_a, is_tcp, is_udp, stun, rec0, ts_p, nf, cand=None) -> None:
        """Keep the batch's evidence.  ``cand``: :func:`evidence_candidates` of the batch, or None (every
        payload is a candidate); ranking only those counts the payloads of a flow direction exactly
        while it is under its bound and at least up to the bound once it is past (all the bounds need).
        By the compiled helper where it is built (``_group.c`` keep_evidence), else :meth:`_evidence_numpy`."""
        if cand is None:
            cand = np.nonzero((d.payload_cap[pidx] > 0) & (is_tcp | is_udp))[0]
        cols = (cand.astype(np.int32, copy=False), fid, src_a, is_tcp, stun, ts_p, pidx, d.sport, d.dport, d.payload,
                d.payload_cap, d.tcp_seq, d.tcp_flags, d.payload_len)
        counters = (self.f_pay_a.a, self.f_pay_b.a, self.f_stun_a.a, self.f_stun_b.a)
        if GROUP is None or not all(type(c) is np.ndarray and c.dtype == dt for c, dt in zip(cols, _KEEP_INPUTS)):
            return self._evidence_numpy(data, d, pidx, fid, src_a, is_tcp, is_udp, stun, rec0, ts_p, nf, cand)
        if cand.size == 0:
            return
        dns = GROUP.keep_evidence(Evidence, data, self.evidence, *(np.ascontiguousarray(c) for c in cols), *counters,
                                  nf, rec0, (EVIDENCE_TCP, EVIDENCE_UDP, EVIDENCE_DNS, EVIDENCE_STUN), DNS_PORTS)
        if dns:  # DNS datagrams can be parsed before the capture ends
            self.dns_new.extend(dns)

    def _evidence_numpy(self, data, d, pidx, fid, src_a, is_tcp, is_udp, stun, rec0, ts_p, nf, cand=None) -> None:
        """:meth:`_evidence` in numpy (the twin of ``_group.c``'s keep_evidence)."""
        pcap_ = d.payload_cap[pidx]
        if cand is None:
            cand = np.nonzero((pcap_ > 0) & (is_tcp | is_udp))[0]
        if cand.size == 0:
            return
        cf, ca = fid[cand], src_a[cand]
        # payloads each flow direction had before this batch; then count this batch's
        base = np.where(ca, self.f_pay_a.a[cf], self.f_pay_b.a[cf])
        self.f_pay_a.a[:nf] += np.bincount(cf[ca], minlength=nf)
        self.f_pay_b.a[:nf] += np.bincount(cf[~ca], minlength=nf)
        c_tcp = is_tcp[cand]
        sp, dp = d.sport[pidx[cand]], d.dport[pidx[cand]]
        c_dns = (~c_tcp) & ((sp == 53) | (dp == 53) | (sp == 5353) | (dp == 5353) | (sp == 5355) | (dp == 5355))
        keep = np.zeros(cand.size, bool)
        # A flow direction's rank-bounded payloads: the whole direction (same 5-tuple, so the
        # same transport and ports) is past its bound when its earlier count is, so only the
        # directions still under it are ranked.
        live = np.nonzero(np.where(c_tcp, base < EVIDENCE_TCP, (base < EVIDENCE_UDP) | (c_dns & (base < EVIDENCE_DNS))))[0]
        if live.size:
            rank = base[live] + _rank_in_group(cf[live] * 2 + ca[live])
            keep[live] = np.where(c_tcp[live], rank < EVIDENCE_TCP,
                                  (rank < EVIDENCE_UDP) | (c_dns[live] & (rank < EVIDENCE_DNS)))
        st = stun[cand]
        if st.any():  # STUN messages: their own rank per flow direction
            si = np.nonzero(st)[0]
            sf, sa = cf[si], ca[si]
            sbase = np.where(sa, self.f_stun_a.a[sf], self.f_stun_b.a[sf])
            self.f_stun_a.a[:nf] += np.bincount(sf[sa], minlength=nf)
            self.f_stun_b.a[:nf] += np.bincount(sf[~sa], minlength=nf)
            srank = sbase + _rank_in_group(sf * 2 + sa)
            keep[si] |= (~c_tcp[si]) & (srank < EVIDENCE_STUN)
        sel_dns = c_dns[keep]
        sel = cand[keep]
        if sel.size == 0:
            return
        ps = pidx[sel]
        items = _evidence_items(Evidence, data, d.payload[ps], pcap_[sel], ps + rec0, ts_p[sel], src_a[sel],
                                d.tcp_seq[ps], d.tcp_flags[ps], d.payload_len[ps])
        if sel_dns.any():  # DNS datagrams can be parsed before the capture ends
            self.dns_new.extend(compress(items, sel_dns.tolist()))
        ev = self.evidence
        for f, item in zip(fid[sel].tolist(), items):
            ev[f].append(item)

    def _fragments(self, d: F.Decoded, rec0: int) -> None:
        """Give later IP fragments the ports of their first fragment (RFC 791 section 3.2, RFC 8200 section 4.5)."""
        ok = d.reason == F.OK
        firsts = ok & d.more_frags & (d.frag_offset == 0)
        later = ok & (d.frag_offset > 0)
        if not (firsts.any() or later.any()):
            return
        for i in np.nonzero(firsts | later)[0].tolist():
            key = (int(d.ip_version[i]), int(d.src_hi[i]), int(d.src_lo[i]), int(d.dst_hi[i]), int(d.dst_lo[i]),
                   int(d.proto[i]), int(d.ip_id[i]))
            if d.frag_offset[i] == 0:
                self.frags[key] = (int(d.sport[i]), int(d.dport[i]))
                if len(self.frags) > 65536:
                    self.frags.pop(next(iter(self.frags)))
            else:
                ports = self.frags.get(key)
                if ports is None:
                    if d.proto[i] in (F.PROTO_TCP, F.PROTO_UDP):
                        d.reason[i] = F.R_ORPHANFRAG
                    continue
                d.sport[i], d.dport[i] = ports
                d.payload_cap[i] = 0

    def _icmp_error(self, data: bytes, d: F.Decoded, i: int, ns: int, e: int, order, ranges, fid_b,
                    cur_at_start) -> None:
        """Match an ICMP error to the flow whose packet it quotes (RFC 792; RFC 4443 section 2.4).

        The flow is the one the quoted 5-tuple had at the error's position ``e`` in the batch
        (after SYN and idle-gap splits), so the match does not depend on batch boundaries."""
        q = int(d.payload[i])
        cap = int(d.payload_cap[i])
        quoted = data[q : q + cap]
        ver = int(d.ip_version[i])
        try:
            if ver == 4:
                ihl = (quoted[0] & 0x0F) * 4
                if quoted[0] >> 4 != 4 or ihl < 20:
                    return
                proto = quoted[9]
                src = int.from_bytes(quoted[12:16], "big")
                dst = int.from_bytes(quoted[16:20], "big")
                sh = dh = 0
                sl, dl = src, dst
                l4 = ihl
            else:
                if quoted[0] >> 4 != 6:
                    return
                proto = quoted[6]
                sh, sl = struct.unpack_from("!QQ", quoted, 8)
                dh, dl = struct.unpack_from("!QQ", quoted, 24)
                l4 = 40
                for _ in range(8):
                    if proto in (0, 43, 60):
                        proto, hlen = quoted[l4], (quoted[l4 + 1] + 1) * 8
                        l4 += hlen
                    elif proto == 44:
                        proto = quoted[l4]
                        l4 += 8
                    else:
                        break
            if proto in (F.PROTO_TCP, F.PROTO_UDP):
                sp, dp = struct.unpack_from("!HH", quoted, l4)
            else:
                sp = dp = 0
        except (IndexError, struct.error):
            return
        a_is_src = (sh, sl, sp) <= (dh, dl, dp)
        if a_is_src:
            key = (proto, ver, sh, sl, dh, dl, sp, dp)
        else:
            key = (proto, ver, dh, dl, sh, sl, dp, sp)
        slot = self.slot_keys.find(key)
        if slot is None:
            return
        lo, hi = ranges.get(slot, (0, 0))
        if lo == hi:  # no packet of that 5-tuple in this batch
            fid = int(self.slot_cur.a[slot])
        else:
            k = int(np.searchsorted(order[lo:hi], e))  # packets of the 5-tuple before the error
            fid = int(fid_b[order[lo + k - 1]]) if k > 0 else int(cur_at_start[order[lo]])
        if fid < 0:
            return
        sender = _addr(ver, int(d.src_hi[i]), int(d.src_lo[i]))
        t, c = int(d.icmp_type[i]), int(d.icmp_code[i])
        err = IcmpError(t, c, sender, ns, icmp_description(ver, t, c))
        self.icmp.setdefault(fid, []).append((err, a_is_src))

    def finish(self) -> RawFlows:
        """The flows built so far (the columns are views of the builder's, not copies: with millions
        of flows a copy of each would double the peak)."""
        nf = self.nflows
        return RawFlows(
            slot_keys=self.slot_keys,
            flow_slot=self.f_slot.a[:nf],
            pk_a=self.f_pk_a.a[:nf],
            pk_b=self.f_pk_b.a[:nf],
            by_a=self.f_by_a.a[:nf],
            by_b=self.f_by_b.a[:nf],
            first_ns=self.f_first.a[:nf],
            last_ns=self.f_last.a[:nf],
            first_rec=self.f_first_rec.a[:nf],
            first_from_a=self.f_first_a.a[:nf],
            encapsulated=self.f_encap.a[:nf],
            fragments=self.f_frag.a[:nf],
            stun_counts=self.f_stun[:nf],
            interface_mask=self.f_ifmask.a[:nf],
            tcp=self.tcp,
            icmp=self.icmp,
            evidence=dict(self.evidence),
            undecoded=self.undecoded,
            dns_parsed=self.dns_parsed,
            decoded=self.decoded,
            interfaces_high=self.if_high,
            duplicates=self.duplicates,
        )


def _tcp_event(t: TcpFacts, flags: int, from_a: bool, ns: int, seq: int, ttl: int) -> None:
    """What one TCP SYN, SYN-ACK, RST or FIN tells about its flow."""
    if flags & TCP_SYN and not flags & TCP_ACK:
        t.syn_count += 1
        if t.isn is None:
            t.isn = seq
            t.syn_dir = 1 if from_a else 0
            t.first_syn_ns = ns
    elif flags & TCP_SYN:
        if t.synack_dir is None:
            t.synack_dir = 1 if from_a else 0
            t.synack_ns = ns
            t.synack_isn = seq
    if flags & TCP_RST:
        t.rst_count += 1
        if t.rst_dir is None:
            t.rst_dir = 1 if from_a else 0
            t.rst_ns = ns
            t.rst_ttl = ttl
    if flags & TCP_FIN:
        if from_a:
            t.fin_a = True
        else:
            t.fin_b = True


_ADDR_TEXT: dict[tuple[int, int, int], str] = {}


def _all_int64(cols) -> bool:
    """Are these all C-contiguous int64 numpy arrays (what the compiled helpers take)?"""
    return all(type(c) is np.ndarray and c.dtype == np.int64 and c.flags.c_contiguous for c in cols)


def _rank_in_group(key: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements have the same key."""
    order = np.argsort(key, kind="stable")
    ks = key[order]
    gstart = np.ones(ks.size, bool)
    gstart[1:] = ks[1:] != ks[:-1]
    starts = np.nonzero(gstart)[0]
    rank = np.empty(key.size, np.int64)
    rank[order] = np.arange(ks.size) - np.repeat(starts, np.diff(np.append(starts, ks.size)))
    return rank


def _addr(ver: int, hi: int, lo: int) -> str:
    """Text form of an address (memoised: a capture has few distinct addresses, each seen many times)."""
    key = (ver, hi, lo)
    text = _ADDR_TEXT.get(key)
    if text is None:
        if ver == 4:  # what str(IPv4Address) gives, five times faster
            text = "%d.%d.%d.%d" % (lo >> 24 & 255, lo >> 16 & 255, lo >> 8 & 255, lo & 255)
        else:
            text = str(ipaddress.IPv6Address((hi << 64) | lo))
        if len(_ADDR_TEXT) >= 1 << 16:
            _ADDR_TEXT.clear()
        _ADDR_TEXT[key] = text
    return text


addr_text = _addr
