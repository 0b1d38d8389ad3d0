"""Join the schema changes made side by side on top of 0004: the LTI tables (0005_lti) and the learner page's meter
readings (0005_page). They touch different tables, so the order in which they run does not matter.

Revision ID: 0006
Revises: 0005_lti, 0005_page
"""

from __future__ import annotations

revision = '0006'
down_revision = ('0005_lti', '0005_page')
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: this revision only makes the branches one head again."""


def downgrade() -> None:
    """Nothing to change: downgrading past it splits the branches again."""
