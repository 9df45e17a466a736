"""The per-process half of tests/test_distributed.py (not a test file): started by ``accelerate launch`` on two
CPU processes, it trains a tiny random Llama (a folder saved by the test) three ways and writes, per process,
what the test compares with one-process runs:

1. the command line, ``labkit.distributed.main(["dpo", ...])`` on notebook 12's pairs (uneven shards: 9 and 3
   pairs per step over 2 processes) → ``dpo_rank<r>.pt``;
2. ``LoraDPO.train`` with one pair per step, so process 1's shard is always empty → ``dpo_single_pair_rank<r>.pt``;
3. ``LoraRLOO.train`` on 3 prompts (shards of 2 and 1), recording each step's samples → ``rloo_rank<r>.pt``.

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py MODEL_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

# the settings the test compares against (shared with tests/test_distributed.py)
DPO_ARGS = ["--prompts", "4", "--responses", "3", "--epochs", "2", "--groups-per-step", "3", "--n-lora-layers", "2",
            "--rank", "4", "--lr", "1e-2", "--beta", "0.5", "--seed", "3"]
SINGLE_PAIRS = {"chosen": [0, 3, 4], "rejected": [1, 5, 2], "pairs_per_step": 1, "lr": 1e-2, "beta": 0.5, "seed": 1}
RLOO = {"n_prompts": 3, "k": 2, "max_new_tokens": 4, "n_lora_layers": 1, "rank": 2, "lr": 1e-2, "seed": 5, "steps": 2}


def length_reward(texts):
    return torch.tensor([len(t) / 10 for t in texts])


def rloo_prompts(lm) -> list[str]:
    return [lm.chat_prompt(f"Describe object number {i} in one short sentence.") for i in range(RLOO["n_prompts"])]


def main(folder: str, out: str) -> None:
    from accelerate import Accelerator

    from labkit import distributed, dpo, rlhf
    from labkit.lm import load_lm

    out = Path(out)
    distributed.main(["dpo", "--model", folder, "--out", str(out), *DPO_ARGS])

    acc = Accelerator(cpu=True)
    rank = acc.process_index
    lm = load_lm(folder, device="cpu")
    data = distributed.dpo_data(lm, 2, 3)
    trainer = dpo.LoraDPO(lm, data["prompts"], data["responses"], n_lora_layers=1, rank=2, device="cpu", seed=1)
    hist = trainer.train(torch.tensor(SINGLE_PAIRS["chosen"]), torch.tensor(SINGLE_PAIRS["rejected"]),
                         beta=SINGLE_PAIRS["beta"], epochs=1, pairs_per_step=1, lr=SINGLE_PAIRS["lr"],
                         seed=SINGLE_PAIRS["seed"], progress=False, accelerator=acc)
    torch.save({"history": hist, "adapter": [p.detach().clone() for p in trainer.adapter_parameters]},
               out / f"dpo_single_pair_rank{rank}.pt")
    trainer.remove()

    tr = rlhf.LoraRLOO(lm, rloo_prompts(lm), length_reward, k=RLOO["k"], max_new_tokens=RLOO["max_new_tokens"],
                       n_lora_layers=RLOO["n_lora_layers"], rank=RLOO["rank"], lr=RLOO["lr"], device="cpu",
                       seed=RLOO["seed"], accelerator=acc)
    samples = []
    sample = tr.sample

    def recording_sample(adapter=True):
        batch, texts = sample(adapter)
        samples.append((batch, texts))
        return batch, texts

    tr.sample = recording_sample
    hist = tr.train(RLOO["steps"], progress=False)
    torch.save({"history": hist, "samples": samples,
                "adapter": [p.detach().clone() for p in tr.adapter.adapter_parameters]}, out / f"rloo_rank{rank}.pt")
    acc.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:])
