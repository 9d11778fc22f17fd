"""The binary service-tag index (rules/tagcache.py): the same answers as the JSON, invalidation, damage."""

from __future__ import annotations

import ipaddress
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.rules import tagcache
from meshpcap.rules.servicetags import load_service_tags


def doc():
    values = [
        ("AzureCloud", ["20.0.0.0/10", "52.112.0.0/14", "13.64.0.0/11", "2603:1000::/24", "2a01:111::/32"]),
        ("AzureCloud.westeurope", ["20.50.0.0/16", "52.113.0.0/16", "2603:1020:200::/46", "20.50.0.0/16"]),
        ("Storage", ["20.50.1.0/24", "20.50.1.0/25", "13.64.5.6/32", "2603:1020:200:8::/64"]),
        ("Empty", []),
        ("Sql", ["13.64.0.0/11", "40.0.0.0/8", "2a01:111:f400::/48"]),
    ]
    return {"changeNumber": 11, "cloud": "Public", "values": [
        {"name": n, "id": n, "properties": {"changeNumber": i + 1, "addressPrefixes": p}} for i, (n, p) in enumerate(values)]}


def write(path, document):
    path.write_text(json.dumps(document))
    return path


def loaded_twice(path, cache):
    """(from JSON, from the cache), checking that the second really came from the cache."""
    parsed = load_service_tags(path, cache=False)
    first = load_service_tags(path, cache=cache)
    assert first._arrays is None  # a miss: parsed, then written
    cached = load_service_tags(path, cache=cache)
    assert cached._arrays is not None and isinstance(cached.tags, tagcache.LazyTags)
    return parsed, cached


def same(a, b, addresses):
    assert (a.file, a.date, a.change_number, a.cloud) == (b.file, b.date, b.change_number, b.cloud)
    assert list(a.tags) == list(b.tags) and dict(a.tags) == dict(b.tags) and a.tags == b.tags
    assert a.tag_change_numbers == b.tag_change_numbers
    assert len(a.index) == len(b.index)
    assert a.tags_for_many(addresses) == b.tags_for_many(addresses)
    for tag in a.tags:
        assert a.counts(tag) == b.counts(tag)
        assert a.membership(tag, addresses).tolist() == b.membership(tag, addresses).tolist()
        assert len(a.tag_index(tag)) == len(b.tag_index(tag))
        v4 = [int(ipaddress.IPv4Address(x)) for x in addresses if ":" not in x]
        assert a.tag_index(tag).contains_v4(np.array(v4, dtype=np.uint32)).tolist() == \
            b.tag_index(tag).contains_v4(np.array(v4, dtype=np.uint32)).tolist()


_NETS = [ipaddress.ip_network(p) for v in doc()["values"] for p in v["properties"]["addressPrefixes"]]
near = st.builds(lambda n, k: str(n.network_address + (k % n.num_addresses)), st.sampled_from(_NETS), st.integers(0, 2**128))
edge = st.builds(lambda n, d: str(ipaddress.ip_address(max(0, min(int(n.network_address) + d, 2**(n.max_prefixlen) - 1))) if n.version == 4
                 else ipaddress.IPv6Address(max(0, int(n.network_address) + d))), st.sampled_from(_NETS), st.integers(-2, 2))
anywhere = st.one_of(st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i))),
                     st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i))))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagcache")
    return loaded_twice(write(folder / "ServiceTags_Public_20251028.json", doc()), folder / "cache")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(near, edge, anywhere), min_size=1, max_size=30))
def test_same_answers_from_cache_and_json(pair, addresses):
    same(*pair, addresses)


def test_unknown_tag_and_lazy_strings(pair):
    parsed, cached = pair
    assert "Nope" not in cached.tags and "Storage" in cached.tags
    with pytest.raises(KeyError):
        cached.tags["Nope"]
    assert cached.tags["Empty"] == () and cached.counts("Empty") == (0, 0)
    assert cached.tags["AzureCloud.westeurope"] == ("20.50.0.0/16", "52.113.0.0/16", "2603:1020:200::/46", "20.50.0.0/16")
    assert cached.counts("AzureCloud.westeurope") == parsed.counts("AzureCloud.westeurope") == (3, 1)
    with pytest.raises(Exception) as exc:
        cached.contains("Nope", "1.1.1.1")
    assert "no service tag 'Nope'" in str(exc.value)
    import pickle  # batch jobs may hand a loaded snapshot to worker processes

    again = pickle.loads(pickle.dumps(cached))
    assert again.tags == parsed.tags and again.tags_for("20.50.1.9") == parsed.tags_for("20.50.1.9")


