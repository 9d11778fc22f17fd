/* Grouping a decoded batch by canonical 5-tuple: the compiled half of flows/engine.py group_batch.
 *
 * Optional accelerator.  group_keys() does for the decoded packets ``pidx`` of a batch what the numpy
 * code of engine._canonical_groups does: the canonical endpoints (the "a" side is the smaller (address,
 * port)), the 64-bit hash of each key (engine._key_hash, with the multipliers passed in), and the
 * grouping by hash that a stable argsort of the hashes gives: ``perm`` (each hash's packets together,
 * hashes ascending, capture order within), each group's first packet and each packet's group.  Instead
 * of sorting the packets it finds the distinct hashes with a hash table, sorts only those (a batch has
 * far fewer 5-tuples than packets) and places the packets by counting.  Two different keys with one
 * hash (a collision) are reported, and the caller groups that batch in numpy, which handles them.
 * key_hash() is engine._key_hash alone (the duplicate search's prefilter keys).  tests/flows/test_group_ext.py
 * compares both with their numpy twins.
 *
 * evidence_items() makes the payloads a batch keeps for the naming stage, one engine.Evidence tuple each
 * (twin: engine._evidence_items_py): the builder keeps tens of thousands a second, and making their fields
 * one Python object at a time (seven lists, zip, a slice per payload) was the largest step left in the
 * process that sets the pace of a two-process read.
 *
 * evidence_candidates() picks the packets of a batch whose payloads the builder may keep (twin:
 * engine._evidence_candidates_numpy), in the reader's second process: one pass in 5-tuple order instead of a
 * dozen numpy passes.
 *
 * keep_evidence() is the builder's half (twin: engine.FlowBuilder._evidence_numpy): it ranks those candidates
 * against the payloads each flow direction kept before, counts them, and appends the Evidence tuples of the
 * kept ones to the builder's lists in one pass, where numpy took a dozen passes, two argsorts and a Python
 * loop of appends.
 *
 * stun_datagrams() tells the STUN messages and TURN ChannelData among a batch's UDP payloads (twin:
 * engine._stun_datagrams_numpy), and dup_keys() makes the duplicate search's prefilter key of each decoded
 * packet (twin: the gathers and hash of engine.dup_prefilter): both in the reader's second process, one pass
 * each instead of a dozen gathers.
 *
 * tcp_streams() gives the naming stage the two byte streams of a TCP flow in the usual case, each direction's
 * segments in order, one after the other (twin: flows/naming.py reassemble, which the caller runs for a
 * direction this returns None for): splitting a flow's payloads by direction and joining them were a third
 * of the cost of naming a TLS flow, most of it while the capture is still being read.
 *
 * idle_positions(), fill_flows() and count_flows() are the flow builder's steps after its events (twins:
 * engine.FlowBuilder._idle_positions_numpy, _flow_of_each_packet_numpy, _count_packets_numpy): the packets that
 * start a flow after silence, each packet's flow, and the per-flow counters, each in one pass where numpy took a
 * dozen gathers, scatters and ufunc.at calls in the process that sets the pace of a large read.  same_bytes()
 * is the duplicate search's byte comparison of pairs (twin: engine._same_bytes_py); dup_links() and
 * first_of_keys() find its pairs by key, in a batch and against the last packets of earlier batches, each in one
 * pass with a hash table of the keys (twins: engine._dup_links_numpy, _first_of_keys_numpy: sorts).
 *
 * Only the limited C API (buffer protocol) is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

#define GROUP_ABI 10

/* The output columns, in the order of the ``out`` tuple, with their item sizes. */
enum { O_PROTO, O_VER, O_AH, O_AL, O_BH, O_BL, O_AP, O_BP, O_SRC_A, O_HASH, O_PERM, O_FIRST, O_INV, NOUT };
static const Py_ssize_t OUT_SIZE[NOUT] = {8, 8, 8, 8, 8, 8, 8, 8, 1, 8, 8, 8, 8};

typedef struct {
    uint64_t hash;
    int64_t group;  /* first-seen number of the group; -1: empty slot */
} slot_t;

typedef struct {
    uint64_t hash;
    int64_t group;
} pair_t;

/* One column's step of engine._key_hash: h = (h ^ column) * multiplier; h ^= h >> 29. */
static inline uint64_t hash_step(uint64_t h, uint64_t column, uint64_t multiplier) {
    const uint64_t x = (h ^ column) * multiplier;
    return x ^ (x >> 29);
}

static int by_hash(const void *x, const void *y) {
    uint64_t a = ((const pair_t *)x)->hash, b = ((const pair_t *)y)->hash;
    return a < b ? -1 : a > b;
}

/* group_keys(pidx, proto, ver, src_hi, src_lo, dst_hi, dst_lo, sport, dport, mult, out) -> (groups, collided)
 *
 * pidx: int64 packet indices; proto int16, ver int8, src/dst hi/lo uint64, sport/dport int32 (the Decoded
 * columns of the whole batch); mult: the six uint64 hash multipliers; out: a tuple of writable arrays of
 * len(pidx) in the order of the enum above (proto, ver, ap, bp, perm, first, inv int64; ah, al, bh, bl,
 * hash uint64; src_a bool).  ``first`` holds each group's first packet in its first ``groups`` items. */
