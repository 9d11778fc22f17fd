"""`meshpcap.cli.app_for`: a run builds only the command it runs, and that changes nothing the user sees."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from meshpcap.cli import app, app_for
from tests.conftest import SAMPLES

runner = CliRunner()
COMMANDS = ["flows", "analyze", "explain", "batch", "profiles"]


@pytest.mark.parametrize("args", [[c, "--help"] for c in COMMANDS] + [
    ["analyze", "--bogus"], ["analyze", "--format", "nope", "x.pcap"], ["flows"], ["explain", "x.pcap", "one"],
    ["analyze", str(SAMPLES / "healthy-multi-room.pcapng"), "--format", "json", "--no-quality"],
    ["profiles", "--format", "csv"],
])
def test_the_one_command_app_behaves_as_the_whole_app(args):
    one = app_for(args)
    assert one is not app
    assert len(one.registered_commands) == 1
    full, slim = runner.invoke(app, args), runner.invoke(one, args)
    assert (slim.exit_code, slim.stdout, slim.stderr) == (full.exit_code, full.stdout, full.stderr)


@pytest.mark.parametrize("args", [[], ["--help"], ["tags", "which", "1.2.3.4"], ["endpoints", "--help"], ["nosuch"],
                                  ["app_for"]])
def test_anything_else_gets_the_whole_app(args):
    assert app_for(args) is app
