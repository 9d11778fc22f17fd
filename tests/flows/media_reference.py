"""A per-stream reference for meshpcap.flows.media's vectorised stream statistics: the same definitions
written plainly, one stream at a time (this was the first implementation); the tests compare both."""

from __future__ import annotations

import numpy as np

from meshpcap.decode import rtp as R
from meshpcap.flows.media import (CLOCK_CANDIDATES, CLOCK_TOLERANCE, MAX_DROPOUT, SEQ_MOD, TS_MOD, MediaOptions,
                                  MediaStream, _FlowLocator, _segments)


def _jitter(absd_ms: np.ndarray) -> np.ndarray:
    """RFC 3550 appendix A.8 as written: J += (|D| - J) / 16, one packet at a time."""
    out, j = [], 0.0
    for x in absd_ms.tolist():
        j += (x - j) / 16
        out.append(j)
    return np.array(out)


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


def streams(cols: list[np.ndarray], locate: _FlowLocator, o: MediaOptions) -> list[MediaStream]:
    fid, c2s, ts, kind, fr, pt, seq, rts, ssrc, size = cols
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
    if n > 1 and np.mean((d >= 1) & (d <= 100)) < 0.5:
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
    pts = pt[ii]
    clock, clock_src = _infer_clock(pts, ext_ts, t)
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


