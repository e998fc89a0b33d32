"""A gateway killed with `kill -9` while 100 competition submissions are in flight (issue 16's
restart acceptance), through a real `lab serve` with real kernels: 80 CSVs posted at once by ten
participants and 20 notebooks queued or running; the kill comes as soon as the first CSV is
answered. After the restart every submission the gateway acknowledged is there, every one that
is there reached exactly one final state (a notebook interrupted mid-run runs again, at no extra
cost), none is there twice; the senders of unanswered CSVs send again those not there, and then
all 100 are there once each, and the leaderboards equal those of a second competition that
received the same 100 without a kill.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from test_competition_code import EXAMPLE, iso, put_notebook
from test_gateway import free_port
from test_grading_security import Client, add_user, landlock_abi, serve, wait_until

pytestmark = pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")

USERS = [f"p{i}" for i in range(10)]
CSV_EACH, CODE_EACH = 8, 2
FINAL = ("scored", "rejected", "failed")


def code_notebook(label):
    """A notebook that predicts one class for every row of the test set its run is given."""
    source = f"""import csv, glob
rows = list(csv.DictReader(open(glob.glob("competitions/*/test.csv")[0])))
with open("submission.csv", "w") as f:
    f.write("id,label\\n")
    f.writelines(f"{{r['id']}},{label}\\n" for r in rows)
