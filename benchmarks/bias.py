"""Benchmark labkit.bias kernels against naive versions, side by side in one run; writes benchmarks/bias.md.

1. WEAT exact permutation test (8 + 8 words, all 12,870 partitions): a Python loop that recomputes the
   statistic from the association scores partition by partition vs ``bias.permutation_p_value``
   (one gather-and-sum over all partitions).
2. WEAT Monte-Carlo test (12 + 12 words, 20,000 random partitions): a loop that recomputes the cosine
   associations of every permuted set (as a straightforward implementation of the definition does) vs the
   vectorised version (scores computed once).
3. Closed-form answer scoring: 24 multiple-choice prompts scored one at a time with
   ``lm.next_token_probs`` vs ``lm.option_logprobs`` (batched, last-position logits only).

Usage: ``python benchmarks/bias.py`` (CPU; timings vary with the machine's load).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch

import labkit
from labkit import bias

from _timing import timed  # benchmarks/_timing.py

HERE = Path(__file__).resolve().parent


def main():
    g = torch.Generator().manual_seed(0)
    rows = []

    # 1. exact test
    X, Y, A, B = (torch.randn(8, 384, generator=g) for _ in range(4))
    s = bias.association(torch.cat([X, Y]), A, B)
    sx, sy = s[:8], s[8:]

    def naive_exact():
        vals = s.tolist()
        obs = sum(vals[:8]) - sum(vals[8:])
        count = total = 0
        for c in itertools.combinations(range(16), 8):
            chosen = set(c)
            st = sum(vals[i] for i in c) - sum(vals[i] for i in range(16) if i not in chosen)
            count += st >= obs - 1e-12
            total += 1
        return count / total

    p_naive, t_naive = timed(naive_exact, repeat=1)
    p_fast, t_fast = timed(lambda: bias.permutation_p_value(sx, sy), repeat=3)
    assert abs(p_naive - p_fast) < 1e-12
    rows.append(("WEAT exact test, 8+8 words (12,870 partitions)", t_naive, t_fast, f"p equal ({p_fast:.4f})"))

    # 2. Monte-Carlo test recomputing associations
    X, Y, A, B = (torch.randn(12, 384, generator=g) for _ in range(4))
    W = torch.cat([X, Y])
    n_perm = 2000

    def naive_mc():
        gg = torch.Generator().manual_seed(1)
        obs = float(bias.association(X, A, B).sum() - bias.association(Y, A, B).sum())
        count = 0
        for _ in range(n_perm):
            idx = torch.randperm(24, generator=gg)
            Xi, Yi = W[idx[:12]], W[idx[12:]]
            count += float(bias.association(Xi, A, B).sum() - bias.association(Yi, A, B).sum()) >= obs - 1e-9
        return (1 + count) / (1 + n_perm)

    def fast_mc():
        s = bias.association(W, A, B)
        return bias.permutation_p_value(s[:12], s[12:], exact_limit=0, n_permutations=n_perm, seed=1)

    p_naive, t_naive = timed(naive_mc, repeat=1)
    p_fast, t_fast = timed(fast_mc, repeat=3)
    rows.append((f"WEAT Monte-Carlo test, 12+12 words ({n_perm} partitions)", t_naive, t_fast,
                 f"p {p_naive:.3f} vs {p_fast:.3f} (different random draws)"))

    # 3. closed-form option scoring with the language model
    lm = labkit.load_lm(device="cpu")
    mc = bias.load_data("mc_questions")
    prompts = [p for q in mc["questions"][:4] for p, _ in bias.mc_prompts(q["question"], q["options"])]
    letters = [" A", " B", " C"]
    ids = [lm.token_id(t) for t in letters]
    ref, t_naive = timed(lambda: torch.cat([torch.log(lm.next_token_probs(p))[:, ids] for p in prompts]), repeat=1)
    lp, t_fast = timed(lambda: lm.option_logprobs(prompts, letters), repeat=1)
    assert torch.allclose(lp, ref, atol=1e-4)
    rows.append((f"option log-probs, {len(prompts)} prompts: one at a time vs batched", t_naive, t_fast, "values equal"))

    lines = [
        "# labkit.bias benchmark",
        "",
        f"Machine: {labkit.runtime.describe(torch.device('cpu'))}. Timings vary with load; ratios are from one run.",
        "",
        "| kernel | naive (s) | labkit (s) | speed-up | agreement |",
        "|---|---|---|---|---|",
    ]
    for name, tn, tf, agree in rows:
        lines.append(f"| {name} | {tn:.3f} | {tf:.4f} | {tn / tf:.1f}× | {agree} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "bias.md").write_text(text)
    (HERE / "bias.json").write_text(json.dumps([dict(zip(["kernel", "naive_s", "labkit_s", "agreement"], r)) for r in rows], indent=1))


if __name__ == "__main__":
    main()
