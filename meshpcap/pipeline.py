"""Wires the stages: capture -> decode -> flows -> (names) -> rules/classify -> report.

This is the only module that imports every stage; notebooks and the CLI call its
functions (re-exported from ``meshpcap``).
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

from .capture import open_capture
from .decode.frames import decode_batch
from .errors import CaptureError
from .flows.engine import FlowBuilder, FlowLimitError, prepare
from .flows.model import FlowTable
from .flows.records import build_records, naming_jobs, with_flow_ids


def _decode(batch):
    """The per-batch steps that may run beside the walk, in the capture reader's second process:
    header decoding and the stateless half of flow building."""
    decoded = decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
    return decoded, prepare(batch, decoded, trim=True)


def _decode_media(batch):
    """:func:`_decode` and the stateless half of the media pass (:func:`meshpcap.flows.media.extract`)."""
    from .flows.media import extract

    decoded, grouped = _decode(batch)
    return decoded, grouped, extract(batch, decoded, grouped)


_retained: list | None = None  # see retain_until_exit


def retain_until_exit() -> None:
    """For a process that runs one analysis and then ends with ``os._exit`` (the CLI): keep the
    builder's intermediate state (payloads, per-flow arrays) referenced instead of freeing it
    object by object when :func:`read_flows` returns (about 30 ms per million packets), and the
    reports :func:`analyze` makes, once their caller lets them go (the records, verdicts and texts
    of 5,000 flows: 15 ms)."""
    global _retained
    if _retained is None:
        _retained = []


def read_flows(path: str | os.PathLike | Sequence[str | os.PathLike], names: bool = True,
               idle_seconds: float | None = None, batch_bytes: int | None = None, media=None,
               max_flows: int | None = None) -> FlowTable:
    """Read a capture and return its flows (``.to_dataframe()`` for pandas).

    ``path`` is a file, a FIFO or ``"-"`` (standard input), or a list of files that continue
    one another (a ring buffer, a capture split by ``editcap -c``): they are read as one
    capture, in the order of their first packets, so that a flow crossing a file boundary is
    one flow; ``capture["files"]`` then lists each file with its time span and the gap before
    it.  ``names=False`` skips the naming stage (SNI, QUIC, DNS, HTTP, STUN details): only
    the flow table is built.  Raises :class:`meshpcap.errors.CaptureError` when a file cannot
    be read at all; damage inside the capture is reported in ``capture["truncated"]`` and
    ``capture["undecoded"]`` instead.  ``batch_bytes`` sets the reader's batch size (the
    result does not depend on it).  The garbage collector is left as it is (the CLI turns
    it off for its one run; a notebook may do the same around a large read).  ``media``, a
    :class:`meshpcap.flows.media.MediaCollector` (or True for one with the default options), is given
    every batch too, and the table's ``media`` is then its result (RTP streams, round-trip times).
    ``max_flows`` (None or 0: no limit) stops with :class:`meshpcap.flows.engine.FlowLimitError` when
    the capture has more flows; ``FlowTable.flows`` makes its records when read (about 0.5 KB per flow).
    """
    return _read_table(path, names, idle_seconds, batch_bytes, media, max_flows)[0]


def _read_table(path, names: bool = True, idle_seconds: float | None = None, batch_bytes: int | None = None,
                media=None, max_flows: int | None = None, later: ExitStack | None = None, render=None, begun=None):
    """:func:`read_flows`, and with ``later`` the media result left to the caller: (table, None), or (table,
    ``take``) where ``take(idle=None)`` returns what ``table.media`` is to be (calling ``idle()`` while it waits,
    until that returns False), its work going on meanwhile (in a
    child that ``later`` ends), with what ``render`` makes of it there (see ``MediaCollector.beside``).
    ``begun``: the read as :func:`begin_read` began it (with these options), else it begins here."""
    if isinstance(begun, CaptureError):  # met when the read was begun (a stream cannot be opened again)
        raise begun
    if begun is None:
        begun = _begin(path, names, idle_seconds, batch_bytes, media not in (None, False), max_flows)
    try:
        return _read_flows(begun, media, later, render)
    except FlowLimitError as exc:
        raise FlowLimitError(exc.limit, begun.paths[0]) from None
    finally:
        begun.close()


class _Begun(NamedTuple):
    """A read begun (see :func:`begin_read`): its files in reading order, the flow builder and early namer
    it feeds, and the first file's capture with its walk under way."""

    paths: list[str]
    names: bool
    builder: FlowBuilder
    early: Any
    media: bool  # whether the walk makes the media pass's per-batch arrays (_decode_media)
    batch_bytes: int | None
    capture: Any
    pairs: Iterator
    spare: Any  # a child for the media statistics, forked now while this process is small, or None

    def close(self) -> None:
        """End the read (and its processes) if it was not read to its end."""
        self.capture.close()
        if self.spare is not None:
            self.spare.close()


