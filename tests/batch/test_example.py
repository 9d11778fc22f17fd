"""examples/fleet-audit.py, the notebook's cells, runs end to end."""

from __future__ import annotations

import runpy

import pytest

from tests.conftest import REPO


def test_fleet_audit_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("duckdb")
    pytest.importorskip("matplotlib")
    pytest.importorskip("pyarrow")
    monkeypatch.setenv("MESHPCAP_EXAMPLE_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = runpy.run_path(str(REPO / "examples" / "fleet-audit.py"), run_name="__main__")
    batch, failing = ns["batch"], ns["failing"]
    assert len(batch.captures) == len(list((REPO / "samples").glob("*.pcap*")))
    errors = batch.findings[batch.findings.severity == "error"]
    assert int(failing.findings.sum()) == len(errors)
    assert set(failing.rule) == set(errors.rule)
    assert (tmp_path / "failing-rules.png").stat().st_size > 1000
    assert (tmp_path / "audit.parquet" / "flows.parquet").is_file()
