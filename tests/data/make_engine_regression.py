"""Record what the two former intervention engines computed, so the one engine can be checked against them.

Run once at commit 8335b4f (before labkit.lm existed), where ``labkit.patching.run_interventions`` (batch
widened at the lowest site) and ``labkit.mediation.run_interventions`` (each pass starts at its lowest layer
from the cached residual stream) were two separate implementations:

    python tests/data/make_engine_regression.py      # writes tests/data/engine_regression.pt

The file holds the inputs (token ids) and the outputs of both engines, of attribution patching (both former
copies) and of its IG version, on SmolLM2-135M-Instruct. ``tests/test_interventions.py`` recomputes them
with the one engine and requires the same numbers up to float rounding. This script needs the old API and
is kept as the record of how the file was made.
"""

from pathlib import Path

import torch

import labkit
from labkit import mediation, patching


def main():
    labkit.setup(seed=0, quiet=True)
    lm = labkit.load_lm()
    out = {"commit": "8335b4f"}
    # notebook 07's setting: three professions -> "man", metric logit(he) - logit(she)
    clean_p, patch_p, _ = patching.profession_pairs(lm, template="The {} said that", n=3)
    clean, corrupt = patching.tokenize_pair(lm, clean_p, patch_p)
    he, she = lm.token_id(" he"), lm.token_id(" she")
    metric = patching.logit_diff_readout(he, she)
    L, H = lm.n_layers, lm.n_heads
    heads = patching.head_interventions(L, H)
    resid = patching.resid_interventions(L, clean.shape[1])
    out["patching"] = {
        "clean": clean.cpu(), "corrupt": corrupt.cpu(), "good": he, "bad": she,
        "exact_heads": patching.exact_patching(lm, clean, corrupt, heads, metric),
        "exact_resid": patching.exact_patching(lm, clean, corrupt, resid, metric),
    }
    sites_h = [f"head.{l}" for l in range(L)]
    sites_r = [f"resid_pre.{l}" for l in range(L)]
    atp = patching.attribution_patching(lm, clean, corrupt, sites_h + sites_r, metric)
    out["patching"]["atp_heads"] = patching.reduce_site(atp, heads)
    out["patching"]["atp_resid"] = patching.reduce_site(atp, resid)
    ig = patching.ig_patching(lm, clean, corrupt, sites_h, metric, n_steps=4)
    out["patching"]["ig4_heads"] = patching.reduce_site(ig, heads)
    # notebook 08's setting: four professions, set-gender, log y = log p(anti) - log p(stereo)
    profs = [p for p in mediation.load_professions() if p["word"] in ("nurse", "librarian", "president", "warrior")]
    null_ids, set_ids, anti, stereo = mediation.mediation_inputs(lm, profs, ["The {} said that"])
    g = torch.Generator().manual_seed(0)
    D = lm.model.config.intermediate_size
    neurons = [(l, int(i)) for l in range(L) for i in torch.randperm(D, generator=g)[:4]]
    eff = mediation.head_effects(lm, null_ids, set_ids, anti, stereo)
    out["mediation"] = {
        "null": null_ids.cpu(), "set": set_ids.cpu(), "anti": anti, "stereo": stereo, "neurons": neurons,
        "log_y_null": mediation.log_ratio(lm, null_ids, anti, stereo),
        "head_nie": eff["nie"], "head_nde": eff["nde"],
        "neuron_nie": mediation.neuron_nie(lm, null_ids, set_ids, anti, stereo, neurons, position=1),
        "neuron_estimate": mediation.neuron_nie_estimate(lm, null_ids, set_ids, anti, stereo, position=1),
    }
    path = Path(__file__).with_name("engine_regression.pt")
    torch.save(out, path)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
