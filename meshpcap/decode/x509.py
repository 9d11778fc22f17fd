"""X.509 certificates (RFC 5280): the subject and issuer of a DER certificate as RFC 4514 strings.

A small DER reader instead of ``cryptography`` (whose import costs about 20 ms of every run that meets a
TLS 1.2 certificate). It gives the strings ``cryptography``'s ``Name.rfc4514_string()`` gives, and refuses
what ``cryptography.x509.load_der_x509_certificate`` refuses, as far as this reader's checks go:

- DER only (X.690 section 10): definite, minimal lengths of at most four octets, minimal tags, integers and
  OID arcs, BOOLEAN as 00 or FF, BIT STRING padding bits zero, no DEFAULT value encoded, SET OF elements
  in DER order, nothing after the certificate;
- the RFC 5280 section 4.1 layout in full (version v1 or v3 only, UTCTime and GeneralizedTime without
  fractions, the optional unique ids and extensions) and the parameters of the algorithm identifiers
  ``cryptography`` knows (NULL or absent, absent, EC, RSA-PSS, DSA, DH); other algorithms take any one
  element, as there;
- names as ``cryptography`` reads them: the attribute value's tag is one of the string types below, its
  content valid UTF-8 (BMPString UTF-16, UniversalString UTF-32, PrintableString its X.680 characters),
  a BIT STRING only for x500UniqueIdentifier; no RDN empty or holding one attribute twice.

:func:`read_certificate_names` has the three outcomes of every parser here: the names, ``None`` when the
bytes are the start of a certificate that goes on, or :class:`DecodeError` when they are not a certificate.
"""

from __future__ import annotations


from meshpcap._dataclass import dataclass
from meshpcap.decode.buffer import DecodeError

__all__ = ["CertificateNames", "read_certificate_names", "oid_text", "rfc4514"]


@dataclass(frozen=True, slots=True)
class CertificateNames:
    """A certificate's subject and issuer, each as an RFC 4514 string (most specific RDN first)."""

    subject: str
    issuer: str


# X.690 section 8.1.2 identifier octets of the universal types read here
SEQUENCE, SET, INTEGER, BOOLEAN, BIT_STRING, OCTET_STRING, NULL, OID = 0x30, 0x31, 0x02, 0x01, 0x03, 0x04, 0x05, 0x06
UTC_TIME, GENERALIZED_TIME = 0x17, 0x18

# The attribute value types cryptography reads (its _ASN1Type), by identifier octet
_STRING_TAGS = frozenset((3, 4, 12, 18, 19, 20, 22, 23, 24, 26, 28, 30))
_BMP_STRING, _UNIVERSAL_STRING, _PRINTABLE_STRING = 30, 28, 19
_PRINTABLE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"  # X.680 section 41.4
_X500_UNIQUE_IDENTIFIER = "2.5.4.45"

# RFC 4514 section 3 short names (the ones cryptography prints)
SHORT_NAMES = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
               "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}

# AlgorithmIdentifier parameters by algorithm (RFC 3279, 4055, 5480, 5758, 8410): NULL or absent ...
_NULL_OR_ABSENT = frozenset((
    "1.3.14.3.2.26", "2.16.840.1.101.3.4.2.4", "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2",
    "2.16.840.1.101.3.4.2.3",  # SHA-1, SHA-224/256/384/512
    "1.2.840.113549.1.1.1",  # rsaEncryption
    "1.2.840.10045.4.3.1", "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",  # ecdsa-with-SHA2
    "1.2.840.113549.1.1.5", "1.3.14.3.2.29", "1.2.840.113549.1.1.14", "1.2.840.113549.1.1.11",
    "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",  # sha*WithRSAEncryption
    "2.16.840.1.101.3.4.3.13", "2.16.840.1.101.3.4.3.14", "2.16.840.1.101.3.4.3.15", "2.16.840.1.101.3.4.3.16",
    "2.16.840.1.101.3.4.3.1", "2.16.840.1.101.3.4.3.2", "2.16.840.1.101.3.4.3.3", "2.16.840.1.101.3.4.3.4",  # dsa
    "1.2.840.113549.2.7", "1.2.840.113549.2.9",  # hmacWithSHA1/256
))
# ... always absent (Ed25519, Ed448, X25519, X448, ecdsa-with-SHA3-*)
_ABSENT = frozenset(("1.3.101.112", "1.3.101.113", "1.3.101.110", "1.3.101.111", "2.16.840.1.101.3.4.3.9",
                     "2.16.840.1.101.3.4.3.10", "2.16.840.1.101.3.4.3.11", "2.16.840.1.101.3.4.3.12"))
