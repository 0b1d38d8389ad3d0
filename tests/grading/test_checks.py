"""The grader contract and the weighting arithmetic, on hand-written outputs with hand-computed grades."""

from __future__ import annotations

import json
from typing import Any

import pytest

from labctl.grading.checks import ContractError, combine, error_check, parse_output, weigh


def reported(**overrides: Any) -> dict[str, Any]:
    return {"id": "c", "title": "C", "passed": True, "score": 1, "max_score": 1, "feedback": "fine",
            "evidence": [], **overrides}


def output(*checks: dict[str, Any]) -> str:
    return json.dumps({"checks": list(checks)})


def test_parse_output_adds_the_grader_and_a_status() -> None:
    checks = parse_output("tags", output(reported(id="a"), reported(id="b", passed=False, score=0.25),
                                         reported(id="c", passed=False, score=0.5, status="error")))
    assert [(c.grader, c.id, c.status, c.score) for c in checks] == [
        ("tags", "a", "passed", 1.0), ("tags", "b", "failed", 0.25), ("tags", "c", "error", 0.0)]


@pytest.mark.parametrize(("text", "reason"), [
    ("", "printed nothing on stdout"),
    ("{", "printed invalid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
    ("[]", "(top level): Input should be a valid dictionary"),
    ('{"checks": {}}', "checks: Input should be a valid list"),
    (output(reported(score="1")), "checks.0.score: Input should be a valid number"),
    (output(), "checks: List should have at least 1 item"),
    (output(reported(score=2)), "score 2.0 is above max_score 1.0"),
    (output(reported(score=-1)), "checks.0.score: Input should be greater than or equal to 0"),
    (output(reported(passed="yes")), "checks.0.passed: Input should be a valid boolean"),
    (output(reported(maxscore=1)), "checks.0.maxscore: Extra inputs are not permitted"),
    (output(reported(evidence=["Deployment/web"])), "checks.0.evidence.0: Input should be a valid dictionary"),
    (output(reported(), reported()), "check ids must be unique; repeated: c"),
    (output(reported(score=0, max_score=0)), "every check has max_score 0"),
    (output(reported(status="failed")), "status 'failed' with passed true"),
    ('{"checks": [{"id": "c", "title": "C", "passed": true, "score": NaN, "max_score": 1, "feedback": ""}]}',
     "checks.0.score: Input should be a finite number"),
])
def test_output_off_the_contract_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_output("g", text)
    assert reason in str(caught.value)


def test_weights_scale_each_grader_to_its_weight() -> None:
    # Grader "tags" (weight 50): checks of max 1 and 3 scoring 1 and 1.5 -> 50 * 2.5 / 4 = 31.25 points.
    tags = weigh("tags", "graders/tag_coverage.py", 50, parse_output("tags", output(
        reported(id="a"), reported(id="b", passed=False, score=1.5, max_score=3))))
    # Grader "spot" (weight 30): one check at 0.4 of 2 -> 30 * 0.2 = 6 points.
    spot = weigh("spot", "graders/spot_placement.py", 30, parse_output("spot", output(
        reported(id="s", passed=False, score=0.4, max_score=2))))
    # Grader "broken" (weight 20) errored: 0 of 20.
    broken = weigh("broken", "graders/x.py", 20, [error_check("broken", "grader graders/x.py exited with status 1")])
    grade = combine([tags, spot, broken])
    assert (grade.score, grade.max_score, grade.passed) == (37.25, 100.0, False)
    assert [(g.grader, g.status, g.points, g.max_points) for g in grade.graders] == [
        ("tags", "ok", 31.25, 50), ("spot", "ok", 6.0, 30), ("broken", "error", 0.0, 20)]
    assert [(c.id, c.points, c.max_points) for c in grade.checks] == [
        ("a", 12.5, 12.5), ("b", 18.75, 37.5), ("s", 6.0, 30.0), ("broken", 0.0, 20.0)]


def test_thirds_add_up_to_the_weight_exactly() -> None:
    thirds = weigh("g", "graders/g.py", 55, parse_output("g", output(*(reported(id=str(i)) for i in range(3)))))
    assert thirds.points == 55.0
    assert combine([thirds]).score == 55.0


def test_error_check_explains_itself_to_the_learner() -> None:
    check = error_check("spot", "grader graders/spot.py exceeded its 10s time limit and was stopped",
                        evidence=[{"stderr": "..."}])
    assert (check.grader, check.id, check.status, check.passed, check.score, check.max_score) == (
        "spot", "spot", "error", False, 0.0, 1.0)
    assert "exceeded its 10s time limit" in check.feedback
    assert check.evidence == [{"problem": "grader graders/spot.py exceeded its 10s time limit and was stopped"},
                              {"stderr": "..."}]
