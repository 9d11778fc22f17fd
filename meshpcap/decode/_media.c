/* Finding RTP and RTCP in a batch's UDP payloads: the compiled half of flows/media.py extract.
 *
 * Optional accelerator.  media_rows() does for each payload (offset, captured length) what the numpy
 * twins in decode/rtp.py do over a whole batch: media_offsets() (the framing, by first byte as RFC 7983
 * section 7 demultiplexes) and then rtp_columns() (the RTP or RTCP header inside), keeping the payloads
 * that hold RTP or RTCP; and it lists the payloads that may be STUN requests or responses (first byte
 * 0-3, at least a STUN header long) for the caller to read.  Every read stays inside the payload's
 * captured bytes: a payload too short for what its first bytes announce is not media, as in the twins.
 * tests/decode/test_media_ext.py compares both on generated and real captures.
 *
 * Only the limited C API (buffer protocol) is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

#define MEDIA_ABI 1

/* decode/rtp.py's constants */
enum { F_NONE = 0, F_DIRECT = 1, F_CHANNEL = 2, F_INDICATION = 3, F_MS_MULTIPLEX = 4 };
enum { K_NONE = 0, K_RTP = 1, K_RTCP = 2 };
#define STUN_COOKIE 0x2112A442u
#define STUN_DATA 0x0013
#define SEND_INDICATION 0x0016
#define DATA_INDICATION 0x0017
#define MS_MULTIPLEX_TURN 0xFF10
#define MAX_ATTRS 12  /* media_offsets' default: DATA is looked for among the first 12 attributes */

/* The output columns, in the order of the ``out`` tuple, with their item sizes. */
enum { O_ROW, O_KIND, O_FRAMING, O_PT, O_SEQ, O_TS, O_SSRC, O_ICAP, O_STUN, NOUT };
static const Py_ssize_t OUT_SIZE[NOUT] = {8, 1, 1, 1, 2, 4, 4, 4, 8};

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

/* media_rows(data, pos, cap, out) -> (rows, stun)
 *
 * data: the batch's bytes; pos, cap: int64 offset and captured length of each UDP payload; out: a tuple
 * of writable arrays of len(pos) in the order of the enum above (row, stun int64; kind, framing int8;
 * payload type uint8; sequence uint16; timestamp, ssrc uint32; inner captured length int32).  The first
 * ``rows`` items of the first eight hold the payloads with RTP or RTCP (their indices into pos, in
 * order), the first ``stun`` items of the last the payloads that may be STUN requests or responses. */
static PyObject *media_rows(PyObject *self, PyObject *args) {
    Py_buffer data_b, pos_b, cap_b;
    PyObject *outs;
    Py_buffer out[NOUT];
    int nout = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*O!", &data_b, &pos_b, &cap_b, &PyTuple_Type, &outs)) return NULL;
    const Py_ssize_t n = pos_b.len / 8;
    if (pos_b.len % 8 || cap_b.len != pos_b.len || PyTuple_GET_SIZE(outs) != NOUT) {
        PyErr_SetString(PyExc_ValueError, "media_rows: columns of unequal length or wrong item size");
        goto done;
    }
    for (; nout < NOUT; nout++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(outs, nout), &out[nout], PyBUF_WRITABLE) < 0) goto done;
        if (out[nout].len != n * OUT_SIZE[nout]) {
            nout++;
            PyErr_SetString(PyExc_ValueError, "media_rows: an output array of the wrong size");
            goto done;
        }
    }
    const uint8_t *buf = data_b.buf;
    const int64_t size = data_b.len;
    const int64_t *pos = pos_b.buf, *cap = cap_b.buf;
    int64_t *o_row = out[O_ROW].buf, *o_stun = out[O_STUN].buf;
    int8_t *o_kind = out[O_KIND].buf, *o_fr = out[O_FRAMING].buf;
    uint8_t *o_pt = out[O_PT].buf;
    uint16_t *o_seq = out[O_SEQ].buf;
    uint32_t *o_ts = out[O_TS].buf, *o_ssrc = out[O_SSRC].buf;
    int32_t *o_icap = out[O_ICAP].buf;
    Py_ssize_t rows = 0, stun = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t p0 = pos[i];
        int64_t c = cap[i];
        if (c < 1 || p0 < 0 || p0 >= size) continue;
        if (c > size - p0) c = size - p0;  /* never past the batch (the decoder's lengths already are not) */
        const uint8_t *p = buf + p0;
        if (p[0] <= 3 && c >= 20) o_stun[stun++] = i;  /* a STUN message, perhaps (RFC 7983: 0-3) */
        int64_t ipos = 0, icap = 0;
        const int fr = unwrap(p, c, &ipos, &icap);
        if (fr == F_NONE) continue;
        uint8_t pt = 0;
        uint16_t seq = 0;
        uint32_t ts = 0, ssrc = 0;
        const int kind = header(p + ipos, icap, &pt, &seq, &ts, &ssrc);
        if (kind == K_NONE) continue;
        o_row[rows] = i;
        o_kind[rows] = (int8_t)kind;
        o_fr[rows] = (int8_t)fr;
        o_pt[rows] = pt;
        o_seq[rows] = seq;
        o_ts[rows] = ts;
        o_ssrc[rows] = ssrc;
        o_icap[rows] = (int32_t)icap;
        rows++;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nn", rows, stun);
done:
    for (int j = 0; j < nout; j++) PyBuffer_Release(&out[j]);
    PyBuffer_Release(&data_b);
    PyBuffer_Release(&pos_b);
    PyBuffer_Release(&cap_b);
    return result;
}

static PyMethodDef methods[] = {
    {"media_rows", media_rows, METH_VARARGS, "The RTP/RTCP rows and STUN candidates of a batch's UDP payloads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_media", "Compiled RTP/RTCP finding for meshpcap.flows.media.", -1, methods,
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
