"""Hooks: read and edit a model's internal activations by name.

Every notebook that looks inside the model names an activation the same way, ``"<kind>.<layer>"``:

* ``embed``: output of the token embedding (see the note on GPT-2 below), [batch, seq, d_model];
* ``resid_pre.L``: input of decoder block L (the residual stream before the block), [batch, seq, d_model];
* ``q.L``, ``k.L``, ``v.L``: the queries, keys and values entering each head's attention, [batch, seq, heads,
  d_head] (queries and keys after the rotary position embedding where the model has one). Under grouped-query
  attention (the course model: 9 query heads, 3 key/value heads) ``k.L`` and ``v.L`` have one entry per *query*
  head, the key/value head repeated for each head it serves, so an edit of ``k.L[:, :, h]`` is seen by head
  ``h`` only (what path patching needs: Wang et al. 2023);
* ``pattern.L``: the attention probabilities softmax(q·k/√d + mask) of every head, [batch, heads, query, key]
  (row q says how much query position q reads from each key position; rows sum to 1);
* ``head.L``: per-head outputs entering the attention output projection, [batch, seq, heads, d_head];
* ``attn_out.L``: output of the attention sub-layer, after the output projection and before the residual add,
  [batch, seq, d_model];
* ``mlp_post.L``: the MLP neurons entering the down projection, [batch, seq, d_mlp];
* ``mlp_out.L``: output of the MLP sub-layer, before the residual add, [batch, seq, d_model];
* ``resid_post.L``: output of decoder block L (the same tensor as ``resid_pre.L+1``), [batch, seq, d_model].

Layers count from 0. In every supported family ``resid_post.L = resid_pre.L + attn_out.L + mlp_out.L``: the two
sub-layers' outputs are what the block adds to its residual stream (for GPT-NeoX/Pythia, whose attention and MLP
read the same ``resid_pre.L`` in parallel, too).

The supported families (:data:`FAMILIES`, one declarative entry each: the module paths of the sites), recognised
by the config's ``model_type`` and checked against the modules; any other model raises ``ValueError`` naming them:

* the **Llama** layout — ``llama`` (Llama, SmolLM2: the course model), ``mistral``, ``qwen2`` (Qwen2, Qwen2.5),
  ``olmo``, and ``phi3`` (its q/k/v and gate/up projections fused into one matrix each): ``model.layers[L]``
  with ``self_attn.o_proj`` (``head`` is its input, ``attn_out`` the attention's output) and
  ``mlp.down_proj`` (``mlp_post`` = ``act(gate(x)) * up(x)`` is its input); ``embed`` is ``model.embed_tokens``
  and equals ``resid_pre.0``;
* **Gemma 2 / Gemma 3** (text) — ``gemma2``, ``gemma3``: the Llama paths, but each sub-layer's output is normed
  again before the residual add, so ``attn_out`` is the output of ``post_attention_layernorm`` (the norm of
  ``o_proj(head)``, no longer linear in ``head``) and ``mlp_out`` that of ``post_feedforward_layernorm``;
  ``embed`` includes Gemma's √d_model scaling (done inside its embedding module) and equals ``resid_pre.0``.
  Attention patterns include Gemma's logit soft-capping and sliding-window masks;
* **GPT-2** — ``gpt2``: ``transformer.h[L]`` with ``attn.c_proj`` and ``mlp.c_proj``; ``mlp_post`` is
  ``act(c_fc(x))``. ``embed`` is the output of the token embedding ``wte`` alone: GPT-2 adds its position
  embedding afterwards, so ``resid_pre.0 = embed + wpe(positions)``;
* **GPT-NeoX** — ``gpt_neox`` (Pythia): ``gpt_neox.layers[L]`` with ``attention.dense`` and
  ``mlp.dense_4h_to_h``; ``embed`` is ``gpt_neox.embed_in`` (= ``resid_pre.0``), the final norm
  ``final_layer_norm``.

Use them with two context managers, which always remove their hooks on exit, also when an error is raised::

    with capture(lm, ["resid_post.12", "head.3"]) as cache:
        lm.model(**inputs)
    cache["head.3"]                                  # [batch, seq, heads, d_head]

    with patch(lm, {"resid_pre.5": lambda x: x + 4 * direction}):
        steered = lm.generate("Tell me about the weather")

Attention patterns, queries, keys and values. Models normally compute attention with a fused kernel (PyTorch's
scaled dot-product attention) that never materialises the probabilities. While a ``pattern``, ``q``, ``k`` or
``v`` site is captured or patched, labkit switches the model to its own eager attention (``softmax`` written
out, the queries, keys, values and probabilities passed through hookable identity modules ``labkit_q``,
``labkit_k``, ``labkit_v``, ``labkit_pattern`` on each attention module) and back when the block ends; results
differ from the fused kernel's only by float rounding (about 1e-6).

Note on ``output_hidden_states=True``: Hugging Face's ``hidden_states[L]`` is ``resid_pre.L`` and
``hidden_states[L + 1]`` is ``resid_post.L``, except the last entry, which has the model's final norm applied.
transformers 5 records them with its own forward hooks on the blocks' outputs, so a patch of ``resid_post.L``
shows up in ``hidden_states`` but a patch of ``resid_pre.L`` (L ≥ 1) does not.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

__all__ = [
    "sites", "parse_site", "capture", "patch", "run_with_cache", "stop_after", "start_at", "Cache", "Layout", "layout",
    "hf_module", "LAYER_KINDS", "MODEL_KINDS", "ATTENTION_KINDS", "Family", "FAMILIES",
]

#: Site kinds that need a layer, in the order a forward pass meets them.
LAYER_KINDS = ("resid_pre", "q", "k", "v", "pattern", "head", "attn_out", "mlp_post", "mlp_out", "resid_post")
#: Site kinds computed inside labkit's eager attention (hooking one switches the model to it, see above).
ATTENTION_KINDS = ("q", "k", "v", "pattern")
#: Site kinds without a layer.
MODEL_KINDS = ("embed",)

@dataclass(frozen=True)
class Family:
    """Where one architecture keeps its parts: a declarative entry of :data:`FAMILIES`, no code.

    Paths are attribute paths: ``decoder`` from the ``*ForCausalLM`` model to the decoder stack; ``layers``,
    ``embed`` and ``norm`` inside the decoder; the others inside one decoder block. ``out_proj`` is the
    attention output projection (``head`` is its input), ``attn_out`` and ``mlp_out`` the modules whose
    outputs are the two sub-layers' contributions to the residual stream, ``down_proj`` the MLP's last
    projection (``mlp_post`` is its input), ``d_head`` the attention module's attribute holding the head size.
    Defaults are the Llama layout; an entry states only where its architecture differs.
    """

    name: str
    title: str
    model_types: tuple[str, ...]
    decoder: str = "model"
    layers: str = "layers"
    embed: str = "embed_tokens"
    norm: str = "norm"
    attention: str = "self_attn"
    d_head: str = "head_dim"
    out_proj: str = "self_attn.o_proj"
    attn_out: str = "self_attn"
    down_proj: str = "mlp.down_proj"
    mlp_out: str = "mlp"
    required: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj")

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name must be an identifier like 'llama', got {self.name!r}")
        if (not isinstance(self.model_types, tuple) or not self.model_types
                or any(not isinstance(t, str) or not t for t in self.model_types)):
            raise ValueError(f"model_types must be a non-empty tuple of config model_type strings, got {self.model_types!r}")
        paths = {k: getattr(self, k) for k in ("title", "decoder", "layers", "embed", "norm", "attention", "d_head",
                                               "out_proj", "attn_out", "down_proj", "mlp_out")}
        for key, value in paths.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key} must be a non-empty string (a module path), got {value!r}")
        if not isinstance(self.required, tuple) or any(not isinstance(r, str) or not r for r in self.required):
            raise ValueError(f"required must be a tuple of module paths, got {self.required!r}")

    def sites(self) -> dict[str, tuple[str, str]]:
        """Each layer kind's (path inside a block, ``"input"`` or ``"output"`` of that module)."""
        return {
            "resid_pre": ("", "input"),
            **{kind: (f"{self.attention}.{module}", "output") for kind, module in _EAGER_MODULES.items()},
            "head": (self.out_proj, "input"),
            "attn_out": (self.attn_out, "output"),
            "mlp_post": (self.down_proj, "input"),
            "mlp_out": (self.mlp_out, "output"),
            "resid_post": ("", "output"),
        }


