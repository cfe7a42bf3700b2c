"""Take a screenshot of a running cluster's live page: the README's docs/page.png.

    .venv/bin/python scripts/page-screenshot.py http://127.0.0.1:8088/wsk/ docs/page.png

Opens the page in two headless Chromium visitors (Debian's chromium, through Playwright),
both in one room; the second publishes a message a second for ``--seconds`` so that the
chart and the message list have something to show; then photographs the first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from playwright.sync_api import expect, sync_playwright


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the page's address, e.g. http://127.0.0.1:8088/wsk/")
    parser.add_argument("output", help="the PNG to write")
    parser.add_argument("--seconds", type=int, default=40, help="how long to publish first")
    parser.add_argument("--room", default="demo")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("page-screenshot: chromium is not installed (make os-packages)", file=sys.stderr)
        return 1
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        pages = []
        for _ in range(2):
            page = browser.new_context(viewport={"width": 1200, "height": 820}).new_page()
            page.goto(args.url)
            expect(page.locator("#status")).to_have_attribute("data-state", "connected")
            page.fill("#room", args.room)
            page.click("#join")
            expect(page.locator("#joined")).to_have_attribute("data-room", args.room)
            pages.append(page)
        watcher, talker = pages
        for n in range(args.seconds):
            talker.fill("#text", f"hello #{n + 1} from the other browser")
            talker.click("#publish")
            time.sleep(1)
        watcher.fill("#text", "hello back")
        watcher.click("#publish")
        time.sleep(1.5)
        watcher.screenshot(path=args.output, full_page=True)
        browser.close()
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
