/* The media facts of a batch's packets: the compiled half of flows/media.py extract.
 *
 * Optional accelerator.  batch_media() does in one pass over a batch's decoded packets what the numpy
 * twin in decode/rtp.py (batch_media_numpy) does with gathers: for each UDP payload of 8 bytes or more,
 * its framing by first byte as RFC 7983 section 7 demultiplexes (media_offsets) and the RTP or RTCP
 * header inside (rtp_columns), and whether it is a STUN request or response (RFC 8489); for each TCP
 * packet, whether it is a SYN, and for each group's first TCP packet with payload, whether that payload
 * begins with a STUN message bare (RFC 8656) or behind an RFC 4571 length (RFC 6544).  Every read stays
 * inside the payload's captured bytes: a payload too short for what its first bytes announce is not a
 * candidate, as in the twin.  tests/decode/test_media_ext.py compares both on generated and real captures.
 *
 * Only the buffer protocol is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

#define MEDIA_ABI 2

/* decode/rtp.py's constants */
enum { F_NONE = 0, F_DIRECT = 1, F_CHANNEL = 2, F_INDICATION = 3, F_MS_MULTIPLEX = 4 };
enum { K_NONE = 0, K_RTP = 1, K_RTCP = 2 };
#define STUN_COOKIE 0x2112A442u
#define STUN_DATA 0x0013
#define SEND_INDICATION 0x0016
#define DATA_INDICATION 0x0017
#define MS_MULTIPLEX_TURN 0xFF10
#define MAX_ATTRS 12  /* media_offsets' default: DATA is looked for among the first 12 attributes */

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The media inside one payload of ``cap`` bytes at ``p``: its framing, and where it lies (media_offsets). */
static int unwrap(const uint8_t *p, int64_t cap, int64_t *ipos, int64_t *icap) {
    const uint32_t b0 = p[0];
    if (b0 >= 128 && b0 <= 191) {  /* RFC 7983: RTP or RTCP as it is */
        *ipos = 0;
        *icap = cap;
        return F_DIRECT;
    }
    if (cap < 4) return F_NONE;
    const uint32_t w0 = be16(p), length = be16(p + 2);
    if (b0 >= 64 && b0 <= 79) {  /* RFC 8656 section 12.4: ChannelData, the length without padding */
        if (4 + (int64_t)length > cap) return F_NONE;
        *ipos = 4;
        *icap = length;
        return F_CHANNEL;
    }
    if (w0 == MS_MULTIPLEX_TURN) {  /* MS-TURN multiplexed channel: length, 8-byte session id, data */
        if (length < 8 || 4 + (int64_t)length > cap) return F_NONE;
        *ipos = 12;
        *icap = length - 8;
        return F_MS_MULTIPLEX;
    }
    if (b0 <= 3 && (w0 == SEND_INDICATION || w0 == DATA_INDICATION)) {  /* RFC 8656 sections 10-11 */
        if (cap < 20 || 20 + (int64_t)length > cap || be32(p + 4) != STUN_COOKIE) return F_NONE;
        const int64_t end = 20 + (int64_t)length;
        int64_t at = 20;
        for (int k = 0; k < MAX_ATTRS && at + 4 <= end; k++) {
            const uint32_t atype = be16(p + at), alen = be16(p + at + 2);
            if (at + 4 + (int64_t)alen > end) return F_NONE;
            if (atype == STUN_DATA) {
                *ipos = at + 4;
                *icap = alen;
                return F_INDICATION;
            }
            at += 4 + ((alen + 3) & ~3u);  /* RFC 8489 section 14: attributes padded to 4 */
        }
    }
    return F_NONE;
}

