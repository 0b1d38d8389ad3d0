"""A FAKE Google Compute Engine API for tests: no emulator of GCE exists, so this small HTTP server stands in for it.

It serves only the subset of the Compute v1 REST API labctl and the lab solutions call, shaped as the public REST
reference describes it, so the real ``google-cloud-compute`` client (REST transport, pointed here by
``client_options.api_endpoint``, anonymous credentials over plain http) talks to it unchanged:

- ``instances``: ``aggregatedList`` (with a ``filter`` of ``labels.<key> = "<value>"`` terms joined by ``AND``),
  ``insert``, ``get``, ``stop``, ``start``, ``delete``, ``setLabels`` (the ``labelFingerprint`` must be the current
  one, else 412 ``conditionNotMet``, as GCE answers);
- ``disks``: ``aggregatedList``, ``insert``, ``get``, ``delete`` (a disk an instance uses: 400
  ``resourceInUseByAnotherResource``), ``setLabels`` (as for instances);
- ``zoneOperations``: ``get`` and ``wait``. Mutations answer an Operation in ``RUNNING``; it is ``DONE`` at the
  first ``get`` or ``wait`` (the state change itself is immediate: PROVISIONING->RUNNING, STOPPING->TERMINATED).

Errors are Google's JSON error documents (``{"error": {"code", "message", "status", "errors": [{"reason", ...}]}}``)
so ``google.api_core.exceptions`` maps them (404 NotFound, 409 Conflict, 412 PreconditionFailed, 400 BadRequest).
GCE's label rules are enforced on insert and setLabels: keys ``[a-z][a-z0-9_-]{0,62}``, values ``[a-z0-9_-]{0,63}``,
at most 64 labels.

One fault can be injected, for tests of what labctl does when a cloud leaves something behind:
:meth:`GceFake.keep_on_delete` makes deletes of a named resource answer success while it stays.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BASE = "https://www.googleapis.com/compute/v1"
KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
FILTER_TERM = re.compile(r'^\(?\s*labels\.([a-z][a-z0-9_-]*)\s*(=|eq)\s*"?([a-z0-9_-]*)"?\s*\)?$')
STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION"}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def document(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": STATUS.get(self.code, "UNKNOWN"),
                          "errors": [{"message": self.message, "domain": "global", "reason": self.reason}]}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def fingerprint(labels: dict[str, str]) -> str:
    return base64.b64encode(hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).digest()[:8]).decode()


def check_labels(labels: Any) -> dict[str, str]:
    """GCE's label rules; a breach is the 400 GCE answers."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ApiError(400, "invalid", "Invalid value for field 'labels': must be a map.")
    if len(labels) > 64:
        raise ApiError(400, "invalid", f"Invalid value for field 'labels': {len(labels)} labels; at most 64.")
    for key, value in labels.items():
        if not KEY.match(str(key)):
            raise ApiError(400, "invalid", f"Invalid value for field 'labels': key '{key}' must match "
                           "[a-z][a-z0-9_-]{0,62}.")
        if not isinstance(value, str) or not VALUE.match(value):
            raise ApiError(400, "invalid", f"Invalid value for field 'labels': value '{value}' of '{key}' must "
                           "match [a-z0-9_-]{0,63}.")
    return {str(k): str(v) for k, v in labels.items()}


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class _Project:
    instances: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (zone, name) -> resource
    disks: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    operations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class GceFake:
    """The fake's state and request handling; :func:`serve` runs it on 127.0.0.1."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._projects: dict[str, _Project] = {}
        self._ids = itertools.count(1_000_000_000_000)
        self._kept: set[str] = set()
        self.url = ""
        self.requests: list[tuple[str, str]] = []

    # --- fault injection and inspection (test-side only) -----------------------------------------------------------

    def keep_on_delete(self, name: str) -> None:
        """FAULT: deletes of the instance or disk ``name`` answer DONE, and the resource stays."""
        with self._lock:
            self._kept.add(name)

    def heal(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._kept.clear()

    def instance(self, project: str, zone: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._project(project).instances.get((zone, name))
            return json.loads(json.dumps(found)) if found else None

    def all_names(self, project: str) -> list[str]:
        with self._lock:
            p = self._project(project)
            return sorted([f"Instance/{z}/{n}" for z, n in p.instances] + [f"Volume/{z}/{n}" for z, n in p.disks])

    # --- routing -------------------------------------------------------------------------------------------------

    def _project(self, project: str) -> _Project:
        return self._projects.setdefault(project, _Project())

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        if parts[:3] != ["compute", "v1", "projects"] or len(parts) < 5:
            raise ApiError(404, "notFound", f"The requested URL {path} was not found.")
        project, rest = parts[3], parts[4:]
        with self._lock:
            p = self._project(project)
            if rest[0] == "aggregated" and len(rest) == 2 and method == "GET":
                return 200, self._aggregated(project, p, rest[1], query)
            if rest[0] != "zones" or len(rest) < 3:
                raise ApiError(404, "notFound", f"The requested URL {path} was not found.")
            zone, collection, tail = rest[1], rest[2], rest[3:]
            if not ZONE.match(zone):
                raise ApiError(400, "invalid", f"Invalid value for field 'zone': '{zone}'.")
            if collection == "operations" and len(tail) >= 1:
                return 200, self._operation(p, zone, tail[0], wait=tail[1:] == ["wait"])
            if collection == "instances":
                return 200, self._instances(project, p, zone, method, tail, body)
            if collection == "disks":
                return 200, self._disks(project, p, zone, method, tail, body)
        raise ApiError(404, "notFound", f"The requested URL {path} was not found.")

    # --- aggregated lists ------------------------------------------------------------------------------------------

    def _aggregated(self, project: str, p: _Project, what: str, query: dict[str, list[str]]) -> dict[str, Any]:
        store = {"instances": p.instances, "disks": p.disks}.get(what)
        if store is None:
            raise ApiError(404, "notFound", f"aggregated {what} is not served by this fake")
        wanted = _parse_filter((query.get("filter") or [""])[0])
        items: dict[str, dict[str, Any]] = {}
        for (zone, _), res in sorted(store.items()):
            if all(res.get("labels", {}).get(k) == v for k, v in wanted):
                items.setdefault(f"zones/{zone}", {what: []})[what].append(res)
        kind = {"instances": "compute#instanceAggregatedList", "disks": "compute#diskAggregatedList"}[what]
        return {"kind": kind, "id": f"projects/{project}/aggregated/{what}", "items": items,
                "selfLink": f"{BASE}/projects/{project}/aggregated/{what}"}

    # --- operations --------------------------------------------------------------------------------------------------

    def _start_op(self, project: str, p: _Project, zone: str, kind: str, target: str) -> dict[str, Any]:
        op_id = str(next(self._ids))
        name = f"operation-{op_id}"
        op = {"kind": "compute#operation", "id": op_id, "name": name, "zone": f"{BASE}/projects/{project}/zones/{zone}",
              "operationType": kind, "targetLink": target, "status": "RUNNING", "progress": 0, "insertTime": _now(),
              "startTime": _now(), "selfLink": f"{BASE}/projects/{project}/zones/{zone}/operations/{name}"}
        p.operations[(zone, name)] = op
        return dict(op)

    def _operation(self, p: _Project, zone: str, name: str, *, wait: bool) -> dict[str, Any]:
        op = p.operations.get((zone, name))
        if op is None:
            raise ApiError(404, "notFound", f"The resource 'projects/-/zones/{zone}/operations/{name}' was not found")
        op.update(status="DONE", progress=100, endTime=op.get("endTime") or _now())
        return dict(op)

    # --- instances -------------------------------------------------------------------------------------------------

    def _instances(self, project: str, p: _Project, zone: str, method: str, tail: list[str],
                   body: Any) -> dict[str, Any]:
        if not tail and method == "POST":
            return self._insert_instance(project, p, zone, body or {})
        if not tail:
            raise ApiError(404, "notFound", "instances list is not served by this fake; use aggregatedList")
        name, verb = tail[0], tail[1:]
        res = p.instances.get((zone, name))
        link = f"projects/{project}/zones/{zone}/instances/{name}"
        if res is None:
            raise ApiError(404, "notFound", f"The resource '{link}' was not found")
        if method == "GET" and not verb:
            return res
        if method == "DELETE" and not verb:
            op = self._start_op(project, p, zone, "delete", res["selfLink"])
            if name not in self._kept:
                self._delete_instance(p, zone, name)
            return op
        if method == "POST" and verb == ["stop"]:
            if res["status"] in ("RUNNING", "PROVISIONING", "STAGING"):
                res.update(status="TERMINATED", lastStopTimestamp=_now())
            return self._start_op(project, p, zone, "stop", res["selfLink"])
        if method == "POST" and verb == ["start"]:
            if res["status"] == "TERMINATED":
                res.update(status="RUNNING", lastStartTimestamp=_now())
            return self._start_op(project, p, zone, "start", res["selfLink"])
        if method == "POST" and verb == ["setLabels"]:
            self._set_labels(res, body)
            return self._start_op(project, p, zone, "setLabels", res["selfLink"])
        raise ApiError(404, "notFound", f"{method} {'/'.join(tail)} is not served by this fake")

    @staticmethod
    def _set_labels(res: dict[str, Any], body: Any) -> None:
        """GCE's setLabels: the whole map replaced, only with the current fingerprint."""
        body = body or {}
        if body.get("labelFingerprint") != res["labelFingerprint"]:
            raise ApiError(412, "conditionNotMet", "Labels fingerprint either invalid or resource labels have changed")
        labels = check_labels(body.get("labels"))
        res.update(labels=labels, labelFingerprint=fingerprint(labels))

    def _insert_instance(self, project: str, p: _Project, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not NAME.match(name):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'. Must be a match of "
                           "regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        if (zone, name) in p.instances:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{project}/zones/{zone}/instances/{name}' "
                           "already exists")
        machine = str(body.get("machineType") or "")
        if not re.match(r"^[a-z0-9]+-[a-z0-9-]+$", _last(machine)):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.machineType': '{machine}'.")
        labels = check_labels(body.get("labels"))
        link = f"{BASE}/projects/{project}/zones/{zone}/instances/{name}"
        scheduling = dict(body.get("scheduling") or {})
        model = scheduling.get("provisioningModel") or ("SPOT" if scheduling.get("preemptible") else "STANDARD")
        scheduling.setdefault("provisioningModel", model)
        if model == "SPOT":
            scheduling.setdefault("instanceTerminationAction", "STOP")
            scheduling.setdefault("automaticRestart", False)
        attached: list[dict[str, Any]] = []
        for index, d in enumerate(body.get("disks") or []):
            attached.append(self._attach(project, p, zone, name, index, d, link))
        now = _now()
        res = {"kind": "compute#instance", "id": str(next(self._ids)), "name": name, "zone":
               f"{BASE}/projects/{project}/zones/{zone}",
               "machineType": f"{BASE}/projects/{project}/zones/{zone}/machineTypes/{_last(machine)}",
               "status": "RUNNING", "labels": labels, "labelFingerprint": fingerprint(labels),
               "scheduling": scheduling, "disks": attached, "guestAccelerators": body.get("guestAccelerators") or [],
               "creationTimestamp": now, "lastStartTimestamp": now, "selfLink": link}
        p.instances[(zone, name)] = res
        return self._start_op(project, p, zone, "insert", link)

    def _attach(self, project: str, p: _Project, zone: str, instance: str, index: int, d: dict[str, Any],
                link: str) -> dict[str, Any]:
        params = d.get("initializeParams")
        if params is not None and bool(d.get("boot", index == 0)) \
                and not (params.get("sourceImage") or params.get("sourceSnapshot")):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.disks[{index}]': ''. Boot disk must "
                           "have a source specified.")
        if params is not None:
            disk_name = str(params.get("diskName") or (instance if index == 0 else f"{instance}-{index}"))
            self._new_disk(project, p, zone, {"name": disk_name, "sizeGb": params.get("diskSizeGb") or "10",
                                              "type": params.get("diskType") or "pd-standard",
                                              "labels": params.get("labels")})
        elif d.get("source"):
            disk_name = _last(str(d["source"]))
            if (zone, disk_name) not in p.disks:
                raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/disks/{disk_name}' "
                               "was not found")
        else:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.disks[0]': a disk needs "
                           "initializeParams or source.")
        disk = p.disks[(zone, disk_name)]
        disk["users"] = [*disk.get("users", []), link]
        return {"kind": "compute#attachedDisk", "index": index, "boot": bool(d.get("boot", index == 0)),
                "autoDelete": bool(d.get("autoDelete", params is not None)), "deviceName": disk_name,
                "source": disk["selfLink"], "diskSizeGb": disk["sizeGb"], "type": "PERSISTENT", "mode": "READ_WRITE"}

    def _delete_instance(self, p: _Project, zone: str, name: str) -> None:
        res = p.instances.pop((zone, name))
        for d in res["disks"]:
            key = (zone, _last(d["source"]))
            disk = p.disks.get(key)
            if disk is None:
                continue
            disk["users"] = [u for u in disk.get("users", []) if u != res["selfLink"]]
            if d.get("autoDelete") and key[1] not in self._kept:
                del p.disks[key]

    # --- disks -------------------------------------------------------------------------------------------------------

    def _disks(self, project: str, p: _Project, zone: str, method: str, tail: list[str],
               body: Any) -> dict[str, Any]:
        if not tail and method == "POST":
            disk = self._new_disk(project, p, zone, body or {})
            return self._start_op(project, p, zone, "insert", disk["selfLink"])
        if not tail:
            raise ApiError(404, "notFound", "disks list is not served by this fake; use aggregatedList")
        name = tail[0]
        disk = p.disks.get((zone, name))
        if disk is not None and method == "POST" and tail[1:] == ["setLabels"]:
            self._set_labels(disk, body)
            return self._start_op(project, p, zone, "setLabels", disk["selfLink"])
        if disk is None or len(tail) > 1:
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/disks/{name}' was not "
                           "found")
        if method == "GET":
            return disk
        if method == "DELETE":
            if disk.get("users"):
                raise ApiError(400, "resourceInUseByAnotherResource", f"The disk resource 'projects/{project}/zones/"
                               f"{zone}/disks/{name}' is already being used by '{disk['users'][0]}'")
            op = self._start_op(project, p, zone, "delete", disk["selfLink"])
            if name not in self._kept:
                del p.disks[(zone, name)]
            return op
        raise ApiError(404, "notFound", f"{method} disks/{'/'.join(tail)} is not served by this fake")

    def _new_disk(self, project: str, p: _Project, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        if not NAME.match(name):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'.")
        if (zone, name) in p.disks:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{project}/zones/{zone}/disks/{name}' "
                           "already exists")
        try:
            size = int(body.get("sizeGb") or 10)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.sizeGb': '{body.get('sizeGb')}'.") \
                from exc
        labels = check_labels(body.get("labels"))
        disk_type = _last(str(body.get("type") or "pd-standard"))
        disk = {"kind": "compute#disk", "id": str(next(self._ids)), "name": name,
                "zone": f"{BASE}/projects/{project}/zones/{zone}", "sizeGb": str(size), "status": "READY",
                "type": f"{BASE}/projects/{project}/zones/{zone}/diskTypes/{disk_type}",
                "labels": labels, "labelFingerprint": fingerprint(labels), "users": [], "creationTimestamp": _now(),
                "selfLink": f"{BASE}/projects/{project}/zones/{zone}/disks/{name}"}
        p.disks[(zone, name)] = disk
        return disk