_GEMMA = {"attn_out": "post_attention_layernorm", "mlp_out": "post_feedforward_layernorm",
          "required": ("input_layernorm", "pre_feedforward_layernorm", "mlp.gate_proj", "mlp.up_proj")}

#: The supported architectures, by ``Layout.family`` name (tested in tests/test_architectures.py).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", "Llama, SmolLM2", ("llama",)),
    Family("mistral", "Mistral", ("mistral",)),
    Family("qwen2", "Qwen2, Qwen2.5", ("qwen2",)),
    Family("olmo", "OLMo", ("olmo",)),
    Family("phi3", "Phi-3", ("phi3",), required=("input_layernorm", "post_attention_layernorm", "self_attn.qkv_proj",
                                                 "mlp.gate_up_proj")),
    Family("gemma2", "Gemma 2", ("gemma2",), **_GEMMA),
    Family("gemma3", "Gemma 3 text", ("gemma3_text",), **_GEMMA),
    Family("gpt2", "GPT-2", ("gpt2",), decoder="transformer", layers="h", embed="wte", norm="ln_f", attention="attn",
           out_proj="attn.c_proj", attn_out="attn", down_proj="mlp.c_proj", required=("ln_1", "ln_2", "mlp.c_fc")),
    Family("gpt_neox", "GPT-NeoX, Pythia", ("gpt_neox",), decoder="gpt_neox", embed="embed_in",
           norm="final_layer_norm", attention="attention", d_head="head_size", out_proj="attention.dense",
           attn_out="attention", down_proj="mlp.dense_4h_to_h",
           required=("input_layernorm", "post_attention_layernorm", "mlp.dense_h_to_4h")),
)}
_BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