/* The RTP or RTCP header of ``cap`` bytes at ``p`` (rtp_columns): K_RTP, K_RTCP or K_NONE. */
static int header(const uint8_t *p, int64_t cap, uint8_t *pt, uint16_t *seq, uint32_t *ts, uint32_t *ssrc) {
    if (cap < 8 || (p[0] >> 6) != 2) return K_NONE;  /* RFC 3550 section 5.1: version 2; RTCP needs 8 bytes */
    const uint32_t b0 = p[0], b1 = p[1];
    *seq = (uint16_t)be16(p + 2);
    *ts = be32(p + 4);  /* RTP's timestamp, RTCP's sender SSRC */
    if (b1 >= 192 && b1 <= 223) {  /* RFC 5761 section 4: RTCP on a shared port */
        *pt = (uint8_t)b1;
        *ssrc = *ts;
        return K_RTCP;
    }
    if (cap < 12) return K_NONE;
    int64_t hl = 12 + 4 * (int64_t)(b0 & 0x0F);  /* the CSRC list */
    if (b0 & 0x10) {  /* RFC 3550 section 5.3.1: the extension's 16-bit length in 32-bit words */
        if (hl + 4 > cap) return K_NONE;
        hl += 4 + 4 * (int64_t)be16(p + hl + 2);
    }
    if (hl > cap) return K_NONE;
    if (b0 & 0x20) {  /* RFC 3550 section 5.1: the last byte counts the padding, itself included */
        const int64_t pad = p[cap - 1];
        if (pad == 0 || pad > cap - hl) return K_NONE;
    }
    *pt = (uint8_t)(b1 & 0x7F);
    *ssrc = be32(p + 8);
    return K_RTP;
}

enum { PROTO_TCP = 6, PROTO_UDP = 17 };  /* decode/frames.py's codes (the IP protocol numbers) */
enum { TCP_SYN = 0x02, TCP_ACK = 0x10 };  /* RFC 9293 section 3.1: control bits */
#define LOOKAHEAD 32  /* rows: the payload this far ahead is asked of memory while this one is read */

/* The output columns, in the order of the ``out`` tuple, with their item sizes: RTP/RTCP rows, STUN
 * requests and responses, TCP SYNs, each TCP group's first payload. */
enum {
    R_GROUP, R_SIDE, R_NS, R_KIND, R_FRAMING, R_PT, R_SEQ, R_TS, R_SSRC, R_ICAP,
    S_GROUP, S_SIDE, S_NS, S_CLASS, S_METHOD, S_TID0, S_TID1, S_TID2,
    Y_GROUP, Y_SIDE, Y_NS, Y_ACK,
    T_GROUP, T_BARE, T_PREF,
    NOUT
};
static const Py_ssize_t OUT_SIZE[NOUT] = {8, 1, 8, 1, 1, 1, 2, 4, 4, 4, 8, 1, 8, 8, 8, 8, 8, 8, 8, 1, 8, 1, 8, 1, 1};

/* The input columns after ``data``: per row (at, proto, group, side), per decoded packet (the rest). */
enum { I_AT, I_PROTO, I_GROUP, I_SIDE, I_PAYLOAD, I_CAP, I_FLAGS, I_TSNS, NIN };
static const Py_ssize_t IN_SIZE[NIN] = {8, 8, 8, 1, 8, 8, 2, 8};

/* Is the message of ``cap`` bytes at ``p`` a STUN message with the RFC 8489 cookie at ``p + 4``? */
static inline int stun_at(const uint8_t *p, int64_t cap, int64_t need) {
    return cap >= need && p[0] <= 3 && be32(p + 4) == STUN_COOKIE;  /* RFC 7983: first byte 0-3 */
}

/* batch_media(data, at, proto, group, side, payload, payload_cap, tcp_flags, ts_ns, ngroups, out)
 *     -> (rtp, stun, syn, tcp_first)
 *
 * data: the batch's bytes.  Rows: at (int64, the decoded packet of each row), proto (int64), group
 * (int64, 0 <= group < ngroups), side (bool); decoded packets: payload, payload_cap (int64), tcp_flags
 * (int16), ts_ns (int64).  out: a tuple of writable arrays of len(at) each, in the order of the enum
 * above; the first ``rtp``, ``stun``, ``syn`` and ``tcp_first`` items of each table's columns are filled,
 * rows in order.  ValueError for columns of the wrong size or an ``at`` or ``group`` out of range. */
