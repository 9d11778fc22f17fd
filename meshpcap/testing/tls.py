"""TLS records and handshake messages for tests and sample captures: browser-like ClientHellos (GREASE,
post-quantum key share, ECH, padding), ServerHellos, alerts, certificates, application data.

The bytes are plausible and deterministic (the key shares and randoms are filler derived from the
arguments, not real keys); :mod:`meshpcap.decode.tls` reads them back.
"""

from __future__ import annotations

import hashlib
import struct

from meshpcap.decode.tls import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    EXT_ALPN,
    EXT_EC_POINT_FORMATS,
    EXT_ECH,
    EXT_EXTENDED_MASTER_SECRET,
    EXT_KEY_SHARE,
    EXT_PADDING,
    EXT_PSK_KEY_EXCHANGE_MODES,
    EXT_QUIC_TRANSPORT_PARAMETERS,
    EXT_RENEGOTIATION_INFO,
    EXT_SCT,
    EXT_SERVER_NAME,
    EXT_SESSION_TICKET,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_STATUS_REQUEST,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    GROUP_SECP256R1,
    GROUP_X25519,
    GROUP_X25519MLKEM768,
    HELLO_RETRY_RANDOM,
    HS_CERTIFICATE,
    HS_CLIENT_HELLO,
    HS_SERVER_HELLO,
    X25519MLKEM768_SHARE_LEN,
)

__all__ = ["build_record", "build_handshake", "build_client_hello", "build_server_hello", "build_alert",
           "build_certificate_record", "build_change_cipher_spec", "build_application_data"]




def _u8(v: int) -> bytes:
    return bytes((v,))


def _u16(v: int) -> bytes:
    return struct.pack("!H", v)


def _u24(v: int) -> bytes:
    return struct.pack("!I", v)[1:]


def _vec(data: bytes, size: int) -> bytes:
    return {1: _u8, 2: _u16, 3: _u24}[size](len(data)) + data


def _ext(ext_type: int, data: bytes) -> bytes:
    return _u16(ext_type) + _vec(data, 2)


def _filler(seed: bytes, n: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:n])


def build_record(content_type: int, payload: bytes, version: int = 0x0303, max_fragment: int = 2**14) -> bytes:
    """Wrap ``payload`` in TLSPlaintext records of at most ``max_fragment`` bytes (RFC 8446 section 5.1)."""
    out = bytearray()
    for i in range(0, max(len(payload), 1), max_fragment):
        frag = payload[i : i + max_fragment]
        out += _u8(content_type) + _u16(version) + _vec(frag, 2)
    return bytes(out)


def build_handshake(msg_type: int, body: bytes) -> bytes:
    return _u8(msg_type) + _vec(body, 3)


