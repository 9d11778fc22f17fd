/* The walk of a TLS ClientHello: the compiled half of decode/tls.py _parse_client_hello_body.
 *
 * Optional accelerator.  client_hello_fields() reads a well-formed ClientHello body (RFC 8446 section
 * 4.1.2) and its extensions (section 4.2) in one pass and gives back the fields tls.py makes its
 * ClientHello of.  It takes only what it can read without doubt: the fixed fields, every extension header,
 * and server_name (RFC 6066 section 3) in its usual shape (one list whose first entry is a host_name),
 * application_layer_protocol_negotiation (RFC 7301 section 3.1) and supported_versions (RFC 8446 section
 * 4.2.1).  For anything else -- a field that overruns the message, a duplicate extension, bytes after the
 * extensions, an SNI list of another shape, an empty protocol name, an odd versions length -- it returns
 * None, and the Python walk, which alone decides the error, reads the hello.  Naming a TLS flow parsed its
 * ClientHello in about 18 us, a third of that flow's naming, most of it while the capture is still read.
 * tests/decode/test_tls_ext.py compares both on generated, cut and damaged hellos.
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

#define TLS_ABI 1

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_ECH 0xFE0D

static inline unsigned be16(const unsigned char *p) { return ((unsigned)p[0] << 8) | p[1]; }

/* RFC 8701 section 2: 0x0a0a, 0x1a1a, ... 0xfafa (tls.py is_grease) */
static inline int is_grease(unsigned v) { return (v & 0x0F0F) == 0x0A0A && (v >> 8) == (v & 0xFF); }

/* A tuple of the 16-bit values at p[0..2n), GREASE left out (tls.py _without_grease); NULL on failure. */
static PyObject *u16_values(const unsigned char *p, Py_ssize_t n) {
    Py_ssize_t keep = 0;
    for (Py_ssize_t i = 0; i < n; i++) keep += !is_grease(be16(p + 2 * i));
    PyObject *t = PyTuple_New(keep);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0, j = 0; i < n; i++) {
        unsigned v = be16(p + 2 * i);
        if (is_grease(v)) continue;
        PyObject *x = PyLong_FromLong((long)v);
        if (x == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, j++, x);
    }
    return t;
}

/* The ALPN ProtocolNameList in d[0..n) (tls.py _parse_alpn_list, GREASE names left out) as a tuple of
 * bytes, Py_None (a new reference) when the Python walk is to decide, NULL on failure. */
static PyObject *alpn_names(const unsigned char *d, Py_ssize_t n) {
    if (n < 2 || 2 + (Py_ssize_t)be16(d) > n) Py_RETURN_NONE;
    const Py_ssize_t end = 2 + be16(d);  /* bytes after the vector are not looked at */
    Py_ssize_t count = 0;
    for (Py_ssize_t pos = 2; pos < end;) {
        Py_ssize_t k = d[pos];
        if (k == 0 || pos + 1 + k > end) Py_RETURN_NONE;  /* an empty name, or one that overruns the list */
        count += !(k == 2 && is_grease(be16(d + pos + 1)));
        pos += 1 + k;
    }
    PyObject *t = PyTuple_New(count);
    if (t == NULL) return NULL;
    for (Py_ssize_t pos = 2, j = 0; pos < end;) {
        Py_ssize_t k = d[pos];
        if (!(k == 2 && is_grease(be16(d + pos + 1)))) {
            PyObject *name = PyBytes_FromStringAndSize((const char *)d + pos + 1, k);
            if (name == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, j++, name);
        }
        pos += 1 + k;
    }
    return t;
}

/* client_hello_fields(data, pos, end) -> None or (legacy_version, cipher_suites, extensions, sni, alpn,
 * versions, ech)
 *
 * The ClientHello body data[pos:end] (after its 4-byte handshake header).  cipher_suites, extensions (their
 * types, in order) and versions are tuples of ints without GREASE; sni: the raw host_name bytes, or None
 * without a server_name extension; alpn: a tuple of bytes (GREASE names left out), or None without that
 * extension; versions: None without supported_versions; ech: whether encrypted_client_hello is there. */
