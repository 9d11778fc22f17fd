"""RTP and RTCP headers (RFC 3550) and the framings real-time media travels in: demultiplexed by first
byte (RFC 7983), RTP told from RTCP by payload type (RFC 5761), inside TURN ChannelData and Send/Data
indications (RFC 8656), MS-TURN multiplexed channels (0xFF10) and RFC 4571 framing over TCP.

Two forms of each parser: one message as bytes (``parse_rtp``, ``parse_rtcp``, ``unwrap``), and the
columnar twins over a whole batch (``media_offsets``, ``rtp_columns``) that read the same fields with
numpy gathers; the tests check that both agree.  Only headers are read: SRTP (RFC 3711) encrypts the
payload but leaves the RTP header in the clear, and SRTCP leaves only its first eight bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from meshpcap._dataclass import dataclass
from meshpcap._native import load as _load_native
from meshpcap.decode.buffer import DecodeError, NeedMore
from meshpcap.decode.frames import PROTO_TCP, PROTO_UDP, _Gather

RTP_VERSION = 2  # RFC 3550 section 5.1
RTP_HEADER_LEN = 12  # RFC 3550 section 5.1: the fixed header
RTCP_HEADER_LEN = 8  # RFC 3550 section 6.4.1: V P RC PT length SSRC
RTCP_TYPES = range(192, 224)  # RFC 5761 section 4: second byte 192-223 is RTCP (SR 200, RR 201, SDES 202, ...)
STUN_COOKIE = 0x2112A442  # RFC 8489 section 5
STUN_DATA = 0x0013  # RFC 8656 section 18.4: DATA attribute
SEND_INDICATION, DATA_INDICATION = 0x0016, 0x0017  # RFC 8656 section 17: Send/Data method, indication class
MS_MULTIPLEX_TURN = 0xFF10  # MS-TURN multiplexed channel: type, length, 8-byte session id, data (as Wireshark reads it)

# how a packet's media was framed (FRAMING[code])
F_NONE, F_DIRECT, F_CHANNEL, F_INDICATION, F_MS_MULTIPLEX = 0, 1, 2, 3, 4
FRAMING = {F_NONE: "none", F_DIRECT: "direct", F_CHANNEL: "turn-channel", F_INDICATION: "turn-indication",
           F_MS_MULTIPLEX: "ms-turn-multiplex"}
K_NONE, K_RTP, K_RTCP = 0, 1, 2

MEDIA_ABI = 2  # must equal MEDIA_ABI in _media.c
MEDIA = _load_native("meshpcap.decode._media", MEDIA_ABI)  # None: batch_media by its numpy twin

# clock rates of the static payload types, RFC 3551 section 6 (table 4 and 5)
STATIC_CLOCK = {0: 8000, 3: 8000, 4: 8000, 5: 8000, 6: 16000, 7: 8000, 8: 8000, 9: 8000, 10: 44100, 11: 44100,
                12: 8000, 13: 8000, 14: 90000, 15: 8000, 16: 11025, 17: 22050, 18: 8000, 25: 90000, 26: 90000,
                28: 90000, 31: 90000, 32: 90000, 33: 90000, 34: 90000}


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The RTP fixed header (RFC 3550 section 5.1) and where its payload lies."""

    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    header_len: int  # fixed header + CSRC list + header extension (RFC 3550 section 5.3.1)
    payload_len: int  # without the padding


@dataclass(frozen=True, slots=True)
class RtcpHeader:
    """The first RTCP packet of a compound packet (RFC 3550 section 6.4): the part SRTCP leaves in the clear."""

    version: int
    padding: bool
    count: int
    packet_type: int
    length: int  # bytes of this RTCP packet, header included ((length field + 1) * 4)
    ssrc: int


def is_rtcp(second_byte: int) -> bool:
    """RFC 5761 section 4: on a shared port, a second byte (marker + payload type) of 192-223 is RTCP."""
    return 192 <= second_byte <= 223