def _supported() -> str:
    return "; ".join(f"{f.name} ({f.title})" for f in FAMILIES.values())


Edit = Union[torch.Tensor, Callable[[torch.Tensor], Union[torch.Tensor, None]]]


# --------------------------------------------------------------------------------------------------
# The model's layout


@dataclass
class Layout:
    """Where the parts of one model live: what every labkit function that looks inside a model goes through.

    ``family`` names an entry of :data:`FAMILIES` (``"llama"``, ``"gpt2"``, ``"gemma2"`` …); ``decoder`` is the
    stack without the output layer (``LlamaModel``, ``GPT2Model``), whose ``layers`` are the decoder blocks;
    ``norm`` is the final norm and ``unembed`` the output layer (``lm_head``), so ``logits = unembed(norm(resid_post.<last>))``
    (Gemma then soft-caps the logits: ``c · tanh(logits / c)``, ``c = config.final_logit_softcapping``).
    """

    family: str
    decoder: nn.Module
    embed: nn.Module
    layers: nn.ModuleList
    norm: nn.Module
    unembed: nn.Module | None
    n_heads: int
    d_head: int

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(map(repr, FAMILIES))}, got {self.family!r}")
        if not isinstance(self.layers, nn.ModuleList) or len(self.layers) == 0:
            raise ValueError("layers must be a non-empty torch.nn.ModuleList of decoder blocks")

    def locate(self, kind: str, layer: int | None) -> tuple[nn.Module, str]:
        """The module of a site and whether the site is its ``"input"`` or its ``"output"``."""
        if kind not in LAYER_KINDS + MODEL_KINDS:
            raise ValueError(f"unknown site kind {kind!r}: valid kinds are {', '.join(LAYER_KINDS + MODEL_KINDS)}")
        if kind != "embed" and (isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(self.layers)):
            raise ValueError(f"layer {layer!r} out of range: this model has {len(self.layers)} layers")
        if kind == "embed":
            return self.embed, "output"
        path, where = FAMILIES[self.family].sites()[kind]
        block = _real_block(self.layers[layer])
        if kind in ATTENTION_KINDS:
            attention = block.get_submodule(path.rpartition(".")[0])
            if not isinstance(getattr(attention, _EAGER_MODULES[kind], None), _Pattern):
                attention.add_module(_EAGER_MODULES[kind], _Pattern())  # no parameters: the state dict is unchanged
        return block.get_submodule(path), where


