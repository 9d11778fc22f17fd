"""Fetch the newest Azure Service Tags file (SPEC 5) into the cache, atomically; old copies survive failures."""

from __future__ import annotations

import html
import os
import re
import tempfile
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from urllib.parse import urljoin

from meshpcap.errors import MeshpcapError, RuleError
from meshpcap.rules.servicetags import cache_dir, file_date, parse_service_tags

DOWNLOAD_PAGE = "https://www.microsoft.com/en-us/download/details.aspx?id=56519"
MAX_PAGE = 4 << 20  # the download page is ~100 kB
MAX_FILE = 64 << 20  # the JSON is ~4 MB
_LINK = re.compile(r"""(?:https?:)?[^"'\s<>()]*?ServiceTags_Public_(\d{8})\.json""")
_HREF = re.compile(r"""href\s*=\s*["']([^"'<>]*?ServiceTags_Public_(\d{8})\.json)["']""", re.IGNORECASE)


class UpdateError(MeshpcapError):
    """The service-tag update failed; the cached copy (if any) is unchanged."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"service-tag update failed: {problem}")


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


def _fetch(url: str, timeout: float, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "meshpcap (service-tag update)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URLs only
            body = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise UpdateError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise UpdateError(f"{url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{url}: {exc}") from None
    if len(body) > limit:
        raise UpdateError(f"{url}: larger than {limit >> 20} MB")
    return body


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
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ServiceTags-", suffix=".part", dir=folder)
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
        raise UpdateError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return target, tags.date, tags.change_number
