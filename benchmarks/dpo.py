"""DPO training throughput (preference pairs per second): labkit's LoraDPO against a naive LoRA DPO loop.

* **naive**: a LoRA adapter on the same top layers, but every step runs the full model on the chosen
  responses, again on the rejected responses, and then twice more with the adapter disabled for the
  reference log-probabilities;
* **labkit** (``dpo.LoraDPO``): the frozen lower layers and the reference log-probabilities are computed once
  (reported separately, and amortised over one epoch in the last column); each step runs only the adapted
  top layers, on the distinct responses of its pairs, chosen and rejected in one batch.

Both use the same adapter (same seed), the same pairs (the course preference data: 4 prompts × 4 responses
→ 24 pairs, one prompt's 6 pairs per step) and give the same first-step loss and log-probabilities, which is
checked. CPU always; CUDA too when it is available. Writes benchmarks/dpo.md (+ .json) next to itself.
Usage: python benchmarks/dpo.py [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import labkit
from labkit import dpo, preference

HERE = Path(__file__).resolve().parent


def pairs_data(lm):
    data = preference.load_preference_data()
    rs = data["responses"]
    use = [i for i, r in enumerate(rs) if r["prompt_id"] < 4 and r["response_id"] < 4]
    pos = {i: k for k, i in enumerate(use)}
    pairs = [p for p in data["pairs"] if p["chosen_index"] in pos and p["rejected_index"] in pos]
    prompts = [lm.chat_prompt(rs[i]["prompt"], system=rs[i]["system"]) for i in use]
    texts = [rs[i]["response"] for i in use]
    w = torch.tensor([pos[p["chosen_index"]] for p in pairs])
    l = torch.tensor([pos[p["rejected_index"]] for p in pairs])
    g = torch.tensor([p["prompt_id"] for p in pairs])
    return prompts, texts, w, l, g


def naive(device, prompts, texts, w, l, g, steps, beta=0.1, lr=1e-3, n_lora_layers=2):
    from peft import LoraConfig, get_peft_model

    lm = labkit.load_lm(device=device)
    n = lm.model.config.num_hidden_layers
    torch.manual_seed(0)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, layers_to_transform=list(range(n - n_lora_layers, n)),
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    model = get_peft_model(lm.model, cfg)
    batch = dpo.encode_responses(lm, prompts, texts)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)

    def logps(idx):
        ids = batch["input_ids"][idx].to(device)
        am = batch["attention_mask"][idx].to(device)
        return dpo.sequence_logprobs(model(input_ids=ids, attention_mask=am).logits, ids, batch["response_mask"][idx].to(device))

    groups = torch.unique(g)
    first = None
    times = []
    for s in range(steps + 1):  # step 0 is a warm-up
        b = (g == groups[s % len(groups)]).nonzero()[:, 0]
        t = time.perf_counter()
        pc, pr = logps(w[b]), logps(l[b])
        with torch.no_grad(), model.disable_adapter():
            rc, rr = logps(w[b]), logps(l[b])
        loss = dpo.dpo_loss(pc, pr, rc, rr, beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if s == 0:
            first = (loss.item(), pc.detach().cpu())
        else:
            times.append((time.perf_counter() - t, len(b)))
    return first, times


def ours(device, prompts, texts, w, l, g, steps, beta=0.1, lr=1e-3):
    lm = labkit.load_lm(device=device)
    t = time.perf_counter()
    trainer = dpo.LoraDPO(lm, prompts, texts, n_lora_layers=2, rank=8, alpha=16, device=device, seed=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    setup = time.perf_counter() - t
    groups = torch.unique(g)
    first_pc = trainer.logps(w[g == groups[0]]).cpu()
    times = []
    first_loss = None
    for s in range(steps + 1):
        b = g == groups[s % len(groups)]
        t = time.perf_counter()
        hist = trainer.train(w[b], l[b], beta=beta, epochs=1, pairs_per_step=int(b.sum()), lr=lr, progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if s == 0:
            first_loss = hist["loss"][0]
        else:
            times.append((time.perf_counter() - t, int(b.sum())))
    return (first_loss, first_pc), times, setup


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    labkit.setup(seed=0, quiet=True)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    lm0 = labkit.load_lm(device="cpu")
    prompts, texts, w, l, g = pairs_data(lm0)
    del lm0
    rows = []
    for dev in devices:
        (nl, npc), nt = naive(dev, prompts, texts, w, l, g, args.steps)
        (ol, opc), ot, setup = ours(dev, prompts, texts, w, l, g, args.steps)
        assert abs(nl - ol) < 1e-4, (nl, ol)
        assert torch.allclose(npc, opc, atol=1e-3), (npc, opc)
        n_pairs = sum(k for _, k in nt)
        naive_pps = n_pairs / sum(t for t, _ in nt)
        ours_pps = n_pairs / sum(t for t, _ in ot)
        epoch_pairs = len(w)
        amortised = epoch_pairs / (setup + epoch_pairs / ours_pps)
        rows.append({"device": dev.type, "pairs": len(w), "responses": len(texts), "steps": args.steps,
                     "naive_pairs_per_s": naive_pps, "labkit_pairs_per_s": ours_pps, "speedup": ours_pps / naive_pps,
                     "labkit_setup_s": setup, "labkit_pairs_per_s_incl_setup_1_epoch": amortised,
                     "first_step_loss": ol})
    header = "| device | naive pairs/s | labkit pairs/s | ratio | labkit one-time setup (s) | labkit pairs/s incl. setup, 1 epoch |"
    lines = [header, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['device']} | {r['naive_pairs_per_s']:.2f} | {r['labkit_pairs_per_s']:.2f} | "
                     f"{r['speedup']:.1f}× | {r['labkit_setup_s']:.1f} | {r['labkit_pairs_per_s_incl_setup_1_epoch']:.2f} |")
    table = "\n".join(lines)
    print(table)
    note = (f"\n\nSmolLM2-135M-Instruct, LoRA rank 8 on the top 2 layers, {rows[0]['pairs']} pairs over "
            f"{rows[0]['responses']} responses, 6 pairs per step, {args.steps} timed steps after one warm-up; "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} threads. First-step loss {rows[0]['first_step_loss']:.4f} (= log 2) and "
            "first-step log-probabilities agree between the two. No CUDA row means no CUDA device was available "
            "when this was run. Timings on a shared machine are noisy; the ratio is the robust number.\n")
    (HERE / "dpo.md").write_text("# DPO training throughput\n\n" + __doc__.split("\n\n")[1] + "\n\n" + table + note)
    (HERE / "dpo.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
