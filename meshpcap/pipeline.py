"""Wires the stages: capture -> decode -> flows -> (names) -> rules/classify -> report.

This is the only module that imports every stage; notebooks and the CLI call its
functions (re-exported from ``meshpcap``).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from .capture import open_capture
from .decode.frames import decode_batch
from .flows.engine import FlowBuilder, FlowLimitError, prepare
from .flows.model import FlowTable
from .flows.records import build_records, naming_jobs, with_flow_ids


def _decode(batch):
    """The per-batch steps that may run beside the walk, in the capture reader's second process:
    header decoding and the stateless half of flow building."""
    decoded = decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
    return decoded, prepare(batch, decoded, trim=True)


_retained: list | None = None  # see retain_until_exit


def retain_until_exit() -> None:
    """For a process that runs one analysis and then ends with ``os._exit`` (the CLI): keep the
    builder's intermediate state (payloads, per-flow arrays) referenced instead of freeing it
    object by object when :func:`read_flows` returns (about 30 ms per million packets)."""
    global _retained
    if _retained is None:
        _retained = []


def read_flows(path: str | os.PathLike, names: bool = True, idle_seconds: float | None = None,
               batch_bytes: int | None = None, max_flows: int | None = None) -> FlowTable:
    """Read a capture and return its flows (``.to_dataframe()`` for pandas).

    ``names=False`` skips the naming stage (SNI, QUIC, DNS, HTTP, STUN details):
    only the flow table is built.  Raises :class:`meshpcap.errors.CaptureError` when
    the file cannot be read at all; damage inside the capture is reported in
    ``capture["truncated"]`` and ``capture["undecoded"]`` instead.  ``batch_bytes``
    sets the reader's batch size (the result does not depend on it).  ``max_flows`` (None or 0:
    no limit) stops with :class:`meshpcap.flows.engine.FlowLimitError` when the capture has more
    flows; ``FlowTable.flows`` makes its records when read (memory about 0.5 KB per flow).
    """
    # Reading builds many small objects and no reference cycles: the cyclic collector's passes
    # over an ever larger heap would cost about a tenth of the run, so it waits until the end.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _read_flows(path, names, idle_seconds, batch_bytes, max_flows)
    except FlowLimitError as exc:
        raise FlowLimitError(exc.limit, str(path)) from None
    finally:
        if gc_was_enabled:
            gc.enable()


def _read_flows(path: str | os.PathLike, names: bool, idle_seconds: float | None, batch_bytes: int | None,
                max_flows: int | None) -> FlowTable:
    kwargs = {"max_flows": max_flows}
    if idle_seconds is not None:
        kwargs["idle_ns"] = int(idle_seconds * 1e9)
    builder = FlowBuilder(evidence=names, **kwargs)
    with open_capture(path, **({} if batch_bytes is None else {"batch_bytes": batch_bytes})) as cap:
        early = None
        if names:
            from .flows.engine import EVIDENCE_TCP
            from .flows.naming import EarlyNamer, prefetch_dns

            early = EarlyNamer(builder, EVIDENCE_TCP)
        for batch, (decoded, grouped) in cap.batches_with(_decode):
            builder.add(batch, decoded, grouped)
            if early is not None:  # name what is final now, while the reader reads on (the same work as at the end)
                if builder.dns_new:
                    prefetch_dns(builder.dns_new, builder.dns_parsed)
                    builder.dns_new = []
                early.step()
        info = cap.info
    raw = builder.finish()
    namer = None
    dns_events = []
    stats: dict = {}
    if names:
        from .flows.naming import name_flows

        jobs = naming_jobs(raw)  # the flows with payloads; the others only get DNS names, when their record is made
        n, names_list = name_flows(raw, jobs, early)
        named = dict(zip((fid for fid, _ in jobs), names_list))
        dns_names = n._dns_and_choice if n._resolved else None

        def _named(fid: int, a_is_client: bool) -> dict | None:
            got = named.get(fid)
            if got is None and dns_names is not None:
                got = dns_names(fid, a_is_client, {})
            return got

        namer = _named

        dns_events = n.dns_events
        # counters sorted by key: the same output whichever flows were named early or in which process
        stats = {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in n.stats.items()}
    flows = build_records(raw, namer)
    if names:
        dns_events = with_flow_ids(n.dns_events, n._dns_event_fid, raw)
    if _retained is not None:
        _retained.append((builder, raw, early, namer))
    capture = info.to_dict()
    capture["path"] = str(Path(path))
    capture["decoded"] = raw.decoded
    capture["undecoded"] = dict(sorted(raw.undecoded.items()))
    capture["duplicates_dropped"] = raw.duplicates  # also in undecoded["duplicate"], so that packets == decoded + undecoded
    return FlowTable(capture=capture, flows=flows, dns=dns_events, stats=stats)


def load_rules(
    profile: str = "multi-room",
    m365_endpoints: str | os.PathLike | None = None,
    webslates: tuple[str, ...] | list[str] = (),
    webslate_allow: tuple[str, ...] | list[str] = (),
    cloud_scripting: tuple[str, ...] | list[str] | str | None = (),
    rules: str | os.PathLike | None = None,
):
    """The profile to judge against, with the add-ons of the command line."""
    from dataclasses import replace

    from .rules import cloud_scripting_rule, load_m365_profile, load_profile, load_rules_file, merge_profiles
    from .rules import webslate_rules

    base = load_profile(profile)
    if m365_endpoints is not None:
        m365 = load_m365_profile(m365_endpoints)
        if base.id == "single-room":
            # the report needs the rules' date: the endpoints version's (YYYYMMDDNN), as the shipped profile has
            base = replace(m365, id=base.id, title=f"{base.title} (endpoints from {Path(m365_endpoints).name})",
                           date=m365.date or _version_date(m365.source))
        else:
            base = merge_profiles(base, m365)
    extra = []
    if webslates or webslate_allow:
        extra += list(webslate_rules(list(webslates), list(webslate_allow)))
    if isinstance(cloud_scripting, str):
        cloud_scripting = (cloud_scripting,)
    for app in cloud_scripting or ():
        extra.append(cloud_scripting_rule(app))
    if extra:
        base = replace(base, rules=base.rules + tuple(extra))
    if rules is not None:
        base = merge_profiles(base, load_rules_file(rules, base))
    return base


def _version_date(text: str):
    """The date of an M365 endpoints version (``version 2025043000`` -> 2025-04-30), or None."""
    import re
    from datetime import date

    m = re.search(r"version (\d{4})(\d{2})(\d{2})\d{2}\b", text)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def analyze(
    path: str | os.PathLike,
    profile: str = "multi-room",
    service_tags: str | os.PathLike | None = None,
    m365_endpoints: str | os.PathLike | None = None,
    webslates: tuple[str, ...] | list[str] = (),
    webslate_allow: tuple[str, ...] | list[str] = (),
    cloud_scripting: tuple[str, ...] | list[str] | str | None = (),
    rules: str | os.PathLike | None = None,
    fail_on: str = "missing",
    use_cache: bool = True,
    max_flows: int | None = None,
):
    """Judge a capture against a profile and return a :class:`meshpcap.report.analysis.Report`.

    ``service_tags`` is an official ``ServiceTags_Public_YYYYMMDD.json``; without it the
    snapshot cached by ``meshpcap tags update`` is used (``use_cache=False`` to not), and
    with neither, AzureCloud rules are judged on transport and port alone and every such
    verdict says "AzureCloud membership not verified".
    """
    from .classify import FAIL_ON, judge
    from .errors import MeshpcapError
    from .report.analysis import Report
    from .rules import cached_service_tags, load_service_tags
    from .rules.match import RuleMatcher

    if fail_on not in FAIL_ON:
        raise MeshpcapError(f"--fail-on: '{fail_on}' is not one of {', '.join(FAIL_ON)}")
    prof = load_rules(profile, m365_endpoints, webslates, webslate_allow, cloud_scripting, rules)
    tags = None
    tags_path = service_tags
    if tags_path is None and use_cache:
        tags_path = cached_service_tags()
    if tags_path is not None:
        tags = load_service_tags(tags_path)
    ft = read_flows(path, max_flows=max_flows)
    matcher = RuleMatcher(prof.rules, tags)
    judgement = judge(ft, prof, matcher, tags is not None, fail_on)
    profile_info = {
        "id": prof.id,
        "title": prof.title,
        "source": prof.source,
        "date": prof.date.isoformat() if prof.date else None,
        "url": prof.url,
        "rules": len(prof.rules),
    }
    tags_info = None
    if tags is not None:
        tags_info = {
            "file": str(tags_path),
            "date": tags.date.isoformat() if tags.date else None,
            "change_number": tags.change_number,
            "cloud": tags.cloud,
        }
    return Report(ft, judgement, profile_info, tags_info, {"fail_on": fail_on})
