"""Code submissions end to end through a real `lab serve` (issue 16), on the example
competition in `examples/competitions/spirals`: its data made by the example's script, its
baseline notebook run offline in a real academy-candle kernel on the hidden test features and
scored; notebooks that loop forever, raise, write nothing or write a bad file each fail with
their category (a timeout, an error, out of memory, no file, a bad file); one that tries the network and the solution file gets neither; and a gateway
killed with `kill -9` during a run loses nothing and scores nothing twice.

The hidden labels carry no marker (they are the example's), so the leak checks here are that
the solution's path and content never reach a participant's notebook; the full marker scan is
`test_competitions.py`'s.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from test_gateway import LAB, execute_over_ws, free_port
from test_grading_security import Client, Trap, add_user, landlock_abi, serve, wait_until

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "competitions" / "spirals"
SLUG = "spirals-code"
# The baseline trains in about 10 s here; a notebook that loops is stopped at the short limit.
LONG_LIMIT_S, SHORT_LIMIT_S = 240, 10


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("code")
    data, logs, made = base / "data", base / "logs", base / "example"
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), str(made)], check=True)
    port = free_port()
    # Two runs at once whatever the machine: the cancel test needs a queue behind them.
    data.mkdir(parents=True)
    (data / "lab.toml").write_text("[competitions]\nparallel = 2\n")
    proc, admin = serve(data, port, logs)
    url = f"http://127.0.0.1:{port}"
    tokens = {name: add_user(data, name, role)
              for name, role in (("tess", "trainer"), ("pat", "engineer"), ("quinn", "engineer"))}
    lab = {"url": url, "data": data, "logs": logs, "port": port, "proc": proc, "made": made,
           "clients": {n: Client(url, t, n) for n, t in tokens.items()}}
    staff = lab["clients"]["tess"]
    now = datetime.now(timezone.utc)
    rules = {
        "metric": {"name": "accuracy"},
        "columns": {"id": "id", "target": "label"},
        "start": iso(now - timedelta(days=1)),
        "merger_deadline": iso(now + timedelta(days=5)),
        "end": iso(now + timedelta(days=10)),
        "daily_cap": 20,
        "csv": False,
        "code": {"time_limit_s": LONG_LIMIT_S, "memory_mb": 2048},
    }
    lab["rules"] = rules
    status, body = staff.call("POST", "/api/competitions", {
        "slug": SLUG, "title": "Spirals (code)", "overview": "Tell the arms apart.", "rules": rules})
    assert status == 201, body
    put = lambda path, file: raw(staff, "PUT", path, (made / file).read_bytes())  # noqa: E731
    assert put(f"/api/competitions/{SLUG}/solution", "solution.csv")[0] == 200
    for name, file in (("train.csv", "data/train.csv"), ("test.csv", "sample/test.csv"),
                       ("sample_submission.csv", "data/sample_submission.csv")):
        assert put(f"/api/competitions/{SLUG}/data/{name}", file)[0] == 201
    assert put(f"/api/competitions/{SLUG}/data/test.csv?hidden=true", "hidden/test.csv")[0] == 201
    assert staff.call("POST", f"/api/competitions/{SLUG}/publish")[0] == 200
    for who in ("pat", "quinn"):
        assert lab["clients"][who].call("POST", f"/api/competitions/{SLUG}/join")[0] == 200
    yield lab
    lab["proc"].terminate()
    lab["proc"].wait(timeout=30)


def time_limit(lab, seconds):
    """Staff change the competition's time limit; runs read it when they start."""
    rules = dict(lab["rules"], code={"time_limit_s": seconds, "memory_mb": 2048})
    status, body = lab["clients"]["tess"].call("PATCH", f"/api/competitions/{SLUG}", {"rules": rules})
    assert status == 200, body


def raw(client, method, path, body):
    import urllib.request
    import urllib.error
    req = urllib.request.Request(client.base + path, method=method, data=body,
                                 headers={"Authorization": f"token {client.token}",
                                          "Content-Type": "text/csv"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def notebook(kernel, *sources):
    meta = {"academy-candle": {"kernelspec": {"name": "academy-candle", "display_name": "Candle",
                                              "language": "rhai"}},
            "python3": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}}}[kernel]
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": meta,
            "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": s} for s in sources]}


