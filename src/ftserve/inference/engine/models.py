"""Which weights answer a request, loaded once and shared.

Three kinds of served model (``ServedModel.kind``):

* ``base``: the materialized ``base_source`` directory.
* ``lora``: that same base, with the PEFT adapter in ``weights`` loaded over it. The first adapter
  wraps the base in a ``PeftModel``; later ones are ``load_adapter``-ed into the same wrapper, so
  any number of fine-tunes of one base cost one copy of the base. At most
  ``settings.max_adapters`` adapters stay loaded per base; the least recently used one that no
  running row needs is deleted when another comes in (if every loaded adapter is in use, the limit
  is exceeded until rows finish, rather than making a request wait).
* ``full``: its own model, loaded from ``weights``.

Bases and full models are one :class:`LoadedModel` each, kept in LRU order and counted against
``settings.memory_budget`` (bytes of parameters); unused ones are unloaded, least recently used
first, to make room. A model in use by a running row is never unloaded, nor is the most recently
used one; a model that does not fit even so is loaded anyway (the budget is a target, not a
refusal).

Rows of the base model and of any of its adapters can share one batch: once a base carries
adapters every forward goes through the ``PeftModel`` with ``adapter_names`` per row
(``"__base__"`` for the plain base). Tokenizers come from ``weights`` for lora/full models (the
trainer saved the chat template it used there) and from the base directory otherwise, through
``load_tokenizer`` so the fallback template and pad token are the ones training used.

Nothing here writes under a model directory.
"""

from __future__ import annotations

import inspect
import itertools
import warnings
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ftserve.blobs import BlobCache, BlobError, BlobUnavailable, open_blobs_url
from ftserve.inference.engine.vocab import Vocab
from ftserve.inference.protocol import EngineSettings, ServedModel
from ftserve.modeling.chat_templates import CHATML_END_OF_TURN
from ftserve.modeling.constraint import Grammars
from ftserve.modeling.device import DeviceChoice
from ftserve.modeling.errors import ModelFailed
from ftserve.modeling.loading import freeze, load_model, load_tokenizer
from ftserve.modeling.sources import materialize

BASE_ADAPTER = "__base__"
_INFO_CACHE = 64


class ModelUnavailable(Exception):
    """The model's files are missing or cannot be loaded; the message is meant for the user."""


@dataclass(frozen=True)
class ModelInfo:
    """What validating and rendering a request needs; no weights loaded yet."""

    served: ServedModel
    group: str  # the loaded model that runs it: base dir for base/lora, weights dir for full
    model_dir: Path
    adapter_dir: Path | None
    tokenizer: Any
    vocab: Vocab
    context_length: int
    vocab_size: int
    stop_ids: frozenset[int]
    pad_id: int
    # The chat template writes this end-of-turn text but the vocabulary has no token for it
    # (ftserve's ChatML fallback on a plain tokenizer): it ends a chat answer as a stop string.
    chat_stop_text: str | None
    grammars: Grammars  # constrained decoding's compiled grammars, for this tokenizer


class LoadedModel:
    """One base or full model in memory, with the adapters loaded over it."""

    def __init__(self, key: str, model: Any, size: int):
        self.key = key
        self.model = model
        self.device = next(model.parameters()).device
        # Most causal LMs can skip the vocabulary projection for all but the last position.
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.peft: Any = None
        self.size = size
        self.users = 0
        self.adapters: OrderedDict[str, str] = OrderedDict()  # adapter dir → adapter name
        self.adapter_users: Counter[str] = Counter()

    @property
    def config(self) -> Any:
        return self.model.config

    def forward(self, adapters: Sequence[str | None], **kwargs: Any) -> Any:
        if self.peft is None:
            return self.model(**kwargs)
        names = [name or BASE_ADAPTER for name in adapters]
        return self.peft(**kwargs, adapter_names=names)


def _param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _files_bytes(directory: Path) -> int:
    patterns = ("*.safetensors", "*.bin", "*.pt")
    return sum(p.stat().st_size for pattern in patterns for p in directory.glob(pattern))