def test_a_changed_file_is_not_answered_from_the_old_entry(tmp_path):
    path = write(tmp_path / "ServiceTags_Public_20251028.json", doc())
    cache = tmp_path / "cache"
    loaded_twice(path, cache)
    assert not load_service_tags(path, cache=cache).contains("Sql", "41.0.0.1")
    changed = doc()
    changed["values"][4]["properties"]["addressPrefixes"].append("41.0.0.0/8")
    changed["changeNumber"] = 12
    write(path, changed)
    fresh = load_service_tags(path, cache=cache)
    assert fresh._arrays is None and fresh.contains("Sql", "41.0.0.1") and fresh.change_number == 12
    again = load_service_tags(path, cache=cache)
    assert again._arrays is not None and again.contains("Sql", "41.0.0.1") and again.change_number == 12
    assert len(list((cache / "tag-index").glob("*.bin"))) == 2


def test_another_meshpcap_version_is_a_miss(tmp_path, monkeypatch):
    path = write(tmp_path / "t.json", doc())
    loaded_twice(path, tmp_path)
    monkeypatch.setattr(tagcache, "_version", lambda: "9.9.9+local")
    assert load_service_tags(path, cache=tmp_path)._arrays is None
    assert load_service_tags(path, cache=tmp_path)._arrays is not None
    assert len(list((tmp_path / "tag-index").glob("*.bin"))) == 2


def _entry(cache):
    (found,) = (cache / "tag-index").glob("*.bin")
    return found


def _rewrite(entry, meta=None, **changes):
    """Write the entry again with some arrays (or the header) changed and a correct checksum: only the
    structural checks can tell."""
    old_meta, arrays = tagcache.unpack(entry.read_bytes())
    arrays = dict(arrays, **changes)
    entry.write_bytes(tagcache.pack(meta if meta is not None else old_meta, arrays))


def _arrays(entry):
    return tagcache.unpack(entry.read_bytes())[1]


def _flip(entry, member):
    """Flip one bit inside ``member``'s bytes: only the checksum can tell."""
    data = bytearray(entry.read_bytes())
    head = tagcache._HEAD.size + tagcache._HEAD.unpack_from(data)[1]
    offset, nbytes = json.loads(bytes(data[tagcache._HEAD.size:head]))["arrays"][member][:2]
    data[head + offset + nbytes - 1] ^= 0x01
    entry.write_bytes(bytes(data))


def _meta(**changes):
    return dict({"format": tagcache.FORMAT, "meshpcap": tagcache._version(), "sha256": "0" * 64,
                 "change_number": 11, "cloud": "Public", "tags": 5}, **changes)


DAMAGE = {
    "truncated": lambda e: e.write_bytes(e.read_bytes()[: len(e.read_bytes()) // 2]),
    "empty": lambda e: e.write_bytes(b""),
    "garbage": lambda e: e.write_bytes(random.Random(1).randbytes(5000)),
    "garbage after the magic": lambda e: e.write_bytes(tagcache.MAGIC + random.Random(2).randbytes(5000)),
    "flipped start": lambda e: _flip(e, "starts4"),
    "flipped strings": lambda e: _flip(e, "strings"),
    "flipped header": lambda e: e.write_bytes(e.read_bytes()[:20] + b"X" + e.read_bytes()[21:]),
    "offsets past the end": lambda e: _rewrite(e, str_off=np.arange(6, dtype="<i8") * 10**6),
    "levels out of order": lambda e: _rewrite(e, lev4=_arrays(e)["lev4"][::-1].copy()),
    "level past its array": lambda e: _rewrite(e, lev6=_arrays(e)["lev6"] * np.array([1, 1, 1, 2], dtype="<i8")),
    "wrong dtype": lambda e: _rewrite(e, starts4=_arrays(e)["starts4"].astype("<i8")),
    "an array missing": lambda e: e.write_bytes(tagcache.pack(
        tagcache.unpack(e.read_bytes())[0], {k: v for k, v in _arrays(e).items() if k != "counts"})),
    "other hash": lambda e: _rewrite(e, meta=_meta()),
    "other version": lambda e: _rewrite(e, meta=_meta(sha256=e.name.split("-")[0], meshpcap="0.0.1")),
    "a tag missing": lambda e: _rewrite(e, names=np.frombuffer(b"AzureCloud\nStorage", dtype=np.uint8)),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path, damage):
    path = write(tmp_path / "ServiceTags_Public_20251028.json", doc())
    cache = tmp_path / "cache"
    parsed, _ = loaded_twice(path, cache)
    DAMAGE[damage](_entry(cache))
    probe = ["20.50.1.9", "13.64.5.6", "52.113.1.1", "2603:1020:200:8::1", "8.8.8.8", "40.1.1.1"]
    again = load_service_tags(path, cache=cache)
    assert again._arrays is None  # not trusted: parsed again
    same(parsed, again, probe)
    healed = load_service_tags(path, cache=cache)
    assert healed._arrays is not None
    same(parsed, healed, probe)


def test_an_unwritable_cache_falls_back_to_parsing(tmp_path):
    path = write(tmp_path / "t.json", doc())
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be")
    for _ in range(2):
        tags = load_service_tags(path, cache=blocker / "cache")
        assert tags._arrays is None and tags.tags_for("20.50.1.9") == ["AzureCloud", "AzureCloud.westeurope", "Storage"]
    assert blocker.read_text().startswith("a file") and list(tmp_path.glob("**/.tmp-*")) == []


def test_default_cache_is_the_user_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "c"))
    path = write(tmp_path / "t.json", doc())
    load_service_tags(path)
    assert len(list((tmp_path / "c" / "tag-index").glob("*.bin"))) == 1
    assert load_service_tags(path)._arrays is not None


