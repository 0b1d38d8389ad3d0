"""Copies of the shipped labs for tests that need one lab changed: here, a starter with some templates cut."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import yaml

from labctl.settings import REPO_ROOT


def without_starters(directory: Path, cuts: Mapping[str, str]) -> Path:
    """``directory/labs``: the shipped labs, each lab of ``cuts`` without that starter template (which it must list)."""
    labs = directory / "labs"
    shutil.copytree(REPO_ROOT / "labs", labs)
    for lab_id, template in cuts.items():
        path = labs / lab_id / "lab.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert template in doc["starter"], (lab_id, doc["starter"])
        doc["starter"] = [t for t in doc["starter"] if t != template]
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return labs
