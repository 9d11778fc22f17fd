/* Header decoding of the common packets of a batch: the compiled half of decode/frames.py.
 *
 * Optional accelerator.  decode_common() fills the Decoded columns of every packet that is
 * plain Ethernet, Linux cooked (SLL, SLL2) or raw IP, carrying an unfragmented IPv4 packet or
 * an IPv6 packet without extension headers, carrying TCP or UDP (not to a tunnel port), whose
 * headers are all inside the capture.  Every other packet -- VLAN tags, PPPoE, MPLS, tunnels,
 * fragments, ICMP, extension headers, anything short or odd -- is listed in ``rest`` and left
 * untouched for the numpy decoder, which alone decides reasons for undecodable packets.  For
 * the packets it takes, each column gets exactly what frames.py writes for them:
 * tests/decode/test_headers_ext.py compares both on generated and damaged packets.
 *
 * Only the limited C API (buffer protocol) is used: no numpy headers.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

#define HEADERS_ABI 2

#define ETH_IPV4 0x0800u
#define ETH_IPV6 0x86DDu
#define PROTO_TCP 6u
#define PROTO_UDP 17u

static inline uint32_t be16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* The columns, in the order of the ``cols`` tuple, with their item sizes. */
enum {
    C_REASON, C_IP_VERSION, C_PROTO, C_SRC_HI, C_SRC_LO, C_DST_HI, C_DST_LO, C_IP_LEN, C_IP_ID, C_SPORT, C_DPORT,
    C_TCP_FLAGS, C_TCP_SEQ, C_TCP_ACK, C_TTL, C_L4, C_PAYLOAD, C_PAYLOAD_LEN, C_PAYLOAD_CAP, C_FRAG_OFFSET,
    C_MORE_FRAGS, C_ICMP_TYPE, C_ICMP_CODE, C_ENCAPSULATED, NCOLS
};
static const Py_ssize_t COL_SIZE[NCOLS] = {1, 1, 2, 8, 8, 8, 8, 8, 8, 4, 4, 2, 8, 8, 1, 8, 8, 8, 8, 8, 1, 2, 2, 1};

/* decode_common(data, offset, caplen, linktype, cols, rest) -> number of packets left in rest
 *
 * offset and caplen: int64 per packet; linktype: int32 per packet; cols: a tuple of the
 * writable Decoded arrays in the order of the enum above (every column of Decoded); rest: writable
 * int64, one per packet.  Every row of every column is written: a decoded packet's values, and a
 * packet left in rest the values frames._undecoded starts with (so the arrays need no filling first). */