def hf_module(model) -> nn.Module:
    """The Hugging Face ``nn.Module`` behind ``model``: the model itself, the ``.model`` of a labkit
    ``LanguageModel``, or the model inside a ``peft`` wrapper (whose LoRA layers edit it in place)."""
    if not isinstance(model, nn.Module):
        inner = getattr(model, "model", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(
                f"expected a Hugging Face model (torch.nn.Module) or a labkit LanguageModel, got {type(model).__name__}"
            )
        model = inner
    get_base = getattr(model, "get_base_model", None)  # a peft PeftModel
    return get_base() if callable(get_base) else model


def layout(model) -> Layout:
    """Recognise the model's family from its config's ``model_type`` (:data:`FAMILIES`) and check that its modules
    are where the family keeps them; raise ``ValueError`` naming the supported families otherwise."""
    hf = hf_module(model)
    config = getattr(hf, "config", None)
    model_type = getattr(config, "model_type", None)
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise ValueError(
            f"unsupported model {type(hf).__name__} (model_type {model_type!r}): labkit.lm.hooks supports the "
            f"families {_supported()}"
        )
    try:
        base = hf.get_submodule(family.decoder)
        layers = base.get_submodule(family.layers)
        first = _real_block(layers[0])
        for path in (*family.required, family.attention, family.out_proj, family.attn_out, family.down_proj,
                     family.mlp_out):
            first.get_submodule(path)
        layout = Layout(family.name, base, base.get_submodule(family.embed), layers, base.get_submodule(family.norm),
                        getattr(hf, "lm_head", None), config.num_attention_heads,
                        getattr(first.get_submodule(family.attention), family.d_head))
    except (AttributeError, IndexError, TypeError, ValueError) as e:
        raise ValueError(
            f"model {type(hf).__name__} says it is a {model_type!r} model, but its modules are not where the "
            f"{family.name} family keeps them ({e}); supported families: {_supported()}"
        ) from e
    return layout


# --------------------------------------------------------------------------------------------------
# Site names


def sites(model) -> list[str]:
    """All valid site names for ``model``: ``"embed"``, then each layer's sites in forward order."""
    n_layers = len(layout(model).layers)
    return list(MODEL_KINDS) + [f"{kind}.{layer}" for layer in range(n_layers) for kind in LAYER_KINDS]


def parse_site(model, site: str) -> tuple[str, int | None]:
    """Validate ``site`` for ``model`` and split it: ``"head.3"`` → ``("head", 3)``, ``"embed"`` → ``("embed", None)``.

    Raises ``ValueError`` saying what is wrong (unknown kind, layer out of range, malformed name).
    """
    if not isinstance(site, str):
        raise TypeError(f"a site is a string like 'resid_post.3', got {type(site).__name__}")
    n_layers = len(layout(model).layers)
    valid = f"valid kinds are {', '.join(LAYER_KINDS)} (with a layer, e.g. 'resid_post.3') and 'embed'"
    kind, dot, layer_text = site.partition(".")
    if kind in MODEL_KINDS:
        if dot:
            raise ValueError(f"site {site!r}: {kind!r} takes no layer, write {kind!r}")
        return kind, None
    if kind not in LAYER_KINDS:
        close = difflib.get_close_matches(kind, LAYER_KINDS + MODEL_KINDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown site kind {kind!r} in {site!r}: {valid}.{hint}")
    if not dot:
        raise ValueError(f"site {site!r} needs a layer: write e.g. '{kind}.0' (layers 0-{n_layers - 1})")
    if not layer_text.removeprefix("-").isdigit():
        raise ValueError(f"malformed site {site!r}: the layer after the dot must be a whole number, e.g. '{kind}.0'")
    layer = int(layer_text)
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} out of range: this model has {n_layers} layers (0-{n_layers - 1})")
    return kind, layer


def _site_list(model, site_or_sites: str | Sequence[str]) -> list[tuple[str, str, int | None]]:
    """Validate one site or several; return (canonical name, kind, layer) for each, without duplicates."""
    names = [site_or_sites] if isinstance(site_or_sites, str) else list(site_or_sites)
    out = {}
    for name in names:
        kind, layer = parse_site(model, name)
        canonical = kind if layer is None else f"{kind}.{layer}"
        out[canonical] = (canonical, kind, layer)
    return list(out.values())


# --------------------------------------------------------------------------------------------------
# Hooks
#
# Every site is the first input or the first output of some module. `_add_hook` calls `fn(activation)` there
# during each forward pass; when `fn` returns a tensor, that tensor replaces the activation downstream.


def _input_hook(fn):
    def hook(module, args, kwargs):
        if args:
            new = fn(args[0])
            return None if new is None else ((new, *args[1:]), kwargs)
        new = fn(kwargs["hidden_states"])  # a block called with hidden_states=... as a keyword
        return None if new is None else (args, {**kwargs, "hidden_states": new})

    return hook


def _output_hook(fn):
    def hook(module, args, output):
        if isinstance(output, tuple):  # attention modules return (output, attention weights)
            new = fn(output[0])
            return None if new is None else (new, *output[1:])
        return fn(output)

    return hook


def _per_head(fn, n_heads: int, d_head: int):
    """Wrap ``fn`` so it sees the projection's input as [batch, seq, heads, d_head]; flatten its result back."""

    def on_flat(x: torch.Tensor) -> torch.Tensor:
        heads = x.unflatten(-1, (n_heads, d_head))
        new = fn(heads)
        new = heads if new is None else new  # None: edited in place (or only read)
        return new.reshape(*new.shape[:-2], n_heads * d_head)

    return on_flat


def _seq_first(fn):
    """Wrap ``fn`` so it sees an attention tensor [batch, heads, seq, d_head] as [batch, seq, heads, d_head]."""

    def on_heads_first(x: torch.Tensor) -> torch.Tensor | None:
        view = x.transpose(1, 2)  # a view: in-place edits reach x
        new = fn(view)
        return None if new is None else new.transpose(1, 2)

    return on_heads_first


def _add_hook(lay: Layout, kind: str, layer: int | None, fn, prepend: bool = False):
    module, where = lay.locate(kind, layer)
    if kind == "head":
        fn = _per_head(fn, lay.n_heads, lay.d_head)
    elif kind in ("q", "k", "v"):
        fn = _seq_first(fn)
    if where == "input":
        return module.register_forward_pre_hook(_input_hook(fn), with_kwargs=True, prepend=prepend)
    handle = module.register_forward_hook(_output_hook(fn), prepend=prepend)
    return _PatternHandle(lay, handle) if kind in ATTENTION_KINDS else handle


# --------------------------------------------------------------------------------------------------
# Attention patterns: an eager attention whose probabilities pass through a hookable module

_PATTERN_IMPL = "labkit_pattern"  # the attention implementation registered with transformers
_PATTERN_MODULE = "labkit_pattern"  # the submodule of each attention module that the probabilities pass through
#: The hookable identity submodule of each attention module, per attention site kind.
_EAGER_MODULES = {"q": "labkit_q", "k": "labkit_k", "v": "labkit_v", "pattern": _PATTERN_MODULE}


class _Pattern(nn.Module):
    """The identity, on the attention probabilities [batch, heads, query, key] (or the queries, keys, values
    [batch, heads, seq, d_head]): where pattern, q, k and v hooks attach."""

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return probs


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _pattern_attention(module, query, key, value, attention_mask, scaling=None, dropout: float = 0.0,
                       softcap: float | None = None, **kwargs):
    """Eager attention (as the eager implementations of transformers write it for every family of
    :data:`FAMILIES`), with the queries, keys, values (per query head) and the softmax probabilities passed
    through ``module.labkit_q``, ``labkit_k``, ``labkit_v``, ``labkit_pattern`` so that hooks can read or replace them. Gemma's logit soft-capping ``softcap · tanh(s / softcap)`` is applied before the mask
    (Gemma Team 2024); sliding windows are part of the mask that transformers builds for each layer."""
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    # per query head (keys and values repeated above): what the hooks of q.L, k.L and v.L see and edit
    query, key, value = (getattr(module, _EAGER_MODULES[kind], _identity)(x)
                         for kind, x in (("q", query), ("k", key), ("v", value)))
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    hookable = getattr(module, _PATTERN_MODULE, None)  # attached to the layers whose pattern is hooked
    if hookable is not None:
        probs = hookable(probs)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def _register_pattern_attention() -> None:
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(_PATTERN_IMPL, _pattern_attention)
    AttentionMaskInterface.register(_PATTERN_IMPL, eager_mask)


class _PatternHandle:
    """A pattern hook's handle: while any pattern hook of a model is installed, the model's attention is
    labkit's eager implementation; removing the last one restores the model's own."""

    def __init__(self, lay: Layout, handle):
        config = getattr(lay.decoder, "config", None)
        if config is None:
            handle.remove()
            raise ValueError("pattern sites need a Hugging Face model with a config (its attention implementation)")
        self.handle, self.config = handle, config
        active = getattr(config, "_labkit_pattern_hooks", 0)
        if active == 0:
            _register_pattern_attention()
            config._labkit_saved_attn_implementation = config._attn_implementation
            config._attn_implementation = _PATTERN_IMPL
        config._labkit_pattern_hooks = active + 1

    def remove(self) -> None:
        if self.handle is None:
            return
        self.handle.remove()
        self.handle = None
        config = self.config
        config._labkit_pattern_hooks -= 1
        if config._labkit_pattern_hooks == 0:
            config._attn_implementation = config._labkit_saved_attn_implementation
            del config._labkit_pattern_hooks, config._labkit_saved_attn_implementation


@contextlib.contextmanager
def _hooks_removed_on_exit() -> Iterator[list]:
    """A list to put hook handles in; every handle in it is removed on exit, whatever happened."""
    handles: list = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------------------------------
# capture


class Cache(dict):
    """Captured activations: a dict from site name (``"resid_post.3"``) to tensor, filled by forward passes."""

    def __init__(self, expected: Sequence[str] = ()):
        super().__init__()
        expected = [expected] if isinstance(expected, str) else list(expected)
        if any(not isinstance(s, str) for s in expected):
            raise TypeError(f"expected must be a list of site names (strings), got {expected!r}")
        self.expected = expected  # the sites being captured

    def __missing__(self, site):
        if site in self.expected:
            raise KeyError(f"{site!r} has not been captured yet: run a forward pass inside the `with capture(...)`")
        raise KeyError(f"{site!r} is not in this cache; it captures {', '.join(self.expected) or 'nothing'}")


@contextlib.contextmanager
def capture(model, sites: str | Sequence[str], detach: bool = True, positions=None, accumulate: bool = False):
    """Record activations during the forward passes run inside the ``with`` block.

    Yields a :class:`Cache` (a dict ``site -> tensor``) that fills as the model runs::

        with capture(lm, ["resid_post.3", "head.3"]) as cache:
            lm.model(**inputs)

    ``sites``: one site name or a list (see the module docstring). ``positions``: keep only these sequence
    positions, indexed like ``activation[:, positions]`` (an int drops the sequence dimension: ``positions=-1``
    gives [batch, d_model]). Repeated forward passes: by default the last one wins (with ``generate`` that is
    the last generated token); ``accumulate=True`` concatenates the passes along the batch dimension (their
    other dimensions must agree, e.g. by using ``positions``).

    ``detach=True`` stores detached tensors. ``detach=False`` stores tensors that stay in the autograd graph
    and are the very tensors the rest of the forward pass uses, so ``torch.autograd.grad(loss, cache[site])``
    (or ``cache[site].retain_grad()`` before ``backward``) gives the gradient with respect to that activation,
    also with ``positions``. Hooks are removed on exit, also when an error is raised.
    """
    lay = layout(model)
    wanted = _site_list(model, sites)
    if positions is not None and any(kind == "pattern" for _, kind, _ in wanted):
        raise ValueError("positions selects sequence positions of [batch, seq, ...] sites; a pattern is "
                         "[batch, heads, query, key]: capture it whole and index it (e.g. cache[...][:, :, -1])")
    if accumulate and not detach:
        raise ValueError(
            "accumulate=True stores concatenated copies, which gradients cannot flow back through: "
            "use detach=True, or one forward pass per capture block"
        )
    cache = Cache([name for name, _, _ in wanted])

    def recorder(name: str):
        def record(act: torch.Tensor):
            if detach:
                kept = act.detach() if positions is None else act.detach()[:, positions].clone()
                downstream = None  # the forward pass goes on unchanged
            elif positions is None:
                kept = downstream = act
            else:  # rebuild the activation from the kept slice so that gradients flow through the slice
                kept = act[:, positions]
                downstream = act.clone()
                downstream[:, positions] = kept
            if accumulate and name in cache:
                previous = cache[name]
                if previous.shape[1:] != kept.shape[1:]:
                    raise ValueError(
                        f"capture(accumulate=True) of {name!r}: a forward pass gave shape {list(kept.shape)}, an "
                        f"earlier one {list(previous.shape)}; only the batch dimension may differ "
                        f"(capture fixed positions, e.g. positions=-1)"
                    )
                kept = torch.cat([previous, kept])
            cache[name] = kept
            return downstream

        return record

    with _hooks_removed_on_exit() as handles:
        for name, kind, layer in wanted:
            handles.append(_add_hook(lay, kind, layer, recorder(name)))
        yield cache


# --------------------------------------------------------------------------------------------------
# patch


def _fit(site: str, new, act: torch.Tensor) -> torch.Tensor:
    """Check that ``new`` can replace ``act`` (same shape, or broadcastable to it) and shape it like ``act``."""
    if not isinstance(new, torch.Tensor):
        raise TypeError(f"patch of {site!r}: expected a tensor or None from the edit function, got {type(new).__name__}")
    try:
        fits = torch.broadcast_shapes(new.shape, act.shape) == act.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"patch of {site!r}: expected shape {list(act.shape)} (or one that broadcasts to it), "
            f"got {list(new.shape)}"
        )
    return new.to(device=act.device, dtype=act.dtype).expand(act.shape).contiguous()


