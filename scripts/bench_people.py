"""Sign-in benchmark (issue 17), run by `scripts/bench-people`; not a test.

1. `lab user import` of a 10,000-person CSV into a new data dir, then the same file again
   (nothing changes): wall time of each, the process included.
2. The ops user list with those 10,000 users and a running server: `GET /api/admin/users`
   page 1 (50 users, JupyterHub's pagination media type) and a search by part of a name,
   each asked 200 times over one kept connection (as a browser does): p50 and p99.

Prints a markdown table (also target/bench/people.md). Only the standard library.
"""
import csv
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = Path(os.environ.get("LAB_BIN", ROOT / "target" / "release" / "lab"))
PAGED = "application/jupyterhub-pagination+json"


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def timed(*args):
    t = time.perf_counter()
    r = subprocess.run([str(LAB), *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - t, r.stdout.strip().splitlines()[-1]


def serve(data):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([str(LAB), "serve", "--port", str(port), "--data-dir", str(data)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, LAB_LOG="warn"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.stdout.readline().startswith("Log in with: "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            token = json.loads((data / "runtime" / "lab-server.json").read_text())["token"]
            return proc, port, token
    raise SystemExit("lab serve did not start")


def latencies(port, token, path, n=200):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"token {token}", "Accept": PAGED}
    times, body = [], None
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        times.append((time.perf_counter() - t) * 1000)
        assert r.status == 200, raw
        body = json.loads(raw)
    conn.close()
    return times, body


def main():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        people = tmp / "people.csv"
        with open(people, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "email", "role", "group"])
            for i in range(10_000):
                w.writerow([f"learner{i:05}", f"learner{i:05}@uni{i % 40}.example",
                            "trainer" if i % 250 == 0 else "engineer", f"cohort-{i // 500:02}"])
        first, said = timed("user", "import", str(people), "--data-dir", str(data))
        assert said == "add 10000, change 0, unchanged 0", said
        second, said = timed("user", "import", str(people), "--data-dir", str(data))
        assert said == "add 0, change 0, unchanged 10000", said
        rows.append(("`lab user import`, 10,000 new people", f"{first:.2f} s", "under 10 s"))
        rows.append(("the same file again (nothing changes)", f"{second:.2f} s", "under 10 s"))

        proc, port, token = serve(data)
        try:
            for what, path, check in [
                ("ops list, page 1 (50 of 10,001)", "/api/admin/users?limit=50",
                 lambda b: len(b["items"]) == 50 and b["_pagination"]["total"] == 10_001),
                ("ops list, page 150 (offset 7,450)", "/api/admin/users?offset=7450&limit=50",
                 lambda b: b["items"][0]["name"] == "learner07449"),
                ("ops list, search `learner0421` (10 match)", "/api/admin/users?search=learner0421",
                 lambda b: b["_pagination"]["total"] == 10),
            ]:
                times, body = latencies(port, token, path)
                assert check(body), body
                rows.append((what, f"p50 {pct(times, 50):.1f} ms, p99 {pct(times, 99):.1f} ms",
                             "under 50 ms"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    table = "| what | ours | goal |\n| --- | ---: | --- |\n" + "".join(
        f"| {a} | {b} | {c} |\n" for a, b, c in rows)
    out = ROOT / "target" / "bench" / "people.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
