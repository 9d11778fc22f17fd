"""``meshpcap analyze --format markdown`` (meshpcap.report.markdown): golden files and escaping.

Golden files: tests/report/golden_md/<sample>.md hold the exact output of
``meshpcap analyze samples/<sample> --service-tags samples/ServiceTags_Public_SAMPLE.json
--format markdown`` run from the repository root; regenerate after an intended change with::

    MESHPCAP_REGEN_GOLDEN=1 python -m pytest tests/report/test_markdown.py

and review the diff before committing.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

import meshpcap
from meshpcap.cli import app
from meshpcap.report.markdown import code, md, render_markdown, render_markdown_document
from tests.conftest import REPO, SAMPLES, sample_captures

GOLDEN = REPO / "tests" / "report" / "golden_md"
REGEN = os.environ.get("MESHPCAP_REGEN_GOLDEN") == "1"
TAGS = "samples/ServiceTags_Public_SAMPLE.json"
NAMES = [p.name for p in sample_captures()]


@pytest.mark.parametrize("name", NAMES)
def test_golden(name, monkeypatch):
    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, ["analyze", f"samples/{name}", "--service-tags", TAGS, "--format", "markdown"])
    assert res.exit_code in (0, 1), res.output
    golden = GOLDEN / f"{name.rsplit('.', 1)[0]}.md"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(res.stdout, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: MESHPCAP_REGEN_GOLDEN=1 python -m pytest {__file__}"
    assert res.stdout == golden.read_text(encoding="utf-8")


def test_every_sample_has_a_golden_file():
    assert {p.name for p in GOLDEN.iterdir()} == {f"{n.rsplit('.', 1)[0]}.md" for n in NAMES}


def test_content_is_the_html_reports():
    r = meshpcap.analyze(SAMPLES / "relay-udp-dropped.pcapng", service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json",
                         use_cache=False)
    out = render_markdown(r)
    for heading in ("## Findings", "## Requirements", "## Expected traffic", "## Clients", "## Firewall-ready",
                    "## Flows (3 unrelated flows not shown: --show-unrelated)"):
        assert heading in out
    assert "- **fix:** allow UDP 3478-3481 outbound to the AzureCloud service tag" in out
    assert "- Wireshark: `ip.addr==52.113.144.132 && udp.port==3478`" in out
    assert "- first failing attempt: 2024-06-20T14:00:01.000000Z (+1.000 s); last: 2024-06-20T14:00:08.500000Z" in out
    assert "| blocked | MR-A4 |" in out and "1 blocked (no-answer): flow 7 to 52.113.144.132" in out
    assert "    set meshpcap_mr_a4_v4 {\n        type ipv4_addr\n        flags interval" in out
    assert "52.113.144.132 meshpcap MR-A4 MR-A5" in out and 'set fqdn "mesh.office.com"' in out
    assert out.count("~~~") % 2 == 0


def test_strings_from_the_wire_cannot_make_markup():
    assert md("<script>x</script> [a](http://e) *b* _c_ | d `e`") == \
        "\\<script\\>x\\</script\\> \\[a\\](http://e) \\*b\\* \\_c\\_ \\| d \\`e\\`"
    # line breaks from the wire are shown as visible escapes (report.sanitize), never as a new line
    assert md("a\nb\u2028c") == "a\\\\nb\\\\u2028c" and md("&lt;") == "\\&lt;"
    assert code("a`b") == "``a`b``" and code("`x") == "`` `x ``"
    doc = json.loads(json.dumps(meshpcap.analyze(SAMPLES / "reject-rst.pcapng", service_tags=SAMPLES /
                                                 "ServiceTags_Public_SAMPLE.json", use_cache=False).to_dict(False)))
    doc["flows"][1]["name"] = "<img src=x onerror=alert(1)>|x\n# heading"
    doc["findings"][0]["title"] = "[click](javascript:alert(1))"
    out = render_markdown_document(doc)
    import re

    prose = re.sub(r"~~~.*?~~~", "", out, flags=re.S)  # code blocks hold the firewall lists (validated names)
    assert re.search(r"(?<!\\)[<\[]", prose) is None  # every < and [ escaped: no tag, no link
    assert "\n# heading" not in out
    assert "\\<img src=x onerror=alert(1)\\>\\|x\\\\n# heading" in out  # the new line shown, not made
