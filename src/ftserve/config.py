"""Settings, read once at start from ``FTSERVE_*`` variables and CLI flags, then passed explicitly.

Nothing here is a module-level global: the app factory, the worker and the tests each build a
:class:`Settings` and hand it down.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .setting import (
    DEFAULT_ORGANIZATION,
    Aliases,
    ApiKey,
    ApiKeys,
    Bytes,
    Choice,
    ConfigError,
    Int,
    PathValue,
    Seconds,
    Setting,
    Switch,
    Text,
    WholeSeconds,
    declared_setting,
    parse_aliases,
    parse_api_keys,
    parse_bytes,
    parse_flag,
    setting,
)

__all__ = [
    "API_KEY_FILE",
    "DEFAULT_ORGANIZATION",
    "ApiKey",
    "ConfigError",
    "Settings",
    "declared_settings",
    "ensure_api_keys",
    "parse_aliases",
    "parse_api_keys",
    "parse_bytes",
    "parse_flag",
    "settings_from_env",
    "validate_paths",
]

API_KEY_FILE = "api_key"
SERVER_COMMANDS = ("serve", "inference", "worker", "migrate")
_ALL = SERVER_COMMANDS


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: its default, kind of value, meaning, readers and flag.

    ``who`` names the processes that read a setting: A ``ftserve serve``, W the workers (``ftserve
    worker`` and serve's embedded ones), I the inference process, M ``ftserve migrate``.
    """

    # Where state lives.
    data_dir: Path = setting(
        Path("./ftserve-data"),
        PathValue(),
        "SQLite database, directory blob store, converted models, cache, generated `api_key`",
        who="all",
        flag="--data-dir",
        commands=_ALL,
        empty_is_unset=False,
    )
    database_url: str | None = setting(
        None,
        Text(),
        "`postgresql://…`: the PostgreSQL store instead of SQLite (run `ftserve migrate` first)",
        who="all",
        unset="(SQLite in the data dir)",
    )
    pg_async_events: bool = setting(
        True,
        Switch(),
        "PostgreSQL: read event pages through an async pool on the event loop, the pages asked "
        "at once in one statement (`0`: the synchronous read, for comparison)",
        who="A",
    )
    blob_url: str | None = setting(
        None,
        Text(),
        "the blob store: `s3://bucket/prefix`, or `file:///path` on a shared filesystem "
        "mounted at that path on every machine",
        who="A W I",
        unset="(`<data dir>/blobs`)",
    )
    s3_endpoint_url: str | None = setting(
        None,
        Text(),
        "endpoint of an S3-compatible store",
        who="A W I",
        unset="(boto3's: `AWS_ENDPOINT_URL`, else AWS)",
    )
    cache_dir: Path | None = setting(
        None,
        PathValue(),
        "local copies of blobs read from a remote store",
        who="A W I",
        unset="(`<data dir>/cache`)",
    )
    blob_retry_seconds: float = setting(
        120.0,
        WholeSeconds(0, 86_400),
        "how long a training save keeps retrying an unreachable blob store before the job "
        "fails saying so",
        who="W",
    )
    # Younger leftovers may be uploads under way in another process sharing the store.
    upload_grace_seconds: float = setting(
        24 * 3600.0,
        WholeSeconds(0, 30 * 86_400),
        "leftovers of cut-off uploads are reclaimed at start once older than this",
        who="A W",
    )

    # The API.
    host: str = setting(
        "127.0.0.1",
        Text(),
        "listen address (`0.0.0.0` behind a load balancer or in a container)",
        who="A",
        flag="--host",
        commands=("serve",),
        empty_is_unset=False,  # FTSERVE_HOST= listens on every interface
    )
    port: int = setting(
        8000, Int(0, 65535), "listen port", who="A", flag="--port", commands=("serve",)
    )
    api_keys: tuple[ApiKey, ...] = setting(
        (),
        ApiKeys(),
        "the org scopes what a key sees; the same on every replica (and workers: an RFT job's "
        "judge models are called with its organization's key)",
        who="A W I",
        unset="(generated into `api_key`)",
    )
    log_level: str = setting(
        "info",
        Choice(
            "critical",
            "error",
            "warning",
            "info",
            "debug",
            listed="error, warning, info or debug",
            lower=True,
        ),
        "how much is logged (`debug` adds the access log)",
        who="all",
        flag="--log-level",
        commands=_ALL,
        empty_is_unset=False,
    )
    max_upload_bytes: int = setting(1 << 30, Int(1), "largest upload (413 above it)", who="A")
    min_training_examples: int = setting(
        10,
        Int(1),
        "a training file with fewer fails its job with `invalid_n_examples`",
        who="A",
    )
    python_graders: bool = setting(
        True,
        Switch(),
        "accept `python` graders (run in their sandbox); `0`: a grader of that type is a 400 "
        "saying they are turned off",
        who="A",
    )
    events_max_limit: int = setting(
        10_000, Int(1, 1_000_000), "largest `limit` of the list endpoints", who="A"
    )
    events_heartbeat: float = setting(
        15.0,
        Seconds(0.01, 3600.0),
        "seconds between `: ping` heartbeats on an idle live event stream",
        who="A",
    )
    responses_ttl_days: int = setting(
        30,
        Int(1, 3650),
        "days a stored response (`POST /responses` with `store`) is kept; then it is gone as if "
        "deleted",
        who="A",
    )
    # Longer than a load balancer's idle timeout, so the balancer, not the server, closes an idle
    # connection: uvicorn's 5 s default equals httpx's keep-alive expiry, and a client reusing a
    # connection just as the server closes it sees a reset.
    keep_alive_seconds: int = setting(
        75,
        Int(1, 3600),
        "how long an idle client connection stays open; keep it above the load balancer's idle "
        "timeout (nginx and AWS ALB: 60 s) so the balancer closes idle connections, never the "
        "server under a request",
        who="A",
    )
    model_aliases: Mapping[str, str] = setting(
        {}, Aliases(), "names for base models", who="A", factory=dict
    )
    hf_cache_dir: Path | None = setting(
        None,
        PathValue(),
        "Hugging Face cache searched for base models (no downloads)",
        who="A",
        env="FTSERVE_HF_CACHE",
        unset="(`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`)",
    )

    # Training.
    workers: int = setting(
        1,
        Int(0, 64),
        "embedded training workers in `ftserve serve` (`0`: API only)",
        who="A",
        flag="--workers",
        commands=("serve",),
    )
    concurrency: int = setting(
        1,
        Int(1, 64),
        "training processes one worker runs at once on CPU (a job of `ftserve.devices` N takes N); "
        "on a GPU worker, one per GPU it may use",
        who="W",
        flag="--concurrency",
        commands=("worker",),
    )
    device: str = setting(
        "auto",
        Choice("auto", "cpu", "cuda", listed="auto, cpu or cuda"),
        "where models run (`auto`: CUDA when there is a GPU)",
        who="W I",
        empty_is_unset=False,
    )
    torch_threads: int = setting(
        1,
        Int(1, 1024),
        "torch threads per training process (and inference, unless `FTSERVE_INFERENCE_THREADS` "
        "is set)",
        who="W I",
    )
    lease_seconds: float = setting(
        30.0,
        WholeSeconds(2, 86_400),
        "a worker silent this long is presumed dead and its job is resumed elsewhere",
        who="W",
    )
    max_attempts: int = setting(
        3, Int(1, 100), "crashed runs of a job before it fails for good", who="W"
    )
    rendezvous_address: str = setting(
        "127.0.0.1",
        Text(),
        "the address other workers reach this one on when it leads a job on several workers "
        "(`ftserve.nodes`): its ranks' torch.distributed store listens there on a free port",
        who="W",
        empty_is_unset=False,
    )
    gang_wait_seconds: float = setting(
        300.0,
        WholeSeconds(1, 86_400),
        "how long a job on several workers waits for them to join; then it goes back to the "
        "queue (the attempt does not count)",
        who="W",
    )
    judge_url: str | None = setting(
        None,
        Text(),
        "an OpenAI-compatible API (`http://host:port/v1`, e.g. a vLLM server) that RFT training "
        "calls for `score_model`/`label_model` graders' judges; this API's own address when "
        "workers run on other machines",
        who="W",
        unset="(this server: `http://FTSERVE_HOST:FTSERVE_PORT/v1`, `0.0.0.0` as `127.0.0.1`)",
    )
    judge_api_key: str | None = setting(
        None,
        Text(),
        "the key sent to the judges' API",
        who="W",
        unset="(the job's organization's key in `FTSERVE_API_KEYS`)",
    )
    step_log_dir: Path | None = setting(
        None,
        PathValue(),
        "diagnostics: training processes append `step computed_at answered_at answer` per step "
        "to `<job>.<claim>.log` here (the latency benchmark reads it)",
        who="W",
    )

    # Inference.
    inference: bool = setting(
        True,
        Switch(),
        "serve chat and completions from an inference process (`0`: those endpoints answer 503)",
        who="A",
        flag="--inference",
        commands=("serve",),
    )
    inference_url: str | None = setting(
        None,
        Text(),
        "`HOST:PORT` or `unix:PATH` of an `ftserve inference` to use instead of an own "
        "inference process",
        who="A",
    )
    inference_threads: int | None = setting(
        None,
        Int(1, 1024),
        "torch threads of the inference process",
        who="I",
        unset="(`FTSERVE_TORCH_THREADS`)",
    )
    inference_memory: int = setting(
        8 << 30,
        Bytes(),
        "budget for loaded base and full models in the inference process (least recently used "
        "unloaded first)",
        who="I",
    )
    max_adapters: int = setting(
        8, Int(1, 4096), "LoRA adapters kept loaded (LRU) over their base", who="I"
    )
    max_generation_tokens: int = setting(
        4096,
        Int(1, 1 << 24),
        "cap on `n × max_tokens` per request",  # noqa: RUF001
        who="A I",
    )

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


def declared_settings() -> tuple[Setting, ...]:
    """The settings in declaration order, each with its variable, default and declaration."""
    return tuple(declared_setting(f) for f in fields(Settings))


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for s in declared_settings():
        raw = env.get(s.env)
        if raw is None or (raw == "" and s.declared.empty_is_unset):
            continue  # the declared default
        values[s.attr] = s.kind.parse(raw, s.env)
    return Settings(**values)  # type: ignore[arg-type]


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


if __name__ == "__main__":
    from ftserve.setting_table import main

    main()
