"""The ``meshpcap`` command: a thin layer over the library (exit 0 pass, 1 fail, 2 bad input, 3 inconclusive)."""

from __future__ import annotations

import gc
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from .errors import MeshpcapError
from .report.formats import FlowFormat, ReportFormat


class FailOn(str, Enum):
    blocked = "blocked"
    missing = "missing"
    unexpected = "unexpected"
    degraded = "degraded"
    warning = "warning"
    never = "never"


class ProfilesFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"

def _root() -> None:
    """meshpcap: judge a capture against Microsoft's published firewall requirements."""


def _typer() -> typer.Typer:
    """The ``meshpcap`` group, without commands yet."""
    group = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                        help="Check packet captures of Microsoft Mesh and Teams sessions against Microsoft's "
                             "firewall requirements.")
    group.callback()(_root)
    return group


app = _typer()


def _write(text: str, output: Optional[Path]) -> None:
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MeshpcapError(f"{output}: cannot write: {exc.strerror or exc}") from None


def _write_stream(write_to, output: Optional[Path]) -> None:
    """``write_to(write)`` writes the output in pieces, to standard output or to ``output``."""
    if output is None or str(output) == "-":
        write_to(sys.stdout.write)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            write_to(f.write)
    except OSError as exc:
        raise MeshpcapError(f"{output}: cannot write: {exc.strerror or exc}") from None


DEFAULT_MAX_FLOWS = 10_000_000  # flows.engine.DEFAULT_MAX_FLOWS (not imported here: numpy would slow `--help`)
_MAX_FLOWS_HELP = ("stop with one line (exit 2) when the capture has more flows than this (0: no limit); each "
                   "flow needs about 1 KB of memory")


def _fail(exc: BaseException) -> None:
    from .report.sanitize import terminal_text  # a file name in the message is text from outside: one line, no escapes

    typer.echo(f"meshpcap: {terminal_text(exc)}", err=True)
    raise typer.Exit(2)


@app.command()
def flows(
    capture: Path = typer.Argument(..., help="pcap or pcapng file (gzip/zstd compressed is fine)"),
    format: Optional[FlowFormat] = typer.Option(None, "--format", "-f", help="table, json or csv "
                                                "(default: from the -o file's extension, else table)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output "
                                          "(never the capture itself)"),
    no_names: bool = typer.Option(False, "--no-names", help="skip naming (SNI, QUIC, DNS, HTTP, STUN): flows only"),
    max_flows: int = typer.Option(DEFAULT_MAX_FLOWS, "--max-flows", min=0, help=_MAX_FLOWS_HELP),
) -> None:
    """List the flows of a capture, oriented client -> server, with names and outcomes."""
    from .pipeline import read_flows
    from .report.flows import write_flows

    try:
        _not_the_capture(output, capture)
        fmt = _output_format(format, output, _FLOW_EXTENSIONS)
        ft = read_flows(capture, names=not no_names, max_flows=max_flows)
        _write_stream(lambda write: write_flows(ft, fmt, write), output)
    except MeshpcapError as exc:
        _fail(exc)


# what ``-o FILE`` without ``--format`` writes, by the file's extension (any other is refused)
_REPORT_EXTENSIONS = {".json": ReportFormat.json, ".csv": ReportFormat.csv, ".md": ReportFormat.markdown,
                      ".markdown": ReportFormat.markdown, ".txt": ReportFormat.table,
                      ".html": ReportFormat.html, ".htm": ReportFormat.html}
_FLOW_EXTENSIONS = {".json": FlowFormat.json, ".csv": FlowFormat.csv, ".txt": FlowFormat.table}


