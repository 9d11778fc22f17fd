"""Fetch the newest Azure Service Tags file and Microsoft 365 endpoints (SPEC 5) into the cache, or import
copies made by hand (for networks without internet access); every write is atomic and validated first,
so a failed or malformed download keeps the old copy."""

from __future__ import annotations

import hashlib
import html
import os
import uuid
import re
import tempfile
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from urllib.parse import urljoin

from meshpcap.errors import MeshpcapError, RuleError
from meshpcap.rules.files import parse_json, read_file
from meshpcap.rules.m365 import CACHE_NAME, cached_m365_endpoints, parse_m365_endpoints, version_from_name
from meshpcap.rules.servicetags import FILE_NAME, cache_dir, file_date, parse_service_tags, store_index

DOWNLOAD_PAGE = "https://www.microsoft.com/en-us/download/details.aspx?id=56519"
MAX_PAGE = 4 << 20  # the download page is ~100 kB
MAX_FILE = 64 << 20  # the JSON is ~4 MB
_LINK = re.compile(r"""(?:https?:)?[^"'\s<>()]*?ServiceTags_Public_(\d{8})\.json""")
_HREF = re.compile(r"""href\s*=\s*["']([^"'<>]*?ServiceTags_Public_(\d{8})\.json)["']""", re.IGNORECASE)


class UpdateError(MeshpcapError):
    """The update or import failed; the cached copy (if any) is unchanged."""

    def __init__(self, problem: str, what: str = "service-tag update") -> None:
        self.problem = problem
        super().__init__(f"{what} failed: {problem}")


def find_download_link(page: str, page_url: str) -> tuple[str, str]:
    """(absolute URL, YYYYMMDD) of the newest ServiceTags_Public_YYYYMMDD.json link on the page."""
    text = html.unescape(page).replace("\\/", "/")  # links also appear JSON-escaped in scripts
    # rank: absolute URL (the real download link) > href attribute > bare file name in the text
    found = [(2 if "://" in m.group(0) else 0, m.group(1), m.group(0)) for m in _LINK.finditer(text)]
    found += [(1, m.group(2), m.group(1)) for m in _HREF.finditer(text)]
    if not found:
        raise UpdateError(f"no ServiceTags_Public_YYYYMMDD.json link on {page_url}")
    _rank, stamp, link = max(found)
    return urljoin(page_url, link), stamp


def _fetch(url: str, timeout: float, limit: int, what: str = "service-tag update") -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": f"meshpcap ({what})"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URLs only
            body = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise UpdateError(f"{url}: HTTP {exc.code} {exc.reason}", what) from None
    except urllib.error.URLError as exc:
        raise UpdateError(f"{url}: {exc.reason}", what) from None
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{url}: {exc}", what) from None
    if len(body) > limit:
        raise UpdateError(f"{url}: larger than {limit >> 20} MB", what)
    return body


