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
 * server_flight_fields() reads the usual start of a server's stream (TLS 1.3's): one handshake record holding
 * one ServerHello that is no HelloRetryRequest, then ChangeCipherSpec, encrypted records or the stream's end
 * (twin: decode/tls.py read_server_flight, which reads every other stream).
 * tests/decode/test_tls_ext.py compares both on generated, cut and damaged hellos and flights.
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

#define TLS_ABI 2

#define EXT_SERVER_NAME 0
#define EXT_ALPN 16
#define EXT_SUPPORTED_VERSIONS 43
#define EXT_ECH 0xFE0D
#define CT_CHANGE_CIPHER_SPEC 20
#define CT_HANDSHAKE 22
#define CT_APPLICATION_DATA 23
#define HS_SERVER_HELLO 2
#define MAX_RECORD (16384 + 256)  /* tls.py MAX_RECORD */

/* RFC 8446 section 4.1.3: the random of a HelloRetryRequest */
static const unsigned char HELLO_RETRY_RANDOM[32] = {
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};

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

/* server_flight_fields(stream) -> None or (version, cipher_suite, alpn, encrypted, complete)
 *
 * The flight that starts ``stream`` when it is one handshake record (RFC 8446 section 5.1) holding exactly one
 * ServerHello (section 4.1.3) that is no HelloRetryRequest, followed by the end of the stream, less than a
 * record header, or a well-formed ChangeCipherSpec or application_data record header: version (from
 * supported_versions when it holds one version), the cipher suite, the first ALPN protocol (bytes, or None),
 * whether encryption began, whether the flight ended inside a record.  None for any other stream, which
 * read_server_flight reads. */
static PyObject *server_flight_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    PyObject *result = NULL;
    const unsigned char *d = buf.buf;
    const Py_ssize_t n = buf.len;
    if (n < 5 || d[0] != CT_HANDSHAKE || d[1] != 3 || d[2] > 4) goto decline;
    const Py_ssize_t rlen = be16(d + 3);
    if (rlen > MAX_RECORD || 5 + rlen > n || rlen < 4 || d[5] != HS_SERVER_HELLO) goto decline;
    if (4 + (((Py_ssize_t)d[6] << 16) | ((Py_ssize_t)d[7] << 8) | d[8]) != rlen) goto decline;  /* one message */
    Py_ssize_t pos = 9, end = 5 + rlen;
    /* legacy_version, random, legacy_session_id_echo (at most 32 bytes), cipher_suite, compression */
    if (end - pos < 35) goto decline;
    unsigned version = be16(d + pos);
    if (memcmp(d + pos + 2, HELLO_RETRY_RANDOM, 32) == 0) goto decline;
    pos += 34;
    const Py_ssize_t sid = d[pos];
    if (sid > 32 || pos + 1 + sid > end) goto decline;
    pos += 1 + sid;
    if (end - pos < 3) goto decline;
    const unsigned suite = be16(d + pos);
    pos += 3;
    const unsigned char *alpn = NULL;
    Py_ssize_t alpn_len = 0;
    if (pos < end) {
        if (end - pos < 2 || pos + 2 + (Py_ssize_t)be16(d + pos) > end) goto decline;
        const Py_ssize_t ext_end = pos + 2 + be16(d + pos);  /* bytes after the extensions are not looked at */
        for (Py_ssize_t at = pos + 2; at < ext_end;) {
            if (ext_end - at < 4) goto decline;
            const unsigned type = be16(d + at);
            const Py_ssize_t k = be16(d + at + 2);
            const unsigned char *e = d + at + 4;
            if (at + 4 + k > ext_end) goto decline;
            at += 4 + k;
            if (type == EXT_SUPPORTED_VERSIONS && k == 2) {
                version = be16(e);
            } else if (type == EXT_ALPN) {  /* ProtocolNameList: the first name, checked as the whole list is */
                if (k < 2 || 2 + (Py_ssize_t)be16(e) > k) goto decline;
                const Py_ssize_t list_end = 2 + be16(e);
                const unsigned char *first = NULL;
                Py_ssize_t first_len = 0;
                for (Py_ssize_t q = 2; q < list_end;) {
                    const Py_ssize_t m = e[q];
                    if (m == 0 || q + 1 + m > list_end) goto decline;
                    if (first == NULL) {
                        first = e + q + 1;
                        first_len = m;
                    }
                    q += 1 + m;
                }
                if (first != NULL) {
                    alpn = first;
                    alpn_len = first_len;
                }
            }
        }
    }
    /* what follows the ServerHello's record */
    int encrypted = 0, complete = 1;
    pos = 5 + rlen;
    if (n - pos >= 5) {
        const int ctype = d[pos];
        if ((ctype != CT_CHANGE_CIPHER_SPEC && ctype != CT_APPLICATION_DATA) || d[pos + 1] != 3 ||
            be16(d + pos + 3) > MAX_RECORD)
            goto decline;
        encrypted = 1;
    } else if (n > pos) {
        complete = 0;  /* a record header cut */
    }
    PyObject *name = alpn ? PyBytes_FromStringAndSize((const char *)alpn, alpn_len) : Py_NewRef(Py_None);
    if (name == NULL) goto done;
    result = Py_BuildValue("(IINOO)", version, suite, name, encrypted ? Py_True : Py_False, complete ? Py_True : Py_False);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"client_hello_fields", client_hello_fields, METH_VARARGS, "The fields of a well-formed ClientHello body (see _tls.c)."},
    {"server_flight_fields", server_flight_fields, METH_VARARGS, "The usual start of a server's TLS stream (see _tls.c)."},
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
