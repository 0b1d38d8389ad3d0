"""access: token expiry and last use, who started a session

Revision ID: 0003_access
Revises: 0002
Create Date: 2026-12-01 09:40:00

Tokens made before this revision get an expiry counted from their creation: 12 hours for learner tokens, 90 days for
the others (the default lifetimes); ones already past it stop working, as a token made today would.
Sessions started before it have no ``started_by``: only instructors (and their learner) read their credentials.
"""

from datetime import timedelta

from alembic import op
import sqlalchemy as sa


revision = '0003_access'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table('api_tokens', sa.column('id', sa.Integer), sa.column('role', sa.String),
                      sa.column('created_at', sa.DateTime(timezone=True)),
                      sa.column('expires_at', sa.DateTime(timezone=True)))
    conn = op.get_bind()
    for token_id, role, created_at in conn.execute(sa.select(tokens.c.id, tokens.c.role, tokens.c.created_at)).all():
        lifetime = timedelta(hours=12) if role == 'learner' else timedelta(days=90)
        conn.execute(tokens.update().where(tokens.c.id == token_id).values(expires_at=created_at + lifetime))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('started_by', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('started_by')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('expires_at')