_EC, _RSA_PSS, _DSA, _DHX, _DH = ("1.2.840.10045.2.1", "1.2.840.113549.1.1.10", "1.2.840.10040.4.1",
                                  "1.2.840.10046.2.1", "1.2.840.113549.1.3.1")
# RFC 4055 section 3.1 DEFAULTs, which DER forbids encoding: sha1Identifier, mgf1SHA1Identifier, 20
_PSS_DEFAULT_HASH = bytes.fromhex("300906052b0e03021a0500")
_PSS_DEFAULT_MGF = bytes.fromhex("301606092a864886f70d010108300906052b0e03021a0500")
_MAX_DEPTH = 8


def read_certificate_names(der: bytes) -> CertificateNames | None:
    """The subject and issuer of the DER certificate ``der``; None when ``der`` is a valid start of one that
    continues past its end; :class:`DecodeError` when it is not a certificate (or one cryptography refuses)."""
    data = bytes(der)
    try:
        tag, start, end = _tlv(data, 0, len(data))
    except _Short:
        return None
    if tag != SEQUENCE:
        raise DecodeError("certificate: not a SEQUENCE")
    if end > len(data):
        return None
    if end != len(data):
        raise DecodeError("certificate: bytes after the certificate")
    try:
        return _certificate(data, start, end)
    except _Short:
        raise DecodeError("certificate: an element runs past its parent") from None


class _Short(DecodeError):
    """An element's header or content runs past the bytes it must lie in."""


def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(identifier octet, content start, content end) of the element at ``pos`` (X.690 section 8.1); a
    long-form tag number is returned as -1 (nothing read here has one). The content end may lie past ``end``
    only at the top level (the caller checks); inside, :func:`_element` refuses it."""
    if pos >= end:
        raise _Short("no identifier octet")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # high tag number form: base 128, minimal, at least 31, fits 32 bits
        value, pos = _base128(data, pos, end, _Short)
        if value < 0x1F or value > 0xFFFFFFFF:
            raise DecodeError("tag number not minimal")
        tag = -1
    if pos >= end:
        raise _Short("no length octet")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return tag, pos, pos + first
    n = first & 0x7F
    if n == 0 or n > 4:
        raise DecodeError("indefinite or over-long length")  # X.690 section 10.1: definite form only
    if pos + n > end:
        raise _Short("length octets cut")
    length = int.from_bytes(data[pos : pos + n], "big")
    if length < (0x80 if n == 1 else 1 << (8 * (n - 1))):
        raise DecodeError("length not in the shortest form")
    pos += n
    return tag, pos, pos + length


def _element(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    tag, start, stop = _tlv(data, pos, end)
    if stop > end:
        raise DecodeError("an element runs past its parent")
    return tag, start, stop


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    got, start, stop = _element(data, pos, end)
    if got != tag:
        raise DecodeError(f"{what}: expected tag 0x{tag:02x}, got 0x{got & 0xFF:02x}")
    return start, stop


def _peek(data: bytes, pos: int, end: int) -> int | None:
    return data[pos] if pos < end else None


def _base128(data: bytes, pos: int, end: int, short=DecodeError) -> tuple[int, int]:
    """One base-128 number (X.690 section 8.19.2): no leading 0x80, below 2**128."""
    if pos < end and data[pos] == 0x80:
        raise DecodeError("base-128 number not minimal")
    value = 0
    while True:
        if pos >= end:
            raise short("base-128 number cut")
        b = data[pos]
        pos += 1
        value = (value << 7) | (b & 0x7F)
        if value >> 128:
            raise DecodeError("base-128 number too large")
        if not b & 0x80:
            return value, pos


def oid_text(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets (X.690 section 8.19); DecodeError when they
    are not one (empty, longer than 63 octets, an arc not minimal)."""
    if not content or len(content) > 63:
        raise DecodeError("OID empty or too long")
    arcs = []
    pos, end = 0, len(content)
    while pos < end:
        value, pos = _base128(content, pos, end)
        arcs.append(value)
    first = arcs[0]
    head = f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}"
    return ".".join([head, *map(str, arcs[1:])])


def _oid(data: bytes, pos: int, end: int) -> tuple[str, int]:
    start, stop = _expect(data, pos, end, OID, "OID")
    return oid_text(data[start:stop]), stop