def put_notebook(client, path, nb):
    status, body = client.call("PUT", f"/api/contents/{path}",
                               {"type": "notebook", "format": "json", "content": nb})
    assert status in (200, 201), body


def submit(client, path):
    status, body = client.call("POST", f"/api/competitions/{SLUG}/submissions", {"notebook": path})
    assert status == 202, body
    assert body["state"] == "queued" and body["kind"] == "code" and body["position"] >= 1, body
    return body["id"]


def final(client, ids, timeout):
    """Waits until every submission in `ids` is scored or failed; their views by id."""
    def probe():
        status, mine = client.get(f"/api/competitions/{SLUG}/submissions")
        assert status == 200, mine
        got = {e["id"]: e for e in mine if e["id"] in ids}
        done = all(e["state"] in ("scored", "failed", "rejected") for e in got.values())
        return got if len(got) == len(ids) and done else None
    return wait_until(f"submissions {ids} to end", timeout, probe)


def baseline():
    return json.loads((EXAMPLE / "code-baseline.ipynb").read_text())


def test_the_example_baseline_runs_offline_on_the_hidden_test_set_and_scores(lab):
    pat = lab["clients"]["pat"]
    assert pat.call("PUT", "/api/contents/work", {"type": "directory"})[0] in (200, 201)
    put_notebook(pat, "work/baseline.ipynb", baseline())
    # The notebook's folder is where its kernel starts: the baseline reads
    # competitions/spirals-code/ relative to the top, so one folder down it must fail...
    moved = baseline()
    moved["cells"][1]["source"] = moved["cells"][1]["source"].replace(
        '"competitions/', '"../competitions/')
    put_notebook(pat, "work/moved.ipynb", moved)
    top = submit(pat, "work/baseline.ipynb")
    down = submit(pat, "work/moved.ipynb")
    got = final(pat, {top, down}, 300)
    assert got[top]["state"] == "failed" and got[top]["error"]["category"] == "error", got[top]
    # Its message (the missing file's path) was computed in the run: not shown (see the
    # hidden-data test); the same notebook shows it in the participant's own kernel.
    assert "RuntimeError" in got[top]["error"]["message"] and "not shown" in got[top]["error"]["message"], got[top]
    scored = got[down]
    assert scored["state"] == "scored", scored
    # 5,000 hidden rows predicted: the sample of 100 would have been refused as missing ids.
    assert scored["public_score"] > 0.85, scored
    assert "private_score" not in scored and scored["runtime_minutes"] == 1, scored
    status, board = pat.get(f"/api/competitions/{SLUG}/leaderboard")
    assert status == 200 and [r["team"] for r in board["rows"]] == ["pat"], board
    # Both counted (a notebook's own failure counts, as on Kaggle).
    status, comp = pat.get(f"/api/competitions/{SLUG}")
    assert comp["submissions"]["today"] == 2, comp
    # The run's scratch is gone, and nothing of it is in the participant's folder.
    users = lab["data"] / "users"
    assert not [p for p in users.iterdir() if p.name.startswith(".compete-")]
    assert not (users / "pat" / "work" / "submission.csv").exists()


