"""On-policy RLHF from a reward: REINFORCE with a leave-one-out baseline (RLOO) and PPO's clipped objective — notebook 11.

The policy-gradient half of RLHF, first where the answer is known and then on the course model:

* :func:`rloo_advantages`, :func:`kl_penalised_rewards`, :func:`ppo_clip_loss` — the pieces of the loss: the
  leave-one-out baseline of RLOO (Kool et al. 2019; Ahmadian et al. 2024, "Back to basics"), the sequence-level
  KL-penalised reward r − β (log π_θ − log π_ref) (Ziegler et al. 2019; Ahmadian et al. 2024) and PPO's clipped
  surrogate (Schulman et al. 2017);
* :func:`bandit_rlhf` — RLOO or PPO on a tabular (bandit) policy over K answers per prompt, whose optimum
  π* ∝ π_ref exp(R/β) is known in closed form (:func:`labkit.preference.kl_regularised_policy`): the history
  shows KL(π_θ ‖ π*) falling towards 0;
* :class:`LoraRLOO` — the same loop on a causal LM with a LoRA adapter on its top layers
  (:class:`labkit.dpo.LoraDPO`): each step samples k responses per prompt from the policy, scores them with a
  reward function (a learned reward model: the proxy), measures the per-sequence KL to the reference (the
  adapter switched off) and takes an RLOO (or PPO) step; a second reward function (the truth) is tracked.

Every public function and method checks its arguments and raises a ``TypeError``/``ValueError`` naming the
argument and what is expected.
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Sequence

import torch

from labkit import validation as V
from labkit.preference import kl_divergence, kl_regularised_policy
from labkit.runtime import get_device

ALGORITHMS = ("rloo", "ppo")


def _real(name: str, x, dims=None) -> torch.Tensor:
    """``x`` as a finite floating tensor (lists accepted), with a clear error naming ``name``."""
    if x is None or isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be a tensor of numbers, got {type(x).__name__}")
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name} must be a tensor of numbers ({e})") from None
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.float()
    return V.tensor(name, x, dims=dims)


def _same_shape(names: Sequence[str], *xs: torch.Tensor) -> None:
    if len({tuple(x.shape) for x in xs}) != 1:
        raise ValueError("mismatched shapes: " + ", ".join(f"{n} {tuple(x.shape)}" for n, x in zip(names, xs))
                         + " — give one value per sampled response in each")


# --------------------------------------------------------------------------------------------------
# The pieces of the loss


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Advantages with the leave-one-out baseline of RLOO (Kool et al. 2019; Ahmadian et al. 2024, eq. 7).

    ``rewards`` is ``[n_prompts, k]``: k responses sampled for each prompt. Each response's baseline is the mean
    reward of the *other* k − 1 responses to the same prompt, so it does not depend on the response itself and
    the gradient estimate stays unbiased:

    A_i = r_i − 1/(k − 1) Σ_{j≠i} r_j  =  k/(k − 1) · (r_i − mean_j r_j).

    The advantages of a prompt sum to zero. Needs k ≥ 2.
    """
    rewards = _real("rewards", rewards, dims=2)
    k = rewards.shape[1]
    if k < 2:
        raise ValueError(f"rewards must be [n_prompts, k] with k >= 2 samples per prompt (the baseline leaves one "
                         f"out), got shape {tuple(rewards.shape)}")
    return (rewards - (rewards.sum(1, keepdim=True) - rewards) / (k - 1))


def kl_penalised_rewards(rewards: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         beta: float) -> torch.Tensor:
    """The KL-penalised sequence reward r(x, y) − β (log π_θ(y|x) − log π_ref(y|x)) (Ziegler et al. 2019;
    Ahmadian et al. 2024, eq. 2).

    Its expectation under π_θ is the RLHF objective J(π_θ) = E[r] − β KL(π_θ ‖ π_ref): log π_θ − log π_ref of a
    sample is an unbiased estimate of the KL. All three inputs hold one value per sampled response (any shape).
    """
    beta = V.number("beta", beta, lo=0.0)
    rewards, logprobs, ref_logprobs = (_real(n, x) for n, x in
                                       (("rewards", rewards), ("logprobs", logprobs), ("ref_logprobs", ref_logprobs)))
    _same_shape(("rewards", "logprobs", "ref_logprobs"), rewards, logprobs, ref_logprobs)
    return rewards - beta * (logprobs - ref_logprobs)


