"""The ``meshpcap`` command: a thin layer over the library (exit 0 clean, 1 findings, 2 bad input)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import MeshpcapError
from .report.flows import FlowFormat

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
    typer.echo(f"meshpcap: {exc}", err=True)
    raise typer.Exit(2)


@app.command()
def flows(
    capture: Path = typer.Argument(..., help="pcap or pcapng file (gzip/zstd compressed is fine)"),
    format: FlowFormat = typer.Option(FlowFormat.table, "--format", "-f", help="table, json or csv"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of standard output"),
    no_names: bool = typer.Option(False, "--no-names", help="skip naming (SNI, QUIC, DNS, HTTP, STUN): flows only"),
) -> None:
    """List the flows of a capture, oriented client -> server, with names and outcomes."""
    from . import read_flows
    from .report.flows import render_flows

    try:
        ft = read_flows(capture, names=not no_names)
        _write(render_flows(ft, format), output)
    except MeshpcapError as exc:
        _fail(exc)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
