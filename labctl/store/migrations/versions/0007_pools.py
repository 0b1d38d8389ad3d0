"""warm pools: the lab hash of an unclaimed pooled sandbox, and the pools' ledger (idle cost charged to the course)

Revision ID: 0007_pools
Revises: 0006
Create Date: 2026-12-01 16:10:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007_pools'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('sessions', sa.Column('pool_hash', sa.String(length=64), nullable=True))
    op.create_table('pool_charges',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('lab_id', sa.String(length=63), nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('burn_rate_usd_per_hour', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('usd', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pool_charges'))
    )
    op.create_index('ix_pool_charges_lab', 'pool_charges', ['lab_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pool_charges_lab', table_name='pool_charges')
    op.drop_table('pool_charges')
    # A plain ALTER TABLE (SQLite >= 3.35 drops columns in place): a batch copy of ``sessions`` would cascade-delete
    # the rows that reference it.
    op.drop_column('sessions', 'pool_hash')
