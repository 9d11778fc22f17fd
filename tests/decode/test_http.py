"""Tests for meshpcap.decode.http: request/response heads, Host and CONNECT authority, limits, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.decode.buffer import DecodeError
from meshpcap.decode.http import (
    MAX_HEAD,
    HttpRequest,
    HttpResponse,
    looks_like_http_request,
    read_request_head,
    read_response_head,
)

CONNECT = (
    b"CONNECT teams.microsoft.com:443 HTTP/1.1\r\n"
    b"Host: teams.microsoft.com:443\r\n"
    b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Teams/1.6\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"\r\n"
)
GET = (
    b"GET /api/v1/config?x=1 HTTP/1.1\r\n"
    b"Host: Mesh.Microsoft.COM\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
    b"body-after-head"
)
RESPONSE_200 = (
    b"HTTP/1.1 200 Connection established\r\n"
    b"Proxy-Agent: Zscaler/6.2\r\n"
    b"Via: 1.1 proxy.corp\r\n"
    b"\r\n"
)
RESPONSE_407 = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b"Proxy-Authenticate: Negotiate\r\n"
    b"Proxy-Authenticate: NTLM\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_connect_request() -> None:
    req = read_request_head(CONNECT)
    assert req == HttpRequest("CONNECT", "teams.microsoft.com:443", "HTTP/1.1", "teams.microsoft.com", "teams.microsoft.com", 443, len(CONNECT),
                              (("host", "teams.microsoft.com:443"),
                               ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Teams/1.6"),
                               ("proxy-connection", "keep-alive")))
    assert req.header("Proxy-Connection") == "keep-alive" and req.header("proxy-authorization") is None


def test_get_request_host_normalised_and_header_bytes() -> None:
    req = read_request_head(GET)
    assert req is not None
    assert (req.method, req.target, req.host, req.connect_host, req.connect_port) == ("GET", "/api/v1/config?x=1", "mesh.microsoft.com", None, None)
    assert req.header_bytes == GET.index(b"body")


@pytest.mark.parametrize(
    "target,host,port",
    [
        ("[2603:1063::1]:443", "2603:1063::1", 443),
        ("[::1]:3478", "::1", 3478),
        ("52.113.1.2:3478", "52.113.1.2", 3478),
        ("WORLD.tr.teams.microsoft.com.:443", "world.tr.teams.microsoft.com", 443),
        ("bad_host!.com:443", None, 443),
        ("host.example:99999", "host.example", None),
        ("host.example", "host.example", None),
        ("[::1", None, None),
    ],
)
def test_connect_authority_forms(target: str, host: str | None, port: int | None) -> None:
    req = read_request_head(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert req is not None and req.method == "CONNECT"
    assert (req.connect_host, req.connect_port) == (host, port)
    assert req.host is None


@pytest.mark.parametrize(
    "host_header,expected",
    [
        ("example.com:8080", "example.com"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("10.0.0.1", "10.0.0.1"),
        ("exa mple.com", None),
        ("", None),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_host_header_forms(host_header: str, expected: str | None) -> None:
    req = read_request_head(f"GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())
    assert req is not None and req.host == expected


def test_duplicate_conflicting_host_headers_give_none() -> None:
    req = read_request_head(b"GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n")
    assert req is not None and req.host is None
    req = read_request_head(b"GET / HTTP/1.1\r\nHost: a.com\r\nhost: a.com\r\n\r\n")
    assert req is not None and req.host == "a.com"


def test_non_ascii_host_is_none() -> None:
    req = read_request_head("GET / HTTP/1.1\r\nHost: bücher.example\r\n\r\n".encode("utf-8"))
    assert req is not None and req.host is None


def test_bare_lf_line_endings_accepted() -> None:
    req = read_request_head(b"GET / HTTP/1.0\nHost: a.example\n\nrest")
    assert req is not None and req.version == "HTTP/1.0" and req.host == "a.example" and req.header_bytes == 32


def test_obs_fold_joined() -> None:
    resp = read_response_head(b"HTTP/1.1 200 OK\r\nX-Long: one\r\n  two\r\n\r\n")
    assert resp is not None and resp.header("x-long") == "one two"


def test_responses() -> None:
    ok = read_response_head(RESPONSE_200)
    assert ok == HttpResponse("HTTP/1.1", 200, "Connection established", len(RESPONSE_200), (("proxy-agent", "Zscaler/6.2"), ("via", "1.1 proxy.corp")))
    denied = read_response_head(RESPONSE_407)
    assert denied is not None and denied.status == 407 and denied.reason == "Proxy Authentication Required"
    assert [v for k, v in denied.headers if k == "proxy-authenticate"] == ["Negotiate", "NTLM"]
    assert denied.header("Content-Length") == "0" and denied.header("missing") is None
    bare = read_response_head(b"HTTP/1.1 204\r\n\r\n")
    assert bare is not None and bare.status == 204 and bare.reason == ""


@pytest.mark.parametrize("raw", [b"", b"G", b"GET", b"GET ", b"CONN", b"CONNECT teams.microsoft.com:44", b"GET / HTTP/1.1\r\nHost: a\r\n"])
def test_incomplete_request_is_none(raw: bytes) -> None:
    assert read_request_head(raw) is None


@pytest.mark.parametrize("raw", [b"H", b"HTTP/", b"HTTP/1.1 200 OK\r\n"])
def test_incomplete_response_is_none(raw: bytes) -> None:
    assert read_response_head(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello
        b"GETX / HTTP/1.1\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"BREW / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded-first\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_request_raises(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        read_request_head(raw)


@pytest.mark.parametrize("raw", [b"HTTX/1.1 200 OK\r\n\r\n", b"HTTP/1.1 20 OK\r\n\r\n", b"HTTP/1.1 099 x\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"])
def test_malformed_response_raises(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        read_response_head(raw)


def test_head_size_limit() -> None:
    big = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * MAX_HEAD
    with pytest.raises(DecodeError, match="16384"):
        read_request_head(big)
    with pytest.raises(DecodeError):
        read_request_head(big + b"\r\n\r\n")
    assert read_request_head(big[: MAX_HEAD - 10]) is None
    fits = b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_HEAD - 27) + b"\r\n\r\n"
    assert len(fits) == MAX_HEAD
    req = read_request_head(fits)
    assert req is not None and req.header_bytes == MAX_HEAD
    with pytest.raises(DecodeError):
        read_response_head(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 3000)


def test_looks_like_http_request() -> None:
    for method in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"):
        assert looks_like_http_request(method.encode() + b" /")
    assert not looks_like_http_request(b"GET")
    assert not looks_like_http_request(b"GETS /")
    assert not looks_like_http_request(b"\x16\x03\x01")
    assert not looks_like_http_request(b"")


@pytest.mark.parametrize("message", [CONNECT, GET[: GET.index(b"body")]])
def test_request_truncation_at_every_length(message: bytes) -> None:
    for i in range(len(message)):
        assert read_request_head(message[:i]) is None
    assert read_request_head(message) is not None


def test_response_truncation_at_every_length() -> None:
    for i in range(len(RESPONSE_407)):
        assert read_response_head(RESPONSE_407[:i]) is None
    assert read_response_head(RESPONSE_407) is not None


@settings(max_examples=300, deadline=None)
@given(which=st.sampled_from([CONNECT, GET]), cut=st.integers(0, 140), tail=st.binary(max_size=60))
def test_fuzz_request_prefix_plus_random(which: bytes, cut: int, tail: bytes) -> None:
    try:
        result = read_request_head(which[:cut] + tail)
    except DecodeError:
        return
    assert result is None or isinstance(result, HttpRequest)


@settings(max_examples=300, deadline=None)
@given(cut=st.integers(0, len(RESPONSE_407)), tail=st.binary(max_size=60))
def test_fuzz_response_prefix_plus_random(cut: int, tail: bytes) -> None:
    try:
        result = read_response_head(RESPONSE_407[:cut] + tail)
    except DecodeError:
        return
    assert result is None or isinstance(result, HttpResponse)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_fuzz_text_after_request_line(text: str) -> None:
    raw = b"CONNECT " + text.encode("utf-8", "surrogatepass") + b" HTTP/1.1\r\nHost: " + text.encode("utf-8", "surrogatepass") + b"\r\n\r\n"
    try:
        read_request_head(raw)
    except DecodeError:
        pass


# --------------------------------------------------------------------------- a connection's exchanges

from meshpcap.decode.http import read_conversation  # noqa: E402

X_CONNECT = b"CONNECT teams.microsoft.com:443 HTTP/1.1\r\nHost: teams.microsoft.com:443\r\n\r\n"
X_CONNECT_AUTH = (b"CONNECT teams.microsoft.com:443 HTTP/1.1\r\nHost: teams.microsoft.com:443\r\n"
                b"Proxy-Authorization: Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnagMDAu\r\n\r\n")
BODY = b"<html>auth required</html>"
R407 = b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Negotiate\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY), BODY)
R407_CHUNKED = (b"HTTP/1.1 407 Proxy Authentication Required\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(BODY), BODY))
R200 = b"HTTP/1.1 200 Connection established\r\n\r\n"
TLS_BYTES = b"\x16\x03\x01\x00\x05hello"


@pytest.mark.parametrize("challenge", [R407, R407_CHUNKED])
def test_proxy_authentication_then_tunnel(challenge):
    conv = read_conversation(X_CONNECT + X_CONNECT_AUTH + TLS_BYTES, challenge + R200 + TLS_BYTES)
    assert [(ex.request.method, ex.response.status) for ex in conv.exchanges] == [("CONNECT", 407), ("CONNECT", 200)]
    assert conv.exchanges[1].request.header("proxy-authorization").startswith("Negotiate ")
    assert conv.final.response.status == 200
    assert conv.tunnel_client == len(X_CONNECT + X_CONNECT_AUTH) and conv.tunnel_server == len(challenge + R200)


def test_proxy_authentication_refused_twice():
    conv = read_conversation(X_CONNECT + X_CONNECT_AUTH, R407 + R407)
    assert [ex.response.status for ex in conv.exchanges] == [407, 407]
    assert conv.tunnel_client is None and conv.final.response.status == 407


def test_response_missing_or_cut():
    conv = read_conversation(X_CONNECT + X_CONNECT_AUTH, R407[:-3])  # the 407's body is cut: the reply is still known
    assert [ex.response.status if ex.response else None for ex in conv.exchanges] == [407]
    conv = read_conversation(X_CONNECT, b"")
    assert [ex.response for ex in conv.exchanges] == [None] and conv.final is None


def test_interim_responses_and_pipelined_requests():
    get = b"POST /a HTTP/1.1\r\nHost: x.example\r\nContent-Length: 3\r\n\r\nabc"
    get2 = b"GET /b HTTP/1.1\r\nHost: x.example\r\n\r\n"
    r1 = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    r2 = b"HTTP/1.1 200 OK\r\n\r\nbody until close"  # no length: runs to the end of the connection
    conv = read_conversation(get + get2 + get2, r1 + r2)
    assert [(ex.request.target, ex.interim, ex.response.status) for ex in conv.exchanges] == [
        ("/a", (100,), 204), ("/b", (), 200)]  # nothing after a body that runs to the close


def test_conversation_errors():
    with pytest.raises(DecodeError):
        read_conversation(b"HELLO there\r\n\r\n", b"")
    conv = read_conversation(X_CONNECT + b"GARBAGE\r\n\r\n", R407)  # a later bad head ends the walk quietly
    assert len(conv.exchanges) == 1
