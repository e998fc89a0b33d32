"""What a local kernel can reach (issue 13, items 2, 4, 6 and 15), through the real `lab`
binary and real kernels: the gateway user's home, its command line and database, Unix
sockets, GPU device nodes, other kernels' /dev/shm, and what `--sandbox` promises."""

import json
import os
import pathlib
import platform
import socket
import subprocess
import threading
import uuid

import pytest

from test_gateway import LAB, VENV_DATA, api, free_port, start_lab, stream_of_cell

REAL_HOME = pathlib.Path(os.environ.get("HOME", "/root"))


def landlock_abi():
    """The running Linux's Landlock ABI (0 without Landlock), asked of the kernel itself."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION); 444 on every arch.
    v = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(v, 0)


pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")


def plant_secrets(home):
    """Puts an SSH key and a listening Unix socket (as a user systemd or docker socket
    would be) in `home`; returns the socket's path, its listener and the list of the
    connections it accepts."""
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "id_test").write_text("PLANTED-SSH-KEY")
    (home / ".run").mkdir(mode=0o700)
    sock_path = home / ".run" / "bus.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(8)
    accepted = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return sock_path, listener, accepted


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A lab whose Unix user has a home with secrets in it: an SSH key and a listening
    Unix socket (as a user systemd or docker socket would be), and two modelled GPUs
    whose device nodes are planted files (`LAB_TEST_DEV_DIR`)."""
    home = tmp_path_factory.mktemp("gateway-home")
    sock_path, listener, accepted = plant_secrets(home)
    dev = tmp_path_factory.mktemp("dev")
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (dev / name).write_text(f"device {name}")
    data = tmp_path_factory.mktemp("lab-data")
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn", HOME=str(home),
               XDG_RUNTIME_DIR=str(home / ".run"), LAB_GPUS="1x2 H100-80GB",
               LAB_TEST_DEV_DIR=str(dev),
               # The toolchains stay where they are; only the home moved.
               CARGO_HOME=os.environ.get("CARGO_HOME", str(REAL_HOME / ".cargo")),
               RUSTUP_HOME=os.environ.get("RUSTUP_HOME", str(REAL_HOME / ".rustup")))
    proc, token, printed = start_lab(data, port, env)
    yield {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token,
           "data": data, "proc": proc, "home": home, "sock": sock_path, "accepted": accepted,
           "dev": dev, "printed": printed}
    proc.terminate()
    proc.wait(timeout=30)
    listener.close()


def start(lab, name, **body):
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": name, **body})
    assert status == 201, model
    return model["id"], f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={lab['token']}"


def stop(lab, kernel_id):
    assert api(lab["url"], f"/api/kernels/{kernel_id}", lab["token"], "DELETE")[0] == 204


PY_TRY = """
import os, socket
def attempt(label, f):
    try:
        f()
        print(label, 'OK')
    except OSError as e:
        print(label, 'DENIED', type(e).__name__)
"""


def test_a_kernel_reaches_nothing_of_the_gateway_users_home(lab):
    """Item 2: the gateway user's ~/.ssh, its home's listing, the gateway's command line,
    lab.db and a Unix socket in its runtime dir are out of a kernel's reach, and the
    python3 and academy-rust kernels still work."""
    home, data, pid = lab["home"], lab["data"], lab["proc"].pid
    kernel_id, url = start(lab, "python3")
    out = stream_of_cell(url, PY_TRY + f"""
attempt('ssh-key', lambda: print(open({str(home / '.ssh' / 'id_test')!r}).read()))
attempt('home-list', lambda: print(os.listdir({str(home)!r})))
attempt('gateway-cmdline', lambda: print(open('/proc/{pid}/cmdline', 'rb').read()))
attempt('lab-db', lambda: open({str(data / 'lab.db')!r}, 'rb').read())
def unix():
    s = socket.socket(socket.AF_UNIX)
    s.connect({str(lab['sock'])!r})
    s.close()
attempt('unix-socket', unix)
a, b = socket.socketpair()
a.send(b'x'); print('socketpair', b.recv(1))
attempt('own-file', lambda: open('own.txt', 'w').write('mine'))
import multiprocessing
print('mp-lock', multiprocessing.Lock().acquire())
""")
    for label in ("ssh-key", "home-list", "gateway-cmdline", "lab-db", "unix-socket"):
        assert f"{label} DENIED" in out, out
    assert "PLANTED-SSH-KEY" not in out and "serve" not in out, out
    assert "socketpair b'x'" in out and "own-file OK" in out and "mp-lock True" in out, out
    assert lab["accepted"] == [], "a kernel connected to the planted Unix socket"
    stop(lab, kernel_id)

    # academy-rust runs cargo and rustc from the toolchain, and is kept out the same way.
    kernel_id, url = start(lab, "academy-rust")
    out = stream_of_cell(url, f"""
for p in [{json.dumps(str(home / '.ssh' / 'id_test'))}, "/proc/{pid}/cmdline"] {{
    match std::fs::read(p) {{
        Ok(_) => println!("READ {{p}}"),
        Err(e) => println!("DENIED {{:?}}", e.kind()),
    }}
}}
println!("{{}}", std::os::unix::net::UnixStream::connect({json.dumps(str(lab['sock']))}).is_ok());
println!("SUM {{}}", (1..=10).sum::<i32>());
""", timeout=300)
    assert "READ" not in out and "DENIED" in out and "SUM 55" in out and "false" in out, out
    stop(lab, kernel_id)

    # academy-candle too.
    kernel_id, url = start(lab, "academy-candle")
    out = stream_of_cell(url, 'print("candle " + (40 + 2))')
    assert "candle 42" in out, out
    stop(lab, kernel_id)


