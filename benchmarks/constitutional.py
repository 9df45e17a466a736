"""Benchmark for notebook 14: batched vs one-at-a-time generation and judging with SmolLM2.

Measures, in one run on the same machine:
* critique-loop generation: one batched ``lm.generate`` call over n prompts vs n single-prompt calls;
* log-probability judging: ``constitutional.harmlessness_score`` (batched, last-position logits only) vs the
  same judgement from a plain forward pass (logits at every position) vs one prompt at a time.
Writes ``benchmarks/constitutional.md`` and ``.json`` next to itself.

    python benchmarks/constitutional.py [--n 16] [--tokens 24]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

import labkit
from labkit import constitutional as ca

from _timing import timed  # benchmarks/_timing.py


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16, help="number of prompts")
    ap.add_argument("--tokens", type=int, default=24, help="max new tokens per reply")
    args = ap.parse_args()
    device = labkit.setup(seed=0)
    lm = labkit.load_lm()
    data = ca.load_prompts()
    prompts = [it["prompt"] for it in data["harmful"] + data["benign"]][: args.n]
    lm.generate(prompts[:2], max_new_tokens=2)  # warm-up

    rows = []
    batched, t_batch = timed(lambda: lm.generate(prompts, max_new_tokens=args.tokens, batch_size=len(prompts)))
    looped, t_loop = timed(lambda: [lm.generate(p, max_new_tokens=args.tokens) for p in prompts])
    same = sum(a == b for a, b in zip(batched, looped))
    rows.append(("generate replies", f"{len(prompts)} × {args.tokens} tokens", t_loop, t_batch,
                 f"{same}/{len(prompts)} replies identical"))

    replies = batched
    ours, t_ours = timed(lambda: ca.harmlessness_score(lm, prompts, replies))
    texts = [lm.chat_prompt(f"User: {p}\nAssistant: {r}\n\n{ca.HARMLESS_Q}") for p, r in zip(prompts, replies)]
    ids = [lm.token_id("Yes"), lm.token_id("No")]

    @torch.no_grad()
    def full_logits():  # the output layer at every position, as a plain forward pass computes it
        enc = lm.batch(texts)  # left-padded, with position ids
        logits = lm.model(**enc).logits[:, -1, :].float().cpu()
        return torch.softmax(logits[:, ids], -1)[:, 0]

    def one_at_a_time():
        return torch.cat([ca.harmlessness_score(lm, [p], [r]) for p, r in zip(prompts, replies)])

    full, t_full = timed(full_logits)
    single, t_single = timed(one_at_a_time)
    rows.append(("judge (p(Yes))", f"{len(prompts)} replies", t_single, t_ours,
                 f"max |Δp| vs one at a time {float((ours - single).abs().max()):.1e}"))
    rows.append(("judge, all-position logits", f"{len(prompts)} replies", t_full, t_ours,
                 f"max |Δp| {float((ours - full).abs().max()):.1e}"))

    lines = [
        "# Benchmark: constitutional (notebook 14)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, device {device}, "
        f"torch {torch.__version__}. Timings are wall-clock seconds measured side by side in one run "
        "(on a shared machine they vary; the ratios are what matters).",
        "",
        "| operation | size | naive (s) | ours (s) | speed-up | agreement |",
        "|---|---|---|---|---|---|",
    ]
    for name, size, naive, ours_t, agree in rows:
        lines.append(f"| {name} | {size} | {naive:.2f} | {ours_t:.2f} | {naive / ours_t:.1f}× | {agree} |")
    lines += ["", "naive = one prompt per call (generation, judging) or logits at every position (a plain forward pass); "
              "ours = one batched call, last-position logits only (`logits_to_keep=1`)."]
    text = "\n".join(lines) + "\n"
    print(text)
    here = Path(__file__).resolve().parent
    (here / "constitutional.md").write_text(text)
    (here / "constitutional.json").write_text(json.dumps(
        [{"operation": r[0], "size": r[1], "naive_s": r[2], "ours_s": r[3], "speedup": r[2] / r[3], "agreement": r[4]}
         for r in rows], indent=1) + "\n")


if __name__ == "__main__":
    main()