def _store(folder: Path, name: str, body: bytes, what: str) -> Path:
    """Write ``body`` as ``folder/name`` atomically (a temporary file in the same folder, then os.replace)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            target = folder / name
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UpdateError(f"cannot write to {folder}: {exc.strerror or exc}", what) from None
    return target


def update_service_tags(
    page_url: str = DOWNLOAD_PAGE, cache: str | Path | None = None, timeout: float = 30,
) -> tuple[Path, date | None, int]:
    """Download the newest service-tag file into the cache; returns (path, date, changeNumber).

    The file is validated like ``load_service_tags`` before it replaces anything (``os.replace``
    of a temporary file in the same directory); on any failure UpdateError is raised and the
    cache is left as it was.
    """
    if not page_url.startswith(("http://", "https://")):
        raise UpdateError(f"{page_url}: not an http(s) URL")
    folder = Path(cache) if cache is not None else cache_dir()
    page = _fetch(page_url, timeout, MAX_PAGE).decode("utf-8", "replace")
    url, stamp = find_download_link(page, page_url)
    if not url.startswith(("http://", "https://")):
        raise UpdateError(f"{url}: not an http(s) URL")
    body = _fetch(url, timeout, MAX_FILE)
    name = f"ServiceTags_Public_{stamp}.json"
    try:
        tags = parse_service_tags(body, url, file_date(name))
    except RuleError as exc:
        raise UpdateError(str(exc)) from None
    target = _store(folder, name, body, "service-tag update")
    store_index(tags, hashlib.sha256(body).hexdigest(), folder)  # the first analyze needs no JSON parse
    return target, tags.date, tags.change_number


def import_service_tags(path: str | Path, cache: str | Path | None = None,
                        snapshot: date | None = None) -> tuple[Path, date | None, int]:
    """Copy a service-tag file made by hand into the cache after validating it; (path, date, changeNumber).

    The date comes from the file name (``ServiceTags_Public_YYYYMMDD.json``) or ``snapshot``.
    """
    what = "service-tag import"
    src = Path(path)
    stamp = snapshot or file_date(src)
    if stamp is None:
        raise UpdateError(f"{src}: the name has no date (ServiceTags_Public_YYYYMMDD.json): give --date YYYY-MM-DD", what)
    try:
        body = read_file(src)
        tags = parse_service_tags(body, str(src), stamp)
    except RuleError as exc:
        raise UpdateError(str(exc), what) from None
    name = f"ServiceTags_Public_{stamp:%Y%m%d}.json"
    assert FILE_NAME.fullmatch(name)
    folder = Path(cache) if cache is not None else cache_dir()
    target = _store(folder, name, body, what)
    store_index(tags, hashlib.sha256(body).hexdigest(), folder)  # the first analyze needs no JSON parse
    return target, stamp, tags.change_number


# -- Microsoft 365 endpoints web service (SPEC 4b, 5) -------------------------------------------

ENDPOINTS_SERVICE = "https://endpoints.office.com"
MAX_ENDPOINTS = 16 << 20  # the worldwide list is ~100 kB
_VERSION_TEXT = re.compile(r"\d{10}\Z")


def client_request_id(cache: str | Path | None = None) -> str:
    """The GUID the web service asks every machine to send (one per machine, kept in the cache)."""
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / "clientrequestid"
    try:
        text = path.read_text(encoding="ascii").strip()
        return str(uuid.UUID(text))
    except (OSError, ValueError):
        pass
    guid = str(uuid.uuid4())
    try:
        _store(folder, "clientrequestid", guid.encode() + b"\n", "endpoints update")
    except UpdateError:
        pass  # a read-only cache still gets an answer; the next run asks with a new GUID
    return guid


def _latest_version(body: bytes, url: str, instance: str = "Worldwide") -> str:
    what = "endpoints update"
    try:
        doc = parse_json(body, url)
    except RuleError as exc:
        raise UpdateError(str(exc), what) from None
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if isinstance(item, dict) and str(item.get("instance", "")).lower() == instance.lower():
            latest = item.get("latest")
            if isinstance(latest, str) and _VERSION_TEXT.match(latest):
                return latest
            raise UpdateError(f"{url}: 'latest' is not a version (YYYYMMDDNN): {latest!r}", what)
    raise UpdateError(f"{url}: no version for instance {instance}", what)


def check_endpoints_shape(body: bytes, src: str, what: str = "endpoints update") -> int:
    """Validate an endpoints/worldwide document; the number of Teams (Skype) endpoint sets in it."""
    try:
        records = parse_m365_endpoints(body, src)
    except RuleError as exc:
        raise UpdateError(str(exc), what) from None
    teams = sum(1 for r in records if r.service_area == "Skype")
    if not teams:
        raise UpdateError(f"{src}: no Microsoft Teams (serviceArea Skype) endpoint sets in it", what)
    return teams


def update_m365_endpoints(service: str = ENDPOINTS_SERVICE, cache: str | Path | None = None, timeout: float = 30,
                          force: bool = False) -> tuple[Path, str, bool]:
    """Ask the endpoints web service for its version and download the worldwide list into the cache.

    Returns (path, version, downloaded): when the cache already holds the latest version nothing
    is downloaded (the service asks clients to check at most hourly and to fetch only on change)
    unless ``force``. The download is validated before it replaces anything.
    """
    what = "endpoints update"
    if not service.startswith(("http://", "https://")):
        raise UpdateError(f"{service}: not an http(s) URL", what)
    folder = Path(cache) if cache is not None else cache_dir()
    guid = client_request_id(folder)
    base = service.rstrip("/")
    version_url = f"{base}/version/Worldwide?clientrequestid={guid}"
    latest = _latest_version(_fetch(version_url, timeout, MAX_PAGE, what), version_url)
    have = cached_m365_endpoints(folder)
    if have is not None and have[1] == latest and not force:
        return have[0], latest, False
    url = f"{base}/endpoints/worldwide?clientrequestid={guid}"
    body = _fetch(url, timeout, MAX_ENDPOINTS, what)
    check_endpoints_shape(body, url, what)
    name = f"m365-endpoints-worldwide-{latest}.json"
    assert CACHE_NAME.fullmatch(name)
    return _store(folder, name, body, what), latest, True


def import_m365_endpoints(path: str | Path, version: str | None = None,
                          cache: str | Path | None = None) -> tuple[Path, str]:
    """Copy an endpoints/worldwide file made by hand into the cache after validating it; (path, version).

    The version (YYYYMMDDNN) comes from ``version`` or the file name.
    """
    what = "endpoints import"
    src = Path(path)
    v = version or version_from_name(src)
    if v is None or not _VERSION_TEXT.match(v):
        raise UpdateError(f"{src}: no endpoints version (YYYYMMDDNN) in the name: give --version", what)
    try:
        body = read_file(src)
    except RuleError as exc:
        raise UpdateError(str(exc), what) from None
    check_endpoints_shape(body, str(src), what)
    folder = Path(cache) if cache is not None else cache_dir()
    return _store(folder, f"m365-endpoints-worldwide-{v}.json", body, what), v