def _context_length(config: Any, tokenizer: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return 2048


def _eos_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


class ModelStore:
    def __init__(self, settings: EngineSettings, device: DeviceChoice):
        self.settings = settings
        self.device = device
        self.models_dir = Path(settings.models_dir)
        self._infos: OrderedDict[tuple[str, str, str | None], ModelInfo] = OrderedDict()
        self._tokenizers: dict[Path, Any] = {}
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._names = (f"adapter{i}" for i in itertools.count())
        self._blobs: BlobCache | None = None  # opened on the first model in a remote blob store

    # -- what a request needs before it runs --------------------------------------------------

    def info(self, served: ServedModel) -> ModelInfo:
        key = (served.kind, served.base_source, served.weights)
        cached = self._infos.get(key)
        if cached is not None:
            self._infos.move_to_end(key)
            return cached
        info = self._make_info(served)
        self._infos[key] = info
        while len(self._infos) > _INFO_CACHE:
            self._infos.popitem(last=False)
        return info

    def _make_info(self, served: ServedModel) -> ModelInfo:
        from transformers import AutoConfig, GenerationConfig

        adapter_dir: Path | None = None
        if served.kind == "base":
            model_dir = self._materialize(served.base_source)
            tokenizer_dir = model_dir
        else:
            if not served.weights:
                raise ModelUnavailable(f"Model {served.name!r} has no weights directory.")
            weights = self._weights_dir(served.name, served.weights)
            marker = "adapter_config.json" if served.kind == "lora" else "config.json"
            if not (weights / marker).is_file():
                raise ModelUnavailable(
                    f"The weights of model {served.name!r} are missing: {weights / marker} "
                    "does not exist."
                )
            tokenizer_dir = weights
            if served.kind == "lora":
                adapter_dir = weights
                model_dir = self._materialize(served.base_source)
            else:
                model_dir = weights
        tokenizer = self._tokenizer(tokenizer_dir)
        try:
            config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        except Exception as exc:
            raise ModelUnavailable(
                f"Could not read the model config in {model_dir}: {exc}"
            ) from exc
        stop_ids = _eos_ids(tokenizer.eos_token_id) | _eos_ids(
            getattr(config, "eos_token_id", None)
        )
        if (model_dir / "generation_config.json").is_file():
            try:
                generation = GenerationConfig.from_pretrained(model_dir, local_files_only=True)
            except Exception as exc:
                raise ModelUnavailable(
                    f"Could not read the generation config in {model_dir}: {exc}"
                ) from exc
            stop_ids |= _eos_ids(generation.eos_token_id)
        end_of_turn = tokenizer.convert_tokens_to_ids(CHATML_END_OF_TURN)
        unk = tokenizer.unk_token_id
        chat_stop_text: str | None = None
        if isinstance(end_of_turn, int) and end_of_turn != unk and end_of_turn >= 0:
            stop_ids.add(end_of_turn)
        elif CHATML_END_OF_TURN in str(tokenizer.chat_template or ""):
            chat_stop_text = CHATML_END_OF_TURN
        vocab_size = int(getattr(config, "vocab_size", 0) or len(tokenizer))
        return ModelInfo(
            served=served,
            group=str(model_dir),
            model_dir=model_dir,
            adapter_dir=adapter_dir,
            tokenizer=tokenizer,
            vocab=Vocab(tokenizer),
            context_length=_context_length(config, tokenizer),
            vocab_size=vocab_size,
            stop_ids=frozenset(i for i in stop_ids if 0 <= i < vocab_size),
            pad_id=int(tokenizer.pad_token_id),
            chat_stop_text=chat_stop_text,
            grammars=Grammars(tokenizer, (i for i in stop_ids if 0 <= i < vocab_size)),
        )

    def _weights_dir(self, name: str, weights: str) -> Path:
        """A local directory: ``weights`` itself, or, when it is a remote blob store's location,
        this process's cached copy (downloaded once; content under a key never changes)."""
        if not weights.startswith("s3://"):
            return Path(weights)
        if self._blobs is None:
            if not self.settings.blob_url or not self.settings.cache_dir:
                raise ModelUnavailable(
                    f"The weights of model {name!r} are in {weights}, but this inference process "
                    "has no blob store (set FTSERVE_BLOB_URL as for the API and workers)."
                )
            cache = Path(self.settings.cache_dir)
            blobs = open_blobs_url(
                self.settings.blob_url, cache, endpoint_url=self.settings.s3_endpoint_url
            )
            self._blobs = BlobCache(blobs, cache)
        key = self._blobs.blobs.key_of(weights)
        if key is None:
            raise ModelUnavailable(
                f"The weights of model {name!r} are in {weights}, outside this inference "
                f"process's blob store ({self.settings.blob_url})."
            )
        try:
            return self._blobs.tree(key)
        except (BlobError, BlobUnavailable) as exc:
            raise ModelUnavailable(
                f"The weights of model {name!r} could not be fetched from {weights}: {exc}"
            ) from exc

    def _materialize(self, source: str) -> Path:
        try:
            return materialize(source, self.models_dir)
        except ModelFailed as exc:
            raise ModelUnavailable(exc.message) from exc
        except Exception as exc:
            raise ModelUnavailable(f"Could not prepare the base model {source!r}: {exc}") from exc

    def _tokenizer(self, directory: Path) -> Any:
        tokenizer = self._tokenizers.get(directory)
        if tokenizer is None:
            try:
                tokenizer = load_tokenizer(directory)
            except ModelFailed as exc:
                raise ModelUnavailable(exc.message) from exc
            self._tokenizers[directory] = tokenizer
        return tokenizer

    # -- weights ------------------------------------------------------------------------------

    def acquire(self, info: ModelInfo) -> tuple[LoadedModel, str | None]:
        """The loaded model for ``info`` and the adapter name its rows use (None: plain model).
        Pair every call with :meth:`release`."""
        loaded = self.loaded.get(info.group)
        if loaded is None:
            loaded = self._load(info)
        self.loaded.move_to_end(info.group)
        adapter: str | None = None
        if info.adapter_dir is not None:
            adapter = self._adapter(loaded, info.adapter_dir)
            loaded.adapter_users[adapter] += 1
        loaded.users += 1
        return loaded, adapter

    def release(self, loaded: LoadedModel, adapter: str | None) -> None:
        loaded.users -= 1
        if adapter is not None:
            loaded.adapter_users[adapter] -= 1
            if loaded.adapter_users[adapter] <= 0:
                del loaded.adapter_users[adapter]
        self._trim_adapters(loaded)
        # The most recently used model stays even over budget: the next request likely wants it.
        self._fit_budget(0, keep=next(reversed(self.loaded), None))

    def _load(self, info: ModelInfo) -> LoadedModel:
        self._fit_budget(_files_bytes(info.model_dir))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = freeze(load_model(info.model_dir, self.device, frozen_base=True))
        except ModelFailed as exc:
            raise ModelUnavailable(exc.message) from exc
        except Exception as exc:
            raise ModelUnavailable(f"Could not load {info.model_dir}: {exc}") from exc
        loaded = LoadedModel(info.group, model, _param_bytes(model))
        self.loaded[info.group] = loaded
        self._fit_budget(0, keep=info.group)
        return loaded

    def _fit_budget(self, incoming: int, keep: str | None = None) -> None:
        total = sum(m.size for m in self.loaded.values())
        for key in list(self.loaded):
            if total + incoming <= self.settings.memory_budget:
                break
            candidate = self.loaded[key]
            if candidate.users > 0 or key == keep:
                continue
            del self.loaded[key]
            total -= candidate.size
            self._free(candidate)

    def _free(self, loaded: LoadedModel) -> None:
        loaded.model = loaded.peft = None
        if self.device.device.type == "cuda":
            torch.cuda.empty_cache()

    def _adapter(self, loaded: LoadedModel, adapter_dir: Path) -> str:
        key = str(adapter_dir)
        name = loaded.adapters.get(key)
        if name is not None:
            loaded.adapters.move_to_end(key)
            return name
        name = next(self._names)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if loaded.peft is None:
                    from peft import PeftModel

                    peft = PeftModel.from_pretrained(
                        loaded.model, adapter_dir, adapter_name=name, is_trainable=False
                    )
                    loaded.peft = freeze(peft)
                else:
                    loaded.peft.load_adapter(adapter_dir, adapter_name=name, is_trainable=False)
                    freeze(loaded.peft)
        except Exception as exc:
            raise ModelUnavailable(
                f"Could not load the LoRA adapter in {adapter_dir}: {exc}"
            ) from exc
        loaded.adapters[key] = name
        self._trim_adapters(loaded)
        return name

    def _trim_adapters(self, loaded: LoadedModel) -> None:
        excess = len(loaded.adapters) - self.settings.max_adapters
        for key, name in list(loaded.adapters.items()):
            if excess <= 0:
                break
            if loaded.adapter_users.get(name, 0) > 0:
                continue
            with warnings.catch_warnings():
                # Deleting the active adapter makes PEFT announce its new choice; every forward
                # names its adapters explicitly, so the choice does not matter.
                warnings.simplefilter("ignore")
                loaded.peft.delete_adapter(name)
            del loaded.adapters[key]
            excess -= 1
