"""rules/files.py: the one reader of reference files' bytes and JSON, and the messages every loader gives."""

from __future__ import annotations

import sys

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


# ---------------------------------------------------------------- toml_document: tomllib's value, kept parsed

TOML = '''title = "t"
when = 2024-10-01
at = 2024-10-01T12:30:00.5+02:00
local = 2024-10-01T12:30:00
clock = 07:32:00
ratio = 0.1
big = inf
nested = { a = [1, 2.0, "x", true] }

[[rule]]
id = "r1"
ports = ["3478-3481", 443]
'''


@pytest.fixture
def toml_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "toml"


def test_toml_document_is_tomllibs_value_and_is_read_back_without_tomllib(toml_cache, monkeypatch):
    import tomllib

    from meshpcap.rules.files import toml_document

    expected = tomllib.loads(TOML)
    first = toml_document(TOML)
    assert first == expected and [type(first[k]) for k in expected] == [type(v) for v in expected.values()]
    assert len(list(toml_cache.glob("*.json"))) == 1
    monkeypatch.setitem(sys.modules, "tomllib", None)  # importing it now fails: the entry must serve
    again = toml_document(TOML)
    assert again == expected and again["at"].utcoffset() == expected["at"].utcoffset()
    assert again is not first


def test_toml_document_damaged_entries_and_errors(toml_cache):
    import tomllib

    from meshpcap.rules.files import TomlError, toml_document

    toml_document(TOML)
    (entry,) = toml_cache.glob("*.json")
    for damage in (b"", b"[1]", b'{"when": {"\\u0000toml": "date", "v": "nope"}}', b'{"x": {"\\u0000toml": "?", "v": 1}}'):
        entry.write_bytes(damage)
        assert toml_document(TOML) == tomllib.loads(TOML)  # parsed again, and written again
    assert toml_document(TOML) == tomllib.loads(TOML)
    with pytest.raises(TomlError) as exc:
        toml_document("a = [1")
    with pytest.raises(tomllib.TOMLDecodeError) as ref:
        tomllib.loads("a = [1")
    assert str(exc.value) == str(ref.value)
    nan = "x = nan\n"
    assert toml_document(nan)["x"] != toml_document(nan)["x"]  # NaN: read, never kept (it would not read back equal)
    assert len(list(toml_cache.glob("*.json"))) == 1
    tagged = '"\\u0000toml" = "date"\nv = "2024-01-01"\n'  # a table that looks like a tagged value is not kept
    assert toml_document(tagged) == tomllib.loads(tagged) == toml_document(tagged)
    assert len(list(toml_cache.glob("*.json"))) == 1


def test_toml_document_without_a_writable_cache(tmp_path, monkeypatch):
    from meshpcap.rules.files import toml_document

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(blocker))
    assert toml_document(TOML)["rule"][0]["ports"] == ["3478-3481", 443]
