"""The instructor's `labctl sessions` and `labctl tokens` against a running service: output formats and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.server import ADMIN_TOKEN, Server

LABCTL = str(Path(sys.executable).parent / "labctl")


def labctl(server: Server, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LABCTL_URL": server.url, "LABCTL_TOKEN": token, "COLUMNS": "200"}
    return subprocess.run([LABCTL, *args], env=env, capture_output=True, text=True, timeout=180)


def test_sessions_list_show_kubeconfig_reset_delete(server: Server) -> None:
    with server.client() as c:
        session = c.post("/v1/sessions", json={"lab_id": "idle-hunter", "learner_id": "cli-user"}).json()
    sid = session["id"]

    listed = labctl(server, "sessions", "list", "--learner", "cli-user", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [s["id"] for s in json.loads(listed.stdout)] == [sid]

    table = labctl(server, "sessions", "list", "--learner", "cli-user")
    assert sid in table.stdout
    assert "ready" in table.stdout

    shown = labctl(server, "sessions", "show", sid, "-o", "yaml", "--events")
    assert yaml.safe_load(shown.stdout)["events"][0]["kind"] == "created"

    kubeconfig = labctl(server, "sessions", "kubeconfig", sid)
    assert yaml.safe_load(kubeconfig.stdout)["contexts"][0]["context"]["namespace"] == session["namespace"]

    reset = labctl(server, "sessions", "reset", sid, "-o", "json")
    assert json.loads(reset.stdout)["state"] == "ready"

    deleted = labctl(server, "sessions", "delete", sid, "-o", "json")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["state"] in ("terminating", "terminated")


def test_errors_go_to_stderr_with_non_zero_exit(server: Server) -> None:
    missing = labctl(server, "sessions", "show", "no-such-session")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "there is no session 'no-such-session'" in missing.stderr

    bad_token = labctl(server, "sessions", "list", token="wrong")
    assert bad_token.returncode == 1
    assert "unknown token: check LABCTL_TOKEN" in bad_token.stderr

    env = {**os.environ, "LABCTL_URL": "http://127.0.0.1:1", "LABCTL_TOKEN": "x"}
    down = subprocess.run([LABCTL, "sessions", "list"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1
    assert "cannot reach labctl at http://127.0.0.1:1" in down.stderr


def test_tokens_create_list_revoke(server: Server) -> None:
    made = labctl(server, "tokens", "create", "--role", "platform", "--name", "course-site", "-o", "json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    token = created["token"]
    assert token.startswith("lct_")
    assert labctl(server, "sessions", "list", token=token).returncode == 0
    refused = labctl(server, "tokens", "create", "--role", "learner", "--name", "x")
    assert refused.returncode == 1
    assert "needs the learner id" in refused.stderr

    listed = {t["id"]: t for t in json.loads(labctl(server, "tokens", "list", "-o", "json").stdout)}
    mine = listed[created["id"]]
    assert "token" not in mine and "sha256" not in mine
    assert mine["last_used_at"] is not None and mine["revoked_at"] is None
    assert "course-site" in labctl(server, "tokens", "list").stdout

    revoked = labctl(server, "tokens", "revoke", str(created["id"]), "-o", "json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    after = labctl(server, "sessions", "list", token=token)
    assert after.returncode == 1 and "was revoked at" in after.stderr
    missing = labctl(server, "tokens", "revoke", "999999")
    assert missing.returncode == 1 and "there is no token 999999" in missing.stderr


def test_extend_suspend_resume_and_budget_decisions(server: Server) -> None:
    with server.client() as c:
        session = c.post("/v1/sessions", json={"lab_id": "tag-for-showback", "learner_id": "cli-budget"}).json()
        learner = c.post("/v1/tokens", json={"name": "cb", "role": "learner", "learner_id": "cli-budget"}).json()
    sid = session["id"]
    extended = labctl(server, "sessions", "extend", sid, "--minutes", "5", "-o", "json")
    assert extended.returncode == 0, extended.stderr
    assert json.loads(extended.stdout)["expires_at"] > session["expires_at"]

    suspended = labctl(server, "sessions", "suspend", sid, "-o", "json")
    assert json.loads(suspended.stdout) == {"id": sid, "state": "suspended", "suspend_reason": "instructor"}
    resumed = labctl(server, "sessions", "resume", sid, "-o", "json")
    assert json.loads(resumed.stdout)["state"] == "ready"

    nothing = labctl(server, "sessions", "budget", "approve", sid)
    assert nothing.returncode == 1
    assert "no pending budget request" in nothing.stderr
    with server.client(learner["token"]) as lc:
        asked = lc.post(f"/v1/sessions/{sid}/budget-requests", json={"usd": 1.5, "reason": "one more GPU run"})
    assert asked.json()["budget_request_usd"] == 1.5
    unnamed = labctl(server, "sessions", "budget", "approve", sid)
    assert unnamed.returncode == 1
    assert "name the request" in unnamed.stderr
    approved = labctl(server, "sessions", "budget", "approve", sid, "--usd", "1.5", "-o", "json")
    assert approved.returncode == 0, approved.stderr
    assert json.loads(approved.stdout)["budget_usd"] == session["budget_usd"] + 1.5
    denied = labctl(server, "sessions", "budget", "deny", sid)
    assert denied.returncode == 1  # nothing pending any more
