"""Join the three schema changes made side by side on top of 0002: access (token expiry, who started a session),
budgets (suspension record, grants, session lease) and the simulator's service ledger. They touch different columns
and tables, so the order in which they run does not matter.

Revision ID: 0004
Revises: 0003_access, 0003_budgets, 0003_simulator
"""

from __future__ import annotations

revision = '0004'
down_revision = ('0003_access', '0003_budgets', '0003_simulator')
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: this revision only makes the three branches one head again."""


def downgrade() -> None:
    """Nothing to change: downgrading past here walks each branch back on its own."""
