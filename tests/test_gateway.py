"""The lab gateway with real Jupyter clients: jupyter_server --gateway-url and a websocket client."""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import websocket

import openapi_check

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAB = ROOT / "target" / "debug" / "lab"
VENV_DATA = pathlib.Path(sys.prefix) / "share" / "jupyter"


_PORTS_GIVEN = set()


def free_port():
    """A free port, never one given before in this session (so a port's
    server, and the document `openapi_check` keeps for it, is only ever one)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def start_lab(data, port, env, *args):
    """`lab serve` on `data`; returns the process, the admin's API token (from
    `data/runtime/lab-server.json`, written before the login URL is printed: the printed
    URL holds only a one-time login code) and what it printed up to the login URL. Its
    log goes to `data/lab.log`."""
    data.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [str(LAB), "serve", "--port", str(port), "--data-dir", str(data), *args],
        stdout=subprocess.PIPE, stderr=open(data / "lab.log", "a"), text=True, env=env,
    )
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Log in with: "):
            info = json.loads((data / "runtime" / "lab-server.json").read_text())
            assert info["pid"] == proc.pid, "lab-server.json is another server's"
            openapi_check.prepare(f"http://127.0.0.1:{port}")
            return proc, info["token"], "".join(lines)
        if not line and proc.poll() is not None:
            break
    raise AssertionError("lab serve printed no login URL:\n" + "".join(lines) + (data / "lab.log").read_text())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-data")
    port = free_port()
    # 10 MB/s of output per client: the flood test must exceed it even on a slow machine.
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn",
               LAB_IOPUB_DATA_RATE_LIMIT="10000000")
    proc, token, _ = start_lab(data, port, env)
    yield {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token,
           "data": data, "proc": proc}
    proc.terminate()
    proc.wait(timeout=10)


def api(base, path, token, method="GET", body=None):
    req = urllib.request.Request(
        base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=90) as r:
            raw = r.read()
            status, kind = r.status, r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        raw = e.read()
        status, kind = e.code, e.headers.get("Content-Type")
    openapi_check.check(base + path, method, status, kind, raw, req.data)
    return status, json.loads(raw) if raw else None


def send_execute_on(ws, code):
    """Sends an execute_request (legacy JSON protocol) on an open websocket;
    returns the request's msg_id."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t",
                   "session": uuid.uuid4().hex, "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    return msg_id


def send_execute(ws_url, code, timeout):
    """Opens a websocket and sends an execute_request; returns the socket and the request's msg_id."""
    ws = websocket.create_connection(ws_url, timeout=timeout)
    return ws, send_execute_on(ws, code)


def execute_over_ws(ws_url, code, timeout=60):
    """Legacy JSON protocol, as JupyterLab behind a gateway speaks it."""
    ws, msg_id = send_execute(ws_url, code, timeout)
    result, reply, idle = None, None, False
    while reply is None or not idle:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "execute_result":
            result = m["content"]["data"]["text/plain"]
        elif m["msg_type"] == "execute_reply":
            reply = m["content"]
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True
    ws.close()
    return reply, result


