"""Service-tag files: shape validation, lookups vs ipaddress, the real snapshots in shared/spec, cache paths."""

from __future__ import annotations

import bisect
import ipaddress
import json
import random
import time
from datetime import date

import numpy as np
import pytest

from meshpcap.errors import RuleError
from meshpcap.rules.servicetags import cache_dir, cached_service_tags, file_date, load_service_tags


def small_doc():
    return {
        "changeNumber": 7,
        "cloud": "Public",
        "values": [
            {"name": "AzureCloud.westeurope", "id": "AzureCloud.westeurope",
             "properties": {"changeNumber": 2, "region": "westeurope", "regionId": 18, "platform": "Azure",
                            "systemService": "", "addressPrefixes": ["20.50.0.0/16", "2603:1020:200::/46"],
                            "networkFeatures": None}},
            {"name": "AzureCloud", "id": "AzureCloud",
             "properties": {"changeNumber": 3, "region": "", "regionId": 0, "platform": "Azure", "systemService": "",
                            "addressPrefixes": ["20.0.0.0/10", "52.112.0.0/16", "2603:1020::/32"],
                            "networkFeatures": ["API", "NSG"]}},
            {"name": "Storage", "id": "Storage",
             "properties": {"changeNumber": 1, "region": "", "regionId": 0, "platform": "Azure",
                            "systemService": "AzureStorage", "addressPrefixes": ["20.50.1.0/24"], "networkFeatures": None}},
        ],
    }


def write(tmp_path, doc, name="ServiceTags_Public_20251028.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_small_file(tmp_path):
    tags = load_service_tags(write(tmp_path, small_doc()))
    assert (tags.date, tags.change_number, tags.cloud) == (date(2025, 10, 28), 7, "Public")
    assert tags.tags["AzureCloud"] == ("20.0.0.0/10", "52.112.0.0/16", "2603:1020::/32")
    assert tags.tags_for("20.50.1.9") == ["AzureCloud", "AzureCloud.westeurope", "Storage"]
    assert tags.tags_for("2603:1020:201::1") == ["AzureCloud", "AzureCloud.westeurope"]
    assert tags.tags_for("8.8.8.8") == []
    assert tags.contains("AzureCloud", "52.112.3.4") and not tags.contains("Storage", "52.112.3.4")
    assert tags.membership("AzureCloud", ["20.1.2.3", "1.1.1.1", "2603:1020::9", "::1"]).tolist() == [True, False, True, False]
    assert tags.counts("AzureCloud") == (2, 1)
    assert tags.tag_change_numbers["AzureCloud"] == 3
    with pytest.raises(RuleError) as exc:
        tags.contains("AzureCould", "1.1.1.1")
    assert str(exc.value) == f"{tmp_path / 'ServiceTags_Public_20251028.json'}: no service tag 'AzureCould' in this file"


def test_date_from_name(tmp_path):
    assert load_service_tags(write(tmp_path, small_doc(), "tags.json")).date is None
    assert file_date("ServiceTags_Public_20251399.json") is None
    assert file_date("/x/ServiceTags_Public_20250908.json") == date(2025, 9, 8)


def test_pascal_case_accepted(tmp_path):
    doc = {"ChangeNumber": 1, "Cloud": "Public",
           "Values": [{"Name": "AzureCloud", "Id": "AzureCloud", "Properties": {"AddressPrefixes": ["10.0.0.0/8"]}}]}
    assert load_service_tags(write(tmp_path, doc)).contains("AzureCloud", "10.1.1.1")


def _mutate(path_expr):
    doc = small_doc()
    path_expr(doc)
    return doc


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[]", "not a service-tag file (top level is not an object)"),
        (_mutate(lambda d: d.pop("changeNumber")), "not a service-tag file (changeNumber missing or not an integer)"),
        (_mutate(lambda d: d.update(values={})), "not a service-tag file (values missing or not a list)"),
        (_mutate(lambda d: d.update(cloud=1)), "cloud: not a string"),
        (_mutate(lambda d: d["values"].append(3)), "values[3]: not an object"),
        (_mutate(lambda d: d["values"][1].pop("name") and d["values"][1].pop("id")), "values[1]: name missing or not a string"),
        (_mutate(lambda d: d["values"][1].pop("properties")), "values[1] ('AzureCloud'): properties missing or not an object"),
        (_mutate(lambda d: d["values"][1]["properties"].update(addressPrefixes=None)),
         "values[1] ('AzureCloud'): properties.addressPrefixes missing or not a list"),
        (_mutate(lambda d: d["values"][1]["properties"]["addressPrefixes"].append("20.0.0.1/10")),
         "values[1] ('AzureCloud'): properties.addressPrefixes[3]: '20.0.0.1/10' has host bits set"),
        (_mutate(lambda d: d["values"][1]["properties"]["addressPrefixes"].append(5)),
         "values[1] ('AzureCloud'): properties.addressPrefixes[3]: 5 is not a CIDR prefix"),
        (_mutate(lambda d: d["values"].append(d["values"][0])), "values[3]: duplicate tag 'AzureCloud.westeurope'"),
    ],
)
def test_shape_errors(tmp_path, doc, message):
    path = write(tmp_path, doc)
    with pytest.raises(RuleError) as exc:
        load_service_tags(path)
    assert str(exc.value) == f"{path}: {message}"


