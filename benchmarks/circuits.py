"""Benchmark: path patching batched through the one engine vs two forward passes per (sender, receiver) pair.

    python benchmarks/circuits.py          # prints a table and writes benchmarks/circuits.md and .json

On SmolLM2-135M-Instruct, IOI prompts of one template (``labkit.circuits.ioi_dataset``, ABBA order, K pairs with
their ABC corruptions), metric logit(IO) − logit(S) at END:

1. 20 sender heads (layers 0–19) × 5 receiver heads (layers 20–29) through their queries:
   ``circuits.path_patching`` (one sender run per sender, shared by all receivers, senders and pairs batched,
   each pass started at its lowest layer) vs ``circuits.path_patching_naive`` (a full sender run and a full
   receiver run per pair, plain ``hooks.patch``); the numbers must be identical up to float rounding (asserted);
2. the batched version alone on every head (270) as sender to the same 5 receivers, to size the notebook;
3. edge attribution patching (``circuits.edge_attribution``, Syed et al. 2023): the same 100 pairs against the
   exact quantity it estimates (path patching with frozen MLPs, batched), correlation reported; and every edge
   between the 270 heads (72,900 per receiver input) from one forward and one backward pass.
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
from _timing import timed

import labkit
from labkit import circuits
from labkit.lm import interventions

K = 4


def main() -> int:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    device = labkit.setup(seed=0)
    lm = labkit.load_lm(device=device)
    g = circuits.ioi_dataset(lm, n=K, templates=circuits.IOI_TEMPLATES[:1], orders=["ABBA"], seed=0)[0]
    readout = interventions.logratio_readout(g["io"], g["s"])
    gen = torch.Generator().manual_seed(0)
    senders = [(int(L), int(h)) for L, h in zip(torch.randint(0, 20, (20,), generator=gen),
                                                  torch.randint(0, lm.n_heads, (20,), generator=gen))]
    receivers = [(int(L), int(h)) for L, h in zip(torch.randint(20, 30, (5,), generator=gen),
                                                    torch.randint(0, lm.n_heads, (5,), generator=gen))]
    args = (lm, g["clean_ids"], g["corrupt_ids"], senders, receivers, readout)
    batched, t_batched = timed(lambda: circuits.path_patching(*args, via="q"), 2)
    naive, t_naive = timed(lambda: circuits.path_patching_naive(*args, via="q"))
    diff = float((batched - naive).abs().max())
    assert diff < 1e-4, f"batched and naive path patching differ by {diff}"
    every = [(L, h) for L in range(lm.n_layers) for h in range(lm.n_heads)]
    _, t_full = timed(lambda: circuits.path_patching(lm, g["clean_ids"], g["corrupt_ids"], every, receivers,
                                                        readout, via="q"))
    frozen, t_frozen = timed(lambda: circuits.path_patching(*args, via="q", freeze_mlps=True), 2)
    eap, t_eap = timed(lambda: circuits.edge_attribution(*args, via="q"), 2)
    agree = circuits.compare_estimates(frozen, eap, k=10)
    _, t_eap_all = timed(lambda: circuits.edge_attribution(lm, g["clean_ids"], g["corrupt_ids"], every, every,
                                                           readout, via="q"), 2)
    n_pairs = len(senders) * len(receivers)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s) "
               f"(OMP_NUM_THREADS={threads}), device {device}, torch {torch.__version__}; "
               f"1-minute load average at the start {load:.1f}")
    lines = [(f"IOI template {g['template']!r} (ABBA), K = {K} prompt pairs with their ABC corruptions; receivers' "
              f"queries patched; metric logit(IO) − logit(S)."), "",
             "| path patching | (sender, receiver) pairs | forward passes of K prompts | wall time (s) | speed-up |",
             "|---|---|---|---|---|",
             (f"| one sender run and one receiver run per pair (`path_patching_naive`) | {n_pairs} | {2 * n_pairs} | "
              f"{t_naive:.2f} | 1.0× |"),
             (f"| batched through the one engine (`path_patching`) | {n_pairs} | batched, from the lowest layer | "
              f"{t_batched:.2f} | {t_naive / t_batched:.1f}× |"),
             (f"| batched, all {len(every)} heads as senders | {len(every) * len(receivers)} | batched | {t_full:.2f} | "
              f"(naive would take about {t_naive / n_pairs * len(every) * len(receivers):.0f} s) |"),
             "", f"Largest difference between batched and naive: {diff:.1e} (the same numbers; asserted < 1e-4).", "",
             ("Edge attribution patching (EAP) estimates path patching with frozen MLPs (only the edge changes) to "
              "first order, from one forward pass per input and one backward pass:"), "",
             "| frozen-MLP path effects | edges | wall time (s) | speed-up | agreement with exact |",
             "|---|---|---|---|---|",
             f"| exact, batched (`path_patching(freeze_mlps=True)`) | {n_pairs} | {t_frozen:.2f} | 1.0× | — |",
             (f"| EAP (`edge_attribution`) | {n_pairs} | {t_eap:.2f} | {t_frozen / t_eap:.1f}× | Pearson "
              f"{agree['pearson']:.3f}, Spearman {agree['spearman']:.3f}, top-10 overlap {agree['top_k_overlap']:.1f} |"),
             (f"| EAP, every head to every head | {len(every) ** 2} | {t_eap_all:.2f} | (exact batched at the rate "
              f"above: about {t_frozen / n_pairs * len(every) ** 2 / 60:.0f} min) | — |")]
    text = ("# Path-patching benchmark\n\nMeasured by `python benchmarks/circuits.py` in one run on " + machine +
            ". On a shared machine absolute times vary; the ratio, measured side by side, is the point.\n\n" +
            "\n".join(lines) + "\n")
    print(text)
    out = Path(__file__).with_suffix(".md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({
        "machine": machine, "template": g["template"], "K": K, "senders": senders, "receivers": receivers,
        "naive_s": t_naive, "batched_s": t_batched, "speedup": t_naive / t_batched, "max_abs_diff": diff,
        "all_heads_batched_s": t_full, "all_heads_pairs": len(every) * len(receivers),
        "frozen_batched_s": t_frozen, "eap_s": t_eap, "eap_agreement": agree, "eap_all_edges_s": t_eap_all,
        "eap_all_edges": len(every) ** 2,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
