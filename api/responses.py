"""What each kind of route answers besides its success, declared once for the OpenAPI document.

Every refusal of the API is a problem document (``application/problem+json``, :mod:`api.problems`); the routes'
decorators name the statuses they can answer with these helpers instead of each writing its own, so the document
lists every status and content type the API really answers (the contract test, ``tests/contract``, checks it):

- :data:`EDGE`: what any route can answer before its handler runs (:mod:`api.guard`): 400 (a NUL in the path or
  query, a ``content-length`` that is not a number, a JSON body labctl refuses), 401 (a bearer token that is
  missing where one is needed, or unknown, expired or revoked wherever one is sent), 413 (a body over
  ``LABCTL_MAX_BODY_BYTES``) and 503 (the store did not answer);
- :data:`TOKEN`: a route of the role matrix: :data:`EDGE`, 403 (the token's role may not call it) and 422 (a body
  or parameter that is not valid);
- :func:`problems` for the statuses a route adds (404, 409, 503 ...), :func:`html` for a browser's pages (LTI),
  :func:`text` for a download or a text format (a kubeconfig, Prometheus metrics), :func:`redirect` for a
  redirection, :func:`merge` to join them where one status has two content types.

The problem schema is inlined (no ``$ref``), so each entry stands alone wherever it is used.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi.responses import PlainTextResponse

PROBLEM_JSON: Final = "application/problem+json"
YAML: Final = "application/yaml"
PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4"

Responses = dict[int | str, dict[str, Any]]

PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; a 422 adds `errors` (one per field), a 503 a `Retry-After` header",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "https://labctl.dev/problems/<slug>"},
        "title": {"type": "string", "description": "the HTTP status phrase"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong and what to do, for a person"},
        "instance": {"type": "string", "description": "the path that was called"},
        "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"],
                                              "properties": {"field": {"type": "string"},
                                                             "message": {"type": "string"}}}},
    },
    "additionalProperties": True,
}

WHY: Final[dict[int, str]] = {
    400: "refused before it was read: a NUL character in the path or query, a content-length that is not a number, "
         "or a JSON body too deep, with a NUL character or NaN",
    401: "no bearer token where one is needed, or one that is unknown, expired or revoked (`WWW-Authenticate: "
         "Bearer`)",
    403: "the token's role may not call this route (the role matrix), or the request may not do this",
    404: "no such resource, or not the caller's (a learner sees only its own sessions)",
    409: "the resource is busy (another command holds it: try again) or its state does not allow this",
    413: "the body is larger than LABCTL_MAX_BODY_BYTES",
    422: "a body or parameter that is not valid (`errors` names each field), or a request the service cannot "
         "accept as it is",
    502: "another system (an LMS) refused or failed",
    503: "a backend (the store, the cluster, a cloud) did not answer, or a feature is not configured; "
         "`Retry-After` says when to try again",
}

RETRY_AFTER: Final = {"Retry-After": {"description": "seconds to wait before trying again",
                                      "schema": {"type": "integer", "minimum": 1}}}


def problems(*statuses: int, **why: str) -> Responses:
    """Problem-document answers for ``statuses``; ``why`` (``s404="..."``) overrides a status's description."""
    out: Responses = {}
    for status in statuses:
        entry: dict[str, Any] = {"description": why.get(f"s{status}", WHY[status]),
                                 "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}}
        if status == 503:
            entry["headers"] = RETRY_AFTER
        out[status] = entry
    return out


def html(*statuses: int, description: str) -> Responses:
    """Pages for a person's browser (``text/html``)."""
    return {status: {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}
            for status in statuses}


def text(status: int, media_type: str, description: str) -> Responses:
    """A text body that is not JSON: a download, Prometheus metrics."""
    return {status: {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}}


def redirect(status: int, description: str) -> Responses:
    """A redirection, with the ``Location`` it sends the browser to."""
    return {status: {"description": description,
                     "headers": {"Location": {"description": "where to go", "schema": {"type": "string"}}}}}


def merge(*parts: Responses) -> Responses:
    """One set of responses from several; a status named twice keeps every content type of both."""
    out: Responses = {}
    for part in parts:
        for status, entry in part.items():
            if status not in out:
                out[status] = {**entry, "content": dict(entry.get("content", {}))}
                continue
            held = out[status]
            held["content"] = {**held.get("content", {}), **entry.get("content", {})}
            held["description"] = f"{held['description']}; or {entry['description']}"
            held["headers"] = {**held.get("headers", {}), **entry.get("headers", {})}
    for entry in out.values():  # an empty content map says "no body", so keep none where none was declared
        for key in ("content", "headers"):
            if key in entry and not entry[key]:
                del entry[key]
    return out


EDGE: Final[Responses] = problems(400, 401, 413, 503)
TOKEN: Final[Responses] = problems(400, 401, 403, 413, 422, 503)


class YamlResponse(PlainTextResponse):
    """A YAML download (a kubeconfig)."""

    media_type = YAML