def test_python_websocket_client_drives_the_legacy_protocol_on_both_kernels(lab):
    for name, code, expected in [("academy-candle", "6 * 7", "42"), ("python3", "6 * 7", "42")]:
        status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": name})
        assert status == 201, model
        url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={lab['token']}"
        reply, result = execute_over_ws(url, code)
        assert reply["status"] == "ok" and result == expected
        assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def test_stock_jupyter_server_uses_us_as_its_gateway(lab, tmp_path):
    port = free_port()
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    proc = subprocess.Popen(
        [str(jupyter), "server", f"--gateway-url={lab['url']}",
         f"--GatewayClient.auth_token={lab['token']}", "--IdentityProvider.token=js-token",
         f"--port={port}", "--no-browser", "--allow-root", f"--ServerApp.root_dir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt")),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, specs = api(base, "/api/kernelspecs", "js-token")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "jupyter server did not start"
                time.sleep(0.3)
        assert status == 200
        assert "academy-candle" in specs["kernelspecs"] and "academy-rust" in specs["kernelspecs"]

        status, model = api(base, "/api/kernels", "js-token", "POST", {"name": "academy-candle"})
        assert status == 201, model
        # The kernel exists on our gateway, with the same id.
        status, ours = api(lab["url"], f"/api/kernels/{model['id']}", lab["token"])
        assert status == 200 and ours["name"] == "academy-candle"

        url = f"ws://127.0.0.1:{port}/api/kernels/{model['id']}/channels?token=js-token"
        reply, result = execute_over_ws(url, 'let s = "gate" + "way"; s')
        assert reply["status"] == "ok" and result == "gateway"

        assert api(base, f"/api/kernels/{model['id']}", "js-token", "DELETE")[0] == 204
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_another_user_gets_404_on_a_kernel(lab):
    other = subprocess.run(
        [str(LAB), "user", "add", "bob", "--role", "engineer", "--data-dir", str(lab["data"])],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "academy-candle"})
    assert status == 201
    assert api(lab["url"], f"/api/kernels/{model['id']}", other)[0] == 404
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"{lab['ws']}/api/kernels/{model['id']}/channels?token={other}")
    assert e.value.status_code == 404
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def test_python_websocket_client_drives_the_v1_binary_protocol(lab):
    # jupyter_server's own (de)serialisers for v1.kernel.websocket.jupyter.org.
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )

    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "academy-candle"})
    assert status == 201
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=v1&token={lab['token']}"
    ws = websocket.create_connection(url, subprotocols=["v1.kernel.websocket.jupyter.org"], timeout=60)
    assert ws.getsubprotocol() == "v1.kernel.websocket.jupyter.org"
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": "v1",
              "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"}
    content = {"code": "[1, 2, 3].len() * 10", "silent": False, "store_history": True,
               "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}
    parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
    ws.send_binary(serialize_msg_to_ws_v1(parts, "shell"))
    result = reply = None
    while reply is None or result is None:
        frame = ws.recv()
        assert isinstance(frame, bytes)
        channel, parts = deserialize_msg_from_ws_v1(frame)
        hdr, parent, _, body = (json.loads(p) for p in parts[:4])
        if parent.get("msg_id") != msg_id:
            continue
        if hdr["msg_type"] == "execute_result":
            assert channel == "iopub"
            result = body["data"]["text/plain"]
        elif hdr["msg_type"] == "execute_reply":
            assert channel == "shell"
            reply = body
    ws.close()
    assert reply["status"] == "ok" and result == "30"
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone too.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_python3_kernel_gets_its_users_environment_a_signal_interrupt_and_a_kill_when_stuck(lab):
    """ipykernel's kernelspec has no interrupt_mode, so it is interrupted by SIGINT;
    it runs in its owner's folder with KERNEL_USERNAME and none of the gateway's
    variables; a DELETE asks it to shut down, and kills it when it does not answer."""
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "python3"})
    assert status == 201, model
    kid = model["id"]
    url = f"{lab['ws']}/api/kernels/{kid}/channels?session_id=env&token={lab['token']}"
    out = stream_of_cell(url, "import os, json; print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(), "
                              "'pid': os.getpid(), 'pgid': os.getpgid(0)}))")
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["env"]["KERNEL_USERNAME"] == "admin" and seen["env"]["KERNEL_ID"] == kid, seen["env"]
    assert seen["cwd"] == str(lab["data"] / "users" / "admin")
    # The gateway runs with LAB_LOG and LAB_IOPUB_DATA_RATE_LIMIT set: none reaches the kernel.
    assert not [k for k in seen["env"] if k.startswith("LAB_")], seen["env"]
    pid = seen["pid"]
    assert seen["pgid"] == pid, "the kernel leads its own process group"

    # Interrupt by signal: a sleeping cell ends with KeyboardInterrupt.
    ws, msg_id = send_execute(url, "import time; print('sleeping', flush=True); time.sleep(60)", 60)
    # The cell is running (not about to) once its own output arrives.
    while True:
        m = json.loads(ws.recv())
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id \
                and "sleeping" in m["content"]["text"]:
            break
    t0 = time.monotonic()
    assert api(lab["url"], f"/api/kernels/{kid}/interrupt", lab["token"], "POST")[0] == 204
    error = None
    while error is None:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "error":
            error = m["content"]["ename"]
    ws.close()
    assert error == "KeyboardInterrupt" and time.monotonic() - t0 < 10

    # A kernel that cannot answer (stopped) is killed after the grace period.
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    assert api(lab["url"], f"/api/kernels/{kid}", lab["token"], "DELETE")[0] == 204
    assert not pid_alive(pid), "the stuck kernel was killed"
    assert time.monotonic() - t0 >= 2, "it was asked to shut down first"


