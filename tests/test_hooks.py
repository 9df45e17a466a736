"""Tests of labkit.lm.hooks against ground truth computed independently, on tiny random Llama and GPT-2 models."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from labkit.lm import hooks

ARCHS = ["llama", "gpt2"]
N_LAYERS, N_HEADS, D_HEAD, D_MODEL = 3, 4, 8, 32


def tiny(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=101, n_embd=32, n_layer=3, n_head=4, n_positions=64)
        config.bos_token_id = config.eos_token_id = 0  # the default 50256 is outside this vocabulary
        model = GPT2LMHeadModel(config)
    return model.to(dtype).eval()


@pytest.fixture(params=ARCHS)
def model(request):
    return tiny(request.param)


@pytest.fixture
def ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 101, (2, 7), generator=g)


def block(model, layer: int) -> nn.Module:
    return model.model.layers[layer] if isinstance(model, LlamaForCausalLM) else model.transformer.h[layer]


def out_proj(model, layer: int) -> nn.Module:
    b = block(model, layer)
    return b.self_attn.o_proj if isinstance(model, LlamaForCausalLM) else b.attn.c_proj


def down_proj(model, layer: int) -> nn.Module:
    b = block(model, layer)
    return b.mlp.down_proj if isinstance(model, LlamaForCausalLM) else b.mlp.c_proj


def final_norm(model) -> nn.Module:
    return model.model.norm if isinstance(model, LlamaForCausalLM) else model.transformer.ln_f


def token_embedding(model) -> nn.Module:
    return model.model.embed_tokens if isinstance(model, LlamaForCausalLM) else model.transformer.wte


def mlp_neurons(model, layer: int, x: torch.Tensor) -> torch.Tensor:
    """The MLP's hidden activations computed by hand from the residual stream between the two sub-layers."""
    b = block(model, layer)
    if isinstance(model, LlamaForCausalLM):
        h = b.post_attention_layernorm(x)
        return b.mlp.act_fn(b.mlp.gate_proj(h)) * b.mlp.up_proj(h)
    return b.mlp.act(b.mlp.c_fc(b.ln_2(x)))


