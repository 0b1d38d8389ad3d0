"""violations: guardrail violations the detective control has acted on, once each

Revision ID: 0005_detect
Revises: 0004
Create Date: 2026-12-01 12:40:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_detect'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('violations',
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('resource', sa.String(length=300), nullable=False),
    sa.Column('rule', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('times', sa.Integer(), nullable=False),
    sa.Column('first_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_violations_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'resource', 'rule', name=op.f('pk_violations'))
    )


def downgrade() -> None:
    op.drop_table('violations')