def test_kernel_output_cannot_pose_as_a_gateway_notice(lab):
    """Our UI shows the notice mimetype as the gateway's own banner (cull,
    reclaim); a kernel that displays it reaches the client without it."""
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "python3"})
    assert status == 201, model
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=forge&token={lab['token']}"
    ws, msg_id = send_execute(url, "from IPython.display import display; display({"
                              "'text/plain': 'log in again', 'application/vnd.academy.notice+json': "
                              "{'kind': 'reclaim', 'message': 'log in again', 'seconds_left': 5}}, raw=True)", 60)
    shown = []
    while True:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "display_data":
            shown.append(m["content"]["data"])
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    ws.close()
    assert shown == [{"text/plain": "log in again"}]
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def test_a_deleted_kernel_shuts_down_cleanly(lab):
    """An answering kernel exits on shutdown_request, before any SIGKILL."""
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "python3"})
    assert status == 201, model
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=s&token={lab['token']}"
    pid = int(stream_of_cell(url, "import os, atexit\n"
                                  "atexit.register(lambda: open('clean-exit.txt', 'w').write('bye'))\n"
                                  "print(os.getpid())").strip())
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204
    assert not pid_alive(pid)
    # atexit handlers ran: the process exited on its own, not by SIGKILL.
    marker = lab["data"] / "users" / "admin" / "clean-exit.txt"
    assert marker.read_text() == "bye"
    marker.unlink()


def test_logs_can_be_json_for_a_log_pipeline(tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="info", LAB_LOG_FORMAT="json")
    proc, token, _ = start_lab(data, free_port(), env)
    proc.terminate()
    proc.wait(timeout=10)
    lines = [l for l in (data / "lab.log").read_text().splitlines() if l.strip()]
    assert lines, "nothing was logged"
    records = [json.loads(l) for l in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "fields"} <= r.keys() for r in records), records[:3]
    assert any(r["level"] == "INFO" for r in records)


