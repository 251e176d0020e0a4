"""Command trials: a researcher's script run in its own process, reporting metric lines on stdout.

Real subprocesses (tiny scripts written into tmp_path), no Ray: `run_command` is called as the worker
calls it. A script that must outlast a moment blocks (on an event that never comes, or until its stop
file appears); no test waits on a timer.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import paretolab.report as client
from paretolab.vocabulary.success import Success
from paretolab.workers import process
from paretolab.workers.command import MARKER, placeholders, run_command
from paretolab.vocabulary.trial import Assignment, Code, MetricRow, TrialConfig, TrialResult
from support import wait_for

TARGET = Success(metric="test_error", op="<=", value=0.1, stop_on_success=True)


@pytest.fixture(autouse=True)
def scratch(tmp_path, monkeypatch):
    """Trial scratch folders (`workers.user_code.workdir`, under tempfile's folder) inside this test's tmp_path."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


def trial(tmp_path: Path, *args: str, params=(("lr", 0.1),), success=TARGET, max_steps=None, timeout_s=None,
          keep=False) -> TrialConfig:
    code = Code(kind="command", name=" ".join(args), command=args, root=str(tmp_path), timeout_s=timeout_s,
                checkpoints=str(tmp_path / "checkpoints"), keep_checkpoints=keep)
    return TrialConfig(trial_id="t1", task=None, task_args=None, model=None, model_args=None, train=None, seed=7,
                       max_steps=max_steps, eval=None, success=success, code=code, params=params)


def script(tmp_path: Path, body: str, name: str = "train.py") -> str:
    (tmp_path / name).write_text(textwrap.dedent(body))
    return name


def run(t: TrialConfig, attempt: int = 1, interrupted: threading.Event | None = None, on_item=None):
    """(the rows, the result or None) of one attempt, checking that a result comes last and once."""
    items = []
    for item in run_command(Assignment(t, attempt), "cpu", interrupted or threading.Event()):
        if on_item is not None:
            on_item(item)
        if item is not None:
            items.append(item)
    results = [i for i in items if isinstance(i, TrialResult)]
    assert len(results) <= 1 and (not results or items[-1] is results[0]), items
    return [i for i in items if isinstance(i, MetricRow)], (results[0] if results else None)


def gone(pid: int) -> bool:
    """The process has exited (a zombie no parent reaped yet counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def pids(path: Path) -> list[int]:
    return [int(p) for p in path.read_text().split()]


def all_gone(path: Path) -> None:
    """Every process whose pid `path` lists exits (at once, but one that has closed its files while it
    exits may not be a zombie yet)."""
    wait_for(lambda: all(gone(p) for p in pids(path)), f"the processes of {path.name} gone", 10, interval_s=0.01)


def scratch_dir(tmp_path: Path) -> Path:
    return tmp_path / "tmp" / "paretolab-work" / "t1"


# ---------------------------------------------------------------------------------------------
# runs that end well


def test_a_run_reports_its_curve_and_ends_finished(tmp_path):
    name = script(tmp_path, """
        from paretolab.report import report
        for i, err in enumerate([0.5, 0.3, 0.08, 0.05]):
            report(i * 10, samples=i * 320, test_error=err, loss=None if i == 0 else 2 * err)
        print("done")
    """)
    t = trial(tmp_path, "python", name, success=Success("test_error", "<=", 0.1, stop_on_success=False))
    rows, result = run(t)
    assert [(r.trial_id, r.attempt, r.step, r.samples) for r in rows] == [("t1", 1, s, 32 * s) for s in (0, 10, 20, 30)]
    assert rows[0].values == {"test_error": 0.5, "loss": None} and rows[3].values == {"test_error": 0.05, "loss": 0.1}
    assert [r.wall_s for r in rows] == sorted(r.wall_s for r in rows)
    assert (result.status, result.success, result.steps_to_success, result.samples_to_success) == \
        ("finished", True, 20, 640)
    assert (result.steps, result.samples, result.final, result.error) == (30, 960, rows[3].values, None)
    # an ended trial leaves no scratch folder; its checkpoint folder (its curve) stays until the driver
    # has stored its row (orchestrator.scheduler drops it then)
    assert not scratch_dir(tmp_path).exists() and (tmp_path / "checkpoints" / "t1" / "curve.jsonl").exists()


def test_placeholders_environment_and_config_file(tmp_path):
    (tmp_path / "data.txt").write_text("x")
    seen = tmp_path / "seen.json"
    name = script(tmp_path, f"""
        import json, os, sys
        from paretolab import report
        env = {{k: v for k, v in os.environ.items() if k.startswith("PARETOLAB_") or k == "PYTHONPATH"}}
        json.dump({{"argv": sys.argv, "env": env, "cwd": os.getcwd(), "python": sys.executable,
                   "config": report.config(), "checkpoint_dir": report.checkpoint_dir(),
                   "workdir": report.workdir(), "stop": os.path.exists(env["PARETOLAB_STOP_FILE"]),
                   "config_file": json.load(open(env["PARETOLAB_CONFIG_FILE"])),
                   "checkpoint_exists": os.path.isdir(env["PARETOLAB_CHECKPOINT_DIR"])}}, open({str(seen)!r}, "w"))
        report.report(0, test_error=0.5)
    """)
    params = (("lr", 0.1), ("width", 64), ("name", "adam w"), ("flag", True), ("none", None), ("tiny", 1e-5))
    scratch_dir(tmp_path).mkdir(parents=True)
    (scratch_dir(tmp_path) / "stop").touch()  # left by an interrupted attempt: gone before the next starts
    t = trial(tmp_path, "python", name, "--lr={lr}", "{width}", "{name}", "{flag}", "{none}", "{tiny}", "{trial_id}",
              "{attempt}", "{workdir}", "{checkpoint_dir}", "{device}", "data.txt", "{{literal}}", "{seed}",
              "{max_steps}", "missing.txt", params=params, max_steps=100)
    rows, result = run(t, attempt=3)
    assert result.status == "finished" and [r.step for r in rows] == [0]
    got = json.loads(seen.read_text())
    work, ckpt = str(scratch_dir(tmp_path)), str(tmp_path / "checkpoints" / "t1")
    assert got["argv"] == [str(tmp_path / name), "--lr=0.1", "64", "adam w", "true", "null", "1e-05", "t1", "3", work,
                           ckpt, "cpu", str(tmp_path / "data.txt"), "{literal}", "7", "100", "missing.txt"]
    config = {"lr": 0.1, "width": 64, "name": "adam w", "flag": True, "none": None, "tiny": 1e-5, "max_steps": 100,
              "seed": 7}
    assert got["config"] == got["config_file"] == json.loads(got["env"]["PARETOLAB_CONFIG"]) == config
    assert got["cwd"] == got["workdir"] == got["env"]["PARETOLAB_WORKDIR"] == work
    assert got["python"] == sys.executable
    assert got["checkpoint_dir"] == got["env"]["PARETOLAB_CHECKPOINT_DIR"] == ckpt and got["checkpoint_exists"]
    expected = {"PARETOLAB_TRIAL_ID": "t1", "PARETOLAB_ATTEMPT": "3", "PARETOLAB_SEED": "7", "PARETOLAB_DEVICE": "cpu"}
    assert {k: got["env"][k] for k in expected} == expected
    assert got["env"]["PARETOLAB_STOP_FILE"].startswith(work + os.sep) and not got["stop"]
    assert got["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path)


def test_a_program_on_path_runs(tmp_path):
    # `sh` found on PATH; the script, a file of the spec's folder, named absolutely
    (tmp_path / "run.sh").write_text('echo "##paretolab {\\"step\\": $1, \\"test_error\\": 0.05}"\n')
    rows, result = run(trial(tmp_path, "sh", "run.sh", "{lr}", params=(("lr", 5),)))
    assert [r.step for r in rows] == [5] and result.status == "finished" and result.success


def test_stop_on_success_is_honoured_by_the_client(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "STOP_GRACE_S", 120.0)  # a script that did not stop would hold the test
    name = script(tmp_path, """
        import sys
        from paretolab.report import report
        step = 0
        while not report(step, test_error=max(0.0, 1 - step / 50)):  # <= 0.1 from step 45
            step += 1
        open(sys.argv[1], "w").write(str(step))
    """)
    start = time.monotonic()
    rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "stopped_at")))
    assert time.monotonic() - start < 60
    assert (result.status, result.success, result.steps_to_success, result.steps) == ("finished", True, 45, 45)
    assert result.stopped_at_success and result.final == rows[-1].values
    assert rows[-1].step == 45  # what it reported after its trial had ended is dropped
    assert int((tmp_path / "stopped_at").read_text()) >= 45


def test_max_steps_stops_the_command(tmp_path):
    name = script(tmp_path, """
        from paretolab.report import report
        step = 0
        while not report(step, test_error=0.5):
            step += 10
    """)
    rows, result = run(trial(tmp_path, "python", name, max_steps=20))
    assert [r.step for r in rows] == [0, 10, 20]
    assert (result.status, result.success, result.steps, result.stopped_at_success) == ("finished", False, 20, False)


def test_a_command_ignoring_the_stop_file_is_ended(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "STOP_GRACE_S", 0.2)
    monkeypatch.setattr(process, "KILL_GRACE_S", 0.2)
    name = script(tmp_path, """
        import os, signal, sys, threading
        from paretolab.report import report
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
        open(sys.argv[1], "w").write(str(os.getpid()))
        report(0, test_error=0.0)
        threading.Event().wait()
    """)
    start = time.monotonic()
    rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "pid")))
    assert time.monotonic() - start < 20
    assert (result.status, result.success, result.steps_to_success, result.error) == ("finished", True, 0, None)
    all_gone(tmp_path / "pid")


def test_nan_diverges_and_stops_the_command(tmp_path):
    name = script(tmp_path, """
        import sys, time
        from paretolab.report import report, should_stop
        report(0, test_error=0.5)
        report(1, test_error=float("nan"))
        while not should_stop():
            time.sleep(0.01)
        open(sys.argv[1], "w").write("stopped")
    """)
    rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "stopped")))
    assert (result.status, result.success) == ("diverged", False) and (tmp_path / "stopped").exists()
    assert [r.step for r in rows] == [0, 1] and rows[1].values["test_error"] != rows[1].values["test_error"]
    # an infinity printed by hand (Python's json writes it so) diverges too
    name = script(tmp_path, 'print(\'##paretolab {"step": 3, "test_error": Infinity}\')', name="inf.py")
    assert run(trial(tmp_path, "python", name))[1].status == "diverged"


# ---------------------------------------------------------------------------------------------
# runs that fail


def test_a_non_zero_exit_fails_with_the_end_of_stderr(tmp_path):
    name = script(tmp_path, """
        import sys
        from paretolab.report import report
        print("some progress")
        report(0, test_error=0.5)
        for i in range(2000):
            print(f"warning {i}", file=sys.stderr)
        raise ValueError("boom \\x1b[31mred\\x1b[0m\\x07!")
    """)
    rows, result = run(trial(tmp_path, "python", name))
    assert (result.status, result.steps, result.error) == ("failed", 0, "exit status 1: ValueError: boom red!")
    assert [r.step for r in rows] == [0]
    # a failed trial keeps its scratch folder, with both logs
    assert (scratch_dir(tmp_path) / "stdout.log").read_text() == "some progress\n"
    assert "warning 1999" in (scratch_dir(tmp_path) / "stderr.log").read_text()


def test_a_command_killed_by_a_signal(tmp_path):
    name = script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run(trial(tmp_path, "python", name))[1].error == "killed by signal SIGKILL"


MALFORMED = {
    "not json": ('hello\nworld\n##paretolab {"step": 0, "test_error": 0.5}\n##paretolab {not json}\n',
                 "stdout line 4: not JSON after '##paretolab'"),
    "backwards": ('##paretolab {"step": 10, "test_error": 0.5}\n##paretolab {"step": 5, "test_error": 0.4}\n',
                  "stdout line 2: step 5 does not increase"),
    "not a number": ('##paretolab {"step": 0, "test_error": "low"}\n',
                     "stdout line 1: metric 'test_error' must be a number"),
    "no step": ('##paretolab {"test_error": 0.5}\n', 'stdout line 1: no "step"'),
    "fractional step": ('##paretolab {"step": 1.5, "test_error": 0.5}\n', "stdout line 1: step must be an integer"),
    "not an object": ("##paretolab [1, 2]\n", "stdout line 1: expected a JSON object"),
    "a result column": ('##paretolab {"step": 0, "status": 1}\n', "stdout line 1: a metric cannot be named 'status'"),
    "a parameter": ('##paretolab {"step": 0, "lr": 0.1}\n', "stdout line 1: a metric cannot be named 'lr'"),
    "too long": ("##paretolab " + "1" * (2**20 + 10) + "\n", "stdout line 1: a metric line longer than"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_metric_line_fails_the_trial_and_ends_the_command(tmp_path, case):
    text, error = MALFORMED[case]
    (tmp_path / "out.txt").write_text(text)
    name = script(tmp_path, """
        import os, sys, threading
        open(sys.argv[2], "w").write(str(os.getpid()))
        sys.stdout.write(open(sys.argv[1]).read())
        sys.stdout.flush()
        threading.Event().wait()  # only the worker ends it
    """)
    rows, result = run(trial(tmp_path, "python", name, "out.txt", str(tmp_path / "pid")))
    assert result.status == "failed" and result.error.startswith(error), result.error
    assert "\n" not in result.error and len(result.error) < 400
    all_gone(tmp_path / "pid")


def test_a_stdout_flood_is_read_fast_in_bounded_memory(tmp_path):
    # 200 MB of short lines (some holding the marker mid-line), one 20 MiB line without a break, and
    # metric lines among them wherever the pipe cuts its chunks
    name = script(tmp_path, """
        import sys
        out = sys.stdout.buffer
        junk = b"".join(b"junk %d ##paretolab {not a metric}\\n" % i for i in range(30011))
        for step in range(5):
            out.write(b'##paretolab {"step": %d, "test_error": 0.5}\\n' % step)
            for _ in range(40 * 2**20 // len(junk)):
                out.write(junk)
        out.write(b"x" * (20 * 2**20) + b'\\n##paretolab {"step": 9, "test_error": 0.5}\\n')
        sys.exit("flood done")
    """)

    def resident_bytes() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    baseline, peak = resident_bytes(), []
    start = time.monotonic()
    rows, result = run(trial(tmp_path, "python", name), on_item=lambda _: peak.append(resident_bytes()))
    elapsed = time.monotonic() - start
    assert [r.step for r in rows] == [0, 1, 2, 3, 4, 9]
    assert result.error == "exit status 1: flood done"
    assert max(peak) - baseline < 64 * 2**20
    log = scratch_dir(tmp_path) / "stdout.log"
    assert process.LOG_CAP_BYTES <= log.stat().st_size < process.LOG_CAP_BYTES + 200
    assert log.read_bytes().endswith(b"more bytes dropped; a log keeps its first 16,777,216]\n")
    assert elapsed < 30, elapsed


@pytest.mark.slow  # waits out a timeout
def test_a_command_past_its_timeout_is_ended_with_its_children(tmp_path):
    name = script(tmp_path, """
        import os, subprocess, sys
        child = subprocess.Popen(["sleep", "600"])
        open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
        child.wait()
    """)
    beats = []
    rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "pids"), timeout_s=1.5),
                       on_item=lambda item: item is None and beats.append(time.monotonic()))
    assert (result.status, result.error) == ("failed", "timed out after 1.5 s (timeout_s)")
    all_gone(tmp_path / "pids")
    assert len(beats) >= 2  # while it says nothing, the worker still gets a chance to send what waits


@pytest.mark.slow  # processes
def test_a_process_that_leaves_the_group_does_not_hold_the_trial(tmp_path, monkeypatch):
    monkeypatch.setattr(process, "DRAIN_S", 0.3)
    name = script(tmp_path, """
        import subprocess, sys
        from paretolab.report import report
        child = subprocess.Popen(["sleep", "600"], start_new_session=True)  # keeps stdout open
        open(sys.argv[1], "w").write(str(child.pid))
        report(0, test_error=0.05)
    """)
    try:
        rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "pid")))
        assert result.status == "finished" and [r.step for r in rows] == [0]
        wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("t1-")], "the readers ended", 10)
    finally:
        os.kill(pids(tmp_path / "pid")[0], 9)


@pytest.mark.parametrize("args, error", [
    (("no-such-program-xyz", "{lr}"), "command not found: no-such-program-xyz"),
    (("./missing.sh",), "command not found: ./missing.sh"),
    (("python", "train.py", "{width}"), "command argument '{width}': {width} names no parameter; known: attempt, "),
    (("python", "{lr"), "command argument '{lr': expected '}' before end of string"),
])
def test_a_command_that_cannot_start_fails(tmp_path, args, error):
    rows, result = run(trial(tmp_path, *args))
    assert rows == [] and result.status == "failed" and result.error.startswith(error), result.error


def test_checkpoints_in_an_object_store(tmp_path):
    seen = tmp_path / "seen.json"
    name = script(tmp_path, f"""
        import json, os, sys
        json.dump([sys.argv[1], os.environ.get("PARETOLAB_CHECKPOINT_DIR")], open({str(seen)!r}, "w"))
        sys.exit(2)
    """)
    t = trial(tmp_path, "python", name, "{checkpoint_dir}")
    t = dataclasses.replace(t, code=dataclasses.replace(t.code, checkpoints="s3://bucket/checkpoints/"))
    assert run(t)[1].error == "exit status 2 (nothing on stderr)"
    assert json.loads(seen.read_text()) == ["s3://bucket/checkpoints/t1", None]


def test_a_command_reporting_no_metrics_fails(tmp_path):
    name = script(tmp_path, "print('hello')\n")
    error = run(trial(tmp_path, "python", name))[1].error
    assert error == ('the command reported no metrics; print lines like ##paretolab {"step": 100, "test_error": 0.2} '
                     "(paretolab.report does)")


def test_a_command_never_reporting_the_success_metric_fails(tmp_path):
    name = script(tmp_path, "from paretolab.report import report\nreport(0, loss=0.5, acc=0.9)\n")
    rows, result = run(trial(tmp_path, "python", name))
    assert [r.step for r in rows] == [0]
    assert result.error == ("the success metric 'test_error' was never reported (reported: acc, loss); report it, "
                            "or set success.metric to one of those")


# ---------------------------------------------------------------------------------------------
# interrupts and attempts


@pytest.mark.parametrize("honours", [True, False])
def test_an_interrupted_command_yields_no_result(tmp_path, monkeypatch, honours):
    monkeypatch.setattr(process, "STOP_GRACE_S", 0.2)
    name = script(tmp_path, f"""
        import os, sys, threading, time
        from paretolab.report import report, should_stop
        open(sys.argv[1], "w").write(str(os.getpid()))
        report(0, test_error=0.9)
        if not {honours}:
            threading.Event().wait()
        while not should_stop():
            time.sleep(0.01)
        report(1, test_error=0.8)  # what it reports while stopping still counts
        open(sys.argv[2], "w").write("saved")
    """)
    interrupted = threading.Event()
    rows, result = run(trial(tmp_path, "python", name, str(tmp_path / "pid"), str(tmp_path / "saved")),
                       interrupted=interrupted, on_item=lambda item: item is not None and interrupted.set())
    assert result is None
    all_gone(tmp_path / "pid")
    assert [r.step for r in rows] == ([0, 1] if honours else [0])
    assert (tmp_path / "saved").exists() == honours


@pytest.mark.parametrize("mode", ["resume", "restart"])
def test_a_curve_continues_across_attempts(tmp_path, mode):
    # attempt 1 reports steps 0-30, keeping its own checkpoint at step 20, and crashes; attempt 2
    # resumes from that checkpoint (its first row: step 30) or starts over
    name = script(tmp_path, """
        import json, os, sys
        from paretolab.report import checkpoint_dir, report
        state = os.path.join(checkpoint_dir(), "state.json")
        resume = sys.argv[1] == "resume" and os.path.exists(state)
        start = json.load(open(state))["step"] + 10 if resume else 0
        for step in range(start, 60, 10):
            report(step, samples=4 * step, test_error=round(1 - step / 50, 3))
            if step == 20:
                json.dump({"step": step}, open(state, "w"))
            if step == 30 and os.environ["PARETOLAB_ATTEMPT"] == "1":
                sys.exit("crashed")
    """)
    t = trial(tmp_path, "python", name, mode, keep=True)
    first, result = run(t, attempt=1)
    assert [r.step for r in first] == [0, 10, 20, 30] and result.error == "exit status 1: crashed"
    rows, result = run(t, attempt=2)
    assert [r.step for r in rows] == [0, 10, 20, 30, 40, 50] and {r.attempt for r in rows} == {2}
    if mode == "resume":  # the rows before step 30 are attempt 1's, re-emitted
        assert [(r.step, r.samples, r.wall_s, r.values) for r in rows[:3]] == \
            [(r.step, r.samples, r.wall_s, r.values) for r in first[:3]]
        assert rows[3].wall_s > rows[2].wall_s
    assert (result.status, result.steps_to_success, result.samples_to_success) == ("finished", 50, 200)
    curve = (tmp_path / "checkpoints" / "t1" / "curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in curve] == [0, 10, 20, 30, 40, 50]


# ---------------------------------------------------------------------------------------------
# placeholders


def test_placeholders():
    assert placeholders(("python", "train.py", "--lr={lr}", "{width}x{width}", "{{not}}", "{seed}")) == \
        {"lr", "width", "seed"}
    assert placeholders(()) == set()


@pytest.mark.parametrize("arg", ["{lr", "lr}", "{0}", "{}", "{a.b}", "{a[0]}", "{a!r}", "{a:.3f}", "{ }"])
def test_malformed_placeholders_are_refused(arg):
    with pytest.raises(ValueError, match=r"command argument .*(brace|not a placeholder)"):
        placeholders(("python", arg))


# ---------------------------------------------------------------------------------------------
# the client


def test_the_client_outside_paretolab(monkeypatch, capsys):
    for key in [k for k in os.environ if k.startswith("PARETOLAB_")]:
        monkeypatch.delenv(key)
    import numpy as np

    assert client.report(np.int64(3), samples=96, acc=np.float32(0.5), loss=None) is False
    assert capsys.readouterr().out == '##paretolab {"step": 3, "samples": 96, "acc": 0.5, "loss": null}\n'
    assert (client.config(), client.checkpoint_dir(), client.workdir()) == ({}, None, os.getcwd())
    for bad, error in [((1.5,), TypeError), ((-1,), ValueError), ((True,), TypeError)]:
        with pytest.raises(error, match="report: step"):
            client.report(*bad)
    with pytest.raises(TypeError, match="metric 'acc' must be a number"):
        client.report(0, acc="0.5")


def test_the_client_answers_true_once_the_stop_file_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PARETOLAB_STOP_FILE", str(tmp_path / "stop"))
    assert client.report(0, x=1) is False
    (tmp_path / "stop").touch()
    assert client.report(1, x=1) is True and client.should_stop()


@pytest.mark.slow  # a Python process
def test_the_client_stands_alone(tmp_path):
    assert client.MARKER == MARKER
    tree = ast.parse(Path(client.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # a copy beside a script, under an interpreter that sees no installed package (-I -S)
    shutil.copy(client.__file__, tmp_path / "report.py")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import report; print(report.report(2, acc=0.5))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARETOLAB_")}
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout == '##paretolab {"step": 2, "acc": 0.5}\nFalse\n'


def test_a_command_states_its_model_size(tmp_path):
    """A line of only n_params / flops_per_sample (`report.size`) records the model's size, from which
    the FLOPs to success follow, as `ctx.n_params` / `ctx.flops_per_sample` do for a function."""
    name = script(tmp_path, """
        from paretolab.report import report, size
        size(n_params=1000, flops_per_sample=6000)
        for i, err in enumerate([0.5, 0.05]):
            report(i * 10, samples=i * 320, test_error=err)
    """)
    rows, result = run(trial(tmp_path, "python", name, success=Success("test_error", "<=", 0.1)))
    assert len(rows) == 2 and (result.status, result.n_params, result.flops_per_sample) == ("finished", 1000, 6000)
    assert result.flops_to_success == 6000 * 320
    bad = script(tmp_path, 'print(\'##paretolab {"n_params": "big"}\')\n', "bad.py")
    _, result = run(trial(tmp_path, "python", bad))
    assert result.status == "failed" and result.error == "stdout line 1: n_params must be a number >= 0, got 'big'"