def _output_format(given: Optional[Enum], output: Optional[Path], extensions: dict) -> Enum:
    """``--format`` when given; else the one ``-o FILE``'s extension names; else the table."""
    if given is not None:
        return given
    if output is None or str(output) == "-":
        return extensions[".txt"]
    ext = output.suffix.lower()
    if ext in extensions:
        return extensions[ext]
    raise MeshpcapError(f"{output}: cannot tell the format from the extension '{ext or '(none)'}' "
                        f"(known: {', '.join(sorted(extensions))}): give --format")


def _not_the_capture(output: Optional[Path], capture) -> None:
    """``-o`` must never overwrite the capture being read (or any file of a series)."""
    if isinstance(capture, list):
        for one in capture:
            _not_the_capture(output, Path(one))
        return
    if output is None or str(output) == "-" or str(capture) == "-":
        return
    try:
        same = output.exists() and capture.exists() and os.path.samefile(output, capture)
    except OSError:
        same = False
    if same or output.resolve() == capture.resolve():
        raise MeshpcapError(f"{output}: is the capture being read; refusing to overwrite it (choose another -o)")


@app.command()
def analyze(
    captures: Optional[List[Path]] = typer.Argument(None, help="pcap or pcapng file of the session ('-': standard "
                                                    "input); several files that continue one another are one capture"),
    series: Optional[Path] = typer.Option(None, "--series", help="a directory of files that continue one another "
                                          "(ring buffer, split capture), read as one capture"),
    profile: List[str] = typer.Option([], "--profile", "-p", help="rule set (default multi-room): see `meshpcap "
                                      "profiles`; `auto`: the one in force on the capture's date (or --as-of); "
                                      "repeat it to compare the capture under several side by side"),
    service_tags: Optional[Path] = typer.Option(None, "--service-tags", help="ServiceTags_Public_YYYYMMDD.json "
                                                "(default: the copy cached by `meshpcap tags update`)"),
    m365_endpoints: Optional[Path] = typer.Option(None, "--m365-endpoints", help="Microsoft 365 endpoints JSON "
                                                  "(endpoints/worldwide download) for the Teams rows"),
    webslate: List[str] = typer.Option([], "--webslate", help="URL a WebSlate renders (repeatable)"),
    webslate_allow: List[str] = typer.Option([], "--webslate-allow", help="a WebSlate's allowed domain (repeatable)"),
    cloud_scripting: List[str] = typer.Option([], "--cloud-scripting", help="cloud scripting app name (APP.azurewebsites.net)"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="extra rules of your organisation (TOML)"),
    format: Optional[ReportFormat] = typer.Option(None, "--format", "-f", help="table, json, csv, markdown or html "
                                                  "(default: from the -o file's extension, else table)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output "
                                          "(never the capture itself)"),
    show_unrelated: bool = typer.Option(False, "--show-unrelated", help="also list flows unrelated to the profile"),
    fail_on: FailOn = typer.Option(FailOn.missing, "--fail-on", help="exit 1 on error-severity findings of this "
                                   "kind or a kind before it: blocked > missing > unexpected > degraded (media "
                                   "quality, whose findings are warnings); warning: strict, any finding or capture "
                                   "warning; never (default: missing = blocked or missing)"),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="judge as of this date (YYYY-MM-DD; default: the "
                                        "capture's first packet): says when the profile was superseded or retired"),
    quality: bool = typer.Option(True, "--quality/--no-quality", help="measure media streams (RTP) and round-trip "
                                 "times and judge them against Microsoft's targets"),
    quality_targets: Optional[Path] = typer.Option(None, "--quality-targets", help="media quality targets (TOML; "
                                                   "default: Microsoft's Teams client-to-edge targets)"),
    streams_csv: Optional[Path] = typer.Option(None, "--streams-csv", help="also write the media streams table "
                                               "(one row per RTP stream) as CSV to this file"),
    max_flows: int = typer.Option(DEFAULT_MAX_FLOWS, "--max-flows", min=0, help=_MAX_FLOWS_HELP),
) -> None:
    """Judge a capture against Microsoft's requirements: blocked, unexpected and missing flows, with fixes.

    Exit codes: 0 pass, 1 fail (findings at or above --fail-on), 2 bad input, 3 inconclusive (the capture
    cannot show a session: no packets, nothing decodable, nothing the profile covers; or it cannot tell
    whether an expected group worked). With several --profile options the exit code follows the first one."""
    from .pipeline import analyzing as run

    try:
        capture = _captures(captures, series)
    except MeshpcapError as exc:
        _fail(exc)
    if len(profile) > 1:
        _compare(capture, profile, format, output, fail_on.value, service_tags=service_tags,
                 m365_endpoints=m365_endpoints, webslates=webslate, webslate_allow=webslate_allow,
                 cloud_scripting=cloud_scripting, rules=rules, as_of=as_of, quality=quality,
                 quality_targets=quality_targets, max_flows=max_flows)
        return
    try:
        _not_the_capture(output, capture)
        fmt = _output_format(format, output, _REPORT_EXTENSIONS)
        # written while the block lasts: the media child's text of the streams comes meanwhile (see analyzing)
        with run(capture, profile=profile[0] if profile else "multi-room", service_tags=service_tags,
                 m365_endpoints=m365_endpoints,
                 webslates=webslate, webslate_allow=webslate_allow, cloud_scripting=cloud_scripting,
                 rules=rules, fail_on=fail_on.value, as_of=as_of, quality=quality,
                 quality_targets=quality_targets, max_flows=max_flows, json_ahead=fmt == ReportFormat.json) as report:
            # JSON is for machines and carries every flow; the other formats list unrelated flows on request
            show = show_unrelated or fmt == ReportFormat.json
            if fmt == ReportFormat.json:  # written in pieces: millions of flows are never one text
                _write_stream(lambda write: report.write_json(write, show), output)
            else:  # imported after the run, whose read begins before the report modules load (see pipeline.begin_read)
                from .report.analysis import render_report

                _write(render_report(report, fmt, show), output)
            if streams_csv is not None:
                from .report.analysis import render_streams_csv

                _not_the_capture(streams_csv, capture)
                _write(render_streams_csv(report), streams_csv)
    except MeshpcapError as exc:
        _fail(exc)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


