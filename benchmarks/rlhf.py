"""On-policy RLHF throughput (sampled responses per second): labkit's LoraRLOO against a naive loop and TRL's RLOOTrainer.

* **naive**: the same LoRA adapter and RLOO update, but one response per ``generate`` call, and every step runs
  the full model three more times on the samples: adapter off (reference), on (old log-probabilities), on with
  gradients;
* **labkit** (``rlhf.LoraRLOO``): all k responses to all prompts in one ``generate`` call; the frozen lower layers
  run once per batch (``dpo.LoraDPO.cache_responses``), and only the adapted top layers run for the reference,
  the policy and the gradient;
* **TRL** (``trl.RLOOTrainer`` with a ``peft`` LoRA config on the same layers): the same model, prompts, k,
  response length, β and reward function.

All three: SmolLM2-135M-Instruct, LoRA rank 8 on the top 4 layers, 4 prompts × k = 4 responses per step (16
samples), at most 16 new tokens, β = 0.05, reward = a linear Bradley-Terry reward model on all-MiniLM-L6-v2
embeddings (as in notebook 11), one update per step, measured in one run after a warm-up step. Writes
benchmarks/rlhf.md (+ .json) next to itself. Usage: python benchmarks/rlhf.py [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

import labkit
from labkit import dpo, preference, rlhf

HERE = Path(__file__).resolve().parent
K, NEW, BETA, LR, LAYERS = 4, 16, 0.05, 5e-3, 4


def setup_data():
    data = preference.load_preference_data()
    rs, pairs = data["responses"], data["pairs"]
    phi = preference.embed_responses([r["response"] for r in rs])
    ia = torch.tensor([p["chosen_index"] for p in pairs])
    ib = torch.tensor([p["rejected_index"] for p in pairs])
    w = preference.train_reward_model(phi[ia], phi[ib], l2=1e-3)
    heldout = [rs[8 * p] for p in range(24, 28)]

    def reward(texts):
        return preference.embed_responses([t if t.strip() else "(no answer)" for t in texts]) @ w

    return heldout, reward


def run_labkit(lm, prompts, reward, steps):
    tr = rlhf.LoraRLOO(lm, prompts, reward, beta=BETA, k=K, max_new_tokens=NEW, lr=LR, n_lora_layers=LAYERS)
    try:
        tr.step()                                              # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.step()
        return steps * len(prompts) * K / (time.perf_counter() - t0)
    finally:
        tr.remove()


def run_naive(lm, prompts, reward, steps):
    """The same maths with nothing shared: one sample per generate call, full-model passes for π_ref and π_θ."""
    tr = rlhf.LoraRLOO(lm, prompts, reward, beta=BETA, k=K, max_new_tokens=NEW, lr=LR, n_lora_layers=LAYERS)
    ad = tr.adapter
    eos = lm.model.generation_config.eos_token_id

    def step():
        rows, spans, texts = [], [], []
        for p in tr.prompt_ids:
            for _ in range(K):
                enc = lm.batch([p], padding_side="left")
                with ad.policy(), torch.no_grad():
                    out = lm.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=True,
                                            temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=NEW,
                                            pad_token_id=lm.tokenizer.pad_token_id)
                r = out[0, len(p):].tolist()
                end = next((t + 1 for t, tok in enumerate(r) if tok == eos), len(r))
                rows.append(p + r[:end])
                spans.append((len(p), len(p) + end))
                texts.append(lm.tokenizer.decode(r[:end], skip_special_tokens=True).strip())
        enc = lm.batch(rows, padding_side="right")
        resp = torch.zeros_like(enc["input_ids"])
        for i, (a, b) in enumerate(spans):
            resp[i, a:b] = 1

        def logps(grad):
            with torch.set_grad_enabled(grad):
                logits = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
                return dpo.sequence_logprobs(logits, enc["input_ids"], resp)

        with torch.no_grad():
            ref = logps(False)                                # adapter off: the reference, recomputed every step
            with ad.policy():
                old = logps(False)
        adv = rlhf.rloo_advantages(rlhf.kl_penalised_rewards(reward(texts), old, ref, BETA).reshape(len(prompts), K))
        with ad.policy():
            loss = rlhf.policy_gradient_loss(logps(True), old, adv.reshape(-1))
        tr.opt.zero_grad()
        loss.backward()
        tr.opt.step()

    try:
        step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * len(prompts) * K / (time.perf_counter() - t0)
    finally:
        tr.remove()


def run_trl(heldout, reward, steps):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    lm = labkit.load_lm(device="cpu")                  # a fresh copy of the course model for TRL (its config names
    n_layers = lm.model.config.num_hidden_layers      # no architecture, so TRL cannot load it from the path itself)
    ds = Dataset.from_dict({"prompt": [[{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}]
                                       for r in heldout]})

    def reward_fn(completions, **kw):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return reward(texts).tolist()

    times = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            times.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as d:
        args = RLOOConfig(output_dir=d, per_device_train_batch_size=len(heldout) * K, num_generations=K,
                          max_completion_length=NEW, max_steps=steps + 1, beta=BETA, learning_rate=LR, report_to=[],
                          use_cpu=True, save_strategy="no", logging_steps=1000, seed=0, disable_tqdm=True,
                          temperature=1.0, top_k=0, top_p=1.0)
        peft = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, layers_to_transform=list(range(n_layers - LAYERS, n_layers)),
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
        trainer = RLOOTrainer(model=lm.model, reward_funcs=reward_fn, args=args, train_dataset=ds, peft_config=peft,
                              processing_class=lm.tokenizer, callbacks=[Clock()])
        trainer.train()
    # steps after the first (warm-up): from the end of step 1 to the end of the last
    return steps * len(heldout) * K / (times[-1] - times[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    labkit.setup(seed=0, quiet=True)
    heldout, reward = setup_data()
    lm = labkit.load_lm(device="cpu")
    prompts = [lm.chat_prompt(r["prompt"], system=r["system"]) for r in heldout]
    res = {"labkit": run_labkit(lm, prompts, reward, args.steps), "naive": run_naive(lm, prompts, reward, args.steps)}
    del lm
    try:
        res["trl"] = run_trl(heldout, reward, args.steps)
    except Exception as e:                                  # reported, not hidden
        res["trl_error"] = f"{type(e).__name__}: {e}"
    row = {"device": "cpu", "steps": args.steps, "samples_per_step": len(prompts) * K, "labkit_samples_per_s": res["labkit"],
           "naive_samples_per_s": res["naive"], "labkit_over_naive": res["labkit"] / res["naive"]}
    if "trl" in res:
        row.update(trl_samples_per_s=res["trl"], labkit_over_trl=res["labkit"] / res["trl"])
    else:
        row["trl_error"] = res["trl_error"]
    lines = ["| device | naive samples/s | TRL RLOOTrainer samples/s | labkit samples/s | labkit / naive | labkit / TRL |",
             "|---|---:|---:|---:|---:|---:|",
             f"| cpu | {row['naive_samples_per_s']:.2f} | {row.get('trl_samples_per_s', float('nan')):.2f} | "
             f"{row['labkit_samples_per_s']:.2f} | {row['labkit_over_naive']:.1f}× | {row.get('labkit_over_trl', float('nan')):.1f}× |"]
    table = "\n".join(lines)
    print(table)
    note = (f"\n\n{args.steps} timed steps of {row['samples_per_step']} samples each, after one warm-up step; torch "
            f"{torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads. "
            + (f"TRL failed: {row['trl_error']}. " if "trl_error" in row else "")
            + "Timings on a shared machine are noisy; the ratios are the robust numbers.\n")
    (HERE / "rlhf.md").write_text("# On-policy RLHF throughput\n\n" + __doc__.split("\n\n", 1)[1].split(" Writes benchmarks")[0]
                                  + "\n\n" + table + note)
    (HERE / "rlhf.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
