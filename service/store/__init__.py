"""Data access: one module per table owner, keyword-only functions, validation before any write.

values (content hashes, what may be stored) · principals (who a token row is: the one check) ·
enterprises · catalog (policy versions, catalog revision) · tokens · console_sessions · audit (audit log,
feedback) · limits (rate-limit windows)."""