def _compare(capture: Path, profiles: List[str], format, output: Optional[Path], fail_on: str, **kwargs) -> None:
    """`analyze` with several --profile options: one reading, a side-by-side table; exit code of the first."""
    from . import analyze_profiles
    from .report.compare import render_compare

    try:
        _not_the_capture(output, capture)
        fmt = _output_format(format, output, _REPORT_EXTENSIONS)
        comparison = analyze_profiles(capture, profiles, fail_on=fail_on, **kwargs)
        _write(render_compare(comparison, fmt.value), output)
    except MeshpcapError as exc:
        _fail(exc)
    code = comparison.reports[0].exit_code
    if code:
        raise typer.Exit(code)


def _captures(captures: Optional[List[Path]], series: Optional[Path]) -> Path | list[str]:
    """The one capture, or the files of a series (``--series DIR`` and/or several arguments)."""
    paths = [str(p) for p in captures or []]
    if series is not None:
        from .capture.series import series_in

        paths += series_in(series)
    if not paths:
        raise MeshpcapError("no capture given: name a file, '-' for standard input, or --series DIR")
    return Path(paths[0]) if len(paths) == 1 else paths


@app.command()
def explain(
    capture: Path = typer.Argument(..., help="pcap or pcapng file"),
    flow_id: int = typer.Argument(..., help="flow id, as `meshpcap analyze` or `meshpcap flows` numbers it"),
    profile: str = typer.Option("multi-room", "--profile", "-p", help="rule set: see `meshpcap profiles`"),
    service_tags: Optional[Path] = typer.Option(None, "--service-tags", help="ServiceTags_Public_YYYYMMDD.json "
                                                "(default: the cached copy)"),
    m365_endpoints: Optional[Path] = typer.Option(None, "--m365-endpoints", help="Microsoft 365 endpoints JSON"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="extra rules of your organisation (TOML)"),
    format: FlowFormat = typer.Option(FlowFormat.table, "--format", "-f", help="table (text) or json"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output"),
    no_wireshark: bool = typer.Option(False, "--no-wireshark", help="skip tshark's dissection of the first packets"),
) -> None:
    """Everything known about one flow: packets, handshake, DNS, rule, verdict and why, Wireshark's view."""
    import json

    from . import explain as run
    from .report.explain import render_text

    try:
        if format == FlowFormat.csv:
            raise MeshpcapError("explain: --format is table or json")
        doc = run(capture, flow_id, profile=profile, service_tags=service_tags, m365_endpoints=m365_endpoints,
                  rules=rules, wireshark=not no_wireshark)
        _write(json.dumps(doc, indent=2) + "\n" if format == FlowFormat.json else render_text(doc), output)
    except MeshpcapError as exc:
        _fail(exc)


def _verdict_line(row: dict) -> str:
    """One line per capture of a batch, as it finishes."""
    v = (row.get("verdict") or "error").upper()
    if v == "ERROR":
        error = str(row.get("error"))
        return "ERROR " + (error if error.startswith(f"{row['capture']}: ") else f"{row['capture']}: {error}")
    kinds = ", ".join(f"{row.get(k) or 0} {k}" for k in ("blocked", "missing", "unexpected"))
    extra = " (cached)" if row.get("cached") else f", {row.get('seconds') or 0:.2f} s"
    return f"{v:<5} {row['capture']}: {kinds}; {row.get('flows')} flows{extra}"


@app.command()
def batch(
    paths: List[str] = typer.Argument(..., help="capture files, globs, or directories (searched for captures "
                                      "by their bytes)"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="worker processes (default: one per core)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="audit.parquet (a directory of one file per "
                                          "table), audit.csv (+ .flows.csv, .findings.csv) or audit.json"),
    dask: Optional[str] = typer.Option(None, "--dask", help="run on this Dask scheduler (tcp://HOST:8786)"),
    force: bool = typer.Option(False, "--force", help="analyse again even captures whose result is cached"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="result cache directory (default: the user cache)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="neither read nor write cached results"),
    no_progress: bool = typer.Option(False, "--no-progress", help="no progress bar (none anyway when stderr is not "
                                     "a terminal)"),
    timeout: float = typer.Option(600.0, "--timeout", min=0.1, help="seconds one capture may take"),
    memory_limit: int = typer.Option(4096, "--memory-limit", min=64, help="MiB of memory one capture may use "
                                     "beyond its worker (plus the file's size)"),
    profile: str = typer.Option("multi-room", "--profile", "-p", help="rule set: see `meshpcap profiles`"),
    service_tags: Optional[Path] = typer.Option(None, "--service-tags", help="ServiceTags_Public_YYYYMMDD.json "
                                                "(default: the copy cached by `meshpcap tags update`)"),
    m365_endpoints: Optional[Path] = typer.Option(None, "--m365-endpoints", help="Microsoft 365 endpoints JSON"),
    webslate: List[str] = typer.Option([], "--webslate", help="URL a WebSlate renders (repeatable)"),
    webslate_allow: List[str] = typer.Option([], "--webslate-allow", help="a WebSlate's allowed domain (repeatable)"),
    cloud_scripting: List[str] = typer.Option([], "--cloud-scripting", help="cloud scripting app name"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="extra rules of your organisation (TOML)"),
    fail_on: FailOn = typer.Option(FailOn.missing, "--fail-on", help="as for analyze"),
) -> None:
    """Audit many captures: one verdict line per capture as it finishes, then the fleet summary.

    Exit codes: 0 every capture passed, 1 at least one failed, 2 bad input (bad options, no
    capture found, or at least one capture could not be audited and none failed), 3 at least one
    was inconclusive and none failed or could not be audited."""
    from .batch import analyze_many, write_output

    if output is not None and not str(output).endswith((".parquet", ".csv", ".json")):
        _fail(MeshpcapError(f"{output}: output must end in .parquet, .csv or .json"))
    try:
        found_any = False

        def line(row: dict) -> None:
            nonlocal found_any
            found_any = True
            print(_verdict_line(row), flush=True)

        result = analyze_many(
            paths, jobs=jobs, client=dask, progress=False if no_progress else None,
            cache=None if no_cache else (cache or True), force=force, timeout=timeout,
            memory_limit=memory_limit << 20, on_result=line, profile=profile, service_tags=service_tags,
            m365_endpoints=m365_endpoints, webslates=webslate, webslate_allow=webslate_allow,
            cloud_scripting=cloud_scripting, rules=rules, fail_on=fail_on.value)
        if not len(result.captures):
            raise MeshpcapError(f"{' '.join(paths)}: no capture found")
        typer.echo("")
        typer.echo(str(result.summary()), nl=False)
        if output is not None:
            try:
                written = write_output(result, output)
            except ImportError as exc:
                raise MeshpcapError(f"{output}: needs {exc.name}: pip install 'meshpcap[parquet]'") from None
            except OSError as exc:
                raise MeshpcapError(f"{output}: cannot write: {exc.strerror or exc}") from None
            typer.echo(f"written: {', '.join(map(str, written))}", err=True)
    except MeshpcapError as exc:
        _fail(exc)
    raise typer.Exit({"pass": 0, "fail": 1, "error": 2, "inconclusive": 3}[result.verdict])


@app.command()
def profiles(
    format: ProfilesFormat = typer.Option(ProfilesFormat.table, "--format", "-f", help="table, json or csv"),
) -> None:
    """List the rule sets: when each was in force (with the source of each date), source and notes."""
    from .report.profiles import render_profiles
    from .rules import list_profiles
    from .rules.periods import profile_period

    try:
        rows = [profile_period(p) for p in list_profiles()]
    except MeshpcapError as exc:
        _fail(exc)
    _write(render_profiles(rows, format.value), None)


tags_app = typer.Typer(no_args_is_help=True, help="Azure service-tag snapshots: download and look up.")
app.add_typer(tags_app, name="tags")


@tags_app.command("update")
def tags_update(
    url: str = typer.Option("https://www.microsoft.com/en-us/download/details.aspx?id=56519", "--url",
                            help="download page that links the dated JSON"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache directory (default: the user cache)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds per request"),
) -> None:
    """Download the current ServiceTags_Public JSON into the cache (the old copy is kept on failure)."""
    from .rules.update import update_service_tags

    try:
        path, date, change = update_service_tags(url, cache=cache, timeout=timeout)
    except MeshpcapError as exc:
        _fail(exc)
    typer.echo(f"{path}: date {date}, changeNumber {change}")


@tags_app.command("import")
def tags_import(
    file: Path = typer.Argument(..., help="a ServiceTags_Public_YYYYMMDD.json copied by hand"),
    date: Optional[str] = typer.Option(None, "--date", help="the snapshot's date (YYYY-MM-DD) when the name has none"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache directory (default: the user cache)"),
) -> None:
    """Check a service-tag file and put it in the cache (for machines without internet access)."""
    from .rules.periods import parse_as_of
    from .rules.update import import_service_tags

    try:
        stamp = None
        if date is not None:
            try:
                stamp = parse_as_of(date)
            except MeshpcapError:
                raise MeshpcapError(f"--date: '{date}' is not a date (YYYY-MM-DD)") from None
        path, when, change = import_service_tags(file, cache=cache, snapshot=stamp)
    except MeshpcapError as exc:
        _fail(exc)
    typer.echo(f"{path}: date {when}, changeNumber {change}")


@tags_app.command("which")
def tags_which(
    addresses: List[str] = typer.Argument(..., help="IPv4 or IPv6 addresses"),
    service_tags: Optional[Path] = typer.Option(None, "--service-tags", help="snapshot (default: the cached one)"),
) -> None:
    """List every service tag that contains each address."""
    import ipaddress

    from .rules import cached_service_tags, load_service_tags

    try:
        path = service_tags or cached_service_tags()
        if path is None:
            raise MeshpcapError("no service-tag snapshot: give --service-tags FILE or run `meshpcap tags update`")
        for a in addresses:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise MeshpcapError(f"'{a}' is not an IPv4 or IPv6 address") from None
        tags = load_service_tags(path)
        for a, found in zip(addresses, tags.tags_for_many(addresses)):
            typer.echo(f"{a}: {', '.join(found) if found else '(no tag)'}")
    except MeshpcapError as exc:
        _fail(exc)


endpoints_app = typer.Typer(no_args_is_help=True, help="Microsoft 365 endpoints (the Teams rows): download and import.")
app.add_typer(endpoints_app, name="endpoints")


@endpoints_app.command("update")
def endpoints_update(
    url: str = typer.Option("https://endpoints.office.com", "--url", help="the endpoints web service"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache directory (default: the user cache)"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds per request"),
    force: bool = typer.Option(False, "--force", help="download even when the cache holds the latest version"),
) -> None:
    """Ask the endpoints web service for its version and download the worldwide endpoints into the cache
    (checked first; a failed or malformed download keeps the old copy). Profiles with `use_cache`
    (teams, single-room, mesh-2024-10) then judge by it when it is newer than their shipped rows."""
    from .rules.update import update_m365_endpoints

    try:
        path, version, downloaded = update_m365_endpoints(url, cache=cache, timeout=timeout, force=force)
    except MeshpcapError as exc:
        _fail(exc)
    typer.echo(f"{path}: version {version}" + ("" if downloaded else " (already the latest; nothing downloaded)"))


@endpoints_app.command("import")
def endpoints_import(
    file: Path = typer.Argument(..., help="an endpoints/worldwide JSON copied by hand"),
    version: Optional[str] = typer.Option(None, "--version", help="its version YYYYMMDDNN (default: from the name)"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="cache directory (default: the user cache)"),
) -> None:
    """Check an endpoints file and put it in the cache (for machines without internet access)."""
    from .rules.update import import_m365_endpoints

    try:
        path, v = import_m365_endpoints(file, version=version, cache=cache)
    except MeshpcapError as exc:
        _fail(exc)
    typer.echo(f"{path}: version {v}")


def app_for(args: list[str]) -> typer.Typer:
    """The app for one run with these arguments: the group with only the command ``args`` name first (the
    same command, options and help), else :data:`app`. Typer builds the options of every command it holds
    from the functions' signatures at each start (about 10 ms for all of them); a run needs one."""
    for info in app.registered_commands:
        if args and info.name is None and info.callback is not None and info.callback.__name__ == args[0]:
            one = _typer()
            one.command()(info.callback)
            return one
    return app


def main() -> None:
    # One command, then the process ends: the cyclic garbage collector would only walk the
    # ever larger heap of flows and payloads again and again (the objects made here hold no
    # reference cycles worth collecting; memory is returned when the process exits), and
    # what the reading stage built is left for the exit to drop rather than freed piece by piece.
    gc.disable()
    from .pipeline import retain_until_exit

    retain_until_exit()
    try:
        app_for(sys.argv[1:])()  # click's standalone mode ends with SystemExit
        code = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # The flows and payloads of a large capture are hundreds of thousands of objects, and the
    # process ends now: leave without freeing them one by one (tens of milliseconds of
    # interpreter teardown).  Output is flushed first; files were closed by the commands.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        code = code or 1
    os._exit(code)


if __name__ == "__main__":
    main()
