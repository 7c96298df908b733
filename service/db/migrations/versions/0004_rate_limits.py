"""rate limits: a per-minute call counter shared by every worker

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 12:40:00
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_limit_window',
    sa.Column('bucket', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('window_no', sa.Integer(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('bucket', 'window_no')
    )
    with op.batch_alter_table('rate_limit_window', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rate_limit_window_window_no'), ['window_no'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('rate_limit_window', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rate_limit_window_window_no'))

    op.drop_table('rate_limit_window')