@contextlib.contextmanager
def patch(model, edits: Mapping[str, Edit]):
    """Replace or edit activations during the forward passes run inside the ``with`` block.

    ``edits`` maps a site name to either

    * a tensor, which replaces the activation (its shape must broadcast to the activation's; for ``head.L``
      that is [batch, seq, heads, d_head], so ``v[:, :, h]`` addresses head ``h``), or
    * a function ``fn(activation)`` returning the new activation, or ``None`` when it edited the activation in
      place. For ``head.L`` it receives the [batch, seq, heads, d_head] view; the result is flattened back
      before the output projection.

    A tensor must fit every forward pass in the block: during ``generate`` (one new token per pass) use a
    function or a tensor that broadcasts, like a [d_model] vector.

    Example: ``with patch(lm, {"resid_pre.5": lambda x: x + v}): ...``. A wrong shape raises ``ValueError``
    naming the site, the expected and the given shape. Patches run before any ``capture`` hook on the same
    site, so a capture sees the patched value (and ``output_hidden_states`` sees a patched ``resid_post``);
    in nested ``patch`` blocks on one site the inner block's edit runs first. Hooks are removed on exit, also
    on error.
    """
    lay = layout(model)
    if not isinstance(edits, Mapping):
        raise TypeError(f"edits must map site names to tensors or functions, got {type(edits).__name__}")
    plan = []
    for site, edit in edits.items():
        ((name, kind, layer),) = _site_list(model, site)
        if not (isinstance(edit, torch.Tensor) or callable(edit)):
            raise TypeError(f"patch of {name!r}: expected a tensor or a function, got {type(edit).__name__}")
        plan.append((name, kind, layer, edit))

    def editor(name: str, edit: Edit):
        def apply(act: torch.Tensor):
            new = edit(act) if callable(edit) else edit
            return None if new is None else _fit(name, new, act)

        return apply

    with _hooks_removed_on_exit() as handles:
        for name, kind, layer, edit in plan:
            handles.append(_add_hook(lay, kind, layer, editor(name, edit), prepend=True))
        yield


