"""Issue 13's attacks on the gateway, tried against the real `lab serve`.

A hostile kernel (tests/fixtures/hostile_kernel.py, named by a kernelspec)
speaks ZMTP by hand, so it can send what no ZeroMQ library would; the
contents API is fed a FIFO, a device node and a sparse 10 GB file. Each
test also checks that another user's kernel keeps answering meanwhile.
"""

import json
import os
import pathlib
import stat
import statistics
import sys
import threading
import time
import uuid

import pytest
import websocket

from test_gateway import LAB, VENV_DATA, api, free_port, send_execute_on, start_lab

ROOT = pathlib.Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "tests" / "fixtures" / "hostile_kernel.py"
MIB = 1024 * 1024


def add_user(data, name):
    import subprocess

    out = subprocess.run([str(LAB), "user", "add", name, "--role", "engineer", "--data-dir", str(data)],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-hardening")
    specs = tmp_path_factory.mktemp("specs")
    kdir = specs / "kernels" / "hostile"
    kdir.mkdir(parents=True)
    (kdir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(HOSTILE), "{connection_file}"],
        "display_name": "Hostile", "language": "python",
    }))
    (data / "lab.toml").write_text(
        '[limits]\niopub_message = "1 MiB"\nrequest_body = "30 MiB"\ncontents_file = "30 MiB"\n'
        'sessions_per_user = 40\nreplay_per_user = "16 MiB"\nreplay_total = "24 MiB"\n')
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    port = free_port()
    proc, token, _ = start_lab(data, port, env, "--kernelspec-dir", str(specs))
    lab = {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token,
           "data": data, "proc": proc}
    lab["bob"] = add_user(data, "bob")
    lab["mallory"] = add_user(data, "mallory")
    status, kernel = api(lab["url"], "/api/kernels", lab["bob"], "POST", {"name": "academy-candle"})
    assert status == 201, kernel
    lab["bob_ws"] = websocket.create_connection(
        f"{lab['ws']}/api/kernels/{kernel['id']}/channels?session_id={uuid.uuid4().hex}&token={lab['bob']}",
        timeout=60)
    yield lab
    lab["bob_ws"].close()
    proc.terminate()
    proc.wait(timeout=30)


def cell(ws, code, wait_idle=True):
    """Every message of one cell, until its reply (and its idle status)."""
    msg_id = send_execute_on(ws, code)
    msgs, reply, idle = [], None, not wait_idle
    while reply is None or not idle:
        m = json.loads(ws.recv())
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        msgs.append(m)
        if m["msg_type"] == "execute_reply":
            reply = m
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            idle = True
    return msgs


def streams(msgs, name):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def bob_round_trip(lab):
    """Seconds for one execute round trip on Bob's kernel."""
    t = time.monotonic()
    msgs = cell(lab["bob_ws"], "1 + 1")
    assert any(m["msg_type"] == "execute_result" for m in msgs), msgs
    return time.monotonic() - t


def test_a_hostile_kernel_cannot_abort_the_gateway_or_smuggle_messages(lab):
    status, kernel = api(lab["url"], "/api/kernels", lab["mallory"], "POST", {"name": "hostile"})
    assert status == 201, kernel
    ws = websocket.create_connection(
        f"{lab['ws']}/api/kernels/{kernel['id']}/channels?session_id=m&token={lab['mallory']}",
        timeout=60)

    # An honest message over the iopub limit (1 MiB here): dropped, and the
    # cell's clients are told on stderr; the kernel's next message arrives.
    msgs = cell(ws, f"oversized {2 * MIB}")
    assert "over the limit of 1048576 bytes" in streams(msgs, "stderr"), msgs
    assert streams(msgs, "stdout") == "after-oversized\n"

    # A header that says msg_type twice (the gateway's filter read one key,
    # the browser the other): refused, so the forged notice never arrives.
    msgs = cell(ws, "repeated-key")
    assert not any("application/vnd.academy.notice+json" in json.dumps(m["content"]) for m in msgs), msgs
    assert streams(msgs, "stdout") == "after-repeated\n"

    # A frame header announcing 2^62 bytes: aborted the whole gateway before.
    cell(ws, "exabyte", wait_idle=False)
    assert lab["proc"].poll() is None, "the gateway died"
    assert api(lab["url"], "/api/status", lab["bob"])[0] == 200
    assert bob_round_trip(lab) < 5
    ws.close()
    assert api(lab["url"], f"/api/kernels/{kernel['id']}", lab["mallory"], "DELETE")[0] == 204


