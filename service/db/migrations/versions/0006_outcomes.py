"""outcomes: what became of a firm and a policy (applied / granted / refused), each firm's region and size class
for the funnel, and indexes to read one policy's snapshot, push items and feedback

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outcome',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uscc', sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
    sa.Column('policy_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('amount_wan', sa.Float(), nullable=True),
    sa.Column('decided_on', sa.Date(), nullable=False),
    sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uscc', 'policy_id', 'outcome', 'decided_on', name='uq_outcome')
    )
    with op.batch_alter_table('outcome', schema=None) as batch_op:
        batch_op.create_index('ix_outcome_policy', ['policy_id', 'uscc', 'decided_on', 'outcome', 'recorded_at'],
                              unique=False)

    op.create_table('enterprise_class',
    sa.Column('uscc', sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
    sa.Column('region', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
    sa.Column('size', sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('source_updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('uscc'),
    sqlite_with_rowid=False
    )
    with op.batch_alter_table('enterprise_class', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enterprise_class_source_updated_at'), ['source_updated_at'], unique=False)

    # one policy's rows, read from the index alone: the existing indexes of these tables lead with the firm
    with op.batch_alter_table('match_snapshot', schema=None) as batch_op:
        batch_op.create_index('ix_match_snapshot_policy', ['policy_id', 'status', 'uscc'], unique=False)
    with op.batch_alter_table('push_item', schema=None) as batch_op:
        batch_op.create_index('ix_push_item_policy', ['policy_id', 'uscc', 'outbox_id'], unique=False)
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_policy', ['policy_id', 'kind', 'uscc', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_policy')
    with op.batch_alter_table('push_item', schema=None) as batch_op:
        batch_op.drop_index('ix_push_item_policy')
    with op.batch_alter_table('match_snapshot', schema=None) as batch_op:
        batch_op.drop_index('ix_match_snapshot_policy')
    with op.batch_alter_table('enterprise_class', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enterprise_class_source_updated_at'))
    op.drop_table('enterprise_class')
    with op.batch_alter_table('outcome', schema=None) as batch_op:
        batch_op.drop_index('ix_outcome_policy')
    op.drop_table('outcome')
