"""sessions, events, api tokens, submissions, leases

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 09:29:33.281095
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('learner_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('sha256', name=op.f('uq_api_tokens_sha256'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=63), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('sessions',
    sa.Column('id', sa.String(length=63), nullable=False),
    sa.Column('lab_id', sa.String(length=63), nullable=False),
    sa.Column('learner_id', sa.String(length=128), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('namespace', sa.String(length=63), nullable=True),
    sa.Column('budget_usd', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ready_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('live_key', sa.String(length=200), nullable=True),
    sa.Column('cleanup_pending', sa.Boolean(), nullable=False),
    sa.Column('accrued_usd', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('burn_rate_usd_per_hour', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('last_metered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('meter_note', sa.Text(), nullable=True),
    sa.Column('pod_hours', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('spot_pod_hours', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('idle_usd', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('starter_burn_rate_usd_per_hour', sa.Numeric(precision=14, scale=6), nullable=True),
    sa.Column('thresholds_crossed', sa.JSON(), nullable=False),
    sa.Column('budget_extra_usd', sa.Numeric(precision=12, scale=4), nullable=False),
    sa.Column('budget_request_usd', sa.Numeric(precision=12, scale=4), nullable=True),
    sa.Column('budget_request_reason', sa.Text(), nullable=True),
    sa.Column('suspend_reason', sa.String(length=20), nullable=True),
    sa.Column('last_activity_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expiry_warned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sessions')),
    sa.UniqueConstraint('live_key', name=op.f('uq_sessions_live_key'))
    )
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sessions_lab_id'), ['lab_id'], unique=False)
        batch_op.create_index('ix_sessions_lab_learner_state', ['lab_id', 'learner_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_sessions_learner_id'), ['learner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sessions_state'), ['state'], unique=False)

    op.create_table('session_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_session_events_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_session_events'))
    )
    with op.batch_alter_table('session_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_events_session_id'), ['session_id'], unique=False)

    op.create_table('submissions',
    sa.Column('id', sa.String(length=63), nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('graded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('score', sa.Numeric(precision=10, scale=4), nullable=True),
    sa.Column('max_score', sa.Numeric(precision=10, scale=4), nullable=True),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('receipt', sa.JSON(), nullable=True),
    sa.Column('snapshot', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_submissions_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_submissions')),
    sa.UniqueConstraint('session_id', 'attempt', name='uq_submissions_session_attempt')
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submissions_session_id'), ['session_id'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submissions_session_id'))

    op.drop_table('submissions')
    with op.batch_alter_table('session_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_events_session_id'))

    op.drop_table('session_events')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sessions_state'))
        batch_op.drop_index(batch_op.f('ix_sessions_learner_id'))
        batch_op.drop_index('ix_sessions_lab_learner_state')
        batch_op.drop_index(batch_op.f('ix_sessions_lab_id'))

    op.drop_table('sessions')
    op.drop_table('leases')
    op.drop_table('api_tokens')

