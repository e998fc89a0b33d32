"""GPU admission end to end: `lab serve` over a modelled cluster, ipykernel reporting the
GPUs it was given, the ops CLI changing quotas under a running server, and `lab simulate`."""

import json
import os
import re
import subprocess
import time

import pytest

from test_gateway import LAB, VENV_DATA, api, execute_over_ws, free_port, start_lab


@pytest.fixture(scope="module")
def gpu_lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("gpu-lab")
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    proc, token, printed = start_lab(data, port, env, "--gpus", "2x4 H100-80GB", "--queue-wait", "0")
    gpus_line = next((line for line in printed.splitlines() if line.startswith("GPUs:")), None)
    assert gpus_line and "8 × H100-80GB (modelled" in gpus_line, gpus_line

    def cli(*args):
        return subprocess.run([str(LAB), *args, "--data-dir", str(data)],
                              capture_output=True, text=True, env=env)

    yield {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token,
           "cli": cli, "data": data}
    proc.terminate()
    proc.wait(timeout=10)


def test_ipykernel_sees_exactly_its_admitted_gpus(gpu_lab):
    url, token = gpu_lab["url"], gpu_lab["token"]
    status, model = api(url, "/api/kernels", token, "POST", {"name": "python3", "resources": {"gpus": 3}})
    assert status == 201, model
    devices = model["resources"]["devices"]
    assert len(devices) == 3 and model["resources"]["gpu_model"] == "H100-80GB"
    ws = f"{gpu_lab['ws']}/api/kernels/{model['id']}/channels?token={token}"
    reply, result = execute_over_ws(ws, "import os; os.environ.get('CUDA_VISIBLE_DEVICES'), os.environ.get('ACADEMY_VIRTUAL_GPU')")
    assert reply["status"] == "ok"
    assert result == repr((",".join(devices), "1"))
    # A second kernel gets other GPUs (4 per node: this one fits beside the first on one node).
    status, other = api(url, "/api/kernels", token, "POST", {"name": "python3", "env": {"KERNEL_GPUS": "1"}})
    assert status == 201, other
    assert other["resources"]["node"] != model["resources"]["node"] or \
        not set(other["resources"]["devices"]) & set(devices)
    for k in (model, other):
        assert api(url, f"/api/kernels/{k['id']}", token, "DELETE")[0] == 204


