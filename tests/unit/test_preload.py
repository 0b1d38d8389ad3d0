"""The Kubernetes SDK's API classes are imported before ``labctl serve`` freezes its start-up heap.

The SDK imports an API class and its pydantic models on first use; after ``gc.freeze()`` those would join the heap
that every full collection walks with the interpreter lock held (``/healthz`` waits meanwhile). ``preload`` imports
the classes labctl calls, and this module checks that the list is the one the source uses and that, once preloaded
and frozen, using them adds nothing for the collector to walk.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from labctl.providers.kubernetes.client import USED_APIS

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter: import what `labctl serve` imports, optionally preload, freeze, then resolve every API class
# as a first request would; print how many objects the collector tracks outside the frozen heap afterwards.
_PROBE = """
import gc, json, sys
import api.app, labctl.cli.serve
from kubernetes import client
from labctl.providers.kubernetes import client as kubernetes_client
if sys.argv[1] == "preload":
    kubernetes_client.preload()
gc.collect()
gc.freeze()
before = len(gc.get_objects())
for name in kubernetes_client.USED_APIS:
    getattr(client, name)
print(json.dumps({"before": before, "after": len(gc.get_objects())}))
"""


def _api_classes_named_in(source: Path) -> set[str]:
    """Every ``client.<Something>Api`` attribute the module's code reads."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "client"
                and node.attr.endswith("Api") and node.attr[0].isupper()):
            names.add(node.attr)
    return names


def test_the_preloaded_apis_are_the_ones_labctl_calls() -> None:
    named = set().union(*(_api_classes_named_in(path) for path in (ROOT / "labctl").rglob("*.py")))
    assert named, "no client.<X>Api found: the scan is broken"
    assert named <= set(USED_APIS), f"called but not preloaded: {sorted(named - set(USED_APIS))}"
    assert set(USED_APIS) <= named, f"preloaded but never called: {sorted(set(USED_APIS) - named)}"


def _tracked_after_first_use(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True,
                         timeout=120)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    return int(counts["after"]) - int(counts["before"])


def test_once_preloaded_and_frozen_first_use_of_the_apis_adds_nothing_to_walk() -> None:
    without = _tracked_after_first_use("none")
    preloaded = _tracked_after_first_use("preload")
    assert without > 10_000, f"the SDK's first use added only {without} objects: the probe measures nothing"
    assert preloaded < 100, f"first use after preload and freeze still added {preloaded} tracked objects"
