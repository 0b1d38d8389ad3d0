"""several clusters: the Kubernetes cluster each session's sandbox lives in (existing ones: the default cluster)

Revision ID: 0008_clusters
Revises: 0007_pools
Create Date: 2026-12-01 19:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008_clusters'
down_revision = '0007_pools'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('sessions', sa.Column('cluster', sa.String(length=32), nullable=True))
    # Every Kubernetes sandbox made before lived in the one cluster labctl knew, now named "default".
    op.execute("UPDATE sessions SET cluster = 'default' WHERE provider = 'kubernetes'")


def downgrade() -> None:
    # A plain ALTER TABLE (SQLite >= 3.35 drops columns in place), as 0007_pools does.
    op.drop_column('sessions', 'cluster')