def _integer(data: bytes, start: int, stop: int, signed: bool = True) -> None:
    """X.690 section 8.3: at least one octet, minimal; non-negative unless ``signed``."""
    if start == stop:
        raise DecodeError("empty INTEGER")
    if stop - start > 1 and ((data[start] == 0 and not data[start + 1] & 0x80)
                             or (data[start] == 0xFF and data[start + 1] & 0x80)):
        raise DecodeError("INTEGER not minimal")
    if not signed and data[start] & 0x80:
        raise DecodeError("negative INTEGER")


def _small_uint(data: bytes, start: int, stop: int, octets: int) -> int:
    _integer(data, start, stop, signed=False)
    if stop - start == octets + 1 and data[start] == 0:
        start += 1
    if stop - start > octets:
        raise DecodeError("INTEGER too large")
    return int.from_bytes(data[start:stop], "big")


def _uint_element(data: bytes, pos: int, end: int, octets: int) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, INTEGER, "INTEGER")
    return _small_uint(data, start, stop, octets), stop


def _biguint(data: bytes, pos: int, end: int) -> int:
    start, stop = _expect(data, pos, end, INTEGER, "INTEGER")
    _integer(data, start, stop, signed=False)
    return stop


def _bit_string(data: bytes, start: int, stop: int) -> None:
    """X.690 sections 8.6 and 11.2: the unused-bits octet (0..7, 0 when empty), those bits zero."""
    if start == stop:
        raise DecodeError("empty BIT STRING")
    unused = data[start]
    if unused > 7 or (unused and (stop - start == 1 or data[stop - 1] & ((1 << unused) - 1))):
        raise DecodeError("BIT STRING padding")


def _null(data: bytes, pos: int, end: int) -> int:
    start, stop = _expect(data, pos, end, NULL, "NULL")
    if start != stop:
        raise DecodeError("NULL with content")
    return stop


