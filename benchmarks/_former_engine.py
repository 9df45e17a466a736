"""The former patching engine's trick, kept as a benchmark baseline (``from _former_engine import widened``).

Until the one intervention engine (``labkit.lm.interventions``), notebook 07's patching ran each batch of
interventions by running the blocks below the batch's lowest site on the K base prompts and *widening* the
batch (repeating it once per intervention) at that block's input; notebook 08's mediation engine instead
cached the base run's residual stream once and started every pass at its lowest layer, which the one engine
does. This file re-implements the first trick with labkit's public API, so the benchmarks can measure both
side by side on the same interventions.
"""

from __future__ import annotations

import torch

from labkit.lm import hooks


@torch.no_grad()
def widened(lm, base_ids, source_ids, interventions, readout, batch_size: int = 64) -> torch.Tensor:
    """``[n, K]`` readouts, batches of ``batch_size`` interventions widened at their lowest block."""
    sites = sorted({s for iv in interventions for s, _ in iv})
    with hooks.capture(lm, sites) as src:
        lm.last_logits(input_ids=source_ids)
    layer_of = {s: hooks.parse_site(lm, s)[1] for s in sites}
    low = [min(-1 if layer_of[s] is None else layer_of[s] for s, _ in iv) for iv in interventions]
    order = sorted(range(len(interventions)), key=low.__getitem__)
    K = base_ids.shape[0]
    out = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        B = len(idx)
        masks = {}
        for j, i in enumerate(idx):
            for site, index in interventions[i]:
                if site not in masks:
                    masks[site] = torch.zeros((B,) + tuple(src[site].shape[1:]), dtype=torch.bool)
                masks[site][(j,) + tuple(index)] = True
        edits = {s: (lambda m, v: (lambda act: torch.where(m, v, act)))(m.repeat_interleave(K, 0),
                                                                        src[s].repeat(B, *([1] * (src[s].dim() - 1))))
                 for s, m in masks.items()}
        first = low[idx[0]]
        handle = None
        if first >= 0:
            def widen(module, args, kwargs):
                h = args[0] if args else kwargs["hidden_states"]
                h = h.repeat(B, *([1] * (h.dim() - 1)))
                return ((h, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": h})

            handle = lm.layout.layers[first].register_forward_pre_hook(widen, with_kwargs=True, prepend=True)
        try:
            with hooks.patch(lm, edits):
                ids = base_ids if first >= 0 else base_ids.repeat(B, 1)
                logits = lm.last_logits(input_ids=ids)
        finally:
            if handle is not None:
                handle.remove()
        out.append(readout(logits[:, None]).double().view(B, K))
    result = torch.empty(len(interventions), K, dtype=torch.float64)
    result[torch.tensor(order)] = torch.cat(out)
    return result