def test_gateway_killed_and_restarted_reattaches_to_its_kernel(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")

    def start():
        proc, token, _ = start_lab(data, port, env)
        return proc, token

    proc, token = start()
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    status, model = api(base, "/api/kernels", token, "POST", {"name": "academy-candle"})
    assert status == 201
    kid = model["id"]
    reply, _ = execute_over_ws(f"{ws_base}/api/kernels/{kid}/channels?token={token}", "let kept = 7;")
    assert reply["status"] == "ok"
    status, session = api(base, "/api/sessions", token, "POST",
                          {"path": "work/lesson.ipynb", "type": "notebook", "kernel": {"id": kid}})
    assert status == 201, session
    proc.kill()  # kill -9: no shutdown, kernels keep running
    proc.wait()

    proc, token = start()
    try:
        status, kernels = api(base, "/api/kernels", token)
        assert status == 200 and [k["id"] for k in kernels] == [kid]
        # The notebook's session is back too, so reopening it finds its kernel.
        status, sessions = api(base, "/api/sessions", token)
        assert status == 200 and [(s["id"], s["path"], s["kernel"]["id"]) for s in sessions] == \
            [(session["id"], "work/lesson.ipynb", kid)], sessions
        reply, result = execute_over_ws(f"{ws_base}/api/kernels/{kid}/channels?token={token}", "kept * 6")
        assert reply["status"] == "ok" and result == "42"
        assert api(base, f"/api/kernels/{kid}", token, "DELETE")[0] == 204
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# nbclient through jupyter_server's GatewayKernelManager. Used on its own (outside a
# jupyter server), jupyter_server 2.21 ignores the kernel name and sends no token on the
# websocket; these two small subclasses set both.
from jupyter_server.gateway.managers import GatewayKernelClient, GatewayKernelManager  # noqa: E402


class TokenGatewayKernelClient(GatewayKernelClient):
    async def start_channels(self, shell=True, iopub=True, stdin=True, hb=True, control=True):
        from jupyter_server.gateway.gateway_client import GatewayClient
        from jupyter_client.asynchronous.client import AsyncKernelClient
        from threading import Thread

        gw = GatewayClient.instance()
        url = f"{gw.ws_url}{gw.kernels_endpoint}/{self.kernel_id}/channels?token={gw.auth_token}"
        self.channel_socket = websocket.create_connection(url, timeout=60, enable_multithread=True)
        started = AsyncKernelClient.start_channels(self, shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)
        if started is not None:
            await started
        self.response_router = Thread(target=self._route_responses)
        self.response_router.start()


class NamedGatewayKernelManager(GatewayKernelManager):
    async def start_kernel(self, **kwargs):
        kwargs.setdefault("kernel_name", self.kernel_name)
        return await super().start_kernel(**kwargs)


def test_nbclient_runs_an_example_notebook_through_the_gateway(lab):
    import nbclient
    import nbformat
    from jupyter_server.gateway.gateway_client import GatewayClient

    gw = GatewayClient.instance()
    gw.url = lab["url"]
    gw.ws_url = lab["ws"]
    gw.auth_token = lab["token"]
    nb = nbformat.read(ROOT / "examples" / "04-linear-regression.ipynb", as_version=4)
    km = NamedGatewayKernelManager(
        kernel_name="academy-candle",
        client_class="test_gateway.TokenGatewayKernelClient",
    )
    nbclient.NotebookClient(nb, km=km, timeout=300).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    loss = float(re.search(r"final loss: ([0-9.eE+-]+)", text).group(1))
    assert loss < 0.01
    # The kernel ran on our gateway; stop what the client left behind.
    status, kernels = api(lab["url"], "/api/kernels", lab["token"])
    assert [k["name"] for k in kernels] == ["academy-candle"]
    for k in kernels:
        assert api(lab["url"], f"/api/kernels/{k['id']}", lab["token"], "DELETE")[0] == 204


def _peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_a_one_gigabyte_flood_keeps_the_gateway_small_and_tells_the_client(lab):
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "academy-candle"})
    assert status == 201
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=flood&token={lab['token']}"
    ws = websocket.create_connection(url, timeout=300)
    msg_id = uuid.uuid4().hex
    # 1024 prints of a 1 MiB line: 1 GiB of output.
    code = 'let s = "x"; for i in 0..20 { s += s; } for i in 0..1024 { print(s); }'
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": "flood",
                   "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    received = 0
    notice = False
    idle = False
    while not idle:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            text = m["content"]["text"]
            received += len(text)
            notice = notice or "IOPub output rate exceeded" in text
        idle = m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
    ws.close()
    peak = _peak_rss_mb(lab["proc"].pid)
    print(f"flood: client received {received / 1e6:.0f} MB of 1074 MB; gateway peak RSS {peak:.0f} MB")
    assert notice, "the client was told output was dropped"
    assert received < 1 << 30, "not everything was relayed"
    assert peak < 200, f"gateway peak RSS {peak:.0f} MB"
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def test_token_cli_creates_and_revokes_tokens(lab):
    def lab_cli(*args):
        return subprocess.run([str(LAB), *args, "--data-dir", str(lab["data"])],
                              capture_output=True, text=True)

    added = lab_cli("user", "add", "carol", "--role", "trainer", "--group", "cohort-7")
    assert added.returncode == 0, added.stderr
    again = lab_cli("user", "add", "carol")
    assert again.returncode != 0 and "already exists" in again.stderr
    token = lab_cli("token", "create", "carol").stdout.strip()
    status, me = api(lab["url"], "/api/me", token)
    assert status == 200 and me["identity"]["role"] == "trainer" and me["identity"]["group"] == "cohort-7"
    assert lab_cli("token", "revoke", token).returncode == 0
    assert api(lab["url"], "/api/me", token)[0] == 401
    missing = lab_cli("token", "revoke", token)
    assert missing.returncode != 0 and "no live token" in missing.stderr
    nobody = lab_cli("token", "create", "nobody")
    assert nobody.returncode != 0 and "no user" in nobody.stderr


