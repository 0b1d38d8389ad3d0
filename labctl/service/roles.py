"""Who may do what: the role matrix of the HTTP API, as data.

Every route of the API is a key ``"METHOD /path"`` of :data:`MATRIX`; its value is the tuple of roles whose bearer
token may call it, :data:`PUBLIC` (no token: health, readiness, metrics, the API docs, the page's static files),
:data:`SIGNED` (no token: a Standard Webhooks signature authenticates the request), :data:`LTI` (no token: a browser
an LMS sent, for the login initiation and the launch, whose signed ``id_token`` authenticates it; answered with HTML
pages) or :data:`PAGE` (no token: the learner page, authenticated by its signed link and then by the page cookie
scoped to one session, which allows the learner's own actions on that session only; a bearer token opens no page)
or :data:`DASHBOARD` (no token: the instructor dashboard, authenticated by its cookie, a signed pass naming the
instructor token that signed in, re-checked against the store on every request; a bearer token opens no dashboard).
The API enforces it with one dependency that looks the matched route up here; a route with no entry is refused to
every role (fail closed), and the route-walking test fails for it, so a new route cannot ship without a decision
here. ``docs/SECURITY.md`` shows the same table.

The matrix says which *kinds* of caller may use a route. What a caller may do with a particular session is decided
by the use cases: a learner acts only for its own learner id (others' sessions answer 404), and a platform token
reads the credentials only of sessions it started (:func:`may_read_credentials`).
"""

from __future__ import annotations

import re
from typing import Final, Literal

Role = Literal["instructor", "platform", "exam", "learner"]
ROLES: Final[tuple[Role, ...]] = ("instructor", "platform", "exam", "learner")

PUBLIC: Final = "public"
SIGNED: Final = "signed"
LTI: Final = "lti"
PAGE: Final = "page"
DASHBOARD: Final = "dashboard"
Rule = tuple[Role, ...] | Literal["public", "signed", "lti", "page", "dashboard"]

INSTRUCTOR: Final[tuple[Role, ...]] = ("instructor",)
CATALOG_READERS: Final[tuple[Role, ...]] = ("instructor", "platform", "learner")
SESSION_ACTORS: Final[tuple[Role, ...]] = ("instructor", "platform", "learner")
GRADE_READERS: Final[tuple[Role, ...]] = ("instructor", "platform", "exam", "learner")

