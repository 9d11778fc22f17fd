"""meshpcap.decode.x509: certificate names read without cryptography, checked against cryptography itself."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode.buffer import DecodeError
from meshpcap.decode.x509 import CertificateNames, oid_text, read_certificate_names
from tests.conftest import SHARED_CAPTURES

_EC_KEY = ec.generate_private_key(ec.SECP256R1())
_START = datetime.datetime(2024, 1, 1)


def theirs(der: bytes) -> CertificateNames | None:
    """What cryptography reads (None when it refuses the certificate)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            return CertificateNames(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
    except Exception:  # noqa: BLE001 - any refusal
        return None


def ours(der: bytes) -> CertificateNames | None:
    try:
        return read_certificate_names(der)
    except DecodeError:
        return None


def make_cert(subject: x509.Name, issuer: x509.Name | None = None, key=None, sign_padding=None,
              end: datetime.datetime | None = None) -> bytes:
    key = key or _EC_KEY
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(12345)
               .not_valid_before(_START).not_valid_after(end or _START + datetime.timedelta(days=1))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    kwargs = {"rsa_padding": sign_padding} if sign_padding is not None else {}
    return builder.sign(key, algorithm, **kwargs).public_bytes(serialization.Encoding.DER)


def _name(*rdns) -> x509.Name:
    return x509.Name([x509.RelativeDistinguishedName(list(r)) if isinstance(r, (list, tuple)) else
                      x509.RelativeDistinguishedName([r]) for r in rdns])


A = x509.NameAttribute


def _long_cn() -> x509.NameAttribute:
    with warnings.catch_warnings():  # RFC 5280's upper bound is 64; certificates in the wild break it
        warnings.simplefilter("ignore")
        return A(NameOID.COMMON_NAME, "x" * 100, _validate=False)


NAMES = [
    _name(A(NameOID.COMMON_NAME, "teams.microsoft.com"), A(NameOID.ORGANIZATION_NAME, "Microsoft Corporation")),
    _name(A(NameOID.COUNTRY_NAME, "DE"), A(NameOID.LOCALITY_NAME, "Köln"), A(NameOID.COMMON_NAME, "straße.example")),
    _name([A(NameOID.COMMON_NAME, "multi"), A(NameOID.ORGANIZATIONAL_UNIT_NAME, "valued")],
          A(NameOID.DOMAIN_COMPONENT, "example")),
    _name(A(NameOID.COMMON_NAME, "日本語 名前", _ASN1Type.BMPString),
          A(NameOID.ORGANIZATION_NAME, "T61 org", _ASN1Type.T61String),
          A(NameOID.ORGANIZATIONAL_UNIT_NAME, "𝔘niversal", _ASN1Type.UniversalString),
          A(NameOID.EMAIL_ADDRESS, "pki@example.com"), A(NameOID.SERIAL_NUMBER, "12 34")),
    _name(A(NameOID.COMMON_NAME, ' #lead, "q" +plus; <x> \\back trail '), A(NameOID.USER_ID, "u=1")),
    _name(_long_cn(), A(ObjectIdentifier("1.2.3.4.5.6.7.8.99999"), "unknown oid")),
    _name(A(NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\xab\xcd", _ASN1Type.BitString), A(NameOID.COMMON_NAME, " ")),
    x509.Name([]),
]


@pytest.mark.parametrize("i", range(len(NAMES)))
def test_generated_certificates_read_as_cryptography_reads_them(i):
    issuer = NAMES[(i + 1) % len(NAMES)]
    der = make_cert(NAMES[i], issuer)
    expected = theirs(der)
    assert expected is not None
    assert read_certificate_names(der) == expected


def test_key_and_signature_kinds():
    name = NAMES[0]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    for der in (make_cert(name, key=rsa_key), make_cert(name, key=rsa_key, sign_padding=pss),
                make_cert(name, key=ed25519.Ed25519PrivateKey.generate()),
                make_cert(name, end=datetime.datetime(2051, 1, 1))):  # GeneralizedTime after 2049
        assert read_certificate_names(der) == theirs(der) == CertificateNames(
            "O=Microsoft Corporation,CN=teams.microsoft.com", "O=Microsoft Corporation,CN=teams.microsoft.com")


def test_every_prefix_needs_more_and_trailing_bytes_are_malformed():
    der = make_cert(NAMES[1])
    for i in range(len(der)):
        assert read_certificate_names(der[:i]) is None
    with pytest.raises(DecodeError):
        read_certificate_names(der + b"\x00")
    with pytest.raises(DecodeError):
        read_certificate_names(b"\x31" + der[1:])  # a SET, not a certificate


def test_refusals_cryptography_makes_too():
    der = make_cert(_name(A(NameOID.COMMON_NAME, "star")))
    at = der.index(b"\x13\x04star") if b"\x13\x04star" in der else None
    utf8 = der.index(b"\x0c\x04star")
    cases = {
        "printable with '*'": der[:utf8] + b"\x13\x04st*r" + der[utf8 + 6:],
        "printable": der[:utf8] + b"\x13\x04star" + der[utf8 + 6:],
        "not UTF-8": der[:utf8] + b"\x0c\x04st\xffr" + der[utf8 + 6:],
        "odd BMPString": der[:utf8] + b"\x1e\x04\x00s\x00" + der[utf8 + 5:],
        "a SEQUENCE value": der[:utf8] + b"\x30\x04star" + der[utf8 + 6:],
        "explicit FALSE critical": der.replace(b"\x01\x01\xff", b"\x01\x01\x00", 1),
    }
    assert at is None
    results = {k: (ours(v), theirs(v)) for k, v in cases.items()}
    assert results["printable"][0] == results["printable"][1] is not None
    for k, (a, b) in results.items():
        assert a == b, k
    assert results["printable with '*'"][0] is None and results["not UTF-8"][0] is None


def test_oid_text():
    assert oid_text(bytes.fromhex("2a864886f70d01010b")) == "1.2.840.113549.1.1.11"
    assert oid_text(bytes.fromhex("8837")) == "2.999"
    for bad in (b"", b"\x80\x01", b"\x2a\x86", b"\x01" * 64):
        with pytest.raises(DecodeError):
            oid_text(bad)


def _real_certificates() -> list[bytes]:
    files = ["nDPI/teams.pcap", "suricata-verify/tls/tls-subjectaltname/input.pcap", "ja4/latest.pcapng"]
    if shutil.which("tshark") is None or not SHARED_CAPTURES.is_dir():
        return []
    out = []
    for f in files:
        if (SHARED_CAPTURES / f).is_file():
            text = subprocess.run(["tshark", "-r", str(SHARED_CAPTURES / f), "-Y", "tls.handshake.certificate",
                                   "-T", "fields", "-e", "tls.handshake.certificate"],
                                  capture_output=True, text=True, timeout=60).stdout
            out += [bytes.fromhex(h) for h in sorted(set(text.replace(",", "\n").split()))]
    return out


@pytest.fixture(scope="module")
def real_certificates() -> list[bytes]:
    certs = _real_certificates()
    if not certs:
        pytest.skip("needs tshark and ../shared/captures")
    return certs


def test_real_certificates_read_as_cryptography_reads_them(real_certificates):
    assert len(real_certificates) > 20
    for der in real_certificates:
        expected = theirs(der)
        assert expected is not None
        assert read_certificate_names(der) == expected


_GENERATED = [make_cert(n, NAMES[0]) for n in NAMES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_GENERATED), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255),
                                                       st.sampled_from("sxid")), min_size=1, max_size=3))
def test_mutated_certificates_agree_with_cryptography(der, edits):
    """Byte edits anywhere (set, flip a bit, insert, delete): the names or the refusal are cryptography's."""
    data = bytearray(der)
    for where, value, how in edits:
        i = int(where * len(data))
        if how == "s":
            data[i] = value
        elif how == "x":
            data[i] ^= 1 << (value % 8)
        elif how == "i":
            data.insert(i, value)
        elif len(data) > 1:
            del data[i]
    assert ours(bytes(data)) == theirs(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_GENERATED), st.integers(0, 2000), st.binary(max_size=64))
def test_fuzz_three_outcomes(der, cut, tail):
    """``valid[:i] + random`` gives names, None or DecodeError: nothing else escapes."""
    try:
        got = read_certificate_names(der[: cut % (len(der) + 1)] + tail)
    except DecodeError:
        return
    assert got is None or isinstance(got, CertificateNames)