def parse_rtp(data: bytes) -> RtpHeader:
    """Parse the RTP header of one packet (a datagram, or one frame of a stream).

    Raises :class:`NeedMore` when the header (with its CSRC list and extension) runs past the data,
    :class:`DecodeError` when it is not RTP version 2, is RTCP (RFC 5761), or its padding is impossible."""
    data = bytes(data)
    if not data:
        raise NeedMore("RTP header needs 12 bytes, have 0")
    if data[0] >> 6 != RTP_VERSION:
        raise DecodeError(f"not RTP: version {data[0] >> 6}")
    if len(data) < RTP_HEADER_LEN:
        raise NeedMore(f"RTP header needs 12 bytes, have {len(data)}")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data, 0)
    if is_rtcp(b1):
        raise DecodeError(f"RTCP, not RTP: packet type {b1}")
    cc = b0 & 0x0F
    hl = RTP_HEADER_LEN + 4 * cc
    if b0 & 0x10:  # RFC 3550 section 5.3.1: 16-bit profile field, 16-bit length in 32-bit words
        if len(data) < hl + 4:
            raise NeedMore(f"RTP header extension needs {hl + 4} bytes, have {len(data)}")
        hl += 4 + 4 * struct.unpack_from("!H", data, hl + 2)[0]
    if len(data) < hl:
        raise NeedMore(f"RTP header needs {hl} bytes, have {len(data)}")
    pad = 0
    if b0 & 0x20:  # RFC 3550 section 5.1: the last byte counts the padding, itself included
        pad = data[-1]
        if pad == 0 or pad > len(data) - hl:
            raise DecodeError(f"RTP padding of {pad} bytes does not fit")
    return RtpHeader(RTP_VERSION, bool(b0 & 0x20), bool(b0 & 0x10), cc, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc,
                     hl, len(data) - hl - pad)


def parse_rtcp(data: bytes) -> RtcpHeader:
    """Parse the first RTCP header of a (possibly SRTCP, possibly compound) packet (RFC 3550 section 6.4.1)."""
    data = bytes(data)
    if data and data[0] >> 6 != RTP_VERSION:
        raise DecodeError(f"not RTCP: version {data[0] >> 6}")
    if len(data) < RTCP_HEADER_LEN:
        raise NeedMore(f"RTCP header needs 8 bytes, have {len(data)}")
    b0, pt, length, ssrc = struct.unpack_from("!BBHI", data, 0)
    if not is_rtcp(pt):
        raise DecodeError(f"not RTCP: packet type {pt}")
    return RtcpHeader(RTP_VERSION, bool(b0 & 0x20), b0 & 0x1F, pt, (length + 1) * 4, ssrc)


def unwrap(data: bytes) -> tuple[bytes, int]:
    """The media inside one UDP payload (or one TCP frame) and its framing code (:data:`FRAMING`).

    RFC 7983 section 7 by first byte: 128-191 RTP/RTCP as is; 64-79 TURN ChannelData (RFC 8656
    section 12.4; the length excludes any padding); 0-3 a STUN Send or Data indication carrying a
    DATA attribute (RFC 8656 sections 10-11); 0xFF10 an MS-TURN multiplexed channel (length, 8-byte
    session id, data).  Anything else (DTLS, STUN without DATA, ZRTP) is ``(b"", F_NONE)``.
    Raises :class:`NeedMore` when a framing's length runs past the data."""
    data = bytes(data)
    if not data:
        return b"", F_NONE
    b0 = data[0]
    if 128 <= b0 <= 191:
        return data, F_DIRECT
    if len(data) < 4:
        if 64 <= b0 <= 79 or b0 == 0xFF or b0 <= 3:
            raise NeedMore(f"TURN framing needs 4 bytes, have {len(data)}")
        return b"", F_NONE
    kind, length = struct.unpack_from("!HH", data, 0)
    if 64 <= b0 <= 79:
        if 4 + length > len(data):
            raise NeedMore(f"ChannelData length {length} exceeds the {len(data) - 4} bytes present")
        return data[4:4 + length], F_CHANNEL
    if kind == MS_MULTIPLEX_TURN:
        if 4 + length > len(data):
            raise NeedMore(f"MS-TURN multiplexed length {length} exceeds the {len(data) - 4} bytes present")
        if length < 8:
            raise DecodeError(f"MS-TURN multiplexed length {length} has no room for the session id")
        return data[12:4 + length], F_MS_MULTIPLEX
    if b0 <= 3 and kind in (SEND_INDICATION, DATA_INDICATION):
        if len(data) < 20:
            raise NeedMore(f"STUN header needs 20 bytes, have {len(data)}")
        if struct.unpack_from("!I", data, 4)[0] != STUN_COOKIE:
            return b"", F_NONE
        end = 20 + length
        if end > len(data):
            raise NeedMore(f"STUN message length {length} needs {end} bytes, have {len(data)}")
        pos = 20
        while pos + 4 <= end:
            atype, alen = struct.unpack_from("!HH", data, pos)
            if pos + 4 + alen > end:
                raise DecodeError(f"STUN attribute 0x{atype:04x} runs past the message")
            if atype == STUN_DATA:
                return data[pos + 4:pos + 4 + alen], F_INDICATION
            pos += 4 + ((alen + 3) & ~3)  # RFC 8489 section 14: attributes padded to 4
        return b"", F_NONE
    return b"", F_NONE