def test_failures_are_reported_by_category(lab):
    quinn = lab["clients"]["quinn"]
    time_limit(lab, SHORT_LIMIT_S)
    cases = {
        "loop.ipynb": (notebook("academy-candle", "let i = 0;\nloop { i += 1; }"), "timeout"),
        "boom.ipynb": (notebook("academy-candle", 'print("starting");', 'throw "boom from my notebook";'),
                       "error"),
        "nothing.ipynb": (notebook("academy-candle", 'print("no file");'), "no_submission_file"),
        "hog.ipynb": (notebook("academy-candle", "let t = ones([40000, 40000]);\nprint(t.sum());"),
                      "out_of_memory"),
        "pyhog.ipynb": (notebook("python3", "x = bytearray(3 * 1024 ** 3)"), "out_of_memory"),
        # An error named as the gateway's own is still the notebook's (and counts).
        "forged.ipynb": (notebook("python3", "class GradingStopped(Exception):\n    pass\n"
                                             "raise GradingStopped('the grading kernel stopped answering')"),
                         "error"),
        "badfile.ipynb": (notebook("academy-candle",
                                   'write_csv("submission.csv", ["id", "guess"], [[1, 2], [0, 1]]);'),
                          "format_error"),
    }
    ids = {}
    for name, (nb, _) in cases.items():
        put_notebook(quinn, name, nb)
        ids[submit(quinn, name)] = name
    # Not a notebook we can run: 422, nothing counted.
    status, _ = quinn.call("PUT", "/api/contents/plain.ipynb",
                           {"type": "file", "format": "text", "content": "not json"})
    assert status in (200, 201)
    status, body = quinn.call("POST", f"/api/competitions/{SLUG}/submissions", {"notebook": "plain.ipynb"})
    assert status == 422 and "cannot be run" in body["message"], body
    # This competition takes notebooks only.
    status, body = raw(quinn, "POST", f"/api/competitions/{SLUG}/submissions", b"id,label\n1,0\n")
    assert status == 400 and "notebooks only" in body, body

    got = final(quinn, set(ids), 240)
    time_limit(lab, LONG_LIMIT_S)
    for id_, name in ids.items():
        entry = got[id_]
        want = cases[name][1]
        assert entry["state"] == "failed" and entry["error"]["category"] == want, (name, entry)
        assert entry["counted"] is True, entry
    by_name = {ids[i]: e for i, e in got.items()}
    assert f"{SHORT_LIMIT_S} s" in by_name["loop.ipynb"]["error"]["message"]
    boom = by_name["boom.ipynb"]["error"]
    assert "boom from my notebook" in boom["message"] and boom["traceback"], boom
    bad = by_name["badfile.ipynb"]["error"]
    assert bad["problems"], bad
    status, comp = quinn.get(f"/api/competitions/{SLUG}")
    assert comp["submissions"]["today"] == len(cases), comp


def test_a_code_run_reaches_neither_the_network_nor_the_solution(lab):
    pat = lab["clients"]["pat"]
    trap = Trap()
    marker = f"net-{uuid.uuid4().hex[:8]}"
    probe = notebook("python3", f"""
import pathlib, socket
results = {{}}
here = pathlib.Path.cwd()
# The run's folder is DATA/users/.compete-ID; the solution sits in DATA/competitions.
for name, path in (("solution", here.parent.parent / "competitions" / "{SLUG}" / "solution.csv"),
                   ("hidden", here.parent.parent / "competitions" / "{SLUG}" / "hidden" / "test.csv")):
    try:
        results[name] = "READ " + path.read_text()[:40]
    except Exception as e:
        results[name] = "refused " + type(e).__name__
# The staged files: read where participants read theirs, never changed, nothing beside them.
staged = here / "competitions" / "{SLUG}"
results["staged rows"] = str(len((staged / "test.csv").read_text().splitlines()))
for name, act in (("write", lambda: (staged / "test.csv").write_text("x")),
                  ("create", lambda: (staged / "new.csv").write_text("x")),
                  ("beside", lambda: (staged.resolve().parent.parent / "solution.csv").read_text())):
    try:
        act()
        results[name] = "DONE"
    except Exception as e:
        results[name] = "refused " + type(e).__name__
for port in [p for p in ({trap.tcp_port or 0}, {lab["port"]}) if p]:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"{marker}")
        results[f"tcp {{port}}"] = "CONNECTED"
    except Exception as e:
        results[f"tcp {{port}}"] = "refused " + type(e).__name__
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"{marker}", ("127.0.0.1", {trap.udp_port}))
    results["udp"] = "SENT"
except Exception as e:
    results["udp"] = "refused " + type(e).__name__
# A run's failure shows only what its source holds (no value it computed), so the probe
# answers with one of two messages of its own.
ok = results.pop("staged rows") == "5001" and all(v.startswith("refused") for v in results.values())
if ok:
    raise RuntimeError("probe: every access refused")
raise RuntimeError("probe: LEAKED")
""")
    try:
        put_notebook(pat, "probe.ipynb", probe)
        got = final(pat, {submit(pat, "probe.ipynb")}, 240)
        entry = next(iter(got.values()))
        assert entry["error"]["category"] == "error", entry
        message = entry["error"]["message"]
        assert "probe: every access refused" in message, message
        assert marker.encode() not in bytes(trap.received)
    finally:
        trap.close()