static PyObject *group_keys(PyObject *self, PyObject *args) {
    Py_buffer pidx_b, proto_b, ver_b, shi_b, slo_b, dhi_b, dlo_b, sp_b, dp_b;
    PyObject *mult, *outs;
    Py_buffer out[NOUT];
    int nout = 0;
    PyObject *result = NULL;
    slot_t *table = NULL;
    pair_t *pairs = NULL;
    int64_t *group_of = NULL, *first_of = NULL, *rank = NULL, *next = NULL;
    uint64_t *key_of = NULL;  /* the six hashed columns of each group's first packet (dense: stays in cache) */
    uint64_t k[6];
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*O!O!", &pidx_b, &proto_b, &ver_b, &shi_b, &slo_b, &dhi_b, &dlo_b,
                          &sp_b, &dp_b, &PyTuple_Type, &mult, &PyTuple_Type, &outs))
        return NULL;
    const Py_ssize_t n = pidx_b.len / 8;
    const Py_ssize_t m = proto_b.len / 2;  /* packets in the batch */
    if (pidx_b.len % 8 || proto_b.len % 2 || ver_b.len != m || shi_b.len != 8 * m || slo_b.len != 8 * m ||
        dhi_b.len != 8 * m || dlo_b.len != 8 * m || sp_b.len != 4 * m || dp_b.len != 4 * m ||
        PyTuple_GET_SIZE(mult) < 6 || PyTuple_GET_SIZE(outs) != NOUT) {
        PyErr_SetString(PyExc_ValueError, "group_keys: columns of unequal length or wrong item size");
        goto done;
    }
    for (int j = 0; j < 6; j++) {
        k[j] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(mult, j));
        if (PyErr_Occurred()) goto done;
    }
    for (; nout < NOUT; nout++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(outs, nout), &out[nout], PyBUF_WRITABLE) < 0) goto done;
        if (out[nout].len != OUT_SIZE[nout] * n) {
            nout++;
            PyErr_SetString(PyExc_ValueError, "group_keys: an output column has the wrong size");
            goto done;
        }
    }
    const int64_t *pidx = pidx_b.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pidx[i] < 0 || pidx[i] >= m) {
            PyErr_SetString(PyExc_IndexError, "group_keys: packet index out of range");
            goto done;
        }
    }
    /* the table grows with the groups (a batch has far fewer 5-tuples than packets: a small table stays in
     * the first-level cache), kept under half full */
    Py_ssize_t size = 1024;
    table = malloc(sizeof(slot_t) * size);
    pairs = malloc(sizeof(pair_t) * (n ? n : 1));
    group_of = malloc(sizeof(int64_t) * (n ? n : 1));
    first_of = malloc(sizeof(int64_t) * (n ? n : 1));
    rank = malloc(sizeof(int64_t) * (n ? n : 1));
    next = malloc(sizeof(int64_t) * (n ? n : 1));
    key_of = malloc(6 * sizeof(uint64_t) * (n ? n : 1));
    if (!table || !pairs || !group_of || !first_of || !rank || !next || !key_of) {
        PyErr_NoMemory();
        goto done;
    }
    int64_t *o_proto = out[O_PROTO].buf, *o_ver = out[O_VER].buf, *o_ap = out[O_AP].buf, *o_bp = out[O_BP].buf;
    uint64_t *o_ah = out[O_AH].buf, *o_al = out[O_AL].buf, *o_bh = out[O_BH].buf, *o_bl = out[O_BL].buf;
    uint64_t *o_hash = out[O_HASH].buf;
    unsigned char *o_src_a = out[O_SRC_A].buf;
    int64_t *o_perm = out[O_PERM].buf, *o_first = out[O_FIRST].buf, *o_inv = out[O_INV].buf;
    const int16_t *proto = proto_b.buf;
    const int8_t *ver = ver_b.buf;
    const uint64_t *shi = shi_b.buf, *slo = slo_b.buf, *dhi = dhi_b.buf, *dlo = dlo_b.buf;
    const int32_t *sport = sp_b.buf, *dport = dp_b.buf;
    int collided = 0, failed = 0;
    Py_ssize_t groups = 0;
    Py_BEGIN_ALLOW_THREADS
    memset(table, 0xFF, sizeof(slot_t) * size);  /* every group -1: empty */
    /* first the keys and hashes of every packet (independent rows: the multiplications overlap) ... */
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t p = pidx[i];
        const int64_t pr = proto[p], v = ver[p];
        const uint64_t sh = shi[p], sl = slo[p], dh = dhi[p], dl = dlo[p];
        const int64_t sp = sport[p] > 0 ? sport[p] : 0, dp = dport[p] > 0 ? dport[p] : 0;
        const int a = (sh < dh) || (sh == dh && (sl < dl || (sl == dl && sp <= dp)));
        const uint64_t ah = a ? sh : dh, al = a ? sl : dl, bh = a ? dh : sh, bl = a ? dl : sl;
        const int64_t ap = a ? sp : dp, bp = a ? dp : sp;
        o_proto[i] = pr;
        o_ver[i] = v;
        o_src_a[i] = (unsigned char)a;
        o_ah[i] = ah;
        o_al[i] = al;
        o_bh[i] = bh;
        o_bl[i] = bl;
        o_ap[i] = ap;
        o_bp[i] = bp;
        /* engine._key_columns and engine._key_hash */
        const uint64_t cols[6] = {(uint64_t)((pr << 8) | v), ah, al, bh, bl, (uint64_t)((ap << 16) | bp)};
        uint64_t h = 0;
        for (int j = 0; j < 6; j++) h = hash_step(h, cols[j], k[j]);
        o_hash[i] = h;
    }
    /* ... then the distinct hashes, in the order first seen */
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint64_t h = o_hash[i];
        const uint64_t cols[6] = {(uint64_t)((o_proto[i] << 8) | o_ver[i]), o_ah[i], o_al[i], o_bh[i], o_bl[i],
                                  (uint64_t)((o_ap[i] << 16) | o_bp[i])};
        Py_ssize_t s = (Py_ssize_t)((h ^ (h >> 32)) & (uint64_t)(size - 1));
        while (table[s].group >= 0 && table[s].hash != h) s = (s + 1) & (size - 1);
        if (table[s].group < 0) {
            if (2 * (groups + 1) > size) {  /* grow: the groups so far again, in a table twice as large */
                slot_t *larger = malloc(sizeof(slot_t) * 2 * size);
                if (larger == NULL) {
                    failed = 1;
                    break;
                }
                size *= 2;
                memset(larger, 0xFF, sizeof(slot_t) * size);
                for (Py_ssize_t g = 0; g < groups; g++) {
                    const uint64_t gh = pairs[g].hash;
                    Py_ssize_t t = (Py_ssize_t)((gh ^ (gh >> 32)) & (uint64_t)(size - 1));
                    while (larger[t].group >= 0) t = (t + 1) & (size - 1);
                    larger[t].hash = gh;
                    larger[t].group = g;
                }
                free(table);
                table = larger;
                s = (Py_ssize_t)((h ^ (h >> 32)) & (uint64_t)(size - 1));
                while (table[s].group >= 0) s = (s + 1) & (size - 1);
            }
            table[s].hash = h;
            table[s].group = groups;
            first_of[groups] = i;
            memcpy(key_of + 6 * groups, cols, sizeof(cols));
            pairs[groups].hash = h;
            pairs[groups].group = groups;
            groups++;
        } else if (memcmp(key_of + 6 * table[s].group, cols, sizeof(cols)) != 0) {
            collided = 1;  /* two keys, one hash (the numpy twin compares the same six columns) */
        }
        group_of[i] = table[s].group;
    }
    /* the groups in hash order, then each packet placed after the earlier ones of its group */
    const Py_ssize_t placed = failed ? 0 : n;  /* out of memory: nothing more is written (see below) */
    qsort(pairs, (size_t)groups, sizeof(pair_t), by_hash);
    for (Py_ssize_t r = 0; r < groups; r++) {
        rank[pairs[r].group] = r;
        next[r] = 0;
    }
    for (Py_ssize_t i = 0; i < placed; i++) next[rank[group_of[i]]]++;
    int64_t at = 0;
    for (Py_ssize_t r = 0; r < groups; r++) {
        const int64_t c = next[r];
        next[r] = at;
        at += c;
        o_first[r] = first_of[pairs[r].group];
    }
    for (Py_ssize_t i = 0; i < placed; i++) {
        const int64_t r = rank[group_of[i]];
        o_perm[next[r]++] = i;
        o_inv[i] = r;
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(ni)", groups, collided);
done:
    for (int j = 0; j < nout; j++) PyBuffer_Release(&out[j]);
    PyBuffer_Release(&pidx_b);
    PyBuffer_Release(&proto_b);
    PyBuffer_Release(&ver_b);
    PyBuffer_Release(&shi_b);
    PyBuffer_Release(&slo_b);
    PyBuffer_Release(&dhi_b);
    PyBuffer_Release(&dlo_b);
    PyBuffer_Release(&sp_b);
    PyBuffer_Release(&dp_b);
    free(table);
    free(pairs);
    free(group_of);
    free(first_of);
    free(rank);
    free(next);
    free(key_of);
    return result;
}

/* key_hash(cols, mult, out): engine._key_hash of up to eight uint64 columns of one length (h = 0; then per
 * column h = (h ^ column) * multiplier; h ^= h >> 29), into the uint64 array ``out``. */
static PyObject *key_hash(PyObject *self, PyObject *args) {
    PyObject *cols, *mult;
    Py_buffer out, col[8];
    int ncol = 0;
    PyObject *result = NULL;
    uint64_t k[8];
    if (!PyArg_ParseTuple(args, "O!O!w*", &PyTuple_Type, &cols, &PyTuple_Type, &mult, &out)) return NULL;
    const Py_ssize_t m = PyTuple_GET_SIZE(cols), n = out.len / 8;
    if (m < 1 || m > 8 || PyTuple_GET_SIZE(mult) < m || out.len % 8) {
        PyErr_SetString(PyExc_ValueError, "key_hash: one to eight columns, as many multipliers");
        goto done;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        k[j] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(mult, j));
        if (PyErr_Occurred()) goto done;
    }
    for (; ncol < m; ncol++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cols, ncol), &col[ncol], PyBUF_SIMPLE) < 0) goto done;
        if (col[ncol].len != out.len) {
            ncol++;
            PyErr_SetString(PyExc_ValueError, "key_hash: columns of unequal length");
            goto done;
        }
    }
    uint64_t *h = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) h[i] = 0;
    for (Py_ssize_t j = 0; j < m; j++) {  /* column by column: the rows' multiplications overlap */
        const uint64_t *c = col[j].buf, kj = k[j];
        for (Py_ssize_t i = 0; i < n; i++) h[i] = hash_step(h[i], c[i], kj);
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    PyBuffer_Release(&out);
    return result;
}

/* One ``cls`` (engine.Evidence: record, ns, from_a, seq, flags, data, wire_len) with, as its data, the bytes
 * buf[pay:pay + cap] of a buffer of ``len`` bytes, clamped as a Python slice is (pay and cap are never negative);
 * NULL on failure. */
static PyObject *evidence_item(PyTypeObject *cls, const char *buf, Py_ssize_t len, int64_t pay, int64_t cap,
                               int64_t record, int64_t ts, int src_a, int64_t seq, long flags, int64_t wire) {
    const Py_ssize_t lo = pay < len ? (Py_ssize_t)pay : len;
    const Py_ssize_t hi = cap < len - lo ? lo + (Py_ssize_t)cap : len;
    PyObject *item = cls->tp_alloc(cls, 7);
    if (item == NULL) return NULL;
    PyObject *f[7] = {PyLong_FromLongLong(record), PyLong_FromLongLong(ts), PyBool_FromLong(src_a),
                      PyLong_FromLongLong(seq), PyLong_FromLong(flags), PyBytes_FromStringAndSize(buf + lo, hi - lo),
                      PyLong_FromLongLong(wire)};
    int bad = 0;
    for (int j = 0; j < 7; j++) bad |= f[j] == NULL;
    for (int j = 0; j < 7; j++) {
        if (bad) Py_XDECREF(f[j]);
        else PyTuple_SET_ITEM(item, j, f[j]);
    }
    if (bad) {
        Py_DECREF(item);
        return NULL;
    }
    return item;
}

/* The columns of evidence_items, in the order of its arguments after cls and data, with their item sizes. */
enum { E_PAY, E_CAP, E_RECORD, E_TS, E_SRC_A, E_SEQ, E_FLAGS, E_WIRE, NEV };
static const Py_ssize_t EV_SIZE[NEV] = {8, 8, 8, 8, 1, 8, 2, 8};

