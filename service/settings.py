"""Service settings, read once from ``COVERAGE_CRITERIA_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATABASE_FILE = "coverage-criteria.db"  # the default SQLite file, in the data directory
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_RATE_LIMIT_PER_MINUTE = 1200
# CMS-0057-F: decisions within 72 hours for expedited requests, 7 calendar days for standard ones.
DEFAULT_DUE_HOURS_EXPEDITED = 72
DEFAULT_DUE_HOURS_STANDARD = 7 * 24


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    rules_dir: Path | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    public_url: str | None = None
    cds_clients_file: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    due_hours_expedited: int = DEFAULT_DUE_HOURS_EXPEDITED
    due_hours_standard: int = DEFAULT_DUE_HOURS_STANDARD

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from the environment; creates the data directory if it is missing, readable
        by its owner only (0700): it holds cases.

        - ``COVERAGE_CRITERIA_DATA_DIR``: default ``./data``
        - ``COVERAGE_CRITERIA_DATABASE_URL``: default SQLite file ``coverage-criteria.db``
          in the data directory; ``postgresql://…`` selects PostgreSQL
        - ``COVERAGE_CRITERIA_RULES_DIR``: rule files to load instead of the bundled ones
        - ``COVERAGE_CRITERIA_MAX_BODY_BYTES``: request body limit, default 1 MiB
        - ``COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE``: requests per API key per minute (per worker
          process), in bursts of up to as many; default 1200; 0 turns the limit off
        - ``COVERAGE_CRITERIA_PUBLIC_URL``: the service's public base URL (CDS Hooks tokens name
          an endpoint under it as their audience)
        - ``COVERAGE_CRITERIA_CDS_CLIENTS``: JSON file of the CDS Hooks clients trusted, with their keys
        - ``COVERAGE_CRITERIA_TRUSTED_PROXIES``: comma-separated addresses or networks (``10.0.0.0/8``)
          of the reverse proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed;
          default none: the client address is the connection's, whatever the headers say
        - ``COVERAGE_CRITERIA_DUE_HOURS_EXPEDITED``, ``COVERAGE_CRITERIA_DUE_HOURS_STANDARD``: hours
          from a request's receipt to its due time (default 72 and 168, CMS-0057-F's timeframes)
        """
        data_dir = Path(environ.get("COVERAGE_CRITERIA_DATA_DIR") or "data").resolve()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database_url = environ.get("COVERAGE_CRITERIA_DATABASE_URL") or (
            f"sqlite:///{data_dir / DATABASE_FILE}"
        )
        rules_dir = environ.get("COVERAGE_CRITERIA_RULES_DIR")
        cds_clients = environ.get("COVERAGE_CRITERIA_CDS_CLIENTS")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            rules_dir=Path(rules_dir) if rules_dir else None,
            public_url=(environ.get("COVERAGE_CRITERIA_PUBLIC_URL") or "").rstrip("/") or None,
            cds_clients_file=Path(cds_clients) if cds_clients else None,
            trusted_proxies=_networks(environ, "COVERAGE_CRITERIA_TRUSTED_PROXIES"),
            max_body_bytes=_whole_number(environ, "COVERAGE_CRITERIA_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1),
            rate_limit_per_minute=_whole_number(
                environ, "COVERAGE_CRITERIA_RATE_LIMIT_PER_MINUTE", DEFAULT_RATE_LIMIT_PER_MINUTE, 0
            ),
            **due_hours_from_env(environ),
        )


def due_hours_from_env(environ: Mapping[str, str] = os.environ) -> dict[str, int]:
    """The two request clocks alone (the migration that groups stored evaluations reads them too)."""
    return {
        "due_hours_expedited": _whole_number(
            environ, "COVERAGE_CRITERIA_DUE_HOURS_EXPEDITED", DEFAULT_DUE_HOURS_EXPEDITED, 1),
        "due_hours_standard": _whole_number(
            environ, "COVERAGE_CRITERIA_DUE_HOURS_STANDARD", DEFAULT_DUE_HOURS_STANDARD, 1),
    }


def _whole_number(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _networks(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks, each checked (a typo must not trust nobody, or everybody)."""
    values = tuple(part.strip() for part in (environ.get(name) or "").split(",") if part.strip())
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{name} must list IP addresses or networks (such as 10.0.0.0/8), got {value!r}") from None
    return values