def ppo_clip_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                  clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped surrogate loss (Schulman et al. 2017, eq. 7), negated and averaged over samples.

    L = −mean min(ρ A, clip(ρ, 1 − ε, 1 + ε) A),  ρ = exp(log π_new − log π_old).

    The min makes the objective pessimistic: once ρ has left [1 − ε, 1 + ε] in the direction the advantage
    favours, the sample gives no more gradient. At ρ = 1 (the first epoch on fresh samples) the gradient is
    REINFORCE's, −mean A ∇log π. ``logp_old`` and ``advantages`` are treated as constants.
    """
    clip_eps = V.number("clip_eps", clip_eps, lo=0.0, lo_open=True)
    if not isinstance(logp_new, torch.Tensor):
        raise TypeError(f"logp_new must be a torch.Tensor (with its graph), got {type(logp_new).__name__}")
    logp_new = _real("logp_new", logp_new)
    logp_old, advantages = _real("logp_old", logp_old).detach(), _real("advantages", advantages).detach()
    _same_shape(("logp_new", "logp_old", "advantages"), logp_new, logp_old, advantages)
    ratio = torch.exp(logp_new - logp_old.to(logp_new.dtype))
    adv = advantages.to(logp_new.dtype)
    return -torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv).mean()


def policy_gradient_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                         algorithm: str = "rloo", clip_eps: float = 0.2) -> torch.Tensor:
    """The loss of one update: REINFORCE's −mean A log π_θ (``"rloo"``) or PPO's clipped loss (``"ppo"``).

    Both have the same gradient on fresh samples (π_θ = π_old); only PPO may take several epochs on one batch.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "ppo":
        return ppo_clip_loss(logp_new, logp_old, advantages, clip_eps)
    if not isinstance(logp_new, torch.Tensor):
        raise TypeError(f"logp_new must be a torch.Tensor (with its graph), got {type(logp_new).__name__}")
    logp_new, advantages = _real("logp_new", logp_new), _real("advantages", advantages).detach()
    _same_shape(("logp_new", "advantages"), logp_new, advantages)
    return -(advantages.to(logp_new.dtype) * logp_new).mean()


# --------------------------------------------------------------------------------------------------
# A bandit whose optimum is known


def _probs(name: str, p, shape) -> torch.Tensor:
    p = _real(name, p).double()
    if p.shape != shape:
        raise ValueError(f"{name} must have the shape of rewards {tuple(shape)}, got {tuple(p.shape)}")
    if (p <= 0).any() or not torch.allclose(p.sum(-1), torch.ones((), dtype=p.dtype), atol=1e-6):
        raise ValueError(f"{name} must hold positive probabilities that sum to one over the answers (last axis)")
    return p


