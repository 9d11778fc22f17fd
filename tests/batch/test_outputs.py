"""The batch's Parquet (explicit Arrow schema and metadata) read back by pyarrow and DuckDB, and the
same per-capture function on a Dask cluster."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from typer.testing import CliRunner

from meshpcap import __version__, schema
from meshpcap.batch import TABLE_COLUMNS, analyze_many, read_parquet, write_output
from meshpcap.cli import app
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
FEW = ["reject-icmp.pcapng", "healthy-multi-room.pcapng", "proxy-403.pcapng"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    d = tmp_path_factory.mktemp("caps")
    for name in FEW:
        shutil.copy(SAMPLES / name, d / name)
    (d / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 6)  # a pcap header cut short
    return analyze_many([d], service_tags=TAGS, jobs=1, progress=False)


def test_parquet_round_trip_with_pyarrow_and_duckdb(batch, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "audit.parquet"
    written = write_output(batch, out)
    assert sorted(p.name for p in written) == ["captures.parquet", "findings.parquet", "flows.parquet"]
    for name, df in batch.tables().items():
        tbl = pq.read_table(out / f"{name}.parquet")
        assert tbl.schema.equals(schema.arrow_schema(TABLE_COLUMNS[name]), check_metadata=False)
        meta = {k.decode(): v.decode() for k, v in tbl.schema.metadata.items()}
        assert meta["schema"] == schema.SCHEMA_VERSION and meta["meshpcap"] == __version__
        assert meta["profile"] == "multi-room" and meta["profile_date"] == "2024-06-12"
        assert meta["service_tags_change_number"] == "375" and meta["table"] == name
        assert tbl.num_rows == len(df)
    back = read_parquet(out)
    for name, df in batch.tables().items():
        pd.testing.assert_frame_equal(back[name], df)
    t = pq.read_table(out / "captures.parquet").schema
    assert t.field("first_seen").type == pa.timestamp("ns", tz="UTC")
    assert t.field("verdict").type == pa.dictionary(pa.int32(), pa.string())
    assert t.field("packets").type == pa.int64()

    con = duckdb.connect()
    rows = con.execute(f"SELECT capture, verdict, packets, blocked, first_seen FROM '{out}/captures.parquet' "
                       "ORDER BY capture").fetchall()
    want = batch.captures.sort_values("capture")
    assert [r[0] for r in rows] == want.capture.tolist()
    assert [r[1] for r in rows] == want.verdict.tolist()
    assert [r[2] for r in rows] == [None if pd.isna(v) else int(v) for v in want.packets]
    assert [r[4] for r in rows] == [None if pd.isna(v) else v.to_pydatetime() for v in want.first_seen]
    assert sum(r[4] is not None for r in rows) == 3
    # one query over every table's file: the capture key joins them
    n = con.execute(f"SELECT count(*) FROM read_parquet('{out}/*.parquet', union_by_name=true)").fetchone()[0]
    assert n == sum(len(df) for df in batch.tables().values())
    joined = con.execute(
        f"SELECT c.capture, count(f.id) FROM '{out}/captures.parquet' c LEFT JOIN '{out}/findings.parquet' f "
        "USING (capture) WHERE f.severity = 'error' GROUP BY c.capture ORDER BY c.capture").fetchall()
    errors = batch.findings[batch.findings.severity == "error"].groupby("capture").size()
    assert joined == [(c, int(k)) for c, k in errors.sort_index().items()]
    ports = con.execute(f"SELECT typeof(server_port), typeof(first_seen), typeof(community_id) FROM "
                        f"'{out}/flows.parquet' LIMIT 1").fetchone()
    assert ports[0] == "BIGINT" and ports[2] == "VARCHAR"
    assert ports[1] in ("TIMESTAMPTZ_NS", "TIMESTAMP WITH TIME ZONE")  # ns kept where DuckDB has the type
    cid = con.execute(f"SELECT community_id FROM '{out}/flows.parquet' WHERE capture LIKE '%reject-icmp%' "
                      "ORDER BY id LIMIT 1").fetchone()[0]
    assert cid == batch.flows[batch.flows.capture.str.contains("reject-icmp")].sort_values("id").community_id.iloc[0]


def test_broken_file_is_an_error_row(batch):
    row = batch.captures[batch.captures.capture.str.endswith("broken.pcap")].iloc[0]
    assert row.verdict == "error" and "pcap" in row.error and row.file_size == 10
    assert pd.isna(row.packets) and pd.isna(row.first_seen)


def test_dask_cluster_gives_the_same_tables(batch, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths = sorted(batch.captures.capture)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = analyze_many(paths, service_tags=TAGS, client=client, progress=False)
        # the command line, by the scheduler's address
        res = CliRunner().invoke(app, ["batch", *paths, "--service-tags", str(TAGS), "--dask",
                                       cluster.scheduler_address, "--no-cache", "-o", str(tmp_path / "a.json")])
        assert res.exit_code == 1, res.output
        assert "FLEET: 4 captures: 1 pass, 2 fail, 0 inconclusive, 1 error" in res.stdout
    for name in ("captures", "flows", "findings"):
        a, b = batch.tables()[name], remote.tables()[name]
        if name == "captures":
            a, b = a.drop(columns="seconds"), b.drop(columns="seconds")
        pd.testing.assert_frame_equal(a.sort_values(list(a.columns[:2])).reset_index(drop=True),
                                      b.sort_values(list(b.columns[:2])).reset_index(drop=True))
