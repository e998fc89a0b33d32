"""The warm pool keeps the sandbox (issue 18, item 3): a kernel that waited in the pool is
confined at its handover exactly as a cold one is before exec. Two real `lab serve`s,
both `--sandbox require` (the default), one with `--warm-pool`, run the same probes in
academy-rust and academy-candle kernels; the results, and the kernels' environments,
must be the same, and the probes must be refused where the sandbox promises.

(python3 kernels are never pooled: ipykernel does not speak the launch channel, so the
sandbox tests of `test_sandbox.py` that use them run on cold kernels only.)"""

import json
import os
import pathlib
import re
import time

import pytest

from test_gateway import VENV_DATA, api, free_port, start_lab, stream_of_cell
from test_sandbox import landlock_abi, plant_secrets

REAL_HOME = pathlib.Path(os.environ.get("HOME", "/root"))

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")


def make_lab(factory, name, *args):
    """A lab whose Unix user has a home with an SSH key and a listening Unix socket in it,
    and a second user, bob, with a file in his folder."""
    home = factory.mktemp(f"{name}-home")
    sock_path, listener, accepted = plant_secrets(home)
    data = factory.mktemp(f"{name}-data")
    (data / "users" / "bob").mkdir(parents=True)
    (data / "users" / "bob" / "secret.csv").write_text("a,b\n1,2\n")
    (data / "users" / "admin").mkdir(parents=True)
    (data / "users" / "admin" / "data.csv").write_text("a,b\n1,2\n3,4\n")
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn", HOME=str(home),
               XDG_RUNTIME_DIR=str(home / ".run"), LAB_GPUS="none",
               CARGO_HOME=os.environ.get("CARGO_HOME", str(REAL_HOME / ".cargo")),
               RUSTUP_HOME=os.environ.get("RUSTUP_HOME", str(REAL_HOME / ".rustup")))
    proc, token, _ = start_lab(data, port, env, *args)
    lab = {"url": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "token": token,
           "data": data, "proc": proc, "home": home, "sock": sock_path, "accepted": accepted,
           "port": port, "pooled": bool(args)}
    return lab, listener


@pytest.fixture(scope="module")
def labs(tmp_path_factory):
    cold, cold_listener = make_lab(tmp_path_factory, "cold")
    pooled, pooled_listener = make_lab(tmp_path_factory, "pooled",
                                       "--warm-pool", "academy-candle=1,academy-rust=1")
    yield {"cold": cold, "pooled": pooled}
    for lab, listener in ((cold, cold_listener), (pooled, pooled_listener)):
        lab["proc"].terminate()
        lab["proc"].wait(timeout=30)
        listener.close()


def waiting_kernels(lab, spec):
    """The ids of `lab`'s kernels of `spec` whose processes run now, from their command
    lines (a pooled kernel's names its connection file, as any kernel's does)."""
    runtime = str(lab["data"] / "runtime")
    ids = set()
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in argv]
        if len(text) > 3 and text[1] == spec.removeprefix("academy-") and text[3].startswith(runtime):
            m = re.search(r"kernel-([0-9a-f-]{36})\.json$", text[3])
            if m:
                ids.add(m.group(1))
    return ids


def pool_is_full(lab, spec):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, st = api(lab["url"], "/api/status", lab["token"])
        if st["warm_pool"].get(spec) == 1:
            return True
        time.sleep(0.05)
    return False


def start(lab, spec):
    """Starts `spec`; in the pooled lab, checks the kernel is the one that waited."""
    before = set()
    if lab["pooled"]:
        assert pool_is_full(lab, spec), f"the {spec} pool did not fill"
        before = waiting_kernels(lab, spec)
        assert before, "a pooled kernel's process runs before any start"
    status, model = api(lab["url"], "/api/kernels", lab["token"], "POST", {"name": spec})
    assert status == 201, model
    if lab["pooled"]:
        assert model["id"] in before, ("the start took the kernel that waited", model, before)
    url = f"{lab['ws']}/api/kernels/{model['id']}/channels?session_id=x&token={lab['token']}"
    return model["id"], url


