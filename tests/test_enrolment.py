"""Issue 17's bulk enrolment and deactivation, through the real `lab` CLI and
the real REST API of a running `lab serve`.

`lab user import` of 10,000 people (idempotent, with a dry run), the same
through `POST /api/admin/users`, and `lab user deactivate` (CLI, writing the
database under a running server) and `PATCH /api/admin/users/NAME` with
`active: false`: the user's token and browser session get 401 at once, their
running kernel is gone within a second, their queued start is cancelled,
their files stay; reactivation lets a new token in.
"""

import csv
import json
import os
import subprocess
import time
import urllib.request

import pytest

from test_gateway import LAB, VENV_DATA, api, free_port, start_lab


def lab_cli(*args, data, check=True):
    r = subprocess.run([str(LAB), *args, "--data-dir", str(data)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def write_people(path, people):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "email", "role", "group"])
        w.writerows(people)


def test_importing_ten_thousand_people_twice_changes_nothing_the_second_time(tmp_path):
    data = tmp_path / "data"
    people = [(f"p{i:05}", f"p{i:05}@uni.example", "trainer" if i % 100 == 0 else "engineer",
               f"cohort-{i % 20}") for i in range(10_000)]
    roster = tmp_path / "people.csv"
    write_people(roster, people)

    dry = lab_cli("user", "import", str(roster), "--dry-run", data=data)
    assert dry.stdout.splitlines()[-1] == "would add 10000, would change 0, unchanged 0 (dry run: nothing changed)"
    assert "+ p00100 (trainer, group cohort-0, p00100@uni.example)" in dry.stdout

    started = time.monotonic()
    first = lab_cli("user", "import", str(roster), data=data)
    took = time.monotonic() - started
    assert first.stdout.splitlines()[-1] == "add 10000, change 0, unchanged 0"
    print(f"imported 10,000 people in {took:.2f} s")
    second = lab_cli("user", "import", str(roster), data=data)
    assert second.stdout == "add 0, change 0, unchanged 10000\n"

    # One moved cohort, one promoted, one new: exactly those change.
    people[7] = (people[7][0], people[7][1], "engineer", "cohort-99")
    people[8] = (people[8][0], people[8][1], "ops", people[8][3])
    people.append(("newcomer", "", "", ""))
    write_people(roster, people)
    third = lab_cli("user", "import", str(roster), data=data)
    assert "~ p00007: group cohort-7 -> cohort-99" in third.stdout
    assert "~ p00008: role engineer -> ops" in third.stdout
    assert "+ newcomer (engineer, group -, -)" in third.stdout
    assert third.stdout.splitlines()[-1] == "add 1, change 2, unchanged 9998"

    # A bad list is refused whole, each problem by its line, and nothing changes.
    bad = tmp_path / "bad.csv"
    bad.write_text("name,role\nfresh,engineer\n../etc,engineer\np00001,superuser\n")
    r = lab_cli("user", "import", str(bad), data=data, check=False)
    assert r.returncode != 0
    assert "line 3: user name \"../etc\"" in r.stderr and "line 4: unknown role \"superuser\"" in r.stderr, r.stderr
    assert "nothing changed" in r.stderr
    again = lab_cli("user", "import", str(roster), data=data)
    assert again.stdout == "add 0, change 0, unchanged 10001\n", "the refused list added no one"