def split_tcp(stream: bytes, prefixed: bool) -> tuple[list[bytes], int]:
    """Split TURN-over-TCP bytes into frames; return the complete frames and the bytes consumed.

    ``prefixed``: every frame carries an RFC 4571 16-bit length first (RFC 6544 section 3, as ICE-TCP
    does); otherwise frames follow back to back by their own lengths (RFC 8656 section 12.5: STUN
    messages, ChannelData padded to 4, MS-TURN multiplexed channels, RTP/RTCP only with the prefix).
    Frames are returned without prefix or padding.  A trailing partial frame is left for later.
    Raises :class:`DecodeError` at a byte that starts no known frame (the stream lost its framing)."""
    frames: list[bytes] = []
    pos, n = 0, len(stream)
    while pos < n:
        if prefixed:
            if n - pos < 2:
                break
            size = (stream[pos] << 8) | stream[pos + 1]
            if n - pos < 2 + size:
                break
            frames.append(bytes(stream[pos + 2:pos + 2 + size]))
            pos += 2 + size
            continue
        if n - pos < 4:
            break
        b0 = stream[pos]
        length = (stream[pos + 2] << 8) | stream[pos + 3]
        if b0 <= 3:
            size = total = 20 + length
        elif 64 <= b0 <= 79:
            size = 4 + length
            total = (size + 3) & ~3
        elif b0 == 0xFF and stream[pos + 1] == 0x10:
            size = total = 4 + length
        else:
            raise DecodeError(f"not TURN framing: byte 0x{b0:02x} at offset {pos}")
        if n - pos < total:
            break
        frames.append(bytes(stream[pos:pos + size]))
        pos += total
    return frames, pos


# ---------------------------------------------------------------- columnar twins (numpy over a batch)
def gather(data) -> _Gather:
    """The batch-bytes reader the columnar parsers take (big-endian fields by numpy gathers, bounds-clipped)."""
    return _Gather(data)


def media_offsets(g: _Gather, pos: np.ndarray, cap: np.ndarray, max_attrs: int = 12,
                  word: np.ndarray | None = None):
    """:func:`unwrap` over many UDP payloads at once: ``g`` the batch bytes (:func:`gather`), ``pos`` and
    ``cap`` each payload's offset and captured length (``word``: ``g.u32(pos)``, when already read).
    Returns (inner offset, inner captured length, framing code) arrays; framing ``F_NONE`` where no media
    framing applies or a length runs past the captured bytes.  Send/Data indications are walked for their
    DATA attribute up to ``max_attrs`` attributes deep (RFC 8656 puts XOR-PEER-ADDRESS, then DATA, first)."""
    pos = np.asarray(pos, np.int64)
    cap = np.asarray(cap, np.int64)
    n = pos.size
    ipos = pos.copy()
    icap = np.zeros(n, np.int64)
    fr = np.zeros(n, np.int8)
    if n == 0:
        return ipos, icap, fr
    has4 = cap >= 4
    # the first 32-bit word read once: each of its bytes is what u8 reads there (a gather clips per byte)
    if word is None:
        word = g.u32(pos)
    w0 = word >> 16
    b0 = np.where(cap >= 1, word >> 24, -1)
    length = word & 0xFFFF
    direct = (b0 >= 128) & (b0 <= 191)
    icap[direct] = cap[direct]
    fr[direct] = F_DIRECT
    chan = has4 & (b0 >= 64) & (b0 <= 79) & (4 + length <= cap)
    ipos[chan] = pos[chan] + 4
    icap[chan] = length[chan]
    fr[chan] = F_CHANNEL
    msm = has4 & (w0 == MS_MULTIPLEX_TURN) & (length >= 8) & (4 + length <= cap)
    ipos[msm] = pos[msm] + 12
    icap[msm] = length[msm] - 8
    fr[msm] = F_MS_MULTIPLEX
    ind = (cap >= 20) & (b0 <= 3) & ((w0 == SEND_INDICATION) | (w0 == DATA_INDICATION)) & (20 + length <= cap)
    if ind.any():
        ii = np.nonzero(ind)[0]
        ii = ii[g.u32(pos[ii] + 4) == STUN_COOKIE]
        end = pos[ii] + 20 + length[ii]
        at = pos[ii] + 20
        live = np.ones(ii.size, bool)
        for _ in range(max_attrs):
            live &= at + 4 <= end
            if not live.any():
                break
            atype = g.u16(at)
            alen = g.u16(at + 2)
            live &= at + 4 + alen <= end
            hit = live & (atype == STUN_DATA)
            if hit.any():
                k = ii[hit]
                ipos[k] = at[hit] + 4
                icap[k] = alen[hit]
                fr[k] = F_INDICATION
                live &= ~hit
            at = at + 4 + ((alen + 3) & ~3)
    return ipos, icap, fr


