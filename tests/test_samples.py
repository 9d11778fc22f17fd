"""The bundled sample captures: regenerate byte-identically, open with scapy, match the real service tags."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import sys
from pathlib import Path

import pytest
from scapy.utils import rdpcap

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
REAL_TAGS = ROOT / ".." / "shared" / "spec" / "ServiceTags_Public_20251028.json"


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
CAPTURES = sorted(name for name in gen.SAMPLES)


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    gen.main(["--out", str(out)])
    return out


def test_regeneration_is_byte_identical(regenerated: Path) -> None:
    names = CAPTURES + [gen.SERVICE_TAGS_FILE]
    assert sorted(p.name for p in regenerated.iterdir()) == sorted(names)
    for name in names:
        fresh = (regenerated / name).read_bytes()
        assert fresh == (SAMPLES / name).read_bytes(), f"{name} differs: run python samples/make_samples.py"


def test_samples_stay_small() -> None:
    total = sum((SAMPLES / name).stat().st_size for name in CAPTURES + [gen.SERVICE_TAGS_FILE])
    assert total < 800_000


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_opens_with_scapy(name: str) -> None:
    packets = rdpcap(str(SAMPLES / name))
    assert 0 < len(packets) <= 400
    first = float(packets[0].time)
    assert first == 1718892000.0  # 2024-06-20T14:00:00Z
    assert all(float(p.time) >= first for p in packets)


def test_formats() -> None:
    assert (SAMPLES / "single-room-teams.pcap").read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # classic, LE, usec
    healthy = (SAMPLES / "healthy-multi-room.pcapng").read_bytes()
    assert healthy[:4] == bytes.fromhex("0a0d0d0a")
    assert b"Ethernet 2" in healthy  # the second interface description block


def test_quic_initial_keys_match_rfc9001_appendix_a() -> None:
    dcid = bytes.fromhex("8394c8f03e515708")
    key, iv, hp = gen._initial_keys(dcid, "client")
    assert (key.hex(), iv.hex(), hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2")
    key, iv, hp = gen._initial_keys(dcid, "server")
    assert (key.hex(), iv.hex(), hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e", "c206b8d9b9f0f37644430b490eeaa314")


def test_sample_tag_file_has_the_official_layout() -> None:
    doc = json.loads((SAMPLES / gen.SERVICE_TAGS_FILE).read_text(encoding="utf-8"))
    assert set(doc) == {"_comment", "changeNumber", "cloud", "values"}
    assert "NOT Microsoft's list" in doc["_comment"]
    for value in doc["values"]:
        assert value["name"] == value["id"]
        assert set(value["properties"]) == {"changeNumber", "region", "regionId", "platform", "systemService",
                                            "addressPrefixes", "networkFeatures"}
    assert {v["name"] for v in doc["values"]} >= {"AzureCloud", "AzureCloud.westeurope"}


def _microsoft_side_addresses() -> set[str]:
    return {addr for _, addr in gen.HOSTS.values() if addr != gen.PROXY} | {
        gen.RELAY, gen.RELAY2, gen.MEDIA_PEER, gen.MEDIA30K, gen.UNEXPECTED}


def _covered(addr: str, prefixes) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip in net for net in map(ipaddress.ip_network, prefixes) if net.version == ip.version)


@pytest.mark.skipif(not REAL_TAGS.exists(), reason="shared/spec is not beside the checkout")
def test_sample_tags_are_copied_from_the_real_file() -> None:
    real = {v["name"]: v["properties"] for v in json.loads(REAL_TAGS.read_text(encoding="utf-8"))["values"]}
    sample = {v["name"]: v["properties"] for v in json.loads((SAMPLES / gen.SERVICE_TAGS_FILE).read_text())["values"]}
    for name, props in sample.items():
        assert set(props["addressPrefixes"]) <= set(real[name]["addressPrefixes"]), name
        for key in ("changeNumber", "region", "regionId", "platform", "systemService", "networkFeatures"):
            assert props[key] == real[name][key], (name, key)
    # Every address the samples use is in the sample AzureCloud exactly when it is in the real one.
    for addr in sorted(_microsoft_side_addresses()):
        assert _covered(addr, sample["AzureCloud"]["addressPrefixes"]) == _covered(
            addr, real["AzureCloud"]["addressPrefixes"]), addr
    assert _covered(gen.RELAY, real["AzureCloud"]["addressPrefixes"])
    assert not _covered(gen.UNEXPECTED, real["AzureCloud"]["addressPrefixes"])
