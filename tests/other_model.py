"""A tiny random model of another architecture than the course model's, for running the language-model
notebooks with their ``MODEL`` setting changed (tests/test_notebooks.py) and for the tests of what labkit does
with a model that is not the course model.

Qwen2 (not Llama: another family of :data:`labkit.lm.hooks.FAMILIES`, with biased q/k/v projections), 6 layers,
4 query heads on 2 key/value heads, d_model 64, randomly initialised, with the course model's tokenizer (so the
notebooks' texts, chat template and single-token words work), saved with ``save_pretrained`` into a folder that
``labkit.load_lm(folder)`` loads offline.
"""

from __future__ import annotations

from pathlib import Path

import torch

N_LAYERS, N_HEADS = 6, 4


def save_other_model(folder: Path) -> Path:
    """Build the tiny Qwen2 model and write it with the course tokenizer into ``folder``; return the folder."""
    import transformers as T

    from labkit.lm.load import load_lm

    tokenizer = load_lm().tokenizer
    torch.manual_seed(0)
    config = T.Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                           num_hidden_layers=N_LAYERS, num_attention_heads=N_HEADS, num_key_value_heads=2,
                           max_position_embeddings=2048, tie_word_embeddings=True,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    model = T.AutoModelForCausalLM.from_config(config).eval()
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
