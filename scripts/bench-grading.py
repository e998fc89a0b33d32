"""The grading benchmark of issue 15, driven by scripts/bench-grading (which builds the
release binaries, installs the kernelspecs in a private prefix and runs this in .venv).

1. academy-candle: a real `lab serve` (sandbox as shipped) grades N submissions of a
   10-cell exercise (tests/fixtures/bench/candle10.ipynb: five answer cells, five test
   cells, one of them hidden), sent through the REST API by several engineers.
2. python3: the same M submissions of nbgrader's ps1 (tests/fixtures/nbgrader/ps1.ipynb,
   released with `nbgrader generate_assignment`) graded by `lab serve` and then, with the
   lab stopped, by `nbgrader autograde` (one course directory, one student each).

Wall time is from the first submit until the last grading finished (the gateway's own
`finished` timestamp of each grading, so how often this script polls does not count).
nbgrader's is the `nbgrader autograde` command's. CPU is the lab's own (the gateway and the
grading kernels it reaped: /proc/PID/stat) and nbgrader's (its process tree: getrusage);
"other load" is the rest of the machine's over the same time (/proc/stat), which says
whether something else on the machine disturbed the run. Prints a markdown table; writes it
and the raw numbers to target/bench/grading.md and grading.json (grading-quick.* for small
counts). `--profile` also reads the lab's JSON log and prints where one grading's time goes:
admission, process start, kernel boot, the cells, the kernel's exit, recording.

A benchmark, never a test: nothing here fails on a number. It fails only when a submission
is not graded, or gets a score other than its answer earns.
"""

import argparse
import concurrent.futures
import copy
import datetime
import json
import os
import pathlib
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
CANDLE = ROOT / "tests" / "fixtures" / "bench" / "candle10.ipynb"
PS1 = ROOT / "tests" / "fixtures" / "nbgrader" / "ps1.ipynb"
COURSE = "bench"

# ---- answers -------------------------------------------------------------------------------

CANDLE_RIGHT = {
    "make_tensors": 'let x = arange(0, 12).to_dtype("f32").reshape([3, 4]);\n'
                    "let col = tensor([[1.0], [2.0], [3.0]]);\nlet scaled = x * col;",
    "center": "fn center(t) {\n    t - t.mean(0)\n}",
    "outer": "fn outer(u, v) {\n    u.reshape([u.shape[0], 1]) * v.reshape([1, v.shape[0]])\n}",
    "row_softmax": "fn row_softmax(t) {\n    let e = (t - t.max_keepdim(1)).exp();\n"
                   "    e / e.sum_keepdim(1)\n}",
    "mean_squared": "fn mean_squared(pred, target) {\n    (pred - target).sqr().mean().item()\n}",
}
# Wrong in every answer: col is 1-D (2 points lost), the whole tensor's mean (2 of 3 lost),
# outer reshapes v with u's length (passes the public test, fails the hidden one), softmax
# over the columns, mean_squared sums.
CANDLE_WRONG = {
    **CANDLE_RIGHT,
    "make_tensors": 'let x = arange(0, 12).to_dtype("f32").reshape([3, 4]);\n'
                    "let col = tensor([1.0, 2.0, 3.0]);\nlet scaled = x;",
    "center": "fn center(t) {\n    t - t.mean()\n}",
    "outer": "fn outer(u, v) {\n    u.reshape([u.shape[0], 1]) * v.reshape([1, u.shape[0]])\n}",
    "row_softmax": "fn row_softmax(t) {\n    let e = (t - t.max_keepdim(0)).exp();\n"
                   "    e / e.sum_keepdim(0)\n}",
    "mean_squared": "fn mean_squared(pred, target) {\n    (pred - target).sqr().sum().item()\n}",
}
CANDLE_SCORES = {"right": 10.0, "wrong": 2.0}

SQUARES = "def squares(n):\n    return [i * i for i in range(n)]"
MEAN = "def mean(xs):\n    return sum(xs) / len(xs)"
ACCURACY = ("def accuracy(predicted, actual):\n"
            "    return sum(p == a for p, a in zip(predicted, actual)) / len(actual)")