def test_fifos_devices_and_huge_files_get_clear_errors_and_never_block_others(lab):
    # The gateway makes Mallory's folder; she (her kernel) makes the rest.
    assert api(lab["url"], "/api/contents/hello.txt", lab["mallory"], "PUT",
               {"type": "file", "format": "text", "content": "hi"})[0] in (200, 201)
    home = lab["data"] / "users" / "mallory"
    os.mkfifo(home / "fifo")
    with open(home / "huge.bin", "wb") as f:
        f.truncate(10 * 1024 * MIB)  # sparse: 10 GB that take no disk
    paths = ["fifo"] * 8 + ["huge.bin"]
    if os.geteuid() == 0:
        os.mknod(home / "null-device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        paths.append("null-device")
    answers = {}

    def get(i, path):
        answers[i] = (path, *api(lab["url"], f"/api/contents/{path}", lab["mallory"]))

    threads = [threading.Thread(target=get, args=(i, p)) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    # Meanwhile Bob's kernel answers as fast as ever (it stopped for good before).
    times = [bob_round_trip(lab) for _ in range(5)]
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == len(paths), f"requests still hanging: {answers}"
    assert statistics.median(times) < 0.1, times
    for path, status, body in answers.values():
        if path == "huge.bin":
            assert status == 413 and "limit of 31457280 bytes" in body["message"], body
        else:
            assert status == 400, body
            assert ("FIFO" if path == "fifo" else "device node") in body["message"], body
    # The folder still lists them, without reading any.
    status, listing = api(lab["url"], "/api/contents", lab["mallory"])
    assert status == 200 and {"fifo", "huge.bin"} <= {i["name"] for i in listing["content"]}


def test_big_notebooks_save_and_an_over_limit_body_gets_a_json_413(lab):
    def notebook(size):
        return {"type": "notebook", "format": "json", "content": {
            "nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "code", "id": "a", "source": "plot()", "metadata": {},
                       "execution_count": 1, "outputs": [{
                           "output_type": "display_data", "metadata": {},
                           "data": {"image/png": "A" * size}}]}]}}

    # 20 MB: over axum's old 2 MB default, which failed every autosave of a
    # notebook with a few plots.
    status, model = api(lab["url"], "/api/contents/plots.ipynb", lab["mallory"], "PUT", notebook(20 * MIB))
    assert status == 201, model
    status, back = api(lab["url"], "/api/contents/plots.ipynb", lab["mallory"])
    assert status == 200 and len(back["content"]["cells"][0]["outputs"][0]["data"]["image/png"]) == 20 * MIB
    status, body = api(lab["url"], "/api/contents/too-big.ipynb", lab["mallory"], "PUT", notebook(35 * MIB))
    assert status == 413, body
    assert body["reason"] == "Payload Too Large" and "limit of 31457280 bytes" in body["message"], body
    assert api(lab["url"], "/api/contents/too-big.ipynb", lab["mallory"])[0] == 404


def test_nothing_under_the_data_dir_is_open_to_other_unix_users(lab):
    # Files of every kind exist by now: the database, runtime files, kernel
    # connection files and logs, notebooks saved through the API.
    status, kernel = api(lab["url"], "/api/kernels", lab["mallory"], "POST", {"name": "academy-candle"})
    assert status == 201, kernel
    api(lab["url"], "/api/contents/note.txt", lab["mallory"], "PUT",
        {"type": "file", "format": "text", "content": "mine"})
    seen, open_to_others = 0, []
    for dirpath, dirnames, filenames in os.walk(lab["data"]):
        for name in dirnames + filenames:
            p = pathlib.Path(dirpath) / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode) or name in ("lab.toml", "lab.log", "fifo", "null-device", "huge.bin"):
                continue  # written by this test, not by the gateway
            seen += 1
            if mode & 0o077:
                open_to_others.append(f"{oct(mode & 0o777)} {p}")
    assert stat.S_IMODE(lab["data"].stat().st_mode) == 0o700
    assert seen > 5 and not open_to_others, open_to_others
    assert api(lab["url"], f"/api/kernels/{kernel['id']}", lab["mallory"], "DELETE")[0] == 204


def metric(lab, name):
    import urllib.request

    with urllib.request.urlopen(lab["url"] + "/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_one_user_with_a_thousand_sessions_cannot_take_the_gateways_memory(lab):
    hog = add_user(lab["data"], "hog")
    kernels = []
    for _ in range(2):
        status, k = api(lab["url"], "/api/kernels", hog, "POST", {"name": "academy-candle"})
        assert status == 201, k
        kernels.append(k["id"])

    def url(kernel, session):
        return f"{lab['ws']}/api/kernels/{kernel}/channels?session_id={session}&token={hog}"

    # 1,000 sessions, each left behind by a socket that closed: each would
    # buffer 64 MiB for two minutes. The user's 40 (lab.toml) are opened,
    # the rest refused with 429 before the upgrade.
    opened, refused = [], 0
    for i in range(1000):
        try:
            ws = websocket.create_connection(url(kernels[i % 2], f"s{i}"), timeout=30)
            ws.close()
            opened.append(i)
        except websocket.WebSocketBadStatusException as e:
            assert e.status_code == 429, e
            refused += 1
    assert len(opened) == 40 and refused == 960, (len(opened), refused)

    # Both kernels flood 48 MiB each while every session is away: the
    # buffers together stay within the user's 16 MiB (and the gateway's 24).
    flood = 'let s = "x"; for i in 0..20 { s += s; } for i in 0..48 { print(s); } print("done")'
    # (Run from two of the 40 sessions: a 41st would be refused too.)
    for kernel, session in zip(kernels, ["s38", "s39"]):
        ws = websocket.create_connection(url(kernel, session), timeout=120)
        msgs = cell(ws, flood)
        ws.close()
        assert any(m["msg_type"] == "execute_reply" for m in msgs)
    held = metric(lab, "lab_replay_buffer_bytes")
    assert 0 < held <= 16 * MIB, held

    # A session that was away gets what was kept, and is told on stderr what was not.
    ws = websocket.create_connection(url(kernels[0], f"s{opened[0]}"), timeout=60)
    text = ""
    while "done" not in text and "dropped" not in text:
        m = json.loads(ws.recv())
        if m["msg_type"] == "stream":
            text += m["content"]["text"][-200:]
    ws.close()
    assert "dropped" in text, text[-500:]
    # Another user is untouched.
    assert bob_round_trip(lab) < 1
    for kernel in kernels:
        assert api(lab["url"], f"/api/kernels/{kernel}", hog, "DELETE")[0] == 204