def stop(lab, kernel_id):
    assert api(lab["url"], f"/api/kernels/{kernel_id}", lab["token"], "DELETE")[0] == 204


def normalised(lab, kernel_id, text):
    """`text` with what differs between the two labs by construction (data dir, home,
    kernel id, ports) named instead."""
    for value, name in ((str(lab["data"]), "DATA"), (str(lab["home"]), "HOME"),
                        (kernel_id, "KERNEL"), (str(lab["port"]), "PORT")):
        text = text.replace(value, name)
    return text


def rust_probe(lab):
    j = json.dumps
    return f"""
fn tried<T>(r: std::io::Result<T>) -> String {{
    match r {{ Ok(_) => "OK".to_string(), Err(e) => format!("DENIED {{:?}}", e.kind()) }}
}}
let gateway = {lab['proc'].pid};
println!("ssh-key={{}}", tried(std::fs::read({j(str(lab['home'] / '.ssh' / 'id_test'))})));
println!("home-list={{}}", tried(std::fs::read_dir({j(str(lab['home']))})));
println!("gateway-cmdline={{}}", tried(std::fs::read(format!("/proc/{{gateway}}/cmdline"))));
println!("lab-db={{}}", tried(std::fs::read({j(str(lab['data'] / 'lab.db'))})));
println!("bobs-file={{}}", tried(std::fs::read({j(str(lab['data'] / 'users' / 'bob' / 'secret.csv'))})));
println!("unix-socket={{}}", tried(std::os::unix::net::UnixStream::connect({j(str(lab['sock']))})));
println!("gateway-port={{}}", tried(std::net::TcpStream::connect(("127.0.0.1", {lab['port']}))));
println!("listen-elsewhere={{}}", tried(std::net::TcpListener::bind(("127.0.0.1", 0))));
println!("own-file={{}}", tried(std::fs::write("own.txt", "mine")));
println!("own-csv={{}}", tried(std::fs::read("data.csv")));
println!("cwd={{:?}}", std::env::current_dir().unwrap());
let kernel = std::os::unix::process::parent_id();
for (who, pid) in [("child", "self".to_string()), ("kernel", kernel.to_string())] {{
    let status = std::fs::read_to_string(format!("/proc/{{pid}}/status")).unwrap_or_default();
    for line in status.lines().filter(|l| ["NoNewPrivs", "Seccomp:", "CapEff", "CapBnd"].iter().any(|k| l.starts_with(k))) {{
        println!("{{who}}-{{}}", line.split_whitespace().collect::<Vec<_>>().join("="));
    }}
    let limits = std::fs::read_to_string(format!("/proc/{{pid}}/limits")).unwrap_or_default();
    for line in limits.lines().filter(|l| l.starts_with("Max data") || l.starts_with("Max stack")) {{
        println!("{{who}}-limit={{}}", line.split_whitespace().collect::<Vec<_>>().join(" "));
    }}
}}
let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{{kernel}}/task"))
    .map(|d| d.flatten().map(|t| t.path()).collect())
    .unwrap_or_default();
let confined = tasks.iter().filter(|t| {{
    let s = std::fs::read_to_string(t.join("status")).unwrap_or_default();
    s.contains("Seccomp:\t2") && s.contains("NoNewPrivs:\t1")
}}).count();
println!("kernel-threads-confined={{}}", !tasks.is_empty() && confined == tasks.len());
let mut env: Vec<(String, String)> = std::env::vars().collect();
env.sort();
for (k, v) in env {{ println!("env {{k}}={{v}}"); }}
"""


def probe_lines(out):
    return sorted(line for line in out.splitlines() if "=" in line)


