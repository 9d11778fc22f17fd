"""Writing a batch: Parquet (a directory of one file per table), CSV, JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import schema
from ..errors import MeshpcapError
from .audit import TABLE_COLUMNS
from .fleet import BatchReport, _isna

# -- writing ---------------------------------------------------------------------------------------

def write_parquet(batch: BatchReport, directory: str | os.PathLike) -> list[Path]:
    """The three tables as ``DIR/captures.parquet``, ``DIR/flows.parquet``, ``DIR/findings.parquet``
    (pyarrow), each with its explicit Arrow schema and the batch's metadata."""
    import pyarrow.parquet as pq

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in batch.tables().items():
        meta = {**batch.metadata, "table": name, "meshpcap.schema": json.dumps(
            [{"name": c.name, "pandas": c.pandas, "arrow": c.arrow, "meaning": c.meaning}
             for c in TABLE_COLUMNS[name]])}
        tbl = schema.to_arrow(TABLE_COLUMNS[name], df, meta)
        path = d / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(tbl, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def read_parquet(directory: str | os.PathLike) -> dict[str, Any]:
    """The tables written by :func:`write_parquet`, with the in-memory dtypes."""
    import pyarrow.parquet as pq

    return {name: schema.from_arrow(TABLE_COLUMNS[name], pq.read_table(Path(directory) / f"{name}.parquet"))
            for name in TABLE_COLUMNS}


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    if _isna(v):
        return ""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def write_csv(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    """``audit.csv`` (captures) with ``audit.flows.csv`` and ``audit.findings.csv`` beside it;
    list and record cells as JSON, missing values empty."""
    import csv

    p = Path(path)
    stem = p.name[: -len(".csv")] if p.name.endswith(".csv") else p.name
    targets = {"captures": p, "flows": p.with_name(f"{stem}.flows.csv"), "findings": p.with_name(f"{stem}.findings.csv")}
    for name, df in batch.tables().items():
        cols = [c.name for c in TABLE_COLUMNS[name]]
        with open(targets[name], "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for rec in df[cols].itertuples(index=False, name=None):
                w.writerow([_cell(v) for v in rec])
    return list(targets.values())


def _json_value(v):
    if v is None or isinstance(v, (list, dict, str, bool, int, float)):
        return v
    if _isna(v):
        return None
    if hasattr(v, "total_seconds"):  # a duration: integer nanoseconds, as the *_ns columns
        return int(v.value)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def to_json_document(batch: BatchReport) -> dict[str, Any]:
    """The batch as one JSON document (``meshpcap.batch/1``): metadata, summary and the three
    tables as lists of records (times ISO 8601, durations integer ns, missing values null)."""
    def records(df):
        cols = list(df.columns)
        return [{k: _json_value(v) for k, v in zip(cols, rec)} for rec in df.itertuples(index=False, name=None)]

    return {"schema": "meshpcap.batch/1", "metadata": batch.metadata, "summary": batch.summary().to_dict(),
            **{name: records(df) for name, df in batch.tables().items()}}


def write_json(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    p.write_text(json.dumps(to_json_document(batch), indent=2, default=_json_default) + "\n", encoding="utf-8")
    return [p]


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    return str(v)


def output_files(path: str | os.PathLike) -> list[Path]:
    """The files :func:`write_output` writes for ``path``."""
    p = Path(path)
    if p.name.endswith(".parquet"):
        return [p / f"{name}.parquet" for name in TABLE_COLUMNS]
    if p.name.endswith(".csv"):
        stem = p.name[: -len(".csv")]
        return [p, p.with_name(f"{stem}.flows.csv"), p.with_name(f"{stem}.findings.csv")]
    return [p]


def write_output(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    """By the name's extension: ``.parquet`` (a directory of one file per table), ``.csv``, ``.json``.
    Never over one of the batch's captures."""
    name = os.fspath(path)
    inputs = {os.path.realpath(c) for c in batch.captures["capture"]}
    for target in output_files(name):
        if os.path.realpath(target) in inputs:
            raise MeshpcapError(f"{target}: is one of the captures audited; not overwritten")
    if name.endswith(".parquet"):
        return write_parquet(batch, name)
    if name.endswith(".csv"):
        return write_csv(batch, name)
    if name.endswith(".json"):
        return write_json(batch, name)
    raise MeshpcapError(f"{name}: output must end in .parquet, .csv or .json")