def test_users_added_before_the_first_start_and_culling_flags(tmp_path):
    """`lab user add` may come before the first `lab serve`, which still creates the admin;
    the culling flags take durations and `off` on the command line."""
    data = tmp_path / "data"
    added = subprocess.run([str(LAB), "user", "add", "early", "--role", "engineer", "--data-dir", str(data)],
                           capture_output=True, text=True, check=True)
    early_token = added.stdout.strip()
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    proc, token, _ = start_lab(data, port, env, "--cull-idle-cpu", "off", "--cull-idle-gpu", "30m",
                               "--cull-warning", "60s", "--reclaim-grace", "2m")
    try:
        base = f"http://127.0.0.1:{port}"
        status, me = api(base, "/api/me", token)
        assert status == 200 and me["identity"]["username"] == "admin"
        status, me = api(base, "/api/me", early_token)
        assert status == 200 and me["identity"]["username"] == "early"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _request(ws, channel, msg_type, content, session):
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "t", "session": session,
                   "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": channel, "content": content,
    }))
    return msg_id


def test_each_client_of_a_kernel_gets_its_own_replies_and_input_requests(lab):
    """Two websockets on one python3 kernel share the gateway's connection to it: every
    reply and every input_request still reaches only the client that asked."""
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "python3"})
    assert status == 201, model
    base = f"{lab['ws']}/api/kernels/{model['id']}/channels?token={lab['token']}"
    a = websocket.create_connection(base + "&session_id=alpha", timeout=60)
    b = websocket.create_connection(base + "&session_id=beta", timeout=60)
    try:
        asked_a = _request(a, "shell", "kernel_info_request", {}, "alpha")
        asked_b = _request(b, "shell", "kernel_info_request", {}, "beta")
        for ws, mine, theirs in [(a, asked_a, asked_b), (b, asked_b, asked_a)]:
            while True:
                m = json.loads(ws.recv())
                if m["channel"] == "shell":
                    assert m["parent_header"]["msg_id"] == mine, "a reply went to the wrong client"
                    assert m["msg_type"] == "kernel_info_reply"
                    break
        # A asks for input; only A sees the prompt, and A's answer completes the cell.
        run = _request(a, "shell", "execute_request",
                       {"code": "name = input('who? ')\nprint('hello', name)", "silent": False,
                        "store_history": True, "user_expressions": {}, "allow_stdin": True,
                        "stop_on_error": True}, "alpha")
        prompt = None
        while prompt is None:
            m = json.loads(a.recv())
            if m["channel"] == "stdin" and m["msg_type"] == "input_request":
                assert m["parent_header"]["msg_id"] == run
                prompt = m["content"]["prompt"]
        assert prompt == "who? "
        _request(a, "stdin", "input_reply", {"value": "academy"}, "alpha")
        printed, replied = "", False
        while not replied:
            m = json.loads(a.recv())
            if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == run:
                printed += m["content"]["text"]
            if m["msg_type"] == "execute_reply" and m["parent_header"]["msg_id"] == run:
                replied = m["content"]["status"] == "ok"
        assert printed == "hello academy\n"
        # B saw the cell's iopub output (broadcast, as in Jupyter) but no stdin or shell message.
        b.settimeout(2)
        seen_by_b = []
        try:
            while True:
                seen_by_b.append(json.loads(b.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        assert not [m for m in seen_by_b if m["channel"] in ("stdin", "shell")], seen_by_b
        assert any(m["msg_type"] == "stream" for m in seen_by_b)
    finally:
        a.close()
        b.close()
        api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")


def test_kernels_are_confined_to_their_users_files(lab):
    """A kernel runs as the gateway's Unix user, but Landlock keeps it from the
    gateway's database, from other users' notebooks and from the gateway's process."""
    subprocess.run([str(LAB), "user", "add", "erin", "--role", "engineer",
                    "--data-dir", str(lab["data"])], capture_output=True, text=True, check=True)
    erin = subprocess.run([str(LAB), "token", "create", "erin", "--data-dir", str(lab["data"])],
                          capture_output=True, text=True, check=True).stdout.strip()
    secret = {"type": "file", "format": "text", "content": "erin's secret answer"}
    assert api(lab["url"], "/api/contents/secret.txt", erin, "PUT", secret)[0] in (200, 201)
    erins_file = lab["data"] / "users" / "erin" / "secret.txt"
    assert erins_file.read_text() == "erin's secret answer"
    db = lab["data"] / "lab.db"
    gateway_environ = f"/proc/{lab['proc'].pid}/environ"
    # Erin's kernel: its ports are on loopback, its messages signed, not encrypted.
    status, erins_kernel = api(lab["url"], "/api/kernels", erin, "POST", {"name": "academy-candle"})
    assert status == 201, erins_kernel
    erins_conn = json.loads((lab["data"] / "runtime" / f"kernel-{erins_kernel['id']}.json").read_text())
    gateway_port = int(lab["url"].rsplit(":", 1)[1])

    probe = f"""
import os
for path in [{str(db)!r}, {str(erins_file)!r}, {gateway_environ!r}]:
    try:
        open(path, 'rb').read()
        print('READ', path)
    except PermissionError:
        print('DENIED', path)
try:
    os.kill({lab['proc'].pid}, 0)
    print('SIGNALLED')
except PermissionError:
    print('DENIED signal')
import socket
def connect(port):
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
        return 'CONNECTED'
    except PermissionError:
        return 'DENIED'
    except ConnectionRefusedError:
        return 'REFUSED'
print('iopub', connect({erins_conn['iopub_port']}))
print('shell', connect({erins_conn['shell_port']}))
print('gateway', connect({gateway_port}))
print('https', connect(443))
try:
    socket.socket().bind(('127.0.0.1', {erins_conn['hb_port'] + 1}))
    print('BOUND')
except PermissionError:
    print('DENIED bind')
open('made-by-kernel.txt', 'w').write('mine')
print('WROTE', os.getcwd())
"""
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "python3"})
    assert status == 201, model
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={lab['token']}"
    out = stream_of_cell(url, probe)
    for path in (db, erins_file, gateway_environ):
        assert f"DENIED {path}" in out, out
    assert "DENIED signal" in out and "WROTE" in out, out
    # No TCP to another kernel or to the gateway; outbound HTTPS is allowed
    # (refused here only because nothing listens on loopback's 443).
    for line in ("iopub DENIED", "shell DENIED", "gateway DENIED", "https REFUSED", "DENIED bind"):
        assert line in out, out
    assert api(lab["url"], f"/api/kernels/{erins_kernel['id']}", erin, "DELETE")[0] == 204
    # What the kernel wrote is the admin's own notebook file.
    status, f = api(lab["url"], "/api/contents/made-by-kernel.txt?content=1", lab["token"])
    assert status == 200 and f["content"] == "mine", f
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204

    # academy-rust compiles with cargo inside the same confinement.
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": "academy-rust"})
    assert status == 201, model
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={lab['token']}"
    out = stream_of_cell(url, f"""
match std::fs::read({json.dumps(str(db))}) {{
    Ok(_) => println!("READ db"),
    Err(e) => println!("DENIED db: {{:?}}", e.kind()),
}}
std::fs::write("made-by-rust.txt", "rust").unwrap();
println!("WROTE");
""", timeout=300)
    assert "DENIED db: PermissionDenied" in out and "WROTE" in out, out
    assert (lab["data"] / "users" / "admin" / "made-by-rust.txt").read_text() == "rust"
    assert api(lab["url"], f"/api/kernels/{model['id']}", lab["token"], "DELETE")[0] == 204


def stream_of_cell(ws_url, code, timeout=120):
    """Everything a cell printed, over the legacy protocol."""
    ws, msg_id = send_execute(ws_url, code, timeout)
    text, reply, idle = "", None, False
    while reply is None or not idle:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            text += m["content"]["text"]
        elif m["msg_type"] == "error":
            text += "\n".join(m["content"]["traceback"])
        elif m["msg_type"] == "execute_reply":
            reply = m["content"]
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True
    ws.close()
    return text
