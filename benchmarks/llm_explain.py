"""Batched vs naive for the kernels of notebooks 05 and 06, measured side by side in one run.

* leave-one-out occlusion: one batched forward pass over the n variants vs n + 1 separate passes;
* exact segment Shapley values: 2ⁿ coalitions in batches vs one pass per coalition;
* per-layer states: all 30 layers captured in one forward pass vs one pass per layer;
* multiple-choice scoring: each question run once with its key/value cache shared by its four answers
  (``lm.option_logprobs``) vs one full pass per (question, answer) (``lm.logprobs``).

Run it alone, with ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` on a shared machine (the md says how it was run).

Each pair is checked to give the same numbers. Writes benchmarks/llm_explain.md (+ .json) next to itself.
Usage: python benchmarks/llm_explain.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

import labkit
from labkit import llm_explain, steering

from _timing import timed  # benchmarks/_timing.py


def main():
    labkit.setup(seed=0, quiet=True)
    lm = labkit.load_lm()
    rows = []
    with torch.no_grad():
        # leave-one-out
        segments = ["Anna", " grew up in Rome", " and Tom", " grew up in Oslo.", " Anna", " speaks fluent"]
        ids, seg = llm_explain.segment_ids(lm, segments)
        f = llm_explain.target_logprob(lm, " Italian", prefix=[lm.tokenizer.bos_token_id])
        pad = lm.token_id(" the")

        def loo_naive():
            full = f(ids[None])[0]
            out = []
            for i in range(len(ids)):
                v = ids.clone()
                v[i] = pad
                out.append(full - f(v[None])[0])
            return torch.stack(out)

        a, t_b = timed(lambda: llm_explain.leave_one_out_scores(f, ids, pad), repeat=2)
        b, t_n = timed(loo_naive, repeat=2)
        rows.append((f"leave-one-out, {len(ids)} tokens", t_n, t_b, float((a - b).abs().max())))

        # exact Shapley
        def shap_naive():
            def one_by_one(batch):
                return torch.cat([f(r[None]) for r in batch])
            return llm_explain.shapley_exact(one_by_one, ids, seg, pad)

        a, t_b = timed(lambda: llm_explain.shapley_exact(f, ids, seg, pad), repeat=1)
        b, t_n = timed(shap_naive, repeat=1)
        n_seg = len(segments)
        rows.append((f"exact Shapley, {n_seg} segments ({2 ** n_seg} coalitions)", t_n, t_b, float((a - b).abs().max())))

        # all layers in one pass
        pos, neg = steering.load_contrast_pairs()
        prompts = pos[:16] + neg[:16]

        def per_layer_naive():
            out = []
            for layer in range(lm.n_layers):
                out.append(lm.last_token_states(prompts, layers=[layer])[0])
            return torch.stack(out)

        a, t_b = timed(lambda: lm.last_token_states(prompts), repeat=1)
        b, t_n = timed(per_layer_naive, repeat=1)
        rows.append(("last-token states, 30 layers × 32 prompts", t_n, t_b, float((a - b).abs().max())))

        # multiple-choice scoring with a shared prompt cache
        qs = llm_explain.load_questions()[:32]
        prompts = [f"Question: {q['question']}\nAnswer:" for q in qs]
        options = [[" " + q["answer"]] + [" " + d for d in q["distractors"]] for q in qs]
        flat_p = [p for p in prompts for _ in range(4)]
        flat_o = [o for opts in options for o in opts]
        a, t_b = timed(lambda: lm.option_logprobs(prompts, options), repeat=1)
        b, t_n = timed(lambda: lm.logprobs(flat_p, flat_o).view(len(prompts), 4), repeat=1)
        rows.append(("answer log-probs, 32 questions × 4 answers", t_n, t_b, float((a - b).abs().max())))

    lines = ["# Batched vs naive: llm_explain / steering kernels", "",
             f"Measured on {labkit.runtime.describe()} in one run (best of 1–2 repeats), with OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {os.getloadavg()[0]:.1f} at the end: ratios are "
             "what matters, absolute times vary with the machine.", "",
             "| kernel | naive (s) | batched (s) | speed-up | max abs difference |", "|---|---|---|---|---|"]
    for name, tn, tb, diff in rows:
        lines.append(f"| {name} | {tn:.2f} | {tb:.2f} | {tn / tb:.1f}× | {diff:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    here = Path(__file__).resolve().parent
    (here / "llm_explain.md").write_text(text)
    (here / "llm_explain.json").write_text(json.dumps(
        [{"kernel": n, "naive_s": tn, "batched_s": tb, "speedup": tn / tb, "max_abs_diff": d} for n, tn, tb, d in rows], indent=1))


if __name__ == "__main__":
    main()
