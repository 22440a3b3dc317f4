"""Make docs/app_screenshot.png: start app.py, pick the first example, Generate, screenshot.

    python docs/make_screenshot.py      (needs Debian's chromium and the playwright package)
"""

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PORT = 7869


def main() -> None:
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(PORT)],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url, wait_until="networkidle")
            page.get_by_text("Good morning!", exact=False).first.click()
            page.get_by_role("button", name="Generate").click()
            page.wait_for_selector("#video-refined video", timeout=120_000)
            page.wait_for_timeout(2000)
            page.screenshot(path=str(ROOT / "docs" / "app_screenshot.png"), full_page=True)
            browser.close()
    finally:
        app.terminate()


if __name__ == "__main__":
    main()