def n_hooks(model: nn.Module) -> int:
    """All forward hooks on the model (transformers 5 adds its own, permanently, for output_hidden_states)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def n_labkit_hooks(model: nn.Module) -> int:
    """The forward hooks that labkit.lm.hooks installed."""
    fns = [f for m in model.modules() for f in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]]
    return sum(f.__module__ == hooks.__name__ for f in fns)


# --------------------------------------------------------------------------------------------------
# Names


def test_sites_lists_every_kind_and_layer(model):
    names = hooks.sites(model)
    assert names[0] == "embed"
    assert len(names) == 1 + len(hooks.LAYER_KINDS) * N_LAYERS == len(set(names))
    for kind in hooks.LAYER_KINDS:
        assert [f"{kind}.{layer}" in names for layer in range(N_LAYERS)] == [True] * N_LAYERS
    assert all(hooks.parse_site(model, s)[0] == s.split(".")[0] for s in names)
    assert hooks.parse_site(model, "head.2") == ("head", 2)
    assert hooks.parse_site(model, "embed") == ("embed", None)


@pytest.mark.parametrize(
    "site, message",
    [
        ("resid.1", r"unknown site kind 'resid'.*resid_pre.*resid_post.*e\.g\. 'resid_post\.3'.*Did you mean"),
        ("neurons.0", r"unknown site kind 'neurons'.*valid kinds are"),
        ("resid_post.3", r"layer 3 out of range: this model has 3 layers \(0-2\)"),
        ("head.-1", r"layer -1 out of range: this model has 3 layers \(0-2\)"),
        ("resid_post", r"needs a layer.*'resid_post\.0'"),
        ("resid_post.x", r"malformed site 'resid_post\.x'"),
        ("resid_post.1.2", r"malformed site"),
        ("resid_post.", r"malformed site"),
        ("resid_post.--1", r"malformed site"),
        ("embed.0", r"'embed' takes no layer"),
        ("", r"unknown site kind ''"),
    ],
)
def test_bad_site_names(model, site, message):
    with pytest.raises(ValueError, match=message):
        hooks.parse_site(model, site)
    with pytest.raises(ValueError, match=message):
        with hooks.capture(model, ["resid_pre.0", site]):
            pass
    with pytest.raises(ValueError, match=message):
        with hooks.patch(model, {site: lambda x: x}):
            pass
    assert n_labkit_hooks(model) == 0


def test_unsupported_models():
    with pytest.raises(ValueError, match="unsupported model Sequential.*Llama.*GPT-2"):
        hooks.sites(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(TypeError, match="Hugging Face model"):
        hooks.sites("gpt2")
    with pytest.raises(ValueError, match="unsupported model"):
        with hooks.capture(SimpleNamespace(model=nn.Linear(2, 2)), "resid_post.0"):
            pass


# --------------------------------------------------------------------------------------------------
# capture: values against ground truth


def plain_sites(model) -> list[str]:
    """Every site except the attention patterns, queries, keys and values (capturing those switches the model to
    eager attention)."""
    return [s for s in hooks.sites(model) if s.split(".")[0] not in hooks.ATTENTION_KINDS]


def capture_all(model, ids, **kwargs):
    with hooks.capture(model, plain_sites(model), **kwargs) as cache, torch.no_grad():
        out = model(ids, output_hidden_states=True)
    return cache, out


def test_shapes(model, ids):
    cache, _ = capture_all(model, ids)
    d_mlp = 64 if isinstance(model, LlamaForCausalLM) else 4 * D_MODEL
    expected = {
        "embed": (2, 7, D_MODEL), "resid_pre": (2, 7, D_MODEL), "resid_post": (2, 7, D_MODEL),
        "attn_out": (2, 7, D_MODEL), "mlp_out": (2, 7, D_MODEL),
        "head": (2, 7, N_HEADS, D_HEAD), "mlp_post": (2, 7, d_mlp),
    }
    assert sorted(cache) == sorted(plain_sites(model))
    for site, act in cache.items():
        assert tuple(act.shape) == expected[site.split(".")[0]], site
        assert not act.requires_grad


def test_residual_stream_matches_hidden_states(model, ids):
    cache, out = capture_all(model, ids)
    hs = out.hidden_states  # HF: hs[L] is the input of block L; the last entry has the final norm applied
    assert len(hs) == N_LAYERS + 1
    for layer in range(N_LAYERS):
        assert torch.equal(cache[f"resid_pre.{layer}"], hs[layer])
    for layer in range(N_LAYERS - 1):
        assert torch.equal(cache[f"resid_post.{layer}"], hs[layer + 1])
        assert torch.equal(cache[f"resid_post.{layer}"], cache[f"resid_pre.{layer + 1}"])
    last = cache[f"resid_post.{N_LAYERS - 1}"]
    assert not torch.allclose(last, hs[-1])
    torch.testing.assert_close(final_norm(model)(last), hs[-1], rtol=0, atol=1e-6)


def test_embed(model, ids):
    cache, _ = capture_all(model, ids)
    with torch.no_grad():
        tokens = token_embedding(model)(ids)
        assert torch.equal(cache["embed"], tokens)
        if isinstance(model, LlamaForCausalLM):
            assert torch.equal(cache["resid_pre.0"], tokens)
        else:  # GPT-2 adds its position embedding after the token embedding
            positions = model.transformer.wpe(torch.arange(ids.shape[1]))
            torch.testing.assert_close(cache["resid_pre.0"], tokens + positions, rtol=0, atol=1e-6)


def test_block_decomposition(model, ids):
    cache, _ = capture_all(model, ids)
    with torch.no_grad():
        for layer in range(N_LAYERS):
            pre, post = cache[f"resid_pre.{layer}"], cache[f"resid_post.{layer}"]
            attn, mlp = cache[f"attn_out.{layer}"], cache[f"mlp_out.{layer}"]
            torch.testing.assert_close(post, pre + attn + mlp, rtol=0, atol=1e-5)
            heads = cache[f"head.{layer}"]
            torch.testing.assert_close(out_proj(model, layer)(heads.flatten(-2)), attn, rtol=0, atol=1e-6)
            neurons = cache[f"mlp_post.{layer}"]
            torch.testing.assert_close(neurons, mlp_neurons(model, layer, pre + attn), rtol=0, atol=1e-6)
            torch.testing.assert_close(down_proj(model, layer)(neurons), mlp, rtol=0, atol=1e-6)


def test_positions_and_repeated_passes(model, ids):
    full, _ = capture_all(model, ids)
    other = torch.randint(0, 101, (3, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with hooks.capture(model, "resid_post.1", positions=-1) as last:
            model(ids)
        assert list(last) == ["resid_post.1"]
        assert torch.equal(last["resid_post.1"], full["resid_post.1"][:, -1])
        with hooks.capture(model, ["head.0"], positions=[0, 2]) as some:
            model(ids)
        assert torch.equal(some["head.0"], full["head.0"][:, [0, 2]])
        # Repeated passes: the last one wins by default ...
        with hooks.capture(model, "resid_post.1") as cache:
            model(other)
            model(ids)
        assert torch.equal(cache["resid_post.1"], full["resid_post.1"])
        # ... or accumulate along the batch.
        with hooks.capture(model, "resid_post.1", positions=-1, accumulate=True) as cache:
            model(ids)
            model(other)
        assert cache["resid_post.1"].shape == (5, D_MODEL)
        assert torch.equal(cache["resid_post.1"][:2], full["resid_post.1"][:, -1])
        with pytest.raises(ValueError, match=r"only the batch dimension may differ.*positions"):
            with hooks.capture(model, "resid_post.1", accumulate=True):
                model(ids)
                model(other)


def test_cache_errors_and_wrapper(model, ids):
    wrapper = SimpleNamespace(model=model, tokenizer=None)  # a LanguageModel-like object
    with hooks.capture(wrapper, "mlp_out.2") as cache:
        with pytest.raises(KeyError, match="not been captured yet"):
            cache["mlp_out.2"]
        with torch.no_grad():
            model(ids)
    assert cache["mlp_out.2"].shape == (2, 7, D_MODEL)
    with pytest.raises(KeyError, match="not in this cache; it captures mlp_out.2"):
        cache["mlp_out.1"]
    with pytest.raises(ValueError, match="accumulate=True"):
        with hooks.capture(model, "mlp_out.2", detach=False, accumulate=True):
            pass


def test_run_with_cache(model, ids):
    full, out = capture_all(model, ids)
    output, cache = hooks.run_with_cache(model, ids, ["head.1", "embed"])
    assert torch.equal(output.logits, out.logits)
    assert torch.equal(cache["head.1"], full["head.1"]) and torch.equal(cache["embed"], full["embed"])
    assert not output.logits.requires_grad
    output, cache = hooks.run_with_cache(model, {"input_ids": ids}, "mlp_post.0", positions=-1)
    assert torch.equal(cache["mlp_post.0"], full["mlp_post.0"][:, -1])


# --------------------------------------------------------------------------------------------------
# patch


def logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(ids, **kwargs).logits


def test_identity_patches_change_nothing(model, ids):
    base = logits(model, ids)
    cache, _ = capture_all(model, ids)
    eager = [f"{kind}.1" for kind in hooks.ATTENTION_KINDS]
    with hooks.capture(model, eager) as patterns, torch.no_grad():
        model(ids)
    cache.update(patterns)
    for site in ["embed"] + [f"{kind}.1" for kind in hooks.LAYER_KINDS]:
        for edit in (lambda x: x, lambda x: None, cache[site], cache[site].clone()):
            with hooks.patch(model, {site: edit}):
                if site.split(".")[0] in hooks.ATTENTION_KINDS:  # eager attention instead of the fused kernel: float rounding
                    torch.testing.assert_close(logits(model, ids), base, atol=1e-5, rtol=1e-5)
                else:
                    assert torch.equal(logits(model, ids), base), site
    assert n_labkit_hooks(model) == 0


def test_zero_ablating_a_head_equals_zeroing_its_weights(model, ids):
    layer, h = 1, 2
    base = logits(model, ids)

    def ablate(heads):
        heads[:, :, h] = 0  # in place, returns None

    with hooks.patch(model, {f"head.{layer}": ablate}):
        ablated = logits(model, ids)
    keep = torch.ones(N_HEADS, D_HEAD)
    keep[h] = 0
    with hooks.patch(model, {f"head.{layer}": lambda heads: heads * keep}):
        ablated_by_mask = logits(model, ids)
    assert not torch.allclose(ablated, base, atol=1e-4)
    torch.testing.assert_close(ablated_by_mask, ablated, rtol=0, atol=1e-6)
    # Ground truth: the head's columns of the output projection set to zero.
    proj = out_proj(model, layer)
    cols = slice(h * D_HEAD, (h + 1) * D_HEAD)
    with torch.no_grad():
        if isinstance(proj, nn.Linear):  # weight [out, in]
            proj.weight[:, cols] = 0
        else:  # GPT-2's Conv1D: weight [in, out]
            proj.weight[cols, :] = 0
    torch.testing.assert_close(logits(model, ids), ablated, rtol=0, atol=1e-5)
    # A tensor patch replaces everything: all heads zero equals a zero output projection input.
    with hooks.patch(model, {f"head.{layer}": torch.zeros(2, 7, N_HEADS, D_HEAD)}):
        all_zero = logits(model, ids)
    with torch.no_grad():
        proj.weight.zero_()
    torch.testing.assert_close(logits(model, ids), all_zero, rtol=0, atol=1e-5)


def test_patching_the_residual_stream_transplants_a_run(model, ids):
    other = torch.randint(0, 101, (2, 7), generator=torch.Generator().manual_seed(3))
    cache, out = capture_all(model, other)
    last = f"resid_post.{N_LAYERS - 1}"
    with hooks.patch(model, {last: cache[last]}):
        assert torch.equal(logits(model, ids), out.logits)
    with hooks.patch(model, {"resid_post.0": cache["resid_post.0"]}):
        torch.testing.assert_close(logits(model, ids), out.logits, rtol=0, atol=1e-5)
    # One position only: earlier positions are untouched (causal attention), the patched one moves.
    base = logits(model, ids)

    def last_position(x):
        x[:, -1] = cache["resid_post.0"][:, -1]

    with hooks.patch(model, {"resid_post.0": last_position}):
        patched = logits(model, ids)
    assert torch.equal(patched[:, :-1], base[:, :-1])
    assert not torch.allclose(patched[:, -1], base[:, -1], atol=1e-4)


def test_adding_a_vector(model, ids):
    v = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = model(inputs_embeds=token_embedding(model)(ids) + v).logits
    for site in ("resid_pre.0", "embed"):
        with hooks.patch(model, {site: lambda x: x + v}):
            torch.testing.assert_close(logits(model, ids), expected, rtol=0, atol=1e-5)
    assert not torch.allclose(expected, logits(model, ids), atol=1e-4)
    # A later layer, and nested patches on two sites, add up.
    cache, _ = capture_all(model, ids)
    with hooks.patch(model, {"resid_pre.2": cache["resid_pre.2"] + v}):
        one = logits(model, ids)
    half = lambda x: x + v / 2  # noqa: E731
    with hooks.patch(model, {"resid_pre.2": half}), hooks.patch(model, {"resid_post.1": half}):
        two = logits(model, ids)
    torch.testing.assert_close(one, two, rtol=0, atol=1e-5)


def test_broadcast_patch_and_capture_sees_the_patch(model, ids):
    v = torch.randn(D_MODEL)
    with hooks.patch(model, {"resid_post.0": v}), hooks.capture(model, ["resid_post.0", "resid_pre.1"]) as cache:
        out = model(ids, output_hidden_states=True)
    assert torch.equal(cache["resid_post.0"], v.expand(2, 7, D_MODEL))  # a capture sees the patched value
    assert torch.equal(cache["resid_pre.1"], v.expand(2, 7, D_MODEL))
    assert torch.equal(out.hidden_states[1], v.expand(2, 7, D_MODEL))  # and so does HF's own record
    # Capture opened first, patch inside it: the capture still sees the patched value.
    with hooks.capture(model, "mlp_out.1") as cache, hooks.patch(model, {"mlp_out.1": torch.zeros(D_MODEL)}):
        model(ids)
    assert torch.equal(cache["mlp_out.1"], torch.zeros(2, 7, D_MODEL))


@pytest.mark.parametrize(
    "site, edit, message",
    [
        ("resid_post.1", torch.zeros(2, 6, D_MODEL), r"'resid_post\.1': expected shape \[2, 7, 32\].*got \[2, 6, 32\]"),
        ("head.0", torch.zeros(2, 7, D_MODEL), r"patch of 'head\.0': expected shape \[2, 7, 4, 8\].*got \[2, 7, 32\]"),
        ("head.0", lambda h: h[:, :, 1].zero_(), r"patch of 'head\.0': expected shape \[2, 7, 4, 8\].*got \[2, 7, 8\]"),
        ("mlp_out.2", lambda x: x.sum(-1), r"patch of 'mlp_out\.2'.*got \[2, 7\]"),
    ],
)
def test_wrong_patch_shapes(model, ids, site, edit, message):
    with pytest.raises(ValueError, match=message):
        with hooks.patch(model, {site: edit}):
            logits(model, ids)
    assert n_labkit_hooks(model) == 0


def test_bad_patch_values(model, ids):
    with pytest.raises(TypeError, match="expected a tensor or a function, got float"):
        with hooks.patch(model, {"resid_pre.0": 0.0}):
            pass
    with pytest.raises(TypeError, match=r"patch of 'resid_pre\.0': expected a tensor.*got list"):
        with hooks.patch(model, {"resid_pre.0": lambda x: [1]}):
            logits(model, ids)
    assert n_labkit_hooks(model) == 0


# --------------------------------------------------------------------------------------------------
# Gradients


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_match_finite_differences(arch, ids):
    model = tiny(arch, dtype=torch.float64)
    target = 5
    names = ["resid_pre.1", "head.1", "mlp_post.0", "attn_out.2", "embed"]

    def loss_fn(out):
        return out.logits[:, -1, target].sum()

    with hooks.capture(model, names, detach=False) as cache:
        loss = loss_fn(model(ids))
    grads = torch.autograd.grad(loss, [cache[s] for s in names])
    g = torch.Generator().manual_seed(5)
    # Finite differences along a random direction. Llama's RMSNorm computes in float32 even in a float64 model
    # (transformers upcasts there, which here means downcasting), so its differences are noisier than GPT-2's.
    eps, rtol = (1e-2, 1e-3) if arch == "llama" else (1e-3, 1e-5)
    for site, grad in zip(names, grads):
        act = cache[site]
        assert grad.shape == act.shape
        # Exact check: patch the site with a leaf tensor holding the same values and differentiate w.r.t. it.
        leaf = act.detach().clone().requires_grad_()
        with hooks.patch(model, {site: leaf}):
            (leaf_grad,) = torch.autograd.grad(loss_fn(model(ids)), leaf)
        torch.testing.assert_close(grad, leaf_grad, rtol=0, atol=1e-12, msg=site)
        direction = torch.randn(act.shape, generator=g, dtype=torch.float64) * act.detach().std()

        def shifted(t):
            with hooks.patch(model, {site: lambda x: x + t * direction}), torch.no_grad():
                return loss_fn(model(ids))

        numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
        torch.testing.assert_close((grad * direction).sum(), numeric, rtol=rtol, atol=1e-9, msg=site)

    # retain_grad and positions give the same gradients.
    with hooks.capture(model, "head.1", detach=False) as full:
        loss = loss_fn(model(ids))
    full["head.1"].retain_grad()
    loss.backward()
    torch.testing.assert_close(full["head.1"].grad, grads[1], rtol=0, atol=1e-12)
    with hooks.capture(model, "head.1", detach=False, positions=-1) as last:
        loss = loss_fn(model(ids))
    (grad_last,) = torch.autograd.grad(loss, last["head.1"])
    assert grad_last.shape == (2, N_HEADS, D_HEAD)
    torch.testing.assert_close(grad_last, grads[1][:, -1], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Hooks are always removed


def test_hooks_removed_after_normal_exit_and_errors(model, ids):
    model(ids, output_hidden_states=True)  # transformers 5 installs its own permanent recording hooks once
    before = n_hooks(model)
    everything = hooks.sites(model)

    with hooks.capture(model, everything), hooks.patch(model, {s: (lambda x: None) for s in everything}):
        assert n_hooks(model) == before + 2 * len(everything)
        logits(model, ids)
    assert n_hooks(model) == before

    with pytest.raises(RuntimeError, match="user code"):
        with hooks.capture(model, everything), hooks.patch(model, {"head.1": lambda h: h}):
            logits(model, ids)
            raise RuntimeError("user code")
    assert n_hooks(model) == before

    def broken(x):
        raise ZeroDivisionError("edit failed")

    with pytest.raises(ZeroDivisionError, match="edit failed"):
        with hooks.capture(model, everything), hooks.patch(model, {"resid_pre.0": lambda x: x, "mlp_post.1": broken}):
            logits(model, ids)
    assert n_hooks(model) == before

    with pytest.raises(ValueError, match="out of range"):  # a bad site after good ones: nothing is left behind
        with hooks.patch(model, {"resid_pre.0": lambda x: x, "resid_pre.7": lambda x: x}):
            pass
    assert n_hooks(model) == before and n_labkit_hooks(model) == 0
    torch.testing.assert_close(logits(model, ids), model(ids).logits.detach())


# --------------------------------------------------------------------------------------------------
# Attention patterns


def test_pattern_equals_the_eager_attentions_transformers_reports(model, ids):
    impl = model.config._attn_implementation
    with torch.no_grad():
        model.config._attn_implementation = "eager"
        try:
            reported = model(ids, output_attentions=True).attentions
        finally:
            model.config._attn_implementation = impl
        with hooks.capture(model, [f"pattern.{L}" for L in range(N_LAYERS)]) as cache:
            assert model.config._attn_implementation == "labkit_pattern"
            model(ids)
    assert model.config._attn_implementation == impl and not hasattr(model.config, "_labkit_pattern_hooks")
    for L in range(N_LAYERS):
        p = cache[f"pattern.{L}"]
        assert p.shape == (2, N_HEADS, 7, 7)
        torch.testing.assert_close(p, reported[L], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, N_HEADS, 7), atol=1e-5, rtol=0)
        assert torch.all(p.triu(diagonal=1) == 0)  # causal: no query reads a later key


def test_patching_a_pattern_to_one_key_copies_that_keys_value(model, ids):
    """With head h attending only to position 0, its output (head.L[:, t, h]) is the same vector v_0 at every t."""
    h = 2

    def to_first(p):
        p = p.clone()
        p[:, h] = 0
        p[:, h, :, 0] = 1
        return p

    with torch.no_grad(), hooks.patch(model, {"pattern.1": to_first}), hooks.capture(model, "head.1") as cache:
        model(ids)
    out = cache["head.1"][:, :, h]  # [batch, seq, d_head]
    torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=1e-6, rtol=1e-5)
    other = cache["head.1"][:, :, (h + 1) % N_HEADS]
    assert not torch.allclose(other, other[:, :1].expand_as(other))  # the other heads still mix positions


def test_pattern_hooks_restore_the_attention_on_error_and_refuse_positions(model, ids):
    impl = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"):
        with hooks.capture(model, "pattern.0"), hooks.patch(model, {"pattern.2": lambda p: p}):
            raise RuntimeError("boom")
    assert model.config._attn_implementation == impl and n_labkit_hooks(model) == 0
    with pytest.raises(ValueError, match=r"a pattern is \[batch, heads, query, key\]"):
        with hooks.capture(model, ["resid_post.0", "pattern.1"], positions=-1):
            pass
    assert model.config._attn_implementation == impl


# --------------------------------------------------------------------------------------------------
# The course model


@pytest.fixture(scope="module")
def lm():
    from labkit.lm import load_lm

    return load_lm()


@pytest.mark.slow
def test_course_model(lm):
    ids = torch.tensor([lm.encode("The capital of France is")], device=lm.device)
    n = lm.n_layers
    assert n == 30
    names = ["head.3", "mlp_post.3", f"resid_post.{n - 2}", f"resid_post.{n - 1}"]
    with hooks.capture(lm, names) as cache, torch.no_grad():  # the LanguageModel wrapper itself
        out = lm.model(ids, output_hidden_states=True)
    s = ids.shape[1]
    assert cache["head.3"].shape == (1, s, 9, 64)
    assert cache["mlp_post.3"].shape == (1, s, 1536)
    assert torch.equal(cache[f"resid_post.{n - 2}"], out.hidden_states[n - 1])
    with torch.no_grad():
        torch.testing.assert_close(lm.model.model.norm(cache[f"resid_post.{n - 1}"]), out.hidden_states[n])
    assert len(hooks.sites(lm)) == 1 + len(hooks.LAYER_KINDS) * n
    with pytest.raises(ValueError, match=r"layer 31 out of range: this model has 30 layers \(0-29\)"):
        hooks.parse_site(lm, "resid_post.31")
    output, cache2 = hooks.run_with_cache(lm, "The capital of France is", "head.3")
    assert torch.equal(cache2["head.3"], cache["head.3"])
    assert torch.equal(output.logits, out.logits)