"""
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                       "source": source}]}


def predictions(solution, n):
    """The true labels with exactly `n` public and `n` private rows wrong: every submission
    scores differently on both boards, so ranks cannot depend on arrival order."""
    wrong = {"Public": 0, "Private": 0}
    out = ["id,label"]
    for row in solution:
        label = int(row["label"])
        if wrong[row["Usage"]] < n:
            wrong[row["Usage"]] += 1
            label = (label + 1) % 3
        out.append(f"{row['id']},{label}")
    return ("\n".join(out) + "\n").encode()


def post_csv(url, token, slug, body, description):
    req = urllib.request.Request(
        f"{url}/api/competitions/{slug}/submissions?description={description}", method="POST", data=body,
        headers={"Authorization": f"token {token}", "Content-Type": "text/csv"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError) as e:
        return None, repr(e)  # the gateway died with the request in flight


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("restart")
    data, logs, made = base / "data", base / "logs", base / "example"
    subprocess.run([sys.executable, str(EXAMPLE / "make_data.py"), str(made)], check=True)
    data.mkdir(parents=True)
    (data / "lab.toml").write_text("[competitions]\nparallel = 2\n")
    port = free_port()
    proc, _ = serve(data, port, logs)
    url = f"http://127.0.0.1:{port}"
    tokens = {name: add_user(data, name, role)
              for name, role in [("tess", "trainer")] + [(u, "engineer") for u in USERS]}
    lab = {"url": url, "data": data, "logs": logs, "port": port, "proc": proc, "tokens": tokens,
           "clients": {n: Client(url, t, n) for n, t in tokens.items()},
           "solution": list(__import__("csv").DictReader(open(made / "solution.csv")))}
    now = datetime.now(timezone.utc)
    rules = {"metric": {"name": "accuracy"}, "columns": {"id": "id", "target": "label"},
             "start": iso(now - timedelta(days=1)), "merger_deadline": iso(now + timedelta(days=5)),
             "end": iso(now + timedelta(days=10)), "daily_cap": 20, "decimals": 6,
             "code": {"time_limit_s": 120, "memory_mb": 1024}}
    staff = lab["clients"]["tess"]
    for slug in ("restart", "reference"):
        status, body = staff.call("POST", "/api/competitions", {"slug": slug, "title": slug, "rules": rules})
        assert status == 201, body
        for path, file in (("solution", "solution.csv"), ("data/train.csv", "data/train.csv"),
                           ("data/test.csv", "data/test.csv"), ("data/test.csv?hidden=true", "hidden/test.csv")):
            req = urllib.request.Request(f"{url}/api/competitions/{slug}/{path}", method="PUT",
                                         data=(made / file).read_bytes(),
                                         headers={"Authorization": f"token {tokens['tess']}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status in (200, 201)
        assert staff.call("POST", f"/api/competitions/{slug}/publish")[0] == 200
        for u in USERS:
            assert lab["clients"][u].call("POST", f"/api/competitions/{slug}/join")[0] == 200
    for i, u in enumerate(USERS):
        for k in range(CODE_EACH):
            put_notebook(lab["clients"][u], f"code-{k}.ipynb", code_notebook((i + k) % 3))
    yield lab
    lab["proc"].terminate()
    lab["proc"].wait(timeout=30)


def everyone(lab, slug):
    status, rows = lab["clients"]["tess"].get(f"/api/competitions/{slug}/submissions?all=true")
    assert status == 200, rows
    return rows


def all_final(lab, slug, expected=None):
    def probe():
        rows = everyone(lab, slug)
        done = all(r["state"] in FINAL for r in rows)
        return rows if done and (expected is None or len(rows) == expected) else None
    return wait_until(f"every submission to {slug} to end", 600, probe, interval=0.5)


def boards(lab, slug):
    staff = lab["clients"]["tess"]
    out = {}
    for board in ("public", "private"):
        status, b = staff.get(f"/api/competitions/{slug}/leaderboard?board={board}")
        assert status == 200, b
        out[board] = [(r["rank"], r["team"], r["score"], r["entries"]) for r in b["rows"]]
    return out


def test_a_kill_with_a_hundred_in_flight_loses_nothing_and_changes_no_rank(lab):
    url, tokens = lab["url"], lab["tokens"]
    payloads = {}  # description -> (user, kind, body or notebook)
    for i, u in enumerate(USERS):
        for k in range(CODE_EACH):
            description = f"{u}-code-{k}"
            payloads[description] = (u, "code", f"code-{k}.ipynb")
            status, body = lab["clients"][u].call(
                "POST", "/api/competitions/restart/submissions",
                {"notebook": f"code-{k}.ipynb", "description": description})
            assert status == 202, body
        for j in range(CSV_EACH):
            payloads[f"{u}-csv-{j}"] = (u, "csv", predictions(lab["solution"], 1 + i * CSV_EACH + j))
    csvs = [d for d, p in payloads.items() if p[1] == "csv"]
    random.Random(5).shuffle(csvs)
    answers = {}
    done = threading.Semaphore(0)

    def send(description):
        user, _, body = payloads[description]
        answers[description] = post_csv(url, tokens[user], "restart", body, description)
        done.release()

    # A notebook runs and the other 19 wait; then all 80 CSVs are sent at once, and the
    # gateway is killed as soon as the first is answered: about 100 in flight.
    wait_until("a code run to start", 120,
               lambda: any(r["state"] == "running" for r in everyone(lab, "restart")), interval=0.05)
    threads = [threading.Thread(target=send, args=(d,)) for d in csvs]
    for t in threads:
        t.start()
    assert done.acquire(timeout=120)
    os.kill(lab["proc"].pid, signal.SIGKILL)
    lab["proc"].wait(timeout=30)
    for t in threads:
        t.join(timeout=120)
    acknowledged = {d: body["id"] for d, (status, body) in answers.items() if status == 201}
    unanswered = [d for d, (status, _) in answers.items() if status is None]
    assert all(status in (201, None) for status, _ in answers.values()), answers
    assert len(unanswered) >= len(csvs) // 2, f"only {len(unanswered)} CSVs were in flight at the kill"

    lab["proc"], _ = serve(lab["data"], lab["port"], lab["logs"])
    rows = all_final(lab, "restart")
    by_description = {}
    for r in rows:
        assert r["description"] not in by_description, f"{r['description']} is there twice"
        by_description[r["description"]] = r
    # Every acknowledged CSV is there, scored, under the id it was answered with.
    for d, id in acknowledged.items():
        assert by_description[d]["id"] == id and by_description[d]["state"] == "scored", by_description[d]
    # An unanswered one is there, scored, or not at all; every notebook ran to a score.
    assert all(r["state"] == "scored" and r["counted"] for r in rows), [r for r in rows if r["state"] != "scored"]
    assert sum(1 for d in by_description if "-code-" in d) == len(USERS) * CODE_EACH
    # Their senders got no answer, so they look (by description) and send again what is not
    # there, as `lab submit` users would: then all 100 are there, once each.
    resent = [d for d in unanswered if d not in by_description]
    for d in resent:
        user, _, body = payloads[d]
        status, answer = post_csv(url, tokens[user], "restart", body, d)
        assert status == 201, answer
    rows = all_final(lab, "restart", expected=len(payloads))
    by_description = {r["description"]: r for r in rows}
    assert sorted(by_description) == sorted(payloads) and len(rows) == len(payloads)
    assert all(r["state"] == "scored" and r["counted"] for r in rows)
    for u in USERS:
        status, comp = lab["clients"][u].get("/api/competitions/restart")
        assert comp["submissions"]["today"] == sum(1 for d in by_description if d.startswith(f"{u}-")), comp
    log = (lab["logs"] / "stdout.log").read_text() + (lab["logs"] / "stderr.log").read_text()
    assert "code submissions interrupted by a restart queued again" in log

    # The same submissions, in the same order, to a competition whose gateway is never killed.
    for r in sorted(rows, key=lambda r: r["id"]):
        user, kind, payload = payloads[r["description"]]
        if kind == "csv":
            status, body = post_csv(url, tokens[user], "reference", payload, r["description"])
            assert status == 201, body
        else:
            status, body = lab["clients"][user].call(
                "POST", "/api/competitions/reference/submissions",
                {"notebook": payload, "description": r["description"]})
            assert status == 202, body
    reference = all_final(lab, "reference", expected=len(rows))
    assert {r["description"]: r["public_score"] for r in reference} == \
        {r["description"]: r["public_score"] for r in rows}
    assert boards(lab, "restart") == boards(lab, "reference")
    assert len(boards(lab, "restart")["public"]) == len(USERS)
