"""The one intervention engine (labkit.lm.interventions) against brute force, against what the two former
engines computed, and against an independent implementation (nnsight).

* brute force: one full forward pass per intervention with plain ``hooks.patch``, on tiny random Llama and
  GPT-2 models (built from configs, no download) and on the course model;
* the former engines: ``tests/data/engine_regression.pt`` holds the results of ``patching.run_interventions``
  (batch widened at the lowest site) and ``mediation.run_interventions`` (each pass started at its lowest layer),
  of both copies of attribution patching and of its IG version, recorded at commit 8335b4f by
  ``tests/data/make_engine_regression.py``; the one engine must give the same numbers;
* the peer: nnsight (test-only, pinned in requirements-test.txt) reads and edits the same module inputs and
  outputs by its own tracing machinery; ``hooks.capture``/``hooks.patch`` and head-level activation patching
  must agree with it to float tolerance.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from labkit import mediation
from labkit.lm import LanguageModel, hooks
from labkit.lm import interventions as I

REGRESSION = Path(__file__).parent / "data" / "engine_regression.pt"


# --------------------------------------------------------------------------------------------------
# Tiny random models with the course tokenizer


def _tiny(arch: str, tokenizer) -> LanguageModel:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab = len(tokenizer)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = LlamaForCausalLM(cfg)
    else:
        cfg = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=4, n_head=4, n_positions=64)
        model = GPT2LMHeadModel(cfg)
    return LanguageModel(model.eval(), tokenizer, name=f"tiny-{arch}")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request, lm):
    return _tiny(request.param, lm.tokenizer)


def _ids(seed: int, k: int = 3, seq: int = 6) -> torch.Tensor:
    return torch.randint(0, 1000, (k, seq), generator=torch.Generator().manual_seed(seed))


def brute_force(lm, base, source, interventions, readout) -> torch.Tensor:
    """One full forward pass per intervention, with the sources captured separately: ``[n, K]``.

    (Capturing or patching an attention pattern switches the model to eager attention for that pass; the
    engine does the same, so both sides compute with the same kernels.)"""
    out = []
    for iv in interventions:
        sites = sorted({s for s, _ in iv})
        with torch.no_grad(), hooks.capture(lm, sites) as src:
            lm.model(input_ids=source)

        def edit_for(site):
            def edit(act):
                act = act.clone()
                for s, index in iv:
                    if s == site:
                        where = (slice(None),) + tuple(index)
                        act[where] = src[site][where]
                return act
            return edit

        with torch.no_grad(), hooks.patch(lm, {s: edit_for(s) for s in sites}):
            out.append(readout(lm.model(input_ids=base).logits).double())
    return torch.stack(out)


MIXED = [
    [("head.2", (slice(None), 1))],
    [("resid_pre.0", (3,))],
    [("mlp_post.1", (4, 7))],
    [("resid_post.3", (slice(None),))],
    [("attn_out.0", (2,)), ("mlp_out.2", (5,))],  # two sites in one intervention
    [("embed", (1,))],
    [("head.3", (slice(None), 0)), ("head.3", (slice(None), 3))],  # two heads of one site
    [("mlp_post.3", (0, 0))],
    [("pattern.1", (2,))],  # one head's whole attention pattern
    [("pattern.2", (0, 5, 1))],  # head 0, query 5, key 1: one attention weight α_{l,h,i,j}
]


# --------------------------------------------------------------------------------------------------
# The engine against brute force


@pytest.mark.parametrize("batch_size, skip_layers", [(1, False), (3, True), (64, True), (64, False)])
def test_engine_equals_one_full_pass_per_intervention(tiny, batch_size, skip_layers):
    base, source = _ids(1), _ids(2)
    readout = I.logit_diff_readout(3, 7)
    got = I.run_interventions(tiny, base, source, MIXED, readout, batch_size=batch_size, skip_layers=skip_layers)
    expected = brute_force(tiny, base, source, MIXED, readout)
    assert got.shape == (len(MIXED), 3) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_head_and_resid_builders_cover_every_component(tiny):
    base, source = _ids(3), _ids(4)
    readout = I.logit_diff_readout(5, 9)
    heads = I.head_interventions(tiny.n_layers, tiny.n_heads)
    resid = I.resid_interventions(tiny.n_layers, base.shape[1])
    assert len(heads) == tiny.n_layers * tiny.n_heads and len(resid) == tiny.n_layers * base.shape[1]
    for ivs in (heads, resid):
        torch.testing.assert_close(I.run_interventions(tiny, base, source, ivs, readout, batch_size=7),
                                   brute_force(tiny, base, source, ivs, readout), atol=1e-5, rtol=1e-5)


def test_logratio_readout_reads_each_pairs_own_tokens(tiny):
    base, source = _ids(5, k=2), _ids(6, k=2)
    num, den = torch.tensor([3, 11]), torch.tensor([7, 2])
    readout = I.logratio_readout(num, den)
    got = I.run_interventions(tiny, base, source, MIXED[:3], readout, batch_size=2)
    with torch.no_grad():
        for j, iv in enumerate(MIXED[:3]):
            logits = brute_force(tiny, base, source, [iv], lambda lg: lg[:, -1])[0]  # [K, vocab]
            expected = logits[torch.arange(2), num] - logits[torch.arange(2), den]
            torch.testing.assert_close(got[j], expected, atol=1e-5, rtol=1e-5)


def test_run_copies_gives_each_copy_its_own_edit(tiny):
    base = _ids(7, k=2)
    readout = I.logit_diff_readout(3, 7)

    def edit(act):  # copy j scales resid_pre.2 by (j + 1)
        scale = torch.arange(1, 4, dtype=act.dtype).repeat_interleave(2)[:, None, None]
        return act * scale

    got = I.run_copies(tiny, base, 3, {"resid_pre.2": edit}, readout)
    for j in range(3):
        with torch.no_grad(), hooks.patch(tiny, {"resid_pre.2": lambda a, j=j: a * (j + 1)}):
            expected = readout(tiny.model(input_ids=base).logits).double()
        torch.testing.assert_close(got[j], expected, atol=1e-5, rtol=1e-5)
    # starting at layer 0 (no skipping) gives the same numbers
    torch.testing.assert_close(I.run_copies(tiny, base, 3, {"resid_pre.2": edit}, readout, start=0), got,
                               atol=1e-5, rtol=1e-5)


def test_attribution_patching_is_the_gradient_times_the_difference(tiny):
    base, source = _ids(8), _ids(9)
    readout = I.logit_diff_readout(3, 7)
    sites = ["head.1", "mlp_post.2", "resid_pre.3"]
    est = I.attribution_patching(tiny, base, source, sites, readout)
    per_pair = I.attribution_patching(tiny, base, source, sites, readout, per_pair=True)
    at_pos = I.attribution_patching(tiny, base, source, ["mlp_post.2"], readout, positions=4, per_pair=True)
    for site in sites:
        with torch.no_grad(), hooks.capture(tiny, site) as src:
            tiny.model(input_ids=source)
        with hooks.capture(tiny, site, detach=False) as c:
            m = readout(tiny.model(input_ids=base).logits).sum()
            (g,) = torch.autograd.grad(m, [c[site]])
        expected = g * (src[site] - c[site].detach())
        torch.testing.assert_close(per_pair[site], expected, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(est[site], expected.mean(0), atol=1e-6, rtol=1e-5)
        if site == "mlp_post.2":
            torch.testing.assert_close(at_pos[site], expected[:, 4], atol=1e-6, rtol=1e-5)


def test_ig_with_many_steps_approaches_the_exact_effect(tiny):
    base, source = _ids(10), _ids(11)
    readout = I.logit_diff_readout(3, 7)
    whole = [[("resid_pre.2", (slice(None),))]]
    exact = I.exact_patching(tiny, base, source, whole, readout)
    ig = I.ig_patching(tiny, base, source, ["resid_pre.2", "embed"], readout, n_steps=64)
    assert float(ig["resid_pre.2"].sum()) == pytest.approx(float(exact), rel=0.05, abs=1e-3)
    one = I.ig_patching(tiny, base, source, ["resid_pre.2"], readout, n_steps=1)
    # N = 1: the gradient at the patched point (α = 0), i.e. minus attribution patching from the other side
    back = I.attribution_patching(tiny, source, base, ["resid_pre.2"], readout)
    torch.testing.assert_close(one["resid_pre.2"], -back["resid_pre.2"], atol=1e-5, rtol=1e-4)


def test_midpoint_rule_converges_faster_than_the_lectures_left_sum(tiny):
    """Σ F̂_IG → exact effect of patching the whole site; the left sum's error falls like 1/N, the midpoint's like 1/N²."""
    base, source = _ids(14), _ids(15)
    readout = I.logit_diff_readout(3, 7)
    exact = float(I.exact_patching(tiny, base, source, [[("resid_pre.1", (slice(None),))]], readout))
    err = {rule: [abs(float(I.ig_patching(tiny, base, source, ["resid_pre.1"], readout, n_steps=n, rule=rule)
                             ["resid_pre.1"].sum()) - exact) for n in (4, 16)] for rule in ("left", "midpoint")}
    assert err["left"][1] < err["left"][0] and err["midpoint"][1] < err["midpoint"][0]
    assert err["midpoint"][1] < err["left"][1]
    with pytest.raises(ValueError, match="rule must be 'left'"):
        I.ig_patching(tiny, base, source, ["resid_pre.1"], readout, rule="trapezoid")


def test_bad_input_is_refused(tiny):
    base, source = _ids(12), _ids(13)
    readout = I.logit_diff_readout(3, 7)
    run = lambda ivs, **kw: I.run_interventions(tiny, base, source, ivs, readout, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="unknown site kind 'mlp_pots'.*Did you mean 'mlp_post'"):
        run([[("mlp_pots.1", (1, 5))]])
    with pytest.raises(ValueError, match="out of range"):
        run([[("head.9", (slice(None), 0))]])
    with pytest.raises(IndexError, match="does not fit 'mlp_post.1'"):
        run([[("mlp_post.1", (1, 5000))]])
    with pytest.raises(TypeError, match="must be a tuple"):
        run([[("mlp_post.1", 5)]])
    with pytest.raises(ValueError, match="at least one intervention"):
        run([])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        run(MIXED[:1], batch_size=0)
    with pytest.raises(ValueError, match="differ in shape"):
        I.run_interventions(tiny, base, source[:, :3], MIXED[:1], readout)
    with pytest.raises(ValueError, match="one number per row"):
        I.run_interventions(tiny, base, source, MIXED[:1], lambda logits: logits[:, -1])
    with pytest.raises(ValueError, match="no sites"):
        I.attribution_patching(tiny, base, source, [], readout)
    with pytest.raises(ValueError, match="n_steps"):
        I.ig_patching(tiny, base, source, ["head.0"], readout, n_steps=0)
    with pytest.raises(ValueError, match="token id"):
        I.logit_diff_readout(-1, 3)
    with pytest.raises(ValueError, match="n_heads"):
        I.head_interventions(2, 0)


# --------------------------------------------------------------------------------------------------
# The one engine reproduces the two former engines (recorded at 8335b4f)


@pytest.fixture(scope="module")
def former():
    return torch.load(REGRESSION)


@pytest.mark.slow
def test_one_engine_reproduces_the_former_patching_engine(lm, former):
    P = former["patching"]
    clean, corrupt = P["clean"], P["corrupt"]
    metric = I.logit_diff_readout(P["good"], P["bad"])
    heads, resid = I.head_interventions(lm.n_layers, lm.n_heads), I.resid_interventions(lm.n_layers, clean.shape[1])
    torch.testing.assert_close(I.exact_patching(lm, clean, corrupt, heads, metric), P["exact_heads"], atol=5e-5, rtol=1e-5)
    torch.testing.assert_close(I.exact_patching(lm, clean, corrupt, resid, metric), P["exact_resid"], atol=5e-5, rtol=1e-5)
    sites = [f"head.{L}" for L in range(lm.n_layers)] + [f"resid_pre.{L}" for L in range(lm.n_layers)]
    atp = I.attribution_patching(lm, clean, corrupt, sites, metric)
    torch.testing.assert_close(I.reduce_site(atp, heads), P["atp_heads"], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(I.reduce_site(atp, resid), P["atp_resid"], atol=2e-5, rtol=1e-5)
    ig = I.ig_patching(lm, clean, corrupt, sites[: lm.n_layers], metric, n_steps=4)
    torch.testing.assert_close(I.reduce_site(ig, heads), P["ig4_heads"], atol=2e-5, rtol=1e-5)


@pytest.mark.slow
def test_one_engine_reproduces_the_former_mediation_engine(lm, former):
    M = former["mediation"]
    null, setg, anti, stereo = M["null"], M["set"], M["anti"], M["stereo"]
    # float32 on another CPU: its matrix kernels round differently (seen: 5.7e-6 on a log-ratio of 1.6, AVX-512
    # against the recording machine), so the tolerance is float32's, as for the patching engine above
    tol = dict(atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(mediation.log_ratio(lm, null, anti, stereo), M["log_y_null"], **tol)
    eff = mediation.head_effects(lm, null, setg, anti, stereo)
    torch.testing.assert_close(eff["nie"], M["head_nie"], **tol)
    torch.testing.assert_close(eff["nde"], M["head_nde"], **tol)
    nie = mediation.neuron_nie(lm, null, setg, anti, stereo, M["neurons"], position=1)
    torch.testing.assert_close(nie, M["neuron_nie"], **tol)
    est = mediation.neuron_nie_estimate(lm, null, setg, anti, stereo, position=1)
    torch.testing.assert_close(est, M["neuron_estimate"], **tol)
    # the former patching engine's trick (no layer skipping) and one pass per intervention agree too
    readout = I.logratio_readout(anti, stereo)
    ivs = I.neuron_interventions(M["neurons"][:12], position=1)
    torch.testing.assert_close(I.run_interventions(lm, null, setg, ivs, readout, batch_size=1, skip_layers=False),
                               I.run_interventions(lm, null, setg, ivs, readout), atol=5e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# The peer: nnsight


def _nnsight_paths(lm, layer: int) -> dict[str, tuple[str, str]]:
    """Where each labkit site lives for nnsight: (module path from the model root, "input" or "output")."""
    if lm.layout.family == "llama":
        block = f"model.layers.{layer}"
        return {
            "head": (f"{block}.self_attn.o_proj", "input"), "attn_out": (f"{block}.self_attn", "output0"),
            "mlp_post": (f"{block}.mlp.down_proj", "input"), "mlp_out": (f"{block}.mlp", "output"),
            "resid_post": (block, "output"),
        }
    block = f"transformer.h.{layer}"
    return {
        "head": (f"{block}.attn.c_proj", "input"), "attn_out": (f"{block}.attn", "output0"),
        "mlp_post": (f"{block}.mlp.c_proj", "input"), "mlp_out": (f"{block}.mlp", "output"),
        "resid_post": (block, "output"),
    }


def _envoy(model, path: str):
    for part in path.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def _read(envoy, where: str):
    if where == "input":
        return envoy.input
    if where == "output0":
        return envoy.output[0]
    return envoy.output


@pytest.fixture(scope="module")
def peer_models(lm):
    pytest.importorskip("nnsight")
    return {"course": lm, "llama": _tiny("llama", lm.tokenizer), "gpt2": _tiny("gpt2", lm.tokenizer)}


@pytest.mark.parametrize("which", ["llama", "gpt2", "course"])
def test_capture_equals_nnsight(peer_models, which):
    from nnsight import NNsight

    lm = peer_models[which]
    layer = 2
    ids = torch.tensor([lm.encode("The quick brown fox jumps over the lazy dog")])
    kinds = ["head", "attn_out", "mlp_post", "mlp_out", "resid_post"]  # in the order a forward pass meets them
    paths = _nnsight_paths(lm, layer)
    traced = NNsight(lm.model)
    saved = {}
    with torch.no_grad(), traced.trace(ids):
        for kind in kinds:
            path, where = paths[kind]
            saved[kind] = _read(_envoy(traced, path), where).save()
        logits = traced.output.logits.save()
    with torch.no_grad(), hooks.capture(lm, [f"{k}.{layer}" for k in kinds]) as cache:
        ours = lm.model(input_ids=ids).logits
    torch.testing.assert_close(ours, logits, atol=0, rtol=0)
    for kind in kinds:
        got = cache[f"{kind}.{layer}"]
        if kind == "head":
            got = got.flatten(-2)  # [batch, seq, heads, d_head] → the projection's input
        torch.testing.assert_close(got, saved[kind], atol=0, rtol=0, msg=f"{kind}.{layer} differs from nnsight")


@pytest.mark.parametrize("which", ["llama", "gpt2", "course"])
def test_head_patching_equals_nnsight(peer_models, which):
    """Head-level activation patching: the engine (batched, layer-skipping) against nnsight, one trace per head."""
    from nnsight import NNsight

    lm = peer_models[which]
    clean, corrupt = I.paired_ids(lm, ["The nurse said that", "The doctor said that"],
                                  ["The man said that", "The woman said that"])
    readout = I.logit_diff_readout(lm.token_id(" he"), lm.token_id(" she"))
    heads = [(L, h) for L in range(lm.n_layers) for h in range(lm.n_heads)]
    if which == "course":
        heads = heads[::23]  # 12 heads spread over the layers
    ivs = [[(f"head.{L}", (slice(None), h))] for L, h in heads]
    ours = I.exact_patching(lm, clean, corrupt, ivs, readout, batch_size=8)

    traced = NNsight(lm.model)
    d = lm.layout.d_head
    with torch.no_grad():
        base = readout(lm.model(input_ids=clean).logits).double()
        peer = []
        for L, h in heads:
            path, _ = _nnsight_paths(lm, L)["head"]
            with traced.trace(corrupt):
                src = _envoy(traced, path).input[:, :, h * d : (h + 1) * d].save()
            with traced.trace(clean):
                x = _envoy(traced, path).input
                x[:, :, h * d : (h + 1) * d] = src
                m = traced.output.logits.save()
            peer.append(float((readout(m).double() - base).mean()))
    torch.testing.assert_close(ours.double(), torch.tensor(peer, dtype=torch.float64), atol=2e-5, rtol=1e-5)