def test_no_secret_is_on_the_gateways_command_line(lab):
    """Item 2: `lab serve` gets no token or key on its command line (anyone on the
    machine can read /proc/PID/cmdline), and scripts/run passes JupyterLab's token
    in the environment."""
    argv = pathlib.Path(f"/proc/{lab['proc'].pid}/cmdline").read_bytes().split(b"\0")
    assert not any(lab["token"].encode() in a for a in argv), argv
    run = (pathlib.Path(__file__).resolve().parent.parent / "scripts" / "run").read_text()
    assert "auth_token=" not in run and "JUPYTER_GATEWAY_AUTH_TOKEN" in run


def test_a_kernel_opens_only_its_admitted_gpus_device_node(lab):
    """Item 6: a kernel admitted for GPU 0 cannot open /dev/nvidia1 (it would run on a
    GPU outside admission by unsetting CUDA_VISIBLE_DEVICES); one with no GPU opens none."""
    dev = lab["dev"]
    probe = PY_TRY + f"""
print('visible', repr(os.environ.get('CUDA_VISIBLE_DEVICES')))
for n in ('nvidia0', 'nvidia1', 'nvidiactl'):
    attempt(n, lambda: open(os.path.join({str(dev)!r}, n), 'r+').read())
"""
    kernel_id, url = start(lab, "python3", resources={"gpus": 1})
    out = stream_of_cell(url, probe)
    stop(lab, kernel_id)
    mine = "nvidia0" if "visible '0'" in out else "nvidia1"
    other = "nvidia1" if mine == "nvidia0" else "nvidia0"
    assert f"{mine} OK" in out and f"{other} DENIED" in out and "nvidiactl OK" in out, out
    kernel_id, url = start(lab, "python3")
    out = stream_of_cell(url, probe)
    stop(lab, kernel_id)
    assert "visible ''" in out and "nvidia0 DENIED" in out and "nvidia1 DENIED" in out, out


def test_kernels_do_not_share_dev_shm(lab):
    """Item 15: each kernel has its own /dev/shm; another kernel's segment is not there."""
    name = f"lab-test-{uuid.uuid4().hex}"
    a_id, a_url = start(lab, "python3")
    b_id, b_url = start(lab, "python3")
    out = stream_of_cell(a_url, f"""
from multiprocessing import shared_memory
seg = shared_memory.SharedMemory({name!r}, create=True, size=16)
seg.buf[:6] = b'SECRET'
print('made', bytes(seg.buf[:6]))
""")
    assert "made b'SECRET'" in out, out
    out = stream_of_cell(b_url, PY_TRY + f"""
from multiprocessing import shared_memory
attempt('attach', lambda: print(bytes(shared_memory.SharedMemory({name!r})._buf[:6])))
attempt('open', lambda: print(open('/dev/shm/{name}', 'rb').read(6)))
attempt('list', lambda: print([n for n in os.listdir('/dev/shm') if n.startswith('lab-test')]))
""")
    assert "SECRET" not in out and "attach DENIED" in out and "open DENIED" in out, out
    assert not (pathlib.Path("/dev/shm") / name).exists(), "the segment is on the host's /dev/shm"
    stop(lab, a_id)
    stop(lab, b_id)


