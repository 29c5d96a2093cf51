"""Which base models can be fine-tuned here, and where their weights are.

Resolution order for a ``model`` string: an alias from settings → a local directory in Hugging
Face layout → a model id present in the local Hugging Face cache (never downloaded: this service
runs offline) → the built-in ``ftserve-tiny``. Nothing here imports torch or transformers; a
directory counts as a model when it holds a ``config.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import InvalidValue

TINY = "ftserve-tiny"
TINY_CREATED = 1_767_225_600  # fixed: the built-in model's config never changes


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str  # shown as the job's ``model``
    source: str  # "ftserve-tiny" or an absolute directory the trainer loads
    created: int
    owned_by: str


def hf_cache_dir(settings: Settings) -> Path:
    if settings.hf_cache_dir is not None:
        return settings.hf_cache_dir
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def _cached_snapshot(cache: Path, repo_id: str) -> Path | None:
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        snap = repo / "snapshots" / ref.read_text().strip()
        if _is_model_dir(snap):
            return snap
    snaps = sorted(
        (p for p in (repo / "snapshots").glob("*") if _is_model_dir(p)),
        key=lambda p: p.stat().st_mtime,
    )
    return snaps[-1] if snaps else None


def _mtime(path: Path) -> int:
    return int((path / "config.json").stat().st_mtime)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def resolve(self, model: str) -> ResolvedModel:
        target = self._settings.model_aliases.get(model, model)
        try:
            found = self._find(target)
        except (OSError, RuntimeError, ValueError):
            # Names that are no valid path here (too long, "~nosuchuser", NUL) name no model.
            found = None
        if found is not None:
            return found
        raise InvalidValue(
            f"The model `{model}` does not exist or is not available for fine-tuning on this "
            "server. Use the built-in `ftserve-tiny`, the path of a local Hugging Face model "
            "directory (one with a config.json), a model id already in the local Hugging Face "
            f"cache ({hf_cache_dir(self._settings)}), or map a name to one of those with "
            "FTSERVE_MODEL_ALIASES=name=target. GET /v1/models lists what is available.",
            param="model",
            code="model_not_available",
        )

    def _find(self, target: str) -> ResolvedModel | None:
        if target == TINY:
            return ResolvedModel(TINY, TINY, TINY_CREATED, "ftserve")
        path = Path(target).expanduser()
        if target.startswith(("/", ".", "~")) or path.is_dir():
            if _is_model_dir(path):
                path = path.resolve()
                return ResolvedModel(str(path), str(path), _mtime(path), "local")
            return None
        snap = _cached_snapshot(hf_cache_dir(self._settings), target)
        if snap is not None:
            return ResolvedModel(target, str(snap), _mtime(snap), target.split("/")[0])
        return None

    def available(self) -> list[ResolvedModel]:
        """The built-in model, every alias that resolves, and models in the HF cache."""
        found: dict[str, ResolvedModel] = {TINY: ResolvedModel(TINY, TINY, TINY_CREATED, "ftserve")}
        for alias, target in self._settings.model_aliases.items():
            try:
                resolved = self.resolve(target)
            except InvalidValue:
                continue
            found[alias] = ResolvedModel(alias, resolved.source, resolved.created, "alias")
        cache = hf_cache_dir(self._settings)
        if cache.is_dir():
            for repo in sorted(cache.glob("models--*")):
                repo_id = repo.name[len("models--") :].replace("--", "/")
                snap = _cached_snapshot(cache, repo_id)
                if snap is not None:
                    found.setdefault(
                        repo_id,
                        ResolvedModel(repo_id, str(snap), _mtime(snap), repo_id.split("/")[0]),
                    )
        return list(found.values())


def model_object(m: ResolvedModel) -> dict[str, object]:
    return {"id": m.name, "object": "model", "created": m.created, "owned_by": m.owned_by}
