"""labkit.circuits (induction heads, IOI, path patching) and the hooks it added to labkit.lm (q.L, k.L, v.L; the
engine's source activations and whole-sequence readouts), against brute force on tiny random models and on the
course model.

Tiny models: Llama (grouped-query attention, 4 query heads on 2 key/value heads) and GPT-2 with 4 layers, built
from test_architectures' configs and word-level tokenizer (``w0`` … ``w95``; names and templates are made of
those words), so effects are large enough to compare at float tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
import transformers as T
from test_architectures import COMMON, GQA, tiny_tokenizer
from test_interventions import brute_force

from labkit import circuits as C
from labkit.lm import LanguageModel, hooks
from labkit.lm import interventions as I

N_LAYERS = 4
NAMES = [f"w{i}" for i in range(20, 60)]
TEMPLATES = ["w1 w2 {A} w3 {B} w4 w5 w6 {S} w7 w8", "w9 {A} w10 {B} w11 {S} w12"]


def _build(family: str) -> LanguageModel:
    torch.manual_seed(0)
    if family == "llama":
        cfg = T.LlamaConfig(**{**COMMON, "num_hidden_layers": N_LAYERS}, **GQA)
    else:
        cfg = T.GPT2Config(vocab_size=COMMON["vocab_size"], n_embd=32, n_layer=N_LAYERS, n_head=4, n_positions=64,
                           n_inner=64, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
    model = T.AutoModelForCausalLM.from_config(cfg).eval()
    return LanguageModel(model, tiny_tokenizer(), name=f"tiny-{family}")


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request) -> LanguageModel:
    return _build(request.param)


@pytest.fixture(scope="module")
def llama() -> LanguageModel:
    return _build("llama")


@pytest.fixture(scope="module")
def group(tiny):
    return C.ioi_dataset(tiny, n=3, templates=TEMPLATES[:1], names=NAMES, orders=["BABA"], seed=1)[0]


# --------------------------------------------------------------------------------------------------
# labkit.lm: the q, k, v sites


def test_qkv_sites_are_what_the_attention_computes_with(tiny):
    ids = torch.randint(4, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    L = 1
    with torch.no_grad(), hooks.capture(tiny, [f"q.{L}", f"k.{L}", f"v.{L}", f"pattern.{L}", f"head.{L}",
                                               f"resid_pre.{L}"]) as c:
        tiny.model(input_ids=ids)
    q, k, v = c[f"q.{L}"], c[f"k.{L}"], c[f"v.{L}"]
    assert q.shape == k.shape == v.shape == (2, 7, 4, 8)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(scores.softmax(-1), c[f"pattern.{L}"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.einsum("bhqk,bkhd->bqhd", c[f"pattern.{L}"], v), c[f"head.{L}"], atol=1e-5,
                               rtol=1e-5)
    if tiny.layout.family == "llama":  # values from the weights (no rotary on values); GQA: one kv head per 2 heads
        block = tiny.model.model.layers[L]
        with torch.no_grad():
            ref = block.self_attn.v_proj(block.input_layernorm(c[f"resid_pre.{L}"])).unflatten(-1, (2, 8))
        torch.testing.assert_close(v, ref.repeat_interleave(2, dim=2), atol=1e-6, rtol=1e-5)
        assert torch.equal(k[:, :, 0], k[:, :, 1]) and not torch.equal(k[:, :, 1], k[:, :, 2])


def test_patching_one_heads_key_changes_only_that_heads_pattern(tiny):
    """Under GQA the key is shared by two query heads; the k.L site is per query head, so the edit stays in one."""
    ids = torch.randint(4, 100, (2, 7), generator=torch.Generator().manual_seed(1))

    def edit(k):
        k[:, :, 1] = k[:, :, 1] * 3.0  # in place on head 1 only

    with torch.no_grad():
        plain = tiny.model(input_ids=ids).logits
    with torch.no_grad(), hooks.capture(tiny, "pattern.2") as before:
        tiny.model(input_ids=ids)
    with torch.no_grad(), hooks.patch(tiny, {"k.2": edit}), hooks.capture(tiny, "pattern.2") as after:
        tiny.model(input_ids=ids)
    changed = [(after["pattern.2"][:, h] - before["pattern.2"][:, h]).abs().max().item() > 1e-4 for h in range(4)]
    assert changed == [False, True, False, False]
    with torch.no_grad():  # the model's own attention is back after the block: bit-identical logits
        assert torch.equal(tiny.model(input_ids=ids).logits, plain)


# --------------------------------------------------------------------------------------------------
# labkit.lm.interventions: given source activations and whole-sequence readouts


def test_engine_with_given_source_activations_equals_brute_force(tiny):
    base = torch.randint(4, 100, (3, 6), generator=torch.Generator().manual_seed(2))
    source = torch.randint(4, 100, (3, 6), generator=torch.Generator().manual_seed(3))
    ivs = [[("head.2", (slice(None), 1))], [("mlp_post.1", (4, 7))], [("head.0", (2, 3)), ("resid_pre.3", (1,))]]
    sites = ["head.2", "mlp_post.1", "head.0", "resid_pre.3"]
    with torch.no_grad(), hooks.capture(tiny, sites) as acts:
        tiny.model(input_ids=source)
    readout = I.logit_diff_readout(5, 9)
    got = I.run_interventions(tiny, base, dict(acts), ivs, readout, batch_size=2)
    torch.testing.assert_close(got, brute_force(tiny, base, source, ivs, readout), atol=1e-5, rtol=1e-5)
    # one row for all prompts broadcasts; all_positions hands the readout every position
    mean = {s: a.mean(0, keepdim=True) for s, a in acts.items()}
    whole = lambda logits: logits[:, :, 5].double().sum(-1)
    got = I.run_interventions(tiny, base, mean, ivs[:1], whole, all_positions=True)
    with torch.no_grad(), hooks.patch(tiny, {"head.2": lambda a: torch.cat([a[:, :, :1], mean["head.2"][:, :, 1:2].expand(3, -1, -1, -1), a[:, :, 2:]], 2)}):
        ref = whole(tiny.model(input_ids=base).logits)
    torch.testing.assert_close(got[0], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match="no source activation for 'mlp_post.1'"):
        I.run_interventions(tiny, base, {"head.2": acts["head.2"]}, ivs[:2], readout)
    with pytest.raises(ValueError, match="batch axis of 3"):
        I.run_interventions(tiny, base, {"head.2": acts["head.2"][:2]}, ivs[:1], readout)


# --------------------------------------------------------------------------------------------------
# Induction


def test_repeated_tokens(lm):
    ids = C.repeated_tokens(lm, 3, 5, seed=4)
    assert C.document_start(lm.tokenizer) == lm.tokenizer.convert_tokens_to_ids("<|endoftext|>") == 0
    assert ids.shape == (3, 11) and (ids[:, 0] == 0).all()
    assert torch.equal(ids[:, 1:6], ids[:, 6:]) and ids[:, 1:].min() > max(lm.tokenizer.all_special_ids)
    assert torch.equal(ids, C.repeated_tokens(lm, 3, 5, seed=4)) and not torch.equal(ids, C.repeated_tokens(lm, 3, 5, seed=5))
    bare = C.repeated_tokens(50, 2, 4, bos=None)
    assert bare.shape == (2, 8) and bare.max() < 50 and torch.equal(bare[:, :4], bare[:, 4:])


def test_per_token_loss_and_halves_equal_a_direct_computation(tiny):
    ids = C.repeated_tokens(100, 3, 4, seed=1, bos=1)  # [3, 9]
    loss = C.per_token_loss(tiny, ids, batch_size=2)
    with torch.no_grad():
        logp = tiny.model(input_ids=ids).logits.log_softmax(-1)
    for b in range(3):
        for t in range(8):
            assert loss[b, t].item() == pytest.approx(-logp[b, t, ids[b, t + 1]].item(), abs=1e-5)
    first, second = C.repeat_halves(loss, 4)
    # first copy: tokens 1-4 predicted at t = 0-3; repeat: tokens 6-8 (not 5, the repeat's first) at t = 5-7
    assert first.item() == pytest.approx(loss[:, 0:4].mean().item()) and second.item() == pytest.approx(loss[:, 5:8].mean().item())


def _loop_score(p, pairs):
    return sum(p[..., i, j] for i, j in pairs) / len(pairs)


def test_pattern_scores_equal_loops_and_recognise_planted_heads():
    T_, seq = 4, 9  # BOS + two copies of 4
    p = torch.rand(2, 3, 2, seq, seq).softmax(-1)  # [layers, batch, heads, query, key]
    ind = C.induction_scores(p, T_)
    prev = C.previous_token_scores(p)
    dup = C.duplicate_token_scores(p, T_)
    rep = range(seq - T_, seq)
    torch.testing.assert_close(ind, _loop_score(p, [(i, i - T_ + 1) for i in rep]).mean(1))
    torch.testing.assert_close(prev, _loop_score(p, [(i, i - 1) for i in range(1, seq)]).mean(1))
    torch.testing.assert_close(dup, _loop_score(p, [(i, i - T_) for i in rep]).mean(1))
    planted = torch.zeros(1, 1, 3, seq, seq)
    for i in range(seq):
        planted[0, 0, 0, i, max(i - 1, 0)] = 1  # a previous-token head
        planted[0, 0, 1, i, i - T_ + 1 if i >= seq - T_ else i] = 1  # an induction head
        planted[0, 0, 2, i, i] = 1  # attends to its own position
    assert C.previous_token_scores(planted)[0].tolist() == pytest.approx([1, 0, 0])
    assert C.induction_scores(planted, T_)[0].tolist() == pytest.approx([0, 1, 0])
    assert C.top_heads(C.induction_scores(planted, T_), k=1) == [(0, 1, 1.0)]
    assert C.induction_scores(planted[0], T_).shape == (1, 3)  # one layer given as [batch, heads, q, k]


def test_attention_patterns_are_the_pattern_sites(tiny):
    ids = C.repeated_tokens(100, 2, 3, bos=1)
    pats = C.attention_patterns(tiny, ids)
    with torch.no_grad(), hooks.capture(tiny, "pattern.3") as c:
        tiny.model(input_ids=ids)
    assert pats.shape == (N_LAYERS, 2, 4, 7, 7) and torch.equal(pats[3], c["pattern.3"])
    torch.testing.assert_close(C.attention_patterns(tiny, ids, layers=[3])[0], pats[3])


@pytest.mark.parametrize("how", ["zero", "mean"])
def test_ablate_heads_equals_one_patched_pass_per_set(tiny, how):
    ids = C.repeated_tokens(100, 3, 4, seed=2, bos=1)
    sets = [[], [(0, 1)], [(1, 2), (3, 3), (3, 0)], [(L, h) for L in range(N_LAYERS) for h in range(4)]]
    means = C.head_means(tiny, ids) if how == "mean" else None
    readout = C.repeat_loss_readout(ids, 4)
    got = C.ablate_heads(tiny, ids, sets, readout, means=means, all_positions=True, batch_size=2)
    for j, heads in enumerate(sets):
        def edit_for(L, heads=heads):
            def edit(a):
                a = a.clone()
                for layer, h in heads:
                    if layer == L:
                        a[:, :, h] = 0 if means is None else means[f"head.{L}"][:, :, h]
                return a
            return edit
        with torch.no_grad(), hooks.patch(tiny, {f"head.{L}": edit_for(L) for L in range(N_LAYERS)}):
            logits = tiny.model(input_ids=ids).logits
        ref = -logits[:, 5:8].log_softmax(-1).gather(-1, ids[:, 6:9, None])[..., 0].double().mean(-1)
        torch.testing.assert_close(got[j], ref, atol=1e-5, rtol=1e-5)
    assert (got[0] - got[3]).abs().max() > 1e-3  # ablating everything changes the loss


# --------------------------------------------------------------------------------------------------
# IOI


def test_ioi_dataset_positions_names_and_abc(tiny):
    groups = C.ioi_dataset(tiny, n=4, templates=TEMPLATES, names=NAMES, seed=3)
    assert [(g["template"], g["order"]) for g in groups] == [(t, o) for t in TEMPLATES for o in ("ABBA", "BABA")]
    for g in groups:
        pos, ids = g["positions"], g["clean_ids"]
        assert C.document_start(tiny.tokenizer) == tiny.tokenizer.bos_token_id and (ids[:, 0] == tiny.tokenizer.bos_token_id).all()
        assert ids.shape == g["corrupt_ids"].shape
        assert (ids[:, pos["IO"]] == g["io"]).all() and (ids[:, pos["S1"]] == g["s"]).all()
        assert (ids[:, pos["S2"]] == g["s"]).all() and pos["S1+1"] == pos["S1"] + 1 and pos["END"] == ids.shape[1] - 1
        assert (pos["IO"] < pos["S1"]) == (g["order"] == "ABBA")
        for k in range(4):
            abc = {int(g["corrupt_ids"][k, p]) for p in (pos["IO"], pos["S1"], pos["S2"])}
            assert len(abc) == 3 and not abc & {int(g["io"][k]), int(g["s"][k])}
            assert g["prompts"][k].split().count(tiny.decode(g["s"][k]).strip()) == 2
    assert C.single_token_names(tiny, ["w3", "w3 w4"]) == ["w3"]


def test_ioi_performance_equals_the_logits(tiny, group):
    (perf,) = C.ioi_performance(tiny, [group])
    with torch.no_grad():
        logits = tiny.model(input_ids=group["clean_ids"]).logits[:, -1]
    diff = logits[torch.arange(3), group["io"]] - logits[torch.arange(3), group["s"]]
    assert perf["logit_diff"] == pytest.approx(diff.mean().item(), abs=1e-5)
    assert perf["accuracy"] == pytest.approx((diff > 0).float().mean().item())


def test_head_patching_equals_brute_force_and_attribution_is_the_gradient(tiny, group):
    readout = I.logratio_readout(group["io"], group["s"])
    got = C.head_patching(tiny, group, positions=["S2", "END"], batch_size=5)
    assert got.shape == (2, N_LAYERS, 4)
    for i, name in enumerate(["S2", "END"]):
        p = group["positions"][name]
        ivs = [[(f"head.{L}", (p, h))] for L in range(N_LAYERS) for h in range(4)]
        with torch.no_grad():
            base = readout(tiny.model(input_ids=group["clean_ids"]).logits).double()
        ref = (brute_force(tiny, group["clean_ids"], group["corrupt_ids"], ivs, readout) - base).mean(1)
        torch.testing.assert_close(got[i].flatten().double(), ref, atol=1e-5, rtol=1e-4)
    some = C.head_patching(tiny, group, positions=["END", "S2"], heads=[(3, 1), (0, 2)])
    torch.testing.assert_close(some, got[[1, 0]][:, [3, 0], [1, 2]])
    assert torch.equal(C.ioi_readout(group)(torch.eye(100)[None].repeat(3, 1, 1)[:, -1:]),
                       readout(torch.eye(100)[None].repeat(3, 1, 1)[:, -1:]))
    est = C.head_attribution(tiny, group, positions=["END"])
    sites = [f"head.{L}" for L in range(N_LAYERS)]
    with torch.no_grad(), hooks.capture(tiny, sites) as corrupt:
        tiny.model(input_ids=group["corrupt_ids"])
    with hooks.capture(tiny, sites, detach=False) as clean:
        grads = torch.autograd.grad(readout(tiny.model(input_ids=group["clean_ids"]).logits).sum(), [clean[s] for s in sites])
    p = group["positions"]["END"]
    ref = torch.stack([(g * (corrupt[s] - clean[s].detach()))[:, p].sum(-1).mean(0) for s, g in zip(sites, grads)])
    torch.testing.assert_close(est[0], ref, atol=1e-6, rtol=1e-5)


def test_logprob_readout_reads_each_prompts_target():
    logits = torch.randn(6, 3, 10)  # 2 copies of 3 prompts
    got = C.logprob_readout(torch.tensor([4, 0, 9]))(logits)
    ref = logits[:, -1].double().log_softmax(-1)[torch.arange(6), torch.tensor([4, 0, 9, 4, 0, 9])]
    torch.testing.assert_close(got, ref)


def test_compare_estimates():
    exact = torch.tensor([3.0, -2.0, 0.5, 0.1, -0.05])
    est = torch.tensor([2.5, -1.0, 0.6, -0.2, 0.0])
    r = C.compare_estimates(exact, est, k=2)
    x, y = exact.double() - exact.double().mean(), est.double() - est.double().mean()
    assert r["pearson"] == pytest.approx(float(x @ y / (x.norm() * y.norm())))
    assert r["spearman"] == pytest.approx(0.9)  # ranks 5,1,4,3,2 vs 5,1,4,2,3: 1 − 6·2/(5·24)
    assert r["top_k_overlap"] == 1.0 and C.compare_estimates(exact, -exact.flip(0), k=1)["top_k_overlap"] == 0.0


SENDERS = [(0, 1), (1, 2), [(0, 0), (1, 3)], (3, 0), (2, 2)]
RECEIVERS = [(2, 1), (3, 3), [(2, 0), (3, 2)], (1, 0)]


@pytest.mark.parametrize("via, freeze_mlps, positions", [("q", False, None), ("k", True, None), ("v", False, [-1, 3]),
                                                         (("q", "k", "v"), False, None)])
def test_path_patching_batched_equals_one_pair_at_a_time(tiny, group, via, freeze_mlps, positions):
    args = (tiny, group["clean_ids"], group["corrupt_ids"], SENDERS, RECEIVERS,
            I.logratio_readout(group["io"], group["s"]))
    kw = {"via": via, "freeze_mlps": freeze_mlps, "receiver_positions": positions}
    got = C.path_patching(*args, **kw, batch_size=3)
    ref = C.path_patching_naive(*args, **kw)
    assert got.shape == (5, 4)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4)
    assert got.abs().max() > 1e-3  # the paths do carry an effect in this random model
    # no path from a sender at or above the receiver's layer: sender (3, 0) reaches no receiver, (1, 2) and (2, 2)
    # not receiver (1, 0)
    assert got[3].abs().max() == 0 and got[1, 3] == 0 and got[4, 3] == 0 and got[0, 3] != 0


def test_path_patching_to_the_logits(tiny, group):
    readout = I.logratio_readout(group["io"], group["s"])
    args = (tiny, group["clean_ids"], group["corrupt_ids"], SENDERS, None, readout)
    got = C.path_patching(*args, batch_size=2)
    torch.testing.assert_close(got, C.path_patching_naive(*args), atol=2e-5, rtol=1e-4)


def test_direct_path_equals_the_sender_delta_through_the_unembedding(llama, group):
    """With every other head and every MLP frozen, s → logits is the sender's change of the residual stream,
    o_proj(z_ABC − z_clean) of head s, read by the final norm and the unembedding: computed here from the weights."""
    g = C.ioi_dataset(llama, n=3, templates=TEMPLATES[1:], names=NAMES, orders=["ABBA"], seed=5)[0]
    readout = I.logratio_readout(g["io"], g["s"])
    senders = [(0, 2), (2, 1), (3, 3)]
    got = C.path_patching(llama, g["clean_ids"], g["corrupt_ids"], senders, None, readout, freeze_mlps=True)
    last = f"resid_post.{N_LAYERS - 1}"
    sites = [f"head.{L}" for L in range(N_LAYERS)] + [last]
    caches = []
    for ids in (g["clean_ids"], g["corrupt_ids"]):
        with torch.no_grad(), hooks.capture(llama, sites) as c:
            llama.model(input_ids=ids)
        caches.append(c)
    clean, corrupt = caches
    with torch.no_grad():
        base = readout(llama.model.lm_head(llama.model.model.norm(clean[last]))[:, -1:]).double()
        for i, (L, h) in enumerate(senders):
            delta = torch.zeros_like(clean[f"head.{L}"])
            delta[:, :, h] = corrupt[f"head.{L}"][:, :, h] - clean[f"head.{L}"][:, :, h]
            resid = clean[last] + llama.model.model.layers[L].self_attn.o_proj(delta.flatten(-2))
            m = readout(llama.model.lm_head(llama.model.model.norm(resid))[:, -1:]).double()
            assert got[i].item() == pytest.approx((m - base).mean().item(), abs=2e-5)


def _edge_derivative(lm, g, sender, receiver, x, positions=None) -> float:
    """Brute force for one edge: d/dα at α = 0 of the metric when receiver (L, h)'s input x is computed from the
    clean residual stream plus α·Δr, Δr = what the sender head adds to the residual stream when its output alone
    takes its corrupted value (attn_out of the sender's layer with and without the patch); two passes and a backward
    pass per edge (receiver None: α·Δr added to the final residual stream)."""
    readout = I.logratio_readout(g["io"], g["s"])
    (sL, sh) = sender
    corrupt_z = hooks.run_with_cache(lm, g["corrupt_ids"], f"head.{sL}")[1][f"head.{sL}"]

    def sender_patch(a):
        a = a.clone()
        a[:, :, sh] = corrupt_z[:, :, sh]
        return a
    with torch.no_grad():
        base_out = hooks.run_with_cache(lm, g["clean_ids"], f"attn_out.{sL}")[1][f"attn_out.{sL}"]
        with hooks.patch(lm, {f"head.{sL}": sender_patch}):
            delta = hooks.run_with_cache(lm, g["clean_ids"], f"attn_out.{sL}")[1][f"attn_out.{sL}"] - base_out
    alpha = torch.zeros((), requires_grad=True)
    if receiver is None:
        last = f"resid_post.{lm.n_layers - 1}"
        with hooks.patch(lm, {last: lambda a: a + alpha * delta}):
            m = readout(lm.model(input_ids=g["clean_ids"]).logits[:, -1:]).mean()
    else:
        (rL, rh) = receiver
        if sL >= rL:
            return 0.0
        with hooks.patch(lm, {f"resid_pre.{rL}": lambda a: a + alpha * delta}), \
                hooks.capture(lm, f"{x}.{rL}", detach=False) as moved:
            lm.model(input_ids=g["clean_ids"])
        new = moved[f"{x}.{rL}"]

        def receive(a):
            a = a.clone()
            where = slice(None) if positions is None else positions
            a[:, where, rh] = new[:, where, rh]
            return a
        with hooks.patch(lm, {f"{x}.{rL}": receive}):
            m = readout(lm.model(input_ids=g["clean_ids"]).logits[:, -1:]).mean()
    (d,) = torch.autograd.grad(m, alpha)
    return float(d)


@pytest.mark.parametrize("via, positions", [("q", None), ("k", [-1, 2]), ("v", None)])
def test_edge_attribution_is_the_derivative_of_each_edge(tiny, group, via, positions):
    """EAP's score of an edge is the derivative of the metric along the sender's change of the receiver's input
    (computed here one edge at a time with two passes and a backward pass); groups add; no path gives 0."""
    heads = [(L, h) for L in range(N_LAYERS) for h in range(4)]
    readout = I.logratio_readout(group["io"], group["s"])
    got = C.edge_attribution(tiny, group["clean_ids"], group["corrupt_ids"], heads, heads, readout, via=via,
                             receiver_positions=positions)
    assert got.shape == (16, 16) and got.abs().max() > 1e-3
    rng = torch.Generator().manual_seed(3)
    edges = [(heads[i], heads[j]) for i, j in torch.randint(0, 16, (8, 2), generator=rng).tolist()]
    edges += [((0, 1), (2, 3)), ((1, 0), (3, 2)), ((2, 2), (1, 0))]
    for s, r in edges:
        want = _edge_derivative(tiny, group, s, r, via, positions)
        assert got[heads.index(s), heads.index(r)].item() == pytest.approx(want, abs=2e-5, rel=1e-3), (s, r)
    layer = torch.tensor([L for L, _ in heads])
    assert (got[layer[:, None] >= layer[None, :]] == 0).all()  # a sender at or above the receiver: no path
    grouped = C.edge_attribution(tiny, group["clean_ids"], group["corrupt_ids"], SENDERS, RECEIVERS, readout,
                                 via=via, receiver_positions=positions)

    def rows(items):
        return [[heads.index(hd) for hd in (item if isinstance(item, list) else [item])] for item in items]
    for i, si in enumerate(rows(SENDERS)):
        for j, rj in enumerate(rows(RECEIVERS)):
            assert grouped[i, j].item() == pytest.approx(got[si][:, rj].sum().item(), abs=1e-6)


def test_edge_attribution_of_several_inputs_is_the_sum(tiny, group):
    readout = I.logratio_readout(group["io"], group["s"])
    args = (tiny, group["clean_ids"], group["corrupt_ids"], SENDERS, RECEIVERS, readout)
    each = sum(C.edge_attribution(*args, via=x) for x in "qkv")
    torch.testing.assert_close(C.edge_attribution(*args, via=("q", "k", "v")), each, atol=1e-6, rtol=1e-5)


def test_edge_attribution_to_the_logits_and_against_exact_path_patching(tiny, group):
    """Without receivers: the derivative along the sender's direct path. Against the exact quantity it estimates,
    path patching with frozen MLPs, on a random tiny model: close to linear, so the two agree closely."""
    heads = [(L, h) for L in range(N_LAYERS) for h in range(4)]
    readout = I.logratio_readout(group["io"], group["s"])
    direct = C.edge_attribution(tiny, group["clean_ids"], group["corrupt_ids"], heads, None, readout)
    for s in [(0, 0), (2, 3), (3, 1)]:
        assert direct[heads.index(s)].item() == pytest.approx(_edge_derivative(tiny, group, s, None, None), abs=2e-5,
                                                               rel=1e-3)
    exact = C.path_patching(tiny, group["clean_ids"], group["corrupt_ids"], heads, heads, readout, via="v",
                            freeze_mlps=True)
    est = C.edge_attribution(tiny, group["clean_ids"], group["corrupt_ids"], heads, heads, readout, via="v")
    assert C.compare_estimates(exact, est)["pearson"] > 0.9


def test_faithfulness_and_minimality_equal_brute_force(tiny, group):
    readout = I.logratio_readout(group["io"], group["s"])
    means = C.head_means(tiny, group["corrupt_ids"])
    circuit = [(1, 2), (3, 1), (2, 0)]

    def kept(heads):  # mean-ablate every head not in `heads`, one full pass
        keep = set(heads)

        def edit_for(L):
            def edit(a):
                a = a.clone()
                for h in range(4):
                    if (L, h) not in keep:
                        a[:, :, h] = means[f"head.{L}"][:, :, h]
                return a
            return edit
        with torch.no_grad(), hooks.patch(tiny, {f"head.{L}": edit_for(L) for L in range(N_LAYERS)}):
            return readout(tiny.model(input_ids=group["clean_ids"]).logits).mean().item()

    f = C.circuit_faithfulness(tiny, group, circuit, batch_size=2)
    everything = [(L, h) for L in range(N_LAYERS) for h in range(4)]
    assert f["circuit"] == pytest.approx(kept(circuit), abs=1e-5)
    assert f["model"] == pytest.approx(kept(everything), abs=1e-5)
    assert f["empty"] == pytest.approx(kept([]), abs=1e-5)
    assert f["fraction"] == pytest.approx(f["circuit"] / f["model"])
    assert C.circuit_faithfulness(tiny, group, everything)["fraction"] == pytest.approx(1.0)
    mini = C.minimality(tiny, group, circuit, means=means, remove={(3, 1): [(2, 0)]})
    assert mini[(1, 2)] == pytest.approx(abs(kept(circuit) - kept([(3, 1), (2, 0)])), abs=1e-5)
    assert mini[(3, 1)] == pytest.approx(abs(kept([(1, 2), (3, 1)]) - kept([(1, 2)])), abs=1e-5)


# --------------------------------------------------------------------------------------------------
# The course model


def test_course_model_copies_the_repeat(lm):
    ids = C.repeated_tokens(lm, 4, 20, seed=0)
    first, second = C.repeat_halves(C.per_token_loss(lm, ids), 20)
    assert first > 8 and second < 4  # mean log-probability about −13 in the first copy, about −2 in the repeat
    top = C.top_heads(C.induction_scores(C.attention_patterns(lm, ids), 20), k=3)
    assert top[0][2] > 0.5  # a strong induction head exists


def test_course_model_solves_ioi_and_path_patching_agrees(lm):
    groups = C.ioi_dataset(lm, n=4, templates=C.IOI_TEMPLATES[:3], seed=0)
    perf = C.ioi_performance(lm, groups)
    assert all(p["logit_diff"] > 1 for p in perf) and sum(p["accuracy"] for p in perf) / len(perf) > 0.8
    g = groups[0]
    readout = I.logratio_readout(g["io"], g["s"])
    args = (lm, g["clean_ids"], g["corrupt_ids"], [(7, 1), (9, 2), (12, 0)], [(14, 3), (20, 5)], readout)
    torch.testing.assert_close(C.path_patching(*args, via="q"), C.path_patching_naive(*args, via="q"),
                               atol=5e-5, rtol=1e-4)
    # edge attribution patching on the course model, against the exact quantity it estimates (frozen MLPs); its
    # derivative is exact on the tiny models above, here the question is how linear the edges are (Pearson 0.999
    # on 100 edges into late queries in benchmarks/circuits.md)
    senders, receivers = [(L, h) for L in (8, 14, 17, 19, 20) for h in (0, 2, 4)], [(22, 5), (23, 3), (24, 4)]
    exact = C.path_patching(lm, g["clean_ids"], g["corrupt_ids"], senders, receivers, readout, via="v", freeze_mlps=True)
    est = C.edge_attribution(lm, g["clean_ids"], g["corrupt_ids"], senders, receivers, readout, via="v")
    assert exact.abs().max() > 0.01 and C.compare_estimates(exact, est)["pearson"] > 0.9
