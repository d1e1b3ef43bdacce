"""Configuration: one pydantic-settings class, read from ``TIERWISE_*`` variables.

Settings are built once at the edge (CLI, app factory) and passed in; nothing reads the
environment at import time.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tierwise.db"


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver we ship."""
    for prefix in ("postgresql+asyncpg://", "sqlite+aiosqlite://"):
        if url.startswith(prefix):
            return url
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    raise ValueError("database_url must be a sqlite:// or postgresql:// URL")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERWISE_", extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL; SQLite file by default, postgresql://… in production.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Request body limit.")
    auth_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long a verified API key is trusted in-process."
    )
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=200,
        description="Connections kept open per process (10 more may open under bursts).",
    )
    sweep_interval_seconds: float = Field(
        default=300.0, ge=0, description="Period of the in-process sweep job; 0 turns it off."
    )
    status_docs: bool = Field(
        default=True,
        description="Serve status reads from stored documents on PostgreSQL (a cache).",
    )
    status_docs_verify: bool = Field(
        default=False,
        description="Recompute every stored status document served and fail on a difference "
        "(for tests).",
    )
    gc_tuning: bool = Field(
        default=True,
        description="At server start, freeze the imported heap and collect garbage less "
        "often (a batch of 1,000 activities spent ~10 % of its time in collections).",
    )
    group_commit: bool = Field(
        default=True,
        description="Record single activities that arrive together in one transaction "
        "(each still gets its own answer; see services/group_commit.py).",
    )
    server_time_zone: str = Field(
        default="UTC", description="Zone the Capillary dialect renders timestamps in."
    )

    @field_validator("database_url")
    @classmethod
    def _normalise(cls, value: str) -> str:
        return normalise_database_url(value)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
