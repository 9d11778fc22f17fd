"""Regenerate docs/report.png: the HTML report of samples/relay-udp-dropped.pcapng in headless Chromium.

    python docs/make_screenshot.py            # writes docs/report.html (not committed) and docs/report.png

Needs the test extra (Playwright) and the system's Chromium (/usr/bin/chromium, or MESHPCAP_CHROMIUM).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def main() -> int:
    import meshpcap
    from meshpcap.report.html import render_html
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("MESHPCAP_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    os.chdir(REPO)  # the page names the capture by the path given: keep it relative
    r = meshpcap.analyze("samples/relay-udp-dropped.pcapng", service_tags="samples/ServiceTags_Public_SAMPLE.json",
                         use_cache=False)
    page_file = HERE / "report.html"
    page_file.write_text(render_html(r), encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"])
        page = browser.new_page(viewport={"width": 1240, "height": 1700}, device_scale_factor=1)
        page.goto(page_file.as_uri())
        page.screenshot(path=str(HERE / "report.png"))
        browser.close()
    print(f"{HERE / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
