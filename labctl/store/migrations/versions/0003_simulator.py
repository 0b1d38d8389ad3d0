"""service ledger: requests offered, served and dropped per session and workload

Revision ID: 0003_simulator
Revises: 0002
Create Date: 2026-12-01 09:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_simulator'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('service_ledger',
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('workload', sa.String(length=300), nullable=False),
    sa.Column('offered', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('served', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('dropped', sa.Numeric(precision=20, scale=6), nullable=False),
    sa.Column('last_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_service_ledger_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'workload', name=op.f('pk_service_ledger'))
    )


def downgrade() -> None:
    op.drop_table('service_ledger')