def _parse_filter(text: str) -> list[tuple[str, str]]:
    """``labels.k = "v" AND labels.j = "w"`` -> [(k, v), (j, w)]; anything else is GCE's 400 for a bad filter."""
    if not text.strip():
        return []
    terms = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = FILTER_TERM.match(part.strip())
        if match is None:
            raise ApiError(400, "invalid", f"Invalid value for field 'filter': '{text}'. (this fake understands "
                           "labels.<key> = \"<value>\" terms joined by AND)")
        terms.append((match.group(1), match.group(3)))
    return terms


def _handler(fake: GceFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
                code, doc = fake.handle(method, split.path, parse_qs(split.query), body)
            except ApiError as exc:
                code, doc = exc.code, exc.document()
            except json.JSONDecodeError as exc:
                code, doc = 400, ApiError(400, "parseError", f"Invalid JSON payload received. {exc}").document()
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json; charset=UTF-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_DELETE(self) -> None:
            self._answer("DELETE")

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def serve() -> Iterator[GceFake]:
    """The fake on 127.0.0.1 (a free port) for the ``with`` block; ``fake.url`` is its endpoint."""
    fake = GceFake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="gce-fake", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    """``python -m tests.support.gce_fake --port N``: the fake as its own process (``make run`` serves the gcp lab on
    it), until SIGTERM or Ctrl-C. Prints its endpoint, then one line per request it answered wrong (none expected)."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="A FAKE Compute Engine API on 127.0.0.1 (for the gcp labs locally)")
    parser.add_argument("--port", type=int, default=8490)
    port = parser.parse_args().port
    fake = GceFake()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"FAKE Compute Engine API at {fake.url} (state in memory; gone when it stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
