"""Shared fixtures: one real local Ray for the whole session, an S3 server, driver processes.

How tests share code: a plain helper is a function in tests/support.py, imported by name
(`from support import wait_for`); a fixture lives here only when it sets something up and tears it
down, or is shared across a scope (Ray, the S3 server, driver processes, the torch thread count).
`count_in`, `write_spec` and `make_store` return helpers of support.py for the tests that take them
as fixtures; new tests import the helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

PLUGINS = str(Path(__file__).parent / "plugins")
TESTS = str(Path(__file__).parent)  # tests/support.py, imported by test modules whose classes Ray workers load
# The test plugin registers a task through a real entry point; Ray workers inherit PYTHONPATH.
sys.path[:0] = [PLUGINS, TESTS]
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (PLUGINS, TESTS, os.environ.get("PYTHONPATH")) if p)

import support  # noqa: E402 - importable once TESTS is on the path

# The fast tier is `pytest -m "not slow"` (the edit-test loop, under two minutes on 2 cores); the
# full suite is `pytest`. A test is slow when it starts Ray, an S3 server or a process that starts
# Ray, trains for long, or takes over a second. Tests that use these fixtures are marked here,
# where the fixture that makes them slow is named once; any other slow test carries
# `@pytest.mark.slow` (or its module `pytestmark = pytest.mark.slow`) where it is defined.
SLOW_FIXTURES = frozenset({"ray_cluster", "ray_dirs", "s3_server", "driver"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)



@pytest.fixture(autouse=True)
def _no_warm_workers():
    """`paretolab.run` keeps Ray and its idle workers up for the next run in the process (its warm
    session); stopped after each test, so that no test runs on another's workers."""
    yield
    if (session := sys.modules.get("paretolab.orchestrator.session")) is not None:
        session.shutdown()


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray with 2 CPUs, started once; `paretolab.run` reuses it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's) on 127.0.0.1 and a free port, with one bucket; yields its URL."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="paretolab-test")
    yield url
    server.stop()


@pytest.fixture
def s3_store(s3_server, monkeypatch, request):
    """`s3://paretolab-test/<test name>`: an empty store on the S3 server, with the driver's credentials
    and endpoint in the environment (Ray workers never need them: only the driver writes the store)."""
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_ENDPOINT_URL": s3_server,
                       "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    return f"s3://paretolab-test/{request.node.name.replace('[', '-').replace(']', '')}"


@pytest.fixture
def one_thread():
    """Train tiny models on one torch thread: on a loaded 2-core machine, intra-op threads made a
    16-member pack 27x slower (3.4 s against 0.12 s, measured) and tests/test_flipflop.py's
    end-to-end tests 20x slower. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RayDir:
    """A short private Ray temp dir (`RAY_TMPDIR`; unix socket paths under it must stay under 108
    bytes, so not under tmp_path). Every process of a Ray started with it names it on its command
    line, which tells them apart from other Ray clusters running on the machine."""

    def __init__(self):
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix="plray", dir="/tmp"))

    def env(self, **extra) -> dict:
        # Token auth turns on by itself when ~/.ray/auth_token exists, and `ray start --address`
        # nodes then fail to join: these clusters are local and private, so it is off.
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return env | {"RAY_TMPDIR": str(self.path), "RAY_AUTH_MODE": "disabled"} | extra

    def processes(self, name: str = "") -> list[tuple[int, str]]:
        """(pid, command line) of the live processes whose command line names this dir (and `name`)."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(self.path) in cmd and name in cmd and state != "Z":
                found.append((int(pid), cmd))
        return found

    def kill(self) -> None:
        """SIGKILL every process of this Ray and remove the dir."""
        import shutil
        import signal

        for pid, _ in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_dirs():
    """`ray_dirs()` makes a `RayDir`; any process still naming one is killed at the end of the session."""
    made: list[RayDir] = []
    yield lambda: made.append(RayDir()) or made[-1]
    for d in made:
        d.kill()


class Driver:
    """`paretolab run SPEC --store STORE --address ADDRESS` as a subprocess in its own process group,
    to be SIGKILLed mid-run: `wait_until(condition, what)` polls with a deadline while it runs."""

    def __init__(self, spec: Path, store: Path, address: str):
        import subprocess

        self.command = ["paretolab", "run", str(spec), "--store", str(store), "--address", address]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)

    def wait_until(self, condition, what: str, timeout_s: float = 180):
        from support import wait_for

        return wait_for(condition, what, timeout_s, self.proc)

    def kill(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def driver(ray_cluster):
    """`driver(spec, store)` starts a `Driver` on the session's Ray; one still running at the end is killed."""
    started: list[Driver] = []
    address = ray_cluster.get_runtime_context().gcs_address
    yield lambda spec, store: started.append(Driver(spec, store, address)) or started[-1]
    for d in started:
        d.kill()


@pytest.fixture
def count_in():
    """`count_in(store, sql)`: the one value of a count query over a store, 0 while it holds no trials."""
    return support.store_count


@pytest.fixture
def write_spec():
    """`write_spec(folder, name=..., widths=..., seeds=..., ...)` writes a small spec and returns its path."""
    return support.write_spec


@pytest.fixture
def make_store():
    """`make_store(root, sweep, axes, trials, metrics, success)` writes a synthetic store (no Ray)."""
    return support.make_store
