"""Direct Preference Optimization — notebook 12.

* :func:`dpo_loss`, :func:`implicit_rewards`, :func:`sequence_logprobs` — the DPO objective
  L = −E log σ(β log π_θ(y_w|x)/π_ref(y_w|x) − β log π_θ(y_l|x)/π_ref(y_l|x)) (Rafailov et al. 2023);
* :func:`tabular_dpo` — DPO on a tabular (bandit) policy, whose optimum is known in closed form;
* :func:`dpo_step` — one gradient step on the DPO loss for a policy given by its parameters
  (:func:`bandit_as_sequences` casts the tabular policy in that form);
* :class:`LoraDPO` — DPO fine-tuning of a causal LM with a LoRA adapter (``peft``) on its top layers: the
  frozen lower layers and the reference log-probabilities are computed once, the reference is the same
  model with the adapter disabled, and chosen and rejected responses go through the model in one batch;
* :func:`ches_score`, :func:`ranking_accuracy`, :func:`idealised_ranking_accuracy` — likelihood displacement
  (Razin et al. 2025, "Unintentional unalignment") and ranking accuracy (Chen et al. 2024, "Preference
  learning algorithms do not learn preference rankings").

Every public function and method checks its arguments (types, shapes, index ranges, NaN/inf, empty input) and
raises a ``TypeError``/``ValueError`` naming the argument and what is expected.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F

from labkit.runtime import get_device


def _check_beta(beta) -> float:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    return float(beta)


def _int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _tensor(value, name: str) -> torch.Tensor:
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be a tensor of numbers, got {type(value).__name__}")
    try:
        t = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be a tensor of numbers ({e})") from None
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.is_floating_point():
        if torch.isnan(t).any():
            raise ValueError(f"{name} contains NaN")
        if torch.isinf(t).any():
            raise ValueError(f"{name} contains infinite values")
    return t


def _same_shape(*xs: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
    xs = [_tensor(x, n) for x, n in zip(xs, names)]
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) != 1:
        raise ValueError(
            "mismatched batch sizes: " + ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, xs))
            + " — give one value per preference pair in each"
        )
    if xs[0].numel() == 0:
        raise ValueError("empty batch: give at least one preference pair")
    return xs


def implicit_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward r̂(x, y) = β log π_θ(y|x)/π_ref(y|x) (Rafailov et al. 2023, eq. 5, without β log Z)."""
    beta = _check_beta(beta)
    policy_logps, ref_logps = _same_shape(policy_logps, ref_logps, names=("policy_logps", "ref_logps"))
    return beta * (policy_logps - ref_logps)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """The DPO loss from sequence log-probabilities (Rafailov et al. 2023, eq. 7).

    L = −log σ(β [log π_θ(y_w|x) − log π_ref(y_w|x)] − β [log π_θ(y_l|x) − log π_ref(y_l|x)]),

    averaged over pairs (``reduction="mean"``) or per pair (``"none"``). Computed with ``logsigmoid`` so
    large margins stay finite. All four inputs hold one value per pair.
    """
    beta = _check_beta(beta)
    pw, pl, rw, rl = _same_shape(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                                 names=("policy_chosen", "policy_rejected", "ref_chosen", "ref_rejected"))
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")
    losses = -F.logsigmoid(beta * ((pw - rw) - (pl - rl)))
    return losses.mean() if reduction == "mean" else losses


