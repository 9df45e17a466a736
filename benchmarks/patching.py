"""Benchmark: attribution patching vs exact activation patching, and batched vs one-at-a-time neuron interventions.

    python benchmarks/patching.py          # prints a table and writes benchmarks/patching.md and .json

Both comparisons run on SmolLM2-135M-Instruct in one process, side by side, on the prompt pairs of notebook 07
(the 3 most female-stereotyped one-token professions, "The {} said that" → "The man said that"):

1. every attention head (30 × 9, output at every position) and the residual stream at each layer and position
   (30 × 4): exact activation patching (one forward pass per component and pair, batched by the one engine
   and layer-skipping) vs attribution patching (2 forward + 1 backward passes) vs its integrated-gradients version (N = 10);
   passes, wall time, ratio, and agreement with the exact effects (correlation, top-10 overlap).
2. the indirect effect of 256 MLP neurons (``mlp_post``) at the profession position (the interventions of Vig
   et al. 2020): one forward pass per neuron vs many neurons per forward pass via the batch dimension, widened
   at the lowest block (the former patching engine, ``benchmarks/_former_engine.py``) or started at the lowest
   layer from the cached residual stream (the one engine, ``labkit.lm.interventions.run_interventions``); the
   same numbers, and the ratios.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import labkit  # noqa: E402
from labkit import patching  # noqa: E402

from _former_engine import widened  # noqa: E402  (benchmarks/_former_engine.py)
from _timing import timed  # noqa: E402  (benchmarks/_timing.py)


def main() -> int:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = labkit.setup(seed=0)
    lm = labkit.load_lm(device=device)
    clean_prompts, patch_prompts, chosen = patching.profession_pairs(lm, n=3)
    clean, patch = patching.tokenize_pair(lm, clean_prompts, patch_prompts)
    K = clean.shape[0]
    metric = patching.logit_diff_readout(lm.token_id(" he"), lm.token_id(" she"))
    L, H, T = lm.n_layers, lm.n_heads, clean.shape[1]
    ivs = patching.head_interventions(L, H) + patching.resid_interventions(L, T)
    sites = [f"head.{l}" for l in range(L)] + [f"resid_pre.{l}" for l in range(L)]

    exact, t_exact = timed(lambda: patching.exact_patching(lm, clean, patch, ivs, metric))
    attr, t_attr = timed(lambda: patching.reduce_site(patching.attribution_patching(lm, clean, patch, sites, metric), ivs), 3)
    ig, t_ig = timed(lambda: patching.reduce_site(patching.ig_patching(lm, clean, patch, sites, metric, n_steps=10), ivs))

    def agree(a):
        r = float(torch.corrcoef(torch.stack([a, exact]))[0, 1])
        top = len(set(a.abs().topk(10).indices.tolist()) & set(exact.abs().topk(10).indices.tolist()))
        return r, top

    g = torch.Generator().manual_seed(0)
    d_mlp = lm.model.config.intermediate_size
    neurons = [[(f"mlp_post.{int(l)}", (1, int(i)))]
               for l, i in zip(torch.randint(0, L, (256,), generator=g), torch.randint(0, d_mlp, (256,), generator=g))]
    one, t_one = timed(lambda: patching.run_interventions(lm, clean, patch, neurons, metric, batch_size=1,
                                                          skip_layers=False))
    wide, t_wide = timed(lambda: widened(lm, clean, patch, neurons, metric, batch_size=128), 2)
    many, t_many = timed(lambda: patching.run_interventions(lm, clean, patch, neurons, metric, batch_size=256), 2)
    same = max(float((one - many).abs().max()), float((one - wide).abs().max()))

    n = len(ivs)
    rows = [
        (f"exact activation patching ({n} components)", f"{n + 2} fwd", "grouped by layer", t_exact, 1.0, (1.0, 10)),
        ("attribution patching", "2 fwd + 1 bwd", 2, t_attr, t_exact / t_attr, agree(attr)),
        ("attribution patching, IG N = 10", f"{len(sites) * 10 + 2} fwd + {len(sites) * 10} bwd", L + 2, t_ig, t_exact / t_ig, agree(ig)),
    ]
    lines = [f"Passes are per prompt pair; every batched call runs all K = {K} pairs "
             f"({', '.join(w for w, _ in chosen)} → man).", "",
             "| method | passes | batched calls | wall time (s) | speed-up vs exact | r with exact | top-10 overlap |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d:.2f} | {e:.1f}× | {f[0]:.3f} | {f[1]}/10 |" for a, b, c, d, e, f in rows]
    lines += ["", f"| neuron indirect effects, 256 neurons × {K} pairs | forward calls | wall time (s) | speed-up |", "|---|---|---|---|",
              f"| one forward pass per neuron | 256 | {t_one:.2f} | 1.0× |",
              f"| batched, 128 neurons per pass, widened at the lowest block (former patching engine) | 2 | {t_wide:.2f} | {t_one / t_wide:.1f}× |",
              f"| batched, each pass started at its lowest layer (the one engine) | grouped by layer | {t_many:.2f} | {t_one / t_many:.1f}× |",
              "", f"Largest difference between the neuron runs: {same:.1e} (the same numbers)."]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s) "
               f"(OMP_NUM_THREADS={threads}), device {device}, torch {torch.__version__}; "
               f"1-minute load average at the start {load:.1f}")
    text = ("# Patching benchmark\n\nMeasured by `python benchmarks/patching.py` in one run on " + machine +
            ". On a shared machine absolute times vary; the ratios, measured side by side, are the point.\n\n" +
            "\n".join(lines) + "\n")
    print(text)
    out = Path(__file__).with_suffix(".md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({
        "machine": machine, "pairs": [w for w, _ in chosen],
        "exact_s": t_exact, "attribution_s": t_attr, "ig_s": t_ig,
        "attribution_speedup": t_exact / t_attr, "ig_speedup": t_exact / t_ig,
        "r_attribution": agree(attr)[0], "top10_attribution": agree(attr)[1],
        "r_ig": agree(ig)[0], "top10_ig": agree(ig)[1],
        "neurons_one_per_pass_s": t_one, "neurons_widened_s": t_wide, "neurons_engine_s": t_many,
        "neuron_widened_speedup": t_one / t_wide, "neuron_engine_speedup": t_one / t_many,
        "neuron_max_abs_diff": same,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
