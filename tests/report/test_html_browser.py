"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Fails on any console message of type error, any page error, any request other than the page file
itself and any dialog; checks the sections, that the flow table sorts and filters, that the page
reads with scripts off, and that the hostile capture's strings run nothing.  Skipped only when
Chromium or Playwright is absent (.ci/run installs Chromium; the test extra installs Playwright).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import meshpcap
from meshpcap.report.html import render_html
from tests.conftest import SAMPLES

CHROMIUM = os.environ.get("MESHPCAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watched:
    """A page whose console errors, page errors, dialogs and requests are recorded."""

    def __init__(self, browser, path: Path, scripts: bool = True):
        self.context = browser.new_context(java_script_enabled=scripts, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_load_state("load")

    def check_quiet(self) -> None:
        assert self.problems == []
        assert self.requests == [self.url]

    def close(self) -> None:
        self.context.close()


def write_page(tmp_path: Path, capture: Path, name: str = "report.html") -> Path:
    r = meshpcap.analyze(capture, service_tags=TAGS, use_cache=False)
    out = tmp_path / name
    out.write_text(render_html(r), encoding="utf-8")
    return out


def column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        "#flow-table tbody tr", f"rows => rows.filter(r => !r.hidden).map(r => r.cells[{index}].textContent)")


def test_report_in_chromium_sorts_filters_and_requests_nothing(browser, tmp_path):
    w = Watched(browser, write_page(tmp_path, SAMPLES / "relay-udp-dropped.pcapng"))
    page = w.page
    try:
        for sel in ("#verdict", "#checklist table", "#findings .finding", "#timeline svg rect.v-blocked",
                    "#flow-table", "#clients table", "#firewall #fw-nftables"):
            assert page.locator(sel).first.is_visible(), sel
        assert page.locator("#checklist-table tbody tr").count() == 11
        assert page.locator("#findings .finding").count() == 2
        ids = [int(x) for x in column(page, 0)]
        assert ids == sorted(ids)
        # sort by bytes (numbers, not text), then the other way
        page.click("#flow-table th:nth-child(10) button")
        sizes = [int(x) for x in column(page, 9)]
        assert sizes == sorted(sizes)  # numerically: as text 13728 would come before 320
        assert page.get_attribute("#flow-table th:nth-child(10)", "aria-sort") == "ascending"
        page.click("#flow-table th:nth-child(10) button")
        assert [int(x) for x in column(page, 9)] == sorted(sizes, reverse=True)
        page.click("#flow-table th:nth-child(1) button")
        page.click("#flow-table th:nth-child(1) button")
        assert [int(x) for x in column(page, 0)] == sorted(ids, reverse=True)
        # filter by verdict and by text
        page.select_option("#flow-verdict", "blocked")
        assert column(page, 10) == ["blocked"]
        page.select_option("#flow-verdict", "")
        page.fill("#flow-filter", "mesh.office")
        assert column(page, 4) == ["mesh.office.com"]
        page.screenshot(path=str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
        w.check_quiet()
    finally:
        w.close()


def test_report_reads_with_scripts_off(browser, tmp_path):
    w = Watched(browser, write_page(tmp_path, SAMPLES / "relay-udp-dropped.pcapng"), scripts=False)
    try:
        page = w.page
        assert page.locator("#flow-table tbody tr").count() == 6
        assert page.locator("#flow-filter").count() == 0  # the controls come with the script
        assert page.locator("#timeline svg rect").count() == 6
        assert "UDP media stopped" in page.inner_text("#timeline")
        w.check_quiet()
    finally:
        w.close()


def test_hostile_capture_runs_nothing(browser, tmp_path):
    from tests.report.test_html import IMG, hostile_capture

    capture = hostile_capture(tmp_path / "hostile.pcapng")
    w = Watched(browser, write_page(tmp_path, capture, f"{IMG}.html".replace("/", "_")))
    try:
        page = w.page
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img, b").count() == 0
        assert "window.__pwned=1" in page.inner_text("#seen")  # shown, as text
        # the embedded document parses back in the page itself
        subject = page.evaluate("JSON.parse(document.getElementById('meshpcap-report').textContent)"
                                ".flows.map(f => f.cert_subject).filter(Boolean)[0]")
        assert "<script>" in subject.replace("\\", "")
        w.check_quiet()
    finally:
        w.close()


@pytest.mark.parametrize("scripts", [True, False])
def test_media_quality_plots_draw_without_errors(browser, tmp_path, scripts):
    from tests.report.test_html_quality import built

    capture, up, _down = built(str(tmp_path))
    w = Watched(browser, write_page(tmp_path, capture), scripts=scripts)
    try:
        page = w.page
        assert page.locator("#media-quality").is_visible()
        assert page.locator("#media-quality svg.stream").count() == 4
        plot = page.locator("#media-quality svg.stream").first
        assert plot.is_visible() and plot.bounding_box()["width"] > 300
        assert page.locator("#media-quality polyline.rate").count() == 4
        assert page.locator("#quality-degraded tbody tr").count() == 3
        assert "media stopped for 1020 ms" in page.inner_html("#media-quality")
        w.check_quiet()
    finally:
        w.close()
