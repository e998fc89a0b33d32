"""Issue 17's described API: `lab serve` serves an OpenAPI document at
`/api/swagger.json` and `/api/swagger.yaml` (where Kernel Gateway serves its
own), generated from the handlers. The document is checked by
openapi-spec-validator from PyPI; then every operation it lists is called on
the real server, and each answer (success or error) is checked against the
document by openapi-core: the route exists with that method, its status is
one the document gives, and its JSON body has the documented shape.
"""

import json
import os
import pathlib
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_spec_validator import validate

import openapi_check
from test_gateway import ROOT, VENV_DATA, free_port, start_lab

KG_SWAGGER = (ROOT.parent / "shared" / "reference" / "jupyter-gateway-api"
              / "kernel-gateway-3.0.1" / "kg_swagger.yaml")
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    data = tmp_path_factory.mktemp("lab-openapi")
    env = dict(os.environ, JUPYTER_PATH=str(VENV_DATA), LAB_LOG="warn")
    port = free_port()
    proc, admin, _ = start_lab(data, port, env)
    yield {"url": f"http://127.0.0.1:{port}", "admin": admin}
    proc.terminate()
    proc.wait(timeout=30)


def fetch(url, path, token=None, method="GET", body=None, content_type="application/json"):
    """(status, content type, raw body) of one request."""
    headers = {"Authorization": f"token {token}"} if token else {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def document(lab):
    status, kind, raw = fetch(lab["url"], "/api/swagger.json")
    assert status == 200 and kind.startswith("application/json"), (status, kind)
    return json.loads(raw)


def test_the_document_is_valid_openapi_in_json_and_yaml(lab):
    doc = document(lab)
    validate(doc)  # raises with the first problem
    assert doc["openapi"].startswith("3.1")
    status, kind, raw = fetch(lab["url"], "/api/swagger.yaml")
    assert status == 200 and kind.startswith("application/yaml"), (status, kind)
    assert yaml.safe_load(raw) == doc

    ops = [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items() if m in METHODS]
    assert len(ops) >= 100, len(ops)
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op.get("tags"), where
        assert "default" in op["responses"], where
        # Every `{param}` of the path is declared, and nothing is left of
        # axum's `{*rest}` syntax.
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert set(re.findall(r"{([^}]+)}", path)) == declared, where
        assert not any(c in path for c in "*:"), where
    # Public routes say so; the rest need one of the three ways in.
    public = {(m, p) for m, p, op in ops if op.get("security") == [{}]}
    assert ("get", "/healthz") in public and ("post", "/api/login") in public
    assert ("get", "/api/kernels") not in public and ("post", "/api/admin/users") not in public
    assert {k for s in doc["security"] for k in s} == {"token", "bearer", "cookie"}


def test_every_kernel_gateway_route_is_described(lab):
    """The routes Kernel Gateway 3.0.1's own document lists are in ours
    (parameter names aside), so a tool written against it finds them."""
    if not KG_SWAGGER.exists():
        pytest.skip(f"{KG_SWAGGER} is not here (it is in CI's shared/)")
    kg = yaml.safe_load(KG_SWAGGER.read_text())
    ours = document(lab)
    shape = lambda p: re.sub(r"{[^}]+}", "{}", p)  # noqa: E731
    have = {(m, shape(p)) for p, item in ours["paths"].items() for m in item if m in METHODS}
    # KG's document lists interrupt and restart as `/kernels/…`, but KG
    # serves them under `/api/kernels/…` (as the recorded answers show).
    want = {(m, shape(p if p.startswith("/api") else "/api" + p))
            for p, item in kg["paths"].items() for m in item if m in METHODS}
    assert want and want <= have, sorted(want - have)


def concrete(path, values, params):
    """`path` with its parameters filled: from `values`, else a value of the
    declared type that names nothing."""
    kinds = {p["name"]: p["schema"].get("type") for p in params if p["in"] == "path"}

    def fill(m):
        name = m.group(1)
        missing = "987654321" if kinds.get(name) == "integer" else "nothing-here"
        return urllib.parse.quote(values.get(name, missing), safe="/")
    return re.sub(r"{([^}]+)}", fill, path)


def test_every_operation_answers_as_the_document_says(lab):
    """Each documented operation is called; openapi-core checks the answer
    (status and body) against the document. Operations with things to act on
    are called on real ones (a kernel, a session, files, a token, a group),
    the rest on names that do not exist, whose 404 must be the documented
    error."""
    url, admin = lab["url"], lab["admin"]
    doc = document(lab)
    spec = OpenAPI.from_dict(doc)

    # Real things for the common routes.
    status, _, raw = fetch(url, "/api/kernels", admin, "POST", {"name": "academy-candle"})
    assert status == 201, raw
    kernel = json.loads(raw)["id"]
    status, _, raw = fetch(url, "/api/contents/notes.txt", admin, "PUT",
                           {"type": "file", "format": "text", "content": "hello"})
    assert status == 201, raw
    status, _, raw = fetch(url, "/api/tokens", admin, "POST", {"label": "for the tour"})
    assert status == 201, raw
    token_id = json.loads(raw)["id"]
    # A file's checkpoints answer through the contents routes, in their own shapes.
    for method, path, want in [("POST", "/api/contents/notes.txt/checkpoints", 201),
                               ("GET", "/api/contents/notes.txt/checkpoints", 200)]:
        status, kind, raw = fetch(url, path, admin, method)
        assert status == want, raw
        openapi_check.check(url + path, method, status, kind, raw)
    assert json.loads(raw) and "id" in json.loads(raw)[0], raw
    values = {"name": "academy-candle", "resource": "logo-64x64.png", "id": kernel,
              "path": "notes.txt", "file": "app.js"}

    # Bodies that make the common writes succeed; the rest get `{}`.
    bodies = {
        ("post", "/api/kernels"): {"name": "academy-candle"},
        ("post", "/api/sessions"): {"path": "tour.ipynb", "type": "notebook", "kernel": {"name": "academy-candle"}},
        ("put", "/api/contents/{path}"): {"type": "file", "format": "text", "content": "again"},
        ("post", "/api/contents"): {"type": "file", "ext": ".txt"},
        ("post", "/api/tokens"): {"label": "another"},
        ("put", "/api/admin/groups/{name}"): {"max_gpus": 0},
        ("post", "/api/admin/users"): {"users": [{"name": "tourist"}], "dry_run": True},
        ("patch", "/api/admin/users/{name}"): {"active": True},
        ("post", "/api/login"): {"token": admin, "check": True},
    }
    # Run last: these end what the others use.
    last = {("delete", "/api/kernels/{id}"), ("delete", "/api/sessions/{id}"), ("delete", "/api/contents/{path}"),
            ("patch", "/api/contents/{path}"), ("post", "/api/logout")}
    # Answered by a websocket upgrade or a redirect, checked elsewhere
    # (tests/test_gateway.py, tests/ui/sso.test.mjs).
    skip = {("get", "/api/kernels/{id}/channels")}
    ops = [(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS]
    ops.sort(key=lambda op: op in last)

    checked, successes, wrong = 0, 0, []
    for method, path in ops:
        if (method, path) in skip:
            continue
        vals = dict(values)
        if path.startswith("/api/admin/groups/"):
            vals["name"] = "tour-group"
        if path.startswith("/api/admin/users/"):
            vals["name"] = "tourist"
        if path.startswith("/api/sessions/"):
            vals["id"] = session_id(url, admin)
        if path.startswith("/api/tokens/"):
            vals["id"] = token_id
        if path.startswith("/login/oidc/"):
            vals["name"] = "no-such-provider"
        if path.startswith(("/api/courses/", "/api/competitions/", "/api/submissions/")):
            vals = {}  # nothing of these exists: each must answer the documented error
        real = concrete(path, vals, doc["paths"][path][method].get("parameters", []))
        body = bodies.get((method, path), {} if method in ("post", "put", "patch") else None)
        status, kind, raw = fetch(url, real, admin, method.upper(), body)
        where = f"{method.upper()} {real} -> {status} {raw[:300]!r}"
        assert status != 405, where
        if status == 404:
            assert b"no such route" not in raw, where
        content_type = kind.split(";")[0].strip() or "application/json"
        request = MockRequest(url, method, real, path_pattern=path,
                              headers={"Authorization": f"token {admin}"},
                              data=None if body is None else json.dumps(body).encode(),
                              content_type="application/json")
        # openapi-core reads JSON from bytes, other text only as `str`.
        textual = content_type.startswith(("text/", "application/yaml", "application/openmetrics"))
        response = MockResponse(raw.decode() if textual else raw, status_code=status,
                                content_type=content_type)
        try:
            spec.validate_response(request, response)
        except Exception as e:  # noqa: BLE001 (openapi-core's error names the mismatch)
            wrong.append(f"{where}\n  {e!r}: {getattr(e, '__cause__', None)!r}")
        checked += 1
        successes += status < 400
    assert not wrong, "\n".join(wrong)
    assert checked >= 100, checked
    # The common routes really ran, not just failed in a documented way.
    assert successes >= 40, successes


def session_id(url, admin):
    status, _, raw = fetch(url, "/api/sessions", admin)
    sessions = json.loads(raw)
    if sessions:
        return sessions[0]["id"]
    status, _, raw = fetch(url, "/api/sessions", admin, "POST",
                           {"path": f"s-{uuid.uuid4().hex[:6]}.ipynb", "type": "notebook",
                            "kernel": {"name": "academy-candle"}})
    assert status == 201, raw
    return json.loads(raw)["id"]


def test_the_suites_answer_check_refuses_an_answer_the_document_does_not_give(lab):
    """`openapi_check.check`, which every test's HTTP helper runs, can fail:
    a list where an object is documented, an undocumented status, and a
    malformed error are each refused; the real answers pass."""
    url = lab["url"]
    status, kind, raw = fetch(url, "/api/kernels", lab["admin"])
    openapi_check.check(url + "/api/kernels", "GET", status, kind, raw)
    for wrong in [(200, b'{"kernels": []}'), (201, b"[]"), (404, b'{"detail": "gone"}')]:
        with pytest.raises(AssertionError, match="not as /api/swagger.json says"):
            openapi_check.check(url + "/api/kernels", "GET", wrong[0], "application/json", wrong[1])
    # A route the document does not have is refused, even below a described
    # one; only a parameter that may hold `/` takes the rest of a path.
    gone = b'{"reason": "Not Found", "message": "no such route"}'
    with pytest.raises(AssertionError, match="not as /api/swagger.json says"):
        openapi_check.check(url + f"/api/kernels/{uuid.uuid4()}/elsewhere", "GET", 404, "application/json", gone)
    openapi_check.check(url + "/api/contents/a/b/c.txt", "GET", 404, "application/json", gone)


def test_axums_own_refusals_are_json_errors_with_their_headers(lab):
    """A method a route does not have, and a path segment that is not the
    number the route takes, are refused by axum itself; they come as the
    documented JSON error like every other, and a 405 keeps its `Allow`."""
    url, admin = lab["url"], lab["admin"]
    req = urllib.request.Request(url + "/api/status", method="DELETE",
                                 headers={"Authorization": f"token {admin}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 405 and e.value.headers.get("Content-Type") == "application/json"
    assert "GET" in e.value.headers.get("Allow", ""), dict(e.value.headers)
    assert json.loads(e.value.read())["reason"] == "Method Not Allowed"
    status, kind, raw = fetch(url, "/api/competitions/x/submissions/not-a-number", admin, "DELETE")
    assert status == 400 and kind == "application/json", (status, kind, raw)
    assert "not-a-number" in json.loads(raw)["message"], raw
