"""HTTP/1.x request and response heads (RFC 9112): method, target, Host, CONNECT authority, status."""

from __future__ import annotations

import ipaddress
import re

from meshpcap._dataclass import dataclass
from meshpcap.decode.buffer import DecodeError
from meshpcap.decode.names import normalize_hostname

MAX_HEAD = 16 * 1024  # larger heads are treated as not HTTP (or hostile)

METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE")
_METHOD_PREFIXES = tuple(m.encode() + b" " for m in METHODS)

# RFC 9112 section 2.2: a recipient MAY recognise a lone LF as a line terminator.
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(r"\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 section 5.6.2
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]\Z")  # RFC 9112 section 2.3
_STATUS_LINE = re.compile(r"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: (.*))?\Z")  # RFC 9112 section 4


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request head.

    ``host`` comes from the Host header, port removed, normalised (IP literals kept as address
    text); ``None`` when absent, invalid or given twice with different values. For CONNECT,
    ``connect_host``/``connect_port`` come from the authority-form target.
    """

    method: str
    target: str
    version: str
    host: str | None
    connect_host: str | None
    connect_port: int | None
    header_bytes: int  # bytes of the head including the blank line that ends it
    headers: tuple[tuple[str, str], ...] = ()  # names lower-cased, values stripped, in order

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        return _first(self.headers, name)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A response head; header names are lower-cased, values stripped of surrounding whitespace."""

    version: str
    status: int
    reason: str
    header_bytes: int
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        return _first(self.headers, name)


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key == name:
            return value
    return None


def looks_like_http_request(first_bytes: bytes) -> bool:
    """True when the bytes start with a known method token followed by a space."""
    return bytes(first_bytes[:8]).startswith(_METHOD_PREFIXES)


def _split_host_port(authority: str) -> tuple[str, str | None]:
    """Split ``host[:port]`` or ``[v6]:port`` (RFC 3986 section 3.2.2); the port is returned as text."""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return authority, None
        host, rest = authority[1:close], authority[close + 1 :]
        if rest.startswith(":"):
            return host, rest[1:]
        return host, None if not rest else rest
    if authority.count(":") == 1:
        host, _, port = authority.partition(":")
        return host, port
    return authority, None


def _host_text(host: str) -> str | None:
    """Normalised host name, or the address text of an IP literal; ``None`` when invalid."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    return normalize_hostname(host)


def _port(text: str | None) -> int | None:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    value = int(text)
    return value if value <= 65535 else None


def _find_head(stream: bytes, prefix_ok: bool) -> tuple[bytes, int] | None:
    """(head without the terminating blank line, total head length), or ``None`` when incomplete."""
    if not prefix_ok:
        raise DecodeError("not an HTTP message")
    match = _HEAD_END.search(stream, 0, MAX_HEAD + 4)
    if match is None:
        if len(stream) > MAX_HEAD:
            raise DecodeError(f"HTTP head longer than {MAX_HEAD} bytes")
        return None
    if match.end() > MAX_HEAD:
        raise DecodeError(f"HTTP head longer than {MAX_HEAD} bytes")
    return stream[: match.start()], match.end()


def _header_lines(lines: list[str]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            # RFC 9112 section 5.2 obsolete line folding: replace with a space.
            if not headers:
                raise DecodeError("HTTP header continuation line before any header")
            name, value = headers[-1]
            headers[-1] = (name, (value + " " + line.strip()).strip())
            continue
        name, sep, value = line.partition(":")
        # RFC 9112 section 5.1: no whitespace between the field name and the colon.
        if not sep or not _TOKEN.match(name):
            raise DecodeError(f"malformed HTTP header line {line[:40]!r}")
        headers.append((name.lower(), value.strip(" \t")))
    return headers


def read_request_head(stream: bytes) -> HttpRequest | None:
    """Read the request head at the start of ``stream``.

    Returns ``None`` while the bytes are a valid prefix whose head is not complete yet (no
    blank line and under 16 KiB); raises :class:`DecodeError` for something that is not an
    HTTP/1.x request, a head over 16 KiB, or a malformed head.
    """
    data = bytes(stream)
    prefix_ok = looks_like_http_request(data) or any(p.startswith(data) for p in _METHOD_PREFIXES)
    found = _find_head(data, prefix_ok)
    if found is None:
        return None
    head, size = found
    text = head.decode("latin-1")  # RFC 9112 section 2.2: parse as a superset of US-ASCII
    lines = _LINE_SPLIT.split(text)
    # RFC 9112 section 3: request-line = method SP request-target SP HTTP-version.
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] not in METHODS or not parts[1] or not _VERSION.match(parts[2]):
        raise DecodeError(f"malformed HTTP request line {lines[0][:60]!r}")
    method, target, version = parts
    if any(c <= " " or c == "\x7f" for c in target):
        raise DecodeError("HTTP request target contains whitespace or control characters")
    headers = _header_lines(lines[1:])

    # RFC 9112 section 3.2: a request with more than one Host header is invalid; keep no host then.
    host_values = {value for name, value in headers if name == "host"}
    host = None
    if len(host_values) == 1:
        host = _host_text(_split_host_port(host_values.pop())[0])

    connect_host = connect_port = None
    if method == "CONNECT":
        # RFC 9112 section 3.2.3: authority-form = uri-host ":" port.
        raw_host, raw_port = _split_host_port(target)
        connect_host = _host_text(raw_host)
        connect_port = _port(raw_port)
    return HttpRequest(method, target, version, host, connect_host, connect_port, size, tuple(headers))


def read_response_head(stream: bytes) -> HttpResponse | None:
    """Read the response head at the start of ``stream``; ``None`` / :class:`DecodeError` as for requests."""
    data = bytes(stream)
    found = _find_head(data, data.startswith(b"HTTP/") or b"HTTP/".startswith(data))
    if found is None:
        return None
    head, size = found
    lines = _LINE_SPLIT.split(head.decode("latin-1"))
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        raise DecodeError(f"malformed HTTP status line {lines[0][:60]!r}")
    version, status, reason = match.group(1), int(match.group(2)), match.group(3) or ""
    if status < 100:
        raise DecodeError(f"HTTP status {status} out of range")
    return HttpResponse(version, status, reason.strip(), size, tuple(_header_lines(lines[1:])))


# --------------------------------------------------------------------------- one connection's exchanges

MAX_EXCHANGES = 8  # request/response pairs read on one connection (a proxy's 407, the retry with credentials ...)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request on a connection and its final response (``None`` when it is not in the bytes)."""

    request: HttpRequest
    response: HttpResponse | None
    interim: tuple[int, ...] = ()  # 1xx statuses before the final response (RFC 9110 section 15.2)


