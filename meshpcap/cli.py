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
    warning = "warning"
    never = "never"


class ProfilesFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Check packet captures of Microsoft Mesh and Teams sessions against Microsoft's firewall requirements.")


@app.callback()
def _root() -> None:
    """meshpcap: judge a capture against Microsoft's published firewall requirements."""


def _write(text: str, output: Optional[Path]) -> None:
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MeshpcapError(f"{output}: cannot write: {exc.strerror or exc}") from None


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
) -> None:
    """List the flows of a capture, oriented client -> server, with names and outcomes."""
    from . import read_flows
    from .report.flows import render_flows

    try:
        _not_the_capture(output, capture)
        fmt = _output_format(format, output, _FLOW_EXTENSIONS)
        ft = read_flows(capture, names=not no_names)
        _write(render_flows(ft, fmt), output)
    except MeshpcapError as exc:
        _fail(exc)


# what ``-o FILE`` without ``--format`` writes, by the file's extension (any other is refused)
_REPORT_EXTENSIONS = {".json": ReportFormat.json, ".csv": ReportFormat.csv, ".md": ReportFormat.markdown,
                      ".markdown": ReportFormat.markdown, ".txt": ReportFormat.table}
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


def _not_the_capture(output: Optional[Path], capture: Path) -> None:
    """``-o`` must never overwrite the capture being read."""
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
    capture: Path = typer.Argument(..., help="pcap or pcapng file of the session"),
    profile: str = typer.Option("multi-room", "--profile", "-p", help="rule set: see `meshpcap profiles`"),
    service_tags: Optional[Path] = typer.Option(None, "--service-tags", help="ServiceTags_Public_YYYYMMDD.json "
                                                "(default: the copy cached by `meshpcap tags update`)"),
    m365_endpoints: Optional[Path] = typer.Option(None, "--m365-endpoints", help="Microsoft 365 endpoints JSON "
                                                  "(endpoints/worldwide download) for the Teams rows"),
    webslate: List[str] = typer.Option([], "--webslate", help="URL a WebSlate renders (repeatable)"),
    webslate_allow: List[str] = typer.Option([], "--webslate-allow", help="a WebSlate's allowed domain (repeatable)"),
    cloud_scripting: List[str] = typer.Option([], "--cloud-scripting", help="cloud scripting app name (APP.azurewebsites.net)"),
    rules: Optional[Path] = typer.Option(None, "--rules", help="extra rules of your organisation (TOML)"),
    format: Optional[ReportFormat] = typer.Option(None, "--format", "-f", help="table, json, csv or markdown "
                                                  "(default: from the -o file's extension, else table)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output "
                                          "(never the capture itself)"),
    show_unrelated: bool = typer.Option(False, "--show-unrelated", help="also list flows unrelated to the profile"),
    fail_on: FailOn = typer.Option(FailOn.missing, "--fail-on", help="exit 1 on error-severity findings of this "
                                   "kind or a kind before it: blocked > missing > unexpected; warning: strict, any "
                                   "finding or capture warning; never (default: missing = blocked or missing)"),
) -> None:
    """Judge a capture against Microsoft's requirements: blocked, unexpected and missing flows, with fixes.

    Exit codes: 0 pass, 1 fail (findings at or above --fail-on), 2 bad input, 3 inconclusive (the capture
    cannot show a session: no packets, nothing decodable, nothing the profile covers; or it cannot tell
    whether an expected group worked)."""
    from . import analyze as run
    from .report.analysis import render_report

    try:
        _not_the_capture(output, capture)
        fmt = _output_format(format, output, _REPORT_EXTENSIONS)
        report = run(capture, profile=profile, service_tags=service_tags, m365_endpoints=m365_endpoints,
                     webslates=webslate, webslate_allow=webslate_allow, cloud_scripting=cloud_scripting,
                     rules=rules, fail_on=fail_on.value)
        # JSON is for machines and carries every flow; the other formats list unrelated flows on request
        show = show_unrelated or fmt == ReportFormat.json
        _write(render_report(report, fmt, show), output)
    except MeshpcapError as exc:
        _fail(exc)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


@app.command()
def profiles(
    format: ProfilesFormat = typer.Option(ProfilesFormat.table, "--format", "-f", help="table, json or csv"),
) -> None:
    """List the rule sets with their date and source."""
    import csv
    import io
    import json

    from tabulate import tabulate

    from .rules import list_profiles

    try:
        items = list_profiles()
    except MeshpcapError as exc:
        _fail(exc)
    data = [{"id": p.id, "date": p.date.isoformat() if p.date else None, "rules": len(p.rules),
             "default": p.default, "title": p.title, "source": p.source} for p in items]
    if format == ProfilesFormat.json:
        typer.echo(json.dumps(data, indent=2))
        return
    if format == ProfilesFormat.csv:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(data[0]) if data else ["id"], lineterminator="\n")
        w.writeheader()
        w.writerows({k: ("true" if v is True else "false" if v is False else v) for k, v in d.items()} for d in data)
        sys.stdout.write(buf.getvalue())
        return
    rows = [[d["id"] + (" (default)" if d["default"] else ""), d["date"], d["rules"], d["title"]] for d in data]
    typer.echo(tabulate(rows, ["profile", "date", "rules", "title"], tablefmt="simple"))
    typer.echo("")
    for d in data:
        typer.echo(f"{d['id']}: {d['source']}")


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


def main() -> None:
    # One command, then the process ends: the cyclic garbage collector would only walk the
    # ever larger heap of flows and payloads again and again (the objects made here hold no
    # reference cycles worth collecting; memory is returned when the process exits), and
    # what the reading stage built is left for the exit to drop rather than freed piece by piece.
    gc.disable()
    from .pipeline import retain_until_exit

    retain_until_exit()
    try:
        app()  # click's standalone mode ends with SystemExit
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