static PyObject *decode_common(PyObject *self, PyObject *args) {
    Py_buffer data, off, cap, lt, rest;
    PyObject *cols;
    Py_buffer col[NCOLS];
    int ncol = 0;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*y*O!w*", &data, &off, &cap, &lt, &PyTuple_Type, &cols, &rest))
        return NULL;
    const Py_ssize_t n = off.len / 8;
    if (off.len % 8 || cap.len != off.len || lt.len != 4 * n || rest.len != off.len ||
        PyTuple_GET_SIZE(cols) != NCOLS) {
        PyErr_SetString(PyExc_ValueError, "decode_common: columns of unequal length or wrong item size");
        goto done;
    }
    for (; ncol < NCOLS; ncol++) {
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(cols, ncol), &col[ncol], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (col[ncol].len != COL_SIZE[ncol] * n) {
            ncol++;
            PyErr_Format(PyExc_ValueError, "decode_common: column %d has the wrong size", ncol - 1);
            goto done;
        }
    }
    {
        const unsigned char *buf = (const unsigned char *)data.buf;
        const int64_t size = (int64_t)data.len;
        const int64_t *o = (const int64_t *)off.buf, *c = (const int64_t *)cap.buf;
        const int32_t *link = (const int32_t *)lt.buf;
        int64_t *left = (int64_t *)rest.buf;
        uint8_t *reason = col[C_REASON].buf, *ttl = col[C_TTL].buf;
        int8_t *ipv = col[C_IP_VERSION].buf;
        int16_t *proto = col[C_PROTO].buf, *flags = col[C_TCP_FLAGS].buf;
        uint64_t *shi = col[C_SRC_HI].buf, *slo = col[C_SRC_LO].buf, *dhi = col[C_DST_HI].buf, *dlo = col[C_DST_LO].buf;
        int64_t *iplen = col[C_IP_LEN].buf, *ipid = col[C_IP_ID].buf, *seq = col[C_TCP_SEQ].buf, *ack = col[C_TCP_ACK].buf;
        int64_t *l4c = col[C_L4].buf, *pay = col[C_PAYLOAD].buf, *plen = col[C_PAYLOAD_LEN].buf;
        int64_t *pcap = col[C_PAYLOAD_CAP].buf;
        int32_t *sport = col[C_SPORT].buf, *dport = col[C_DPORT].buf;
        int64_t *frag = col[C_FRAG_OFFSET].buf;
        uint8_t *more = col[C_MORE_FRAGS].buf, *encap = col[C_ENCAPSULATED].buf;
        int16_t *itype = col[C_ICMP_TYPE].buf, *icode = col[C_ICMP_CODE].buf;
        Py_ssize_t k = 0;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < n; i++) {
            /* the headers of a packet a few ahead: each packet is a cache miss otherwise */
            if (i + 8 < n && o[i + 8] >= 0 && o[i + 8] <= size - 64) {
                __builtin_prefetch(buf + o[i + 8]);
                __builtin_prefetch(buf + o[i + 8] + 63);
            }
            const int64_t start = o[i];
            if (start < 0 || c[i] < 0 || start > size || c[i] > size - start) goto other;  /* no overflow */
            const int64_t e = start + c[i];
            int64_t s;  /* network header */
            uint32_t eth;
            switch (link[i]) {
            case 1:  /* Ethernet II, untagged */
                if (start + 14 > e) goto other;
                eth = be16(buf + start + 12);
                s = start + 14;
                break;
            case 113:  /* Linux cooked v1: protocol at 14 */
                if (start + 16 > e) goto other;
                eth = be16(buf + start + 14);
                s = start + 16;
                break;
            case 276:  /* Linux cooked v2: protocol first */
                if (start + 20 > e) goto other;
                eth = be16(buf + start);
                s = start + 20;
                break;
            case 101: case 12: case 14:  /* raw IP: the version nibble says which */
                if (start + 1 > e) goto other;
                eth = (buf[start] >> 4) == 6 ? ETH_IPV6 : (buf[start] >> 4) == 4 ? ETH_IPV4 : 0;
                s = start;
                break;
            case 228:
                eth = ETH_IPV4;
                s = start;
                break;
            case 229:
                eth = ETH_IPV6;
                s = start;
                break;
            default:
                goto other;
            }
            /* Nothing is written until the packet is known to be taken: a packet left for
             * numpy keeps the columns as decode_batch initialised them. */
            int64_t l4, wire_end, cap_end, len_ip, id = 0;
            uint64_t src_hi = 0, src_lo, dst_hi = 0, dst_lo;
            unsigned p, hops, version;
            if (eth == ETH_IPV4) {  /* RFC 791 section 3.1 */
                if (s + 20 > e) goto other;
                const unsigned char *h = buf + s;
                if ((h[0] >> 4) != 4) goto other;
                int64_t ihl = (int64_t)(h[0] & 0x0F) * 4;
                if (ihl < 20 || s + ihl > e) goto other;
                if (be16(h + 6) & 0x3FFF) goto other;  /* a fragment (more fragments, or an offset) */
                p = h[9];
                if (p != PROTO_TCP && p != PROTO_UDP) goto other;
                len_ip = be16(h + 2);
                if (len_ip == 0) len_ip = e - s;  /* TCP segmentation offload writes 0 */
                if (len_ip < ihl) len_ip = ihl;
                version = 4;
                id = be16(h + 4);
                hops = h[8];
                src_lo = be32(h + 12);
                dst_lo = be32(h + 16);
                l4 = s + ihl;
                wire_end = s + len_ip;
            } else if (eth == ETH_IPV6) {  /* RFC 8200 section 3, no extension headers */
                if (s + 40 > e) goto other;
                const unsigned char *h = buf + s;
                if ((h[0] >> 4) != 6) goto other;
                p = h[6];
                if (p != PROTO_TCP && p != PROTO_UDP) goto other;
                int64_t pl = be16(h + 4);
                if (pl == 0) pl = e - s - 40;  /* jumbogram or offload: trust the capture */
                version = 6;
                len_ip = 40 + pl;
                hops = h[7];
                src_hi = be64(h + 8);
                src_lo = be64(h + 16);
                dst_hi = be64(h + 24);
                dst_lo = be64(h + 32);
                l4 = s + 40;
                wire_end = s + 40 + pl;
            } else {
                goto other;
            }
            cap_end = wire_end < e ? wire_end : e;
            const unsigned char *t = buf + l4;
            int64_t at;
            if (p == PROTO_TCP) {  /* RFC 9293 section 3.1 */
                if (l4 + 14 > cap_end) goto other;
                int64_t doff = (int64_t)(t[12] >> 4) * 4;
                seq[i] = be32(t + 4);
                ack[i] = be32(t + 8);
                flags[i] = (int16_t)(((t[12] & 1) << 8) | t[13]);
                /* a header cut by snaplen still gives ports and flags (frames.py: R_TCPOFF) */
                reason[i] = (doff < 20 || l4 + doff > wire_end) ? 12 : 0;
                at = l4 + doff;
            } else {  /* RFC 768 */
                if (l4 + 4 > cap_end) goto other;
                uint32_t dp = be16(t + 2);
                if (dp == 4789 || dp == 8472 || dp == 6081) goto other;  /* VXLAN, Geneve: numpy peels */
                at = l4 + 8;
                seq[i] = 0;
                ack[i] = 0;
                flags[i] = 0;
                reason[i] = 0;
            }
            sport[i] = (int32_t)be16(t);
            dport[i] = (int32_t)be16(t + 2);
            pay[i] = at;
            plen[i] = wire_end - at > 0 ? wire_end - at : 0;
            pcap[i] = cap_end - at > 0 ? cap_end - at : 0;
            ipv[i] = (int8_t)version;
            iplen[i] = len_ip;
            ipid[i] = id;
            ttl[i] = (uint8_t)hops;
            shi[i] = src_hi;
            slo[i] = src_lo;
            dhi[i] = dst_hi;
            dlo[i] = dst_lo;
            proto[i] = (int16_t)p;
            l4c[i] = l4;
            frag[i] = 0;  /* not a fragment, not ICMP, not from a tunnel (numpy peels those) */
            more[i] = 0;
            itype[i] = -1;
            icode[i] = -1;
            encap[i] = 0;
            continue;
        other:  /* as frames._undecoded starts every packet, for numpy to decode */
            left[k++] = i;
            reason[i] = 0;
            ipv[i] = 0;
            proto[i] = -1;
            shi[i] = slo[i] = dhi[i] = dlo[i] = 0;
            iplen[i] = ipid[i] = seq[i] = ack[i] = l4c[i] = pay[i] = plen[i] = pcap[i] = frag[i] = 0;
            sport[i] = dport[i] = -1;
            flags[i] = 0;
            ttl[i] = 0;
            more[i] = 0;
            itype[i] = icode[i] = -1;
            encap[i] = 0;
        }
        Py_END_ALLOW_THREADS
        result = PyLong_FromSsize_t(k);
    }
done:
    for (int j = 0; j < ncol; j++) PyBuffer_Release(&col[j]);
    PyBuffer_Release(&data);
    PyBuffer_Release(&off);
    PyBuffer_Release(&cap);
    PyBuffer_Release(&lt);
    PyBuffer_Release(&rest);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_common", decode_common, METH_VARARGS, "Decode the common packets of a batch (see _headers.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_headers", "Compiled header decoding for meshpcap.decode.frames.", -1, methods,
};

PyMODINIT_FUNC PyInit__headers(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", HEADERS_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