def test_a_pooled_academy_rust_kernel_is_confined_and_set_up_exactly_as_a_cold_one(labs):
    """Item 3: the same probes in a cold and in a pooled academy-rust kernel: the gateway
    user's home, the gateway's command line and port, lab.db, another user's file and a
    Unix socket are out of reach in both; the kernel works in its user's folder; and the
    two kernels' environments, limits, seccomp and no_new_privs are the same."""
    seen = {}
    for mode, lab in labs.items():
        kernel_id, url = start(lab, "academy-rust")
        out = stream_of_cell(url, rust_probe(lab), timeout=300)
        stop(lab, kernel_id)
        lines = probe_lines(normalised(lab, kernel_id, out))
        got = dict(line.split("=", 1) for line in lines if not line.startswith("env "))
        for label in ("ssh-key", "home-list", "gateway-cmdline", "lab-db", "bobs-file",
                      "unix-socket", "gateway-port", "listen-elsewhere"):
            assert got.get(label, "").startswith("DENIED"), (mode, label, out)
        assert got["own-file"] == "OK" and got["own-csv"] == "OK", (mode, out)
        assert got["cwd"] == '"DATA/users/admin"', (mode, out)
        assert got["child-NoNewPrivs:"] == "1" and got["kernel-NoNewPrivs:"] == "1", (mode, out)
        assert got["child-Seccomp:"] == "2" and got["kernel-Seccomp:"] == "2", (mode, out)
        assert got["kernel-threads-confined"] == "true", (mode, out)
        assert "env KERNEL_USERNAME=admin" in lines and "env KERNEL_ID=KERNEL" in lines, (mode, lines)
        assert not any(l.startswith("env ACADEMY_LAUNCH_FD") or l.startswith("env ACADEMY_POOLED")
                       for l in lines), (mode, lines)
        assert lab["accepted"] == [], f"a {mode} kernel connected to the planted Unix socket"
        seen[mode] = lines
    assert seen["pooled"] == seen["cold"], "\n".join(
        [f"- {l}" for l in seen["cold"] if l not in seen["pooled"]]
        + [f"+ {l}" for l in seen["pooled"] if l not in seen["cold"]])


CANDLE_PROBE = """
fn tried(label, path) {
    try { read_csv(path); print(label + "=OK"); } catch (e) { print(label + "=DENIED"); }
}
tried("ssh-key", SSH);
tried("bobs-file", BOB);
tried("lab-db", DB);
tried("own-csv", "data.csv");
try { write_csv("written.csv", ["a"], [[1.0, 2.0]]); print("own-write=OK"); } catch (e) { print("own-write=DENIED " + e); }
"""


def test_a_pooled_academy_candle_kernel_reads_only_its_users_files_as_a_cold_one(labs):
    """Item 3, academy-candle: in both labs the kernel reads and writes in its user's
    folder (where it starts), and reads nothing of another user's, of lab.db or of the
    gateway user's home."""
    seen = {}
    for mode, lab in labs.items():
        kernel_id, url = start(lab, "academy-candle")
        code = (CANDLE_PROBE.replace("SSH", json.dumps(str(lab["home"] / ".ssh" / "id_test")))
                .replace("BOB", json.dumps(str(lab["data"] / "users" / "bob" / "secret.csv")))
                .replace("DB", json.dumps(str(lab["data"] / "lab.db"))))
        out = stream_of_cell(url, code)
        stop(lab, kernel_id)
        out = normalised(lab, kernel_id, out)
        for label in ("ssh-key", "bobs-file", "lab-db"):
            assert f"{label}=DENIED" in out, (mode, out)
        # Relative paths: the kernel works in its user's folder.
        assert "own-csv=OK" in out and "own-write=OK" in out, (mode, out)
        assert (lab["data"] / "users" / "admin" / "written.csv").exists()
        seen[mode] = out
    assert seen["pooled"] == seen["cold"], seen


