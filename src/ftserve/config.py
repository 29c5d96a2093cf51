"""Settings, read once at start from ``FTSERVE_*`` variables and CLI flags, then passed explicitly.

Nothing here is a module-level global: the app factory, the worker and the tests each build a
:class:`Settings` and hand it down.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_ORGANIZATION = "personal"
API_KEY_FILE = "api_key"
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and what it accepts."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    key: str
    organization: str  # slug; organization_id is "org-" + slug


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./ftserve-data")
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[ApiKey, ...] = ()
    database_url: str | None = None  # None: SQLite file inside data_dir
    # PostgreSQL: serve event pages from an async pool on the event loop (False: inline sync).
    pg_async_events: bool = True
    max_upload_bytes: int = 1 << 30
    min_training_examples: int = 10
    events_max_limit: int = 10_000
    events_heartbeat: float = 15.0  # seconds between ": ping" comments on an idle event stream
    # How long an idle client connection stays open. Longer than a load balancer's idle timeout
    # (60 s for nginx and AWS ALB), so the balancer, not the server, closes an idle connection:
    # uvicorn's 5 s default equals httpx's keep-alive expiry, and a client reusing a connection
    # just as the server closes it sees a reset.
    keep_alive_seconds: int = 75
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    hf_cache_dir: Path | None = None  # None: HF_HUB_CACHE / HF_HOME / ~/.cache/huggingface/hub
    workers: int = 1  # embedded workers in `ftserve serve`
    log_level: str = "info"
    torch_threads: int = 1
    device: str = "auto"
    concurrency: int = 1  # jobs trained at once by one worker
    lease_seconds: float = 30.0  # a worker silent this long is presumed dead
    max_attempts: int = 3  # crashes before a job is failed for good
    step_log_dir: Path | None = None  # training processes log each step's end time here
    inference: bool = True  # serve /chat/completions and /completions from an inference process
    max_adapters: int = 8  # LoRA adapters kept loaded over their base
    inference_memory: int = 8 << 30  # bytes for loaded models in the inference process
    max_generation_tokens: int = 4096  # cap on n * max_tokens per request
    inference_threads: int | None = None  # None: torch_threads
    # HOST:PORT or unix:PATH of a separate `ftserve inference`; None: spawn one of our own.
    inference_url: str | None = None
    # Blob store (docs/blobs.md): None: the directory data_dir/blobs; s3://bucket/prefix;
    # file:///path (a shared filesystem mounted at that path on every machine).
    blob_url: str | None = None
    s3_endpoint_url: str | None = None  # None: boto3's own (AWS_ENDPOINT_URL, else AWS)
    cache_dir: Path | None = None  # local copies of remote blobs; None: data_dir/cache
    blob_retry_seconds: float = 120.0  # how long a training save rides out an unreachable store
    # Leftovers of cut-off uploads are reclaimed at start once older than this: younger ones
    # may be uploads under way in another process sharing the store.
    upload_grace_seconds: float = 24 * 3600

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.data_dir / "cache"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ftserve.db"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={raw!r}: must be {bound}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: must be a number of seconds") from None
    if not lo <= value <= hi:  # also refuses nan
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi} seconds")
    return value


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_bytes(raw: str, name: str) -> int:
    """``8589934592``, ``8GiB``, ``512MiB``, ``8G`` (= 8 GB), ``1.5GiB``."""
    match = _SIZE.match(raw)
    if match is None:
        raise ConfigError(f"{name}={raw!r}: must be a size in bytes such as 8GiB or 512MiB")
    number, unit = match.group(1), (match.group(2) or "").upper()
    if "I" in unit:
        scale = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        scale = _UNITS[unit.rstrip("B") if unit != "B" else "B"]
    value = int(float(number) * scale)
    if value < 1:
        raise ConfigError(f"{name}={raw!r}: must be at least one byte")
    return value


def parse_flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: must be 1 or 0")


def parse_api_keys(raw: str, name: str = "FTSERVE_API_KEYS") -> tuple[ApiKey, ...]:
    """``KEY`` or ``ORG:KEY`` entries, comma-separated; ORG scopes what the key can see."""
    keys: list[ApiKey] = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        org, sep, key = entry.rpartition(":")
        if not sep:
            org = DEFAULT_ORGANIZATION
        if not _SLUG.match(org):
            raise ConfigError(f"{name}: organization {org!r} must be a slug (letters, digits, - _)")
        if len(key) < 8 or any(c.isspace() for c in key):
            raise ConfigError(f"{name}: every key must be at least 8 characters without spaces")
        keys.append(ApiKey(key=key, organization=org))
    return tuple(keys)


def parse_aliases(raw: str, name: str = "FTSERVE_MODEL_ALIASES") -> dict[str, str]:
    aliases: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        alias, sep, target = entry.partition("=")
        if not sep or not alias.strip() or not target.strip():
            raise ConfigError(f"{name}: entries must look like alias=model, got {entry!r}")
        aliases[alias.strip()] = target.strip()
    return aliases


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    device = env.get("FTSERVE_DEVICE", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"FTSERVE_DEVICE={device!r}: must be auto, cpu or cuda")
    log_level = env.get("FTSERVE_LOG_LEVEL", "info").lower()
    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise ConfigError(f"FTSERVE_LOG_LEVEL={log_level!r}: must be error, warning, info or debug")
    cache = env.get("FTSERVE_HF_CACHE")
    return Settings(
        data_dir=Path(env.get("FTSERVE_DATA_DIR", "./ftserve-data")),
        host=env.get("FTSERVE_HOST", "127.0.0.1"),
        port=_int(env, "FTSERVE_PORT", 8000, 0, 65535),
        api_keys=parse_api_keys(env.get("FTSERVE_API_KEYS", "")),
        database_url=env.get("FTSERVE_DATABASE_URL") or None,
        pg_async_events=parse_flag(
            env.get("FTSERVE_PG_ASYNC_EVENTS") or "1", "FTSERVE_PG_ASYNC_EVENTS"
        ),
        max_upload_bytes=_int(env, "FTSERVE_MAX_UPLOAD_BYTES", 1 << 30, 1),
        min_training_examples=_int(env, "FTSERVE_MIN_TRAINING_EXAMPLES", 10, 1),
        events_max_limit=_int(env, "FTSERVE_EVENTS_MAX_LIMIT", 10_000, 1, 1_000_000),
        events_heartbeat=_seconds(env, "FTSERVE_EVENTS_HEARTBEAT", 15.0, 0.01, 3600.0),
        keep_alive_seconds=_int(env, "FTSERVE_KEEP_ALIVE_SECONDS", 75, 1, 3600),
        model_aliases=parse_aliases(env.get("FTSERVE_MODEL_ALIASES", "")),
        hf_cache_dir=Path(cache) if cache else None,
        workers=_int(env, "FTSERVE_WORKERS", 1, 0, 64),
        log_level=log_level,
        torch_threads=_int(env, "FTSERVE_TORCH_THREADS", 1, 1, 1024),
        device=device,
        concurrency=_int(env, "FTSERVE_CONCURRENCY", 1, 1, 64),
        lease_seconds=float(_int(env, "FTSERVE_LEASE_SECONDS", 30, 2, 86_400)),
        max_attempts=_int(env, "FTSERVE_MAX_ATTEMPTS", 3, 1, 100),
        step_log_dir=Path(env["FTSERVE_STEP_LOG_DIR"]) if env.get("FTSERVE_STEP_LOG_DIR") else None,
        inference=parse_flag(env.get("FTSERVE_INFERENCE") or "1", "FTSERVE_INFERENCE"),
        max_adapters=_int(env, "FTSERVE_MAX_ADAPTERS", 8, 1, 4096),
        inference_memory=parse_bytes(
            env.get("FTSERVE_INFERENCE_MEMORY") or "8GiB", "FTSERVE_INFERENCE_MEMORY"
        ),
        max_generation_tokens=_int(env, "FTSERVE_MAX_GENERATION_TOKENS", 4096, 1, 1 << 24),
        inference_url=env.get("FTSERVE_INFERENCE_URL") or None,
        blob_url=env.get("FTSERVE_BLOB_URL") or None,
        s3_endpoint_url=env.get("FTSERVE_S3_ENDPOINT_URL") or None,
        cache_dir=Path(env["FTSERVE_CACHE_DIR"]) if env.get("FTSERVE_CACHE_DIR") else None,
        blob_retry_seconds=float(_int(env, "FTSERVE_BLOB_RETRY_SECONDS", 120, 0, 86_400)),
        upload_grace_seconds=float(
            _int(env, "FTSERVE_UPLOAD_GRACE_SECONDS", 24 * 3600, 0, 30 * 86_400)
        ),
        inference_threads=(
            _int(env, "FTSERVE_INFERENCE_THREADS", 1, 1, 1024)
            if env.get("FTSERVE_INFERENCE_THREADS")
            else None
        ),
    )


def validate_paths(settings: Settings) -> None:
    if settings.database_url and not settings.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise ConfigError(
            "FTSERVE_DATABASE_URL must be a postgresql:// URL (leave it unset for embedded SQLite)"
        )
    if settings.blob_url is not None:
        from .blobs import parse_blob_url

        try:
            parse_blob_url(settings.blob_url)
        except ValueError as exc:
            raise ConfigError(f"FTSERVE_BLOB_URL: {exc}") from None
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise ConfigError(f"data dir {settings.data_dir} exists and is not a directory")


def ensure_api_keys(settings: Settings) -> tuple[Settings, str | None]:
    """Keys from settings, else the one stored in the data dir, else a new one.

    Returns the settings with keys filled in and, only when a key was generated just now, that key
    (so the caller prints it once).
    """
    if settings.api_keys:
        return settings, None
    path = settings.data_dir / API_KEY_FILE
    if path.exists():
        keys = parse_api_keys(path.read_text().strip(), name=str(path))
        if keys:
            return replace(settings, api_keys=keys), None
    key = "sk-ftserve-" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.replace(tmp, path)
    return replace(settings, api_keys=(ApiKey(key, DEFAULT_ORGANIZATION),)), key