def test_the_official_file_from_cache(spec_file, tmp_path):
    path = spec_file("ServiceTags_Public_20251028.json")
    parsed, cached = loaded_twice(path, tmp_path)
    rng = random.Random(7)
    nets = [ipaddress.ip_network(p) for p in parsed.tags["AzureCloud"][::40]] + \
        [ipaddress.ip_network(p) for p in parsed.tags["Storage"][::40]]
    addresses = [str(n.network_address + rng.randrange(n.num_addresses)) for n in nets]
    addresses += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(200)]
    assert parsed.tags_for_many(addresses) == cached.tags_for_many(addresses)
    for tag in ("AzureCloud", "AzureFrontDoor.Frontend", "Storage", "AzureCloud.westeurope"):
        assert parsed.membership(tag, addresses).tolist() == cached.membership(tag, addresses).tolist()
        assert parsed.counts(tag) == cached.counts(tag) and parsed.tags[tag] == cached.tags[tag]
    assert len(parsed.index) == len(cached.index) == 93362


def test_import_writes_the_index_too(tmp_path):
    from meshpcap.rules.update import import_service_tags

    src = write(tmp_path / "ServiceTags_Public_20251028.json", doc())
    target, _when, _change = import_service_tags(src, cache=tmp_path / "cache")
    first = load_service_tags(target, cache=tmp_path / "cache")
    assert first._arrays is not None and first.file == str(target) and first.contains("Sql", "40.1.2.3")


def test_a_settled_file_is_not_read_again(tmp_path, monkeypatch):
    path = write(tmp_path / "ServiceTags_Public_20251028.json", doc())
    cache = tmp_path / "cache"
    loaded_twice(path, cache)
    assert not list((cache / "tag-index").glob("stat-*"))  # written just now: not settled, nothing noted
    monkeypatch.setattr(tagcache, "SETTLED_NS", 0)
    assert load_service_tags(path, cache=cache)._arrays is not None  # hashed once more, and noted
    (note,) = (cache / "tag-index").glob("stat-*")
    import hashlib

    assert note.read_text() == hashlib.sha256(path.read_bytes()).hexdigest()

    def no_hashing(*_args):
        raise AssertionError("hashed a file whose hash was noted")

    monkeypatch.setattr(hashlib, "sha256", no_hashing)
    again = load_service_tags(path, cache=cache)
    assert again._arrays is not None and again.tags == load_service_tags(path, cache=False).tags
    monkeypatch.undo()

    changed = doc()  # another status (size, times): hashed, never answered from the old note
    changed["values"][4]["properties"]["addressPrefixes"].append("41.0.0.0/8")
    write(path, changed)
    monkeypatch.setattr(tagcache, "SETTLED_NS", 0)
    fresh = load_service_tags(path, cache=cache)
    assert fresh._arrays is None and fresh.contains("Sql", "41.0.0.1")
    assert load_service_tags(path, cache=cache).contains("Sql", "41.0.0.1")
    assert len(list((cache / "tag-index").glob("stat-*"))) == 2


def test_a_damaged_note_is_ignored(tmp_path, monkeypatch):
    path = write(tmp_path / "t.json", doc())
    monkeypatch.setattr(tagcache, "SETTLED_NS", 0)
    loaded_twice(path, tmp_path)
    (note,) = (tmp_path / "tag-index").glob("stat-*")
    import hashlib

    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert note.read_text() == sha
    for junk in ("0" * 64, "not a hash", "", "A" * 64, "f" * 65):  # another hash (no entry), or not one
        note.write_text(junk)
        got = load_service_tags(path, cache=tmp_path)
        assert got._arrays is not None and got.change_number == 11  # found by the file's own hash
        assert note.read_text() == sha  # and noted again


def test_unreadable_tag_files_still_fail_with_one_line(tmp_path):
    from meshpcap.errors import RuleError

    with pytest.raises(RuleError, match="cannot read"):
        load_service_tags(tmp_path / "missing.json", cache=tmp_path)
    with pytest.raises(RuleError, match="cannot read: Is a directory"):
        load_service_tags(tmp_path, cache=tmp_path / "c")
