"""nightly push: push items, batch cursor, outbox leases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 06:15:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('push_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=140), nullable=False),
    sa.Column('uscc', sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
    sa.Column('policy_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('outbox_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('push_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_item_uscc'), ['uscc'], unique=False)
        batch_op.create_index(batch_op.f('ix_push_item_outbox_id'), ['outbox_id'], unique=False)

    op.create_table('batch_cursor',
    sa.Column('uscc', sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('catalog_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('recheck_on', sa.Date(), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('scored_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('uscc')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch_op.add_column(sa.Column('run_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')
        batch_op.drop_column('run_id')
        batch_op.drop_column('lease_owner')
    op.drop_table('batch_cursor')
    with op.batch_alter_table('push_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_item_outbox_id'))
        batch_op.drop_index(batch_op.f('ix_push_item_uscc'))
    op.drop_table('push_item')
