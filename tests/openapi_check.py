"""Checks answers of the real server against its own OpenAPI document
(`/api/swagger.json`) with openapi-core from PyPI. The tests' HTTP helpers
(`test_gateway.api`, `test_competitions.call`) pass every answer they get
through `check`, so the whole suite's traffic (kernels, assignments,
competitions, ops) keeps the document true, success and error alike."""

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

_specs = {}
_lock = threading.Lock()


def _spec(base):
    """The server's document, or None for a server that is not ours (the
    tests talk to stock Jupyter Server too); test_openapi.py checks that
    ours always serves it."""
    with _lock:
        if base not in _specs:
            try:
                with urllib.request.urlopen(base + "/api/swagger.json", timeout=30) as r:
                    doc = json.loads(r.read())
                _specs[base] = OpenAPI.from_dict(doc) if doc.get("info", {}).get("title") == "Academy Lab" else None
            except (urllib.error.HTTPError, ValueError):
                _specs[base] = None
        return _specs[base]


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
    request = MockRequest(base, method.lower(), parts.path,
                          args=dict(urllib.parse.parse_qsl(parts.query)),
                          data=body, content_type="application/json")
    response = MockResponse(raw, status_code=status, content_type=content_type)
    try:
        spec.validate_response(request, response)
    except Exception as e:  # noqa: BLE001 (openapi-core's error names the mismatch)
        shown = raw[:300] if raw is not None else raw
        raise AssertionError(f"the answer to {method} {parts.path} is not as /api/swagger.json says: "
                             f"{status} {content_type} {shown!r}\n  {e!r}: {e.__cause__!r}") from e
