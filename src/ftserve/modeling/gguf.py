"""GGUF files (llama.cpp, Ollama, LM Studio) as base models: converted once, then cached.

transformers reads GGUF (tokenizer, chat template and weights; quantized weights are
dequantized), but re-dequantizes on every load (~27 s for a 135M model here) and refuses to
``save_pretrained`` a model loaded that way. So the first use converts: load the GGUF, build a
fresh model of the same config without the quantization marker, move the dequantized weights
into it, and save it with its tokenizer as an ordinary Hugging Face directory (fp32, so the
dequantized values are kept exactly). Later loads take about 2 s.

The cache key is the file's content hash, so a changed file at the same path converts again,
and two names for one file share a directory. The directory appears atomically (written into a
temporary directory, renamed into place) under a file lock, so concurrent jobs and the inference
process convert once between them and never see half a model.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import ModelFailed

log = logging.getLogger("ftserve.gguf")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def content_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir_for(gguf_path: Path, models_dir: Path) -> Path:
    stem = _UNSAFE.sub("-", gguf_path.stem)[:80] or "model"
    return models_dir / "gguf" / f"{stem}-{content_digest(gguf_path)[:16]}"


def converted(gguf_path: Path, models_dir: Path) -> Path:
    """The Hugging Face directory for ``gguf_path``, converting it on first use."""
    if not gguf_path.is_file():
        raise ModelFailed("model_load_failed", f"GGUF file {gguf_path} does not exist.")
    try:
        target = cache_dir_for(gguf_path, models_dir)
    except OSError as exc:
        raise ModelFailed("model_load_failed", f"Could not read {gguf_path}: {exc}") from exc
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a crash
        if (target / "config.json").is_file():  # another process converted it meanwhile
            return target
        log.info("converting %s into %s (once; about 30 s for a small model)", gguf_path, target)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            _convert(gguf_path, tmp)
            os.replace(tmp, target)
        except ModelFailed:
            raise
        except Exception as exc:
            raise ModelFailed(
                "model_load_failed",
                f"Could not convert the GGUF file {gguf_path} into a model: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    loaded: Any = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
        local_files_only=True,
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise ModelFailed(
            "unsupported_model",
            f"The GGUF file {gguf_path} did not convert cleanly (missing weights "
            f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}).",
        )
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
