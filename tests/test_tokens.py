"""Issue 17's personal API tokens and browser sessions, against the real
`lab serve`: a token made through the API works from stock
`jupyter server --gateway-url`, is listed with its last use (never the
token itself), expires, and is revoked; a browser session ends after its
idle timeout and its absolute lifetime (`[login]` in lab.toml, short here),
and ops list a user's tokens and end their sessions.
"""

import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest

from test_gateway import LAB, VENV_DATA, api, free_port, start_lab
from test_enrolment import login_cookie, status_with_cookie, wait_until


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-tokens")
    (data / "lab.toml").write_text('[login]\nsession_lifetime = "6s"\nsession_idle = "3s"\n'
                                   'token_max_lifetime = "30d"\n')
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    port = free_port()
    proc, admin, _ = start_lab(data, port, env)
    url = f"http://127.0.0.1:{port}"
    assert api(url, "/api/admin/users", admin, "POST", {"users": [{"name": "tess"}, {"name": "ugo"}]})[0] == 200
    tess = subprocess.run([str(LAB), "token", "create", "tess", "--data-dir", str(data)],
                          capture_output=True, text=True, check=True).stdout.strip()
    yield {"url": url, "admin": admin, "data": data, "tess": tess}
    proc.terminate()
    proc.wait(timeout=30)


def test_a_personal_token_works_from_jupyter_server_is_listed_and_revoked(lab, tmp_path):
    url, tess = lab["url"], lab["tess"]
    status, made = api(url, "/api/tokens", tess, "POST", {"label": "jupyterlab on my laptop", "expires_in": "7d"})
    assert status == 201, made
    token = made["token"]
    assert made["label"] == "jupyterlab on my laptop" and made["kind"] == "api" and made["expires"], made

    port = free_port()
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    proc = subprocess.Popen(
        [str(jupyter), "server", f"--gateway-url={url}", f"--GatewayClient.auth_token={token}",
         "--IdentityProvider.token=js", f"--port={port}", "--no-browser", "--allow-root",
         f"--ServerApp.root_dir={tmp_path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "rt")))
    js = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return api(js, "/api/kernelspecs", "js")[0] == 200
            except (urllib.error.URLError, ConnectionError):
                return False
        wait_until("jupyter server answers", up, timeout=60)
        status, kernel = api(js, "/api/kernels", "js", "POST", {"name": "academy-candle"})
        assert status == 201, kernel
        # The kernel is tess's on our gateway: the token acted as her.
        status, mine = api(url, "/api/kernels", tess)
        assert status == 200 and kernel["id"] in [k["id"] for k in mine]

        status, listed = api(url, "/api/tokens", tess)
        entry = next(t for t in listed if t["id"] == made["id"])
        assert entry["last_used"] and "token" not in entry, entry
        assert token not in str(listed)

        assert api(js, f"/api/kernels/{kernel['id']}", "js", "DELETE")[0] == 204
        # Revoked: the next request through jupyter server is refused by us.
        assert api(url, f"/api/tokens/{made['id']}", tess, "DELETE")[0] == 204
        assert api(url, "/api/kernels", token)[0] == 401
        status, _ = api(js, "/api/kernels", "js", "POST", {"name": "academy-candle"})
        assert status >= 400
        assert api(url, "/api/kernels", tess) == (200, [])
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_tokens_expire_and_are_only_their_owners_to_revoke(lab):
    url, tess = lab["url"], lab["tess"]
    status, short = api(url, "/api/tokens", tess, "POST", {"label": "short", "expires_in": "2s"})
    assert status == 201 and api(url, "/api/me", short["token"])[0] == 200
    wait_until("the token expires", lambda: api(url, "/api/me", short["token"])[0] == 401, timeout=10)
    assert short["id"] not in [t["id"] for t in api(url, "/api/tokens", tess)[1]]

    for bad, why in [({"label": ""}, "label"), ({"label": "x", "expires_in": "off"}, "every token expires"),
                     ({"label": "x", "expires_in": "400d"}, "at most 30 days here"), ({"label": "x", "scope": 1}, "expected")]:
        status, err = api(url, "/api/tokens", tess, "POST", bad)
        assert status == 400 and why in err["message"], (bad, err)

    status, made = api(url, "/api/tokens", tess, "POST", {"label": "ci"})
    assert status == 201
    ugo = subprocess.run([str(LAB), "token", "create", "ugo", "--data-dir", str(lab["data"])],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert api(url, f"/api/tokens/{made['id']}", ugo, "DELETE")[0] == 404
    assert made["id"] not in [t["id"] for t in api(url, "/api/tokens", ugo)[1]]
    assert api(url, "/api/me", made["token"])[0] == 200


def test_a_session_ends_when_idle_or_at_its_lifetime_and_ops_can_end_it(lab):
    url, data, admin = lab["url"], lab["data"], lab["admin"]
    # Idle: no request for 3 s.
    idle = login_cookie(url, data, "tess")
    assert status_with_cookie(url, idle) == 200
    wait_until("the idle session ends", lambda: status_with_cookie_later(url, idle, 3.2) == 401, timeout=10)
    # Busy: a request every second still ends at 6 s after sign-in.
    started = time.monotonic()
    busy = login_cookie(url, data, "tess")
    while status_with_cookie(url, busy) == 200:
        assert time.monotonic() - started < 12, "the session outlived its lifetime"
        time.sleep(1)
    assert time.monotonic() - started > 5, "the busy session ended before its lifetime"

    # Ops see a user's sessions and tokens, and end the sessions only.
    cookie = login_cookie(url, data, "tess")
    status, listed = api(url, "/api/admin/users/tess/tokens", admin)
    assert status == 200 and {"session", "api"} <= {t["kind"] for t in listed}, listed
    status, ended = api(url, "/api/admin/users/tess/sessions", admin, "DELETE")
    assert status == 200 and ended["ended"] >= 1
    assert status_with_cookie(url, cookie) == 401
    assert api(url, "/api/me", lab["tess"])[0] == 200, "API tokens stay"
    assert api(url, "/api/admin/users/tess/sessions", lab["tess"], "DELETE")[0] == 403


def status_with_cookie_later(url, cookie, seconds):
    """The cookie's answer once `seconds` have passed without a request
    (what an idle timeout is about: time with nothing happening)."""
    time.sleep(seconds)
    return status_with_cookie(url, cookie)
