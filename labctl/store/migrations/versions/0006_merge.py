"""Join the schema changes made side by side on top of 0004: the LTI tables (0005_lti), the learner page's meter
readings (0005_page), the guardrails' violations (0005_detect) and the replay's ledger windows, starter figures and
grading progress (0005_replay). They touch different tables and columns, so the order in which they run does not
matter.

Revision ID: 0006
Revises: 0005_lti, 0005_page, 0005_detect, 0005_replay
"""

from __future__ import annotations

revision = '0006'
down_revision = ('0005_lti', '0005_page', '0005_detect', '0005_replay')
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: this revision only makes the branches one head again."""


def downgrade() -> None:
    """Nothing to change: downgrading past it splits the branches again."""
