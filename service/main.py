"""The ``policyfit`` command line: one typer root that mounts the command groups of every adapter.

Errors go to stderr in Chinese; exit 2 = bad input. The groups live beside what they drive — the
command line's own in ``service/cli/``, the nightly batch in ``service/batch/commands.py``, push in
``service/push/commands.py``, ``serve`` in ``service/http/commands.py`` — and only this module sees
them all (the adapters never import each other)."""

from __future__ import annotations

import typer

from service.batch import commands as batch_commands
from service.cli import db, enterprises, match, outcomes, policies, profiles, tokens
from service.http import commands as http_commands
from service.push import commands as push_commands

app = typer.Typer(help="policyfit — 惠企政策双向适配（徐委办〔2023〕37号）", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
app.add_typer(match.app)  # match, search, eval
app.add_typer(policies.app, name="policies")
app.add_typer(profiles.app, name="profiles")
app.add_typer(profiles.demo_app, name="demo")
app.add_typer(tokens.app, name="tokens")
app.add_typer(enterprises.app, name="enterprises")
app.add_typer(outcomes.app, name="outcomes")
app.add_typer(db.app, name="db")
app.add_typer(batch_commands.app, name="batch")
app.add_typer(push_commands.app, name="push")
app.add_typer(http_commands.app)  # serve


def main() -> None:
    app()


if __name__ == "__main__":
    main()