def test_ops_cli_changes_quotas_under_a_running_server(gpu_lab, tmp_path):
    url, cli = gpu_lab["url"], gpu_lab["cli"]
    added = cli("group", "add", "cohort", "--guaranteed", "H100-80GB=1", "--borrow", "H100-80GB=0",
                "--max-kernels", "3")
    assert added.returncode == 0, added.stderr
    again = cli("group", "add", "cohort")
    assert again.returncode != 0 and "exists" in again.stderr
    eve = cli("user", "add", "eve", "--group", "cohort").stdout.strip()
    # The server polls the quotas' version every second: wait until it has the group.
    deadline = time.monotonic() + 10
    while not any(g["name"] == "cohort" for g in api(url, "/api/admin/quotas", gpu_lab["token"])[1]["group"]):
        assert time.monotonic() < deadline, "the server did not pick up the new group"
        time.sleep(0.1)
    status, first = api(url, "/api/kernels", eve, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
    assert status == 201, first
    status, second = api(url, "/api/kernels", eve, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
    assert status == 202, second
    assert second["execution_state"] == "queued" and second["queue"]["position"] == 1
    assert "cohort holds 1 of its 1" in second["queue"]["waiting_for"]
    # Export, raise the guarantee in the file, import: the queued kernel starts.
    exported = cli("quota", "export", "--format", "yaml")
    assert exported.returncode == 0 and "name: cohort" in exported.stdout
    path = tmp_path / "quotas.yaml"
    path.write_text(exported.stdout.replace("H100-80GB: 1", "H100-80GB: 2"))
    imported = cli("quota", "import", str(path))
    assert imported.returncode == 0, imported.stderr
    deadline = time.monotonic() + 20
    while True:
        status, m = api(url, f"/api/kernels/{second['id']}", eve)
        if m["execution_state"] in ("idle", "busy"):
            break
        assert time.monotonic() < deadline, m
        time.sleep(0.2)
    # A bad file is refused with the reason, and nothing changes.
    bad = tmp_path / "bad.toml"
    bad.write_text('[[group]]\nname = "cohort"\nweight = -2\n')
    refused = cli("quota", "import", str(bad))
    assert refused.returncode != 0 and "weight" in refused.stderr
    assert "H100-80GB = 2" in cli("quota", "export").stdout
    for k in (first, second):
        assert api(url, f"/api/kernels/{k['id']}", eve, "DELETE")[0] == 204


def test_lab_simulate_replays_a_term(tmp_path):
    workload = tmp_path / "term.toml"
    workload.write_text("""
weeks = 2
seed = 3
competition_weeks = [2]
[[cohort]]
name = "cohort"
count = 3
size = 40
model = "H100-80GB"
guaranteed = { "H100-80GB" = 4 }
borrow_limit = { "*" = "unlimited" }
user_limits = { max_kernels = 1, gpu_hours = 3, period = "week" }
""")
    chart = tmp_path / "chart.svg"
    out = subprocess.run([str(LAB), "simulate", "--cluster", "2x8 H100-80GB", "--workload", str(workload),
                          "--chart", str(chart)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert re.search(r"wait p50 \d+ s, p95 \d+ s, p99 \d+ s", out.stdout), out.stdout
    assert "GPU utilisation" in out.stdout and "users 120" in out.stdout
    assert "(gpu_budget)" in out.stdout, out.stdout  # 3 GPU-hours a week run out in a competition week
    assert chart.read_text().startswith("<svg")
    as_json = subprocess.run([str(LAB), "simulate", "--cluster", "2x8 H100-80GB", "--workload", str(workload),
                              "--json"], capture_output=True, text=True)
    report = json.loads(as_json.stdout)
    assert report["capacity"] == 16 and 0 < report["gpu_utilisation"] <= 1
    bad = subprocess.run([str(LAB), "simulate", "--cluster", "lots of GPUs", "--workload", str(workload)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "expected e.g." in bad.stderr


def _serve(data, port, env):
    proc, token, _ = start_lab(data, port, env, "--gpus", "1x1 H100-80GB", "--queue-wait", "0")
    return proc, token


def test_a_queued_start_survives_a_gateway_restart(tmp_path):
    """kill -9 the gateway while a start waits for a GPU: the restarted gateway
    has it again, under the same id and in the same place, and starts it when
    the GPU is free."""
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    user = subprocess.run([str(LAB), "user", "add", "quinn", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    proc, admin = _serve(tmp_path, port, env)
    try:
        gpu = {"name": "academy-candle", "resources": {"gpus": 1}}
        status, running = api(url, "/api/kernels", admin, "POST", gpu)
        assert status == 201, running
        status, queued = api(url, "/api/kernels", user, "POST", gpu)
        assert status == 202 and queued["queue"]["position"] == 1, queued
        proc.kill()
        proc.wait()
        proc, admin = _serve(tmp_path, port, env)
        status, again = api(url, f"/api/kernels/{queued['id']}", user)
        assert status == 200 and again["execution_state"] == "queued", again
        assert again["queue"]["position"] == 1
        # The running kernel was re-attached and still holds the GPU; when it goes, the queued one starts.
        assert api(url, f"/api/kernels/{running['id']}", admin, "DELETE")[0] == 204
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, model = api(url, f"/api/kernels/{queued['id']}", user)
            if model["execution_state"] not in ("queued", "starting"):
                break
            time.sleep(0.2)
        assert model["execution_state"] == "idle" and model["resources"]["gpus"] == 1, model
        assert api(url, f"/api/kernels/{queued['id']}", user, "DELETE")[0] == 204
        # Nothing is left to restore at the next start.
        proc.terminate()
        proc.wait(timeout=10)
        proc, admin = _serve(tmp_path, port, env)
        status, kernels = api(url, "/api/kernels", admin)
        assert kernels == [], kernels
    finally:
        proc.terminate()
        proc.wait(timeout=10)
