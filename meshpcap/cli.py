"""The ``meshpcap`` command: a thin layer over the library (exit 0 clean, 1 findings, 2 bad input)."""

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
    never = "never"

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
    typer.echo(f"meshpcap: {exc}", err=True)
    raise typer.Exit(2)


@app.command()
def flows(
    capture: Path = typer.Argument(..., help="pcap or pcapng file (gzip/zstd compressed is fine)"),
    format: FlowFormat = typer.Option(FlowFormat.table, "--format", "-f", help="table, json or csv"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output"),
    no_names: bool = typer.Option(False, "--no-names", help="skip naming (SNI, QUIC, DNS, HTTP, STUN): flows only"),
    max_flows: int = typer.Option(DEFAULT_MAX_FLOWS, "--max-flows", min=0, help=_MAX_FLOWS_HELP),
) -> None:
    """List the flows of a capture, oriented client -> server, with names and outcomes."""
    from .pipeline import read_flows
    from .report.flows import write_flows

    try:
        ft = read_flows(capture, names=not no_names, max_flows=max_flows)
        _write_stream(lambda write: write_flows(ft, format, write), output)
    except MeshpcapError as exc:
        _fail(exc)


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
    format: ReportFormat = typer.Option(ReportFormat.table, "--format", "-f", help="table, json, csv or markdown"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output"),
    show_unrelated: bool = typer.Option(False, "--show-unrelated", help="also list flows unrelated to the profile"),
    fail_on: FailOn = typer.Option(FailOn.missing, "--fail-on", help="exit 1 when findings at or above this kind "
                                   "exist: blocked > missing > unexpected; never (default: blocked or missing)"),
    max_flows: int = typer.Option(DEFAULT_MAX_FLOWS, "--max-flows", min=0, help=_MAX_FLOWS_HELP),
) -> None:
    """Judge a capture against Microsoft's requirements: blocked, unexpected and missing flows, with fixes.

    Exit codes: 0 nothing at or above --fail-on, 1 findings, 2 bad input."""
    from . import analyze as run
    from .classify import failing
    from .report.analysis import render_report

    try:
        report = run(capture, profile=profile, service_tags=service_tags, m365_endpoints=m365_endpoints,
                     webslates=webslate, webslate_allow=webslate_allow, cloud_scripting=cloud_scripting,
                     rules=rules, fail_on=fail_on.value, max_flows=max_flows)
        # JSON is for machines and carries every flow; the other formats list unrelated flows on request
        show = show_unrelated or format == ReportFormat.json
        if format == ReportFormat.json:  # written in pieces: millions of flows are never one text
            _write_stream(lambda write: report.write_json(write, show), output)
        else:
            _write(render_report(report, format, show), output)
    except MeshpcapError as exc:
        _fail(exc)
    if failing(report.judgement.findings, fail_on.value):
        raise typer.Exit(1)


@app.command()
def profiles(
    format: str = typer.Option("table", "--format", "-f", help="table or json"),
) -> None:
    """List the rule sets with their date and source."""
    import json

    from tabulate import tabulate

    from .rules import list_profiles

    try:
        items = list_profiles()
    except MeshpcapError as exc:
        _fail(exc)
    data = [{"id": p.id, "date": p.date.isoformat() if p.date else None, "rules": len(p.rules),
             "default": p.default, "title": p.title, "source": p.source} for p in items]
    if format == "json":
        typer.echo(json.dumps(data, indent=2))
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
