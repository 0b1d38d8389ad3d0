"""LTI 1.3: login flows, launches and the scores owed to platforms

Revision ID: 0005_lti
Revises: 0004
Create Date: 2026-12-01 12:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0005_lti'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('lti_flows',
    sa.Column('state', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('state', name=op.f('pk_lti_flows'))
    )
    op.create_index(op.f('ix_lti_flows_expires_at'), 'lti_flows', ['expires_at'], unique=False)
    op.create_table('lti_launches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('learner_id', sa.String(length=63), nullable=False),
    sa.Column('lab_id', sa.String(length=63), nullable=False),
    sa.Column('deployment_id', sa.String(length=255), nullable=False),
    sa.Column('resource_link_id', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('lineitem', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_lti_launches_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lti_launches'))
    )
    op.create_index(op.f('ix_lti_launches_session_id'), 'lti_launches', ['session_id'], unique=False)
    op.create_table('lti_scores',
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('launch_id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=63), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('max_score', sa.Float(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['launch_id'], ['lti_launches.id'], name=op.f('fk_lti_scores_launch_id_lti_launches'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_lti_scores'))
    )
    op.create_index(op.f('ix_lti_scores_session_id'), 'lti_scores', ['session_id'], unique=False)
    op.create_index(op.f('ix_lti_scores_state'), 'lti_scores', ['state'], unique=False)


def downgrade() -> None:
    op.drop_table('lti_scores')
    op.drop_table('lti_launches')
    op.drop_table('lti_flows')
