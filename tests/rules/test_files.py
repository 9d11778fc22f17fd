"""rules/files.py: the one reader of reference files' bytes and JSON, and the messages every loader gives."""

from __future__ import annotations

import pytest

from meshpcap.errors import RuleError
from meshpcap.rules.files import parse_json, read_file
from meshpcap.rules.m365 import load_m365_endpoints
from meshpcap.rules.update import UpdateError, import_m365_endpoints, import_service_tags


def test_read_file(tmp_path):
    (tmp_path / "a.json").write_bytes(b"[]")
    assert read_file(tmp_path / "a.json") == b"[]"
    with pytest.raises(RuleError) as exc:
        read_file(tmp_path / "none.json")
    assert str(exc.value) == f"{tmp_path / 'none.json'}: cannot read: No such file or directory"
    with pytest.raises(RuleError, match="cannot read: Is a directory"):
        read_file(tmp_path)


def test_parse_json():
    assert parse_json(b'{"a": [1]}', "x.json") == {"a": [1]}
    assert parse_json(b'\xef\xbb\xbf[2]', "x.json") == [2]  # the BOM PowerShell writes
    with pytest.raises(RuleError) as exc:
        parse_json(b"[1", "x.json")
    assert str(exc.value) == "x.json: not valid JSON: Expecting ',' delimiter: line 1 column 3 (char 2)"
    with pytest.raises(RuleError, match=r"^x.json: not valid JSON: 'utf-8' codec can't decode byte 0xff"):
        parse_json(b"[\xff]", "x.json")


@pytest.mark.parametrize("load,prefix", [
    (load_m365_endpoints, ""),
    (lambda p: import_m365_endpoints(p, version="2025043000"), "endpoints import failed: "),
    (lambda p: import_service_tags(p), "service-tag import failed: "),
])
def test_every_loader_names_the_unreadable_file(tmp_path, load, prefix):
    missing = tmp_path / "ServiceTags_Public_20251028.json"
    with pytest.raises((RuleError, UpdateError)) as exc:
        load(missing)
    assert str(exc.value) == f"{prefix}{missing}: cannot read: No such file or directory"
