/* DNS messages in their usual shape: the compiled half of decode/dns.py parse_dns.
 *
 * Optional accelerator.  message_fields() reads the header, the questions and the answers of a message
 * (RFC 1035 section 4.1) whose names are each either a run of labels ending in the root label, or a
 * compression pointer (section 4.1.4) to the start of such a name read earlier in the message, as most
 * messages are written (the question name once, the answers' owners pointing at it).  For anything else --
 * a name that ends in a pointer after labels, a pointer elsewhere, a label type that is not in use, a
 * field or name that overruns the message or its RDATA, an A or AAAA of another length -- it returns None,
 * and the Python parser, which alone decides the error, reads the message.  The names are judged as
 * dns.py judges them (dns._name_at with names.normalize_hostname): a name holding a byte that is not a
 * host-name byte (RFC 1123 section 2.1 and "_"), or a label that begins or ends with "-", is no name and
 * counts as invalid; the others are lower-cased.  Naming the DNS flows of a capture parsed each message in
 * 4-7 us, most of it while the capture is still read.  tests/decode/test_dns_ext.py compares both.
 *
 * Only the limited C API (buffer protocol) is used.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#ifndef MESHPCAP_SOURCE_HASH  /* hatch_build.py passes the hash of this file */
#define MESHPCAP_SOURCE_HASH ""
#endif

#define DNS_ABI 1

#define HEADER_LEN 12
#define MAX_WIRE_NAME 255
#define TYPE_A 1
#define TYPE_NS 2
#define TYPE_CNAME 5
#define TYPE_PTR 12
#define TYPE_AAAA 28
#define MAX_SEEN 64  /* names remembered for pointers; a message with more is left to dns.py */

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

static inline int host_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

typedef struct {
    Py_ssize_t at;  /* where the name starts */
    PyObject *name; /* its text (a new reference), or Py_None */
    int bad;
} seen_t;

typedef struct {
    seen_t seen[MAX_SEEN];
    int nseen;
} names_t;

/* The name at d[pos] (bounded by ``end``): 1 and *name (a new reference), *bad, *after; 0 to decline; -1 on
 * a Python error. */
static int name_at(const unsigned char *d, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t end, names_t *t,
                   PyObject **name, int *bad, Py_ssize_t *after) {
    if (pos >= end) return 0;
    if (d[pos] >= 0xC0) {  /* a pointer: only to a name read whole earlier (dns._name_at's shortcut) */
        if (pos + 1 >= end) return 0;
        const Py_ssize_t target = ((Py_ssize_t)(d[pos] & 0x3F) << 8) | d[pos + 1];
        for (int i = 0; i < t->nseen; i++) {  /* each starts before pos: a pointer to one goes back */
            if (t->seen[i].at == target) {
                *name = Py_NewRef(t->seen[i].name);
                *bad = t->seen[i].bad;
                *after = pos + 2;
                return 1;
            }
        }
        return 0;
    }
    /* labels up to the root label, within ``end`` and 255 octets on the wire */
    Py_ssize_t p = pos, wire = 1, labels = 0;
    int invalid = 0;
    while (1) {
        if (p >= end) return 0;
        const unsigned len = d[p];
        if (len & 0xC0) return 0;  /* a pointer after labels, or a label type not in use */
        if (len == 0) break;
        wire += len + 1;
        if (wire > MAX_WIRE_NAME || p + 1 + (Py_ssize_t)len > end) return 0;
        const unsigned char *lab = d + p + 1;
        for (unsigned i = 0; i < len; i++) invalid |= !host_byte(lab[i]);
        invalid |= lab[0] == '-' || lab[len - 1] == '-';
        labels++;
        p += 1 + len;
    }
    *after = p + 1;
    *bad = 0;
    if (labels == 0) {  /* the root name: no host name, nothing wrong with it, not remembered */
        *name = Py_NewRef(Py_None);
        return 1;
    }
    if (invalid) {
        *name = Py_NewRef(Py_None);
        *bad = 1;
    } else {
        const Py_ssize_t chars = wire - 2;  /* the labels and the dots between them */
        *name = PyUnicode_New(chars, 127);
        if (*name == NULL) return -1;
        Py_UCS1 *out = PyUnicode_1BYTE_DATA(*name);
        Py_ssize_t k = 0;
        for (Py_ssize_t q = pos; d[q];) {
            const unsigned len = d[q];
            if (k) out[k++] = '.';
            for (unsigned i = 0; i < len; i++) {
                const unsigned char c = d[q + 1 + i];
                out[k++] = (c >= 'A' && c <= 'Z') ? (Py_UCS1)(c + 32) : c;
            }
            q += 1 + len;
        }
    }
    if (t->nseen == MAX_SEEN) {
        Py_DECREF(*name);
        return 0;
    }
    t->seen[t->nseen].at = pos;
    t->seen[t->nseen].name = Py_NewRef(*name);
    t->seen[t->nseen].bad = *bad;
    t->nseen++;
    (void)n;
    return 1;
}

