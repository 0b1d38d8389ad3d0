"""replay: service ledger rows per window (the live session, or one submission's replay) with the cost of each
workload's pods; a submission's replay progress and heartbeat; the starter's figures over the grading window

Revision ID: 0005_replay
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_replay'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows are the sessions' own meterings: the ``live`` window; their cost was never recorded (0).
    with op.batch_alter_table('service_ledger', recreate='always') as batch_op:
        batch_op.add_column(sa.Column('window_id', sa.String(length=63), nullable=False, server_default='live'))
        batch_op.add_column(sa.Column('cost_usd', sa.Numeric(precision=14, scale=6), nullable=False,
                                      server_default='0'))
        batch_op.drop_constraint('pk_service_ledger', type_='primary')
        batch_op.create_primary_key('pk_service_ledger', ['session_id', 'window_id', 'workload'])
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('starter_service', sa.JSON(), nullable=True))
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 too): a batch copy of ``sessions`` would drop the table,
    # and with foreign keys on, every row that cascades from it (the service ledger) with it.
    op.drop_column('submissions', 'heartbeat_at')
    op.drop_column('submissions', 'progress')
    op.drop_column('sessions', 'starter_service')
    op.execute("DELETE FROM service_ledger WHERE window_id <> 'live'")
    with op.batch_alter_table('service_ledger', recreate='always') as batch_op:
        batch_op.drop_constraint('pk_service_ledger', type_='primary')
        batch_op.create_primary_key('pk_service_ledger', ['session_id', 'workload'])
        batch_op.drop_column('cost_usd')
        batch_op.drop_column('window_id')