@dataclass(frozen=True, slots=True)
class Conversation:
    """The requests and responses at the start of one HTTP/1.x connection, in order.

    ``tunnel_client``/``tunnel_server`` are the offsets where the tunnel's bytes begin in each
    stream when a CONNECT was answered 2xx (RFC 9110 section 9.3.6: the connection is a tunnel
    from then on), else ``None``."""

    exchanges: tuple[Exchange, ...]
    tunnel_client: int | None = None
    tunnel_server: int | None = None

    @property
    def final(self) -> Exchange | None:
        """The last exchange that got a response: what became of the connection."""
        for ex in reversed(self.exchanges):
            if ex.response is not None:
                return ex
        return None


def _body_length(headers, stream: bytes, start: int, request: bool) -> int | None:
    """Bytes of the message body at ``stream[start:]`` (RFC 9112 section 6.3): chunked, Content-Length,
    else none for a request (item 6) and the rest of the connection for a response (item 8).
    ``None`` when the body is cut or runs to the end of the connection."""
    te = _first(headers, "transfer-encoding")
    if te is not None:
        if te.lower().replace(" ", "").split(",")[-1] != "chunked":
            return None  # read until the connection closes: nothing after it
        return _chunked_length(stream, start)
    cl = _first(headers, "content-length")
    if cl is None:
        return 0 if request else None
    if not (cl.isascii() and cl.isdigit()) or len(cl) > 15:
        return None
    n = int(cl)
    return n if start + n <= len(stream) else None


def _chunked_length(stream: bytes, start: int) -> int | None:
    """Length of a chunked body (RFC 9112 section 7.1) at ``stream[start:]``, trailers included."""
    pos = start
    while True:
        eol = stream.find(b"\r\n", pos, pos + 1024)
        if eol < 0:
            return None
        size_text = stream[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        pos = eol + 2
        if size == 0:
            end = _HEAD_END.search(b"\r\n" + stream[pos : pos + MAX_HEAD])
            if end is None:
                return None
            return pos + end.end() - 2 - start
        pos += size + 2
        if pos > len(stream):
            return None


def read_conversation(client: bytes, server: bytes, limit: int = MAX_EXCHANGES) -> Conversation:
    """Walk the requests in the client's stream and the responses in the server's, pairing them in order
    (HTTP/1.1 answers requests in the order they came, RFC 9112 section 9.3.2), skipping bodies, up to
    the tunnel a 2xx to CONNECT opens.  Stops quietly where a head is cut or malformed or a body cannot
    be delimited; raises :class:`DecodeError` only when the client's stream is no HTTP request at all."""
    client, server = bytes(client), bytes(server)
    exchanges: list[Exchange] = []
    cpos = spos = 0
    while len(exchanges) < limit and cpos < len(client):
        try:
            req = read_request_head(client[cpos:])
        except DecodeError:
            if not exchanges:
                raise
            break
        if req is None:
            break
        cstart = cpos + req.header_bytes
        body = 0 if req.method == "CONNECT" else _body_length(req.headers, client, cstart, True)
        resp, interim, spos = _final_response(server, spos, req.method)
        exchanges.append(Exchange(req, resp, interim))
        if resp is None:
            break
        if req.method == "CONNECT" and 200 <= resp.status < 300:
            return Conversation(tuple(exchanges), cstart, spos)
        if body is None or spos is None:
            break
        cpos = cstart + body
    return Conversation(tuple(exchanges))


def _final_response(server: bytes, spos: int | None, method: str) -> tuple[HttpResponse | None, tuple[int, ...], int | None]:
    """(final response, 1xx statuses before it, offset after it and its body or ``None`` when it cannot be told)."""
    interim: list[int] = []
    while spos is not None and spos < len(server):
        try:
            resp = read_response_head(server[spos:])
        except DecodeError:
            return None, tuple(interim), None
        if resp is None:
            return None, tuple(interim), None
        start = spos + resp.header_bytes
        if 100 <= resp.status < 200 and resp.status != 101:
            interim.append(resp.status)
            spos = start
            continue
        if method == "HEAD" or resp.status in (101, 204, 304) or (method == "CONNECT" and 200 <= resp.status < 300):
            return resp, tuple(interim), start  # no body (RFC 9112 section 6.3 items 1 and 2)
        n = _body_length(resp.headers, server, start, False)
        return resp, tuple(interim), None if n is None else start + n
    return None, tuple(interim), None
