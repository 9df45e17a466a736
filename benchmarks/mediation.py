"""Benchmark: the one intervention engine on notebook 08's mediation analysis, against one forward pass per
intervention and against the two tricks of the former engines, in one run.

    python benchmarks/mediation.py          # prints a table and writes benchmarks/mediation.md and .json

On SmolLM2-135M-Instruct, the natural indirect effects (Vig et al. 2020) of MLP neurons at the profession
position and of attention heads, for the four prompts of notebook 08 ("The {nurse, librarian, president,
warrior} said that" → "The {man, woman} said that"), computed four ways with
``labkit.lm.interventions.run_interventions`` and the log-ratio readout:

1. one forward pass per intervention (each pass carries the four prompts): ``batch_size=1, skip_layers=False``;
2. many interventions per forward pass along the batch dimension: ``batch_size=512, skip_layers=False``;
3. batched, the batch widened at its lowest block (the former patching engine's trick, re-implemented in
   ``benchmarks/_former_engine.py``);
4. batched, each pass started at the lowest layer it intervenes on from the base run's cached residual stream
   (the former mediation engine's trick, which the one engine does by default: what the notebooks use).

All four give the same numbers (the largest difference is printed). For reference, the first-order estimate
(attribution patching, one forward and one backward pass for all 46,080 neurons) is timed too.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import labkit  # noqa: E402
from labkit import datasets, mediation  # noqa: E402
from labkit.lm import interventions as I  # noqa: E402

from _former_engine import widened  # noqa: E402  (benchmarks/_former_engine.py)
from _timing import timed  # noqa: E402  (benchmarks/_timing.py)


def main() -> int:
    device = labkit.setup(seed=0)
    lm = labkit.load_lm(device=device)
    profs = [p for p in datasets.load_professions() if p["word"] in ("nurse", "librarian", "president", "warrior")]
    null_ids, set_ids, anti, stereo = mediation.mediation_inputs(lm, profs, ["The {} said that"])
    K, T = null_ids.shape
    L, H, D = lm.model.config.num_hidden_layers, lm.model.config.num_attention_heads, lm.model.config.intermediate_size
    g = torch.Generator().manual_seed(0)
    per_layer = 8
    neurons = [(layer, int(i)) for layer in range(L) for i in torch.randperm(D, generator=g)[:per_layer]]
    n = len(neurons)

    readout = I.logratio_readout(anti, stereo)
    results = {}
    for what, ivs, wide_bs in (("neurons", I.neuron_interventions(neurons, position=1), 128),
                               ("heads", I.head_interventions(L, H), 128)):
        run = lambda **kw: I.run_interventions(lm, null_ids, set_ids, ivs, readout, **kw)  # noqa: E731
        run(batch_size=64)  # warm-up
        one, t_one = timed(lambda: run(batch_size=1, skip_layers=False))
        many, t_many = timed(lambda: run(batch_size=512, skip_layers=False), 2)
        wide, t_wide = timed(lambda: widened(lm, null_ids, set_ids, ivs, readout, batch_size=wide_bs), 2)
        skip, t_skip = timed(lambda: run(batch_size=512), 2)
        diff = max(float((one - x).abs().max()) for x in (many, wide, skip))
        results[what] = (len(ivs), t_one, t_many, t_wide, t_skip, diff, wide_bs)

    _, t_est = timed(lambda: mediation.neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position=1), 2)

    rows = []  # (what, method, forward calls, interventions, seconds, speed-up)
    for what, label in (("neurons", f"NIE of {n} MLP neurons ({per_layer} per layer)"),
                        ("heads", f"NIE of all {L * H} attention heads")):
        count, t_one, t_many, t_wide, t_skip, _, wide_bs = results[what]
        rows += [
            (label, "one forward pass per intervention", count, count, t_one, 1.0),
            ("", "batched, 512 per pass", -(-count // 512), count, t_many, t_one / t_many),
            ("", f"batched ({wide_bs} per pass), widened at the lowest block (former patching engine)",
             -(-count // wide_bs), count, t_wide, t_one / t_wide),
            ("", "batched, each pass started at its lowest layer (the one engine; former mediation engine)",
             "grouped by layer", count, t_skip, t_one / t_skip),
        ]
    t_skip, diff_n, diff_h = results["neurons"][4], results["neurons"][5], results["heads"][5]
    lines = ["| interventions | method | forward calls | wall time (s) | per intervention (ms) | speed-up vs one per pass |",
             "|---|---|---:|---:|---:|---:|"]
    for what, how, calls, count, t, ratio in rows:
        lines.append(f"| {what} | {how} | {calls} | {t:.2f} | {1000 * t / count:.1f} | {ratio:.1f}× |")
    full_sweep = L * D * t_skip / n
    lines += [
        "",
        f"Each forward pass carries the {K} prompts ({T} tokens each), so a pass of 512 interventions has {512 * K} rows.",
        f"Largest difference between the methods: neurons {diff_n:.1e}, heads {diff_h:.1e} (the same numbers).",
        f"At the batched + layer-skipping rate, the exact NIE of all {L * D:,} neurons would take about "
        f"{full_sweep:.0f} s here ({full_sweep / 60:.1f} min); the attribution-patching estimate of all of them "
        f"takes {t_est:.2f} s (one forward + one backward pass), which is why notebook 08 estimates every neuron and "
        f"computes the exact NIE of 200 of them.",
    ]
    machine = (f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), device {device}, "
               f"torch {torch.__version__}")
    text = ("# Mediation benchmark: the one intervention engine vs one forward pass each and the former tricks\n\nMeasured by "
            "`python benchmarks/mediation.py` in one run on " + machine + " (a shared machine: absolute times vary, "
            "the ratios are the point). SmolLM2-135M-Instruct, float32; best of 2 runs for the batched methods.\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    out = Path(__file__).with_suffix(".md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({
        "machine": machine, "prompts": K, "tokens": T,
        **{f"{what}_{key}": value for what, r in results.items()
           for key, value in zip(("count", "one_per_pass_s", "batched_s", "widened_s", "engine_s", "max_abs_diff"), r)},
        **{f"{what}_{key}_speedup": r[1] / r[i] for what, r in results.items()
           for key, i in (("batched", 2), ("widened", 3), ("engine", 4))},
        "estimate_all_neurons_s": t_est, "extrapolated_exact_all_neurons_s": full_sweep,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