MATRIX: Final[dict[str, Rule]] = {
    # health, metrics and the API's own documentation
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /openapi.json": PUBLIC,
    "GET /docs": PUBLIC,
    "GET /docs/oauth2-redirect": PUBLIC,
    "GET /redoc": PUBLIC,
    # the catalog
    "GET /v1/labs": CATALOG_READERS,
    "GET /v1/labs/{lab_id}": CATALOG_READERS,
    "GET /v1/labs/{lab_id}/pool": INSTRUCTOR,  # the course's warm sandboxes and their idle cost
    "GET /v1/clusters": INSTRUCTOR,  # the clusters' capacity and sessions: operators' business, no learner's
    # sessions
    "POST /v1/sessions": SESSION_ACTORS,
    "POST /v1/sessions/grants": INSTRUCTOR,
    "GET /v1/sessions": GRADE_READERS,  # exam tokens see the fields a grade needs, not cost or namespace
    "GET /v1/sessions/{session_id}": GRADE_READERS,
    "GET /v1/sessions/{session_id}/kubeconfig": SESSION_ACTORS,  # platform: only sessions it started
    "GET /v1/sessions/{session_id}/events": SESSION_ACTORS,
    "GET /v1/sessions/{session_id}/metrics": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/extend": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/suspend": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/resume": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/reset": SESSION_ACTORS,
    "DELETE /v1/sessions/{session_id}": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/budget-requests": SESSION_ACTORS,
    "POST /v1/sessions/{session_id}/budget-requests/approve": INSTRUCTOR,
    "POST /v1/sessions/{session_id}/budget-requests/deny": INSTRUCTOR,
    # submissions and grades
    "POST /v1/sessions/{session_id}/submissions": GRADE_READERS,
    "GET /v1/sessions/{session_id}/submissions": GRADE_READERS,
    "GET /v1/submissions/{submission_id}": GRADE_READERS,
    # the instructor's views and tools
    "GET /v1/costs": INSTRUCTOR,
    "POST /v1/tokens": INSTRUCTOR,
    "GET /v1/tokens": INSTRUCTOR,
    "DELETE /v1/tokens/{token_id}": INSTRUCTOR,
    "POST /v1/webhooks/endpoints": INSTRUCTOR,
    "GET /v1/webhooks/endpoints": INSTRUCTOR,
    "GET /v1/webhooks/endpoints/{endpoint_id}": INSTRUCTOR,
    "POST /v1/webhooks/endpoints/{endpoint_id}/rotate": INSTRUCTOR,
    "POST /v1/webhooks/endpoints/{endpoint_id}/disable": INSTRUCTOR,
    "POST /v1/webhooks/endpoints/{endpoint_id}/enable": INSTRUCTOR,
    "GET /v1/webhooks/deliveries": INSTRUCTOR,
    "POST /v1/webhooks/deliveries/{delivery_id}/redeliver": INSTRUCTOR,
    # the exam platform's signed requests
    "POST /v1/hooks/exam": SIGNED,
    # LTI 1.3: the LMS sends the browser (login and keys are public by the protocol; the launch carries its id_token)
    "GET /lti/login": LTI,
    "POST /lti/login": LTI,
    "POST /lti/launch": LTI,
    "GET /lti/jwks.json": PUBLIC,
    # the learner page: the signed link, then the page cookie (api/routers/pages.py)
    "GET /learn/open": PAGE,
    "GET /learn/{session_id}": PAGE,
    "GET /learn/{session_id}/state": PAGE,
    "GET /learn/{session_id}/kubeconfig": PAGE,
    "POST /learn/{session_id}/extend": PAGE,
    "POST /learn/{session_id}/suspend": PAGE,
    "POST /learn/{session_id}/resume": PAGE,
    "POST /learn/{session_id}/budget-requests": PAGE,
    "POST /learn/{session_id}/submissions": PAGE,
    "GET /static/{asset}": PUBLIC,
    # the instructor dashboard: a sign-in with an instructor token, then the dashboard cookie (api/routers/dashboard.py)
    "GET /dashboard/login": DASHBOARD,
    "POST /dashboard/login": DASHBOARD,
    "POST /dashboard/logout": DASHBOARD,
    "GET /dashboard": DASHBOARD,
    "GET /dashboard/state": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/extend": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/suspend": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/resume": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/reset": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/stop": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/budget/approve": DASHBOARD,
    "POST /dashboard/sessions/{session_id}/budget/deny": DASHBOARD,
    "POST /dashboard/deliveries/{delivery_id}/redeliver": DASHBOARD,
}


def route_key(method: str, path: str) -> str:
    """The matrix key of a route: ``"GET /v1/sessions/{session_id}"``."""
    return f"{method.upper()} {path}"


def rule_for(method: str, path: str) -> Rule | None:
    """The rule of a route, or ``None`` when the matrix has no entry for it (then nobody may call it)."""
    return MATRIX.get(route_key(method, path))


def _pattern(path: str) -> re.Pattern[str]:
    """``/v1/sessions/{session_id}`` -> a pattern matching ``/v1/sessions/<any one segment>``."""
    segments = ("[^/]+" if part.startswith("{") else re.escape(part) for part in path.split("/"))
    return re.compile("^" + "/".join(segments) + "$")


_TEMPLATES: Final = [(key.split(" ", 1)[0], _pattern(key.split(" ", 1)[1]), rule) for key, rule in MATRIX.items()]


def rule_for_request(method: str, path: str) -> Rule | None:
    """The rule of the route template a concrete request path falls under (``None``: no entry, or no such route)."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    for template_method, pattern, rule in _TEMPLATES:
        if template_method == method and pattern.match(path):
            return rule
    return None


def needs_token(rule: Rule | None) -> bool:
    """Whether a request must carry a bearer token before anything else happens (unknown routes too: fail closed)."""
    return rule not in (PUBLIC, SIGNED, LTI, PAGE, DASHBOARD)


def edge_parses_json(rule: Rule | None) -> bool:
    """Whether the edge parses a JSON body with labctl's rules: every route but signed ones, whose signature is
    verified over the raw body before its JSON is parsed."""
    return rule != SIGNED


def allows(rule: Rule | None, role: Role) -> bool:
    return isinstance(rule, tuple) and role in rule


def may_read_credentials(*, role: Role, caller: str, started_by: str | None) -> bool:
    """Platform tokens read the sandbox credentials only of sessions they started; the learner check is separate."""
    return role != "platform" or (started_by is not None and started_by == caller)
