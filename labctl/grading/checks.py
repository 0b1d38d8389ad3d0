"""Checks and grades: the shape of what graders report, and the pure arithmetic that weighs it into a grade.

A grader prints ``{"checks": [...]}``; each item is a :class:`ReportedCheck` (the contract, validated strictly so a
misspelt key or a score above its maximum is caught). :func:`parse_output` turns that text into :class:`Check`
objects that also carry the grader's id and a status, or raises :class:`ContractError` saying what is wrong; a grader
that could not run at all becomes one :func:`error_check`.

Weights: each grader of a lab is worth ``weight`` points, however many checks it reports and whatever their
``max_score``. A grader's checks are scaled together::

    points(check)     = weight * check.score     / sum(max_score of the grader's checks)
    max_points(check) = weight * check.max_score / sum(max_score of the grader's checks)
    points(grader)    = sum(points of its checks)          (an error check scores 0 of its max_score)
    grade.score       = sum(points of every grader)        grade.max_score = sum(weights)

so a check's ``max_score`` sets its share within its grader, and the lab's weights set each grader's share of the
grade. Points are rounded to 6 decimals to keep float noise out of stored grades; display rounds further.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Status = Literal["passed", "failed", "error"]
ERROR_MAX_SCORE = 1.0
_PRECISION = 6
_MAX_ERRORS_SHOWN = 3
_SCORE_SLACK = 1e-9


class ContractError(ValueError):
    """A grader's output does not follow the contract; the message says how, in one line."""


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Strict(BaseModel):
    """The contract's models: no coercion (``"yes"`` is not a boolean, ``"1"`` not a number), no unknown keys."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class ReportedCheck(_Strict):
    """One check as a grader prints it (the contract, see ``graders/README.md``)."""

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=300)
    passed: bool
    score: float = Field(ge=0)
    max_score: float = Field(ge=0)
    feedback: str
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    status: Status | None = Field(default=None, description="optional; 'error' when the grader could not judge")

    @model_validator(mode="after")
    def _consistent(self) -> ReportedCheck:
        if self.score > self.max_score + _SCORE_SLACK:
            raise ValueError(f"check {self.id!r}: score {self.score} is above max_score {self.max_score}")
        if self.status == "passed" and not self.passed:
            raise ValueError(f"check {self.id!r}: status 'passed' with passed false")
        if self.status in ("failed", "error") and self.passed:
            raise ValueError(f"check {self.id!r}: status {self.status!r} with passed true")
        return self


class ReportedChecks(_Strict):
    """A grader's whole output: at least one check, unique ids, something to score."""

    checks: list[ReportedCheck] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_and_scorable(self) -> ReportedChecks:
        ids = [c.id for c in self.checks]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"check ids must be unique; repeated: {', '.join(repeated)}")
        if sum(c.max_score for c in self.checks) <= 0:
            raise ValueError("every check has max_score 0: nothing can be scored")
        return self


class Check(_Closed):
    """One graded criterion, as stored with a grade: which grader, what, the verdict, and why."""

    grader: str = Field(description="the lab grader's id (lab.yaml graders[].id)")
    id: str = Field(description="the check's id, unique within its grader")
    title: str
    status: Status
    passed: bool
    score: float
    max_score: float
    feedback: str
    evidence: list[dict[str, Any]] = Field(default_factory=list)
    points: float | None = Field(default=None, description="score scaled by the grader's weight (set by combine)")
    max_points: float | None = Field(default=None, description="max_score scaled by the grader's weight")


class GraderResult(_Closed):
    """One grader's checks with the weight applied."""

    grader: str
    script: str
    weight: float
    status: Literal["ok", "error"]
    points: float
    max_points: float
    checks: list[Check]
    duration_s: float | None = None


class Grade(_Closed):
    """A lab's grade: the weighted total, every check, and each grader's share."""

    score: float
    max_score: float
    passed: bool = Field(description="every check passed")
    checks: list[Check]
    graders: list[GraderResult]


def parse_output(grader: str, text: str) -> list[Check]:
    """The checks a grader printed, or :class:`ContractError` saying what is wrong with ``text``."""
    if not text.strip():
        raise ContractError("printed nothing on stdout (expected a JSON object with a 'checks' list)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(f"printed invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                            f"output began {_excerpt(text)}") from None
    try:
        reported = ReportedChecks.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"printed output that does not follow the contract: {_summarise(exc)}") from None
    return [_as_check(grader, item) for item in reported.checks]


def error_check(grader: str, reason: str, *, evidence: Sequence[dict[str, Any]] = ()) -> Check:
    """The single check that stands for a grader that could not be run or understood."""
    return Check(grader=grader, id=grader, title=f"Grader {grader} could not grade this submission",
                 status="error", passed=False, score=0.0, max_score=ERROR_MAX_SCORE,
                 feedback=f"This part could not be graded: {reason}. It scores 0; please tell your instructor.",
                 evidence=[{"problem": reason}, *evidence])


def weigh(grader: str, script: str, weight: float, checks: Sequence[Check], *,
          duration_s: float | None = None) -> GraderResult:
    """Scale one grader's checks so that together they are worth ``weight`` points (formula in the module doc)."""
    total = sum(c.max_score for c in checks)
    weighted = [_with_points(c, weight, total) for c in checks]
    points = round(weight * sum(c.score for c in checks) / total, _PRECISION) if total > 0 else 0.0
    errored = any(c.status == "error" for c in checks)
    return GraderResult(grader=grader, script=script, weight=weight, status="error" if errored else "ok",
                        points=points, max_points=weight, checks=weighted, duration_s=duration_s)


def combine(results: Sequence[GraderResult]) -> Grade:
    """The grade of a lab from its graders' weighed results, in the lab's grader order."""
    checks = [c for r in results for c in r.checks]
    return Grade(score=round(sum(r.points for r in results), _PRECISION),
                 max_score=round(sum(r.max_points for r in results), _PRECISION),
                 passed=bool(checks) and all(c.passed for c in checks), checks=checks, graders=list(results))


def _as_check(grader: str, item: ReportedCheck) -> Check:
    status: Status = item.status or ("passed" if item.passed else "failed")
    score = 0.0 if status == "error" else min(item.score, item.max_score)
    return Check(grader=grader, id=item.id, title=item.title, status=status, passed=item.passed, score=score,
                 max_score=item.max_score, feedback=item.feedback, evidence=item.evidence)


def _with_points(check: Check, weight: float, total: float) -> Check:
    if total <= 0:
        return check.model_copy(update={"points": 0.0, "max_points": 0.0})
    return check.model_copy(update={"points": round(weight * check.score / total, _PRECISION),
                                    "max_points": round(weight * check.max_score / total, _PRECISION)})


def _summarise(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in errors[:_MAX_ERRORS_SHOWN]]
    more = len(errors) - _MAX_ERRORS_SHOWN
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _excerpt(text: str, limit: int = 60) -> str:
    head = text.strip()[:limit]
    return repr(head) + ("..." if len(text.strip()) > limit else "")
