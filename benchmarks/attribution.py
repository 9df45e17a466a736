"""Benchmark: the MuS smoothed classifier evaluated with all N masked copies in batches (labkit.attribution.MuS)
against the naive per-mask loop (one forward pass per mask), measured side by side in one run.

    python benchmarks/attribution.py            # prints a table, writes benchmarks/attribution.md and .json
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from labkit import attribution as A
from labkit.runtime import describe, get_device

from _timing import best_of_pair  # benchmarks/_timing.py

HERE = Path(__file__).resolve().parent


def main() -> None:
    dev = get_device()
    torch.manual_seed(0)
    groups = A.patch_groups(8, 2)
    rows = []
    for name, model in [("MLP 64-128-10", A.PixelMLP(64, 128, 10)), ("DigitsCNN", A.DigitsCNN())]:
        model = model.to(dev).eval()
        for batch, q in [(1, 64), (16, 64), (64, 64)]:
            x = torch.rand(batch, 1, 8, 8, device=dev)
            smoothed = A.MuS(model, 0.25, groups, q=q).to(dev)
            masks = smoothed.masks
            ok = torch.allclose(smoothed(x), A.mus_probs_loop(model, x, masks, groups.to(dev)), atol=1e-5)
            t_loop, t_batch = best_of_pair(lambda: A.mus_probs_loop(model, x, masks, groups.to(dev)), lambda: smoothed(x))
            n = batch * q
            rows.append({"model": name, "images": batch, "masks": q, "forward passes": n,
                         "loop (copies/s)": n / t_loop, "batched (copies/s)": n / t_batch,
                         "speed-up": t_loop / t_batch, "same result": ok})
    # Why the CPU default is 96 copies per forward pass: the 64-image case with every chunk size, in the same run.
    sweep = []
    x = torch.rand(64, 1, 8, 8, device=dev)
    for name, model in [("MLP 64-128-10", A.PixelMLP(64, 128, 10)), ("DigitsCNN", A.DigitsCNN())]:
        model = model.to(dev).eval()
        for chunk in [32, 64, 96, 128, 256, 1024, 8192]:
            smoothed = A.MuS(model, 0.25, groups, q=64, batch_size=chunk).to(dev)
            t_loop, t_batch = best_of_pair(lambda: A.mus_probs_loop(model, x, smoothed.masks, groups.to(dev)),
                                           lambda: smoothed(x))
            sweep.append({"model": name, "chunk": chunk, "loop (copies/s)": 4096 / t_loop,
                          "batched (copies/s)": 4096 / t_batch, "speed-up": t_loop / t_batch})
    sweep_lines = ["| model | copies per forward pass | per-mask loop (copies/s) | batched (copies/s) | speed-up |",
                   "|---|---|---|---|---|"]
    for r in sweep:
        sweep_lines.append(f"| {r['model']} | {r['chunk']:,} | {r['loop (copies/s)']:,.0f} | {r['batched (copies/s)']:,.0f} | "
                           f"{r['speed-up']:.1f}× |")
    head = "| model | images | masks q | masked copies | per-mask loop (copies/s) | batched (copies/s) | speed-up | same result |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['images']} | {r['masks']} | {r['forward passes']} | {r['loop (copies/s)']:,.0f} | "
                     f"{r['batched (copies/s)']:,.0f} | {r['speed-up']:.1f}× | {r['same result']} |")
    table = "\n".join(lines)
    md = (f"# MuS: batched masked copies vs a per-mask loop\n\n{describe(dev)} · {platform.platform()}\n\n"
          "Throughput of the smoothed classifier f(x) = (1/q) Σ_v softmax h(x ⊙ s_v) (λ = 1/4, 16 patch features), "
          "each the best of 5 alternating measurements of repeated calls, measured in one run. The per-mask loop does one forward pass per mask over the image "
          "batch; `MuS` builds all B·q masked copies and evaluates them in chunks of its default size (96 copies per forward "
          "pass on a CPU, 8,192 on a GPU).\n\n" + table + "\n\n## Chunk size (64 images × 64 masks = 4,096 copies)\n\n"
          "On a CPU, per-copy throughput of small models falls once a forward pass holds more than a few hundred copies "
          "(the activations stop fitting in cache), so one huge batch can lose to the per-mask loop, which already "
          "batches the 64 images. This sweep is why the CPU default is 96: safely below the CNN's cliff past 128 copies (where per-copy throughput halves) and already ahead of the loop for the MLP, which would prefer larger chunks. With 64 images the loop is itself well batched, so batching the masks gains little there; it pays off when few images are smoothed at a time.\n\n" + "\n".join(sweep_lines) + "\n")
    print(table)
    print("\n".join(sweep_lines))
    (HERE / "attribution.md").write_text(md)
    (HERE / "attribution.json").write_text(json.dumps({"device": str(dev), "rows": rows, "chunk_sweep": sweep}, indent=1))


if __name__ == "__main__":
    main()
