"""`lab serve --backend kubernetes` end to end, without a cluster.

A fake Kubernetes API server (plain HTTP, real-shaped objects, chunked watch
streams) stands in for the control plane, and a fake kubelet in it runs each
pod's command as a real academy-kernel process once the pod's Secret (the
connection file) exists. The real gateway reaches it through a kubeconfig,
and the real Python clients drive the gateway: a start shows its progress,
code runs over the websocket, a delete removes the pod, and a restarted
gateway re-adopts its kernel and deletes orphans.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_gateway import api, free_port, start_lab, stream_of_cell  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNEL = ROOT / "target" / "debug" / "academy-kernel"
NS = "academy-lab"


class FakeCluster:
    """The API server's state, and the kubelet's processes."""

    def __init__(self, workdir):
        self.lock = threading.Condition()
        self.pods = {}        # name -> pod object
        self.procs = {}       # name -> Popen
        self.rv = 1
        self.watchers = []    # lists that watch handlers drain
        self.requests = []    # (method, path) seen
        self.workdir = workdir
        self.ready_delay = 1.0

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def emit(self, kind, obj):
        line = json.dumps({"type": kind, "object": obj})
        for w in self.watchers:
            w.append(line)
        self.lock.notify_all()

    def set_status(self, name, status):
        pod = self.pods[name]
        pod["status"] = status
        pod["metadata"]["resourceVersion"] = self.next_rv()
        self.emit("MODIFIED", pod)

    def start_container(self, name, connection_json):
        """The kubelet: once the Secret exists, run the pod's command."""
        pod = self.pods[name]
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        conn = d / "connection.json"
        conn.write_text(connection_json)
        argv = pod["spec"]["containers"][0]["command"]
        assert argv[0] == "/usr/local/bin/academy-kernel", argv
        argv = [str(KERNEL)] + [str(conn) if a == "/var/run/academy-lab/connection.json" else a
                                for a in argv[1:]]
        env = {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}
        env["PATH"] = os.environ["PATH"]
        env["HOME"] = str(d)
        for k in ("RUSTUP_HOME", "CARGO_HOME"):
            if k in os.environ:
                env[k] = os.environ[k]
        pod["spec"]["nodeName"] = "fake-gpu-node"
        self.set_status(name, {"phase": "Pending",
                               "conditions": [{"type": "PodScheduled", "status": "True"}],
                               "containerStatuses": [{"name": "kernel", "ready": False, "restartCount": 0,
                                                      "image": "academy-lab/kernel:test", "imageID": "",
                                                      "state": {"waiting": {"reason": "ContainerCreating"}}}]})
        proc = subprocess.Popen(argv, env=env, cwd=d, stdout=open(d / "log", "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc

        def ready():
            port = json.loads(connection_json)["shell_port"]
            # Image pulls take time; let the gateway see the progress.
            time.sleep(self.ready_delay)
            for _ in range(600):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            with self.lock:
                if name in self.pods:
                    self.set_status(name, {
                        "phase": "Running", "podIP": "127.0.0.1",
                        "conditions": [{"type": "PodScheduled", "status": "True"},
                                       {"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"name": "kernel", "ready": True, "restartCount": 0,
                                               "image": "academy-lab/kernel:test", "imageID": "",
                                               "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}}]})
        threading.Thread(target=ready, daemon=True).start()

    def delete(self, name):
        pod = self.pods.pop(name, None)
        proc = self.procs.pop(name, None)
        if proc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if pod:
            pod["metadata"]["resourceVersion"] = self.next_rv()
            self.emit("DELETED", pod)
        return pod

    def stop(self):
        with self.lock:
            for name in list(self.procs):
                self.delete(name)


def make_handler(cluster):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, obj):
            body = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def status(self, code, reason, message):
            self.reply(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code})

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def do_GET(self):
            url = urlparse(self.path)
            q = parse_qs(url.query)
            parts = url.path.strip("/").split("/")
            with cluster.lock:
                cluster.requests.append(("GET", self.path))
            if parts[-1] == "pods" and q.get("watch") == ["true"]:
                return self.watch()
            with cluster.lock:
                if parts[-1] == "pods":
                    items = list(cluster.pods.values())
                    return self.reply(200, {"kind": "PodList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": cluster.next_rv()}, "items": items})
                if parts[-1] == "log":
                    log = cluster.workdir / parts[-2] / "log"
                    return self.reply(200, log.read_text() if log.exists() else "")
                if parts[-2] == "pods":
                    pod = cluster.pods.get(parts[-1])
                    return self.reply(200, pod) if pod else self.status(404, "NotFound", "not found")
            self.status(404, "NotFound", f"no route {self.path}")

        def watch(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            queue = []
            with cluster.lock:
                cluster.watchers.append(queue)
            try:
                deadline = time.monotonic() + 290
                while time.monotonic() < deadline:
                    with cluster.lock:
                        cluster.lock.wait_for(lambda: queue, timeout=1)
                        lines, queue[:] = list(queue), []
                    for line in lines:
                        data = (line + "\n").encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with cluster.lock:
                    cluster.watchers.remove(queue)

        def do_POST(self):
            parts = urlparse(self.path).path.strip("/").split("/")
            obj = self.body()
            with cluster.lock:
                cluster.requests.append(("POST", self.path))
                if parts[-1] == "pods":
                    name = obj["metadata"]["name"]
                    obj.update(apiVersion="v1", kind="Pod")
                    obj["metadata"].update(uid=str(uuid.uuid4()), resourceVersion=cluster.next_rv())
                    obj["status"] = {"phase": "Pending"}
                    cluster.pods[name] = obj
                    cluster.emit("ADDED", obj)
                    return self.reply(201, obj)
                if parts[-1] == "secrets":
                    owner = obj["metadata"]["ownerReferences"][0]["name"]
                    cluster.start_container(owner, obj["stringData"]["connection.json"])
                    return self.reply(201, obj)
            self.status(404, "NotFound", f"no route {self.path}")

        def do_DELETE(self):
            parts = urlparse(self.path).path.strip("/").split("/")
            self.body()
            with cluster.lock:
                cluster.requests.append(("DELETE", self.path))
                pod = cluster.delete(parts[-1])
            if pod:
                self.reply(200, pod)
            else:
                self.status(404, "NotFound", f"pods \"{parts[-1]}\" not found")

    return Handler


@pytest.fixture
def cluster(tmp_path):
    c = FakeCluster(tmp_path / "kubelet")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(c))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NS}}],
    }))
    c.kubeconfig = kubeconfig
    yield c
    server.shutdown()
    c.stop()