def _done(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise DecodeError(f"{what}: unexpected bytes at its end")


def _time(data: bytes, pos: int, end: int) -> int:
    """UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 section 4.1.2.5), a real date."""
    tag, start, stop = _element(data, pos, end)
    digits = 2 if tag == UTC_TIME else 4 if tag == GENERALIZED_TIME else 0
    if not digits:
        raise DecodeError("validity: not a time")
    text = data[start:stop]
    if len(text) != digits + 11 or text[-1:] != b"Z" or not all(48 <= b <= 57 for b in text[:-1]):
        raise DecodeError("validity: malformed time")
    year = int(text[:digits])
    if digits == 2:
        year += 1900 if year >= 50 else 2000
    month, day, hour, minute, second = (int(text[i : i + 2]) for i in range(digits, digits + 10, 2))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not (1 <= month <= 12 and 1 <= day <= days[month - 1] and hour < 24 and minute < 60 and second < 60):
        raise DecodeError("validity: not a date")
    return stop


def _algorithm(data: bytes, pos: int, end: int, depth: int = 0) -> int:
    """AlgorithmIdentifier (RFC 5280 section 4.1.1.2) with the parameters its algorithm allows."""
    start, stop = _expect(data, pos, end, SEQUENCE, "AlgorithmIdentifier")
    oid, p = _oid(data, start, stop)
    if oid in _NULL_OR_ABSENT:
        if p < stop and data[p] == NULL:
            p = _null(data, p, stop)
    elif oid in _ABSENT:
        pass
    elif oid == _EC:  # RFC 5480 section 2.1.1: namedCurve, implicitCurve or specifiedCurve
        tag = _peek(data, p, stop)
        if tag == OID:
            p = _oid(data, p, stop)[1]
        elif tag == NULL:
            p = _null(data, p, stop)
        else:
            p = _expect(data, p, stop, SEQUENCE, "ECParameters")[1]
    elif oid == _RSA_PSS:
        if p < stop and data[p] == SEQUENCE:
            if depth >= _MAX_DEPTH:  # RSASSA-PSS-params hold algorithm identifiers: no endless nesting
                raise DecodeError("AlgorithmIdentifier: nested too deep")
            p = _pss_parameters(data, p, stop, depth + 1)
    elif oid == _DSA:  # RFC 3279 section 2.3.2 Dss-Parms
        s, e = _expect(data, p, stop, SEQUENCE, "Dss-Parms")
        q = _biguint(data, _biguint(data, _biguint(data, s, e), e), e)
        _done(q, e, "Dss-Parms")
        p = e
    elif oid in (_DHX, _DH):
        p = _dh_parameters(data, p, stop, oid == _DHX)
    elif p < stop:  # an algorithm cryptography does not know: any one element
        p = _element(data, p, stop)[2]
    _done(p, stop, "AlgorithmIdentifier")
    return stop


def _pss_parameters(data: bytes, pos: int, end: int, depth: int) -> int:
    """RSASSA-PSS-params (RFC 4055 section 3.1), its DEFAULT values not encoded."""
    start, stop = _expect(data, pos, end, SEQUENCE, "RSASSA-PSS-params")
    p = start
    if _peek(data, p, stop) == 0xA0:
        s, e = _expect(data, p, stop, 0xA0, "hashAlgorithm")
        _done(_algorithm(data, s, e, depth), e, "hashAlgorithm")
        if data[s:e] == _PSS_DEFAULT_HASH:
            raise DecodeError("hashAlgorithm: the DEFAULT encoded")
        p = e
    if _peek(data, p, stop) == 0xA1:
        s, e = _expect(data, p, stop, 0xA1, "maskGenAlgorithm")
        ms, me = _expect(data, s, e, SEQUENCE, "MaskGenAlgorithm")
        _done(me, e, "maskGenAlgorithm")
        _done(_algorithm(data, _oid(data, ms, me)[1], me, depth), me, "MaskGenAlgorithm")
        if data[s:e] == _PSS_DEFAULT_MGF:
            raise DecodeError("maskGenAlgorithm: the DEFAULT encoded")
        p = e
    if _peek(data, p, stop) == 0xA2:
        s, e = _expect(data, p, stop, 0xA2, "saltLength")
        value, q = _uint_element(data, s, e, 2)
        _done(q, e, "saltLength")
        if value == 20:
            raise DecodeError("saltLength: the DEFAULT encoded")
        p = e
    if _peek(data, p, stop) == 0xA3:
        s, e = _expect(data, p, stop, 0xA3, "trailerField")
        _done(_uint_element(data, s, e, 1)[1], e, "trailerField")
        p = e
    _done(p, stop, "RSASSA-PSS-params")
    return stop


def _dh_parameters(data: bytes, pos: int, end: int, dhx: bool) -> int:
    """DomainParameters (RFC 3279 section 2.3.3) or PKCS #3 DHParameter."""
    start, stop = _expect(data, pos, end, SEQUENCE, "DH parameters")
    p = _biguint(data, _biguint(data, start, stop), stop)  # p, g
    if dhx:
        p = _biguint(data, p, stop)  # q
        if _peek(data, p, stop) == INTEGER:
            p = _biguint(data, p, stop)  # j
        if _peek(data, p, stop) == SEQUENCE:
            p = _element(data, p, stop)[2]  # validationParms
    elif _peek(data, p, stop) == INTEGER:
        p = _uint_element(data, p, stop, 4)[1]  # privateValueLength
    _done(p, stop, "DH parameters")
    return stop


def _certificate(data: bytes, start: int, end: int) -> CertificateNames:
    """Certificate and TBSCertificate (RFC 5280 section 4.1), in full; the two names kept."""
    tbs, tbs_end = _expect(data, start, end, SEQUENCE, "tbsCertificate")
    p = _algorithm(data, tbs_end, end)
    s, e = _expect(data, p, end, BIT_STRING, "signatureValue")
    _bit_string(data, s, e)
    _done(e, end, "Certificate")

    p, version = tbs, 0
    if _peek(data, p, tbs_end) == 0xA0:  # [0] EXPLICIT Version DEFAULT v1
        s, e = _expect(data, p, tbs_end, 0xA0, "version")
        version, q = _uint_element(data, s, e, 1)
        _done(q, e, "version")
        if version == 0:
            raise DecodeError("version: the DEFAULT encoded")
        p = e
    if version not in (0, 2):  # cryptography reads v1 and v3 certificates only
        raise DecodeError(f"version: {version} is not a valid X.509 version")
    s, p = _expect(data, p, tbs_end, INTEGER, "serialNumber")
    _integer(data, s, p)
    p = _algorithm(data, p, tbs_end)
    issuer, p = _name(data, p, tbs_end)
    s, p = _expect(data, p, tbs_end, SEQUENCE, "validity")
    _done(_time(data, _time(data, s, p), p), p, "validity")
    subject, p = _name(data, p, tbs_end)
    s, p = _expect(data, p, tbs_end, SEQUENCE, "subjectPublicKeyInfo")
    q = _algorithm(data, s, p)
    bs, be = _expect(data, q, p, BIT_STRING, "subjectPublicKey")
    _bit_string(data, bs, be)
    _done(be, p, "subjectPublicKeyInfo")
    for implicit in (0x81, 0x82):  # issuerUniqueID, subjectUniqueID: [1], [2] IMPLICIT BIT STRING
        if _peek(data, p, tbs_end) == implicit:
            s, p = _expect(data, p, tbs_end, implicit, "unique id")
            _bit_string(data, s, p)
    if _peek(data, p, tbs_end) == 0xA3:  # [3] EXPLICIT Extensions
        s, e = _expect(data, p, tbs_end, 0xA3, "extensions")
        _done(_extensions(data, s, e), e, "extensions")
        p = e
    _done(p, tbs_end, "tbsCertificate")
    return CertificateNames(subject=rfc4514(subject), issuer=rfc4514(issuer))


def _extensions(data: bytes, pos: int, end: int) -> int:
    start, stop = _expect(data, pos, end, SEQUENCE, "Extensions")
    p = start
    while p < stop:  # Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
        s, e = _expect(data, p, stop, SEQUENCE, "Extension")
        q = _oid(data, s, e)[1]
        if _peek(data, q, e) == BOOLEAN:
            bs, q = _expect(data, q, e, BOOLEAN, "critical")
            if data[bs:q] != b"\xff":  # X.690 section 11.1: TRUE is FF; FALSE is the DEFAULT, never encoded
                raise DecodeError("critical: not TRUE")
        _done(_expect(data, q, e, OCTET_STRING, "extnValue")[1], e, "Extension")
        p = e
    return stop


def _name(data: bytes, pos: int, end: int) -> tuple[list, int]:
    """Name (RFC 5280 section 4.1.2.4): its RDNs, each a list of (oid, tag, content), in DER order."""
    start, stop = _expect(data, pos, end, SEQUENCE, "Name")
    rdns = []
    p = start
    while p < stop:
        s, e = _expect(data, p, stop, SET, "RelativeDistinguishedName")
        rdn, q, last = [], s, b""
        while q < e:  # X.690 section 11.6: SET OF in ascending order of the encodings
            a, b = _expect(data, q, e, SEQUENCE, "AttributeTypeAndValue")
            encoding = data[q:b]
            if encoding < last:
                raise DecodeError("RelativeDistinguishedName: SET OF not in DER order")
            last = encoding
            oid, r = _oid(data, a, b)
            tag, vs, ve = _element(data, r, b)
            _done(ve, b, "AttributeTypeAndValue")
            rdn.append((oid, tag, data[vs:ve]))
            q = b
        rdns.append(rdn)
        p = e
    return rdns, stop


def _attribute_value(oid: str, tag: int, content: bytes) -> str | bytes:
    """The value as cryptography's NameAttribute holds it: text, or bytes for a BIT STRING."""
    if tag not in _STRING_TAGS:
        raise DecodeError(f"attribute {oid}: value type 0x{tag & 0xFF:02x} is not a string")
    if tag == BIT_STRING:
        if oid != _X500_UNIQUE_IDENTIFIER:
            raise DecodeError(f"attribute {oid}: a BIT STRING value")
        return content
    if tag == _PRINTABLE_STRING and content.translate(None, _PRINTABLE):
        raise DecodeError(f"attribute {oid}: a PrintableString with other characters")
    codec = "utf_16_be" if tag == _BMP_STRING else "utf_32_be" if tag == _UNIVERSAL_STRING else "utf-8"
    try:
        return content.decode(codec)
    except UnicodeDecodeError:
        raise DecodeError(f"attribute {oid}: not valid {codec}") from None


def _escape(value: str | bytes) -> str:
    """RFC 4514 section 2.4 escaping, character for character as cryptography's ``_escape_dn_value``."""
    if not value:
        return ""
    if isinstance(value, bytes):
        return "#" + value.hex()
    for ch, esc in (("\\", "\\\\"), ('"', '\\"'), ("+", "\\+"), (",", "\\,"), (";", "\\;"), ("<", "\\<"),
                    (">", "\\>"), ("\0", "\\00")):
        value = value.replace(ch, esc)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def rfc4514(rdns: list) -> str:
    """The RFC 4514 string of a Name read by :func:`_name`: RDNs last to first, joined by ',', the
    attributes of one RDN by '+' in their DER order."""
    out = []
    for rdn in reversed(rdns):
        if not rdn:
            raise DecodeError("an empty RelativeDistinguishedName")
        values = [(oid, _attribute_value(oid, tag, content)) for oid, tag, content in rdn]
        if len(set(values)) != len(values):
            raise DecodeError("an attribute twice in one RelativeDistinguishedName")
        out.append("+".join(f"{SHORT_NAMES.get(oid, oid)}={_escape(v)}" for oid, v in values))
    return ",".join(out)