def test_a_failed_run_shows_nothing_it_computed_on_the_hidden_data(lab):
    """A notebook that tries to carry hidden test features out through its failure: in an
    error's message, a verbose traceback's locals, an exception class named at run time, or
    values written in a refused submission.csv. Each fails with its category; none of the
    values reaches the participant."""
    pat = lab["clients"]["pat"]
    hidden = (lab["made"] / "hidden" / "test.csv").read_text().splitlines()[201:211]
    values = [v for row in hidden for v in row.split(",")[1:]]
    read = (f'import csv\nrows = list(csv.DictReader(open("competitions/{SLUG}/test.csv")))\n'
            'secret = ",".join(r["x"] for r in rows[200:210])\n')
    cases = {
        "message": (read + "raise ValueError(secret)", "error"),
        "verbose": ("%xmode Verbose", read + "def f(v):\n    return 1 / 0\nf(secret)", "error"),
        "named": (read + 'raise type("E" + secret.replace(",", "_").replace(".", "_").replace("-", "m"),'
                         ' (Exception,), {})()', "error"),
        "written": (read + 'with open("submission.csv", "w") as f:\n'
                           '    f.write("id,label\\n" + "".join(f"{r[\'x\']},0\\n" for r in rows))',
                    "format_error"),
        "header": (read + 'open("submission.csv", "w").write("id," + secret + "\\n1,0\\n")', "format_error"),
        # IPython prints what _render_traceback_ returns, places included.
        "rendered": (read + "class Leak(Exception):\n    def _render_traceback_(self):\n"
                            "        return [f'Cell In[1], line {v}' for v in secret.replace('.', '').split(',')]"
                            " + ['x ' + secret]\nraise Leak()", "error"),
        # One character of a value is in the source ("0123456789"), but is no string of its own.
        "char": (read + 'DIGITS = "0123456789.-"\nraise ValueError(secret[0])', "error"),
        # How many rows, and which line is wrong, chosen by the hidden values.
        "counts": (read + 'n = int(float(rows[200]["x"]) * 1000) % 997 + 2\n'
                          'open("submission.csv", "w").write("id,label\\n" + "".join(f"{r[\'id\']},0\\n" '
                          'for r in rows[:n]))', "format_error"),
    }
    ids = {}
    for name, (*sources, _) in cases.items():
        put_notebook(pat, f"leak-{name}.ipynb", notebook("python3", *sources))
        ids[submit(pat, f"leak-{name}.ipynb")] = name
    got = final(pat, set(ids), 240)
    for id_, entry in got.items():
        name = ids[id_]
        assert entry["state"] == "failed" and entry["error"]["category"] == cases[name][-1], (name, entry)
        shown = json.dumps(entry)
        assert not [v for v in values if v in shown], (name, shown)
    by_name = {ids[i]: e["error"] for i, e in got.items()}
    message = by_name["message"]
    assert "ValueError" in message["message"] and "not shown" in message["message"], message
    # The place and the line, from the notebook as sent: the failure can still be found.
    assert message["traceback"][:2] == ["in the notebook's cell 1, line 4:", "    raise ValueError(secret)"], message
    assert "not shown" in by_name["char"]["message"], by_name["char"]
    assert by_name["rendered"]["traceback"][0] == "in the notebook's cell 1", by_name["rendered"]
    for name in ("written", "header", "counts"):
        shown = json.dumps([by_name[name]["message"], by_name[name]["problems"]], ensure_ascii=False)
        assert not any(ch.isdigit() for ch in shown), (name, shown)
    for body in pat.seen:
        text = body.decode() if isinstance(body, bytes) else str(body)
        assert not [v for v in values if v in text], text[:300]