def serve(cluster, data, extra=""):
    (data / "lab.toml").write_text(
        'backend = "kubernetes"\ngpus = "1x2 fake-gpu"\n'
        '[kubernetes]\nnamespace = "academy-lab"\nkernel_image = "academy-lab/kernel:test"\n'
        'launch_timeout = "60s"\n' + extra)
    port = free_port()
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), LAB_LOG="info")
    proc, token, banner = start_lab(data, port, env)
    return proc, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", token, banner


def test_a_kernel_runs_in_a_pod_shows_its_progress_and_goes_with_it(cluster, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    proc, url, ws, token, banner = serve(cluster, data)
    try:
        assert "Kubernetes pods of academy-lab/kernel:test in academy-lab" in banner
        # The start blocks until the pod is ready; meanwhile the list shows what it is doing.
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=api(url, "/api/kernels", token, "POST",
                  {"name": "academy-candle", "resources": {"gpus": 1, "memory": "6Gi"}})))
        t.start()
        progress = []
        while t.is_alive():
            status, kernels = api(url, "/api/kernels", token)
            progress += [k.get("launch", {}).get("progress") for k in kernels if k["execution_state"] == "starting"]
            time.sleep(0.1)
        t.join()
        status, model = result["r"]
        assert status == 201, model
        assert any(p and "pulling image academy-lab/kernel:test" in p and "fake-gpu-node" in p
                   for p in progress), progress
        assert model["resources"]["gpus"] == 1

        pod_name = f"admin-{model['id']}"
        with cluster.lock:
            pod = cluster.pods[pod_name]
        resources = pod["spec"]["containers"][0]["resources"]
        limits = resources["limits"]
        assert limits["nvidia.com/gpu"] == "1"
        # The body's memory, and the CPU academy-candle's kernelspec declares.
        assert limits["memory"] == resources["requests"]["memory"] == "6Gi", resources
        assert limits["cpu"] == resources["requests"]["cpu"] == "2", resources
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "fake-gpu"}

        out = stream_of_cell(f"{ws}/api/kernels/{model['id']}/channels?session_id=s&token={token}",
                             'print("hello from the pod")')
        assert "hello from the pod" in out

        # The gateway dies; a pod nobody knows appears (a kernel of an older gateway).
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with cluster.lock:
            cluster.pods["bob-orphan"] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "bob-orphan", "namespace": NS, "uid": "u", "resourceVersion": cluster.next_rv(),
                             "labels": {"app.kubernetes.io/managed-by": "academy-lab-gateway",
                                        "academy-lab.io/kernel-id": str(uuid.uuid4())}},
                "spec": {"containers": [{"name": "kernel", "image": "x"}]}, "status": {"phase": "Running"}}
        proc, url, ws, token, banner = serve(cluster, data)
        assert "stopped 1 orphaned kernel" in banner, banner
        with cluster.lock:
            assert "bob-orphan" not in cluster.pods and pod_name in cluster.pods
        status, again = api(url, f"/api/kernels/{model['id']}", token)
        assert status == 200, again
        out = stream_of_cell(f"{ws}/api/kernels/{model['id']}/channels?session_id=s2&token={token}",
                             'print("still here")')
        assert "still here" in out

        assert api(url, f"/api/kernels/{model['id']}", token, "DELETE")[0] == 204
        with cluster.lock:
            assert pod_name not in cluster.pods
            assert ("DELETE", f"/api/v1/namespaces/{NS}/pods/{pod_name}?") in cluster.requests
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_unschedulable_pod_is_a_clear_error_for_the_client(cluster, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # A pod may stay Unschedulable this long (a node may free up) before the start fails.
    proc, url, ws, token, _ = serve(cluster, data, 'unschedulable_timeout = "2s"\n')
    original = cluster.start_container

    def unschedulable(name, _conn):
        cluster.set_status(name, {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}]})
    cluster.start_container = unschedulable
    try:
        t0 = time.monotonic()
        status, body = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
        assert status == 503, body
        assert "Unschedulable" in body["message"] and "Insufficient nvidia.com/gpu" in body["message"], body
        assert time.monotonic() - t0 >= 2, "it failed before its patience ran out"
        # The GPU went back: the next start is admitted (and fails the same way, not queued).
        status, body = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 2}})
        assert status == 503 and "Unschedulable" in body["message"], body
        with cluster.lock:
            assert not cluster.pods, "failed pods are deleted"
    finally:
        cluster.start_container = original
        proc.terminate()
        proc.wait(timeout=10)