PY_RIGHT = {"squares": SQUARES, "mean": MEAN, "accuracy": ACCURACY,
            "explain": "Because `len([])` is 0: **ZeroDivisionError**.",
            "describe": 'def describe():\n    return "the average of the values"'}
# A class's spread of answers (none sleeps: a timeout would measure the timeout).
PY_VARIANTS = {
    "right": {},
    "hardcoded": {"squares": "def squares(n):\n    return [0, 1, 4][:n]"},
    "mean-one-of-three": {"mean": "def mean(xs):\n    return xs[0]"},
    "error-before-def": {"squares": 'raise ValueError("not done yet")\n' + SQUARES},
    "partial-accuracy": {"accuracy": "def accuracy(predicted, actual):\n    return 0.3"},
    "stderr": {"mean": 'import sys\ndef mean(xs):\n    print("mean of", xs, file=sys.stderr)\n'
                       "    return sum(xs) / len(xs)"},
    "unanswered": None,
}


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def answered(released, answers):
    nb = copy.deepcopy(released)
    for cell in nb["cells"]:
        text = answers.get(grade_id(cell))
        if text is not None:
            cell["source"] = text
    return nb


# ---- the lab -------------------------------------------------------------------------------

def api(base, path, token, method="GET", body=None):
    req = urllib.request.Request(
        base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


class Lab:
    """`lab serve` on a fresh data dir, its log in data/lab.log."""

    def __init__(self, binary, parallel, profile=False):
        self.binary = binary
        self.data = pathlib.Path(tempfile.mkdtemp(prefix="bench-grading-lab."))
        if parallel:
            (self.data / "lab.toml").write_text(f"[grading]\nparallel = {parallel}\n")
        env = dict(os.environ, LAB_LOG=os.environ.get("BENCH_LAB_LOG", "warn"))
        if profile:
            # The events a grading's phases are read from (see `phases`), as JSON lines.
            env.update(LAB_LOG="warn,lab_gateway::coursework=debug,lab_gateway::kernels=info,launch::local=info",
                       LAB_LOG_FORMAT="json")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--port", "0", "--data-dir", str(self.data)],
            stdout=subprocess.PIPE, stderr=open(self.data / "lab.log", "a"), text=True, env=env)
        printed = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            printed.append(line)
            if line.startswith("Log in with: "):
                info = json.loads((self.data / "runtime" / "lab-server.json").read_text())
                self.url, self.admin = info["url"].rstrip("/"), info["token"]
                self.printed = "".join(printed)
                return
            if not line and self.proc.poll() is not None:
                break
        raise SystemExit("lab serve did not start:\n" + "".join(printed)
                         + (self.data / "lab.log").read_text()[-4000:])

    def add_user(self, name, role):
        out = subprocess.run([str(self.binary), "user", "add", name, "--role", role,
                              "--data-dir", str(self.data)],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return out.strip().splitlines()[-1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)

    def gradings(self):
        """(queued, started, finished) of every grading, as epoch seconds, from lab.db."""
        db = sqlite3.connect(f"file:{self.data / 'lab.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT queued, started, finished, state FROM gradings ORDER BY id").fetchall()
        db.close()
        return [(epoch(q), epoch(s), epoch(f), state) for q, s, f, state in rows]


def cpu_seconds():
    """CPU time the whole machine spent (all cores, all processes) so far: /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid):
    """CPU time of process `pid` and of its children it has reaped (the lab's grading
    kernels): utime + stime + cutime + cstime."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def epoch(iso):
    if iso is None:
        return None
    return datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


PHASES = [
    ("taken → admitted", "admission (quota group `grading`)"),
    ("admitted → spawned", "the sandboxed process started"),
    ("spawned → ready", "kernel boot, kernel_info and iopub subscription"),
    ("ready → cells ran", "shell connect and the code cells' execute round trips"),
    ("cells ran → exited", "the kernel killed (its outputs are in) until its process exited"),
    ("exited → recorded", "scratch removed, graded notebook written, scored, SQLite"),
]


def phases(lab, gradings):
    """Each grading's phases in ms, from the lab's JSON log (--profile): the grader's
    `grading` and `grading done`, admission, the launcher's process start and exit, the
    supervisor's `kernel ready` and the grader's `grading cells ran`."""
    at = {}  # grading -> {event: t}
    kernel_of, pid_of, by_kernel, by_pid = {}, {}, {}, {}
    for line in (lab.data / "lab.log").read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        f, t = e.get("fields", {}), e.get("timestamp")
        msg = f.get("message")
        if not t or not msg:
            continue
        t = datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()
        if msg == "grading":
            at.setdefault(int(f["grading"]), {})["taken"] = t
        elif msg == "grading done":
            at.setdefault(int(f["grading"]), {})["recorded"] = t
        elif msg == "kernel admitted":
            by_kernel.setdefault(f["kernel_id"], {})["admitted"] = t
        elif msg == "kernel process started":
            by_kernel.setdefault(f["kernel_id"], {})["spawned"] = t
            pid_of[f["kernel_id"]] = int(f["pid"])
        elif msg == "kernel ready" and str(f.get("user", "")).startswith(".grading-"):
            by_kernel.setdefault(f["kernel_id"], {})["ready"] = t
            kernel_of[int(f["user"].split("-", 1)[1])] = f["kernel_id"]
        elif msg == "grading cells ran":
            by_kernel.setdefault(f["kernel_id"], {})["cells ran"] = t
        elif msg == "kernel process exited":
            by_pid[int(f["pid"])] = t
    out = {name: [] for name, _ in PHASES}
    out["total"] = []
    for g in gradings:
        k = kernel_of.get(g)
        if k is None or g not in at:
            continue
        ev = {**at[g], **by_kernel.get(k, {})}
        if pid_of.get(k) in by_pid:
            ev["exited"] = by_pid[pid_of[k]]
        order = ["taken", "admitted", "spawned", "ready", "cells ran", "exited", "recorded"]
        if not all(x in ev for x in order):
            continue
        for (name, _), a, b in zip(PHASES, order, order[1:]):
            out[name].append(1000 * (ev[b] - ev[a]))
        out["total"].append(1000 * (ev["recorded"] - ev["taken"]))
    return {name: {"median_ms": statistics.median(v), "mean_ms": statistics.fmean(v), "n": len(v)}
            for name, v in out.items() if v}


def phases_table(title, ph):
    rows = [f"| {title} | median | mean | what |", "|---|---|---|---|"]
    for name, what in PHASES + [("total", "taken from the queue until recorded")]:
        if name in ph:
            rows.append(f"| {name} | {ph[name]['median_ms']:.1f} ms | {ph[name]['mean_ms']:.1f} ms | {what} |")
    return "\n".join(rows) + "\n"


def engineers(lab, prefix, n):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        names = [f"{prefix}{i:03d}" for i in range(n)]
        return dict(zip(names, pool.map(lambda u: lab.add_user(u, "engineer"), names)))


def import_and_release(lab, trainer, name, source, policy=None):
    path = f"/api/courses/{COURSE}/assignments/{name}"
    body = {"notebook": source}
    if policy:
        body["policy"] = policy
    status, a = api(lab.url, path, trainer, "PUT", body)
    assert status == 200, (status, a)
    status, a = api(lab.url, path, trainer, "PATCH", {"released": True})
    assert status == 200, (status, a)
    return path


def submit_and_wait(lab, trainer, path, batch, timeout):
    """Submits every (token, notebook) of `batch` through the API, 8 at a time (many
    engineers at a deadline), then waits until all are graded. Returns the seconds from the
    first submit to the last grading's end, the submitting time, and each submission as the
    staff's view of it, in `batch`'s order."""
    def post(item):
        token, nb = item
        status, sub = api(lab.url, f"{path}/submissions", token, "POST", {"notebook": nb})
        assert status == 201, (status, sub)
        return sub["id"]

    machine, ours = cpu_seconds(), tree_cpu(lab.proc.pid)
    first = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, batch))
    submitted = time.time() - first
    # Oldest first, as the grader takes them: one request per submission once it is done,
    # and one every 0.2 s while the oldest one left is not.
    deadline = time.monotonic() + timeout
    done = []
    for sid in ids:
        while True:
            status, sub = api(lab.url, f"/api/submissions/{sid}", trainer)
            assert status == 200, (status, sub)
            if sub["state"] in ("graded", "failed"):
                done.append(sub)
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"not graded within {timeout} s: {len(done)} of {len(ids)} were")
            time.sleep(0.2)
    # CPU over the submitting and waiting (a little past the last grading: the last poll):
    # the lab's (the gateway and its kernels) and the rest of the machine's.
    ours = tree_cpu(lab.proc.pid) - ours
    others = max(0.0, cpu_seconds() - machine - ours) / (time.time() - first)
    last = max(epoch(g["finished"]) for sub in done for g in sub["gradings"] if g["finished"])
    return last - first, submitted, {"cpu_s": ours, "others_cores": others}, done


