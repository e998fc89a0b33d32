"""Competitions end to end through a real `lab serve` (issue 16): a trainer creates one with a
hidden solution, participants join and submit CSVs over HTTP, the caps hold under a race of
fifty, the boards rank, finals are picked, and nothing of the solution leaks before the reveal.

Marker values are planted in the solution (the negative class's label and the ids' Usage are
what a participant must never learn); every response body, every file under the users'
folders and the gateway's log are scanned for them.
"""
import csv
import io
import json
import random
import threading
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import os
import subprocess

import pytest

import websocket

import openapi_check

from test_gateway import LAB, VENV_DATA, free_port, send_execute_on, start_lab
from test_sandbox import landlock_abi
from test_grading_nbgrader import add_user

RUN = uuid.uuid4().hex[:8]
NEG = f"neg-MARKER-{RUN}"
SEEN = []  # (who, text): every response body and message, for the leak scan
STAFF = {"tess", "admin"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-data")
    port = free_port()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="debug")
    proc, token, _ = start_lab(data, port, env)
    tokens = {"admin": token}
    for name, role in (("tess", "trainer"), ("pat", "engineer"), ("quinn", "engineer"), ("rob", "engineer")):
        tokens[name] = add_user(data, name, role)
    yield {"url": f"http://127.0.0.1:{port}", "tokens": tokens, "data": data, "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


def call(lab, who, method, path, body=None, raw=None, content_type="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(lab["url"] + path, method=method, data=data,
                                 headers={"Authorization": f"token {lab['tokens'][who]}",
                                          "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode()
            status, kind = r.status, r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        status, kind = e.code, e.headers.get("Content-Type")
    openapi_check.check(lab["url"] + path, method, status, kind, text, data)
    SEEN.append((who, text))
    try:
        return status, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, text


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_data(n=400, seed=7):
    rnd = random.Random(seed)
    ids = [f"t{i:04d}" for i in range(n)]
    labels = ["pos" if rnd.random() < 0.4 else NEG for _ in ids]
    usage = ["Public" if i % 2 == 0 else "Private" for i in range(n)]
    solution = "id,target,Usage\n" + "".join(f"{i},{l},{u}\n" for i, l, u in zip(ids, labels, usage))
    return ids, labels, usage, solution


def submission(ids, labels, skill, seed):
    """Scores that separate pos from neg with some skill."""
    rnd = random.Random(seed)
    rows = [f"{i},{(1.0 if l == 'pos' else 0.0) * skill + rnd.random():.6f}\n" for i, l in zip(ids, labels)]
    return ("id,target\n" + "".join(rows)).encode()


def create(lab, slug, daily_cap=5, end_in=timedelta(days=10), max_bytes=None):
    now = datetime.now(timezone.utc)
    rules = {
        "metric": {"name": "roc_auc", "positive": "pos"},
        "start": iso(now - timedelta(days=2)),
        "merger_deadline": iso(now + end_in / 2),
        "end": iso(now + end_in),
        "daily_cap": daily_cap,
        "selections": 2,
        "decimals": 4,
    }
    if max_bytes:
        rules["max_bytes"] = max_bytes
    status, body = call(lab, "tess", "POST", "/api/competitions",
                        {"slug": slug, "title": f"Spirals {slug}", "overview": "# Find the spirals", "rules": rules})
    assert status == 201, body
    return rules


def test_a_competition_from_creation_to_reveal(lab):
    ids, labels, usage, solution = make_data()
    rules = create(lab, "spirals", max_bytes=10 << 20)
    # Not published: participants get the 404 of a competition that does not exist.
    assert call(lab, "pat", "GET", "/api/competitions/spirals")[0] == 404
    assert call(lab, "pat", "POST", "/api/competitions", {"slug": "x", "title": "x", "rules": rules})[0] == 403
    status, body = call(lab, "tess", "POST", "/api/competitions/spirals/publish")
    assert status == 409 and "solution" in body["message"]
    # A solution that does not fit the metric is refused, naming line and column.
    status, body = call(lab, "tess", "PUT", "/api/competitions/spirals/solution",
                        raw=b"id,target,Usage\na,pos,Public\nb,neg,Secret\n", content_type="text/csv")
    assert status == 400 and 'line 3, column "Usage"' in body["message"], body
    status, body = call(lab, "tess", "PUT", "/api/competitions/spirals/solution", raw=solution.encode(),
                        content_type="text/csv")
    assert status == 200 and body["rows"] == 400 and body["public"] == 200, body
    features = "id,x,y\n" + "".join(f"{i},{k * 0.1:.1f},{k * 0.2:.1f}\n" for k, i in enumerate(ids))
    assert call(lab, "tess", "PUT", "/api/competitions/spirals/data/test.csv", raw=features.encode(),
                content_type="text/csv")[0] == 201
    assert call(lab, "tess", "POST", "/api/competitions/spirals/publish")[0] == 200

    # Participants: see it, join, submit.
    status, listing = call(lab, "pat", "GET", "/api/competitions")
    assert status == 200 and [c["slug"] for c in listing] == ["spirals"] and listing[0]["joined"] is False
    assert "has_solution" not in listing[0]
    status, body = call(lab, "pat", "POST", "/api/competitions/spirals/submissions",
                        raw=submission(ids, labels, 0.5, 1), content_type="text/csv")
    assert status == 403 and "join" in body["message"]
    for who in ("pat", "quinn", "rob"):
        status, team = call(lab, who, "POST", "/api/competitions/spirals/join")
        assert status == 200 and team["members"] == [who], team
    status, got = call(lab, "pat", "GET", "/api/competitions/spirals")
    assert got["team"]["name"] == "pat" and got["submissions"]["today"] == 0 and got["data"] == [
        {"name": "test.csv", "size": len(features)}]

    scores = {}
    for who, skill, seed in (("pat", 0.3, 1), ("pat", 0.9, 2), ("quinn", 0.6, 3), ("rob", 0.1, 4)):
        status, body = call(lab, who, "POST", f"/api/competitions/spirals/submissions?description={who}{seed}",
                            raw=submission(ids, labels, skill, seed), content_type="text/csv")
        assert status == 201, body
        assert body["state"] == "scored" and 0.5 < body["public_score"] <= 1.0, body
        assert "private_score" not in body, "no private score before the reveal"
        scores[(who, seed)] = body

    # A file with problems: 422 naming each, stored, costs nothing.
    bad = b"id,target\nt0000,0.5\nt0000,0.2\nnope,0.1\nt0002,NaN\n"
    status, body = call(lab, "quinn", "POST", "/api/competitions/spirals/submissions", raw=bad,
                        content_type="text/csv")
    assert status == 422, body
    text = " ".join(p.get("message", "") for p in body["problems"])
    assert 'id "t0000" is also on line 2' in text and 'id "nope" is not in the test set' in text, body
    assert any(p.get("line") == 5 and p.get("column") == "target" for p in body["problems"]), body
    assert body["submission"]["state"] == "rejected"
    status, got = call(lab, "quinn", "GET", "/api/competitions/spirals")
    assert got["submissions"]["today"] == 1, "the rejected file cost nothing"
    # Missing ids are listed by id, never in the solution's order.
    status, body = call(lab, "quinn", "POST", "/api/competitions/spirals/submissions",
                        raw=b"id,target\nt0003,0.5\n", content_type="text/csv")
    assert status == 422 and '399 ids of the test set are missing: "t0000", "t0001", "t0002", "t0004", "t0005"' in body["message"], body
    # Over the competition's size: 413 before anything is read or kept.
    huge = b"id,target\n" + b"t0000,0.5\n" * ((11 << 20) // 10)
    assert call(lab, "quinn", "POST", "/api/competitions/spirals/submissions", raw=huge,
                content_type="text/csv")[0] == 413

    # From the participant's own folder.
    csv_text = submission(ids, labels, 0.7, 5).decode()
    status, _ = call(lab, "rob", "PUT", "/api/contents/preds.csv",
                     {"type": "file", "format": "text", "content": csv_text})
    assert status in (200, 201)
    status, body = call(lab, "rob", "POST", "/api/competitions/spirals/submissions",
                        {"path": "preds.csv", "description": "from my folder"})
    assert status == 201 and body["description"] == "from my folder", body
    scores[("rob", 5)] = body
    assert call(lab, "rob", "POST", "/api/competitions/spirals/submissions", {"path": "../pat/x.csv"})[0] in (403, 404)

    # `lab submit`, as a notebook's shell line would run it.
    path = lab["data"].parent / f"cli-{RUN}.csv"
    path.write_bytes(submission(ids, labels, 0.2, 6))
    cli = [str(LAB), "submit", "spirals", str(path), "--url", lab["url"], "--token", lab["tokens"]["quinn"]]
    r = subprocess.run([*cli, "-m", "from the CLI"], capture_output=True, text=True, timeout=60)
    SEEN.append(("quinn", r.stdout + r.stderr))
    assert r.returncode == 0 and "public score 0." in r.stdout, (r.stdout, r.stderr)
    path.write_bytes(b"id,target\nt0000,x\n")
    r = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    SEEN.append(("quinn", r.stdout + r.stderr))
    assert r.returncode != 0 and 'line 2, column "target"' in r.stderr and "nothing was counted" in r.stderr, r.stderr
    status, quinns = call(lab, "quinn", "GET", "/api/competitions/spirals/submissions")
    cli_entry = next(e for e in quinns if e["description"] == "from the CLI")
    scores[("quinn", 6)] = cli_entry

    # Only scored files are kept; a refused one is recorded without its file.
    kept = list((lab["data"] / "competitions" / "spirals" / "submissions").iterdir())
    status, every = call(lab, "tess", "GET", "/api/competitions/spirals/submissions?all=true")
    assert len(kept) == sum(e["state"] == "scored" for e in every) == 6, (kept, every)
    assert all(e["public_score"] == round(e["public_score"], 4) for e in mine_all(lab, "rob")), "rounded"

    # Each team sees only its own submissions.
    status, mine = call(lab, "pat", "GET", "/api/competitions/spirals/submissions?all=true")
    assert {e["user"] for e in mine} == {"pat"} and len(mine) == 2
    assert all("private_score" not in e for e in mine)

    # The public board: one row per team, best public score first.
    status, board = call(lab, "rob", "GET", "/api/competitions/spirals/leaderboard")
    best = {}
    for (who, _), e in scores.items():
        best[who] = max(best.get(who, 0.0), e["public_score"])
    assert status == 200 and [r["team"] for r in board["rows"]] == sorted(best, key=lambda t: -best[t]), board
    ranked = [float(r["score"]) for r in board["rows"]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 3
    assert all(len(r["score"].split(".")[1]) == 4 for r in board["rows"]), "4 decimals shown"
    status, body = call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=private")
    assert status == 403, body
    status, body = call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=shakeup")
    assert status == 403, body
    status, staff_board = call(lab, "tess", "GET", "/api/competitions/spirals/leaderboard?board=private")
    assert status == 200 and len(staff_board["rows"]) == 3

    # Finals: pat picks the weaker one; at most 2.
    weaker = scores[("pat", 1)]["id"]
    assert call(lab, "pat", "PUT", f"/api/competitions/spirals/submissions/{weaker}/selected", {"selected": True})[0] == 200
    assert call(lab, "quinn", "PUT", f"/api/competitions/spirals/submissions/{weaker}/selected",
                {"selected": True})[0] == 404, "not quinn's"

    # Reveal only after the end; staff move the end into the past, then reveal.
    status, body = call(lab, "tess", "POST", "/api/competitions/spirals/reveal")
    assert status == 409, body
    now = datetime.now(timezone.utc)
    ended = dict(rules, end=iso(now - timedelta(seconds=1)), merger_deadline=iso(now - timedelta(days=1)),
                 reveal="by_staff")
    assert call(lab, "tess", "PATCH", "/api/competitions/spirals", {"rules": ended})[0] == 200
    status, body = call(lab, "pat", "POST", "/api/competitions/spirals/submissions",
                        raw=submission(ids, labels, 0.9, 9), content_type="text/csv")
    assert status == 409 and "ended" in body["message"], body
    assert call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=private")[0] == 403
    scan_for_leaks(lab, before_reveal=["spirals"])

    assert call(lab, "tess", "POST", "/api/competitions/spirals/reveal")[0] == 200
    status, private = call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=private")
    assert status == 200 and len(private["rows"]) == 3
    # pat's private score is that of the submission pat selected, not of pat's best.
    status, mine = call(lab, "pat", "GET", "/api/competitions/spirals/submissions")
    selected = next(e for e in mine if e["selected"])
    pat_row = next(r for r in private["rows"] if r["team"] == "pat")
    assert pat_row["score"] == selected["private_shown"], (pat_row, selected)
    status, shake = call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=shakeup")
    assert status == 200 and {m["team"] for m in shake["rows"]} == {"pat", "quinn", "rob"}
    for m in shake["rows"]:
        assert m["change"] == m["public_rank"] - m["private_rank"]
    status, text = call(lab, "pat", "GET", "/api/competitions/spirals/leaderboard?board=private&format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["team"] for r in rows] == [r["team"] for r in private["rows"]]
    assert [(r["rank"], r["score"], r["submitted"]) for r in rows] == \
        [(str(r["rank"]), r["score"], r["submitted"]) for r in private["rows"]], (rows, private)


def test_fifty_concurrent_submissions_pass_a_daily_cap_of_five_exactly(lab):
    ids, labels, usage, solution = make_data(seed=11)
    create(lab, "race", daily_cap=5)
    assert call(lab, "tess", "PUT", "/api/competitions/race/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    assert call(lab, "tess", "POST", "/api/competitions/race/publish")[0] == 200
    assert call(lab, "quinn", "POST", "/api/competitions/race/join")[0] == 200
    body = submission(ids, labels, 0.5, 3)
    results = []
    lock = threading.Lock()

    def one():
        r = call(lab, "quinn", "POST", "/api/competitions/race/submissions", raw=body, content_type="text/csv")
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    statuses = sorted(s for s, _ in results)
    assert len(results) == 50
    assert statuses.count(201) == 5 and statuses.count(429) == 45, statuses
    refused = next(b for s, b in results if s == 429)
    assert refused["made"] == 5 and refused["cap"] == 5 and refused["resets_at"].endswith("T00:00:00.000000Z"), refused
    assert "resets at" in refused["message"]
    status, mine = call(lab, "quinn", "GET", "/api/competitions/race/submissions")
    assert len(mine) == 5, "a refused submission is not stored"
    # Past the cap nothing is read, not even a bad file: the same 429, and nothing stored.
    status, body = call(lab, "quinn", "POST", "/api/competitions/race/submissions", raw=b"id,target\n",
                        content_type="text/csv")
    assert status == 429, body
    assert len(call(lab, "quinn", "GET", "/api/competitions/race/submissions")[1]) == 5


def mine_all(lab, who):
    return call(lab, who, "GET", "/api/competitions/spirals/submissions")[1]


def private_scores(lab, slug):
    """Every private score of a competition, as staff see them, in the forms a JSON body or a
    page could show one: the full value, and rounded to 4 to 9 decimals."""
    status, every = call(lab, "tess", "GET", f"/api/competitions/{slug}/submissions?all=true")
    assert status == 200
    values = [e["private_score"] for e in every if e.get("private_score") is not None]
    assert values, "staff see the private scores"
    forms = set()
    for v in values:
        forms.add(repr(v))
        forms.update(f"{v:.{d}f}" for d in range(4, 10))
    # A form that is also some public score's would prove nothing.
    public = {repr(e["public_score"]) for e in every if e.get("public_score") is not None}
    public |= {f"{float(p):.{d}f}" for p in public for d in range(4, 10)}
    return forms - public


def gateway_output(lab):
    """What the gateway printed since it started (its stdout after the login URL), without
    waiting."""
    fd = lab["proc"].stdout.fileno()
    os.set_blocking(fd, False)
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(fd, True)
    return b"".join(chunks).decode(errors="replace")


def scan_for_leaks(lab, before_reveal=()):
    """No response, no websocket message, no CLI output, no file under the users' folders, and
    nothing the gateway printed or logged names the hidden label or the solution's file; and
    nothing a participant saw holds a private score of the competitions in `before_reveal`."""
    printed = gateway_output(lab)
    log = (lab["data"] / "lab.log").read_text()
    secret = set()
    for slug in before_reveal:
        secret |= private_scores(lab, slug)
    if secret:
        # The forms are the ones the gateway writes: staff's own answers hold them.
        assert any(v in text for who, text in SEEN if who in STAFF for v in secret)
    for who, text in SEEN:
        assert NEG not in text, text[:500]
        assert "solution.csv" not in text, text[:500]
        if who not in STAFF:
            leaked = [v for v in secret if v in text]
            assert not leaked, (who, leaked, text[:500])
    for path in (lab["data"] / "users").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert NEG.encode() not in data and b"solution.csv" not in data, path
    for text in (printed, log):
        assert NEG not in text
        assert "solution.csv" not in text, [line for line in text.splitlines() if "solution.csv" in line][:3]


def test_teams_merge_by_kaggles_rule_and_become_one_row(lab):
    ids, labels, usage, solution = make_data(seed=23)
    now = datetime.now(timezone.utc)
    rules = {
        "metric": {"name": "roc_auc", "positive": "pos"},
        # Opened today: a merged team may have made at most 2 × 1 submissions.
        "start": iso(now.replace(hour=0, minute=0, second=0)),
        "merger_deadline": iso(now + timedelta(days=5)),
        "end": iso(now + timedelta(days=10)),
        "daily_cap": 2,
        "team_size": 2,
    }
    assert call(lab, "tess", "POST", "/api/competitions", {"slug": "teams", "title": "Teams", "rules": rules})[0] == 201
    assert call(lab, "tess", "PUT", "/api/competitions/teams/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    assert call(lab, "tess", "POST", "/api/competitions/teams/publish")[0] == 200
    for who in ("pat", "quinn", "rob"):
        assert call(lab, who, "POST", "/api/competitions/teams/join")[0] == 200
    for who, seed in (("pat", 1), ("pat", 2), ("rob", 3)):
        status, body = call(lab, who, "POST", "/api/competitions/teams/submissions",
                            raw=submission(ids, labels, 0.5, seed), content_type="text/csv")
        assert status == 201, body

    # pat's team (2 made) asks rob's (1 made): 3 > 2 × 1 day, refused on acceptance.
    status, body = call(lab, "pat", "POST", "/api/competitions/teams/team/invitations", {"user": "rob"})
    assert status == 200, body
    status, robs = call(lab, "rob", "GET", "/api/competitions/teams/team")
    received = next(i for i in robs["invitations"] if i["direction"] == "received")
    assert received["from"] == "pat"
    status, body = call(lab, "rob", "POST", f"/api/competitions/teams/team/invitations/{received['id']}/accept")
    assert status == 409 and "at most 2" in body["message"], body
    assert call(lab, "quinn", "POST", f"/api/competitions/teams/team/invitations/{received['id']}/accept")[0] == 404
    assert call(lab, "rob", "DELETE", f"/api/competitions/teams/team/invitations/{received['id']}")[0] == 204

    # quinn (nothing made) accepts pat's: one team of two, pat's submissions, one board row.
    assert call(lab, "pat", "POST", "/api/competitions/teams/team/invitations", {"user": "quinn"})[0] == 200
    status, quinns = call(lab, "quinn", "GET", "/api/competitions/teams/team")
    inv = next(i for i in quinns["invitations"] if i["direction"] == "received")
    status, team = call(lab, "quinn", "POST", f"/api/competitions/teams/team/invitations/{inv['id']}/accept")
    assert status == 200 and sorted(team["members"]) == ["pat", "quinn"], team
    status, mine = call(lab, "quinn", "GET", "/api/competitions/teams/submissions")
    assert len(mine) == 2 and {e["user"] for e in mine} == {"pat"}
    # The caps are the team's now: pat's two used today's cap for quinn too.
    status, body = call(lab, "quinn", "POST", "/api/competitions/teams/submissions",
                        raw=submission(ids, labels, 0.5, 9), content_type="text/csv")
    assert status == 429 and body["made"] == 2, body
    # A third member is over the team size.
    status, body = call(lab, "pat", "POST", "/api/competitions/teams/team/invitations", {"user": "rob"})
    assert status == 409 and "limit is 2" in body["message"], body
    status, board = call(lab, "rob", "GET", "/api/competitions/teams/leaderboard")
    assert sorted(r["team"] for r in board["rows"]) == ["pat", "rob"]
    assert call(lab, "pat", "PATCH", "/api/competitions/teams/team", {"name": "Spiral Hunters"})[0] == 200
    status, board = call(lab, "rob", "GET", "/api/competitions/teams/leaderboard")
    assert sorted(r["team"] for r in board["rows"]) == ["Spiral Hunters", "rob"]
    assert call(lab, "rob", "PATCH", "/api/competitions/teams/team", {"name": "Spiral Hunters"})[0] == 409
    # A name a spreadsheet would run as a formula is exported as text.
    assert call(lab, "rob", "PATCH", "/api/competitions/teams/team", {"name": "=1+2"})[0] == 200
    status, text = call(lab, "rob", "GET", "/api/competitions/teams/leaderboard?format=csv")
    assert status == 200 and "'=1+2" in text and "\n=1+2" not in text and ",=1+2" not in text, text


def test_a_member_leaves_a_team_only_before_it_submits(lab):
    ids, labels, usage, solution = make_data(seed=29)
    create(lab, "leave", daily_cap=3)
    assert call(lab, "tess", "PUT", "/api/competitions/leave/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    assert call(lab, "tess", "POST", "/api/competitions/leave/publish")[0] == 200
    for who in ("pat", "quinn"):
        assert call(lab, who, "POST", "/api/competitions/leave/join")[0] == 200
    status, body = call(lab, "pat", "POST", "/api/competitions/leave/team/leave")
    assert status == 409 and "only member" in body["message"], body
    assert call(lab, "pat", "POST", "/api/competitions/leave/team/invitations", {"user": "quinn"})[0] == 200
    inv = next(i for i in call(lab, "quinn", "GET", "/api/competitions/leave/team")[1]["invitations"])
    assert call(lab, "quinn", "POST", f"/api/competitions/leave/team/invitations/{inv['id']}/accept")[0] == 200
    # Nothing submitted yet: quinn leaves, and has a team of her own again.
    status, team = call(lab, "quinn", "POST", "/api/competitions/leave/team/leave")
    assert status == 200 and team["members"] == ["quinn"], team
    assert call(lab, "pat", "GET", "/api/competitions/leave/team")[1]["members"] == ["pat"]
    # Together again; once the team has submitted, nobody leaves it (as on Kaggle).
    assert call(lab, "pat", "POST", "/api/competitions/leave/team/invitations", {"user": "quinn"})[0] == 200
    inv = next(i for i in call(lab, "quinn", "GET", "/api/competitions/leave/team")[1]["invitations"]
               if i["direction"] == "received")
    assert call(lab, "quinn", "POST", f"/api/competitions/leave/team/invitations/{inv['id']}/accept")[0] == 200
    assert call(lab, "pat", "POST", "/api/competitions/leave/submissions", raw=submission(ids, labels, 0.5, 1),
                content_type="text/csv")[0] == 201
    status, body = call(lab, "quinn", "POST", "/api/competitions/leave/team/leave")
    assert status == 409 and "has submitted" in body["message"], body
    assert sorted(call(lab, "quinn", "GET", "/api/competitions/leave/team")[1]["members"]) == ["pat", "quinn"]


def test_a_new_solution_rescores_every_submission(lab):
    ids, labels, usage, solution = make_data(seed=31)
    create(lab, "rescore", daily_cap=5)
    assert call(lab, "tess", "PUT", "/api/competitions/rescore/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    assert call(lab, "tess", "POST", "/api/competitions/rescore/publish")[0] == 200
    assert call(lab, "rob", "POST", "/api/competitions/rescore/join")[0] == 200
    made = []
    for skill in (2.0, 0.3):
        status, body = call(lab, "rob", "POST", "/api/competitions/rescore/submissions",
                            raw=submission(ids, labels, skill, 5), content_type="text/csv")
        assert status == 201, body
        made.append(body)
    status, before = call(lab, "tess", "GET", "/api/competitions/rescore/submissions?all=true")
    # Staff find a wrong label: every label flipped is the extreme case, where AUC becomes 1 - AUC.
    flipped = "id,target,Usage\n" + "".join(
        f"{i},{NEG if l == 'pos' else 'pos'},{u}\n" for i, l, u in zip(ids, labels, usage))
    status, body = call(lab, "tess", "PUT", "/api/competitions/rescore/solution", raw=flipped.encode(),
                        content_type="text/csv")
    assert status == 200 and body["rescored"] == {"rescored": 2, "refused": 0, "missing": 0, "failed": 0}, body
    status, after = call(lab, "tess", "GET", "/api/competitions/rescore/submissions?all=true")
    for b, a in zip(before, after):
        assert a["state"] == "scored" and a["id"] == b["id"]
        assert abs(a["public_score"] - (1 - b["public_score"])) < 1e-3, (a, b)
        assert abs(a["private_score"] - (1 - b["private_score"])) < 1e-3, (a, b)
    status, board = call(lab, "rob", "GET", "/api/competitions/rescore/leaderboard")
    assert abs(float(board["rows"][0]["score"]) - max(a["public_score"] for a in after)) < 1e-4, board
    # The explicit rescore is idempotent.
    status, body = call(lab, "tess", "POST", "/api/competitions/rescore/rescore")
    assert status == 200 and body == {"rescored": 2, "refused": 0, "missing": 0, "failed": 0}, body
    assert call(lab, "rob", "POST", "/api/competitions/rescore/rescore")[0] == 404
    # A solution for other ids refuses every file: rejected, and it frees the cap.
    other = "id,target,Usage\n" + "".join(f"x{i},{l},{u}\n" for i, l, u in zip(ids, labels, usage))
    status, body = call(lab, "tess", "PUT", "/api/competitions/rescore/solution", raw=other.encode(),
                        content_type="text/csv")
    assert status == 200 and body["rescored"]["refused"] == 2, body
    status, mine = call(lab, "rob", "GET", "/api/competitions/rescore/submissions")
    assert {e["state"] for e in mine} == {"rejected"} and not any(e["counted"] for e in mine), mine
    assert all("t0000" in json.dumps(e["error"]) for e in mine), mine
    assert call(lab, "rob", "GET", "/api/competitions/rescore/leaderboard")[1]["rows"] == []
    scan_for_leaks(lab)


def notebook(*sources):
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
                      for s in sources]}


@pytest.mark.skipif(landlock_abi() < 6, reason="this Linux lacks Landlock ABI 6")
def test_no_marker_reaches_a_participant_through_kernels_or_code_runs(lab):
    """The marker scan over the rest of a competition: a participant's own kernel (every
    websocket message), and code runs on the hidden test set, scored and failing in every way
    (an error, a bad file, a timeout, out of memory, no file), one of them looking for the
    solution. No response, message, log line or file names the hidden label or the solution's
    file, and nothing rob sees holds a private score."""
    ids, labels, usage, solution = make_data(seed=37)
    now = datetime.now(timezone.utc)
    rules = {"metric": {"name": "roc_auc", "positive": "pos"}, "start": iso(now - timedelta(days=1)),
             "merger_deadline": iso(now + timedelta(days=5)), "end": iso(now + timedelta(days=10)),
             "daily_cap": 10, "code": {"time_limit_s": 20, "memory_mb": 1024}}
    assert call(lab, "tess", "POST", "/api/competitions",
                {"slug": "markers", "title": "Markers", "rules": rules})[0] == 201
    assert call(lab, "tess", "PUT", "/api/competitions/markers/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    features = "id,x\n" + "".join(f"{i},{k * 0.5:.1f}\n" for k, i in enumerate(ids))
    for query in ("", "?hidden=true"):
        assert call(lab, "tess", "PUT", f"/api/competitions/markers/data/test.csv{query}",
                    raw=features.encode(), content_type="text/csv")[0] in (200, 201)
    assert call(lab, "tess", "POST", "/api/competitions/markers/publish")[0] == 200
    assert call(lab, "rob", "POST", "/api/competitions/markers/join")[0] == 200

    # rob's own kernel reads the participant files and looks for the solution beside them.
    status, kernel = call(lab, "rob", "POST", "/api/kernels", {"name": "python3"})
    assert status == 201, kernel
    ws_url = lab["url"].replace("http", "ws") + f"/api/kernels/{kernel['id']}/channels?token={lab['tokens']['rob']}"
    ws = websocket.create_connection(ws_url, timeout=60)
    probe = ("import pathlib\nhere = pathlib.Path('competitions/markers')\n"
             "print(sorted(p.name for p in here.iterdir()), here.joinpath('test.csv').read_text()[:60])\n"
             "name = 'solution' + '.csv'\n"
             "for p in (here.resolve().parent / name, here / '..' / '..' / '..' / 'competitions' / 'markers' / name):\n"
             "    try:\n        print(p.read_text())\n    except Exception as e:\n        print('refused', type(e).__name__)\n")
    msg_id = send_execute_on(ws, probe)
    texts = []
    while True:
        raw = ws.recv()
        SEEN.append(("rob", raw))
        m = json.loads(raw)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
            texts.append(m["content"]["text"])
        if (m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"):
            break
    ws.close()
    out = "".join(texts)
    assert "['test.csv']" in out and out.count("refused") == 2, out
    assert call(lab, "rob", "DELETE", f"/api/kernels/{kernel['id']}")[0] == 204

    # Code runs on the hidden test set: one scores, the others fail their own ways.
    read = "import csv\nrows = list(csv.DictReader(open('competitions/markers/test.csv')))\n"
    runs = {
        "good.ipynb": (notebook(read, "import random\nrandom.seed(1)\nopen('submission.csv', 'w').write("
                                      "'id,target\\n' + ''.join(f\"{r['id']},{random.random()}\\n\" for r in rows))"),
                       "scored", None),
        # Fails either way, with one of two literal messages, which the participant sees.
        "snoop.ipynb": (notebook(read, "import pathlib\nhere = pathlib.Path('competitions/markers').resolve()\n"
                                       "try:\n    here.parent.parent.joinpath('solution' + '.csv').read_text()\n"
                                       "except OSError:\n    raise RuntimeError('the solution is out of reach')\n"
                                       "raise RuntimeError('the solution was read')"),
                        "failed", "error"),
        "labels.ipynb": (notebook(read, "open('submission.csv', 'w').write('id,target\\n' + "
                                        "''.join(f\"{r['id']},pos\\n\" for r in rows))"), "failed", "format_error"),
        "loop.ipynb": (notebook(read, "while True:\n    pass"), "failed", "timeout"),
        "hog.ipynb": (notebook(read, "x = bytearray(3 * 1024 ** 3)"), "failed", "out_of_memory"),
        "nothing.ipynb": (notebook(read, "print(len(rows))"), "failed", "no_submission_file"),
    }
    submitted = {}
    for name, (nb, _, _) in runs.items():
        assert call(lab, "rob", "PUT", f"/api/contents/{name}",
                    {"type": "notebook", "format": "json", "content": nb})[0] in (200, 201)
        status, body = call(lab, "rob", "POST", "/api/competitions/markers/submissions", {"notebook": name})
        assert status == 202, body
        submitted[body["id"]] = name
    deadline = datetime.now(timezone.utc) + timedelta(seconds=240)
    while True:
        mine = {e["id"]: e for e in call(lab, "rob", "GET", "/api/competitions/markers/submissions")[1]}
        if all(mine[i]["state"] in ("scored", "failed", "rejected") for i in submitted):
            break
        assert datetime.now(timezone.utc) < deadline, mine
        threading.Event().wait(0.3)
    for i, name in submitted.items():
        assert mine[i]["state"] == runs[name][1], (name, mine[i])
        if runs[name][2]:
            assert mine[i]["error"]["category"] == runs[name][2], (name, mine[i])
    snooped = mine[next(i for i, n in submitted.items() if n == "snoop.ipynb")]["error"]
    assert "the solution is out of reach" in snooped["message"], snooped
    call(lab, "rob", "GET", "/api/competitions/markers/leaderboard")
    scan_for_leaks(lab, before_reveal=["markers"])


def test_the_private_board_shows_by_itself_at_the_end_and_the_total_cap_holds(lab):
    """The default reveal (`at_end`): nobody but staff sees a private score until the end, and
    everyone signed in sees the private board and the shake-up from then on, with no staff
    action. A total cap refuses the submission past it with its numbers, as the daily cap does."""
    ids, labels, usage, solution = make_data(seed=41)
    now = datetime.now(timezone.utc)
    end = now + timedelta(seconds=6)
    rules = {"metric": {"name": "roc_auc", "positive": "pos"}, "start": iso(now - timedelta(days=1)),
             "merger_deadline": iso(now), "end": iso(end), "daily_cap": 5, "total_cap": 2}
    assert call(lab, "tess", "POST", "/api/competitions", {"slug": "atend", "title": "At end", "rules": rules})[0] == 201
    assert call(lab, "tess", "PUT", "/api/competitions/atend/solution", raw=solution.encode(),
                content_type="text/csv")[0] == 200
    assert call(lab, "tess", "POST", "/api/competitions/atend/publish")[0] == 200
    for who in ("pat", "rob"):
        assert call(lab, who, "POST", "/api/competitions/atend/join")[0] == 200
    for who, seed in (("pat", 1), ("pat", 2), ("rob", 3)):
        status, body = call(lab, who, "POST", "/api/competitions/atend/submissions",
                            raw=submission(ids, labels, 0.5, seed), content_type="text/csv")
        assert status == 201 and "private_score" not in body, body
    status, body = call(lab, "pat", "POST", "/api/competitions/atend/submissions",
                        raw=submission(ids, labels, 0.5, 4), content_type="text/csv")
    assert status == 429 and body["made"] == 2 and body["cap"] == 2, body
    assert "2 of its 2 submissions in all" in body["message"], body
    assert call(lab, "rob", "GET", "/api/competitions/atend/leaderboard?board=private")[0] == 403
    scan_for_leaks(lab, before_reveal=["atend"])

    while datetime.now(timezone.utc) < end + timedelta(seconds=1):
        threading.Event().wait(0.2)
    status, private = call(lab, "rob", "GET", "/api/competitions/atend/leaderboard?board=private")
    assert status == 200 and {r["team"] for r in private["rows"]} == {"pat", "rob"}, private
    status, shake = call(lab, "rob", "GET", "/api/competitions/atend/leaderboard?board=shakeup")
    assert status == 200 and len(shake["rows"]) == 2, shake
    status, mine = call(lab, "pat", "GET", "/api/competitions/atend/submissions")
    assert all(e.get("private_score") is not None for e in mine), mine