/* evidence_items(cls, data, pay, cap, record, ts, src_a, seq, flags, wire) -> list
 *
 * One ``cls`` (a tuple subclass of seven fields: record, ns, from_a, seq, flags, data, wire_len) per row:
 * record, ts, seq and wire int64, src_a bool, flags int16, and as its data the bytes data[pay:pay + cap]
 * of the buffer ``data`` (a Python slice: clamped to the buffer; pay and cap are never negative). */
static PyObject *evidence_items(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *data_obj, *cols[NEV];
    Py_buffer data, col[NEV];
    int ncol = 0, have_data = 0;
    PyObject *list = NULL;
    if (!PyArg_ParseTuple(args, "O!OOOOOOOOO", &PyType_Type, &cls, &data_obj, &cols[E_PAY], &cols[E_CAP],
                          &cols[E_RECORD], &cols[E_TS], &cols[E_SRC_A], &cols[E_SEQ], &cols[E_FLAGS], &cols[E_WIRE]))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "evidence_items: cls must be a tuple subclass");
        return NULL;
    }
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_SIMPLE) < 0) return NULL;
    have_data = 1;
    Py_ssize_t n = -1;
    for (; ncol < NEV; ncol++) {
        if (PyObject_GetBuffer(cols[ncol], &col[ncol], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
        if (col[ncol].itemsize != EV_SIZE[ncol] || col[ncol].ndim != 1 ||
            (n >= 0 && col[ncol].shape[0] != n)) {
            ncol++;
            PyErr_SetString(PyExc_ValueError, "evidence_items: columns of one length, of the documented item sizes");
            goto done;
        }
        n = col[ncol].shape[0];
    }
    const int64_t *pay = col[E_PAY].buf, *cap = col[E_CAP].buf, *record = col[E_RECORD].buf,
                  *ts = col[E_TS].buf, *seq = col[E_SEQ].buf, *wire = col[E_WIRE].buf;
    const uint8_t *src_a = col[E_SRC_A].buf;
    const int16_t *flags = col[E_FLAGS].buf;
    const char *buf = data.buf;
    const Py_ssize_t len = data.len;
    list = PyList_New(n);
    if (list == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pay[i] < 0 || cap[i] < 0) {
            PyErr_SetString(PyExc_ValueError, "evidence_items: a negative payload offset or length");
            goto fail;
        }
        PyObject *item = evidence_item(cls, buf, len, pay[i], cap[i], record[i], ts[i], src_a[i], seq[i], flags[i],
                                       wire[i]);
        if (item == NULL) goto fail;
        PyList_SET_ITEM(list, i, item);
    }
    goto done;
fail:
    Py_CLEAR(list);
done:
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    if (have_data) PyBuffer_Release(&data);
    return list;
}

/* The columns of evidence_candidates, in the order of its arguments, with their item sizes. */
enum { C_PIDX, C_PERM, C_PROTO, C_INV, C_SRC_A, C_AP, C_BP, C_STUN_AT, C_PAYCAP, C_FLAGS, C_TS, C_OUT, NCAND };
static const Py_ssize_t CAND_SIZE[NCAND] = {8, 8, 8, 8, 1, 8, 8, 8, 8, 2, 8, 4};

/* evidence_candidates(pidx, perm, proto, inv, src_a, a_port, b_port, stun_at, payload_cap, tcp_flags, ts_ns,
 *                     out, idle_ns, bounds, dns_ports) -> count
 *
 * engine.evidence_candidates' choice: pidx, perm, proto, inv (int64) and src_a (bool) per decoded packet, as
 * Grouped holds them; a_port and b_port (int64) per 5-tuple; stun_at (int64) the STUN messages' positions;
 * payload_cap (int64), tcp_flags (int16) and ts_ns (int64) per packet of the batch; bounds: the kept payloads
 * per flow direction of TCP, UDP and DNS; dns_ports: the ports that make a 5-tuple DNS.  Writes the chosen
 * positions (into pidx, ascending) to the int32 array ``out`` (len(pidx) long) and returns how many.
 *
 * In 5-tuple order (perm), a packet may start a flow when it is its 5-tuple's first, a TCP SYN without ACK,
 * or a UDP datagram more than idle_ns after the packet before it; a payload is chosen when its rank among
 * the payloads of its direction since the latest such packet is under its bound, or it is a STUN message. */
static PyObject *evidence_candidates(PyObject *self, PyObject *args) {
    PyObject *cols[NCAND], *bounds, *dns_ports;
    long long idle_ns;
    Py_buffer col[NCAND];
    int ncol = 0;
    PyObject *result = NULL;
    uint8_t *stun = NULL;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOLO!O!", &cols[C_PIDX], &cols[C_PERM], &cols[C_PROTO], &cols[C_INV],
                          &cols[C_SRC_A], &cols[C_AP], &cols[C_BP], &cols[C_STUN_AT], &cols[C_PAYCAP], &cols[C_FLAGS],
                          &cols[C_TS], &cols[C_OUT], &idle_ns, &PyTuple_Type, &bounds, &PyTuple_Type, &dns_ports))
        return NULL;
    long long bound[3];
    int ports[8], nports = (int)PyTuple_GET_SIZE(dns_ports);
    if (PyTuple_GET_SIZE(bounds) != 3 || nports > 8) {
        PyErr_SetString(PyExc_ValueError, "evidence_candidates: three bounds, at most eight DNS ports");
        return NULL;
    }
    for (int j = 0; j < 3; j++) bound[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(bounds, j));
    for (int j = 0; j < nports; j++) ports[j] = (int)PyLong_AsLong(PyTuple_GET_ITEM(dns_ports, j));
    if (PyErr_Occurred()) return NULL;
    for (; ncol < NCAND; ncol++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (ncol == C_OUT ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(cols[ncol], &col[ncol], flags) < 0) goto done;
        if (col[ncol].itemsize != CAND_SIZE[ncol] || col[ncol].ndim != 1) {
            ncol++;
            PyErr_SetString(PyExc_ValueError, "evidence_candidates: a column of the wrong item size");
            goto done;
        }
    }
    const Py_ssize_t n = col[C_PIDX].shape[0], groups = col[C_AP].shape[0], m = col[C_PAYCAP].shape[0];
    if (col[C_PERM].shape[0] != n || col[C_PROTO].shape[0] != n || col[C_INV].shape[0] != n ||
        col[C_SRC_A].shape[0] != n || col[C_OUT].shape[0] != n || col[C_BP].shape[0] != groups ||
        col[C_FLAGS].shape[0] != m || col[C_TS].shape[0] != m) {
        PyErr_SetString(PyExc_ValueError, "evidence_candidates: columns of unequal length");
        goto done;
    }
    const int64_t *pidx = col[C_PIDX].buf, *perm = col[C_PERM].buf, *proto = col[C_PROTO].buf, *inv = col[C_INV].buf,
                  *ap = col[C_AP].buf, *bp = col[C_BP].buf, *stun_at = col[C_STUN_AT].buf, *paycap = col[C_PAYCAP].buf,
                  *ts = col[C_TS].buf;
    const uint8_t *src_a = col[C_SRC_A].buf;
    const int16_t *tflags = col[C_FLAGS].buf;
    int32_t *out = col[C_OUT].buf;
    stun = calloc(n ? n : 1, 1);  /* the chosen ones too, once the pass has marked them (bit 1) */
    if (stun == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < col[C_STUN_AT].shape[0]; i++) {
        if (stun_at[i] < 0 || stun_at[i] >= n) goto out_of_range;
        stun[stun_at[i]] = 1;
    }
    long long count[2] = {0, 0};  /* payloads of each direction since the latest packet that may start a flow */
    int64_t prev_g = -1, prev_ts = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        const int64_t q = perm[j];
        if (q < 0 || q >= n) goto out_of_range;
        const int64_t p = pidx[q], g = inv[q];
        if (p < 0 || p >= m || g < 0 || g >= groups) goto out_of_range;
        const int is_tcp = proto[q] == 6, is_udp = proto[q] == 17;
        /* int64 wraps as numpy's subtraction does */
        const int gap = j > 0 && (int64_t)((uint64_t)ts[p] - (uint64_t)prev_ts) > idle_ns;
        const int start = j == 0 || g != prev_g || (is_tcp && (tflags[p] & 0x12) == 0x02) || (is_udp && gap);
        prev_g = g;
        prev_ts = ts[p];
        if (start) count[0] = count[1] = 0;
        if (!(paycap[p] > 0 && (is_tcp || is_udp))) continue;
        const int side = src_a[q] ? 0 : 1;
        const long long rank = count[side]++;
        long long b = bound[0];
        if (!is_tcp) {
            int dns = 0;
            for (int k = 0; k < nports; k++) dns |= ap[g] == ports[k] || bp[g] == ports[k];
            b = dns ? bound[2] : bound[1];
        }
        if (rank < b || (stun[q] & 1)) stun[q] |= 2;
    }
    Py_ssize_t k = 0;
    for (Py_ssize_t q = 0; q < n; q++)
        if (stun[q] & 2) out[k++] = (int32_t)q;
    result = PyLong_FromSsize_t(k);
    goto done;
