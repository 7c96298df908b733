"""The hotline console (``/console``, staff) and the public policy calculator (``/calculator``): server-rendered
pages over the same use cases as the JSON API (:mod:`service.app`).

routes (pages and their wiring) · forms (form ↔ profile) · session (sign-in, the session cookie, CSRF) ·
pages (templates and what they show)."""