def test_a_participants_kernel_reads_the_competitions_files_and_writes_none(lab):
    """At competitions/NAME in the participant's folder, read-only; nothing beside them (the
    solution, the hidden files) even when the kernel repoints the link."""
    probe = """
import os, pathlib
p = pathlib.Path("competitions/spirals-code")
out = {"exists": p.exists()}
def attempt(name, f):
    try:
        out[name] = f()
    except Exception as e:
        out[name] = "refused " + type(e).__name__
if p.exists():
    attempt("train", lambda: (p / "train.csv").read_text()[:12])
    attempt("test rows", lambda: len((p / "test.csv").read_text().splitlines()))
    attempt("write", lambda: (p / "train.csv").write_text("x") and "WROTE")
    attempt("create", lambda: (p / "mine.csv").write_text("x") and "CREATED")
    real = p.resolve()
    attempt("solution", lambda: "READ " + (real.parent / "solution.csv").read_text()[:20])
    attempt("hidden", lambda: "READ " + (real.parent / "hidden" / "test.csv").read_text()[:20])
    os.remove(p)
    os.symlink(real.parent, p)
    attempt("repointed", lambda: "READ " + (p / "solution.csv").read_text()[:20])
out
"""
    results = {}
    for who in ("pat", "tess"):
        client = lab["clients"][who]
        status, kernel = client.call("POST", "/api/kernels", {"name": "python3"})
        assert status == 201, kernel
        ws = lab["url"].replace("http", "ws") + f"/api/kernels/{kernel['id']}/channels?token={client.token}"
        reply, result = execute_over_ws(ws, probe, timeout=120)
        assert reply["status"] == "ok", reply
        results[who] = eval(result)  # the kernel's repr of a dict of str/int/bool
        assert client.call("DELETE", f"/api/kernels/{kernel['id']}")[0] == 204
    pat = results["pat"]
    assert pat["exists"] and pat["train"] == "id,x,y,label" and pat["test rows"] == 101, pat
    for key in ("write", "create", "solution", "hidden", "repointed"):
        assert pat[key].startswith("refused"), (key, pat)
    # Staff who did not join see no such folder (they download what they need).
    assert results["tess"] == {"exists": False}, results["tess"]
    # The link is the gateway's again at the next start; the participant's file is intact.
    assert (lab["data"] / "competitions" / SLUG / "data" / "train.csv").read_text().startswith("id,x,y,label\n1,")


def test_a_kill_during_runs_loses_nothing_and_scores_nothing_twice(lab):
    quinn = lab["clients"]["quinn"]
    nb = baseline()
    put_notebook(quinn, "baseline.ipynb", nb)
    ids = {submit(quinn, "baseline.ipynb") for _ in range(3)}
    # A fourth waits behind two runs; its submitter cancels it, at no cost; nobody else can.
    extra = submit(quinn, "baseline.ipynb")
    assert lab["clients"]["pat"].call("DELETE", f"/api/competitions/{SLUG}/submissions/{extra}")[0] == 404
    status, cancelled = quinn.call("DELETE", f"/api/competitions/{SLUG}/submissions/{extra}")
    assert status == 200 and cancelled["state"] == "failed" and not cancelled["counted"], cancelled
    assert cancelled["error"]["category"] == "cancelled", cancelled
    status, body = quinn.call("DELETE", f"/api/competitions/{SLUG}/submissions/{extra}")
    assert status == 409 and "failed" in body["message"], body
    counted = quinn.get(f"/api/competitions/{SLUG}")[1]["submissions"]["today"]

    def running():
        status, mine = quinn.get(f"/api/competitions/{SLUG}/submissions")
        return any(e["state"] == "running" for e in mine if e["id"] in ids)
    wait_until("a run to start", 120, running)
    os.kill(lab["proc"].pid, signal.SIGKILL)
    lab["proc"].wait(timeout=30)
    lab["proc"], _ = serve(lab["data"], lab["port"], lab["logs"])
    got = final(quinn, ids, 600)
    assert all(e["state"] == "scored" and e["public_score"] > 0.85 for e in got.values()), got
    # The restart took back what was running, and ran it again.
    log = (lab["logs"] / "stdout.log").read_text() + (lab["logs"] / "stderr.log").read_text()
    assert "code submissions interrupted by a restart queued again" in log
    # Nothing was charged twice, nor given back: the same three count.
    status, comp = quinn.get(f"/api/competitions/{SLUG}")
    assert comp["submissions"]["today"] == counted, (counted, comp)
    status, board = quinn.get(f"/api/competitions/{SLUG}/leaderboard")
    assert "quinn" in [r["team"] for r in board["rows"]], board
    # No scratch and no kernel of a run is left.
    assert not [p for p in (lab["data"] / "users").iterdir() if p.name.startswith(".compete-")]
    # Each scored run kept the submission.csv it wrote: staff rescore them all from it.
    status, body = lab["clients"]["tess"].call("POST", f"/api/competitions/{SLUG}/rescore")
    assert status == 200 and body["rescored"] >= 4 and body["missing"] == 0 and body["refused"] == 0, body
    status, again = quinn.get(f"/api/competitions/{SLUG}/submissions")
    assert {e["id"]: e["public_score"] for e in again if e["id"] in ids} == \
        {i: e["public_score"] for i, e in got.items()}