def test_a_slow_pod_is_answered_202_starting_and_its_websocket_waits(cluster, tmp_path):
    """An image pull longer than a client's launch timeout: the start is answered
    at `answer_after` with 202 `starting` and the pod's progress; the websocket
    opened meanwhile waits, and the cell runs once the pod is ready."""
    data = tmp_path / "data"
    data.mkdir()
    cluster.ready_delay = 4.0
    proc, url, ws, token, _ = serve(cluster, data, 'answer_after = "1s"\n')
    try:
        started = time.monotonic()
        status, model = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
        assert status == 202, model
        assert time.monotonic() - started < 3.5, "answered before the pod was ready"
        assert model["execution_state"] == "starting", model
        assert "pulling image academy-lab/kernel:test" in model["launch"]["progress"], model
        assert model["resources"]["gpus"] == 1, model
        status, listed = api(url, "/api/kernels", token)
        assert [k["id"] for k in listed] == [model["id"]], listed
        out = stream_of_cell(f"{ws}/api/kernels/{model['id']}/channels?session_id=s&token={token}",
                             'print("after the pull")')
        assert "after the pull" in out
        status, running = api(url, f"/api/kernels/{model['id']}", token)
        assert status == 200 and running["execution_state"] in ("idle", "busy"), running
        assert api(url, f"/api/kernels/{model['id']}", token, "DELETE")[0] == 204
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_cpu_kernel_pod_sees_no_gpu_and_a_gpu_pod_only_its_allocation(cluster, tmp_path):
    """Issue 13, item 6, through the real gateway: with `runtime_class = "nvidia"`
    (the production overlay's), a kernel started with no GPU gets no runtime class
    and `NVIDIA_VISIBLE_DEVICES=void`, since the CUDA base image says `all`; a GPU
    kernel keeps the class and carries no device variable of its own."""
    data = tmp_path / "data"
    data.mkdir()
    proc, url, ws, token, _ = serve(cluster, data, 'runtime_class = "nvidia"\n')
    try:
        pods = {}
        for gpus in (0, 1):
            status, model = api(url, "/api/kernels", token, "POST",
                                {"name": "academy-candle", "resources": {"gpus": gpus}})
            assert status == 201, model
            with cluster.lock:
                pods[gpus] = cluster.pods[f"admin-{model['id']}"]
            assert api(url, f"/api/kernels/{model['id']}", token, "DELETE")[0] == 204
        cpu, gpu = pods[0]["spec"], pods[1]["spec"]
        assert "runtimeClassName" not in cpu, cpu
        devices = lambda spec: [e for e in spec["containers"][0]["env"]
                                if e["name"].startswith("NVIDIA_") or e["name"] == "CUDA_VISIBLE_DEVICES"]
        assert devices(cpu) == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}], devices(cpu)
        assert gpu["runtimeClassName"] == "nvidia"
        assert devices(gpu) == [], devices(gpu)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_egress_rule_reaching_the_metadata_endpoint_stops_the_gateway_with_the_reason(tmp_path):
    """Issue 13, item 10: lab.toml's `[[kubernetes.egress]]` cannot open the
    cloud metadata endpoint; the gateway refuses the file and says why."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "lab.toml").write_text(
        'backend = "kubernetes"\n[kubernetes]\n'
        '[[kubernetes.egress]]\ncidr = "169.254.169.254/32"\nports = [80]\n')
    r = subprocess.run([str(ROOT / "target" / "debug" / "lab"), "serve", "--port", str(free_port()),
                        "--data-dir", str(data)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
    assert "169.254.169.254/32 lies inside the cloud metadata endpoint" in r.stderr, r.stderr