def build_client_hello(
    sni: str | bytes | None,
    alpn: tuple[str, ...] = (),
    versions: tuple[int, ...] = (0x0304, 0x0303),
    ech: bool = False,
    padding_to: int | None = None,
    *,
    pq_key_share: bool = False,
    grease: bool = False,
    quic_transport_parameters: bytes | None = None,
    record: bool = True,
    max_fragment: int = 2**14,
) -> bytes:
    """A deterministic, browser-like ClientHello.

    Returns TLS records (``record=True``, fragmented at ``max_fragment`` bytes) or the bare
    Handshake message (``record=False``, e.g. for QUIC CRYPTO frames).  ``sni`` may be
    ``bytes`` to build an invalid name.  ``pq_key_share`` adds an X25519MLKEM768 share
    (1216 bytes), which makes the hello about 1,800 bytes; ``grease`` adds RFC 8701
    values; ``padding_to`` adds a padding extension (RFC 7685) up to that message size;
    ``ech`` adds an outer encrypted_client_hello extension.
    """
    seed = (sni if isinstance(sni, bytes) else (sni or "").encode()) + b"|" + ",".join(alpn).encode()
    exts = _client_extensions(seed, sni, alpn, versions, ech, pq_key_share, grease, quic_transport_parameters)
    suites = ([0x5A5A] if grease else []) + [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    legacy = 0x0303 if max(versions or (0x0303,)) >= 0x0303 else max(versions)
    head = _u16(legacy) + _filler(seed + b"random", 32) + _vec(_filler(seed + b"sid", 32), 1)
    head += _vec(b"".join(_u16(s) for s in suites), 2) + _vec(b"\x00", 1)

    def message(extra: list[bytes]) -> bytes:
        return build_handshake(HS_CLIENT_HELLO, head + _vec(b"".join(exts + extra), 2))

    msg = message([])
    if padding_to is not None and len(msg) < padding_to:
        pad = max(padding_to - len(msg) - 4, 0)
        msg = message([_ext(EXT_PADDING, bytes(pad))])
    if not record:
        return msg
    # RFC 8446 section 5.1: the first ClientHello's record version is commonly 0x0301
    return build_record(CT_HANDSHAKE, msg, version=0x0301, max_fragment=max_fragment)


def _client_extensions(seed: bytes, sni: str | bytes | None, alpn: tuple[str, ...], versions: tuple[int, ...],
                       ech: bool, pq_key_share: bool, grease: bool, quic_transport_parameters: bytes | None,
                       ) -> list[bytes]:
    """The extensions of :func:`build_client_hello`, in the order a Chromium-like browser sends them
    (without the padding extension, which depends on the size of the rest)."""
    exts: list[bytes] = []
    if grease:
        exts.append(_ext(0x0A0A, b""))
    if sni is not None:
        raw = sni if isinstance(sni, bytes) else sni.encode("ascii")
        exts.append(_ext(EXT_SERVER_NAME, _vec(_u8(0) + _vec(raw, 2), 2)))
    exts.append(_ext(EXT_EXTENDED_MASTER_SECRET, b""))
    exts.append(_ext(EXT_RENEGOTIATION_INFO, b"\x00"))
    exts.append(_ext(EXT_EC_POINT_FORMATS, _vec(b"\x00", 1)))
    exts.append(_ext(EXT_SESSION_TICKET, b""))
    exts.append(_ext(EXT_STATUS_REQUEST, b"\x01\x00\x00\x00\x00"))
    exts.append(_ext(EXT_SCT, b""))
    groups = ([0x2A2A] if grease else []) + ([GROUP_X25519MLKEM768] if pq_key_share else []) + [GROUP_X25519, GROUP_SECP256R1]
    exts.append(_ext(EXT_SUPPORTED_GROUPS, _vec(b"".join(_u16(g) for g in groups), 2)))
    if alpn:
        protos = ([b"\x1a\x1a"] if grease else []) + [p.encode("ascii") for p in alpn]
        exts.append(_ext(EXT_ALPN, _vec(b"".join(_vec(p, 1) for p in protos), 2)))
    sigalgs = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
    exts.append(_ext(EXT_SIGNATURE_ALGORITHMS, _vec(b"".join(_u16(s) for s in sigalgs), 2)))
    if 0x0304 in versions:
        exts.append(_ext(EXT_KEY_SHARE, _vec(_key_shares(seed, pq_key_share, grease), 2)))
        exts.append(_ext(EXT_PSK_KEY_EXCHANGE_MODES, _vec(b"\x01", 1)))
    if versions and versions != (0x0303,):
        vs = ([0x3A3A] if grease else []) + list(versions)
        exts.append(_ext(EXT_SUPPORTED_VERSIONS, _vec(b"".join(_u16(v) for v in vs), 1)))
    if quic_transport_parameters is not None:
        exts.append(_ext(EXT_QUIC_TRANSPORT_PARAMETERS, quic_transport_parameters))
    if ech:
        # RFC 9849 section 5: outer ECHClientHello: type 0, HPKE suite, config id, enc, payload
        payload = _u8(0) + _u16(0x0001) + _u16(0x0001) + _u8(0x42) + _vec(_filler(seed + b"enc", 32), 2)
        payload += _vec(_filler(seed + b"ech", 208), 2)
        exts.append(_ext(EXT_ECH, payload))
    if grease:
        exts.append(_ext(0x4A4A, b"\x00"))
    return exts


def _key_shares(seed: bytes, pq_key_share: bool, grease: bool) -> bytes:
    """The client_shares of a key_share extension (RFC 8446 section 4.2.8): a GREASE share, the
    post-quantum X25519MLKEM768 share, and X25519, each filled with bytes derived from ``seed``."""
    shares = b""
    if grease:
        shares += _u16(0x2A2A) + _vec(b"\x00", 2)
    if pq_key_share:
        shares += _u16(GROUP_X25519MLKEM768) + _vec(_filler(seed + b"mlkem", X25519MLKEM768_SHARE_LEN), 2)
    shares += _u16(GROUP_X25519) + _vec(_filler(seed + b"x25519", 32), 2)
    return shares


def build_server_hello(
    version: int,
    cipher_suite: int | None = None,
    alpn: str | None = None,
    *,
    hello_retry: bool = False,
    record: bool = True,
) -> bytes:
    """A ServerHello choosing ``version`` (TLS 1.3 via supported_versions, RFC 8446 section 4.1.3)."""
    if cipher_suite is None:
        cipher_suite = 0x1301 if version >= 0x0304 else 0xC02F
    exts = b""
    if version >= 0x0304:
        legacy = 0x0303
        if hello_retry:
            exts += _ext(EXT_KEY_SHARE, _u16(GROUP_X25519))
        else:
            exts += _ext(EXT_KEY_SHARE, _u16(GROUP_X25519) + _vec(_filler(b"server-share", 32), 2))
        exts += _ext(EXT_SUPPORTED_VERSIONS, _u16(version))
    else:
        legacy = version
        exts += _ext(EXT_RENEGOTIATION_INFO, b"\x00")
    if alpn is not None:
        exts += _ext(EXT_ALPN, _vec(_vec(alpn.encode("ascii"), 1), 2))
    random = HELLO_RETRY_RANDOM if hello_retry else _filler(b"server-random", 32)
    body = _u16(legacy) + random + _vec(_filler(b"server-sid", 32), 1) + _u16(cipher_suite) + b"\x00" + _vec(exts, 2)
    msg = build_handshake(HS_SERVER_HELLO, body)
    return build_record(CT_HANDSHAKE, msg) if record else msg


def build_alert(level: int, desc: int, version: int = 0x0303) -> bytes:
    """An Alert record (RFC 8446 section 6): level 1 warning / 2 fatal, then the description."""
    return build_record(CT_ALERT, bytes((level, desc)), version=version)


def build_certificate_record(der_cert: bytes, *, record: bool = True) -> bytes:
    """A TLS 1.2 Certificate handshake message holding one certificate (RFC 5246 section 7.4.2)."""
    msg = build_handshake(HS_CERTIFICATE, _vec(_vec(der_cert, 3), 3))
    return build_record(CT_HANDSHAKE, msg) if record else msg


def build_change_cipher_spec(version: int = 0x0303) -> bytes:
    return build_record(CT_CHANGE_CIPHER_SPEC, b"\x01", version=version)


def build_application_data(n: int, version: int = 0x0303) -> bytes:
    """An application_data record of ``n`` filler bytes (what encrypted records look like)."""
    return build_record(CT_APPLICATION_DATA, _filler(b"appdata", n), version=version)