static PyObject *batch_media(PyObject *self, PyObject *args) {
    Py_buffer data_b, in[NIN], out[NOUT];
    PyObject *ins[NIN], *outs;
    Py_ssize_t ngroups;
    int nin = 0, nout = 0, bad = 0;
    uint8_t *seen = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*OOOOOOOOnO!", &data_b, &ins[0], &ins[1], &ins[2], &ins[3], &ins[4], &ins[5],
                          &ins[6], &ins[7], &ngroups, &PyTuple_Type, &outs))
        return NULL;
    for (; nin < NIN; nin++)
        if (PyObject_GetBuffer(ins[nin], &in[nin], PyBUF_SIMPLE) < 0) goto done;
    const Py_ssize_t n = in[I_AT].len / 8, npk = in[I_PAYLOAD].len / 8;
    for (int j = 0; j < NIN; j++) {
        const Py_ssize_t want = (j <= I_SIDE ? n : npk) * IN_SIZE[j];
        if (in[j].len != want) {
            PyErr_SetString(PyExc_ValueError, "batch_media: input columns of unequal length or wrong item size");
            goto done;
        }
    }
    if (PyTuple_GET_SIZE(outs) != NOUT || ngroups < 0) {
        PyErr_SetString(PyExc_ValueError, "batch_media: wrong outputs or group count");
        goto done;
    }
    for (; nout < NOUT; nout++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(outs, nout), &out[nout], PyBUF_WRITABLE) < 0) goto done;
        if (out[nout].len != n * OUT_SIZE[nout]) {
            nout++;
            PyErr_SetString(PyExc_ValueError, "batch_media: an output array of the wrong size");
            goto done;
        }
    }
    seen = PyMem_Calloc(ngroups > 0 ? (size_t)ngroups : 1, 1);  /* TCP groups whose first payload was read */
    if (seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *buf = data_b.buf;
    const int64_t size = data_b.len;
    const int64_t *at = in[I_AT].buf, *proto = in[I_PROTO].buf, *group = in[I_GROUP].buf;
    const uint8_t *side = in[I_SIDE].buf;
    const int64_t *payload = in[I_PAYLOAD].buf, *pcap = in[I_CAP].buf, *tsns = in[I_TSNS].buf;
    const int16_t *flags = in[I_FLAGS].buf;
#define COL(k, type) ((type *)out[k].buf)
    Py_ssize_t rows = 0, stun = 0, syn = 0, first = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + LOOKAHEAD < n) {  /* the payload read LOOKAHEAD rows on: a cache miss now costs little */
            const Py_ssize_t a = i + LOOKAHEAD;
            const int64_t k2 = at[a], pr = proto[a];
            const int64_t p2 = (k2 >= 0 && k2 < npk) ? payload[k2] : 0;
            const int want = pr == PROTO_UDP;  /* (a TCP row seldom reads its payload) */
            __builtin_prefetch(buf + ((want & (p2 >= 0) & (p2 < size)) ? p2 : 0));
        }
        const int64_t k = at[i], pr = proto[i], g = group[i];
        if (k < 0 || k >= npk || g < 0 || g >= ngroups) {
            bad = 1;
            break;
        }
        if (pr != PROTO_UDP && pr != PROTO_TCP) continue;
        const int64_t p0 = payload[k];
        int64_t c = pcap[k];
        if (p0 < 0 || p0 > size) c = 0;  /* never past the batch (the decoder's lengths already are not) */
        else if (c > size - p0) c = size - p0;
        const uint8_t *p = buf + (c > 0 ? p0 : 0);
        if (pr == PROTO_TCP) {
            const int fl = flags[k];
            if (fl & TCP_SYN) {  /* the handshake's times */
                COL(Y_GROUP, int64_t)[syn] = g;
                COL(Y_SIDE, uint8_t)[syn] = side[i];
                COL(Y_NS, int64_t)[syn] = tsns[k];
                COL(Y_ACK, uint8_t)[syn] = (fl & TCP_ACK) != 0;
                syn++;
            }
            if (pcap[k] > 0 && !seen[g]) {  /* the group's first payload: STUN bare (RFC 8656) or after a length (RFC 6544) */
                seen[g] = 1;
                COL(T_GROUP, int64_t)[first] = g;
                COL(T_BARE, uint8_t)[first] = (uint8_t)stun_at(p, c, 20);
                COL(T_PREF, uint8_t)[first] = (uint8_t)(c >= 22 && stun_at(p + 2, c - 2, 20));
                first++;
            }
            continue;
        }
        if (c < 8) continue;
        if (p[0] <= 3 && c >= 20) {  /* RFC 7983: first byte 0-3 is STUN */
            const uint32_t mtype = be16(p);
            const uint32_t cls = ((mtype >> 4) & 1) | ((mtype >> 7) & 2);  /* RFC 8489 section 5: C1 C0 */
            if (be32(p + 4) == STUN_COOKIE && cls != 1) {  /* requests and responses (an indication has no answer) */
                COL(S_GROUP, int64_t)[stun] = g;
                COL(S_SIDE, uint8_t)[stun] = side[i];
                COL(S_NS, int64_t)[stun] = tsns[k];
                COL(S_CLASS, int64_t)[stun] = cls;
                COL(S_METHOD, int64_t)[stun] = (mtype & 0x000F) | ((mtype & 0x00E0) >> 1) | ((mtype & 0x3E00) >> 2);
                COL(S_TID0, int64_t)[stun] = be32(p + 8);  /* the 96-bit transaction id */
                COL(S_TID1, int64_t)[stun] = be32(p + 12);
                COL(S_TID2, int64_t)[stun] = be32(p + 16);
                stun++;
            }
        }
        int64_t ipos = 0, icap = 0;
        const int fr = unwrap(p, c, &ipos, &icap);  /* RFC 7983, RFC 8656: RTP/RTCP as it is or TURN-framed */
        if (fr == F_NONE) continue;
        uint8_t pt = 0;
        uint16_t seq = 0;
        uint32_t ts = 0, ssrc = 0;
        const int kind = header(p + ipos, icap, &pt, &seq, &ts, &ssrc);  /* RFC 3550 */
        if (kind == K_NONE) continue;
        COL(R_GROUP, int64_t)[rows] = g;
        COL(R_SIDE, uint8_t)[rows] = side[i];
        COL(R_NS, int64_t)[rows] = tsns[k];
        COL(R_KIND, int8_t)[rows] = (int8_t)kind;
        COL(R_FRAMING, int8_t)[rows] = (int8_t)fr;
        COL(R_PT, uint8_t)[rows] = pt;
        COL(R_SEQ, uint16_t)[rows] = seq;
        COL(R_TS, uint32_t)[rows] = ts;
        COL(R_SSRC, uint32_t)[rows] = ssrc;
        COL(R_ICAP, int32_t)[rows] = (int32_t)icap;
        rows++;
    }
    Py_END_ALLOW_THREADS
#undef COL
    if (bad)
        PyErr_SetString(PyExc_ValueError, "batch_media: a row's packet or group is out of range");
    else
        result = Py_BuildValue("nnnn", rows, stun, syn, first);
done:
    PyMem_Free(seen);
    for (int j = 0; j < nout; j++) PyBuffer_Release(&out[j]);
    for (int j = 0; j < nin; j++) PyBuffer_Release(&in[j]);
    PyBuffer_Release(&data_b);
    return result;
}

static PyMethodDef methods[] = {
    {"batch_media", batch_media, METH_VARARGS, "The RTP/RTCP, STUN, SYN and first TCP payload rows of a batch."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_media", "Compiled media facts of a batch for meshpcap.flows.media.", -1, methods,
};

PyMODINIT_FUNC PyInit__media(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", MEDIA_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
