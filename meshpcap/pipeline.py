"""Wires the stages: capture -> decode -> flows -> (names) -> rules/classify -> report.

This is the only module that imports every stage; notebooks and the CLI call its
functions (re-exported from ``meshpcap``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .capture import open_capture
from .decode.frames import decode_batch
from .flows.engine import FlowBuilder
from .flows.model import FlowTable
from .flows.records import build_records


def read_flows(path: str | os.PathLike, names: bool = True, idle_seconds: float | None = None,
               batch_bytes: int | None = None) -> FlowTable:
    """Read a capture and return its flows (``.to_dataframe()`` for pandas).

    ``names=False`` skips the naming stage (SNI, QUIC, DNS, HTTP, STUN details):
    only the flow table is built.  Raises :class:`meshpcap.errors.CaptureError` when
    the file cannot be read at all; damage inside the capture is reported in
    ``capture["truncated"]`` and ``capture["undecoded"]`` instead.  ``batch_bytes``
    sets the reader's batch size (the result does not depend on it).
    """
    kwargs = {}
    if idle_seconds is not None:
        kwargs["idle_ns"] = int(idle_seconds * 1e9)
    builder = FlowBuilder(evidence=names, **kwargs)
    with open_capture(path, **({} if batch_bytes is None else {"batch_bytes": batch_bytes})) as cap:
        for batch in cap.batches():
            builder.add(batch, decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype))
        info = cap.info
    raw = builder.finish()
    namer = None
    dns_events = []
    stats: dict = {}
    if names:
        from .flows.naming import Namer

        n = Namer(raw)
        namer = n.names_for
        dns_events = n.dns_events
        stats = n.stats
    flows = build_records(raw, namer)
    if names:
        dns_events = n.link_dns_events(flows)
    capture = info.to_dict()
    capture["path"] = str(Path(path))
    capture["decoded"] = raw.decoded
    capture["undecoded"] = dict(sorted(raw.undecoded.items()))
    return FlowTable(capture=capture, flows=flows, dns=dns_events, stats=stats)