static PyObject *client_hello_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos, end;
    if (!PyArg_ParseTuple(args, "y*nn", &buf, &pos, &end)) return NULL;
    PyObject *result = NULL, *suites = NULL, *types = NULL, *sni = NULL, *alpn = NULL, *versions = NULL;
    const unsigned char *d = buf.buf;
    unsigned char seen[8192];
    if (pos < 0 || end > buf.len || pos > end) goto decline;
    /* legacy_version, random, legacy_session_id (at most 32 bytes: sections 4.1.2 and 4.1.3) */
    if (end - pos < 2 + 33) goto decline;
    const unsigned legacy = be16(d + pos);
    if (legacy >> 8 != 3) goto decline;
    pos += 2 + 32;
    Py_ssize_t k = d[pos];
    if (k > 32 || pos + 1 + k > end) goto decline;
    pos += 1 + k;
    /* cipher_suites<2..2^16-2>: a positive, even length */
    if (end - pos < 2) goto decline;
    k = be16(d + pos);
    if (k == 0 || k % 2 || pos + 2 + k > end) goto decline;
    const unsigned char *suite_bytes = d + pos + 2;
    const Py_ssize_t nsuites = k / 2;
    pos += 2 + k;
    /* legacy_compression_methods<1..2^8-1> */
    if (end - pos < 1) goto decline;
    k = d[pos];
    if (k == 0 || pos + 1 + k > end) goto decline;
    pos += 1 + k;
    Py_ssize_t ntypes = 0;
    int ech = 0;
    if (pos < end) {  /* RFC 5246 section 7.4.1.2: extensions may be absent before TLS 1.3 */
        if (end - pos < 2 || pos + 2 + (Py_ssize_t)be16(d + pos) != end) goto decline;  /* nothing may follow them */
        memset(seen, 0, sizeof seen);
        for (Py_ssize_t at = pos + 2; at < end;) {
            if (end - at < 4) goto decline;
            const unsigned type = be16(d + at);
            const Py_ssize_t n = be16(d + at + 2);
            if (at + 4 + n > end || (seen[type >> 3] & (1u << (type & 7)))) goto decline;  /* overrun; duplicate */
            seen[type >> 3] |= (unsigned char)(1u << (type & 7));
            ntypes += !is_grease(type);
            at += 4 + n;
        }
        types = PyTuple_New(ntypes);
        if (types == NULL) goto fail;
        Py_ssize_t j = 0;
        for (Py_ssize_t at = pos + 2; at < end;) {
            const unsigned type = be16(d + at);
            const Py_ssize_t n = be16(d + at + 2);
            const unsigned char *e = d + at + 4;
            at += 4 + n;
            if (!is_grease(type)) {
                PyObject *x = PyLong_FromLong((long)type);
                if (x == NULL) goto fail;
                PyTuple_SET_ITEM(types, j++, x);
            }
            if (type == EXT_SERVER_NAME) {
                /* the usual ServerNameList: its first entry a host_name (tls.py _parse_sni's first branch) */
                if (n < 5 || e[2] != 0) goto decline;
                const Py_ssize_t list_end = 2 + be16(e), stop = 5 + be16(e + 3);
                if (!(stop <= list_end && list_end <= n)) goto decline;
                sni = PyBytes_FromStringAndSize((const char *)e + 5, stop - 5);
                if (sni == NULL) goto fail;
            } else if (type == EXT_ALPN) {
                alpn = alpn_names(e, n);
                if (alpn == NULL) goto fail;
                if (alpn == Py_None) goto decline;
            } else if (type == EXT_SUPPORTED_VERSIONS) {
                /* ProtocolVersion versions<2..254>: a 1-byte length, even */
                const Py_ssize_t vk = n ? e[0] : 0;
                if (n < 1 + vk || vk % 2) goto decline;
                versions = u16_values(e + 1, vk / 2);
                if (versions == NULL) goto fail;
            } else if (type == EXT_ECH) {
                ech = 1;
            }
        }
    } else {
        types = PyTuple_New(0);
        if (types == NULL) goto fail;
    }
    suites = u16_values(suite_bytes, nsuites);
    if (suites == NULL) goto fail;
    result = Py_BuildValue("(IOOOOOO)", legacy, suites, types, sni ? sni : Py_None, alpn ? alpn : Py_None,
                           versions ? versions : Py_None, ech ? Py_True : Py_False);
    goto fail;  /* the references above are the tuple's now, or let go */
decline:
    result = Py_NewRef(Py_None);
fail:
    Py_XDECREF(suites);
    Py_XDECREF(types);
    Py_XDECREF(sni);
    Py_XDECREF(alpn);
    Py_XDECREF(versions);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"client_hello_fields", client_hello_fields, METH_VARARGS, "The fields of a well-formed ClientHello body (see _tls.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_tls", "Compiled ClientHello walk for meshpcap.decode.tls.", -1, methods,
};

PyMODINIT_FUNC PyInit__tls(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && (PyModule_AddIntConstant(m, "ABI", TLS_ABI) < 0 ||
                      PyModule_AddStringConstant(m, "SOURCE_HASH", MESHPCAP_SOURCE_HASH) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
