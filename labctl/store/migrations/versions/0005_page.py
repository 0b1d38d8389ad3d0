"""meter readings: accrued and burn rate at each metering (the learner page's chart)

Revision ID: 0005_page
Revises: 0004
Create Date: 2026-12-01 12:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_page'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('meter_readings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('accrued_usd', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('burn_rate_usd_per_hour', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('service', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_meter_readings_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_meter_readings'))
    )
    op.create_index('ix_meter_readings_session_at', 'meter_readings', ['session_id', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_meter_readings_session_at', table_name='meter_readings')
    op.drop_table('meter_readings')
