/* Record-header walks for meshpcap.capture: the one loop of the reader that visits every record.
 *
 * Optional accelerator.  Each function walks the happy path only and stops, without raising,
 * at the first record it would not accept; the Python walkers in pcap.py and pcapng.py then
 * take over from the returned position, so they alone decide what damage or a short chunk
 * means and what the capture reports.  Every check below mirrors a check of those loops:
 * tests/capture/test_walk_ext.py compares both on random and damaged inputs.
 *
 * Only the limited C API (buffer protocol, ints, tuples) is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

/* Bumped whenever a signature or a stopping rule changes; the Python side ignores a
 * module built from another version (a stale in-place build of an editable install). */
#define WALK_ABI 2

static inline uint32_t rd32(const unsigned char *p, int big) {
    uint32_t v;
    memcpy(&v, p, 4);
    if (big) v = __builtin_bswap32(v);
    return v;
}

/* pcap_records(data, pos, rec_len, mode, big_endian, limit, out, fields) -> (count, pos)
 *
 * draft-ietf-opsawg-pcap section 5: each record is a rec_len-byte header whose captured
 * length (incl_len) is at byte 8 (mode 0), at byte 12 in files older than 2.3 (mode 1), or the
 * smaller of bytes 8 and 12 in 2.3 files (mode 2), followed by that many bytes.  Writes the
 * offset of each complete record, from ``pos`` on, into ``out`` (a writable int64 buffer) and
 * its first four header words as read (ts_sec, ts_frac, incl_len, orig_len; the caller sorts
 * out swapped files) into ``fields`` (writable uint32, four per slot of ``out``), and stops at
 * the first record that is not complete in ``data`` or claims more than ``limit`` bytes, or
 * when ``out`` is full. */
static PyObject *pcap_records(PyObject *self, PyObject *args) {
    Py_buffer data, out, fld;
    Py_ssize_t pos, hl;
    int mode, big;
    unsigned long long limit;
    if (!PyArg_ParseTuple(args, "y*nniiKw*w*", &data, &pos, &hl, &mode, &big, &limit, &out, &fld))
        return NULL;
    if (out.len % 8 || fld.len != 2 * out.len || hl < 16) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyBuffer_Release(&fld);
        PyErr_SetString(PyExc_ValueError, "out must be int64, fields uint32 four per slot of out, rec_len >= 16");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)data.buf;
    const uint64_t n = (uint64_t)data.len;
    int64_t *o = (int64_t *)out.buf;
    uint32_t *f = (uint32_t *)fld.buf;
    const Py_ssize_t room = out.len / 8;
    const uint64_t len_end = mode == 0 ? 12 : 16;
    Py_ssize_t k = 0;
    uint64_t at = pos < 0 ? 0 : (uint64_t)pos;
    uint64_t pf = at;  /* next cache line to prefetch: the walk's loads form a dependent chain */
    Py_BEGIN_ALLOW_THREADS
    while (k < room && at + len_end <= n) {
        uint64_t want = at + 4096 < n ? at + 4096 : n;
        for (; pf < want; pf += 64) __builtin_prefetch(p + pf);
        uint64_t incl = rd32(p + at + 8, big);
        if (mode == 1) {
            incl = rd32(p + at + 12, big);
        } else if (mode == 2) {
            uint64_t other = rd32(p + at + 12, big);
            if (other < incl) incl = other;
        }
        uint64_t end = at + (uint64_t)hl + incl;
        if (end > n || incl > limit) break;
        uint32_t *row = f + 4 * k;
        row[0] = rd32(p + at, big);
        row[1] = rd32(p + at + 4, big);
        row[2] = rd32(p + at + 8, big);
        row[3] = rd32(p + at + 12, big);
        o[k++] = (int64_t)at;
        at = end;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    PyBuffer_Release(&fld);
    return Py_BuildValue("nK", k, (unsigned long long)at);
}

#define EPB_TYPE 6u
#define MIN_EPB 32u

/* pcapng_epbs(data, pos, big_endian, nif, sec_base, max_block, out) -> (count, pos)
 *
 * draft-ietf-opsawg-pcapng section 4.3: walks consecutive Enhanced Packet Blocks from ``pos``
 * and writes six int64 per block into ``out``: packet data offset, interface (sec_base +
 * Interface ID), timestamp upper and lower 32 bits, captured and original length.  Stops
 * before any other block type, a block that is not complete in ``data``, and any EPB the
 * Python walker would reject (length not a multiple of 4, under 32 or over max_block,
 * captured length beyond the block, unknown interface, trailing length differing), or when
 * ``out`` is full. */
static PyObject *pcapng_epbs(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    Py_ssize_t pos;
    int big;
    unsigned long long nif, sec_base, max_block;
    if (!PyArg_ParseTuple(args, "y*niKKKw*", &data, &pos, &big, &nif, &sec_base, &max_block, &out))
        return NULL;
    if (out.len % 48) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "out must hold whole rows of six int64");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)data.buf;
    const uint64_t n = (uint64_t)data.len;
    int64_t *o = (int64_t *)out.buf;
    const Py_ssize_t room = out.len / 48;
    Py_ssize_t k = 0;
    uint64_t at = pos < 0 ? 0 : (uint64_t)pos;
    uint64_t pf = at;  /* next cache line to prefetch, as in pcap_records */
    Py_BEGIN_ALLOW_THREADS
    while (k < room && at + 8 <= n) {
        uint64_t want = at + 4096 < n ? at + 4096 : n;
        for (; pf < want; pf += 64) __builtin_prefetch(p + pf);
        const unsigned char *b = p + at;
        if (rd32(b, big) != EPB_TYPE) break;
        uint64_t blen = rd32(b + 4, big);
        if ((blen & 3) || blen < MIN_EPB || blen > max_block) break;
        uint64_t end = at + blen;
        if (end > n) break;
        uint64_t iface = rd32(b + 8, big);
        uint64_t cap = rd32(b + 20, big);
        if (cap > blen - 32 || iface >= nif || rd32(p + end - 4, big) != blen) break;
        int64_t *row = o + 6 * k;
        row[0] = (int64_t)(at + 28);
        row[1] = (int64_t)(sec_base + iface);
        row[2] = (int64_t)rd32(b + 12, big);
        row[3] = (int64_t)rd32(b + 16, big);
        row[4] = (int64_t)cap;
        row[5] = (int64_t)rd32(b + 24, big);
        k++;
        at = end;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return Py_BuildValue("nK", k, (unsigned long long)at);
}

static PyMethodDef methods[] = {
    {"pcap_records", pcap_records, METH_VARARGS, "Walk classic pcap record headers (see _walk.c)."},
    {"pcapng_epbs", pcapng_epbs, METH_VARARGS, "Walk consecutive pcapng Enhanced Packet Blocks (see _walk.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_walk", "Compiled record-header walks for meshpcap.capture.", -1, methods,
};

PyMODINIT_FUNC PyInit__walk(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", WALK_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