def test_dep_works_from_a_pooled_academy_rust_kernel(labs):
    """Acceptance: `:dep` works from a pooled academy-rust kernel (a path dependency in the
    user's folder, compiled by cargo from the user's own cargo home, offline)."""
    lab = labs["pooled"]
    crate = lab["data"] / "users" / "admin" / "greet"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text('[package]\nname = "greet"\nversion = "0.1.0"\nedition = "2021"\n')
    (crate / "src" / "lib.rs").write_text('pub fn hello() -> &\'static str { "hello from a dep" }\n')
    kernel_id, url = start(lab, "academy-rust")
    out = stream_of_cell(url, f':dep greet = {{ path = "{crate}" }}\nprintln!("{{}}", greet::hello());',
                         timeout=300)
    stop(lab, kernel_id)
    assert "hello from a dep" in out, out


SESSION_CRATE_BUILT = """
let tmp = std::env::var("TMPDIR").unwrap();
let tag = std::fs::read_dir(&tmp).unwrap().flatten()
    .map(|e| e.path().join("target").join("CACHEDIR.TAG"))
    .find(|t| t.exists()).expect("evcxr's session crate in TMPDIR");
let at = std::fs::metadata(&tag).unwrap().modified().unwrap();
println!("built-at={}", at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64());
"""


def session_crate_built_at(lab, prepare=None):
    """Starts an academy-rust kernel in `lab` (after `prepare()`, if given) and returns
    when its evcxr session crate was first built (cargo's tag in its target folder, in the
    kernel's TMPDIR), and when the start was asked for."""
    if prepare:
        prepare()
    if lab["pooled"]:
        assert pool_is_full(lab, "academy-rust"), "the academy-rust pool did not fill"
    asked = time.time()
    kernel_id, url = start(lab, "academy-rust")
    out = stream_of_cell(url, SESSION_CRATE_BUILT, timeout=300)
    # What the pooled kernel ran before its start is not its user's.
    leftover = stream_of_cell(url, "academy_warm_up", timeout=300)
    stop(lab, kernel_id)
    assert "cannot find value `academy_warm_up`" in leftover, leftover
    built = re.search(r"built-at=([0-9.]+)", out)
    assert built, out
    return float(built.group(1)), asked


def test_a_pooled_academy_rust_kernel_built_its_session_before_its_start(labs):
    """Item 2: a pooled academy-rust kernel makes its evcxr context (toolchain probes, the
    session crate's first build, std's analysis, warm-up cells) while it waits, before
    anyone asks for it; a cold kernel does it after. Its child, which runs the user's code,
    still starts after the handover (the test above finds it confined), and the warm-up's
    variables are gone with the child that ran them."""
    built, asked = session_crate_built_at(labs["pooled"])
    assert built < asked, "the pooled kernel built its session crate after its start"
    built, asked = session_crate_built_at(labs["cold"])
    assert built > asked, "the cold kernel's session crate is older than its start"


def test_a_pooled_academy_rust_kernel_makes_its_context_again_for_evcxr_settings(labs):
    """A user's `evcxr.toml` (in the folder the kernel starts in) is read by a new evcxr
    context; a pooled kernel prepared before it knew its user makes its context again."""
    lab = labs["pooled"]
    settings = lab["data"] / "users" / "admin" / "evcxr.toml"
    try:
        built, asked = session_crate_built_at(
            lab, lambda: settings.write_text('[evcxr]\nopt_level = "1"\n'))
    finally:
        settings.unlink()
    assert built > asked, "a context made before the user's evcxr.toml was kept"


def test_a_pool_kernel_whose_gateway_is_gone_exits(tmp_path):
    """A kernel waiting in the pool holds nothing of anyone's; when its gateway dies (no
    handover will come), it reads the end of its launch channel and exits."""
    data = tmp_path / "data"
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn", LAB_GPUS="none")
    proc, token, _ = start_lab(data, port, env, "--warm-pool", "academy-candle=2")
    lab = {"url": f"http://127.0.0.1:{port}", "token": token, "data": data}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(waiting_kernels(lab, "academy-candle")) < 2:
        time.sleep(0.05)
    waiting = waiting_kernels(lab, "academy-candle")
    assert len(waiting) == 2, waiting
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and waiting_kernels(lab, "academy-candle"):
        time.sleep(0.05)
    assert not waiting_kernels(lab, "academy-candle"), "pooled kernels outlived their gateway"