def begin_read(path, names: bool = True, media: bool = False, max_flows: int | None = None) -> _Begun | CaptureError:
    """Begin reading a capture before its batches are taken, for :func:`_read_table` (``begun``) to finish:
    a large plain file's reading process starts now and walks ahead while this process loads what it
    judges with (rules, service tags, quality targets: about 25 ms at 1M packets, which the walk no
    longer waits for).  When the capture cannot be opened, its error, which _read_table raises: after
    the options have been checked, as without this, and without opening a stream a second time.
    Call ``begun.close()`` if it is not read."""
    try:
        return _begin(path, names, None, None, media, max_flows)
    except CaptureError as exc:
        return exc


def _begin(path, names: bool, idle_seconds: float | None, batch_bytes: int | None, media: bool,
           max_flows: int | None) -> _Begun:
    if isinstance(path, (str, os.PathLike)):
        paths = [os.fspath(path)]
    else:
        paths = [os.fspath(p) for p in path]
        if not paths:
            raise CaptureError("(no files)", "no capture given")
    kwargs = {"max_flows": max_flows}
    if idle_seconds is not None:
        kwargs["idle_ns"] = int(idle_seconds * 1e9)
    builder = FlowBuilder(evidence=names, **kwargs)
    if len(paths) > 1:
        from .capture import series

        paths = series.order(paths)
    early = None
    if names:
        from .flows.engine import EVIDENCE_TCP
        from .flows.naming import EarlyNamer

        early = EarlyNamer(builder, EVIDENCE_TCP)
    if media:  # imported once here, before the reader's second process (and the spare child) are forked
        from .flows import media as _media  # noqa: F401
    cap = _open(paths[0], batch_bytes)
    try:
        # while the reader's second process has not sent the next batch, name flows ahead (see EarlyNamer)
        pairs = cap.start(_decode_media if media else _decode, None if early is None else early.speculate)
    except BaseException:
        cap.close()
        raise
    return _Begun(paths, names, builder, early, media, batch_bytes, cap, pairs, _media_spare(paths[0]) if media else None)


# files from which the media statistics' child is a spare forked as the read begins (see _media_spare); below,
# a capture's RTP rows seldom reach MediaCollector.beside's threshold (the benchmark's 100,000 packets: 72 MB and
# 28,000 rows; its 1,000,000 packets: 720 MB and 278,000), and a child forked at the end costs little there
SPARE_MIN_BYTES = 256 << 20


