"""Take the README's screenshots from a running demo (``make demo``).

    .venv/bin/python docs/make_screenshots.py --url http://127.0.0.1:8000 --password <printed>

Uses Debian's Chromium (/usr/bin/chromium) through Playwright; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent / "screenshots"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{args.url}/admin/login/")
        page.fill("#id_username", args.username)
        page.fill("#id_password", args.password)
        page.click("input[type=submit]")
        page.wait_for_url(re.compile(r".*/admin/$"))

        page.goto(f"{args.url}/admin/django_mitto/message/add/")
        page.fill("#id_recipient", "+41791234561")
        page.fill("#id_text", "Grüezi! Your order #1042 has shipped 📦 and arrives tomorrow.")
        page.wait_for_timeout(300)
        page.screenshot(path=str(OUT / "compose.png"))
        page.click("input[name=_save]")
        page.wait_for_load_state()
        deadline = time.monotonic() + 15
        while "Delivered" not in page.content() and time.monotonic() < deadline:
            page.wait_for_timeout(1000)
            page.reload()
        page.screenshot(path=str(OUT / "message.png"), full_page=True)

        page.goto(f"{args.url}/admin/django_mitto/batch/send/")
        numbers = (
            "\n".join(f"+4179123{4500 + i}" for i in range(40)) + "\n+4179123\nhello\n+41791234500"
        )
        page.fill("textarea[name=numbers]", numbers)
        page.fill(
            "textarea[name=text]", "Our summer sale starts today: 20% off everything until Sunday."
        )
        page.click("input[name=_preview]")
        page.wait_for_load_state()
        page.screenshot(path=str(OUT / "bulk-preview.png"), full_page=True)
        page.click("input[name=_send]")
        page.wait_for_load_state()
        page.wait_for_timeout(4000)
        page.reload()
        page.screenshot(path=str(OUT / "batch.png"), full_page=True)

        page.goto(f"{args.url}/admin/django_mitto/message/")
        page.screenshot(path=str(OUT / "changelist.png"))
        page.goto(f"{args.url}/admin/django_mitto/batch/dashboard/")
        page.screenshot(path=str(OUT / "dashboard.png"), full_page=True)
        browser.close()


if __name__ == "__main__":
    main()