def sequence_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Masked sequence log-probabilities Σ_t m_t log p(x_t | x_<t), one per row.

    ``logits`` [B, T, V] are the model's outputs on ``input_ids`` [B, T]; position t predicts token t + 1, so
    token t is scored by ``logits[:, t − 1]``. ``response_mask`` [B, T] is 1 on the response tokens to score
    (never on position 0, which has no prediction) and 0 on the prompt and padding.
    """
    for name, x in (("logits", logits), ("input_ids", input_ids), ("response_mask", response_mask)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if logits.dim() != 3 or input_ids.shape != logits.shape[:2] or response_mask.shape != input_ids.shape:
        raise ValueError(
            f"expected logits [B, T, V], input_ids [B, T], response_mask [B, T]; got {tuple(logits.shape)}, "
            f"{tuple(input_ids.shape)}, {tuple(response_mask.shape)}"
        )
    if logits.numel() == 0:
        raise ValueError(f"empty batch: logits has shape {tuple(logits.shape)}")
    if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= logits.shape[-1]:
        raise ValueError(f"input_ids must lie in [0, {logits.shape[-1] - 1}] (the vocabulary of the logits)")
    if not ((response_mask == 0) | (response_mask == 1)).all():
        raise ValueError("response_mask must hold 0 (prompt, padding) and 1 (response tokens) only")
    if (response_mask[:, 0] != 0).any():
        raise ValueError("response_mask must be 0 at position 0: the first token has no prediction to score")
    _tensor(logits, "logits")
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, input_ids[:, 1:, None])[..., 0]
    return (logp * response_mask[:, 1:].to(logp.dtype)).sum(-1)


# --------------------------------------------------------------------------------------------------
# Tabular DPO: a bandit with K answers and a known optimum


def tabular_dpo(
    ref_probs: torch.Tensor,
    rewards: torch.Tensor,
    beta: float,
    n_pairs: int = 2000,
    steps: int = 500,
    lr: float = 0.05,
    seed: int = 0,
) -> dict:
    """DPO on a tabular policy π_θ = softmax(θ) over K answers to one prompt, with Bradley-Terry labels.

    Draws ``n_pairs`` pairs of distinct answers uniformly, labels each with P(a ≻ b) = σ(R(a) − R(b)), and
    minimises the DPO loss over θ (full batch, Adam, θ starts at log π_ref). The closed-form optimum of the
    RLHF objective is π*(y) ∝ π_ref(y) exp(R(y)/β); with enough pairs DPO recovers it, because the implicit
    reward β log π_θ/π_ref then equals R up to a constant. Returns ``{"probs", "losses", "pairs", "labels"}``.
    """
    beta = _check_beta(beta)
    ref_probs, rewards = _tensor(ref_probs, "ref_probs").double(), _tensor(rewards, "rewards").double()
    n_pairs, steps, seed = _int(n_pairs, "n_pairs", minimum=1), _int(steps, "steps", minimum=1), _int(seed, "seed")
    lr = _positive(lr, "lr")
    if ref_probs.dim() != 1 or ref_probs.shape != rewards.shape or len(ref_probs) < 2:
        raise ValueError("ref_probs and rewards must be 1-D of the same length K >= 2")
    if (ref_probs <= 0).any() or abs(float(ref_probs.sum()) - 1) > 1e-6:
        raise ValueError("ref_probs must be positive and sum to one")
    k = len(ref_probs)
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, k, (n_pairs,), generator=g)
    b = (a + torch.randint(1, k, (n_pairs,), generator=g)) % k  # b != a
    a_wins = torch.rand(n_pairs, generator=g, dtype=torch.float64) < torch.sigmoid(rewards[a] - rewards[b])
    w, l = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    ref_logp = ref_probs.log()
    theta = ref_logp.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    losses = []
    for _ in range(steps):
        logp = torch.log_softmax(theta, -1)
        loss = dpo_loss(logp[w], logp[l], ref_logp[w], ref_logp[l], beta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"probs": torch.softmax(theta.detach(), -1).float(), "losses": losses,
            "pairs": torch.stack([w, l], 1), "labels": a_wins}


# --------------------------------------------------------------------------------------------------
# Likelihood displacement and ranking accuracy


def ches_score(h_chosen: torch.Tensor, h_rejected: torch.Tensor, mask_chosen: torch.Tensor | None = None,
               mask_rejected: torch.Tensor | None = None) -> torch.Tensor:
    """Centered hidden embedding similarity (Razin et al. 2025, "Unintentional unalignment", eq. 3).

    CHES(x, y⁺, y⁻) = ⟨Σ_k h_{y⁺,k}, Σ_k' h_{y⁻,k'}⟩ − ‖Σ_k h_{y⁺,k}‖², where h are the model's final hidden
    states (the inputs to the unembedding) at the positions that predict each response token. A high CHES
    means the two responses look alike to the model, and DPO tends to push the chosen log-probability *down*
    (likelihood displacement). Inputs are [B, T, d] with optional [B, T] masks (1 = response token).
    """
    h_chosen, h_rejected = _tensor(h_chosen, "h_chosen"), _tensor(h_rejected, "h_rejected")
    if h_chosen.dim() != h_rejected.dim() or h_chosen.dim() not in (2, 3):
        raise ValueError(f"h_chosen and h_rejected must both be [T, d] or [B, T, d]; got {tuple(h_chosen.shape)} and "
                         f"{tuple(h_rejected.shape)}")
    if h_chosen.numel() == 0 or h_rejected.numel() == 0:
        raise ValueError("empty hidden states: give at least one response token")
    if h_chosen.dim() == 2:
        h_chosen, h_rejected = h_chosen[None], h_rejected[None]
        mask_chosen = None if mask_chosen is None else torch.as_tensor(mask_chosen)[None]
        mask_rejected = None if mask_rejected is None else torch.as_tensor(mask_rejected)[None]
    if h_chosen.shape[0] != h_rejected.shape[0] or h_chosen.shape[-1] != h_rejected.shape[-1]:
        raise ValueError("mismatched batch sizes or widths between chosen and rejected hidden states")
    for name, m, h in (("mask_chosen", mask_chosen, h_chosen), ("mask_rejected", mask_rejected, h_rejected)):
        if m is not None:
            m = _tensor(m, name)
            if m.shape != h.shape[:2]:
                raise ValueError(f"{name} must be [B, T] = {tuple(h.shape[:2])}, got {tuple(m.shape)}")
            if not ((m == 0) | (m == 1)).all():
                raise ValueError(f"{name} must hold 0 and 1 only")
    if mask_chosen is not None:
        h_chosen = h_chosen * torch.as_tensor(mask_chosen)[..., None].to(h_chosen.dtype)
    if mask_rejected is not None:
        h_rejected = h_rejected * torch.as_tensor(mask_rejected)[..., None].to(h_rejected.dtype)
    sp, sm = h_chosen.double().sum(1), h_rejected.double().sum(1)
    return ((sp * sm).sum(-1) - (sp * sp).sum(-1)).float()


def ranking_accuracy(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor) -> float:
    """Fraction of pairs where the model itself ranks the chosen response higher: π(y_w|x) > π(y_l|x) (Chen et al. 2024)."""
    logp_chosen, logp_rejected = _same_shape(logp_chosen, logp_rejected, names=("logp_chosen", "logp_rejected"))
    return float((logp_chosen > logp_rejected).double().mean())


def idealised_ranking_accuracy(ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, reward_chosen: torch.Tensor,
                               reward_rejected: torch.Tensor, beta: float) -> float:
    """Ranking accuracy of the ideal RLHF/DPO policy π* ∝ π_ref exp(R/β) (Chen et al. 2024, Theorem 3.1).

    π* ranks y_w above y_l iff log π_ref(y_w) + R(y_w)/β > log π_ref(y_l) + R(y_l)/β. With the true
    reward this is the best ranking accuracy that a perfectly optimised DPO model can reach at this β.
    """
    beta = _check_beta(beta)
    rc, rr, wc, wr = _same_shape(ref_chosen, ref_rejected, reward_chosen, reward_rejected,
                                 names=("ref_chosen", "ref_rejected", "reward_chosen", "reward_rejected"))
    return float(((rc + wc / beta) > (rr + wr / beta)).double().mean())


# --------------------------------------------------------------------------------------------------
# DPO with LoRA on a causal language model


def encode_responses(lm, prompts: Sequence[str], responses: Sequence[str], max_length: int | None = None) -> dict:
    """Tokenise prompt + response pairs into one right-padded batch with a response mask.

    Prompt and response are tokenised separately (as ``LanguageModel.logprobs`` does), so the mask covers
    exactly the response's tokens. Raises for empty responses and sequences longer than the context.
    """
    if not all(callable(getattr(lm, a, None)) for a in ("encode", "run_to")):
        raise TypeError(f"lm must be a labkit LanguageModel (labkit.load_lm()), got {type(lm).__name__}")
    for name, v in (("prompts", prompts), ("responses", responses)):
        if isinstance(v, (str, bytes)):
            raise TypeError(f"{name} must be a list of strings, not one string")
    prompts, responses = list(prompts), list(responses)
    if any(not isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be strings")
    if max_length is not None:
        max_length = _int(max_length, "max_length", minimum=2)
    if len(prompts) != len(responses):
        raise ValueError(f"mismatched batch sizes: {len(prompts)} prompts but {len(responses)} responses")
    if not responses:
        raise ValueError("no responses given")
    limit = max_length or lm.max_length
    rows, spans = [], []
    for p, r in zip(prompts, responses):
        if not isinstance(r, str) or not r.strip():
            raise ValueError("empty response: every response needs at least one non-space character")
        p_ids, r_ids = lm.encode(p), lm.encode(r)
        if not p_ids:
            raise ValueError("empty prompt")
        if limit and len(p_ids) + len(r_ids) > limit:
            raise ValueError(
                f"a prompt with its response has {len(p_ids) + len(r_ids)} tokens, more than the context of {limit}: "
                "shorten or drop that response"
            )
        rows.append(p_ids + r_ids)
        spans.append((len(p_ids), len(p_ids) + len(r_ids)))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    resp = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, (a, b)) in enumerate(zip(rows, spans)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        resp[i, a:b] = 1
    return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}


class LoraDPO:
    """DPO fine-tuning of a causal LM (Llama family) with a LoRA adapter on its top ``n_lora_layers`` layers.

    **It adds the adapter to ``lm.model`` in place** (``peft``): the LoRA layers live inside the model you
    pass, so no second copy of the weights is made. The adapter is switched on only inside the trainer's own
    policy computations (:meth:`policy`, :meth:`logps`, :meth:`train`, :meth:`generate` with
    ``adapter=True``); everywhere else ``lm`` still computes the reference model π_ref. :meth:`remove` takes
    the adapter out for good.

    Efficiency, without changing the maths:

    * the layers below the adapter are frozen and identical for the policy and the reference, so their
      output (the residual stream entering the first adapted layer) is computed **once** per response and
      cached (``lm.run_to``); each training step runs only the adapted top layers (``lm.run_from``) and the
      unembedding;
    * the reference π_ref is the same model with the adapter switched off, never a second copy; its
      log-probabilities are computed once, before training;
    * responses are stored once even when they appear in many pairs; each step runs the unique responses
      of its pairs — chosen and rejected together — in one batch.

    ``responses`` is a list of (prompt, response) texts; pairs index into it. With ``prompts = responses = None``
    the trainer holds only the adapter until :meth:`cache_responses` gives it a batch (on-policy training,
    :class:`labkit.rlhf.LoraRLOO`, samples new responses every step).
    """

    def __init__(self, lm, prompts: Sequence[str] | None, responses: Sequence[str] | None, n_lora_layers: int = 4, rank: int = 8,
                 alpha: float = 16.0, target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"),
                 batch_size: int = 32, device: str | torch.device | None = None, seed: int = 0):
        from peft import LoraConfig, get_peft_model

        # every argument is checked before the model is touched: a refused call leaves lm as it was
        if not all(hasattr(lm, a) for a in ("model", "run_to", "run_from", "layout")):
            raise TypeError(f"lm must be a labkit LanguageModel (labkit.load_lm()), got {type(lm).__name__}")
        self.device = get_device(device)
        self.lm = lm
        base = lm.model
        n_layers = base.config.num_hidden_layers
        n_lora_layers = _int(n_lora_layers, "n_lora_layers")
        if not 1 <= n_lora_layers <= n_layers:
            raise ValueError(f"n_lora_layers must be between 1 and {n_layers}")
        rank, batch_size, seed = _int(rank, "rank", minimum=1), _int(batch_size, "batch_size", minimum=1), _int(seed, "seed")
        alpha = _positive(alpha, "alpha")
        if isinstance(target_modules, str) or not target_modules or any(not isinstance(t, str) for t in target_modules):
            raise ValueError("target_modules must be a non-empty list of module names such as 'q_proj'")
        if hasattr(base, "peft_config"):
            raise ValueError("the model already carries a peft adapter: load a fresh model with labkit.load_lm()")
        self.first = n_layers - n_lora_layers
        # prompts = responses = None: the adapter alone; an on-policy trainer hands each step's batch to cache_responses
        self.batch = None if prompts is None and responses is None else encode_responses(lm, prompts, responses)
        if lm.device != self.device:
            raise ValueError(f"the model is on {lm.device} but device={self.device} was asked for: load it there "
                             f"(labkit.load_lm(device=...)); LoraDPO does not move a model it was handed")
        torch.manual_seed(seed)
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules),
                            layers_to_transform=list(range(self.first, n_layers)))
        # peft freezes every base parameter and unload() does not unfreeze them: remember the flags, so that the
        # model the caller handed us gets them back in remove() (gradient methods — attribution, patching — need them)
        self._base_flags = [(p, p.requires_grad) for p in base.parameters()]
        with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 marks deprecated
            warnings.simplefilter("ignore", FutureWarning)
            self.model = get_peft_model(base, config)  # LoRA layers inserted into lm.model, in place
        self._base = base
        self.adapter_parameters = [p for p in self.model.parameters() if p.requires_grad]  # the LoRA weights
        self._initial = [p.detach().clone() for p in self.adapter_parameters]  # for reset()
        self._policy_depth = 0
        self._switch_off()  # lm computes π_ref unless the trainer switches the adapter on
        self.lm_head = lm.layout.unembed
        self.batch_size = batch_size
        if self.batch is not None:
            self._cache_frozen()

    @contextlib.contextmanager
    def policy(self):
        """Inside the ``with`` block the adapter is on: ``lm`` (and ``lm.model``) compute the policy π_θ."""
        if self._policy_depth == 0:
            self.model.base_model.enable_adapter_layers()
        self._policy_depth += 1
        try:
            yield
        finally:
            self._policy_depth -= 1
            if self._policy_depth == 0:
                self._switch_off()

    def _switch_off(self) -> None:
        """Switch the adapter off; its parameters stay the trainable ones (peft would freeze them)."""
        self.model.base_model.disable_adapter_layers()
        for p in self.adapter_parameters:
            p.requires_grad_(True)

    def remove(self) -> None:
        """Take the LoRA layers out of ``lm.model`` (``peft``'s ``unload``): the model is the original again, with
        its parameters' ``requires_grad`` flags as they were, and a new adapter (a trainer, an organism) may go in."""
        self.model.unload()
        for p, flag in self._base_flags:
            p.requires_grad_(flag)
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if hasattr(self._base, attr):
                try:
                    delattr(self._base, attr)
                except AttributeError:
                    pass

    @torch.no_grad()
    def reset(self) -> None:
        """Put the adapter back to its initial weights (LoRA's B = 0, so π_θ = π_ref again), keeping every cache:
        a second training run with other settings starts from the same point as the first."""
        for p, p0 in zip(self.adapter_parameters, self._initial):
            p.copy_(p0)

    def cache_responses(self, batch: dict) -> None:
        """Make ``batch`` the responses the trainer works on (``{"input_ids", "attention_mask", "response_mask"}``,
        right-padded, as :func:`encode_responses` returns, e.g. freshly sampled ones): the frozen lower layers and the
        reference log-probabilities ``ref_logps`` are computed once for them, and :meth:`logps` indexes into them."""
        if not isinstance(batch, dict) or not {"input_ids", "attention_mask", "response_mask"} <= set(batch):
            raise TypeError("batch must be a dict with input_ids, attention_mask and response_mask (see encode_responses)")
        ids = batch["input_ids"]
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.numel() == 0 or any(
                not isinstance(batch[k], torch.Tensor) or batch[k].shape != ids.shape for k in ("attention_mask", "response_mask")):
            raise ValueError("batch must hold non-empty [n, T] tensors of one shape: input_ids, attention_mask, response_mask")
        self.batch = {k: batch[k].cpu() for k in ("input_ids", "attention_mask", "response_mask")}
        self._cache_frozen()

    def _indices(self, idx, name: str = "idx") -> torch.Tensor:
        t = _tensor(idx, name)
        if t.is_floating_point():
            raise TypeError(f"{name} must hold integer response indices, got dtype {t.dtype}")
        t = t.long().reshape(-1)
        if t.numel() == 0:
            raise ValueError(f"{name} is empty: give at least one response index")
        if self.batch is None:
            raise ValueError("no responses cached yet: give prompts and responses, or call cache_responses(batch)")
        n = len(self.batch["input_ids"])
        if int(t.min()) < 0 or int(t.max()) >= n:
            raise ValueError(f"{name} must hold response indices between 0 and {n - 1}")
        return t

    # -- forward passes ----------------------------------------------------------------------------
    @torch.no_grad()
    def _cache_frozen(self) -> None:
        """One pass through the frozen layers: cache the residual stream entering layer ``first``; then the
        reference log-probabilities and final hidden states (adapter disabled)."""
        parts = []
        for s in range(0, len(self.batch["input_ids"]), self.batch_size):
            ids = self.batch["input_ids"][s : s + self.batch_size].to(self.device)
            mask = self.batch["attention_mask"][s : s + self.batch_size].to(self.device)
            parts.append(self.lm.run_to(f"resid_pre.{self.first}", ids, attention_mask=mask))
        self.frozen = torch.cat(parts)
        self.ref_logps, self.ref_hidden = self.logps(torch.arange(len(self.frozen)), reference=True, hidden=True)
        self.ref_logps = self.ref_logps.cpu()

    def _top(self, idx: torch.Tensor) -> torch.Tensor:
        """Final hidden states (after the last norm) of responses ``idx`` from the cached stream."""
        h = self.frozen[idx].to(self.device)
        mask = self.batch["attention_mask"][idx].to(self.device)
        return self.lm.run_from(self.first, h, attention_mask=mask, output="hidden")

    def logps(self, idx: torch.Tensor, reference: bool = False, hidden: bool = False, grad: bool = False):
        """Sequence log-probabilities of responses ``idx`` under the policy (or the reference)."""
        idx = self._indices(idx)
        outs, hs = [], []
        ctx = contextlib.nullcontext() if reference else self.policy()
        with ctx, torch.set_grad_enabled(grad):
            for s in range(0, len(idx), self.batch_size):
                j = idx[s : s + self.batch_size]
                h = self._top(j)
                outs.append(self._score(h, j))
                if hidden:
                    hs.append(h.detach())
        lp = torch.cat(outs)
        return (lp, torch.cat(hs)) if hidden else lp

    def _score(self, h: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        ids = self.batch["input_ids"][j].to(self.device)
        m = self.batch["response_mask"][j].to(self.device)
        # only the positions that predict a response token go through the 49k-wide unembedding
        pred = m[:, 1:].bool()
        logits = self.lm_head(h[:, :-1][pred]).float()
        tok = ids[:, 1:][pred]
        lp = torch.log_softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
        rows = torch.arange(len(j), device=h.device)[:, None].expand_as(pred)[pred]
        return torch.zeros(len(j), device=h.device, dtype=lp.dtype).index_add(0, rows, lp)

    @torch.no_grad()
    def token_kl(self, idx: torch.Tensor) -> torch.Tensor:
        """Per response: Σ over its positions of KL(π_θ(·|context) ‖ π_ref(·|context)), teacher-forced."""
        idx = self._indices(idx)
        out = []
        for s in range(0, len(idx), self.batch_size):
            j = idx[s : s + self.batch_size]
            pred = self.batch["response_mask"][j][:, 1:].bool().to(self.device)
            rows = torch.arange(len(j), device=self.device)[:, None].expand_as(pred)[pred]
            with self.policy():
                lp = torch.log_softmax(self.lm_head(self._top(j)[:, :-1][pred]).float(), -1)
            lr = torch.log_softmax(self.lm_head(self._top(j)[:, :-1][pred]).float(), -1)
            # KL = Σ_v p_v (log p_v − log r_v), computed in place: these are [tokens, 49152] tensors
            diff = lr.neg_().add_(lp)
            kl = (lp.exp_() * diff).sum(-1)
            out.append(torch.zeros(len(j), device=self.device).index_add(0, rows, kl))
        return torch.cat(out).cpu()

    # -- training ----------------------------------------------------------------------------------
    def train(self, chosen: torch.Tensor, rejected: torch.Tensor, beta: float = 0.1, epochs: int = 3,
              groups: torch.Tensor | None = None, groups_per_step: int = 3, pairs_per_step: int = 16,
              lr: float = 1e-3, seed: int = 0, progress: bool = True, accelerator=None) -> dict:
        """Minimise the DPO loss over pairs (``chosen[i]``, ``rejected[i]``) (indices into the responses).

        With ``groups`` (e.g. the prompt of each pair) a step takes all pairs of ``groups_per_step`` groups, so
        responses shared by several pairs are run once; otherwise ``pairs_per_step`` random pairs. Each step
        runs the step's unique responses — chosen and rejected together — through the adapted top layers in
        one batch and uses the cached reference log-probabilities. Returns the history: per step the loss,
        the mean log-ratios log π_θ/π_ref of chosen and rejected responses, the mean reward margin
        β(Δ_w − Δ_l) and the fraction of pairs with a positive margin — all measured on that step's pairs
        *before* its update (so a step's loss is the loss of the model that the previous steps made).

        With ``accelerator`` (an ``accelerate.Accelerator``, the script started by ``accelerate launch`` on several
        processes, each holding the model on ``accelerator.device``) the training is data parallel
        (:mod:`labkit.distributed`): every process draws the same steps, takes a contiguous shard of each step's
        pairs, backpropagates its share 1/n Σ_{i ∈ shard} ℓ_i of the step's mean loss (n = the step's pairs) and
        the shares' gradients are summed over the processes before Adam's update, so each step applies the
        gradient of the whole step, as on one process (equal up to float rounding), and every process holds the
        same adapter (process 0's initial weights are broadcast first). The history is that of the whole steps.
        """
        beta = _check_beta(beta)
        chosen, rejected = _same_shape(chosen, rejected, names=("chosen", "rejected"))
        chosen, rejected = self._indices(chosen, "chosen"), self._indices(rejected, "rejected")
        if (chosen == rejected).any():
            raise ValueError("a pair has chosen equal to rejected: a response cannot be preferred to itself")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError("epochs must be a positive integer")
        groups_per_step = _int(groups_per_step, "groups_per_step", minimum=1)
        pairs_per_step = _int(pairs_per_step, "pairs_per_step", minimum=1)
        lr, seed = _positive(lr, "lr"), _int(seed, "seed")
        if groups is not None:
            groups_t = _tensor(groups, "groups").reshape(-1)
            if len(groups_t) != len(chosen):
                raise ValueError(f"mismatched batch sizes: {len(groups_t)} groups for {len(chosen)} pairs")
        dp = None
        if accelerator is not None:
            from labkit.distributed import DataParallel

            dp = DataParallel(accelerator)
            dp.check_device(self.device, "the trainer's model")

        opt = torch.optim.Adam(self.adapter_parameters, lr=lr)
        g = torch.Generator().manual_seed(seed)
        steps = []
        for _ in range(epochs):
            if groups is not None:
                ug = torch.unique(groups_t)
                ug = ug[torch.randperm(len(ug), generator=g)]
                for s in range(0, len(ug), groups_per_step):
                    steps.append(torch.isin(groups_t, ug[s : s + groups_per_step]).nonzero()[:, 0])
            else:
                perm = torch.randperm(len(chosen), generator=g)
                steps.extend(perm[s : s + pairs_per_step] for s in range(0, len(chosen), pairs_per_step))
        hist = {"loss": [], "chosen_logratio": [], "rejected_logratio": [], "margin": [], "accuracy": []}
        self.model.train()
        try:
            with self.policy():
                if dp is None:
                    self._train_steps(steps, chosen, rejected, beta, opt, hist, progress)
                else:
                    dp.broadcast_(self.adapter_parameters)
                    self._train_steps_parallel(steps, chosen, rejected, beta, opt, hist, progress and dp.is_main, dp)
        finally:
            self.model.eval()
        return hist

    def _pair_logps(self, c: torch.Tensor, r: torch.Tensor):
        """Policy and reference log-probabilities of the chosen ``c`` and rejected ``r`` responses of some pairs,
        the unique responses run through the adapted layers in one batch: (π_θ chosen, π_θ rejected, π_ref
        chosen, π_ref rejected)."""
        uniq, inv = torch.unique(torch.cat([c, r]), return_inverse=True)
        lp = self._score(self._top(uniq), uniq)  # chosen and rejected in one batch
        pc, pr = lp[inv[: len(c)]], lp[inv[len(c):]]
        return pc, pr, self.ref_logps[c].to(lp.device), self.ref_logps[r].to(lp.device)

    def _train_steps(self, steps, chosen, rejected, beta, opt, hist, progress) -> None:
        from tqdm.auto import tqdm

        for b in tqdm(steps, desc="DPO steps", disable=not progress):
            pc, pr, rc, rr = self._pair_logps(chosen[b], rejected[b])
            loss = dpo_loss(pc, pr, rc, rr, beta)
            opt.zero_grad()
            loss.backward()
            opt.step()
            margin = beta * ((pc - rc) - (pr - rr)).detach()
            hist["loss"].append(loss.item())
            hist["chosen_logratio"].append((pc - rc).mean().item())
            hist["rejected_logratio"].append((pr - rr).mean().item())
            hist["margin"].append(margin.mean().item())
            hist["accuracy"].append((margin > 0).float().mean().item())

    def _train_steps_parallel(self, steps, chosen, rejected, beta, opt, hist, progress, dp) -> None:
        """:meth:`_train_steps` on this process's shard of each step; gradients and statistics summed over processes."""
        from tqdm.auto import tqdm

        for b in tqdm(steps, desc=f"DPO steps ({dp.world} processes)", disable=not progress):
            n, mine = len(b), dp.shard(b)
            opt.zero_grad()
            stats = torch.zeros(5, dtype=torch.float64)  # Σ loss, Σ Δ_w, Σ Δ_l, Σ margin, #(margin > 0) over the shard
            if len(mine):
                pc, pr, rc, rr = self._pair_logps(chosen[mine], rejected[mine])
                losses = dpo_loss(pc, pr, rc, rr, beta, reduction="none")
                (losses.sum() / n).backward()  # this shard's share of the step's mean loss
                margin = beta * ((pc - rc) - (pr - rr)).detach()
                stats = torch.stack([losses.detach().sum(), (pc - rc).detach().sum(), (pr - rr).detach().sum(),
                                     margin.sum(), (margin > 0).sum()]).double().cpu()
            dp.sum_gradients_(self.adapter_parameters)
            opt.step()
            total = (dp.sum(stats) / n).tolist()
            for key, v in zip(("loss", "chosen_logratio", "rejected_logratio", "margin", "accuracy"), total):
                hist[key].append(v)

    def ches(self, chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        """CHES score of each pair from the reference model's final hidden states (see :func:`ches_score`)."""
        chosen, rejected = _same_shape(chosen, rejected, names=("chosen", "rejected"))
        chosen, rejected = self._indices(chosen, "chosen"), self._indices(rejected, "rejected")
        m = self.batch["response_mask"][:, 1:].to(self.ref_hidden.device)
        h = self.ref_hidden[:, :-1]
        return ches_score(h[chosen], h[rejected], m[chosen], m[rejected]).cpu()

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, adapter: bool = True) -> list[str]:
        """Greedy continuations of chat-formatted ``prompts`` with the adapter on (policy) or off (reference)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of chat-formatted strings, not one string")
        prompts = list(prompts)
        if not prompts or any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        max_new_tokens = _int(max_new_tokens, "max_new_tokens", minimum=1)
        if not isinstance(adapter, bool):
            raise TypeError(f"adapter must be True (policy) or False (reference), got {adapter!r}")
        with self.policy() if adapter else contextlib.nullcontext():
            replies = self.lm.generate(list(prompts), max_new_tokens=max_new_tokens, chat=False,
                                       batch_size=max(1, len(prompts)))
        return [t.strip() for t in replies]



# --------------------------------------------------------------------------------------------------
# One DPO training step, written out (the exercise of notebook 12)


def bandit_as_sequences(k: int) -> tuple[torch.Tensor, torch.Tensor, "Callable"]:
    """The tabular policy π_θ = softmax(θ) over ``k`` answers as a language model with one-token responses.

    Response y is the sequence [0, y] (a one-token prompt, then the answer), and the logits at position 0 are θ,
    so :func:`sequence_logprobs` gives log π_θ(y) = log softmax(θ)_y. Returns ``(input_ids [k, 2],
    response_mask [k, 2], logits_fn)`` with ``logits_fn(θ)`` the logits [k, 2, k] — the form :func:`dpo_step`
    takes, so the bandit of notebook 12 trains with the same step as a real model.
    """
    k = _int(k, "k", minimum=2)
    ids = torch.stack([torch.zeros(k, dtype=torch.long), torch.arange(k)], 1)
    mask = torch.tensor([[0, 1]] * k)

    def logits_fn(theta: torch.Tensor) -> torch.Tensor:
        if not isinstance(theta, torch.Tensor) or theta.shape != (k,):
            raise ValueError(f"θ must be a tensor of {k} logits, one per answer, got "
                             f"{tuple(theta.shape) if isinstance(theta, torch.Tensor) else type(theta).__name__}")
        return theta.expand(k, 2, k)

    return ids, mask, logits_fn


def dpo_step(params: torch.Tensor, logits_fn, input_ids: torch.Tensor, response_mask: torch.Tensor,
             chosen: torch.Tensor, rejected: torch.Tensor, ref_logps: torch.Tensor, beta: float,
             lr: float) -> torch.Tensor:
    """One gradient-descent step on the DPO loss (Rafailov et al. 2023, eq. 7), for a policy given by its parameters.

    ``logits_fn(params)`` returns the policy's logits [N, T, V] on ``input_ids`` [N, T] (N responses, each
    prompt + response, right-padded); ``response_mask`` [N, T] marks the response tokens. Then
    log π_θ(y_n|x_n) = :func:`sequence_logprobs`, the loss is :func:`dpo_loss` over the pairs
    (``chosen[i]``, ``rejected[i]``) (response indices) with the reference log-probabilities ``ref_logps`` [N],
    and the step is plain gradient descent θ' = θ − lr ∇_θ L_DPO(θ). Returns θ' (detached, same shape as θ).
    """
    beta, lr = _check_beta(beta), _positive(lr, "lr")
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise TypeError(f"params must be a floating-point torch.Tensor, got {type(params).__name__}")
    if not callable(logits_fn):
        raise TypeError(f"logits_fn must be a function params -> logits [N, T, V], got {type(logits_fn).__name__}")
    _tensor(params, "params")
    ref_logps = _tensor(ref_logps, "ref_logps")
    chosen, rejected = _same_shape(chosen, rejected, names=("chosen", "rejected"))
    for name, idx in (("chosen", chosen), ("rejected", rejected)):
        if idx.is_floating_point() or idx.dim() != 1:
            raise TypeError(f"{name} must be a 1-D tensor of integer response indices, got dtype {idx.dtype}, "
                            f"shape {tuple(idx.shape)}")
        if int(idx.min()) < 0 or int(idx.max()) >= len(ref_logps):
            raise ValueError(f"{name} must hold response indices between 0 and {len(ref_logps) - 1}")
    theta = params.detach().clone().requires_grad_(True)
    logps = sequence_logprobs(logits_fn(theta), input_ids, response_mask)
    if logps.shape != ref_logps.shape:
        raise ValueError(f"ref_logps must hold one value per response ({tuple(logps.shape)}), got {tuple(ref_logps.shape)}")
    loss = dpo_loss(logps[chosen], logps[rejected], ref_logps[chosen], ref_logps[rejected], beta)
    (grad,) = torch.autograd.grad(loss, theta)
    return (theta - lr * grad).detach()
