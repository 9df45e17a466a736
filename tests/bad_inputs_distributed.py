"""Bad-input cases for data-parallel training (issue 21, item 4): labkit.distributed and the ``accelerator``
arguments of LoraDPO.train and LoraRLOO, and LoraRLOO.update. Calls with a parameter receive the session's course
model (see tests/bad_input.py); a trainer inserted into it is always removed."""

from __future__ import annotations

import torch
from bad_input import Bad

from labkit import distributed, dpo, rlhf


def _dp() -> distributed.DataParallel:
    from accelerate import PartialState

    return distributed.DataParallel(PartialState())  # one process: no launcher


def _with_dpo(lm, action):
    """Insert a small LoraDPO (rank 2 on the top layer, 2 responses) into the course model, run ``action``, remove it."""
    p = lm.chat_prompt("Describe the sea in one short sentence.")
    tr = dpo.LoraDPO(lm, [p, p], ["The sea is calm.", "Waves."], n_lora_layers=1, rank=2, device=lm.device)
    try:
        action(tr)
    finally:
        tr.remove()


def _with_rloo(lm, action):
    tr = rlhf.LoraRLOO(lm, ["hi"], lambda t: torch.zeros(len(t)), k=2, n_lora_layers=1, rank=2, max_new_tokens=2)
    try:
        action(tr)
    finally:
        tr.remove()


_ROWS = {"input_ids": torch.ones(3, 4, dtype=torch.long), "attention_mask": torch.ones(3, 4, dtype=torch.long),
         "response_mask": torch.tensor([[0, 0, 1, 1]] * 3)}

CASES = [
    Bad("labkit.distributed.DataParallel", "a device name instead of an Accelerator",
        lambda: distributed.DataParallel("cuda"), TypeError, "accelerator must be an accelerate.Accelerator"),
    Bad("labkit.distributed.DataParallel.shard", "a list instead of a tensor",
        lambda: _dp().shard([0, 1, 2]), TypeError, "items must be a 1-D torch.Tensor"),
    Bad("labkit.distributed.DataParallel.shard", "a 2-D tensor",
        lambda: _dp().shard(torch.zeros(2, 3)), TypeError, r"items must be a 1-D torch.Tensor.*shape \(2, 3\)"),
    Bad("labkit.distributed.DataParallel.sum", "integer values",
        lambda: _dp().sum(torch.tensor([1, 2])), TypeError, "values must be a floating-point torch.Tensor"),
    Bad("labkit.distributed.DataParallel.gather_texts", "one string instead of a list",
        lambda: _dp().gather_texts("a reply"), TypeError, "texts must be a list of strings"),
    Bad("labkit.distributed.DataParallel.broadcast_", "one tensor instead of a list of parameters",
        lambda: _dp().broadcast_(torch.zeros(3)), TypeError, "params must be a list of parameters"),
    Bad("labkit.distributed.DataParallel.sum_gradients_", "no parameters",
        lambda: _dp().sum_gradients_([]), TypeError, "params must be a non-empty list"),
    Bad("labkit.distributed.DataParallel.check_device", "a model on another device than the process's",
        lambda: _dp().check_device("cuda:7"), ValueError, "this process's device"),
    Bad("labkit.distributed.dpo_data", "a model name instead of a model",
        lambda: distributed.dpo_data("smollm2"), TypeError, "lm must be a labkit LanguageModel"),
    Bad("labkit.distributed.dpo_data", "more prompts than the data has",
        lambda lm: distributed.dpo_data(lm, n_prompts=33), ValueError, "n_prompts must be an integer in"),
    Bad("labkit.distributed.dpo_data", "one response per prompt: no pair",
        lambda lm: distributed.dpo_data(lm, n_responses=1), ValueError, "n_responses must be an integer in"),
    Bad("labkit.distributed.main", "one string instead of a list of arguments",
        lambda: distributed.main("dpo --epochs 1"), TypeError, "argv must be a list of command-line arguments"),
    Bad("labkit.dpo.LoraDPO.train", "accelerator given as a device name",
        lambda lm: _with_dpo(lm, lambda tr: tr.train(torch.tensor([0]), torch.tensor([1]), progress=False,
                                                     accelerator="cpu")),
        TypeError, "accelerator must be an accelerate.Accelerator"),
    Bad("labkit.rlhf.LoraRLOO", "accelerator given as a number of processes",
        lambda lm: rlhf.LoraRLOO(lm, ["hi"], lambda t: torch.zeros(len(t)), accelerator=2), TypeError,
        "accelerator must be an accelerate.Accelerator"),
    Bad("labkit.rlhf.LoraRLOO.update", "3 rows for one prompt with k = 2",
        lambda lm: _with_rloo(lm, lambda tr: tr.update(_ROWS, ["a", "b", "c"])), ValueError,
        r"k = 2 responses for each of this process's 1 prompts \(2 rows"),
    Bad("labkit.rlhf.LoraRLOO.update", "one text instead of a list",
        lambda lm: _with_rloo(lm, lambda tr: tr.update(_ROWS, "a")), TypeError, "texts must be a list of response strings"),
    Bad("labkit.rlhf.LoraRLOO.update", "a batch without a response mask",
        lambda lm: _with_rloo(lm, lambda tr: tr.update({"input_ids": _ROWS["input_ids"]}, ["a", "b"])), TypeError,
        "batch must be a dict with input_ids"),
]
