"""The model layer: what training and inference both need to turn a model name into a model.

Both ``ftserve.training`` and ``ftserve.inference`` use this package, and neither imports the
other, so a fine-tune is loaded, tokenized and rendered at inference exactly as it was trained:

* :mod:`.sources` — where a model source's weights are: the built-in models (``ftserve-tiny``,
  ``smollm2-135m-instruct``), a Hugging Face directory, the local Hugging Face cache, a GGUF file
  (:mod:`.gguf` converts it once into ``<models_dir>/gguf/``; :mod:`.tiny_model` builds
  ``<models_dir>/ftserve-tiny``);
* :mod:`.device` and :mod:`.loading` — the device a process runs on, and the tokenizer and causal
  LM loaded onto it;
* :mod:`.chat` and :mod:`.chat_templates` — message normalisation and chat rendering;
* :mod:`.errors` — :class:`ModelFailed`, the one failure the layer raises.

Importing this package, :mod:`.sources`, :mod:`.chat`, :mod:`.chat_templates` and :mod:`.errors`
costs no torch: the API process uses them (the model registry). :mod:`.device`, :mod:`.loading`,
:mod:`.gguf` and :mod:`.tiny_model` reach for torch and transformers, the first two at import,
the last two only when they build something.
"""

import logging

# bitsandbytes (the QLoRA extra, imported by peft whenever it is installed) warns at import that
# the optional `kernels` package, which fetches CPU kernels from a model hub, is missing. ftserve
# runs offline and bitsandbytes falls back to its own CPU code, so the warning asks a user for
# nothing they can or should do. Set here, before any process that runs models imports peft.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