def bandit_rlhf(rewards: torch.Tensor, beta: float, ref_probs: torch.Tensor | None = None, algorithm: str = "rloo",
                k: int = 8, steps: int = 300, lr: float = 0.1, ppo_epochs: int = 4, clip_eps: float = 0.2,
                seed: int = 0, progress: bool = False, advantage_fn: Callable | None = None) -> dict:
    """On-policy RLHF on a tabular policy π_θ(·|x) = softmax(θ_x) over K answers per prompt.

    ``rewards`` is ``[n_prompts, K]`` (or ``[K]`` for one prompt), ``ref_probs`` π_ref of the same shape
    (default uniform); θ starts at log π_ref. Each step samples ``k`` answers per prompt from π_θ, scores them
    with the KL-penalised reward R(y) − β (log π_θ(y) − log π_ref(y)) (:func:`kl_penalised_rewards`), takes RLOO
    advantages (:func:`rloo_advantages`) and updates θ with Adam:

    * ``"rloo"``: one step on −mean A log π_θ (REINFORCE with the leave-one-out baseline);
    * ``"ppo"``: ``ppo_epochs`` steps on the same samples with :func:`ppo_clip_loss`.

    The expected gradient is that of J(θ) = E_πθ[R] − β KL(π_θ ‖ π_ref), whose maximiser is
    π* = softmax(log π_ref + R/β) (:func:`labkit.preference.kl_regularised_policy`). Returns ``{"probs", "pi_star",
    "reward", "kl_ref", "kl_star", "objective", "samples"}``: the final π_θ, π*, and per step (before its update,
    plus one entry after the last) the exact E_πθ[R], KL(π_θ ‖ π_ref), KL(π_θ ‖ π*) and J, averaged over prompts;
    ``samples`` counts the sampled answers used. ``advantage_fn`` replaces :func:`rloo_advantages` (e.g. a
    student's own version: rewards [n_prompts, k] -> advantages of the same shape).
    """
    if advantage_fn is None:
        advantage_fn = rloo_advantages
    elif not callable(advantage_fn):
        raise TypeError(f"advantage_fn must be a function rewards [n_prompts, k] -> advantages, got {type(advantage_fn).__name__}")
    rewards = _real("rewards", rewards, dims=(1, 2)).double()
    beta = V.number("beta", beta, lo=0.0, lo_open=True)
    squeeze = rewards.dim() == 1
    if squeeze:
        rewards = rewards[None]
    if rewards.shape[1] < 2:
        raise ValueError(f"rewards must have at least 2 answers per prompt (last axis), got shape {tuple(rewards.shape)}")
    if ref_probs is None:
        ref_probs = torch.full_like(rewards, 1.0 / rewards.shape[1])
    else:
        ref_probs = _probs("ref_probs", ref_probs[None] if squeeze and torch.as_tensor(ref_probs).dim() == 1 else ref_probs,
                           rewards.shape)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    k, steps = V.integer_at_least(k, "k", 2), V.integer_at_least(steps, "steps", 1)
    ppo_epochs, seed = V.integer_at_least(ppo_epochs, "ppo_epochs", 1), V.integer("seed", seed)
    lr = V.number("lr", lr, lo=0.0, lo_open=True)
    clip_eps = V.number("clip_eps", clip_eps, lo=0.0, lo_open=True)
    from tqdm.auto import tqdm

    ref_logp = ref_probs.log()
    pi_star = kl_regularised_policy(ref_logp, rewards, beta).double()
    theta = ref_logp.clone().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    g = torch.Generator().manual_seed(seed)
    hist = {"reward": [], "kl_ref": [], "kl_star": [], "objective": []}
    rows = torch.arange(len(rewards))[:, None]

    def record():
        with torch.no_grad():
            pi = torch.softmax(theta, -1)
            kl_ref = kl_divergence(pi, ref_probs)
            reward = (pi * rewards).sum(-1)
            hist["reward"].append(float(reward.mean()))
            hist["kl_ref"].append(float(kl_ref.mean()))
            hist["kl_star"].append(float(kl_divergence(pi, pi_star).mean()))
            hist["objective"].append(float((reward - beta * kl_ref).mean()))

    epochs = ppo_epochs if algorithm == "ppo" else 1
    for _ in tqdm(range(steps), desc=f"{algorithm.upper()} steps", disable=not progress):
        record()
        with torch.no_grad():
            logp_all = torch.log_softmax(theta, -1)
            a = torch.multinomial(logp_all.exp(), k, replacement=True, generator=g)     # [n_prompts, k]
            logp_old = logp_all[rows, a]
            adv = advantage_fn(kl_penalised_rewards(rewards[rows, a], logp_old, ref_logp[rows, a], beta))
        for _ in range(epochs):
            logp = torch.log_softmax(theta, -1)[rows, a]
            loss = policy_gradient_loss(logp, logp_old, adv, algorithm, clip_eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
    record()
    probs = torch.softmax(theta.detach(), -1)
    out = {"probs": probs[0] if squeeze else probs, "pi_star": pi_star[0] if squeeze else pi_star,
           "samples": steps * k * len(rewards)}
    return {**out, **hist}


# --------------------------------------------------------------------------------------------------
# The same loop on a language model with a LoRA adapter


class LoraRLOO:
    """On-policy RLHF of a causal LM (Llama family) with a LoRA adapter on its top ``n_lora_layers`` layers.

    **It adds the adapter to ``lm.model`` in place** (through :class:`labkit.dpo.LoraDPO`, with no responses of
    its own); outside the trainer's policy computations ``lm`` computes the reference π_ref, and :meth:`remove`
    takes the adapter out. Each step of :meth:`train`:

    1. samples ``k`` responses to each prompt from π_θ (adapter on; temperature 1, no top-k/top-p, so the
       samples follow π_θ exactly), all prompts in one ``generate`` call, at most ``max_new_tokens`` tokens,
       the end-of-turn token included as the policy's choice to stop;
    2. runs the frozen lower layers **once** on the sampled sequences (``LoraDPO.cache_responses``) and, from
       that cache, the top layers with the adapter off (log π_ref(y|x)) and on (log π_θ(y|x));
    3. scores the responses with ``reward_fn`` (the proxy: a learned reward model) and, only to track it,
       ``true_reward_fn``; forms r − β (log π_θ − log π_ref) (:func:`kl_penalised_rewards`) and the RLOO
       advantages over each prompt's k samples (:func:`rloo_advantages`);
    4. updates the adapter with Adam: one REINFORCE step (``"rloo"``, Ahmadian et al. 2024) or ``ppo_epochs``
       steps of :func:`ppo_clip_loss` on the same samples (``"ppo"``, Schulman et al. 2017), all at the
       sequence level, reusing the cached lower layers.

    ``prompts`` are chat-formatted prompt strings (``lm.chat_prompt(...)``); ``reward_fn(texts)`` and
    ``true_reward_fn(texts)`` map a list of response texts (special tokens removed, stripped; possibly empty)
    to a tensor of rewards, one per text.

    With ``accelerator`` (an ``accelerate.Accelerator``; the script started by ``accelerate launch`` on several
    processes, each with the model on ``accelerator.device``) the training is data parallel
    (:mod:`labkit.distributed`): process r samples for its contiguous shard of the prompts (k samples each, so the
    leave-one-out baselines stay within a process), with its own random stream (seed + 1000003·r), backpropagates
    its share (its samples / all samples) of the step's mean loss, and the gradients are summed over the processes
    before Adam's update: each step applies the gradient of the whole batch of samples and every process holds
    the same adapter (process 0's initial weights are broadcast when training starts). The measurements are those
    of all processes' samples together.
    """

    def __init__(self, lm, prompts: Sequence[str], reward_fn: Callable, true_reward_fn: Callable | None = None,
                 beta: float = 0.05, k: int = 4, max_new_tokens: int = 20, n_lora_layers: int = 4, rank: int = 8,
                 alpha: float = 16.0, lr: float = 2e-3, algorithm: str = "rloo", ppo_epochs: int = 2,
                 clip_eps: float = 0.2, device: str | torch.device | None = None, seed: int = 0, accelerator=None):
        from labkit.dpo import LoraDPO

        V.language_model(lm)
        self.prompts = V.strings("prompts", prompts)
        for name, fn in (("reward_fn", reward_fn), ("true_reward_fn", true_reward_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a function texts -> rewards, got {type(fn).__name__}")
        if reward_fn is None:
            raise TypeError("reward_fn must be a function texts -> rewards, got None")
        self.reward_fn, self.true_reward_fn = reward_fn, true_reward_fn
        self.beta = V.number("beta", beta, lo=0.0)
        self.k = V.integer_at_least(k, "k", 2)
        self.max_new_tokens = V.integer_at_least(max_new_tokens, "max_new_tokens", 1)
        self.lr = V.number("lr", lr, lo=0.0, lo_open=True)
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        self.algorithm = algorithm
        self.ppo_epochs = V.integer_at_least(ppo_epochs, "ppo_epochs", 1)
        self.clip_eps = V.number("clip_eps", clip_eps, lo=0.0, lo_open=True)
        self.seed = V.integer("seed", seed)
        self.lm = lm
        self.dp = None
        if accelerator is not None:
            from labkit.distributed import DataParallel

            self.dp = DataParallel(accelerator)
            if self.dp.world > len(self.prompts):
                raise ValueError(f"{len(self.prompts)} prompts for {self.dp.world} processes: give at least one prompt "
                                 "per process (each process samples for its share of the prompts)")
            self.dp.check_device(get_device(device), "the model")
        # the prompts this process samples for: all of them, or its contiguous shard (prompt-major rows)
        mine = range(len(self.prompts)) if self.dp is None else self.dp.shard(torch.arange(len(self.prompts))).tolist()
        self.prompt_ids = [lm.encode(self.prompts[i]) for i in mine]
        eos = lm.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, (list, tuple)) else [eos if eos is not None else lm.tokenizer.eos_token_id])
        self.adapter = LoraDPO(lm, None, None, n_lora_layers=n_lora_layers, rank=rank, alpha=alpha,
                               batch_size=len(self.prompt_ids) * self.k, device=device, seed=self.seed)
        self.opt = torch.optim.Adam(self.adapter.adapter_parameters, lr=self.lr)

    # -- sampling ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, adapter: bool = True) -> tuple[dict, list[str]]:
        """k responses to every prompt from π_θ (``adapter=True``) or π_ref, in one ``generate`` call.

        Returns the right-padded batch ``{"input_ids", "attention_mask", "response_mask"}`` (prompt-major:
        rows i·k … i·k + k − 1 answer prompt i) and the decoded response texts. On several processes, the
        prompts are this process's shard."""
        if not isinstance(adapter, bool):
            raise TypeError(f"adapter must be True (policy) or False (reference), got {adapter!r}")
        lm = self.lm
        enc = lm.batch([p for p in self.prompt_ids for _ in range(self.k)], padding_side="left")
        with self.adapter.policy() if adapter else _nullcontext():
            out = lm.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=True,
                                    temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=self.max_new_tokens,
                                    pad_token_id=lm.tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        rows, spans, texts = [], [], []
        for i, r in enumerate(new.tolist()):
            end = next((t + 1 for t, tok in enumerate(r) if tok in self.eos), len(r))   # keep the stop token
            p = self.prompt_ids[i // self.k]
            rows.append(p + r[:end])
            spans.append((len(p), len(p) + end))
            texts.append(lm.tokenizer.decode(r[:end], skip_special_tokens=True).strip())
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), lm.tokenizer.pad_token_id, dtype=torch.long)
        attn, resp = torch.zeros_like(ids), torch.zeros_like(ids)
        for i, (r, (a, b)) in enumerate(zip(rows, spans)):
            ids[i, : len(r)] = torch.tensor(r)
            attn[i, : len(r)] = 1
            resp[i, a:b] = 1
        return {"input_ids": ids, "attention_mask": attn, "response_mask": resp}, texts

    def _rewards(self, fn, texts: list[str], name: str) -> torch.Tensor:
        r = torch.as_tensor(fn(texts)).detach().float().cpu().reshape(-1)
        if len(r) != len(texts) or not torch.isfinite(r).all():
            raise ValueError(f"{name} must return one finite reward per text ({len(texts)}), got {tuple(r.shape)}")
        return r

    # -- training ---------------------------------------------------------------------------------------
    def step(self) -> dict:
        """One on-policy step (sample, score, update); returns its measurements (before the update)."""
        t0 = time.perf_counter()
        gc.collect()  # generate() leaves reference cycles that hold large tensors; free them every step
        batch, texts = self.sample()
        out = self.update(batch, texts)
        out["seconds"] = time.perf_counter() - t0
        return out

    def update(self, batch: dict, texts: Sequence[str]) -> dict:
        """The update of one step on sampled responses ``batch`` and their ``texts`` (as :meth:`sample` returns
        them: k per prompt, prompt-major; on several processes, this process's shard): score, advantages, one
        RLOO or ``ppo_epochs`` PPO steps. Returns the measurements of the samples (of all processes together)."""
        if not isinstance(batch, dict) or not {"input_ids", "attention_mask", "response_mask"} <= set(batch):
            raise TypeError("batch must be a dict with input_ids, attention_mask and response_mask (see sample())")
        n_local = len(self.prompt_ids) * self.k
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or any(not isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of response strings, one per row of batch")
        if len(texts) != n_local or not isinstance(batch["input_ids"], torch.Tensor) or len(batch["input_ids"]) != n_local:
            raise ValueError(f"batch and texts must hold k = {self.k} responses for each of this process's "
                             f"{len(self.prompt_ids)} prompts ({n_local} rows, as sample() returns them)")
        self.adapter.cache_responses(batch)                       # frozen lower layers + log π_ref, once
        idx = torch.arange(len(texts))
        logp_old = self.adapter.logps(idx).detach().cpu()         # log π_θ(y|x) of the samples, adapter on
        ref = self.adapter.ref_logps
        proxy = self._rewards(self.reward_fn, texts, "reward_fn")
        shape = (len(self.prompt_ids), self.k)
        adv = rloo_advantages(kl_penalised_rewards(proxy, logp_old, ref, self.beta).reshape(shape)).reshape(-1)
        epochs = self.ppo_epochs if self.algorithm == "ppo" else 1
        dp = self.dp
        share = 1.0 if dp is None else n_local / (len(self.prompts) * self.k)  # this process's share of the mean
        for _ in range(epochs):
            logp = self.adapter.logps(idx, grad=True)
            loss = policy_gradient_loss(logp, logp_old.to(logp.device), adv.to(logp.device), self.algorithm,
                                        self.clip_eps)
            self.opt.zero_grad()
            if dp is None:
                loss.backward()
            else:
                loss = loss * share
                loss.backward()
                dp.sum_gradients_(self.adapter.adapter_parameters)
            self.opt.step()
        true = None if self.true_reward_fn is None else self._rewards(self.true_reward_fn, texts, "true_reward_fn")
        if dp is None:
            out = {"proxy": float(proxy.mean()), "kl": float((logp_old - ref).mean()), "loss": float(loss.detach()),
                   "tokens": float(batch["response_mask"].sum(1).float().mean()), "texts": texts}
            if true is not None:
                out["true"] = float(true.mean())
            return out
        n = len(self.prompts) * self.k
        sums = [proxy.sum(), (logp_old - ref).sum(), batch["response_mask"].sum().float(),
                torch.zeros(()) if true is None else true.sum()]
        proxy_m, kl_m, tokens_m, true_m = (dp.sum(torch.stack(sums).double()) / n).tolist()
        out = {"proxy": proxy_m, "kl": kl_m, "loss": float(dp.sum(loss.detach().double().cpu())), "tokens": tokens_m,
               "texts": dp.gather_texts(list(texts))}
        if true is not None:
            out["true"] = true_m
        return out

    def train(self, steps: int, progress: bool = True) -> dict:
        """``steps`` on-policy steps; returns the history: per step the mean proxy reward, true reward (when
        tracked), KL estimate mean(log π_θ − log π_ref) of the samples, loss, response length in tokens,
        seconds and the sampled ``texts`` (a list per step); ``first_texts`` and ``last_texts`` are the first and
        the last step's."""
        from tqdm.auto import tqdm

        steps = V.integer_at_least(steps, "steps", 1)
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be True or False, got {progress!r}")
        if self.dp is None:
            torch.manual_seed(self.seed)
        else:  # every process its own random stream, and the same adapter to start from
            torch.manual_seed(self.seed + 1000003 * self.dp.rank)
            self.dp.broadcast_(self.adapter.adapter_parameters)
        keys = ["proxy", "kl", "loss", "tokens", "seconds", "texts"] + (["true"] if self.true_reward_fn is not None else [])
        hist = {key: [] for key in keys}
        quiet = not progress or (self.dp is not None and not self.dp.is_main)  # one progress bar, on process 0
        for _ in tqdm(range(steps), desc=f"{self.algorithm.upper()} steps", disable=quiet):
            m = self.step()
            for key in keys:
                hist[key].append(m[key])
        hist["first_texts"], hist["last_texts"] = hist["texts"][0], hist["texts"][-1]
        hist["samples_per_second"] = steps * len(self.prompts) * self.k / sum(hist["seconds"])
        return hist

    def reset(self) -> None:
        """Put the adapter back to its initial weights (π_θ = π_ref) and restart the optimiser."""
        self.adapter.reset()
        self.opt = torch.optim.Adam(self.adapter.adapter_parameters, lr=self.lr)

    def remove(self) -> None:
        """Take the LoRA layers out of ``lm.model``: the model is the original again."""
        self.adapter.remove()


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()