out_of_range:
    PyErr_SetString(PyExc_IndexError, "evidence_candidates: a position out of range");
done:
    free(stun);
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    return result;
}

/* The columns of keep_evidence, in the order of its arguments after cls, data and ev, with their item sizes:
 * first those indexed by position among the decoded packets, then those of the batch, then the counters. */
enum { K_CAND, K_FID, K_SRC_A, K_TCP, K_STUN, K_TS, K_PIDX, K_SPORT, K_DPORT, K_PAY, K_CAP, K_SEQ, K_FLAGS, K_WIRE,
       K_PAY_A, K_PAY_B, K_STUN_A, K_STUN_B, NKEEP };
static const Py_ssize_t KEEP_SIZE[NKEEP] = {4, 8, 1, 1, 1, 8, 8, 4, 4, 8, 8, 8, 2, 8, 8, 8, 8, 8};

/* keep_evidence(cls, data, ev, cand, fid, src_a, is_tcp, stun, ts, pidx, sport, dport, payload, payload_cap,
 *               tcp_seq, tcp_flags, payload_len, pay_a, pay_b, stun_a, stun_b, nflows, record0, bounds,
 *               dns_ports) -> the kept DNS datagrams' Evidence, in order
 *
 * cand (int32): the candidate positions among the decoded packets, ascending; fid (int64), src_a, is_tcp and
 * stun (bool), ts (int64) per decoded packet; pidx (int64) their packets in the batch, whose sport, dport
 * (int32), payload, payload_cap, tcp_seq (int64), tcp_flags (int16) and payload_len (int64) are given; pay_a,
 * pay_b, stun_a, stun_b: the builder's int64 counters per flow (at least nflows long), updated in place;
 * bounds: the payloads kept per flow direction of TCP, UDP, DNS, and the STUN messages.  Each candidate, in
 * order, counts as its direction's next payload (and next STUN message when it is one); it is kept when that
 * rank is under its bound (TCP; UDP, or DNS for a packet to or from dns_ports; STUN for a UDP STUN message),
 * as ``cls(record0 + packet, ts, src_a, seq, flags, data[payload:payload + cap], wire)`` appended to
 * ``ev[flow]`` (a list, made when the flow has none).  The twin ranks only the directions still under their
 * bound; a flow is one 5-tuple, so its candidates share one transport and pair of ports and the ranks agree. */
static PyObject *keep_evidence(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *data_obj, *ev, *cols[NKEEP], *bounds, *dns_ports;
    Py_ssize_t nflows;
    long long record0;
    Py_buffer data, col[NKEEP];
    int ncol = 0, have_data = 0;
    PyObject *result = NULL, *dns_items = NULL;
    if (!PyArg_ParseTuple(args, "O!OO!OOOOOOOOOOOOOOOOOOnLO!O!", &PyType_Type, &cls, &data_obj, &PyDict_Type, &ev,
                          &cols[K_CAND], &cols[K_FID], &cols[K_SRC_A], &cols[K_TCP], &cols[K_STUN], &cols[K_TS],
                          &cols[K_PIDX], &cols[K_SPORT], &cols[K_DPORT], &cols[K_PAY], &cols[K_CAP], &cols[K_SEQ],
                          &cols[K_FLAGS], &cols[K_WIRE], &cols[K_PAY_A], &cols[K_PAY_B], &cols[K_STUN_A],
                          &cols[K_STUN_B], &nflows, &record0, &PyTuple_Type, &bounds, &PyTuple_Type, &dns_ports))
        return NULL;
    if (!PyType_IsSubtype(cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "keep_evidence: cls must be a tuple subclass");
        return NULL;
    }
    long long bound[4];
    int ports[8], nports = (int)PyTuple_GET_SIZE(dns_ports);
    if (PyTuple_GET_SIZE(bounds) != 4 || nports > 8) {
        PyErr_SetString(PyExc_ValueError, "keep_evidence: four bounds, at most eight DNS ports");
        return NULL;
    }
    for (int j = 0; j < 4; j++) bound[j] = PyLong_AsLongLong(PyTuple_GET_ITEM(bounds, j));
    for (int j = 0; j < nports; j++) ports[j] = (int)PyLong_AsLong(PyTuple_GET_ITEM(dns_ports, j));
    if (PyErr_Occurred()) return NULL;
    if (PyObject_GetBuffer(data_obj, &data, PyBUF_SIMPLE) < 0) return NULL;
    have_data = 1;
    for (; ncol < NKEEP; ncol++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (ncol >= K_PAY_A ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(cols[ncol], &col[ncol], flags) < 0) goto done;
        if (col[ncol].itemsize != KEEP_SIZE[ncol] || col[ncol].ndim != 1) {
            ncol++;
            PyErr_SetString(PyExc_ValueError, "keep_evidence: a column of the wrong item size");
            goto done;
        }
    }
    const Py_ssize_t nc = col[K_CAND].shape[0], n = col[K_FID].shape[0], m = col[K_SPORT].shape[0];
    for (int j = K_SRC_A; j <= K_PIDX; j++)
        if (col[j].shape[0] != n) goto unequal;
    for (int j = K_DPORT; j <= K_WIRE; j++)
        if (col[j].shape[0] != m) goto unequal;
    for (int j = K_PAY_A; j <= K_STUN_B; j++)
        if (col[j].shape[0] < nflows) goto unequal;
    const int32_t *cand = col[K_CAND].buf, *sport = col[K_SPORT].buf, *dport = col[K_DPORT].buf;
    const int64_t *fid = col[K_FID].buf, *ts = col[K_TS].buf, *pidx = col[K_PIDX].buf, *pay = col[K_PAY].buf,
                  *cap = col[K_CAP].buf, *seq = col[K_SEQ].buf, *wire = col[K_WIRE].buf;
    const uint8_t *src_a = col[K_SRC_A].buf, *is_tcp = col[K_TCP].buf, *is_stun = col[K_STUN].buf;
    const int16_t *tflags = col[K_FLAGS].buf;
    int64_t *pay_a = col[K_PAY_A].buf, *pay_b = col[K_PAY_B].buf, *stun_a = col[K_STUN_A].buf,
            *stun_b = col[K_STUN_B].buf;
    for (Py_ssize_t i = 0; i < nc; i++) {  /* every index checked before anything is counted */
        const int32_t c = cand[i];
        if (c < 0 || c >= n || fid[c] < 0 || fid[c] >= nflows || pidx[c] < 0 || pidx[c] >= m ||
            pay[pidx[c]] < 0 || cap[pidx[c]] < 0) {
            PyErr_SetString(PyExc_IndexError, "keep_evidence: a position, flow or payload out of range");
            goto done;
        }
    }
    dns_items = PyList_New(0);
    if (dns_items == NULL) goto done;
    const char *buf = data.buf;
    const Py_ssize_t len = data.len;
    for (Py_ssize_t i = 0; i < nc; i++) {
        const int32_t c = cand[i];
        const int64_t f = fid[c], p = pidx[c];
        const int a = src_a[c] != 0, tcp = is_tcp[c] != 0;
        int dns = 0;
        if (!tcp)
            for (int k = 0; k < nports; k++) dns |= sport[p] == ports[k] || dport[p] == ports[k];
        const long long rank = a ? pay_a[f]++ : pay_b[f]++;
        int keep = tcp ? rank < bound[0] : (rank < bound[1] || (dns && rank < bound[2]));
        if (is_stun[c]) {
            const long long srank = a ? stun_a[f]++ : stun_b[f]++;
            keep |= !tcp && srank < bound[3];
        }
        if (!keep) continue;
        PyObject *item = evidence_item(cls, buf, len, pay[p], cap[p], record0 + p, ts[c], a, seq[p], tflags[p], wire[p]);
        if (item == NULL) goto fail;
        PyObject *key = PyLong_FromLongLong(f);
        if (key == NULL) {
            Py_DECREF(item);
            goto fail;
        }
        PyObject *lst = PyDict_GetItemWithError(ev, key);  /* borrowed */
        if (lst == NULL) {
            if (PyErr_Occurred() || (lst = PyList_New(0)) == NULL || PyDict_SetItem(ev, key, lst) < 0) {
                Py_XDECREF(lst);
                Py_DECREF(key);
                Py_DECREF(item);
                goto fail;
            }
            Py_DECREF(lst);  /* the dict holds it */
        }
        Py_DECREF(key);
        if (!PyList_Check(lst) || PyList_Append(lst, item) < 0 || (dns && PyList_Append(dns_items, item) < 0)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "keep_evidence: ev holds a value that is not a list");
            Py_DECREF(item);
            goto fail;
        }
        Py_DECREF(item);
    }
    result = dns_items;
    dns_items = NULL;
    goto done;