# --------------------------------------------------------------------------------------------------
# Running part of the model: stop after a site, start at a layer


class _StopForward(Exception):
    """Raised by :func:`stop_after`'s hook to end a forward pass; caught by the same ``with`` block."""


@contextlib.contextmanager
def stop_after(model, site: str):
    """End every forward pass run inside the ``with`` block right after ``site`` is computed.

    The layers after the site cannot change it, so reading an early activation need not pay for the rest of
    the model. Combine it with :func:`capture` (enter ``capture`` first, so its hook runs before the stop)::

        with capture(lm, "mlp_post.3") as cache, stop_after(lm, "mlp_post.3"):
            lm.model(ids)                       # returns nothing: the pass ends inside block 3

    The model call inside the block returns no output (the pass was cut short); the hook is removed on exit.
    """
    ((name, kind, layer),) = _site_list(model, site)

    def stop(act):
        raise _StopForward(name)

    with _hooks_removed_on_exit() as handles:
        handles.append(_add_hook(layout(model), kind, layer, stop))
        try:
            yield
        except _StopForward:
            pass


def _real_block(block: nn.Module) -> nn.Module:
    """The decoder block itself, also while :func:`start_at` has put a stand-in in its place."""
    if isinstance(block, _Feed):
        return block.block
    if isinstance(block, _Skip):
        return block.original
    return block


