"""How long kernels live around the real `lab serve`: a clean stop (SIGTERM) stops
them, `--keep-kernels` keeps them for the next start, and an academy kernel whose
gateway died exits on its own after `--orphan-timeout`."""

import os
import signal
import time

from test_gateway import VENV_DATA, api, free_port, pid_alive, start_lab


def kernel_pids(data):
    """Live processes started with a connection file in this gateway's runtime dir."""
    needle = str(data / "runtime")
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def wait_for(what, timeout, pred):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def lab_env():
    return dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")


def start_kernels(base, token, specs):
    ids = []
    for spec in specs:
        status, model = api(base, "/api/kernels", token, "POST", {"name": spec})
        assert status == 201, model
        ids.append(model["id"])
    return ids


def test_a_stopped_gateway_stops_its_kernels(tmp_path):
    data, port = tmp_path / "data", free_port()
    proc, token, _ = start_lab(data, port, lab_env())
    try:
        start_kernels(f"http://127.0.0.1:{port}", token, ["academy-candle", "python3"])
        pids = kernel_pids(data)
        assert len(pids) >= 2, pids
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # By the time `lab serve` has exited, its kernels are gone.
    assert [p for p in pids if pid_alive(p)] == [], (data / "lab.log").read_text()


def test_keep_kernels_leaves_them_running_for_the_next_start(tmp_path):
    data, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    proc, token, _ = start_lab(data, port, lab_env(), "--keep-kernels")
    try:
        [kid] = start_kernels(base, token, ["academy-candle"])
        pids = kernel_pids(data)
        assert pids
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert all(pid_alive(p) for p in pids), "--keep-kernels stopped a kernel"

    # The next start (a plain one) re-attaches it, and its clean stop ends it.
    proc, token, _ = start_lab(data, port, lab_env())
    try:
        status, kernels = api(base, "/api/kernels", token)
        assert status == 200 and [k["id"] for k in kernels] == [kid], kernels
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert [p for p in pids if pid_alive(p)] == []


def test_an_academy_kernel_whose_gateway_died_exits_on_its_own(tmp_path):
    data, port = tmp_path / "data", free_port()
    proc, token, _ = start_lab(data, port, lab_env(), "--orphan-timeout", "2s")
    try:
        start_kernels(f"http://127.0.0.1:{port}", token, ["academy-candle"])
        [pid] = kernel_pids(data)
        # Idle, with no client, for longer than the window: the gateway's
        # heartbeat pings keep it alive.
        time.sleep(3.5)
        assert pid_alive(pid), (data / "lab.log").read_text()
    finally:
        proc.kill()  # kill -9: no clean stop, the kernel is left behind
        proc.wait()
    wait_for("the orphaned kernel to exit", 15, lambda: not pid_alive(pid))


def test_a_bad_orphan_timeout_is_refused_with_a_reason(tmp_path):
    data, port = tmp_path / "data", free_port()
    import subprocess
    from test_gateway import LAB

    out = subprocess.run(
        [str(LAB), "serve", "--port", str(port), "--data-dir", str(data), "--orphan-timeout", "200ms"],
        capture_output=True, text=True, env=lab_env(), timeout=30,
    )
    assert out.returncode != 0
    assert "orphan" in out.stderr, out.stderr


def test_the_suites_last_step_names_a_kernel_left_running(tmp_path):
    """scripts/test points every temp dir into one folder and ends with
    scripts/check-leftovers on it: a process started from there fails the run."""
    import subprocess
    import sys
    from test_gateway import ROOT

    check = [str(ROOT / "scripts" / "check-leftovers"), str(tmp_path), "1"]
    leaked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               str(tmp_path / "runtime" / "kernel-leaked.json")])
    try:
        out = subprocess.run(check, capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and f"{leaked.pid}\t" in out.stderr, out.stderr
    finally:
        leaked.kill()
        leaked.wait()
    out = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_at_start_a_kernel_running_with_no_record_is_stopped(tmp_path):
    """A kernel whose record was lost (a failed write, kill -9 between launch and
    record, a restored database) is found by its connection file and stopped."""
    import sqlite3

    data, port = tmp_path / "data", free_port()
    proc, token, _ = start_lab(data, port, lab_env())
    try:
        start_kernels(f"http://127.0.0.1:{port}", token, ["academy-candle"])
        [pid] = kernel_pids(data)
    finally:
        proc.kill()  # kill -9: the kernel runs on
        proc.wait()
    with sqlite3.connect(data / "lab.db") as db:
        db.execute("DELETE FROM kernels")
    assert pid_alive(pid)
    proc, token, printed = start_lab(data, port, lab_env())
    try:
        # Stopped before the gateway answers.
        assert not pid_alive(pid), printed
        assert "stopped 1 orphaned kernel" in printed, printed
        status, kernels = api(f"http://127.0.0.1:{port}", "/api/kernels", token)
        assert status == 200 and kernels == [], kernels
        assert not list((data / "runtime").glob("kernel-*.json"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