def test_missing_file(tmp_path):
    with pytest.raises(RuleError) as exc:
        load_service_tags(tmp_path / "none.json")
    assert str(exc.value) == f"{tmp_path / 'none.json'}: cannot read: No such file or directory"


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MESHPCAP_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "meshpcap"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "meshpcap"


def test_cached_service_tags(tmp_path):
    assert cached_service_tags(tmp_path / "absent") is None
    assert cached_service_tags(tmp_path) is None
    for name in ("ServiceTags_Public_20250908.json", "ServiceTags_Public_20251028.json", "notes.json",
                 ".ServiceTags-x.part"):
        (tmp_path / name).write_text("{}")
    assert cached_service_tags(tmp_path) == tmp_path / "ServiceTags_Public_20251028.json"


# -- the real snapshots (shared/spec, optional) ---------------------------------------------


def test_real_snapshot_20251028(spec_file, capsys):
    path = spec_file("ServiceTags_Public_20251028.json")
    start = time.perf_counter()
    tags = load_service_tags(path)
    elapsed = time.perf_counter() - start
    total = sum(len(p) for p in tags.tags.values())
    with capsys.disabled():
        print(f"\nload + index of {path.name}: {len(tags.tags)} tags, {total} prefixes in {elapsed * 1000:.0f} ms")
    assert (tags.date, tags.change_number, tags.cloud, len(tags.tags)) == (date(2025, 10, 28), 375, "Public", 3039)
    assert len(tags.tags["AzureCloud"]) == 13080
    assert tags.counts("AzureCloud") == (9585, 3495)
    assert len(tags.index) == total
    assert sum(1 for t in tags.tags if t.startswith("AzureCloud.")) == 71

    rng = random.Random(375)
    nets = [ipaddress.ip_network(p) for p in tags.tags["AzureCloud"]]
    addresses = []
    for i in range(10_000):
        if i % 2:
            net = rng.choice(nets)
            addresses.append(net.network_address + rng.randrange(net.num_addresses))
        elif i % 4:
            addresses.append(ipaddress.IPv4Address(rng.getrandbits(32)))
        else:
            addresses.append(ipaddress.IPv6Address((0x2603 << 112) | rng.getrandbits(112)))
    # reference: Python's ipaddress; collapsed networks are disjoint, so one bisect finds the candidate
    collapsed = {
        v: sorted(ipaddress.collapse_addresses(n for n in nets if n.version == v)) for v in (4, 6)
    }
    starts = {v: [n.network_address for n in collapsed[v]] for v in (4, 6)}

    def want(address):
        i = bisect.bisect_right(starts[address.version], address) - 1
        return i >= 0 and address in collapsed[address.version][i]

    expected = np.array([want(a) for a in addresses])
    got = tags.membership("AzureCloud", addresses)
    assert got.tolist() == expected.tolist()
    assert 4000 < expected.sum() < 9000  # both answers are exercised
    labels = tags.tags_for_many(addresses[:500])
    assert [("AzureCloud" in lab) for lab in labels] == expected[:500].tolist()
    assert "AzureCloud" in tags.tags_for("52.113.10.1")  # Teams media range inside AzureCloud (SPEC 3)


def test_real_snapshot_20250908(spec_file):
    tags = load_service_tags(spec_file("ServiceTags_Public_20250908.json"))
    assert (tags.change_number, len(tags.tags), tags.counts("AzureCloud")) == (370, 3002, (9426, 3450))
