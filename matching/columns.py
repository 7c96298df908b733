"""TEMPORARY re-export (issue 12): the column encoding moved to :mod:`profiles.columns`. Kept only while the
service packages are being moved; the coordinator rewrites the remaining imports and deletes this file."""

from profiles.columns import (  # noqa: F401
    DERIVED_FIELDS,
    EPOCH,
    STATED_RULE_FIELDS,
    ProfileBatch,
    codes,
    encode_value,
    values,
)
