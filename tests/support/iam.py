"""The independent IAM evaluator: ``@cloud-copilot/iam-simulate`` (npm, in ``tests/iam``) run by node.

moto checks actions but not condition keys, so what the session policy allows is decided here, by an evaluator that
implements IAM's condition operators, explicit denies and policy validation. ``npm ci`` installs the locked package
on first use (``make test`` and ``.ci/run`` do it too).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IAM_DIR = Path(__file__).resolve().parents[1] / "iam"


def ensure_installed() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("node and npm are needed for the IAM evaluator (Debian: apt-get install nodejs npm)")
    if not (IAM_DIR / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=IAM_DIR, check=True, capture_output=True,
                       timeout=300)


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes: an action on one resource ARN with the request's condition keys."""

    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict)


def evaluate(policy: dict[str, Any], requests: list[Request], *,
             principal: str = "arn:aws:sts::123456789012:assumed-role/labctl-s/s") -> list[str]:
    """``Allowed`` / ``ExplicitlyDenied`` / ``ImplicitlyDenied`` per request; a policy or request the evaluator
    finds invalid fails loudly."""
    payload = {"policies": [{"name": "labctl-sandbox", "policy": policy}],
               "requests": [{"action": r.action, "resource": r.resource, "principal": principal,
                             "context": r.context} for r in requests]}
    done = subprocess.run(["node", str(IAM_DIR / "evaluate.mjs")], input=json.dumps(payload), capture_output=True,
                          text=True, check=True, timeout=120, cwd=IAM_DIR)
    answers = json.loads(done.stdout)
    errors = [a["errors"] for a in answers if a["result"] == "error"]
    if errors:
        raise AssertionError(f"the evaluator refused the input: {errors[0]}")
    return [str(a["result"]) for a in answers]
