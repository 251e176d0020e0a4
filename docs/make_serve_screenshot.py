"""Take the README's screenshot of `paretolab serve`: the quickstart sweep run into a store, the
server started on it, its sweep page opened in headless Chromium (Playwright driving the system's
chromium, as the browser tests do) and captured once every figure has been drawn.

    python docs/make_serve_screenshot.py [--store DIR] [--out docs/img/serve.png]

`--store DIR` keeps the store (a second run with the same DIR runs nothing and captures again).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FIGURES = ("fig-phase", "fig-frontier", "fig-curves", "fig-luck")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, help="keep the store here (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=DOCS / "img" / "serve.png")
    a = p.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium on this machine (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        store = a.store or Path(tmp) / "results"
        subprocess.run([sys.executable, "-m", "paretolab.cli", "run", str(ROOT / "examples" / "quickstart.yaml"),
                        "--store", str(store)], check=True, cwd=tmp)
        server = subprocess.Popen([sys.executable, "-m", "paretolab.cli", "serve", "--store", str(store), "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = re.search(r"at (http://\S+)/", server.stdout.readline()).group(1)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
                page.goto(f"{url}/sweep?s=quickstart")
                deadline = time.monotonic() + 120
                while not all(page.eval_on_selector(f"#{f}", "e => e.dataset.state") == "ok" for f in FIGURES):
                    if time.monotonic() > deadline:
                        raise SystemExit("the figures were not drawn within 2 minutes")
                    page.wait_for_timeout(200)
                a.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(a.out), full_page=False)
                browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=60)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