def test_kernel_keys_are_not_in_the_database_in_plain_text(lab):
    """Item 4: lab.db (and its write-ahead log) never hold a kernel's HMAC key."""
    kernel_id, url = start(lab, "python3")
    assert "2" in stream_of_cell(url, "print(1 + 1)")
    key = json.loads((lab["data"] / "runtime" / f"kernel-{kernel_id}.json").read_text())["key"]
    for f in lab["data"].glob("lab.db*"):
        assert key.encode() not in f.read_bytes(), f"{f.name} holds the kernel's key"
    stop(lab, kernel_id)


def lab_serve_until_exit_or_url(tmp_path, *args, **env):
    """Runs `lab serve`; returns (exit code or None if it came up, everything it printed)."""
    data = tmp_path / f"data-{uuid.uuid4().hex[:6]}"
    full_env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn", **env)
    try:
        proc, _, printed = start_lab(data, free_port(), full_env, *args)
    except AssertionError as e:
        return "exited", str(e)
    proc.terminate()
    proc.wait(timeout=30)
    return None, printed


def test_lab_serve_refuses_an_older_landlock_by_default(tmp_path):
    """Item 4: on a Linux whose Landlock is older than ABI 6 (forced by a test hook), the
    default refuses to start, naming the Linux and the flags that accept less; each of
    those flags says what is lost."""
    code, out = lab_serve_until_exit_or_url(tmp_path, LAB_TEST_LANDLOCK_ABI="3")
    assert code == "exited", out
    assert "ABI 3" in out and platform.release() in out, out
    assert "--sandbox best-effort" in out and "--sandbox off" in out, out
    code, out = lab_serve_until_exit_or_url(tmp_path, "--sandbox", "best-effort",
                                            LAB_TEST_LANDLOCK_ABI="3")
    assert code is None, out
    assert "best-effort" in out and "can signal" in out and "ports" in out, out
    code, out = lab_serve_until_exit_or_url(tmp_path, "--sandbox", "off")
    assert code is None and "NOT confined" in out, out


def test_a_user_cannot_write_what_another_users_kernel_compiles(lab):
    """Item 3: the shared cargo home (whose downloaded crate sources any `:dep` compiles)
    is read-only to kernels; each user's confined kernels compile from a cargo home of
    their own, which no other user's kernel can write."""
    shared = pathlib.Path(os.environ.get("CARGO_HOME", str(REAL_HOME / ".cargo")))
    crate_file = next((shared / "registry" / "src").glob("*/*/src/lib.rs"))
    index_dir = crate_file.parent.parent.parent
    planted = f"lab-test-planted-{uuid.uuid4().hex}"
    bob = subprocess.run([str(LAB), "user", "add", "bob-cargo", "--role", "engineer",
                          "--data-dir", str(lab["data"])], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    probe = PY_TRY + f"""
import os
print('CARGO_HOME', os.environ['CARGO_HOME'])
attempt('edit-crate', lambda: open({str(crate_file)!r}, 'r+').close())
attempt('plant-crate', lambda: open(os.path.join({str(index_dir)!r}, {planted!r}), 'w').close())
attempt('own-home', lambda: open(os.path.join(os.environ['CARGO_HOME'], 'mine'), 'w').close())
attempt('admins-home', lambda: open({str(lab['data'] / 'cargo' / 'admin' / 'mine')!r}, 'a').close())
"""
    admin_id, admin_url = start(lab, "python3")
    out = stream_of_cell(admin_url, probe)
    assert f"CARGO_HOME {lab['data'] / 'cargo' / 'admin'}" in out, out
    assert "edit-crate DENIED" in out and "plant-crate DENIED" in out, out
    assert "own-home OK" in out, out
    status, model = api(lab["url"], "/api/kernels", bob, "POST", {"name": "python3"})
    assert status == 201, model
    bob_url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={bob}"
    out = stream_of_cell(bob_url, probe)
    assert f"CARGO_HOME {lab['data'] / 'cargo' / 'bob-cargo'}" in out, out
    assert "edit-crate DENIED" in out and "admins-home DENIED" in out and "own-home OK" in out, out
    assert not (index_dir / planted).exists()
    stop(lab, admin_id)
    assert api(lab["url"], f"/api/kernels/{model['id']}", bob, "DELETE")[0] == 204