@pytest.fixture
def lab(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    port = free_port()
    proc, admin, _ = start_lab(data, port, env, "--gpus", "1x1 H100-80GB", "--queue-wait", "0")
    yield {"url": f"http://127.0.0.1:{port}", "admin": admin, "data": data}
    proc.terminate()
    proc.wait(timeout=30)


def test_ops_enrol_many_through_the_api_all_or_nothing(lab):
    url, admin = lab["url"], lab["admin"]
    users = [{"name": "ana", "email": "ana@gov.example", "role": "trainer", "group": "staff"},
             {"name": "ben", "group": "cohort-1"}]
    status, dry = api(url, "/api/admin/users", admin, "POST", {"users": users, "dry_run": True})
    assert status == 200 and dry["dry_run"] and [a["name"] for a in dry["added"]] == ["ana", "ben"], dry
    status, listed = api(url, "/api/admin/users", admin)
    assert "ana" not in [u["name"] for u in listed]

    status, done = api(url, "/api/admin/users", admin, "POST", {"users": users})
    assert status == 200 and len(done["added"]) == 2 and not done["dry_run"], done
    status, again = api(url, "/api/admin/users", admin, "POST", {"users": users})
    assert (again["added"], again["changed"], again["unchanged"]) == ([], [], 2)
    status, listed = api(url, "/api/admin/users", admin)
    ana = next(u for u in listed if u["name"] == "ana")
    assert (ana["email"], ana["role"], ana["group"], ana["active"]) == ("ana@gov.example", "trainer", "staff", True)

    # One bad person refuses the list, by place; an engineer may not enrol.
    status, err = api(url, "/api/admin/users", admin, "POST",
                      {"users": [{"name": "cy"}, {"name": "cy", "role": "engineer"}]})
    assert status == 400 and "person 2: \"cy\" is listed already (person 1)" in err["message"], err
    status, err = api(url, "/api/admin/users", admin, "POST", {"users": [{"name": "dee", "role": "root"}]})
    assert status == 400, err
    token = lab_cli("token", "create", "ben", data=lab["data"]).stdout.strip()
    status, err = api(url, "/api/admin/users", token, "POST", {"users": [{"name": "eve"}]})
    assert status == 403, err
    # Ops enrol, but only an admin makes, changes or deactivates an admin.
    assert api(url, "/api/admin/users/ben", admin, "PATCH", {"active": False})[0] == 200
    assert api(url, "/api/admin/users/ben", admin, "PATCH", {"active": True})[0] == 200
    assert api(url, "/api/admin/users", admin, "POST", {"users": [{"name": "olga", "role": "ops"}]})[0] == 200
    ops = lab_cli("token", "create", "olga", data=lab["data"]).stdout.strip()
    assert api(url, "/api/admin/users", ops, "POST", {"users": [{"name": "fay", "group": "cohort-1"}]})[0] == 200
    for users in ([{"name": "olga", "role": "admin"}], [{"name": "gil", "role": "admin"}],
                  [{"name": "admin", "role": "engineer"}]):
        status, err = api(url, "/api/admin/users", ops, "POST", {"users": users})
        assert status == 403 and "nothing changed" in err["message"], (users, err)
    assert api(url, "/api/admin/users/admin", ops, "PATCH", {"active": False})[0] == 403
    assert api(url, "/api/admin/users/admin/sessions", ops, "DELETE")[0] == 403
    # A refused change changes nothing, not even the fields beside the refused one.
    status, err = api(url, "/api/admin/users/olga", ops, "PATCH", {"group": "elsewhere", "active": False})
    assert status == 400 and "yourself" in err["message"], err
    assert api(url, "/api/admin/users/admin", ops, "PATCH", {"group": "elsewhere", "active": False})[0] == 403
    status, listed = api(url, "/api/admin/users", admin)
    roles = {u["name"]: (u["role"], u["active"]) for u in listed}
    assert roles["olga"] == ("ops", True) and roles["admin"] == ("admin", True) and "gil" not in roles
    assert not any(u["group"] == "elsewhere" for u in listed)
    assert not {"cy", "dee", "eve"} & set(roles)


def login_cookie(url, data, user):
    """A browser session of `user`: a one-time login code redeemed at
    `/api/login`, as the login page does; returns the cookie header."""
    code = lab_cli("token", "login-url", user, data=data).stdout.strip().split("code=")[1]
    req = urllib.request.Request(url + "/api/login", method="POST", data=f'{{"code": "{code}"}}'.encode(),
                                 headers={"Content-Type": "application/json", "Origin": url})
    with urllib.request.urlopen(req, timeout=30) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    return cookie


def status_with_cookie(url, cookie):
    req = urllib.request.Request(url + "/api/kernels", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_until(what, check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.mark.parametrize("how", ["api", "cli"])
def test_a_deactivated_user_is_locked_out_at_once_and_their_kernels_end(lab, how):
    url, admin, data = lab["url"], lab["admin"], lab["data"]
    assert api(url, "/api/admin/users", admin, "POST", {"users": [{"name": "leaver"}]})[0] == 200
    token = lab_cli("token", "create", "leaver", data=data).stdout.strip()
    cookie = login_cookie(url, data, "leaver")
    assert status_with_cookie(url, cookie) == 200
    status, _ = api(url, "/api/contents/keep.txt", token, "PUT",
                    {"type": "file", "format": "text", "content": "my work"})
    assert status == 201
    # A running kernel (the GPU) and a queued start behind it.
    status, running = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
    assert status == 201, running
    status, queued = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
    assert status == 202 and queued["execution_state"] == "queued", queued

    if how == "api":
        status, model = api(url, "/api/admin/users/leaver", admin, "PATCH", {"active": False})
        assert status == 200 and model["active"] is False and model["deactivated"], model
    else:
        out = lab_cli("user", "deactivate", "leaver", data=data).stdout
        assert "leaver is deactivated" in out
    # Locked out on the next request, whatever the credential.
    assert api(url, "/api/kernels", token)[0] == 401
    assert status_with_cookie(url, cookie) == 401
    # Their kernel is gone within a second (the CLI's change is seen by the
    # server's once-a-second check), and their queued start is cancelled.
    def gone():
        status, kernels = api(url, "/api/kernels", admin)
        return status == 200 and not {running["id"], queued["id"]} & {k["id"] for k in kernels}
    wait_until("the deactivated user's kernels end", gone, timeout=1.0 if how == "api" else 2.5)
    # No new token or login code while deactivated; their files stay.
    r = lab_cli("token", "create", "leaver", data=data, check=False)
    assert r.returncode != 0 and "deactivated" in r.stderr, r.stderr
    assert (data / "users" / "leaver" / "keep.txt").read_text() == "my work"

    # Reactivated: old credentials stay dead, a new token works.
    if how == "api":
        status, model = api(url, "/api/admin/users/leaver", admin, "PATCH", {"active": True})
        assert status == 200 and model["active"] is True, model
    else:
        assert "active again" in lab_cli("user", "reactivate", "leaver", data=data).stdout
    assert api(url, "/api/kernels", token)[0] == 401
    fresh = lab_cli("token", "create", "leaver", data=data).stdout.strip()
    status, kernels = api(url, "/api/kernels", fresh)
    assert status == 200 and kernels == []
    status, kept = api(url, "/api/contents/keep.txt", fresh)
    assert status == 200 and kept["content"] == "my work"


def test_the_ops_list_is_paged_searched_and_shows_kernels_and_gpu_hours(lab):
    url, admin = lab["url"], lab["admin"]
    people = [{"name": f"s{i:03}", "email": f"s{i:03}@uni.example", "group": "cohort-a" if i % 2 else "cohort_b"}
              for i in range(120)]
    assert api(url, "/api/admin/users", admin, "POST", {"users": people})[0] == 200
    token = lab_cli("token", "create", "s007", data=lab["data"]).stdout.strip()
    status, kernel = api(url, "/api/kernels", token, "POST", {"name": "academy-candle", "resources": {"gpus": 1}})
    assert status == 201, kernel

    def page(query=""):
        req = urllib.request.Request(f"{url}/api/admin/users{query}", headers={
            "Authorization": f"token {admin}", "Accept": "application/jupyterhub-pagination+json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    first = page()
    assert first["_pagination"]["total"] == 121 and len(first["items"]) == 50  # and the admin
    assert first["_pagination"]["next"] == {"offset": 50, "limit": 50}
    last = page("?offset=100&limit=50")
    assert [u["name"] for u in last["items"]][-1] == "s119" and last["_pagination"]["next"] is None
    # A search by name, e-mail or group, literal and in any case.
    assert page("?search=S00")["_pagination"]["total"] == 10
    assert page("?search=cohort_b")["_pagination"]["total"] == 60
    s7 = page("?search=s007")["items"][0]
    assert s7["kernels"] == 1 and s7["last_seen"] and s7["email"] == "s007@uni.example", s7
    assert s7["gpu_hours"] >= 0 and page("?search=s008")["items"][0]["last_seen"] is None
    # Without the media type: the plain list (everyone), as before.
    status, everyone = api(url, "/api/admin/users", admin)
    assert status == 200 and len(everyone) == 121
    status, err = api(url, "/api/admin/users?period=year", admin)
    assert status == 400 and "invalid query" in err["message"]
    assert api(url, f"/api/kernels/{kernel['id']}", token, "DELETE")[0] == 204
