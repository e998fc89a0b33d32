"""Checks answers of the real server against its own OpenAPI document
(`/api/swagger.json`) with openapi-core from PyPI. The tests' HTTP helpers
(`test_gateway.api`, `test_competitions.call`) pass every answer they get
through `check`, so the whole suite's traffic (kernels, assignments,
competitions, ops) keeps the document true, success and error alike."""

import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.testing import MockRequest, MockResponse

_specs = {}  # by server
_parsed = {}  # by document: every server of one build serves the same
_lock = threading.Lock()


def prepare(base):
    """Reads and parses the server's document now (a new server on `base`),
    so that the first check of a test that races the server does not spend
    its time parsing."""
    with _lock:
        _specs.pop(base, None)
    _spec(base)


def _catch_alls(doc):
    """Patterns of the paths whose last parameter may hold `/` (the
    document says so in its description), and their templates."""
    out = []
    for path, item in doc["paths"].items():
        m = re.fullmatch(r"(.*)/{([^}/]+)}", path)
        if not m:
            continue
        params = [p for op in item.values() if isinstance(op, dict)
                  for p in op.get("parameters", []) if p.get("in") == "path" and p["name"] == m.group(2)]
        if any("may hold `/`" in p.get("description", "") for p in params):
            prefix = re.sub(r"{[^}/]+}", "[^/]+", re.escape(m.group(1)).replace(r"\{", "{").replace(r"\}", "}"))
            out.append(re.compile(prefix + "/(.+)"))
    return out


def _spec(base):
    """The server's document, or None for a server that is not ours (the
    tests talk to stock Jupyter Server too); test_openapi.py checks that
    ours always serves it."""
    with _lock:
        if base not in _specs:
            try:
                with urllib.request.urlopen(base + "/api/swagger.json", timeout=30) as r:
                    raw = r.read()
                doc = json.loads(raw)
                if doc.get("info", {}).get("title") != "Academy Lab":
                    _specs[base] = None
                else:
                    if raw not in _parsed:
                        _parsed[raw] = (OpenAPI.from_dict(doc), _catch_alls(doc))
                    _specs[base] = _parsed[raw]
            except (urllib.error.HTTPError, ValueError):
                _specs[base] = None
        return _specs[base]


def _validate(spec, base, method, path, query, status, content_type, raw, body):
    request = MockRequest(base, method.lower(), path, args=query, data=body,
                          content_type="application/json")
    response = MockResponse(raw, status_code=status, content_type=content_type)
    spec.validate_response(request, response)


def check(url, method, status, content_type, raw, body=None):
    """Raises AssertionError when the answer `status`/`raw` to `method url`
    is not one the document gives for that operation."""
    parts = urllib.parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    spec = _spec(base)
    if spec is None:
        return
    content_type = (content_type or "").split(";")[0].strip() or "application/json"
    textual = content_type.startswith(("text/", "application/yaml", "application/openmetrics"))
    if isinstance(raw, str) and not textual:
        raw = raw.encode()
    elif isinstance(raw, bytes) and textual:
        raw = raw.decode()
    query = dict(urllib.parse.parse_qsl(parts.query))
    # A path parameter that holds `/` (a file's path in the contents API):
    # the document's template matches one segment, as OpenAPI's do, so the
    # rest of the path is matched as that one parameter, its `/` encoded as
    # `%2F` (which the server reads the same).
    spec, catch_alls = spec
    tries = [parts.path]
    for pattern in catch_alls:
        m = pattern.fullmatch(parts.path)
        if m and "/" in m.group(1):
            tries.append(parts.path[:m.start(1)] + m.group(1).replace("/", "%2F"))
    try:
        for i, path in enumerate(tries):
            try:
                _validate(spec, base, method, path, query, status, content_type, raw, body)
                break
            except PathNotFound:
                if i == len(tries) - 1:
                    raise
    except Exception as e:  # noqa: BLE001 (openapi-core's error names the mismatch)
        shown = raw[:300] if raw is not None else raw
        raise AssertionError(f"the answer to {method} {parts.path} is not as /api/swagger.json says: "
                             f"{status} {content_type} {shown!r}\n  {e!r}: {e.__cause__!r}") from e
