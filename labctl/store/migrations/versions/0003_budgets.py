"""budgets: suspension record, meter failures, session lease, budget request id, per-learner-and-lab grants

Revision ID: 0003_budgets
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003_budgets'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('budget_request_id', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('suspension', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('meter_failures', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('lease_holder', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('grants',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lab_id', sa.String(length=63), nullable=False),
    sa.Column('learner_id', sa.String(length=128), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('usd', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grants'))
    )
    op.create_index('ix_grants_lab_learner', 'grants', ['lab_id', 'learner_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_grants_lab_learner', table_name='grants')
    op.drop_table('grants')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('lease_holder')
        batch_op.drop_column('meter_failures')
        batch_op.drop_column('suspension')
        batch_op.drop_column('budget_request_id')