def _media_spare(path: str):
    """A spare child for the media statistics at the end of a read (see MediaCollector.beside), for a file of
    SPARE_MIN_BYTES or more; None otherwise.  Forked right after the reader's second process, from this process
    as that one shares it (so that this process's writes copy no more pages than they do for the reader): it
    imports what it will run besides the statistics, the report's text of the streams (_renderers), while it
    waits."""
    from . import _child

    try:
        size = os.path.getsize(path)
    except OSError:  # a stream ("-"), or a FIFO
        return None
    if size < SPARE_MIN_BYTES:
        return None
    # room for the RTP rows (about 28 bytes a packet, and at least a fifth of a capture's bytes are headers); none
    # under an address-space limit (a batch audit's worker), which the mapping would count whole: the rows are sent
    shared = 0 if _child.address_space_limited() else min(size // 4, 1 << 30)
    return _child.spare(pipe_bytes=1 << 20, shared_bytes=shared, preload=("meshpcap.report.analysis",))


def _open(path: str, batch_bytes: int | None):
    return open_capture(path, **({} if batch_bytes is None else {"batch_bytes": batch_bytes}))


def _read_flows(begun: _Begun, media=None, later: ExitStack | None = None, render=None):
    if media is True:
        from .flows.media import MediaCollector

        media = MediaCollector()
    elif media is False:  # no media pass, as None
        media = None
    if (media is not None) != begun.media:
        raise ValueError("the read was begun with the media pass" if begun.media else "the read was begun without the media pass")
    builder, early, paths = begun.builder, begun.early, begun.paths
    if media is not None and begun.spare is not None and begun.spare.shared is not None:
        media.share_rows(begun.spare.shared)  # the spare child that computes the streams reads them there
    info = _read_files(paths, builder, early, media, begun.batch_bytes, (begun.capture, begun.pairs))
    raw = builder.finish()
    with ExitStack() as own:
        # the media statistics beside the naming (and, with ``later``, the judging), when they pay: they need
        # only the flows' ends and orientation
        take = None if media is None else (later or own).enter_context(media.beside(raw, render, begun.spare and begun.spare.take()))
        namer, dns_events, stats = _names(raw, begun.names, early)
        flows = build_records(raw, namer)
        if _retained is not None:
            _retained.append((builder, raw, early, namer))
        capture = info.to_dict()
        capture["path"] = str(Path(paths[0]))
        capture["decoded"] = raw.decoded
        capture["undecoded"] = dict(sorted(raw.undecoded.items()))
        # also in undecoded["duplicate"], so that packets == decoded + undecoded
        capture["duplicates_dropped"] = raw.duplicates
        table = FlowTable(capture=capture, flows=flows, dns=dns_events, stats=stats)
        if take is None:
            return table, None
        if later is None:
            table.media = take(flows)
            return table, None
        return table, lambda idle=None: take(flows, idle)


def _names(raw, names: bool, early):
    """The naming stage over the finished flows: a function (flow id, a is client) -> names or None (None
    without names), the DNS events with their flow ids, and the naming counters."""
    if not names:
        return None, [], {}
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

    # counters sorted by key: the same output whichever flows were named early or in which process
    stats = {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in n.stats.items()}
    return _named, with_flow_ids(n.dns_events, n._dns_event_fid, raw), stats


def _read_files(paths: list[str], builder: FlowBuilder, early, media, batch_bytes: int | None, first=None):
    """Feed every batch of every file to ``builder`` (and to ``media`` and the early namer ``early``, when
    given), in order, with record numbers running on across the files; the capture's CaptureInfo.
    ``first``: the first file's capture and its pairs, when its walk was begun already (Capture.start)."""
    if early is not None:
        from .flows.naming import prefetch_dns
    work = _decode if media is None else _decode_media
    idle = None if early is None else early.speculate
    infos = []
    first_record = 0  # records in the files before this one: record numbers run on across a series
    for i, p in enumerate(paths):
        cap, pairs = first if i == 0 and first is not None else (None, None)
        if cap is None:
            cap = _open(p, batch_bytes)
            pairs = cap.batches_with(work, idle)
        with cap:
            for batch, (decoded, grouped, *extracted) in pairs:
                batch.first_record += first_record
                builder.add(batch, decoded, grouped)
                if media is not None:  # the media pass (RTP, STUN and SYN times), its arrays made beside the reader
                    media.add(batch, decoded, grouped, extracted[0] if extracted else None, dropped=builder.dropped)
                if early is not None:  # name what is final now, while the reader reads on (the same work as at the end)
                    if builder.dns_new:
                        prefetch_dns(builder.dns_new, builder.dns_parsed)
                        builder.dns_new = []
                    early.step()
            infos.append(cap.info)
            first_record += cap.info.records
    if len(infos) == 1:
        return infos[0]
    from .capture import series

    return series.merge(infos)


def load_rules(
    profile: str = "multi-room",
    m365_endpoints: str | os.PathLike | None = None,
    webslates: tuple[str, ...] | list[str] = (),
    webslate_allow: tuple[str, ...] | list[str] = (),
    cloud_scripting: tuple[str, ...] | list[str] | str | None = (),
    rules: str | os.PathLike | None = None,
    use_cache: bool = True,
):
    """The profile to judge against, with the add-ons of the command line.

    Endpoint rows (``m365_endpoints``, else a newer cached download when the profile allows it)
    combine with the profile as its ``[profile.endpoints]`` table says.
    """
    from dataclasses import replace

    from .rules import cloud_scripting_rule, load_profile, load_rules_file, merge_profiles, webslate_rules
    from .rules.m365 import resolve_endpoints

    base = resolve_endpoints(load_profile(profile), m365_endpoints, use_cache)
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


def _items(value, what: str) -> tuple[str, ...]:
    """A list option: a single string is one item (not its characters); None is none."""
    if value is None:
        return ()
    if isinstance(value, (str, os.PathLike)):
        return (str(value),)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        from .errors import MeshpcapError

        raise MeshpcapError(f"{what}: expected a string or a list of strings, got {type(value).__name__}") from None


def analyze(
    source: str | os.PathLike | FlowTable,
    profile: str = "multi-room",
    *,
    service_tags: str | os.PathLike | None = None,
    m365_endpoints: str | os.PathLike | None = None,
    webslates: str | tuple[str, ...] | list[str] = (),
    webslate_allow: str | tuple[str, ...] | list[str] = (),
    cloud_scripting: str | tuple[str, ...] | list[str] | None = (),
    rules: str | os.PathLike | None = None,
    fail_on: str = "missing",
    use_cache: bool = True,
    as_of=None,
    quality: bool = True,
    quality_targets: str | os.PathLike | None = None,
    max_flows: int | None = None,
):
    """Judge a capture against a profile and return a :class:`meshpcap.report.analysis.Report`.

    ``source`` is a capture path or a :class:`FlowTable` already read with :func:`read_flows`
    (so one capture can be judged against several profiles without reading it again).

    ``profile="auto"`` picks the profile in force on ``as_of`` (a date or ``"YYYY-MM-DD"``;
    default: the date of the capture's first packet). When that date falls after the chosen
    profile was superseded or retired, ``report.profile["notices"]`` says so (and the table
    and Markdown renderers print it under the headline).

    ``service_tags`` is an official ``ServiceTags_Public_YYYYMMDD.json``; without it the
    snapshot cached by ``meshpcap tags update`` is used (``use_cache=False`` to not), and
    with neither, AzureCloud rules are judged on transport and port alone and every such
    verdict says "AzureCloud membership not verified".  ``webslates``, ``webslate_allow``
    and ``cloud_scripting`` take a string (one item) or a list.  ``fail_on`` is one of
    ``blocked``, ``missing`` (default), ``unexpected``, ``warning`` (strict) or ``never``.
    ``Report.verdict`` is ``pass``, ``fail`` or ``inconclusive``.

    ``quality`` measures the RTP media streams and round-trip times and judges them against
    ``quality_targets`` (default: Microsoft's Teams client-to-edge targets, shipped as
    ``rules/quality/teams-client-edge.toml``): ``Report.streams``, the report's ``quality`` section
    and findings of kind ``degraded``.  A FlowTable source is judged for quality when it was read
    with ``read_flows(..., media=True)``.
    """
    with analyzing(source, profile, service_tags=service_tags, m365_endpoints=m365_endpoints, webslates=webslates,
                   webslate_allow=webslate_allow, cloud_scripting=cloud_scripting, rules=rules, fail_on=fail_on,
                   use_cache=use_cache, as_of=as_of, quality=quality, quality_targets=quality_targets,
                   max_flows=max_flows) as report:
        return report


@contextmanager
def analyzing(source: str | os.PathLike | FlowTable, profile: str = "multi-room", json_ahead: bool = False,
              **options) -> Iterator:
    """:func:`analyze` (the same options) as a block that yields its Report, for a caller that writes the
    report at once: the media child's last work, the text of the streams that the JSON report ends with, goes
    on while the caller writes the report's first parts, and the child is ended when the block ends (the CLI;
    at 1M packets the caller no longer waits about 20 ms for it).  With ``json_ahead``, for a caller that writes
    the report as JSON: the flows' JSON texts are made while the judging waits for the media child (1M packets:
    10-20 ms of the 25 they take), and ``Report.write_json`` writes them.  The Report stays valid after the block."""
    with ExitStack() as later:
        yield _reports(source, [profile], later=later, json_ahead=json_ahead, **options)[0]


def _reports(source, profiles, *, service_tags=None, m365_endpoints=None, webslates=(), webslate_allow=(),
             cloud_scripting=(), rules=None, fail_on="missing", use_cache=True, as_of=None, quality=True,
             quality_targets=None, max_flows=None, later: ExitStack | None = None, json_ahead: bool = False) -> list:
    """One Report per profile of ``profiles`` over one reading of ``source`` (the body of :func:`analyze`
    and :func:`analyze_profiles`): every option is checked and every reference file loaded before the
    capture is read, so that a bad option fails fast; the read is begun first all the same (its walk goes
    on meanwhile, see :func:`begin_read`), and ended unread when an option is refused."""
    begun = None if isinstance(source, FlowTable) else begin_read(source, media=quality, max_flows=max_flows)
    try:
        return _judged_reports(source, begun, profiles, service_tags, m365_endpoints, webslates, webslate_allow,
                               cloud_scripting, rules, fail_on, use_cache, as_of, quality, quality_targets, max_flows,
                               later, json_ahead)
    finally:
        if isinstance(begun, _Begun):
            begun.close()


def _judged_reports(source, begun, profiles, service_tags, m365_endpoints, webslates, webslate_allow, cloud_scripting,
                    rules, fail_on, use_cache, as_of, quality, quality_targets, max_flows, outer=None,
                    json_ahead: bool = False) -> list:
    from .classify import FAIL_ON
    from .errors import MeshpcapError
    from .rules import cached_service_tags, load_service_tags

    if fail_on not in FAIL_ON:
        raise MeshpcapError(f"--fail-on: '{fail_on}' is not one of {', '.join(FAIL_ON)}")
    if not profiles:
        raise MeshpcapError("--profile: give at least one profile to compare")
    as_of = _as_of(as_of)
    addons = (m365_endpoints, _items(webslates, "webslates"), _items(webslate_allow, "webslate_allow"),
              _items(cloud_scripting, "cloud_scripting"), rules)
    loaded = [None if p == "auto" else load_rules(p, *addons, use_cache=use_cache) for p in profiles]
    tags_path = service_tags if service_tags is not None else (cached_service_tags() if use_cache else None)
    tags = load_service_tags(tags_path) if tags_path is not None else None
    targets = None
    if quality:
        from .classify.quality import load_targets

        targets = load_targets(quality_targets)
    reports = []
    # the media statistics may go on beside the naming and judging (see MediaCollector.beside), and with ``outer``
    # (analyzing) their rendering beside the writing of the report too, until that block ends
    with ExitStack() as own:
        later = own if outer is None else outer
        ft, take_media = (source, None) if isinstance(source, FlowTable) else _read_table(
            source, media=media_collector(targets), max_flows=max_flows, later=later, render=_renderers(targets),
            begun=begun)
        for prof in loaded:
            prof, notices = profile_for_date(prof, ft, as_of, addons, use_cache)
            reports.append(judge_table(ft, prof, notices, tags, tags_path, fail_on, targets, take_media, json_ahead))
            take_media = None
    if _retained is not None:
        _retained.extend(reports)
    return reports


def _renderers(targets) -> dict | None:
    """What the report makes of the media result that can be made beside, with it (see MediaCollector.beside):
    the text of its streams table."""
    if targets is None:
        return None
    from .report.analysis import STREAMS_JSON, streams_json

    return {STREAMS_JSON: streams_json}


def media_collector(targets):
    """A media collector with the targets' options, or None when quality is off."""
    if targets is None:
        return None
    from .flows.media import MediaCollector

    return MediaCollector(targets.options)


def judge_table(ft, prof, notices, tags, tags_path, fail_on, targets=None, take_media=None, json_ahead=False):
    """Judge a FlowTable already read against one profile (shared by analyze and analyze_profiles);
    ``targets``: the media-quality targets (None: no quality judging); ``take_media``: what gives
    ``ft.media`` once the flows are judged, when the read left it to come (:func:`_read_table`); with
    ``json_ahead``, the flows' JSON texts are made while it waits (see :func:`analyzing`)."""
    from .classify import judge
    from .report.analysis import Report
    from .report.firewall import rule_allow
    from .rules.match import RuleMatcher

    matcher = RuleMatcher(prof.rules, tags)
    judgement = judge(ft, prof, matcher, tags is not None, fail_on)
    ahead = None
    if take_media is not None:
        if json_ahead:  # while the media child works on: the flows' JSON texts (the media adds findings, not verdicts)
            from .report.analysis import FlowTexts

            ahead = FlowTexts(judgement.flows, ft.flows)
        ft.media = take_media(None if ahead is None else ahead.step)
    judged_quality = None
    if targets is not None and ft.media is not None:
        from .classify.quality import add_to_judgement, judge_quality

        judged_quality = judge_quality(ft.media, judgement, targets, ft.capture.get("first_ns"))
        add_to_judgement(judgement, judged_quality, fail_on)
    profile_info = {
        "id": prof.id,
        "title": prof.title,
        "source": prof.source,
        "date": prof.date.isoformat() if prof.date else None,
        "url": prof.url,
        "rules": len(prof.rules),
        "allow": [rule_allow(r) for r in prof.rules],  # each rule in full, for the firewall-ready lists
    }
    if prof.endpoints_version is not None:
        profile_info["endpoints"] = {"version": prof.endpoints_version,
                                     "file": prof.endpoints_file.name if prof.endpoints_file else None}
    if notices:
        profile_info["notices"] = notices
    tags_info = None
    if tags is not None:
        from .classify.snapshots import distance_warning, snapshot_date

        snap, how = snapshot_date(tags.date, tags.cloud, tags.change_number)
        tags_info = {
            "file": str(tags_path),
            "date": snap.isoformat() if snap else None,
            "date_from": how,
            "change_number": tags.change_number,
            "cloud": tags.cloud,
            "warning": distance_warning(snap, ft.capture.get("first_ns"), ft.capture.get("last_ns")),
        }
    return Report(ft, judgement, profile_info, tags_info, {"fail_on": fail_on}, judged_quality, ahead)


def analyze_profiles(
    source,
    profiles: list[str] | tuple[str, ...],
    service_tags: str | os.PathLike | None = None,
    m365_endpoints: str | os.PathLike | None = None,
    webslates: tuple[str, ...] | list[str] = (),
    webslate_allow: tuple[str, ...] | list[str] = (),
    cloud_scripting: tuple[str, ...] | list[str] | str | None = (),
    rules: str | os.PathLike | None = None,
    fail_on: str = "missing",
    use_cache: bool = True,
    as_of=None,
    quality: bool = True,
    quality_targets: str | os.PathLike | None = None,
    max_flows: int | None = None,
):
    """Judge one capture under several profiles; a :class:`meshpcap.report.compare.Comparison`.

    ``source`` is a capture path or a :class:`FlowTable` already read: the capture is read once
    and each profile (``"auto"`` allowed; add-ons apply to every one) judges the same flows.
    ``comparison.reports`` holds one Report per profile, in the order given.
    """
    from .report.compare import Comparison

    reports = _reports(source, list(profiles), service_tags=service_tags, m365_endpoints=m365_endpoints,
                       webslates=webslates, webslate_allow=webslate_allow, cloud_scripting=cloud_scripting,
                       rules=rules, fail_on=fail_on, use_cache=use_cache, as_of=as_of, quality=quality,
                       quality_targets=quality_targets, max_flows=max_flows)
    return Comparison(reports, fail_on)


def _as_of(value):
    """``as_of`` as a date (a date, or ``"YYYY-MM-DD"``), checked before the capture is read."""
    from .rules.periods import parse_as_of

    if value is None or hasattr(value, "isoformat"):
        return value
    return parse_as_of(str(value))


def profile_for_date(prof, ft, as_of, addons, use_cache):
    """(profile, notices): ``prof`` (None for ``--profile auto``: the one in force on the date) and
    what the report must say about the fit between its dates and the capture's."""
    from .errors import MeshpcapError
    from .rules.periods import capture_date, in_force, profile_notice

    on = as_of if as_of is not None else capture_date(ft.capture.get("first_ns"))
    notices = []
    if prof is None:
        if on is None:
            raise MeshpcapError("--profile auto: the capture has no packets to date it; give --as-of YYYY-MM-DD")
        chosen = in_force(on)
        prof = load_rules(chosen.id, *addons, use_cache=use_cache)
        what = f"the date given ({on})" if as_of is not None else f"this capture's date ({on})"
        notices.append({"kind": "auto", "date": on.isoformat(), "in_force": prof.id,
                        "text": f"--profile auto: `{prof.id}` is the profile in force on {what}"})
    notice = profile_notice(prof, on, as_of=as_of is not None)
    if notice is not None:
        notices.append(notice.to_dict())
    return prof, notices


def explain(path: str | os.PathLike, flow_id: int, profile: str = "multi-room", wireshark: bool = True, **kwargs):
    """Everything known about one flow of a capture (a ``meshpcap.explain/1`` dict): its packets
    (a second, filtered read of the capture), handshake, DNS lookups, rule, verdict and reasoning,
    and Wireshark's dissection of its first packets when tshark is installed.  ``kwargs`` are
    :func:`analyze`'s."""
    from .report.explain import explain_document

    report = analyze(path, profile=profile, **kwargs)
    return explain_document(report, int(flow_id), path, wireshark=wireshark)
