"""Every architecture family of labkit.lm.hooks (Llama, Mistral, Qwen2, OLMo, Phi-3, Gemma 2, Gemma 3, GPT-2,
GPT-NeoX/Pythia) on a tiny randomly initialised model built from its config (no download): every site captured
and patched, patches equal to reference computations that edit the weights instead (no hooks), running from a
layer equal to the full forward pass, the intervention engine and attribution patching equal to brute force.

The module paths the reference computations use are written out here, independently of labkit's table.
"""

from __future__ import annotations

import pytest
import torch
import transformers as T
from test_interventions import brute_force  # the engine's reference
from torch import nn

from labkit.lm import LanguageModel, hooks
from labkit.lm import interventions as I

VOCAB, D_MODEL, N_LAYERS, N_HEADS, D_HEAD, D_MLP = 128, 32, 2, 4, 8, 64
COMMON = {"vocab_size": VOCAB, "hidden_size": D_MODEL, "intermediate_size": D_MLP, "num_hidden_layers": N_LAYERS,
          "num_attention_heads": N_HEADS, "max_position_embeddings": 64, "initializer_range": 0.2,
          "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
GQA = {"num_key_value_heads": 2}
# Gemma: a sliding window of 4 (shorter than the 7-token test inputs) on layer 0, full attention on layer 1;
# Gemma 2's logit soft-capping stays on (its defaults: 50 for attention scores, 30 for the final logits).
GEMMA = {**GQA, "head_dim": D_HEAD, "query_pre_attn_scalar": D_HEAD, "sliding_window": 4,
         "layer_types": ["sliding_attention", "full_attention"]}

CONFIGS = {
    "llama": lambda: T.LlamaConfig(**COMMON, **GQA),
    "mistral": lambda: T.MistralConfig(**COMMON, **GQA),
    "qwen2": lambda: T.Qwen2Config(**COMMON, **GQA),
    "olmo": lambda: T.OlmoConfig(**COMMON),
    "phi3": lambda: T.Phi3Config(**COMMON, **GQA),
    "gemma2": lambda: T.Gemma2Config(**COMMON, **GEMMA),
    "gemma3": lambda: T.Gemma3TextConfig(**COMMON, **GEMMA),
    "gpt2": lambda: T.GPT2Config(vocab_size=VOCAB, n_embd=D_MODEL, n_layer=N_LAYERS, n_head=N_HEADS, n_positions=64,
                                 n_inner=D_MLP, initializer_range=0.2, bos_token_id=1, eos_token_id=2),
    "gpt_neox": lambda: T.GPTNeoXConfig(**COMMON),
}
FAMILIES = list(CONFIGS)

# Reference paths (from each architecture's modeling_<arch>.py in transformers), {L} = the layer.
BLOCK = {"gpt2": "transformer.h.{L}", "gpt_neox": "gpt_neox.layers.{L}"}
OUT_PROJ = {"gpt2": "attn.c_proj", "gpt_neox": "attention.dense"}
DOWN_PROJ = {"gpt2": "mlp.c_proj", "gpt_neox": "mlp.dense_4h_to_h"}
EMBED = {"gpt2": "transformer.wte", "gpt_neox": "gpt_neox.embed_in"}


def module(model, table: dict, default: str, layer: int | None = None) -> nn.Module:
    path = table.get(model.config.model_type.replace("gemma3_text", "gemma3"), default)
    if layer is not None:
        path = BLOCK.get(model.config.model_type, "model.layers.{L}").format(L=layer) + "." + path
    return model.get_submodule(path)


def tiny_tokenizer():
    """A word-level tokenizer of 100 tokens ("w0" … "w96" and three specials), built in memory."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{f"w{i}": 4 + i for i in range(96)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return T.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                     unk_token="<unk>")


def build(family: str, seed: int = 0) -> LanguageModel:
    torch.manual_seed(seed)
    model = T.AutoModelForCausalLM.from_config(CONFIGS[family]()).eval()
    return LanguageModel(model, tiny_tokenizer(), name=f"tiny-{family}")


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request) -> LanguageModel:
    return build(request.param)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(4, 100, (2, 7), generator=torch.Generator().manual_seed(1))


def logits(lm, ids, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(input_ids=ids, **kwargs).logits


def plain_sites(lm) -> list[str]:
    return [s for s in hooks.sites(lm) if s.split(".")[0] not in hooks.ATTENTION_KINDS]


# --------------------------------------------------------------------------------------------------
# Sites


def test_family_is_recognised(lm):
    family = lm.name.removeprefix("tiny-")
    assert lm.layout.family == family and family in hooks.FAMILIES
    assert (lm.layout.n_heads, lm.layout.d_head, len(lm.layout.layers)) == (N_HEADS, D_HEAD, N_LAYERS)
    assert lm.layout.unembed is lm.model.get_output_embeddings()


def test_every_site_is_captured_with_its_shape(lm, ids):
    with hooks.capture(lm, hooks.sites(lm)) as cache, torch.no_grad():
        lm.model(input_ids=ids)
    assert sorted(cache) == sorted(hooks.sites(lm)) and len(cache) == 1 + 10 * N_LAYERS
    assert (lm.n_layers, lm.n_heads, lm.d_model, lm.d_mlp) == (N_LAYERS, N_HEADS, D_MODEL, D_MLP)
    expected = {"embed": (2, 7, D_MODEL), "resid_pre": (2, 7, D_MODEL), "resid_post": (2, 7, D_MODEL),
                "attn_out": (2, 7, D_MODEL), "mlp_out": (2, 7, D_MODEL), "head": (2, 7, N_HEADS, D_HEAD),
                "mlp_post": (2, 7, D_MLP), "pattern": (2, N_HEADS, 7, 7),
                "q": (2, 7, N_HEADS, D_HEAD), "k": (2, 7, N_HEADS, D_HEAD), "v": (2, 7, N_HEADS, D_HEAD)}
    for site, act in cache.items():
        assert tuple(act.shape) == expected[site.split(".")[0]], site


def test_residual_stream_decomposes_and_matches_hidden_states(lm, ids):
    with hooks.capture(lm, plain_sites(lm)) as cache, torch.no_grad():
        out = lm.model(input_ids=ids, output_hidden_states=True)
    hs = out.hidden_states
    for L in range(N_LAYERS):
        pre, post = cache[f"resid_pre.{L}"], cache[f"resid_post.{L}"]
        assert torch.equal(pre, hs[L])
        torch.testing.assert_close(post, pre + cache[f"attn_out.{L}"] + cache[f"mlp_out.{L}"], rtol=0, atol=1e-5)
        # head.L is the input of the output projection, mlp_post.L that of the MLP's last projection
        proj = module(lm.model, OUT_PROJ, "self_attn.o_proj", L)
        down = module(lm.model, DOWN_PROJ, "mlp.down_proj", L)
        with torch.no_grad():
            attn = proj(cache[f"head.{L}"].flatten(-2))
            if lm.model.config.model_type.startswith("gemma"):  # Gemma norms each sub-layer's output again
                attn = lm.model.model.layers[L].post_attention_layernorm(attn)
            torch.testing.assert_close(attn, cache[f"attn_out.{L}"], rtol=0, atol=1e-5)
            mlp = down(cache[f"mlp_post.{L}"])
            if lm.model.config.model_type.startswith("gemma"):
                mlp = lm.model.model.layers[L].post_feedforward_layernorm(mlp)
            torch.testing.assert_close(mlp, cache[f"mlp_out.{L}"], rtol=0, atol=1e-5)
    for L in range(N_LAYERS - 1):
        assert torch.equal(cache[f"resid_post.{L}"], cache[f"resid_pre.{L + 1}"])
    with torch.no_grad():
        torch.testing.assert_close(lm.layout.norm(cache[f"resid_post.{N_LAYERS - 1}"]), hs[-1], rtol=0, atol=1e-5)
        tokens = module(lm.model, EMBED, "model.embed_tokens")(ids)
    assert torch.equal(cache["embed"], tokens)
    if lm.model.config.model_type == "gpt2":  # absolute position embeddings are added after the token embedding
        torch.testing.assert_close(cache["resid_pre.0"], tokens + lm.model.transformer.wpe(torch.arange(7)),
                                   rtol=0, atol=1e-6)
    else:
        assert torch.equal(cache["resid_pre.0"], tokens)


def test_patching_a_site_with_its_own_value_changes_nothing(lm, ids):
    base = logits(lm, ids)
    with hooks.capture(lm, plain_sites(lm)) as cache, torch.no_grad():
        lm.model(input_ids=ids)
    for site, value in cache.items():
        with hooks.patch(lm, {site: value.clone()}):
            assert torch.equal(logits(lm, ids), base), site
    with hooks.capture(lm, [f"pattern.{L}" for L in range(N_LAYERS)]) as patterns, torch.no_grad():
        eager = lm.model(input_ids=ids).logits
    torch.testing.assert_close(eager, base, atol=1e-5, rtol=1e-5)  # eager attention: float rounding only
    for site, value in patterns.items():
        with hooks.patch(lm, {site: value.clone()}):
            assert torch.equal(logits(lm, ids), eager), site


def _weight_columns(proj: nn.Module, cols) -> torch.Tensor:
    """The input columns ``cols`` of a projection (nn.Linear: weight [out, in]; GPT-2's Conv1D: [in, out])."""
    return proj.weight[:, cols] if isinstance(proj, nn.Linear) else proj.weight[cols, :]


@pytest.mark.parametrize("family", FAMILIES)
def test_patches_equal_weight_edits(family, ids):
    """Reference computations without hooks: zeroing head h of ``head.L`` = zeroing its input columns of the output
    projection; zeroing neuron i of ``mlp_post.L`` = zeroing column i of the down projection; zeroing ``attn_out.L``
    = zeroing the output projection (weight and bias); adding v to ``embed`` = feeding ``embed(ids) + v``."""
    lm = build(family)
    layer, h, neuron = 1, 2, 5
    v = torch.randn(D_MODEL, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        embedded = module(lm.model, EMBED, "model.embed_tokens")(ids)
        shifted = lm.model(inputs_embeds=embedded + v).logits
    with hooks.patch(lm, {"embed": lambda x: x + v}):
        torch.testing.assert_close(logits(lm, ids), shifted, rtol=0, atol=1e-5)
    patched = {}
    with hooks.patch(lm, {f"head.{layer}": lambda x: x.index_fill(2, torch.tensor([h]), 0.0)}):
        patched["head"] = logits(lm, ids)
    with hooks.patch(lm, {f"mlp_post.{layer}": lambda x: x.index_fill(-1, torch.tensor([neuron]), 0.0)}):
        patched["mlp_post"] = logits(lm, ids)
    with hooks.patch(lm, {f"attn_out.{layer}": torch.zeros(D_MODEL)}):
        patched["attn_out"] = logits(lm, ids)
    base = logits(lm, ids)
    for kind, value in patched.items():
        assert not torch.allclose(value, base, atol=1e-4), kind  # each edit matters
    proj = module(lm.model, OUT_PROJ, "self_attn.o_proj", layer)
    down = module(lm.model, DOWN_PROJ, "mlp.down_proj", layer)
    with torch.no_grad():
        saved = proj.weight.clone()
        _weight_columns(proj, slice(h * D_HEAD, (h + 1) * D_HEAD)).zero_()
        torch.testing.assert_close(logits(lm, ids), patched["head"], rtol=0, atol=1e-5)
        proj.weight.zero_()
        if proj.bias is not None:
            proj.bias.zero_()
        torch.testing.assert_close(logits(lm, ids), patched["attn_out"], rtol=0, atol=1e-5)
        proj.weight.copy_(saved)
        _weight_columns(down, slice(neuron, neuron + 1)).zero_()
        torch.testing.assert_close(logits(lm, ids), patched["mlp_post"], rtol=0, atol=1e-5)


def test_patterns_equal_the_eager_attention_and_can_be_patched(lm, ids):
    model = lm.model
    impl = model.config._attn_implementation
    with torch.no_grad():
        model.config._attn_implementation = "eager"
        try:
            reported = model(input_ids=ids, output_attentions=True).attentions
        finally:
            model.config._attn_implementation = impl
        with hooks.capture(lm, [f"pattern.{L}" for L in range(N_LAYERS)]) as cache:
            model(input_ids=ids)
    assert model.config._attn_implementation == impl
    for L in range(N_LAYERS):
        p = cache[f"pattern.{L}"]
        torch.testing.assert_close(p, reported[L], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, N_HEADS, 7), atol=1e-5, rtol=0)
        assert torch.all(p.triu(diagonal=1) == 0)
    if model.config.model_type.startswith("gemma"):  # layer 0 slides a window of 4: query 6 cannot see keys 0-2
        assert torch.all(cache["pattern.0"][:, :, 6, :3] == 0) and torch.all(cache["pattern.1"][:, :, 6, :3] > 0)

    # A head attending only to key 0 outputs the same vector (v_0) at every position.
    def to_first(p):
        p = p.clone()
        p[:, 1] = 0
        p[:, 1, :, 0] = 1
        return p

    with torch.no_grad(), hooks.patch(lm, {"pattern.1": to_first}), hooks.capture(lm, "head.1") as heads:
        model(input_ids=ids)
    out = heads["head.1"][:, :, 1]
    torch.testing.assert_close(out, out[:, :1].expand_as(out), atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Running from a layer


def test_run_to_and_run_from_equal_the_full_forward_pass(lm, ids):
    full = logits(lm, ids)
    with torch.no_grad():
        for L in range(N_LAYERS):
            hidden = lm.run_to(f"resid_pre.{L}", ids)
            torch.testing.assert_close(lm.run_from(L, hidden, last_only=False), full, rtol=0, atol=1e-5)
            torch.testing.assert_close(lm.run_from(L, hidden), full[:, -1], rtol=0, atol=1e-5)
        # A left-padded batch: the positions and the mask go to the upper blocks as in the full pass.
        batch = lm.batch(["w1 w2 w3 w4 w5", "w7 w8"])
        expected = lm.last_logits(**batch)
        hidden = lm.run_to("resid_pre.1", batch["input_ids"], batch["attention_mask"], batch["position_ids"])
        got = lm.run_from(1, hidden, attention_mask=batch["attention_mask"], position_ids=batch["position_ids"])
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        final = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(lm.run_from(1, lm.run_to("resid_pre.1", ids), output="hidden"), final,
                                   rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# The intervention engine and attribution patching against brute force

MIXED = [
    [("head.1", (slice(None), 1))],
    [("resid_pre.0", (3,))],
    [("mlp_post.0", (4, 7))],
    [("attn_out.0", (2,)), ("mlp_out.1", (5,))],
    [("embed", (1,))],
    [("resid_post.1", (slice(None),))],
    [("pattern.1", (2,))],
]


def test_engine_equals_one_full_pass_per_intervention(lm):
    g = torch.Generator().manual_seed(2)
    base, source = torch.randint(4, 100, (3, 6), generator=g), torch.randint(4, 100, (3, 6), generator=g)
    readout = I.logit_diff_readout(5, 9)
    expected = brute_force(lm, base, source, MIXED, readout)
    assert expected.std() > 0
    for batch_size, skip in ((64, True), (1, False)):
        got = I.run_interventions(lm, base, source, MIXED, readout, batch_size=batch_size, skip_layers=skip)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_attribution_patching_equals_gradient_times_difference(lm):
    g = torch.Generator().manual_seed(3)
    base, source = torch.randint(4, 100, (3, 6), generator=g), torch.randint(4, 100, (3, 6), generator=g)
    readout = I.logit_diff_readout(5, 9)
    sites = ["head.1", "mlp_post.0", "resid_pre.1", "attn_out.0"]
    est = I.attribution_patching(lm, base, source, sites, readout, per_pair=True)
    for site in sites:
        with torch.no_grad(), hooks.capture(lm, site) as src:
            lm.model(input_ids=source)
        with hooks.capture(lm, site, detach=False) as c:
            m = readout(lm.model(input_ids=base).logits).sum()
            (grad,) = torch.autograd.grad(m, [c[site]])
        expected = grad * (src[site] - c[site].detach())
        assert expected.abs().max() > 0, site
        torch.testing.assert_close(est[site], expected, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# Loading: a folder saved with save_pretrained


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_model_of_each_family_loads_through_load_lm(family, tmp_path, ids):
    from labkit.lm import load_lm

    tiny = build(family)
    tiny.model.save_pretrained(tmp_path / family)
    tiny.tokenizer.save_pretrained(tmp_path / family)
    loaded = load_lm(tmp_path / family, device="cpu")
    assert loaded.layout.family == family and loaded.dtype == torch.float32
    assert torch.equal(logits(loaded, ids), logits(tiny, ids))
    assert loaded.tokenizer.get_vocab() == tiny.tokenizer.get_vocab()  # (transformers may pick its own class)
    with hooks.capture(loaded, "head.1") as a, torch.no_grad():
        loaded.model(input_ids=ids)
    with hooks.capture(tiny, "head.1") as b, torch.no_grad():
        tiny.model(input_ids=ids)
    assert torch.equal(a["head.1"], b["head.1"])


# --------------------------------------------------------------------------------------------------
# Unsupported architectures


def test_an_unsupported_architecture_names_the_supported_ones():
    torch.manual_seed(0)
    gptj = T.GPTJForCausalLM(T.GPTJConfig(vocab_size=VOCAB, n_embd=D_MODEL, n_layer=1, n_head=N_HEADS, n_positions=64,
                                          rotary_dim=4, bos_token_id=1, eos_token_id=2))
    with pytest.raises(ValueError, match="unsupported model GPTJForCausalLM \\(model_type 'gptj'\\)") as info:
        hooks.sites(gptj)
    for family in FAMILIES:
        assert family in str(info.value)
    assert "Pythia" in str(info.value) and "SmolLM2" in str(info.value)
    lm = LanguageModel(gptj, tiny_tokenizer())
    with pytest.raises(ValueError, match="unsupported model"):
        lm.run_to("resid_pre.0", torch.tensor([[4, 5]]))
    # A supported model_type whose modules are not where its family keeps them is refused too.
    llama = build("llama").model
    llama.model.layers[0].mlp = nn.Identity()
    with pytest.raises(ValueError, match="says it is a 'llama' model, but its modules are not where"):
        hooks.layout(llama)
