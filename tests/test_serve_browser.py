"""`paretolab serve` as a command, and its pages in a real headless browser (the system Chromium,
driven by Playwright) while a sweep runs in the background; the token beyond loopback; a store on
an S3 server."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from support import make_store, wait_for

pytestmark = pytest.mark.slow

TRAIN = '''
import time


def main(config, ctx):
    """Two evaluations 2.5 s apart: trials land one by one while the page watches. Succeeds when
    a >= b (test_error 0.05), except seed 1 at a = b."""
    ctx.report(step=0, test_error=0.5, test_loss=1.0)
    time.sleep(2.5)
    ok = config["a"] > config["b"] or (config["a"] == config["b"] and config["seed"] == 0)
    ctx.report(step=1, test_error=0.05 if ok else 0.5, test_loss=0.1 if ok else 1.0)
'''

SPEC = """\
sweep: live
trainable: train.py:main
grid: {a: [1, 2, 3], b: [1, 2]}
seeds: 2
max_steps: 1
success: {metric: test_error, op: "<=", value: 0.1}
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def playwright_or_skip():
    if chromium() is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra installs it)")


class Server:
    """`paretolab serve` as a subprocess; `url` is the address it printed."""

    def __init__(self, store, *args: str, env: dict | None = None):
        self.proc = subprocess.Popen(["paretolab", "serve", "--store", str(store), "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = self.first = self.proc.stdout.readline()
        match = re.search(r"at (http://\S+)", first)
        assert match, (first, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url = match.group(1)
        self.port = int(re.search(r":(\d+)/", self.url).group(1))
        self.local = f"http://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, self.first + out + err


def http(url: str, headers: dict | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Watched:
    """A browser page that records every console error, page error, failed request and error status."""

    def __init__(self, browser):
        self.page = browser.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))

    def attr(self, selector: str, name: str):
        return self.page.eval_on_selector(selector, f"e => e.dataset.{name} ?? null") if self.page.query_selector(selector) else None


def launch(p):
    return p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


FIGURES = ("fig-phase", "fig-frontier", "fig-curves", "fig-luck")


def test_the_pages_follow_a_running_sweep(tmp_path, ray_dirs):
    sync = playwright_or_skip()
    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "live.yaml").write_text(SPEC)
    store = tmp_path / "results"
    server = Server(store)  # before the run: the sweeps page fills in as the store appears
    run = None
    try:
        with sync.sync_playwright() as p:
            browser = launch(p)
            sweeps = Watched(browser)
            sweeps.page.goto(server.url)
            wait_for(lambda: "no result store" in sweeps.page.inner_text("#why"), "the page saying there is no store yet", 60)
            run = subprocess.Popen(["paretolab", "run", str(tmp_path / "live.yaml"), "--store", str(store), "--workers", "2"],
                                   cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=ray_dirs().env())
            wait_for(lambda: sweeps.page.query_selector("#sweeps tr[data-sweep='live']"), "the sweep on the sweeps page",
                     180, proc=run)
            sweeps.page.click("#sweeps a:text('live')")
            sweeps.page.wait_for_url("**/sweep?s=live")
            page = sweeps
            seen: list[tuple[int, str]] = []

            def state():
                ended = page.attr("#status tr[data-sweep='live']", "ended")
                phase = page.attr("#fig-phase", "hash") if page.attr("#fig-phase", "state") == "ok" else None
                if ended is not None and phase is not None and (not seen or seen[-1] != (int(ended), phase)):
                    seen.append((int(ended), phase))
                return seen and seen[-1][0] == 12 and all(page.attr(f"#{f}", "state") == "ok" for f in FIGURES)

            wait_for(state, "every trial ended on the page, with every figure drawn", 240)
            assert run.wait(timeout=120) == 0, run.communicate()
            assert any(0 < e < 12 for e, _ in seen), f"no state between the first trial and the last was shown: {seen}"
            assert len({h for _, h in seen}) >= 2, f"the phase diagram never changed: {seen}"
            row = page.page.eval_on_selector("#status tr[data-sweep='live']", "e => ({...e.dataset})")
            assert row == {"sweep": "live", "ended": "12", "total": "12", "succeeded": "8", "failed": "0",
                           "diverged": "0", "pruned": "0", "running": "0"}
            assert page.page.inner_text("#cells-count") == "cells 1-6 of 6"
            # the numbers the phase diagram was drawn from, linked under it
            numbers = json.loads(http(server.local + page.page.get_attribute("#fig-phase ~ a.numbers", "href"))[1])
            assert len(numbers["cells"]) == 6 and sum(r["successes"] for r in numbers["cells"]) == 8
            page.page.select_option("#filters select[name=a]", "3")  # filtered on the server
            wait_for(lambda: page.page.inner_text("#cells-count") == "cells 1-2 of 2", "the filtered cells")
            page.page.click("#cells th[data-column=p_success]")
            wait_for(lambda: "\u25B2" in page.page.inner_text("#cells th[data-column=p_success]"), "the sorted column")
            page.page.select_option("#controls select[name=by]", "a")
            wait_for(lambda: page.attr("#fig-curves", "state") == "ok" and "a" in page.page.inner_text("#transitions th"),
                     "curves and transitions grouped by a")
            page.page.select_option("#controls select[name=curve_x]", "samples")  # no samples recorded: said, not drawn
            wait_for(lambda: page.attr("#fig-curves", "state") in ("ok", "error"), "the curves over samples")
            text = page.page.inner_text("main")
            for part in ("Phase diagram", "Frontier", "Learning curves", "Transitions", "Luck", "Cells",
                         "Failed trials", "grid: {a: [1, 2, 3], b: [1, 2]}", "success: test_error <= 0.1"):
                assert part in text, part
            trial = page.page.eval_on_selector("#cells", "e => 1")  # the page is still alive after the changes
            assert trial == 1
            ids = json.loads(http(f"{server.local}/api/failures?s=live")[1])
            assert ids["total"] == 0
            one = json.loads(http(server.local + "/api/meta?s=live")[1])
            assert one["axes"] == ["a", "b"]
            page.page.goto(f"{server.local}/trial?id=" + _a_trial(store))
            wait_for(lambda: page.attr("#fig-trial", "state") == "ok", "the trial's curves")
            assert "status: finished" in page.page.inner_text("#trial-status")
            problems = [p for p in page.problems if "curves.svg" not in p or "samples" not in p]
            assert not problems, problems
            browser.close()
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        rc, out = server.stop()
    assert rc == 0 and out.rstrip().endswith("stopped"), out


def _a_trial(store: Path) -> str:
    import paretolab

    return paretolab.open_store(store).query("SELECT min(trial_id) FROM trials").column(0)[0].as_py()


def known_store(tmp_path: Path) -> Path:
    return make_store(tmp_path / "r", "grid", ["width"],
                      [{"trial_id": f"t{w}", "width": w, "success": w > 16, "wall_s": 1.0} for w in (16, 32, 64)],
                      [{"trial_id": f"t{w}", "step": s, "samples": 32 * s, "test_error": 0.05 if w > 16 and s else 0.5}
                       for w in (16, 32, 64) for s in (0, 100)])


def test_the_token_is_enforced_beyond_loopback(tmp_path):
    sync = playwright_or_skip()
    server = Server(known_store(tmp_path), "--host", "0.0.0.0")
    try:
        token = re.search(r"\?token=(\S+)$", server.url).group(1)
        assert len(token) >= 32
        for path in ("/", "/sweep?s=grid", "/api/sweeps", "/api/signature", "/fig/phase.svg?s=grid", "/static/app.js"):
            assert http(server.local + path)[0] == 401, path
        assert http(server.local + "/api/sweeps?token=" + token[:-1] + "x")[0] == 401
        assert http(server.local + "/api/sweeps", {"Authorization": f"Bearer {token}"})[0] == 200
        with sync.sync_playwright() as p:
            browser = launch(p)
            bare = Watched(browser)
            response = bare.page.goto(server.local + "/sweep?s=grid")
            assert response.status == 401 and "token" in bare.page.inner_text("body")
            page = Watched(browser)
            page.page.goto(f"{server.local}/sweep?s=grid&token={token}")
            assert "token" not in page.page.url  # the token went into a cookie, out of the address bar
            wait_for(lambda: all(page.attr(f"#{f}", "state") == "ok" for f in FIGURES), "every figure drawn with the token", 120)
            assert page.page.inner_text("#cells-count") == "cells 1-3 of 3"
            assert not page.problems, page.problems
            browser.close()
    finally:
        rc, out = server.stop()
    assert rc == 0, out
    assert out.count(token) == 1  # printed once


def _children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child processes from /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_the_renderers_end_with_the_server(tmp_path, how):
    """Figures are drawn in renderer processes: a server stopped by SIGTERM stops them and says
    `stopped`, with nothing on stderr; a server killed outright leaves none of them behind."""
    server = Server(known_store(tmp_path))
    assert http(server.local + "/fig/phase.svg?s=grid")[0] == 200  # drawn by a renderer
    renderers = _children(server.proc.pid)
    assert len(renderers) >= 2, renderers  # the renderers (and multiprocessing's resource tracker)
    server.proc.send_signal(getattr(signal, how))
    out, err = server.proc.communicate(timeout=60)
    if how == "SIGTERM":
        assert server.proc.returncode == 0 and out.rstrip().endswith("stopped") and err == "", (out, err)
    wait_for(lambda: not any(_alive(p) for p in renderers), "every renderer to end with its server", 60)


def test_bad_command_lines_are_one_line(tmp_path):
    store = known_store(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for args, message in [(["--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
                              (["--port", "-1"], "--port takes 0 to 65535"),
                              (["--host", "no.such.host.invalid"], "cannot listen on --host 'no.such.host.invalid'")]:
            out = subprocess.run(["paretolab", "serve", "--store", str(store), *args], capture_output=True, text=True, timeout=60)
            assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    out = subprocess.run(["paretolab", "serve", "--store", str(tmp_path / "notes")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "holds no paretolab store" in out.stderr


def test_a_store_on_s3(s3_store, tmp_path):
    """The same server over an object store: listing for the signature, pyarrow datasets for the queries."""
    import os

    make_store(s3_store, "grid", ["width"],
               [{"trial_id": f"t{w}", "width": w, "success": w > 16, "wall_s": 1.0} for w in (16, 32, 64)],
               [{"trial_id": f"t{w}", "step": s, "samples": 32 * s, "test_error": 0.05 if w > 16 and s else 0.5}
                for w in (16, 32, 64) for s in (0, 100)])
    server = Server(s3_store, env=dict(os.environ))
    try:
        status, body = http(server.local + "/api/sweeps")
        assert status == 200, body
        assert json.loads(body)["sweeps"][0]["succeeded"] == 2
        cells = json.loads(http(server.local + "/api/cells?s=grid&sort=width&desc=1")[1])
        assert [r[0] for r in cells["rows"]] == [64, 32, 16]
        for fig in ("phase", "frontier", "curves", "luck"):
            status, svg = http(f"{server.local}/fig/{fig}.svg?s=grid")
            assert status == 200 and "<svg" in svg, (fig, svg[:300])
        assert json.loads(http(server.local + "/api/signature")[1])["signature"]
    finally:
        rc, out = server.stop()
    assert rc == 0, out