class _Skip(nn.Module):
    """Stands in for a decoder block that :func:`start_at` skips: hands its input on unchanged."""

    def __init__(self, block: nn.Module):
        super().__init__()
        object.__setattr__(self, "original", block)  # kept, not registered: the block is not run
        for attr in ("attention_type", "layer_type", "layer_idx"):  # what some decoders read off their blocks
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, hidden_states=None, *args, **kwargs):
        return hidden_states


class _Feed(nn.Module):
    """Wraps the block :func:`start_at` starts at: runs it on the given residual stream instead of its input."""

    def __init__(self, block: nn.Module, hidden: torch.Tensor):
        super().__init__()
        self.block = block
        self.hidden = hidden
        for attr in ("attention_type", "layer_type", "layer_idx"):
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))

    def forward(self, *args, **kwargs):
        if args:
            args = (self.hidden, *args[1:])
        else:
            kwargs["hidden_states"] = self.hidden
        return self.block(*args, **kwargs)


@contextlib.contextmanager
def start_at(model, layer: int, hidden: torch.Tensor):
    """Inside the ``with`` block, forward passes start at decoder block ``layer`` from ``hidden`` (= ``resid_pre.layer``).

    Blocks ``0 … layer − 1`` are skipped (they stand aside for the block's duration) and block ``layer``
    receives ``hidden`` [batch, seq, d_model] instead of its input. Everything else is the model's own forward
    pass: give it inputs of the same batch and length as ``hidden`` (e.g. ``inputs_embeds=hidden`` with the
    attention mask and position ids), from which it builds the attention mask and position embeddings as
    usual. The result equals a full forward pass whose ``resid_pre.layer`` is ``hidden``, at the cost of the
    upper blocks only. Hooks of :func:`capture` and :func:`patch` on block ``layer`` and above work as usual
    (a patch of ``resid_pre.layer`` sees ``hidden``); sites below ``layer`` are not computed.
    """
    lay = layout(model)
    n = len(lay.layers)
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
        raise ValueError(f"layer {layer!r} out of range: this model has {n} layers (0-{n - 1})")
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise ValueError(f"hidden must be a [batch, seq, d_model] tensor (resid_pre.{layer}), got "
                         f"{getattr(hidden, 'shape', type(hidden).__name__)}")
    blocks = list(lay.layers[: layer + 1])
    try:
        for i in range(layer):
            lay.layers[i] = _Skip(blocks[i])
        lay.layers[layer] = _Feed(blocks[layer], hidden)
        yield
    finally:
        for i, block in enumerate(blocks):
            lay.layers[i] = block


# --------------------------------------------------------------------------------------------------
# One forward pass with a cache


def run_with_cache(model, inputs, sites: str | Sequence[str], **capture_kwargs):
    """Run one forward pass and return ``(output, cache)``.

    ``inputs``: a tensor of token ids [batch, seq], a dict of model inputs (a tokenizer's output), or, for a
    ``LanguageModel``, a text or a list of texts (tokenised without special tokens, padded on the tokenizer's
    padding side). ``capture_kwargs`` go to :func:`capture`. With ``detach=True`` (the default) the pass runs
    without gradients.
    """
    hf = hf_module(model)
    if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise TypeError("texts need a model with a tokenizer (a LanguageModel); pass token ids instead")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    device = next(hf.parameters()).device
    if isinstance(inputs, torch.Tensor):
        inputs = {"input_ids": inputs}
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in dict(inputs).items()}
    grad = not capture_kwargs.get("detach", True)
    with capture(model, sites, **capture_kwargs) as cache, torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        output = hf(**inputs)
    return output, cache
