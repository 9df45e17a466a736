"""Benchmark: batched mediation interventions vs one forward pass per neuron (or head), in one run.

    python benchmarks/mediation.py          # prints a table and writes benchmarks/mediation.md and .json

On SmolLM2-135M-Instruct, the natural indirect effects (Vig et al. 2020) of MLP neurons at the profession
position and of attention heads, for the four prompts of notebook 08 ("The {nurse, librarian, president,
warrior} said that" → "The {man, woman} said that"), computed three ways by ``labkit.mediation``:

1. one forward pass per neuron (each pass carries the four prompts): ``batch_size=1, skip_layers=False``;
2. many neurons per forward pass along the batch dimension: ``batch_size=512, skip_layers=False``;
3. batched, and each pass starts at the lowest layer it intervenes on (layers below cannot change), from the
   cached residual stream: ``batch_size=512, skip_layers=True`` (the default, what the notebook uses).

All three give the same numbers (the largest difference is printed). For reference, the first-order estimate
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
from labkit import mediation  # noqa: E402

from _timing import timed  # noqa: E402  (benchmarks/_timing.py)


def main() -> int:
    device = labkit.setup(seed=0)
    lm = labkit.load_lm(device=device)
    profs = [p for p in mediation.load_professions() if p["word"] in ("nurse", "librarian", "president", "warrior")]
    null_ids, set_ids, anti, stereo = mediation.mediation_inputs(lm, profs, ["The {} said that"])
    K, T = null_ids.shape
    L, H, D = lm.model.config.num_hidden_layers, lm.model.config.num_attention_heads, lm.model.config.intermediate_size
    g = torch.Generator().manual_seed(0)
    per_layer = 8
    neurons = [(layer, int(i)) for layer in range(L) for i in torch.randperm(D, generator=g)[:per_layer]]
    n = len(neurons)

    nie = lambda **kw: mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position=1, **kw)  # noqa: E731
    nie(batch_size=64)  # warm-up
    one, t_one = timed(lambda: nie(batch_size=1, skip_layers=False))
    many, t_many = timed(lambda: nie(batch_size=512, skip_layers=False), 2)
    skip, t_skip = timed(lambda: nie(batch_size=512, skip_layers=True), 2)
    diff_n = float(max((one - many).abs().max(), (one - skip).abs().max()))

    ivs = mediation.head_interventions(L, H)
    run = lambda **kw: mediation.run_interventions(lm, null_ids, set_ids, ivs, anti, stereo, **kw)  # noqa: E731
    h_one, th_one = timed(lambda: run(batch_size=1, skip_layers=False))
    h_many, th_many = timed(lambda: run(batch_size=512, skip_layers=False), 2)
    h_skip, th_skip = timed(lambda: run(batch_size=256, skip_layers=True), 2)
    diff_h = float(max((h_one - h_many).abs().max(), (h_one - h_skip).abs().max()))

    _, t_est = timed(lambda: mediation.neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position=1), 2)

    rows = [  # (what, method, forward calls, interventions, seconds, speed-up)
        (f"NIE of {n} MLP neurons ({per_layer} per layer)", "one forward pass per neuron", n, n, t_one, 1.0),
        ("", "batched, 512 neurons per pass", -(-n // 512), n, t_many, t_one / t_many),
        ("", "batched + each pass starts at its lowest layer", "grouped by layer", n, t_skip, t_one / t_skip),
        (f"NIE of all {L * H} attention heads", "one forward pass per head", L * H, L * H, th_one, 1.0),
        ("", "batched, 512 heads per pass", -(-L * H // 512), L * H, th_many, th_one / th_many),
        ("", "batched (256 per pass) + each pass starts at its lowest layer", "grouped by layer", L * H, th_skip, th_one / th_skip),
    ]
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
    text = ("# Mediation benchmark: batched interventions vs one forward pass each\n\nMeasured by "
            "`python benchmarks/mediation.py` in one run on " + machine + " (a shared machine: absolute times vary, "
            "the ratios are the point). SmolLM2-135M-Instruct, float32; best of 2 runs for the batched methods.\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    out = Path(__file__).with_suffix(".md")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({
        "machine": machine, "prompts": K, "tokens": T,
        "neurons": n, "neurons_one_per_pass_s": t_one, "neurons_batched_s": t_many, "neurons_batched_skip_s": t_skip,
        "neuron_batching_speedup": t_one / t_many, "neuron_batching_skip_speedup": t_one / t_skip,
        "neuron_max_abs_diff": diff_n,
        "heads": L * H, "heads_one_per_pass_s": th_one, "heads_batched_s": th_many, "heads_batched_skip_s": th_skip,
        "head_batching_speedup": th_one / th_many, "head_batching_skip_speedup": th_one / th_skip,
        "head_max_abs_diff": diff_h,
        "estimate_all_neurons_s": t_est, "extrapolated_exact_all_neurons_s": full_sweep,
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