def rtp_columns(g: _Gather, pos: np.ndarray, cap: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`parse_rtp` / :func:`parse_rtcp` over many packets: ``kind`` is K_RTP, K_RTCP or K_NONE
    (not version 2, too short, impossible header extension or padding); the other columns are the
    header fields (``ssrc`` for RTCP is the sender's), ``payload_len`` the RTP payload without padding."""
    pos = np.asarray(pos, np.int64)
    cap = np.asarray(cap, np.int64)
    word0 = g.u32(pos)  # its bytes are what u8 reads at pos .. pos + 3 (a gather clips per byte)
    b0 = word0 >> 24
    b1 = (word0 >> 16) & 0xFF
    v2 = ((b0 >> 6) == RTP_VERSION) & (cap >= RTCP_HEADER_LEN)
    rtcp = v2 & (b1 >= 192) & (b1 <= 223)
    cc = b0 & 0x0F
    hl = RTP_HEADER_LEN + 4 * cc
    ext = (b0 & 0x10) != 0
    ext_ok = ~ext | (hl + 4 <= cap)
    # the extension's length and the padding count are read only where the header says they are there (a
    # gather gives each position the same value whichever others it is given)
    e = np.flatnonzero(ext)
    if e.size:
        hl[e] += 4 + 4 * g.u16(pos[e] + hl[e] + 2)
    padded = (b0 & 0x20) != 0
    pad = np.zeros(pos.size, np.int64)
    q = np.flatnonzero(padded)
    if q.size:
        pad[q] = g.u8(pos[q] + cap[q] - 1)
    rtp = v2 & ~rtcp & (cap >= RTP_HEADER_LEN) & ext_ok & (hl <= cap) & (~padded | ((pad > 0) & (pad <= cap - hl)))
    kind = np.where(rtp, K_RTP, np.where(rtcp, K_RTCP, K_NONE)).astype(np.int8)
    word4 = g.u32(pos + 4)  # RTP's timestamp, RTCP's sender SSRC
    return {
        "kind": kind,
        "marker": (b1 & 0x80) != 0,
        "payload_type": np.where(rtcp, b1, b1 & 0x7F).astype(np.int16),
        "sequence": word0 & 0xFFFF,
        "timestamp": word4,
        "ssrc": np.where(rtcp, word4, g.u32(pos + 8)),
        "payload_len": np.where(rtp, cap - hl - pad, 0),
    }


class MediaRows(NamedTuple):
    """The payloads that hold RTP or RTCP (:func:`media_rows_numpy`): ``row`` indexes the payloads given, in
    order; then the header's fields and the framing; and the payloads that may be STUN."""

    row: np.ndarray  # int64
    kind: np.ndarray  # int8: K_RTP or K_RTCP
    framing: np.ndarray  # int8: F_DIRECT ... F_MS_MULTIPLEX
    payload_type: np.ndarray  # uint8 (RTCP: the packet type)
    sequence: np.ndarray  # uint16
    timestamp: np.ndarray  # uint32 (RTCP: the sender's SSRC)
    ssrc: np.ndarray  # uint32
    inner_cap: np.ndarray  # int32: the captured bytes from the RTP/RTCP header on
    stun: np.ndarray  # int64: payloads with first byte 0-3 (RFC 7983) and a STUN header's 20 bytes


def media_rows_numpy(g: _Gather, pos: np.ndarray, cap: np.ndarray) -> MediaRows:
    """:func:`media_offsets` then :func:`rtp_columns` over UDP payloads (``pos``, ``cap``: offsets into the
    batch's bytes and captured lengths), keeping the RTP and RTCP ones."""
    word = g.u32(pos)
    b0 = np.where(cap >= 1, word >> 24, -1)
    stun = np.flatnonzero((b0 >= 0) & (b0 <= 3) & (cap >= 20))
    # RFC 7983's first bytes: RTP/RTCP, TURN ChannelData, STUN (Send/Data indications), MS-TURN (0xFF10)
    cand = np.flatnonzero((b0 >= 128) & (b0 <= 191) | (b0 >= 64) & (b0 <= 79) | (b0 >= 0) & (b0 <= 3) | (b0 == 0xFF))
    ipos, icap, fr = media_offsets(g, pos[cand], cap[cand], word=word[cand])
    m = fr != F_NONE
    cand, ipos, icap, fr = cand[m], ipos[m], icap[m], fr[m]
    cols = rtp_columns(g, ipos, icap)
    k = cols["kind"] != K_NONE
    return MediaRows(cand[k].astype(np.int64), cols["kind"][k], fr[k].astype(np.int8),
                     cols["payload_type"][k].astype(np.uint8), cols["sequence"][k].astype(np.uint16),
                     cols["timestamp"][k].astype(np.uint32), cols["ssrc"][k].astype(np.uint32),
                     icap[k].astype(np.int32), stun.astype(np.int64))


TCP_SYN, TCP_ACK = 0x02, 0x10  # RFC 9293 section 3.1: control bits


class BatchMedia(NamedTuple):
    """The media facts of a batch's packets (:func:`batch_media`), each table None when it has no row; rows
    in the order of the packets, each named by its ``group`` and ``side`` (the caller's, per row) and
    time."""

    rtp: tuple[np.ndarray, ...] | None  # group, side, ns, kind, framing, payload type, sequence, timestamp, ssrc,
    #                                     inner captured length (dtypes: _RTP_DTYPES)
    stun: tuple[np.ndarray, ...] | None  # STUN requests and responses: group, side, ns, class, method, transaction id
    #                                      (3 x 32 bits)
    syn: tuple[np.ndarray, ...] | None  # TCP SYNs: group, side, ns, ACK set
    # each group's first TCP packet with payload: group, and whether that payload is a STUN message bare
    # (RFC 8656) or behind an RFC 4571 length (RFC 6544)
    tcp_first: tuple[np.ndarray, np.ndarray, np.ndarray] | None


_RTP_DTYPES = (np.int64, np.bool_, np.int64, np.int8, np.int8, np.uint8, np.uint16, np.uint32, np.uint32, np.int32)
_STUN_DTYPES = (np.int64, np.bool_) + (np.int64,) * 6
_SYN_DTYPES = (np.int64, np.bool_, np.int64, np.bool_)
_FIRST_DTYPES = (np.int64, np.bool_, np.bool_)


def batch_media(data, at, proto, group, side, perm, payload, payload_cap, tcp_flags, ts_ns) -> BatchMedia:
    """The RTP/RTCP packets (RFC 3550, directly or TURN-framed: RFC 7983 first bytes), the STUN requests and
    responses (RFC 8489: not indications, which no answer follows), the TCP SYNs and each group's first TCP
    payload (is it STUN, bare or behind a length?) of a batch whose bytes are ``data``.

    Rows: ``at`` (each row's decoded packet), ``proto``, ``group`` (0 .. groups - 1) and ``side`` per row,
    ``perm`` the rows listed group by group, each group's in order (the numpy twin's way to each group's
    first payload); per decoded packet: ``payload``, ``payload_cap``, ``tcp_flags``, ``ts_ns``.  By the
    compiled helper where it is built (``_media.c``), else by :func:`batch_media_numpy`: the same arrays."""
    if MEDIA is None:
        return batch_media_numpy(data, at, proto, group, side, perm, payload, payload_cap, tcp_flags, ts_ns)
    n = len(at)
    ngroups = int(group.max()) + 1 if n else 0
    tables = (_RTP_DTYPES, _STUN_DTYPES, _SYN_DTYPES, _FIRST_DTYPES)
    out = tuple(np.empty(n, dt) for dts in tables for dt in dts)
    counts = MEDIA.batch_media(data, np.ascontiguousarray(at, np.int64), np.ascontiguousarray(proto, np.int64),
                               np.ascontiguousarray(group, np.int64), np.ascontiguousarray(side, np.bool_),
                               np.ascontiguousarray(payload, np.int64), np.ascontiguousarray(payload_cap, np.int64),
                               np.ascontiguousarray(tcp_flags, np.int16), np.ascontiguousarray(ts_ns, np.int64),
                               ngroups, out)
    got, j = [], 0
    for dts, k in zip(tables, counts):
        cols = out[j:j + len(dts)]
        j += len(dts)
        if k == 0:
            got.append(None)
            continue
        for c in cols:  # the rows filled, in place: the arrays are new here, no view of them exists
            c.resize(k, refcheck=False)
        got.append(cols)
    return BatchMedia(*got)


def batch_media_numpy(data, at, proto, group, side, perm, payload, payload_cap, tcp_flags, ts_ns) -> BatchMedia:
    """:func:`batch_media` with numpy gathers (the reference of ``_media.c``)."""
    rtp = stun = syn = tcp_first = None
    if len(at) == 0:
        return BatchMedia(None, None, None, None)
    g = gather(data)
    pos = payload[at]
    cap = payload_cap[at]
    # ---- UDP: RTP/RTCP directly or TURN-framed (RFC 7983 first bytes), and STUN transactions
    u = np.nonzero((proto == PROTO_UDP) & (cap >= 8))[0]
    if u.size:
        mr = media_rows_numpy(g, pos[u], cap[u])
        if mr.row.size:
            c = u[mr.row]
            rtp = (group[c], side[c], ts_ns[at[c]], mr.kind, mr.framing, mr.payload_type, mr.sequence,
                   mr.timestamp, mr.ssrc, mr.inner_cap)
        # STUN requests and responses with the RFC 8489 cookie (not indications: no answer comes)
        s = u[mr.stun]
        if s.size:
            p = pos[s]
            mtype = g.u16(p)
            cls = ((mtype >> 4) & 1) | ((mtype >> 7) & 2)
            ok = (g.u32(p + 4) == STUN_COOKIE) & (cls != 1)
            if ok.any():
                s, p, mtype, cls = s[ok], p[ok], mtype[ok], cls[ok]
                method = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2)
                stun = (group[s], side[s], ts_ns[at[s]], cls, method, g.u32(p + 8), g.u32(p + 12), g.u32(p + 16))
    # ---- TCP: handshake times, and each group's first payload
    tcp = proto == PROTO_TCP
    if tcp.any():
        flags = tcp_flags[at]
        sy = np.nonzero(tcp & ((flags & TCP_SYN) != 0))[0]
        if sy.size:
            syn = (group[sy], side[sy], ts_ns[at[sy]], (flags[sy] & TCP_ACK) != 0)
        with_payload = tcp & (cap > 0)
        if with_payload.any():
            # each TCP group's first packet with payload: the first of its group's run in perm (which lists
            # each group's packets together, in order), without sorting the packets
            pp = perm[with_payload[perm]]
            grp = group[pp]
            run = np.ones(pp.size, bool)
            run[1:] = grp[1:] != grp[:-1]
            first = np.sort(pp[run])
            p, c = pos[first], cap[first]
            # the magic cookie sits at offset 4 (bare) or 6 (behind the length)
            bare = (c >= 20) & (g.u8(p) <= 3) & (g.u32(p + 4) == STUN_COOKIE)
            pref = (c >= 22) & (g.u8(p + 2) <= 3) & (g.u32(p + 6) == STUN_COOKIE)
            tcp_first = (group[first], bare, pref)
    return BatchMedia(rtp, stun, syn, tcp_first)
