"""Service-tag update against a local HTTP server: success, atomic replace, failures keep the old copy."""

from __future__ import annotations

import json

import pytest

from meshpcap.rules.servicetags import cached_service_tags, load_service_tags
from meshpcap.rules.update import UpdateError, find_download_link, update_service_tags

GOOD = json.dumps({"changeNumber": 376, "cloud": "Public", "values": [
    {"name": "AzureCloud", "id": "AzureCloud", "properties": {"changeNumber": 1, "addressPrefixes": ["20.0.0.0/10"]}},
]}).encode()


def page(link: str) -> bytes:
    name = link.rsplit("/", 1)[-1]
    return f'<html><a href="{link}" class="x">{name}</a> <p>ServiceTags_Public_20991231.json</p></html>'.encode()


def test_update_success(server, tmp_path):
    base, routes = server
    routes["/details"] = (200, page(f"{base}/download/7/1/D/ServiceTags_Public_20251103.json"))
    routes["/download/7/1/D/ServiceTags_Public_20251103.json"] = (200, GOOD)
    (tmp_path / "ServiceTags_Public_20251028.json").write_bytes(b"old")
    path, when, change = update_service_tags(f"{base}/details", cache=tmp_path, timeout=5)
    assert path == tmp_path / "ServiceTags_Public_20251103.json"
    assert (str(when), change) == ("2025-11-03", 376)
    assert path.read_bytes() == GOOD
    assert cached_service_tags(tmp_path) == path
    assert load_service_tags(path).contains("AzureCloud", "20.1.2.3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ServiceTags_Public_20251028.json", "ServiceTags_Public_20251103.json", "tag-index"]


def test_update_relative_link_and_new_cache_dir(server, tmp_path):
    base, routes = server
    routes["/a/details"] = (200, page("files/ServiceTags_Public_20251103.json"))
    routes["/a/files/ServiceTags_Public_20251103.json"] = (200, GOOD)
    path, _, _ = update_service_tags(f"{base}/a/details", cache=tmp_path / "new" / "cache", timeout=5)
    assert path.read_bytes() == GOOD


@pytest.mark.parametrize(
    "page_body, file_status, file_body, message",
    [
        (b"<html>nothing here</html>", 200, GOOD, "no ServiceTags_Public_YYYYMMDD.json link on {base}/details"),
        (None, 404, b"gone", "{base}/f/ServiceTags_Public_20251028.json: HTTP 404 Not Found"),
        (None, 200, b"{not json", "{base}/f/ServiceTags_Public_20251028.json: not valid JSON: "
         "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (None, 200, b'{"changeNumber": 1, "values": [{"name": "A", "properties": {"addressPrefixes": ["1.2.3.4/8"]}}]}',
         "{base}/f/ServiceTags_Public_20251028.json: values[0] ('A'): properties.addressPrefixes[0]: '1.2.3.4/8' has host bits set"),
    ],
)
def test_update_failure_keeps_old_file(server, tmp_path, page_body, file_status, file_body, message):
    base, routes = server
    routes["/details"] = (200, page_body or page(f"{base}/f/ServiceTags_Public_20251028.json"))
    routes["/f/ServiceTags_Public_20251028.json"] = (file_status, file_body)
    old = tmp_path / "ServiceTags_Public_20251028.json"
    old.write_bytes(b"old copy")
    with pytest.raises(UpdateError) as exc:
        update_service_tags(f"{base}/details", cache=tmp_path, timeout=5)
    assert str(exc.value) == "service-tag update failed: " + message.format(base=base)
    assert old.read_bytes() == b"old copy"
    assert [p.name for p in tmp_path.iterdir()] == [old.name]  # no temporary file left behind


def test_update_unreachable(tmp_path):
    with pytest.raises(UpdateError) as exc:
        update_service_tags("http://127.0.0.1:9/details", cache=tmp_path, timeout=2)
    assert str(exc.value).startswith("service-tag update failed: http://127.0.0.1:9/details: ")
    with pytest.raises(UpdateError) as exc:
        update_service_tags("file:///etc/passwd", cache=tmp_path)
    assert str(exc.value) == "service-tag update failed: file:///etc/passwd: not an http(s) URL"


def test_find_download_link_prefers_newest_absolute():
    page_text = (
        '<a href="https://download.microsoft.com/download/7/1/D/71D86715/ServiceTags_Public_20251020.json">old</a>'
        '<script>{"url":"https:\\/\\/download.microsoft.com\\/download\\/7\\/1\\/D\\/71D86715\\/ServiceTags_Public_20251027.json"}</script>'
        "<span>ServiceTags_Public_20251027.json</span>"
    )
    url, stamp = find_download_link(page_text, "https://www.microsoft.com/en-us/download/details.aspx?id=56519")
    assert (url, stamp) == (
        "https://download.microsoft.com/download/7/1/D/71D86715/ServiceTags_Public_20251027.json", "20251027")