unequal:
    PyErr_SetString(PyExc_ValueError, "keep_evidence: columns of unequal length");
    goto done;
fail:
done:
    Py_XDECREF(dns_items);
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    if (have_data) PyBuffer_Release(&data);
    return result;
}

static inline uint32_t rd16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t rd32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* stun_datagrams(data, pay, cap, plen, cookie, ms_turn_first, ms_turn_indications, is_stun, cls, is_chan) -> bool
 *
 * For UDP payloads at data[pay:pay + cap] (int64 columns; every cap at least 4, every payload inside data; else
 * False and nothing written, for the twin to do it) of wire length plen: is_stun (bool) marks the STUN messages
 * (first byte 0-3, RFC 7983; the RFC 8489 cookie with a length that is a multiple of 4, or an MS-TURN message
 * whose first attribute is ms_turn_first (two 32-bit words, [MS-TURN] 2.2.2.8) and whose length fills the
 * datagram), cls (int8) their classes (RFC 8489 section 5; the MS-TURN types in ms_turn_indications are
 * indications), is_chan (bool) the TURN ChannelData (RFC 8656 section 12.4: channel 0x4000-0x4FFF, a length that
 * fits with at most 3 bytes of padding).  cls is written for every payload. */
static PyObject *stun_datagrams(PyObject *self, PyObject *args) {
    Py_buffer data, pay_b, cap_b, plen_b, st_b, cls_b, ch_b;
    unsigned long cookie;
    PyObject *first, *indications;
    if (!PyArg_ParseTuple(args, "y*y*y*y*kO!O!w*w*w*", &data, &pay_b, &cap_b, &plen_b, &cookie, &PyTuple_Type, &first,
                          &PyTuple_Type, &indications, &st_b, &cls_b, &ch_b))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = pay_b.len / 8;
    unsigned long ms0 = 0, ms1 = 0;
    unsigned ind[8];
    const Py_ssize_t nind = PyTuple_GET_SIZE(indications);
    if (pay_b.len % 8 || cap_b.len != pay_b.len || plen_b.len != pay_b.len || st_b.len != n || cls_b.len != n ||
        ch_b.len != n || PyTuple_GET_SIZE(first) != 2 || nind > 8) {
        PyErr_SetString(PyExc_ValueError, "stun_datagrams: columns of unequal length or wrong item size");
        goto done;
    }
    ms0 = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(first, 0));
    ms1 = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(first, 1));
    for (Py_ssize_t k = 0; k < nind; k++) ind[k] = (unsigned)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(indications, k));
    if (PyErr_Occurred()) goto done;
    const int64_t *pay = pay_b.buf, *cap = cap_b.buf, *plen = plen_b.buf;
    const unsigned char *d = data.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cap[i] < 4 || pay[i] < 0 || pay[i] > data.len - cap[i]) {
            result = Py_NewRef(Py_False);
            goto done;
        }
    }
    uint8_t *is_stun = st_b.buf, *is_chan = ch_b.buf;
    int8_t *cls = cls_b.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const unsigned char *p = d + pay[i];
        const uint32_t b0 = p[0], mtype = rd16(p), mlen = rd16(p + 2);
        const int ms_turn = cap[i] >= 28 && (int64_t)mlen + 20 == plen[i] && rd32(p + 20) == ms0 && rd32(p + 24) == ms1;
        const int stun = cap[i] >= 20 && b0 < 4 && ((rd32(p + 4) == cookie && (mlen & 3) == 0) || ms_turn);
        int c = (int)(((mtype >> 4) & 1) | ((mtype >> 7) & 2));
        if (ms_turn)
            for (Py_ssize_t k = 0; k < nind; k++) c = mtype == ind[k] ? 1 : c;
        cls[i] = (int8_t)c;
        is_stun[i] = (uint8_t)stun;
        const int64_t spare = plen[i] - 4 - (int64_t)mlen;
        is_chan[i] = (uint8_t)(b0 >= 0x40 && b0 <= 0x4F && spare >= 0 && spare <= 3);
    }
    result = Py_NewRef(Py_True);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&pay_b);
    PyBuffer_Release(&cap_b);
    PyBuffer_Release(&plen_b);
    PyBuffer_Release(&st_b);
    PyBuffer_Release(&cls_b);
    PyBuffer_Release(&ch_b);
    return result;
}

/* The per-packet columns of dup_keys after pidx, inv and the group hashes, with their item sizes. */
enum { D_SRC_A, D_IPLEN, D_SEQ, D_FLAGS, D_PLEN, D_TTL, D_CAPLEN, NDUP };
static const Py_ssize_t DUP_SIZE[NDUP] = {1, 8, 8, 2, 8, 1, 8};

/* dup_keys(pidx, inv, group_hash, src_a, ip_len, tcp_seq, tcp_flags, payload_len, ttl, caplen, mult, out)
 *
 * engine.dup_prefilter's key of each decoded packet (pidx int64, inv int64: its 5-tuple; group_hash uint64 per
 * 5-tuple; src_a bool per decoded packet; ip_len, tcp_seq, payload_len, caplen int64, tcp_flags int16, ttl uint8
 * per packet of the batch): engine._key_hash of (group hash, src_a, ip_len, tcp_seq, tcp_flags, payload_len, ttl,
 * caplen) with the multipliers ``mult``, its upper 32 bits, into the uint64 array ``out``. */
