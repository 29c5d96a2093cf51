"""ftserve-tiny: a small model built on the spot, for demos and tests on machines without a hub.

It is a 2-layer Llama (hidden size 128, 4 heads, MLP 256) with a byte-level tokenizer: token ids
0-255 are the bytes themselves and five special tokens follow (``<|pad|>``, ``<|bos|>``,
``<|eos|>``, ``<|im_start|>``, ``<|im_end|>``), so any UTF-8 text is encodable without training a
vocabulary. The weights are a seeded random initialisation: the model knows nothing, which makes a
falling loss easy to see.

The build is deterministic (fixed config, fixed seed, fixed vocabulary), and the result is saved
with ``save_pretrained`` into ``<models_cache_dir>/ftserve-tiny``. Jobs then load it by path
through the same code as a user's model. The directory appears atomically: it is written into a
private temporary directory next to it and renamed into place; if two processes race, the loser
sees the rename fail (or finds the directory already there) and throws its copy away. An existing
``ftserve-tiny`` directory is trusted as complete, because nothing else ever creates it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .chat_templates import TINY_CHAT_TEMPLATE
from .sources import TINY_MODEL_NAME

SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>")
_SEED = 20240611


def _bytes_to_unicode() -> dict[int, str]:
    """The reversible byte → printable character map that byte-level BPE vocabularies use.

    Printable Latin-1 bytes stand for themselves; the rest are shifted past U+0100 so no byte maps
    to whitespace or a control character.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping: dict[int, str] = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            mapping[byte] = chr(byte)
        else:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


def build_byte_tokenizer(chat_template: str | None = TINY_CHAT_TEMPLATE):  # type: ignore[no-untyped-def]
    """A fast tokenizer with one token per byte (ids 0-255) and the special tokens after them.

    Returns a ``PreTrainedTokenizerFast``; with ``chat_template=None`` it has no chat template
    (tests use that to exercise the fallback).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {char: byte for byte, char in _bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # Without merges every byte stays its own token, so regex splitting would only cost time.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    bos = ("<|bos|>", backend.token_to_id("<|bos|>"))
    # Plain text (a prompt/completion row) starts with BOS like a rendered chat does; chat
    # templates add it themselves and are tokenized without special tokens.
    backend.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[bos]
    )
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=2048,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _build(target: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_tokenizer()
    vocab_size = len(tokenizer)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        pad_token_id=ids["<|pad|>"],
        bos_token_id=ids["<|bos|>"],
        eos_token_id=ids["<|eos|>"],
    )
    # Seed a private generator state so building never disturbs (or depends on) the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids["<|bos|>"],
        pad_token_id=ids["<|pad|>"],
        eos_token_id=[ids["<|eos|>"], ids["<|im_end|>"]],
    )
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def ensure_tiny_model(models_cache_dir: Path) -> Path:
    """Return the path of ftserve-tiny, building it first if this cache does not have it yet."""
    target = Path(models_cache_dir) / TINY_MODEL_NAME
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{TINY_MODEL_NAME}-", dir=target.parent))
    try:
        _build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            # Another process renamed its copy into place first; theirs is as good as ours.
            if not target.is_dir():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