/* message_fields(payload) -> None or (id, flags, questions, answers, invalid_names)
 *
 * questions: a tuple of (name, qtype, qclass); answers: a tuple of (name, rtype, rclass, ttl, value) where value
 * is the address text of an A record, the 16 bytes of an AAAA record (for ipaddress to write), the name of an
 * NS, CNAME or PTR record (None when it is no valid host name), else None; a name is None when it is the root
 * or no valid host name (then counted in invalid_names). */
static PyObject *message_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    const unsigned char *d = buf.buf;
    const Py_ssize_t n = buf.len;
    names_t t;
    t.nseen = 0;
    PyObject *result = NULL, *qs = NULL, *as = NULL;
    int invalid = 0, got;
    if (n < HEADER_LEN) goto decline;
    const unsigned msg_id = be16(d), flags = be16(d + 2), qdcount = be16(d + 4), ancount = be16(d + 6);
    Py_ssize_t pos = HEADER_LEN;
    qs = PyTuple_New(qdcount);
    as = PyTuple_New(ancount);
    if (qs == NULL || as == NULL) goto fail;
    for (unsigned i = 0; i < qdcount; i++) {
        PyObject *name;
        int bad;
        Py_ssize_t after;
        if ((got = name_at(d, n, pos, n, &t, &name, &bad, &after)) <= 0) goto out;
        invalid += bad;
        pos = after;
        if (pos + 4 > n) {
            Py_DECREF(name);
            goto decline;
        }
        PyObject *q = Py_BuildValue("(NII)", name, be16(d + pos), be16(d + pos + 2));
        if (q == NULL) goto fail;
        PyTuple_SET_ITEM(qs, i, q);
        pos += 4;
    }
    for (unsigned i = 0; i < ancount; i++) {
        PyObject *name, *value;
        int bad;
        Py_ssize_t after;
        if ((got = name_at(d, n, pos, n, &t, &name, &bad, &after)) <= 0) goto out;
        invalid += bad;
        pos = after;
        if (pos + 10 > n) {
            Py_DECREF(name);
            goto decline;
        }
        const unsigned rtype = be16(d + pos), rclass = be16(d + pos + 2), rdlength = be16(d + pos + 8);
        const unsigned long ttl = ((unsigned long)d[pos + 4] << 24) | ((unsigned long)d[pos + 5] << 16) |
                                  ((unsigned long)d[pos + 6] << 8) | d[pos + 7];
        const Py_ssize_t rd = pos + 10, rd_end = rd + rdlength;
        pos = rd_end;
        if (rd_end > n) {
            Py_DECREF(name);
            goto decline;
        }
        if (rtype == TYPE_A) {
            if (rdlength != 4) {
                Py_DECREF(name);
                goto decline;
            }
            value = PyUnicode_FromFormat("%u.%u.%u.%u", d[rd], d[rd + 1], d[rd + 2], d[rd + 3]);
        } else if (rtype == TYPE_AAAA) {
            if (rdlength != 16) {
                Py_DECREF(name);
                goto decline;
            }
            value = PyBytes_FromStringAndSize((const char *)d + rd, 16);
        } else if (rtype == TYPE_NS || rtype == TYPE_CNAME || rtype == TYPE_PTR) {
            int tbad;
            Py_ssize_t tend;
            got = name_at(d, n, rd, rd_end, &t, &value, &tbad, &tend);
            if (got > 0 && tend != rd_end) {  /* the RDATA holds more than the name: dns.py says so */
                Py_DECREF(value);
                got = 0;
            }
            if (got <= 0) {
                Py_DECREF(name);
                goto out;
            }
            invalid += tbad;
        } else {
            value = Py_NewRef(Py_None);
        }
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        PyObject *a = Py_BuildValue("(NIIkN)", name, rtype, rclass, ttl, value);
        if (a == NULL) goto fail;
        PyTuple_SET_ITEM(as, i, a);
    }
    result = Py_BuildValue("(IIOOi)", msg_id, flags, qs, as, invalid);
    goto fail;  /* let go of ours */
out:
    if (got < 0) goto fail;
decline:
    result = Py_NewRef(Py_None);
fail:
    Py_XDECREF(qs);
    Py_XDECREF(as);
    for (int i = 0; i < t.nseen; i++) Py_DECREF(t.seen[i].name);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"message_fields", message_fields, METH_VARARGS, "The fields of a DNS message in its usual shape (see _dns.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dns", "Compiled DNS message parsing for meshpcap.decode.dns.", -1, methods,
};

PyMODINIT_FUNC PyInit__dns(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", DNS_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
