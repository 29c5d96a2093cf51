"""Imported once by the worker's fork server (runner.py), so that every CPU training process
forked from it starts with the training engine loaded.

Measured on the 2-core test machine, a spawned child spent ~7 s of a one-step ``ftserve-tiny``
job importing torch (~2.3 s), transformers (~1.7 s with its model classes) and peft (~3.2 s)
before its first step (about 0.5 s). Forked from a process that imported them already, a child
starts in milliseconds. Nothing here may start a thread or initialise a device: a fork copies
only the calling thread, and CUDA cannot be used in a child forked after it was initialised.
"""

from __future__ import annotations

import contextlib

import peft  # noqa: F401
import safetensors.torch  # noqa: F401
import torch  # noqa: F401
import transformers.models.llama.modeling_llama  # noqa: F401 - ftserve-tiny and SmolLM2
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

import ftserve.training.trainer
import ftserve.worker.child

with contextlib.suppress(ImportError):  # the postgres extra, when installed
    import ftserve.store.postgres  # noqa: F401