static PyObject *dup_keys(PyObject *self, PyObject *args) {
    PyObject *cols[3 + NDUP], *mult;
    Py_buffer pidx_b, inv_b, gh_b, col[NDUP], out_b;
    int ncol = 0, have = 0;
    PyObject *result = NULL;
    uint64_t k[8];
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOO!w*", &cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6],
                          &cols[7], &cols[8], &cols[9], &PyTuple_Type, &mult, &out_b))
        return NULL;
    if (PyTuple_GET_SIZE(mult) < 8) {
        PyErr_SetString(PyExc_ValueError, "dup_keys: eight multipliers");
        goto done;
    }
    for (int j = 0; j < 8; j++) k[j] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(mult, j));
    if (PyErr_Occurred()) goto done;
    if (PyObject_GetBuffer(cols[0], &pidx_b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have = 1;
    if (PyObject_GetBuffer(cols[1], &inv_b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have = 2;
    if (PyObject_GetBuffer(cols[2], &gh_b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have = 3;
    for (; ncol < NDUP; ncol++) {
        if (PyObject_GetBuffer(cols[3 + ncol], &col[ncol], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
        if (col[ncol].itemsize != DUP_SIZE[ncol] || col[ncol].ndim != 1) {
            ncol++;
            PyErr_SetString(PyExc_ValueError, "dup_keys: a column of the wrong item size");
            goto done;
        }
    }
    const Py_ssize_t n = pidx_b.len / 8, groups = gh_b.len / 8, m = col[D_IPLEN].shape[0];
    if (pidx_b.itemsize != 8 || inv_b.itemsize != 8 || gh_b.itemsize != 8 || inv_b.len != pidx_b.len ||
        col[D_SRC_A].shape[0] != n || out_b.len != 8 * n) {
        PyErr_SetString(PyExc_ValueError, "dup_keys: columns of unequal length");
        goto done;
    }
    for (int j = D_SEQ; j < NDUP; j++) {
        if (col[j].shape[0] != m) {
            PyErr_SetString(PyExc_ValueError, "dup_keys: columns of unequal length");
            goto done;
        }
    }
    const int64_t *pidx = pidx_b.buf, *inv = inv_b.buf, *iplen = col[D_IPLEN].buf, *seq = col[D_SEQ].buf,
                  *plen = col[D_PLEN].buf, *caplen = col[D_CAPLEN].buf;
    const uint64_t *gh = gh_b.buf;
    const uint8_t *src_a = col[D_SRC_A].buf, *ttl = col[D_TTL].buf;
    const int16_t *tflags = col[D_FLAGS].buf;
    uint64_t *out = out_b.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (pidx[i] < 0 || pidx[i] >= m || inv[i] < 0 || inv[i] >= groups) {
            PyErr_SetString(PyExc_IndexError, "dup_keys: a position out of range");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t p = pidx[i];
        /* the columns as engine.dup_prefilter casts them to uint64 (int16 flags sign-extended first, as numpy does) */
        const uint64_t v[8] = {gh[inv[i]], (uint64_t)(src_a[i] != 0), (uint64_t)iplen[p], (uint64_t)seq[p],
                               (uint64_t)(int64_t)tflags[p], (uint64_t)plen[p], (uint64_t)ttl[p], (uint64_t)caplen[p]};
        uint64_t h = 0;
        for (int j = 0; j < 8; j++) h = hash_step(h, v[j], k[j]);
        out[i] = h >> 32;
    }
    result = Py_NewRef(Py_None);
done:
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    if (have >= 3) PyBuffer_Release(&gh_b);
    if (have >= 2) PyBuffer_Release(&inv_b);
    if (have >= 1) PyBuffer_Release(&pidx_b);
    PyBuffer_Release(&out_b);
    return result;
}

#define SEQ_MASK 0xFFFFFFFFLL
#define HALF_SEQ 0x80000000LL
#define TCP_SYN_FLAG 0x02

/* tcp_streams(cls, evs, client_is_a, client_start, server_start, limit) -> (client, server)
 *
 * evs: a list of ``cls`` (engine.Evidence: record, ns, from_a, seq, flags, data, wire_len), a flow's payloads in
 * capture order; a direction's items are those whose from_a is (client_is_a) or is not; client_start and
 * server_start: where each stream starts (its SYN's sequence number + 1, mod 2**32), or -1 for "at the first
 * segment's".  Each of the two is what naming.reassemble(direction's items, isn, limit)[0] returns when the
 * direction's segments with data start where the stream does and each begins where the one before it ended,
 * none is a SYN and together they hold under 2**31 bytes: their bytes joined, cut at ``limit``.  Otherwise
 * that one is None, and so are both when an item is not of the expected types (exactly cls, a bool from_a,
 * bytes data, int seq and flags): reassemble knows what to do there. */
static PyObject *tcp_streams(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *evs;
    int client_is_a;
    long long start[2];
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!pLLn", &PyType_Type, &cls, &PyList_Type, &evs, &client_is_a, &start[0],
                          &start[1], &limit))
        return NULL;
    if (limit < 0) {
        PyErr_SetString(PyExc_ValueError, "tcp_streams: a negative limit");
        return NULL;
    }
    int ok[2] = {1, 1}, started[2] = {0, 0};
    long long pos[2] = {0, 0}, total[2] = {0, 0};
    const Py_ssize_t n = PyList_GET_SIZE(evs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(evs, i);
        if (Py_TYPE(e) != cls || PyTuple_GET_SIZE(e) != 7) goto unknown;
        PyObject *from_a = PyTuple_GET_ITEM(e, 2), *data = PyTuple_GET_ITEM(e, 5);
        PyObject *seq_o = PyTuple_GET_ITEM(e, 3), *flags_o = PyTuple_GET_ITEM(e, 4);
        if ((from_a != Py_True && from_a != Py_False) || !PyBytes_CheckExact(data) || !PyLong_CheckExact(seq_o) ||
            !PyLong_CheckExact(flags_o))
            goto unknown;
        const int side = (from_a == Py_True) == (client_is_a != 0) ? 0 : 1;
        const Py_ssize_t len = PyBytes_GET_SIZE(data);
        if (len == 0 || !ok[side]) continue;  /* reassemble leaves out the segments without data */
        int seq_over = 0, flags_over = 0;  /* beyond 64 bits: reassemble compares them as Python ints */
        long long seq = PyLong_AsLongLongAndOverflow(seq_o, &seq_over);
        long long flags = PyLong_AsLongLongAndOverflow(flags_o, &flags_over);
        if (seq_over || flags_over || PyErr_Occurred()) {
            PyErr_Clear();
            ok[side] = 0;
            continue;
        }
        if (!started[side]) {  /* RFC 9293 section 3.4: the stream starts at isn + 1, or here without a SYN seen */
            started[side] = 1;
            pos[side] = start[side] >= 0 ? start[side] : seq;
        }
        if (seq != pos[side] || (flags & TCP_SYN_FLAG)) {  /* out of order, a gap, an overlap or data on a SYN */
            ok[side] = 0;
            continue;
        }
        pos[side] = (pos[side] + len) & SEQ_MASK;
        total[side] += len;
    }
    PyObject *out[2] = {NULL, NULL};
    for (int side = 0; side < 2; side++) {
        if (!ok[side] || total[side] >= HALF_SEQ) {
            out[side] = Py_NewRef(Py_None);
            continue;
        }
        const Py_ssize_t size = total[side] < limit ? (Py_ssize_t)total[side] : limit;
        out[side] = PyBytes_FromStringAndSize(NULL, size);
        if (out[side] == NULL) {
            Py_XDECREF(out[0]);
            return NULL;
        }
        char *to = PyBytes_AS_STRING(out[side]);
        Py_ssize_t at = 0;
        for (Py_ssize_t i = 0; i < n && at < size; i++) {
            PyObject *e = PyList_GET_ITEM(evs, i);
            if (((PyTuple_GET_ITEM(e, 2) == Py_True) == (client_is_a != 0) ? 0 : 1) != side) continue;
            PyObject *data = PyTuple_GET_ITEM(e, 5);
            Py_ssize_t len = PyBytes_GET_SIZE(data);
            if (len > size - at) len = size - at;
            memcpy(to + at, PyBytes_AS_STRING(data), len);
            at += len;
        }
    }
    return Py_BuildValue("(NN)", out[0], out[1]);
unknown:
    return Py_BuildValue("(OO)", Py_None, Py_None);
}

/* The flow builder's per-batch steps after its events (twins: engine.FlowBuilder._idle_positions_numpy,
 * _flow_of_each_packet_numpy, _count_packets_numpy; duplicate search: engine._same_bytes_py).  Each is one pass over the
 * batch's packets in 5-tuple order (``order``, engine.Grouped.perm: each 5-tuple's packets together, capture
 * order within), where numpy took a dozen gathers and scatters.  ``slot`` (int64) is each packet's 5-tuple
 * slot; every slot is checked against the per-slot columns before anything is written. */

static void release_columns(Py_buffer *bufs, int n) {
    for (int j = 0; j < n; j++) PyBuffer_Release(&bufs[j]);
}

/* Fetch the buffers of ``objs`` (int64 unless its size in ``sizes`` says otherwise), writable where ``writable``
 * says so; 0 on success, else -1 with an error set and the fetched ones released. */
static int get_columns(PyObject *const *objs, Py_buffer *bufs, const Py_ssize_t *sizes, const char *writable, int n,
                       const char *who) {
    for (int j = 0; j < n; j++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable[j] ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(objs[j], &bufs[j], flags) < 0) {
            release_columns(bufs, j);
            return -1;
        }
        if (bufs[j].itemsize != sizes[j] || bufs[j].ndim != 1) {
            release_columns(bufs, j + 1);
            PyErr_Format(PyExc_ValueError, "%s: a column of the wrong item size", who);
            return -1;
        }
    }
    return 0;
}

/* Check that order is a permutation-sized index column into the packets and each packet's slot is a slot of
 * the per-slot columns (nslots long); -1 with IndexError otherwise. */
static int check_order(const int64_t *order, const int64_t *slot, Py_ssize_t n, Py_ssize_t nslots, const char *who) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (order[i] < 0 || order[i] >= n || slot[i] < 0 || slot[i] >= nslots) {
            PyErr_Format(PyExc_IndexError, "%s: a position or slot out of range", who);
            return -1;
        }
    }
    return 0;
}

/* idle_positions(order, slot, ts, proto, flow_before, started, slot_last, idle_ns, tcp, out) -> count
 *
 * The positions in ``order`` of the packets that start a new flow because their 5-tuple (not TCP: ``proto``
 * differs from ``tcp``) was silent for more than idle_ns: since the 5-tuple's previous packet in the batch,
 * or, for its first packet in the batch, since its last packet before it (slot_last) when it had a flow then
 * (flow_before >= 0); and not already starting a flow (started < 0).  Written to ``out`` (int64, n long) in
 * ascending order. */
static PyObject *idle_positions(PyObject *self, PyObject *args) {
    PyObject *objs[8];
    long long idle_ns, tcp;
    if (!PyArg_ParseTuple(args, "OOOOOOOLLO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &idle_ns, &tcp, &objs[7]))
        return NULL;
    static const Py_ssize_t sizes[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    static const char writable[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    Py_buffer b[8];
    if (get_columns(objs, b, sizes, writable, 8, "idle_positions") < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[0].shape[0], nslots = b[6].shape[0];
    for (int j = 1; j < 8; j++) {
        if (j != 6 && b[j].shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "idle_positions: columns of unequal length");
            goto done;
        }
    }
    const int64_t *order = b[0].buf, *slot = b[1].buf, *ts = b[2].buf, *proto = b[3].buf, *before = b[4].buf,
                  *started = b[5].buf, *slot_last = b[6].buf;
    int64_t *out = b[7].buf;
    if (check_order(order, slot, n, nslots, "idle_positions") < 0) goto done;
    Py_ssize_t count = 0;
    int64_t prev_slot = -1, prev_ns = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t e = order[i], s = slot[e];
        const int tuple_start = i == 0 || s != prev_slot;
        const int64_t previous = tuple_start ? slot_last[s] : prev_ns;
        /* the difference as numpy's int64 subtraction gives it (wrapping) */
        const int64_t gap = (int64_t)((uint64_t)ts[e] - (uint64_t)previous);
        if (proto[e] != tcp && gap > idle_ns && (!tuple_start || before[e] >= 0) && started[e] < 0) out[count++] = i;
        prev_slot = s;
        prev_ns = ts[e];
    }
    result = PyLong_FromSsize_t(count);
done:
    release_columns(b, 8);
    return result;
}

/* fill_flows(order, slot, ts, flow_before, started, slot_cur, slot_last, flow) -> None
 *
 * Each packet's flow (written to ``flow``): the latest flow started (started >= 0) in its 5-tuple up to it,
 * else the flow its 5-tuple had before the batch (flow_before); and for each 5-tuple, its last packet's flow
 * and time written to slot_cur and slot_last. */
static PyObject *fill_flows(PyObject *self, PyObject *args) {
    PyObject *objs[8];
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                          &objs[7]))
        return NULL;
    static const Py_ssize_t sizes[8] = {8, 8, 8, 8, 8, 8, 8, 8};
    static const char writable[8] = {0, 0, 0, 0, 0, 1, 1, 1};
    Py_buffer b[8];
    if (get_columns(objs, b, sizes, writable, 8, "fill_flows") < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[0].shape[0], nslots = b[5].shape[0] < b[6].shape[0] ? b[5].shape[0] : b[6].shape[0];
    for (int j = 1; j < 8; j++) {
        if (j != 5 && j != 6 && b[j].shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "fill_flows: columns of unequal length");
            goto done;
        }
    }
    const int64_t *order = b[0].buf, *slot = b[1].buf, *ts = b[2].buf, *before = b[3].buf, *started = b[4].buf;
    int64_t *slot_cur = b[5].buf, *slot_last = b[6].buf, *flow = b[7].buf;
    if (check_order(order, slot, n, nslots, "fill_flows") < 0) goto done;
    int64_t current = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t e = order[i], s = slot[e];
        const int tuple_start = i == 0 || s != slot[order[i - 1]];
        int64_t f = started[e];
        if (f < 0 && tuple_start) f = before[e];
        if (f < 0 && i > 0) f = current;  /* numpy's forward fill: across 5-tuples, as engine's twin does */
        flow[e] = current = f;
        if (i == n - 1 || slot[order[i + 1]] != s) {
            slot_cur[s] = f;
            slot_last[s] = ts[e];
        }
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release_columns(b, 8);
    return result;
}

/* count_flows(flow, src_a, pidx, ip_len, ts, record0, nflows, pk_a, pk_b, by_a, by_b, first, last, first_rec) -> None
 *
 * Add a batch's packets to the per-flow counters: packets and IP bytes (ip_len[pidx]) by direction (src_a: from
 * the a-side), the first and last time (ts) and the first record number (record0 + pidx).  Every flow is
 * checked against nflows, and every counter column is at least nflows long, before anything is added. */
static PyObject *count_flows(PyObject *self, PyObject *args) {
    PyObject *objs[12];
    long long record0;
    Py_ssize_t nflows;
    if (!PyArg_ParseTuple(args, "OOOOOLnOOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &record0, &nflows,
                          &objs[5], &objs[6], &objs[7], &objs[8], &objs[9], &objs[10], &objs[11]))
        return NULL;
    static const Py_ssize_t sizes[12] = {8, 1, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    static const char writable[12] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1};
    Py_buffer b[12];
    if (get_columns(objs, b, sizes, writable, 12, "count_flows") < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[0].shape[0], m = b[3].shape[0];
    if (b[1].shape[0] != n || b[2].shape[0] != n || b[4].shape[0] != n) {
        PyErr_SetString(PyExc_ValueError, "count_flows: columns of unequal length");
        goto done;
    }
    for (int j = 5; j < 12; j++) {
        if (b[j].shape[0] < nflows) {
            PyErr_SetString(PyExc_ValueError, "count_flows: a counter shorter than the flows");
            goto done;
        }
    }
    const int64_t *flow = b[0].buf, *pidx = b[2].buf, *ip_len = b[3].buf, *ts = b[4].buf;
    const uint8_t *src_a = b[1].buf;
    int64_t *pk_a = b[5].buf, *pk_b = b[6].buf, *by_a = b[7].buf, *by_b = b[8].buf, *first = b[9].buf,
            *last = b[10].buf, *first_rec = b[11].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (flow[i] < 0 || flow[i] >= nflows || pidx[i] < 0 || pidx[i] >= m) {
            PyErr_SetString(PyExc_IndexError, "count_flows: a flow or position out of range");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t f = flow[i], p = pidx[i], rec = record0 + p;
        if (src_a[i]) {
            pk_a[f]++;
            by_a[f] += ip_len[p];
        } else {
            pk_b[f]++;
            by_b[f] += ip_len[p];
        }
        if (ts[i] < first[f]) first[f] = ts[i];
        if (ts[i] > last[f]) last[f] = ts[i];
        if (rec < first_rec[f]) first_rec[f] = rec;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release_columns(b, 12);
    return result;
}

/* same_bytes(a, a_off, a_cap, b, b_off, b_cap, out) -> None
 *
 * For each pair i, whether a[a_off[i]:a_off[i] + a_cap[i]] == b[b_off[i]:b_off[i] + b_cap[i]] (bool, to out),
 * the slices as Python takes them (cut at the end of their buffer): the duplicate search's byte comparison of
 * the packets whose prefilter keys match. */
static PyObject *same_bytes(PyObject *self, PyObject *args) {
    PyObject *objs[7];
    if (!PyArg_ParseTuple(args, "OOOOOOO", &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6]))
        return NULL;
    Py_buffer a, bb;
    if (PyObject_GetBuffer(objs[0], &a, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(objs[3], &bb, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&a);
        return NULL;
    }
    PyObject *cols[5] = {objs[1], objs[2], objs[4], objs[5], objs[6]};
    static const Py_ssize_t sizes[5] = {8, 8, 8, 8, 1};
    static const char writable[5] = {0, 0, 0, 0, 1};
    Py_buffer c[5];
    PyObject *result = NULL;
    if (get_columns(cols, c, sizes, writable, 5, "same_bytes") < 0) goto released;
    const Py_ssize_t n = c[0].shape[0];
    for (int j = 1; j < 5; j++) {
        if (c[j].shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "same_bytes: columns of unequal length");
            goto done;
        }
    }
    const int64_t *a_off = c[0].buf, *a_cap = c[1].buf, *b_off = c[2].buf, *b_cap = c[3].buf;
    uint8_t *out = c[4].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (a_off[i] < 0 || a_cap[i] < 0 || b_off[i] < 0 || b_cap[i] < 0) {
            PyErr_SetString(PyExc_IndexError, "same_bytes: a negative offset or length");
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const Py_ssize_t a0 = a_off[i] < a.len ? a_off[i] : a.len, b0 = b_off[i] < bb.len ? b_off[i] : bb.len;
        const Py_ssize_t a1 = a_cap[i] < a.len - a0 ? a0 + a_cap[i] : a.len;
        const Py_ssize_t b1 = b_cap[i] < bb.len - b0 ? b0 + b_cap[i] : bb.len;
        out[i] = a1 - a0 == b1 - b0 && memcmp((const char *)a.buf + a0, (const char *)bb.buf + b0, a1 - a0) == 0;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release_columns(c, 5);
released:
    PyBuffer_Release(&a);
    PyBuffer_Release(&bb);
    return result;
}


/* A power of two at least twice n (an open-addressing table of 32-bit keys stays under half full). */
static Py_ssize_t table_size(Py_ssize_t n) {
    Py_ssize_t size = 16;
    while (size < 2 * n) size <<= 1;
    return size;
}

static inline uint32_t spread32(uint32_t k) {  /* the keys are hash bits already: one multiply mixes the low bits */
    return k * 0x9E3779B1u;
}

/* dup_links(keys, prev) -> None
 *
 * For each packet of a batch, the latest earlier packet with the same 32-bit duplicate-search key (uint32
 * ``keys``), or -1: written to ``prev`` (int32), by one pass with a hash table of the keys seen (twin: the sort
 * in engine._dup_links_numpy). */
static PyObject *dup_links(PyObject *self, PyObject *args) {
    PyObject *objs[2];
    if (!PyArg_ParseTuple(args, "OO", &objs[0], &objs[1])) return NULL;
    static const Py_ssize_t sizes[2] = {4, 4};
    static const char writable[2] = {0, 1};
    Py_buffer b[2];
    if (get_columns(objs, b, sizes, writable, 2, "dup_links") < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[0].shape[0];
    if (b[1].shape[0] != n || n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "dup_links: columns of unequal length");
        goto done;
    }
    const Py_ssize_t size = table_size(n), mask = size - 1;
    uint32_t *tkey = malloc(sizeof(uint32_t) * size);
    int32_t *tlast = malloc(sizeof(int32_t) * size);
    if (tkey == NULL || tlast == NULL) {
        free(tkey);
        free(tlast);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < size; j++) tlast[j] = -1;
    const uint32_t *keys = b[0].buf;
    int32_t *prev = b[1].buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint32_t k = keys[i];
        Py_ssize_t j = spread32(k) & mask;
        while (tlast[j] >= 0 && tkey[j] != k) j = (j + 1) & mask;
        prev[i] = tlast[j];
        tkey[j] = k;
        tlast[j] = (int32_t)i;
    }
    free(tkey);
    free(tlast);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release_columns(b, 2);
    return result;
}

/* first_of_keys(keys, wanted, first) -> None
 *
 * For each of the 32-bit keys ``wanted`` (uint32; a key given twice gets the same answer twice), the first
 * packet of the batch whose key (uint32 ``keys``) it is, or -1: written to ``first`` (int64), by one pass over
 * the batch (twin: engine._first_of_keys_numpy).  The duplicate search asks it for the keys of the last packets of earlier
 * batches. */
static PyObject *first_of_keys(PyObject *self, PyObject *args) {
    PyObject *objs[3];
    if (!PyArg_ParseTuple(args, "OOO", &objs[0], &objs[1], &objs[2])) return NULL;
    static const Py_ssize_t sizes[3] = {4, 4, 8};
    static const char writable[3] = {0, 0, 1};
    Py_buffer b[3];
    if (get_columns(objs, b, sizes, writable, 3, "first_of_keys") < 0) return NULL;
    PyObject *result = NULL;
    const Py_ssize_t n = b[0].shape[0], k = b[1].shape[0];
    if (b[2].shape[0] != k) {
        PyErr_SetString(PyExc_ValueError, "first_of_keys: columns of unequal length");
        goto done;
    }
    const Py_ssize_t size = table_size(k), mask = size - 1;
    uint32_t *tkey = malloc(sizeof(uint32_t) * size);
    int64_t *twho = malloc(sizeof(int64_t) * size);  /* which wanted key a slot holds; -1: empty */
    if (tkey == NULL || twho == NULL) {
        free(tkey);
        free(twho);
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < size; j++) twho[j] = -1;
    const uint32_t *keys = b[0].buf, *wanted = b[1].buf;
    int64_t *first = b[2].buf;
    for (Py_ssize_t w = 0; w < k; w++) {
        first[w] = -1;
        Py_ssize_t j = spread32(wanted[w]) & mask;
        while (twho[j] >= 0 && tkey[j] != wanted[w]) j = (j + 1) & mask;
        if (twho[j] < 0) {  /* a key given twice keeps its first place */
            tkey[j] = wanted[w];
            twho[j] = w;
        }
    }
    /* most of the batch's keys are none of the wanted: a bit per value of their low 16 bits says so at once */
    uint64_t maybe[1024] = {0};
    for (Py_ssize_t w = 0; w < k; w++) maybe[(wanted[w] & 0xFFFF) >> 6] |= (uint64_t)1 << (wanted[w] & 63);
    Py_ssize_t left = k;
    for (Py_ssize_t i = 0; i < n && left > 0; i++) {
        const uint32_t key = keys[i];
        if (!(maybe[(key & 0xFFFF) >> 6] >> (key & 63) & 1)) continue;
        Py_ssize_t j = spread32(key) & mask;
        while (twho[j] >= 0 && tkey[j] != key) j = (j + 1) & mask;
        if (twho[j] >= 0 && first[twho[j]] < 0) {
            first[twho[j]] = i;
            left--;
        }
    }
    for (Py_ssize_t w = 0; w < k; w++) {  /* a key given twice: the place its first copy found */
        Py_ssize_t j = spread32(wanted[w]) & mask;
        while (twho[j] < 0 || tkey[j] != wanted[w]) j = (j + 1) & mask;
        first[w] = first[twho[j]];
    }
    free(tkey);
    free(twho);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release_columns(b, 3);
    return result;
}

/* fill_records(cls, slots, columns) -> list: n new instances of cls, instance j's slot i set to columns[i][j] (a new
 * reference), as calling cls's plain twin class with the columns' values and setting __class__ to cls does (twin:
 * flows/records.py _records_from_columns_py), without a Python __init__ storing 40 fields one bytecode at a time: making
 * the records of the named flows took 3.3 us each.  ``slots``: cls's member descriptors of those slots (object
 * slots of cls itself, inside its instances), ``columns``: lists of one length.  A slot no column fills stays
 * unset (reading it raises AttributeError, as after object.__new__). */
static PyObject *fill_records(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *slots, *columns;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyType_Type, &cls, &PyTuple_Type, &slots, &PyTuple_Type, &columns))
        return NULL;
    const Py_ssize_t k = PyTuple_GET_SIZE(columns);
    if (PyTuple_GET_SIZE(slots) != k) {
        PyErr_SetString(PyExc_ValueError, "fill_records: one slot per column");
        return NULL;
    }
    if (cls->tp_alloc == NULL || cls->tp_itemsize != 0) {
        PyErr_SetString(PyExc_TypeError, "fill_records: not a class of fixed-size instances");
        return NULL;
    }
    Py_ssize_t n = 0;
    Py_ssize_t *offset = PyMem_Malloc(sizeof(Py_ssize_t) * (k ? k : 1));
    if (offset == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *d = PyTuple_GET_ITEM(slots, i), *col = PyTuple_GET_ITEM(columns, i);
        if (!PyObject_TypeCheck(d, &PyMemberDescr_Type) || PyDescr_TYPE(d) != cls) {
            PyErr_SetString(PyExc_TypeError, "fill_records: a slot that is not a member of the class");
            goto fail;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)d)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY) || member->offset < (Py_ssize_t)sizeof(PyObject) ||
            member->offset + (Py_ssize_t)sizeof(PyObject *) > cls->tp_basicsize) {
            PyErr_SetString(PyExc_TypeError, "fill_records: a slot that is not a writable object slot");
            goto fail;
        }
        for (Py_ssize_t h = 0; h < i; h++) {
            if (offset[h] == member->offset) {
                PyErr_SetString(PyExc_ValueError, "fill_records: a slot given twice");
                goto fail;
            }
        }
        offset[i] = member->offset;
        if (!PyList_Check(col)) {
            PyErr_SetString(PyExc_TypeError, "fill_records: a column that is not a list");
            goto fail;
        }
        if (i == 0)
            n = PyList_GET_SIZE(col);
        else if (PyList_GET_SIZE(col) != n) {
            PyErr_SetString(PyExc_ValueError, "fill_records: columns of unequal length");
            goto fail;
        }
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *obj = cls->tp_alloc(cls, 0);
        if (obj == NULL) {
            Py_DECREF(out);
            goto fail;
        }
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *v = PyList_GET_ITEM(PyTuple_GET_ITEM(columns, i), j);
            Py_INCREF(v);
            *(PyObject **)((char *)obj + offset[i]) = v;
        }
        PyList_SET_ITEM(out, j, obj);
    }
    PyMem_Free(offset);
    return out;