def breakdown(lab):
    """Per grading: time queued, time from taken to finished; and how many ran at once."""
    rows = [r for r in lab.gradings() if r[1] is not None and r[2] is not None]
    run = [f - s for _, s, f, _ in rows]
    wait = [s - q for q, s, _, _ in rows]
    span = max(f for *_, f, _ in rows) - min(q for q, *_ in rows)
    return {"gradings": len(rows), "run_median_s": statistics.median(run),
            "run_p90_s": sorted(run)[int(0.9 * (len(run) - 1))], "run_mean_s": statistics.fmean(run),
            "wait_median_s": statistics.median(wait), "busy_s": sum(run),
            "mean_running": sum(run) / span if span > 0 else 0.0}


# ---- nbgrader ------------------------------------------------------------------------------

def nbgrader(root, *args, timeout):
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
               PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def nbgrader_course():
    root = pathlib.Path(tempfile.mkdtemp(prefix="bench-grading-nbgrader."))
    (root / "source" / "ps1").mkdir(parents=True)
    (root / ".jupyter-config").mkdir()
    shutil.copy(PS1, root / "source" / "ps1" / "ps1.ipynb")
    (root / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.course_id = {COURSE!r}\n")
    done = nbgrader(root, "generate_assignment", "ps1", "--force", timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return root, json.loads((root / "release" / "ps1" / "ps1.ipynb").read_text())


def nbgrader_autograde(root, submissions):
    for student, nb in submissions.items():
        folder = root / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        (folder / "ps1.ipynb").write_text(json.dumps(nb))
    machine, ours = cpu_seconds(), children_cpu()
    started = time.time()
    done = nbgrader(root, "autograde", "ps1", "--force", timeout=3600)
    seconds = time.time() - started
    ours = children_cpu() - ours
    cpu = {"cpu_s": ours, "others_cores": max(0.0, cpu_seconds() - machine - ours) / seconds}
    assert done.returncode == 0, done.stderr[-4000:]
    from nbgrader.api import Gradebook
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE) as gb:
        for student in submissions:
            nb = gb.find_submission_notebook("ps1", "ps1", student)
            scores[student] = sum(g.auto_score or 0.0 for g in nb.grades)
    return seconds, cpu, scores


# ---- the run -------------------------------------------------------------------------------

def lab_score(sub):
    return sum(c["points"] or 0.0 for c in sub["feedback"]["cells"])


def candle_phase(lab, trainer, n, n_engineers):
    path = import_and_release(lab, trainer, "candle10", json.loads(CANDLE.read_text()))
    tokens = engineers(lab, "cand", n_engineers)
    first = next(iter(tokens.values()))
    assert api(lab.url, f"{path}/fetch", first, "POST")[0] == 201
    status, released = api(lab.url, f"/api/contents/{COURSE}/candle10.ipynb", first)
    assert status == 200, released
    right, wrong = answered(released["content"], CANDLE_RIGHT), answered(released["content"], CANDLE_WRONG)
    # Every fifth submission is wrong; engineers take turns (each submits n / engineers times).
    names = list(tokens)
    kinds = ["wrong" if k % 5 == 4 else "right" for k in range(n)]
    batch = [(tokens[names[k % len(names)]], wrong if kinds[k] == "wrong" else right) for k in range(n)]
    wall, submitting, cpu, subs = submit_and_wait(lab, trainer, path, batch, timeout=max(600, 2 * n))
    bad = [(k, s["state"], s.get("reason"), lab_score(s) if s.get("feedback") else None)
           for k, s in enumerate(subs)
           if s["state"] != "graded" or lab_score(s) != CANDLE_SCORES[kinds[k]]]
    if bad:
        raise SystemExit(f"academy-candle submissions graded wrongly: {bad[:5]} ({len(bad)} in all)")
    return {"submissions": n, "engineers": n_engineers, "wall_s": wall, "submit_s": submitting,
            "per_s": n / wall, "cells": 10, **cpu}


def python_batch(released, m):
    kinds = list(PY_VARIANTS)
    subs = {}
    for k in range(m):
        # Mostly right answers, then the class's usual mistakes in turn.
        kind = "right" if k % 2 == 0 else kinds[1 + (k // 2) % (len(kinds) - 1)]
        v = PY_VARIANTS[kind]
        subs[f"py{k:03d}"] = (kind, copy.deepcopy(released) if v is None
                              else answered(released, {**PY_RIGHT, **v}))
    return subs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab", required=True, type=pathlib.Path)
    ap.add_argument("--candle", type=int, default=500)
    ap.add_argument("--python", type=int, default=100)
    ap.add_argument("--engineers", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=0, help="[grading] parallel (0: the default, the CPUs)")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "target" / "bench")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs (lab.db, lab.log)")
    ap.add_argument("--profile", action="store_true",
                    help="log the grader's and the kernels' events and print where a grading's time goes")
    args = ap.parse_args()

    cores = os.cpu_count()
    parallel = args.parallel or cores
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    machine = f"{cores} cores ({model}), {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, Linux {platform.release()}"
    print(f"machine: {machine}; grading parallel = {parallel}", file=sys.stderr)

    # nbgrader's release of ps1 first: the python3 submissions are built from it.
    root, released = nbgrader_course()
    py = python_batch(released, args.python)

    lab = Lab(args.lab, args.parallel, args.profile)
    try:
        trainer = lab.add_user("bench-trainer", "trainer")
        print(f"academy-candle: {args.candle} submissions ...", file=sys.stderr)
        candle = candle_phase(lab, trainer, args.candle, min(args.engineers, args.candle))
        candle["breakdown"] = breakdown(lab)
        print(f"  {candle['wall_s']:.1f} s", file=sys.stderr)

        print(f"python3 on the lab: {args.python} submissions ...", file=sys.stderr)
        path = import_and_release(lab, trainer, "ps1", json.loads(PS1.read_text()))
        tokens = engineers(lab, "py", args.python)
        batch = [(tokens[s], nb) for s, (_, nb) in py.items()]
        wall, submitting, cpu, subs = submit_and_wait(lab, trainer, path, batch, timeout=max(600, 10 * args.python))
        failed = [s["id"] for s in subs if s["state"] != "graded"]
        if failed:
            raise SystemExit(f"python3 submissions not graded: {failed[:5]}")
        lab_py = {"wall_s": wall, "submit_s": submitting, "per_s": args.python / wall, **cpu,
                  "scores": {s: lab_score(sub) for s, sub in zip(py, subs)}}
        rows = lab.gradings()[args.candle:]
        run = [f - s for _, s, f, _ in rows]
        lab_py["breakdown"] = {"run_median_s": statistics.median(run), "run_mean_s": statistics.fmean(run),
                               "busy_s": sum(run)}
        print(f"  {wall:.1f} s", file=sys.stderr)
    finally:
        lab.stop()

    print(f"python3 through nbgrader autograde: {args.python} submissions ...", file=sys.stderr)
    nbg_s, nbg_cpu, nbg_scores = nbgrader_autograde(root, {s: nb for s, (_, nb) in py.items()})
    print(f"  {nbg_s:.1f} s", file=sys.stderr)
    differ = {s for s in py if abs(nbg_scores[s] - lab_py["scores"][s]) > 1e-9}
    if differ:
        raise SystemExit(f"lab and nbgrader scores differ: {[(s, nbg_scores[s], lab_py['scores'][s]) for s in sorted(differ)][:5]}")

    ratio = nbg_s / lab_py["wall_s"]
    quick = args.candle < 500 or args.python < 100
    candle_met = candle["wall_s"] < 60 * args.candle / 500

    def status(met):
        # Small counts say nothing about the goals (nbgrader's start-up alone is seconds).
        return "— (quick)" if quick else "met" if met else "not met"

    b = candle["breakdown"]
    lines = [
        f"- Machine: {machine}; `[grading] parallel` = {parallel}",
        f"- Software: nbgrader {nbgrader_version()}, python {platform.python_version()}",
        f"- {candle['engineers']} engineers submit {args.candle} academy-candle notebooks; {args.python} engineers one python3 notebook each (the same {args.python} notebooks go to `nbgrader autograde`, one student each; scores agree)",
        "",
        "| Grading | Submissions | Code cells each | Wall time | Submissions/s | One grading (median, taken to recorded) | CPU per submission (grader and kernels) | Its CPU use, of all cores | Other load on the machine | Goal | Status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| academy-candle, Academy Lab | {args.candle} | 10 | {candle['wall_s']:.1f} s | {candle['per_s']:.1f} | {1000 * b['run_median_s']:.0f} ms | {1000 * candle['cpu_s'] / args.candle:.0f} ms | {busy(candle['cpu_s'], candle['wall_s'])} | {candle['others_cores']:.2f} cores | {args.candle} in < {60 * args.candle / 500:.0f} s | {status(candle_met)} |",
        f"| python3, Academy Lab | {args.python} | 9 | {lab_py['wall_s']:.1f} s | {lab_py['per_s']:.2f} | {1000 * lab_py['breakdown']['run_median_s']:.0f} ms | {1000 * lab_py['cpu_s'] / args.python:.0f} ms | {busy(lab_py['cpu_s'], lab_py['wall_s'])} | {lab_py['others_cores']:.2f} cores | | |",
        f"| python3, nbgrader autograde | {args.python} | 9 | {nbg_s:.1f} s | {args.python / nbg_s:.2f} | {1000 * nbg_s / args.python:.0f} ms (one at a time) | {1000 * nbg_cpu['cpu_s'] / args.python:.0f} ms | {busy(nbg_cpu['cpu_s'], nbg_s)} | {nbg_cpu['others_cores']:.2f} cores | | |",
        f"| python3, Lab ÷ nbgrader | | | | {ratio:.1f}× | | | | | ≥ 5× | {status(ratio >= 5)} |",
    ]
    if args.profile:
        n = args.candle
        candle["phases"] = phases(lab, range(1, n + 1))
        lab_py["phases"] = phases(lab, range(n + 1, n + args.python + 1))
        lines += ["", "Where one grading's time goes (`--profile`: the gateway's log, JSON, at debug for the grader):", "",
                  phases_table("academy-candle", candle["phases"]), phases_table("python3", lab_py["phases"])]
    if quick:
        lines.insert(0, "> Quick mode (BENCH_QUICK=1): small counts, to keep the script working; not the goal's numbers.\n")
    md = "\n".join(lines) + "\n"
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "grading-quick" if quick else "grading"
    (args.out / f"{name}.md").write_text(md)
    (args.out / f"{name}.json").write_text(json.dumps({
        "machine": machine, "parallel": parallel, "candle": candle,
        "python_lab": {k: v for k, v in lab_py.items() if k != "scores"},
        "python_nbgrader": {"wall_s": nbg_s, "per_s": args.python / nbg_s, **nbg_cpu},
        "ratio": ratio}, indent=2))
    if args.keep:
        print(f"kept: {lab.data} {root}", file=sys.stderr)
    else:
        shutil.rmtree(lab.data, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def busy(cpu, wall):
    return f"{100 * cpu / (wall * os.cpu_count()):.0f}%"


def nbgrader_version():
    import nbgrader
    return nbgrader.__version__


if __name__ == "__main__":
    main()