fail:
    PyMem_Free(offset);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fill_records", fill_records, METH_VARARGS, "New instances of a slotted class from columns of values (see _group.c)."},
    {"group_keys", group_keys, METH_VARARGS, "Group the decoded packets of a batch by canonical 5-tuple (see _group.c)."},
    {"key_hash", key_hash, METH_VARARGS, "engine._key_hash of up to eight uint64 columns (see _group.c)."},
    {"evidence_items", evidence_items, METH_VARARGS, "The Evidence tuples of a batch's kept payloads (see _group.c)."},
    {"evidence_candidates", evidence_candidates, METH_VARARGS, "The payloads of a batch the builder may keep (see _group.c)."},
    {"keep_evidence", keep_evidence, METH_VARARGS, "Rank, count and keep a batch's evidence candidates (see _group.c)."},
    {"stun_datagrams", stun_datagrams, METH_VARARGS, "The STUN messages and ChannelData of UDP payloads (see _group.c)."},
    {"dup_keys", dup_keys, METH_VARARGS, "The duplicate search's prefilter keys of a batch (see _group.c)."},
    {"idle_positions", idle_positions, METH_VARARGS, "The packets of a batch that start a flow after silence (see _group.c)."},
    {"fill_flows", fill_flows, METH_VARARGS, "Each packet's flow, and each 5-tuple's last flow and time (see _group.c)."},
    {"count_flows", count_flows, METH_VARARGS, "Add a batch's packets to the per-flow counters (see _group.c)."},
    {"dup_links", dup_links, METH_VARARGS, "Each packet's latest earlier packet of the same duplicate key (see _group.c)."},
    {"first_of_keys", first_of_keys, METH_VARARGS, "The first packet of each of some keys (see _group.c)."},
    {"same_bytes", same_bytes, METH_VARARGS, "Compare pairs of byte ranges (see _group.c)."},
    {"tcp_streams", tcp_streams, METH_VARARGS, "A TCP flow's two byte streams when its segments are in order (see _group.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_group", "Compiled 5-tuple grouping for meshpcap.flows.engine.", -1, methods,
};

PyMODINIT_FUNC PyInit__group(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", GROUP_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
