"""labkit.rlhf against ground truth: brute-force leave-one-out baselines, the exact policy gradient, PPO's clipped
gradient, the closed-form optimum of the bandit, TRL's RLOO trainer; the LoRA loop on the course model."""

import math

import pytest
import torch

from labkit import preference, rlhf


def test_rloo_advantages_leave_one_out_by_brute_force():
    r = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    adv = rlhf.rloo_advantages(r)
    for p in range(5):
        for i in range(4):
            others = torch.cat([r[p, :i], r[p, i + 1:]])
            assert adv[p, i].item() == pytest.approx((r[p, i] - others.mean()).item(), abs=1e-12)
    assert torch.allclose(adv.sum(1), torch.zeros(5, dtype=torch.float64), atol=1e-12)     # they sum to zero per prompt
    assert torch.allclose(adv, 4 / 3 * (r - r.mean(1, keepdim=True)))
    assert torch.equal(rlhf.rloo_advantages(torch.full((2, 3), 7.0)), torch.zeros(2, 3))   # equal rewards: no signal


def test_kl_penalised_reward_averages_to_the_rlhf_objective():
    """E_π[r − β(log π − log π_ref)] = E_π[r] − β KL(π ‖ π_ref) exactly, summing over all answers with weights π."""
    g = torch.Generator().manual_seed(1)
    pi, ref = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0), torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), 0)
    r, beta = torch.randn(6, generator=g, dtype=torch.float64), 0.7
    pen = rlhf.kl_penalised_rewards(r, pi.log(), ref.log(), beta)
    J = (pi * r).sum() - beta * preference.kl_divergence(pi, ref)
    assert (pi * pen).sum().item() == pytest.approx(J.item(), abs=1e-12)
    assert torch.equal(rlhf.kl_penalised_rewards(r, pi.log(), ref.log(), 0.0), r)


def test_rloo_gradient_is_unbiased_for_the_exact_policy_gradient():
    """Averaged over many sampled batches, the RLOO surrogate's gradient is ∇_θ J(θ), computed exactly by autograd."""
    g = torch.Generator().manual_seed(2)
    K, beta, k = 5, 0.5, 4
    R = torch.randn(K, generator=g, dtype=torch.float64)
    ref_logp = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    theta = torch.randn(K, generator=g, dtype=torch.float64, requires_grad=True)
    pi = torch.softmax(theta, 0)
    J = (pi * R).sum() - beta * (pi * (pi.log() - ref_logp)).sum()
    (exact,) = torch.autograd.grad(J, theta)
    n = 20000
    logp_all = torch.log_softmax(theta, 0)
    a = torch.multinomial(pi.detach().expand(n, K), k, replacement=True, generator=g)
    with torch.no_grad():
        adv = rlhf.rloo_advantages(rlhf.kl_penalised_rewards(R[a], logp_all[a], ref_logp[a], beta))
    loss = rlhf.policy_gradient_loss(logp_all[a], logp_all[a].detach(), adv, "rloo")
    (est,) = torch.autograd.grad(-loss, theta, retain_graph=True)
    # the loss averages over n·k samples, so its gradient is the mean per-sample estimate of ∇J
    assert torch.allclose(est, exact, atol=0.02), (est, exact)
    # and PPO's clipped loss has the same gradient on fresh samples (ratio 1)
    (ppo,) = torch.autograd.grad(-rlhf.ppo_clip_loss(logp_all[a], logp_all[a].detach(), adv, 0.2), theta)
    assert torch.allclose(ppo, est, atol=1e-12)


def test_ppo_clip_gradient_vanishes_outside_the_trust_region():
    eps = 0.2
    logp_old = torch.zeros(4, dtype=torch.float64)
    # ratios 1.5 (A > 0: already pushed up enough), 0.6 (A < 0: already pushed down enough), 1.1 and 0.9 (inside)
    logp_new = torch.log(torch.tensor([1.5, 0.6, 1.1, 0.9], dtype=torch.float64)).requires_grad_(True)
    adv = torch.tensor([2.0, -1.0, 2.0, -1.0], dtype=torch.float64)
    loss = rlhf.ppo_clip_loss(logp_new, logp_old, adv, eps)
    (grad,) = torch.autograd.grad(loss, logp_new)
    ratio = logp_new.detach().exp()
    assert grad[0].item() == 0 and grad[1].item() == 0
    assert torch.allclose(grad[2:], -(adv * ratio)[2:] / 4)                     # d(−ρA/n)/d log π = −ρA/n
    assert loss.item() == pytest.approx(-(1.2 * 2 + 0.8 * -1 + 1.1 * 2 + 0.9 * -1) / 4)
    # on the other side the clip does not protect: ratio 0.6 with A > 0 and 1.5 with A < 0 keep their gradient
    logp_new2 = torch.log(torch.tensor([0.6, 1.5], dtype=torch.float64)).requires_grad_(True)
    (g2,) = torch.autograd.grad(rlhf.ppo_clip_loss(logp_new2, torch.zeros(2, dtype=torch.float64), torch.tensor([2.0, -1.0], dtype=torch.float64), eps), logp_new2)
    assert torch.allclose(g2, -torch.tensor([0.6 * 2.0, 1.5 * -1.0], dtype=torch.float64) / 2)


def _candidates():
    data = preference.load_preference_data()
    R = torch.tensor([r["true_reward"] for r in data["responses"]])
    prompt_of = torch.tensor([r["prompt_id"] for r in data["responses"]])
    return torch.stack([R[prompt_of == p] for p in range(int(prompt_of.max()) + 1)])


@pytest.mark.parametrize("algorithm,lr", [("rloo", 0.1), ("ppo", 0.05)])
def test_bandit_reaches_the_closed_form_optimum(algorithm, lr):
    """On the course's candidate sets (32 prompts × 8 responses, uniform π_ref) RLOO and PPO reach π* ∝ π_ref exp(R/β)."""
    R = _candidates()
    beta = 0.5
    h = rlhf.bandit_rlhf(R, beta, algorithm=algorithm, k=8, steps=300, lr=lr, seed=0)
    ref = torch.full_like(R, 1 / 8, dtype=torch.float64)
    pi_star = preference.kl_regularised_policy(ref.log(), R.double(), beta)
    assert torch.allclose(h["pi_star"], pi_star)
    reward_star = float((pi_star * R).sum(-1).mean())
    kl_star_ref = float(preference.kl_divergence(pi_star, ref).mean())
    assert h["kl_star"][0] > 1.0 and h["kl_star"][-1] < 0.01           # KL(π_θ ‖ π*) falls from > 1 nat to < 0.01
    assert max(h["kl_star"][-50:]) < 0.02
    assert h["reward"][-1] == pytest.approx(reward_star, abs=0.03)
    assert h["kl_ref"][-1] == pytest.approx(kl_star_ref, abs=0.03)
    J_star = reward_star - beta * kl_star_ref
    assert h["objective"][-1] == pytest.approx(J_star, abs=0.01) and max(h["objective"]) <= J_star + 1e-9
    assert h["samples"] == 300 * 8 * 32 and h["probs"].shape == R.shape


def test_bandit_single_prompt_and_reference():
    R = torch.tensor([1.0, 0.0, -1.0])
    ref = torch.tensor([0.2, 0.5, 0.3])
    h = rlhf.bandit_rlhf(R, 1.0, ref_probs=ref, steps=400, lr=0.1, k=8)
    pi_star = preference.kl_regularised_policy(ref.log(), R, 1.0)
    assert h["probs"].shape == (3,) and torch.allclose(h["probs"].float(), pi_star, atol=0.03)


def test_policy_gradient_loss_rejects_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        rlhf.policy_gradient_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), "grpo")


def test_advantages_and_loss_match_trl_rloo_trainer(tmp_path, lm):
    """One step of TRL's RLOOTrainer on a tiny random Llama (the course tokenizer), with a KL penalty against a
    perturbed reference: its advantages and its loss equal labkit's rloo_advantages(kl_penalised_rewards(...)) and
    ppo_clip_loss on the same samples."""
    trl = pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from labkit import dpo

    tok = lm.tokenizer                                 # the course tokenizer; the model is tiny and random
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "tiny")  # TRL builds its reference from the model's path

    def reward(completions, **kwargs):            # deterministic in the text
        return [float(len(c) % 7) for c in completions]

    beta, k = 0.3, 4
    args = trl.RLOOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, num_generations=k, max_completion_length=5,
                          max_steps=1, beta=beta, learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no", seed=0,
                          disable_tqdm=True)
    trainer = trl.RLOOTrainer(model=str(tmp_path / "tiny"), reward_funcs=reward, args=args, processing_class=tok,
                              train_dataset=Dataset.from_dict({"prompt": ["The cat", "A dog", "Hello there", "Sun"]}))
    with torch.no_grad():                          # a reference that differs from the policy, so the KL term counts
        for p in trainer.ref_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    got = {}
    original = trainer._compute_loss

    def spy(m, inputs):
        loss = original(m, inputs)
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        resp = torch.cat([torch.zeros_like(inputs["prompt_mask"]), inputs["completion_mask"]], 1)
        with torch.no_grad():                      # the policy before its update, and the reference
            got["new_logps"] = dpo.sequence_logprobs(m(input_ids=ids, attention_mask=attn).logits, ids, resp)
            got["ref_logps"] = dpo.sequence_logprobs(trainer.ref_model(input_ids=ids, attention_mask=attn).logits, ids, resp)
        got.update(inputs={key: v.detach().clone() for key, v in inputs.items()}, loss=loss.detach())
        return loss

    trainer._compute_loss = spy
    trainer.train()
    inp, new_logps, ref_logps = got["inputs"], got["new_logps"], got["ref_logps"]
    texts = tok.batch_decode(inp["completion_ids"] * inp["completion_mask"] + tok.pad_token_id * (1 - inp["completion_mask"]),
                             skip_special_tokens=True)
    r = torch.tensor(reward(texts))
    pen = rlhf.kl_penalised_rewards(r, inp["old_logps"], ref_logps, beta)
    assert not torch.allclose(pen, r)                                        # the KL penalty is not vacuous
    # group the rows by prompt (TRL shuffles the batch) and take the leave-one-out advantages within each group
    groups = [tuple(row[m.bool()].tolist()) for row, m in zip(inp["prompt_ids"], inp["prompt_mask"])]
    ours = torch.empty_like(pen)
    for g in set(groups):
        rows = torch.tensor([i for i, h in enumerate(groups) if h == g])
        assert len(rows) == k
        ours[rows] = rlhf.rloo_advantages(pen[rows][None])[0]
    assert torch.allclose(ours, inp["advantages"].float(), atol=1e-4), (ours, inp["advantages"])
    assert torch.allclose(new_logps, inp["old_logps"], atol=1e-4)
    ours_loss = rlhf.ppo_clip_loss(new_logps, inp["old_logps"], inp["advantages"], args.epsilon)
    assert ours_loss.item() == pytest.approx(got["loss"].item(), abs=1e-5)


def test_lora_rloo_on_the_course_model(lm):
    """Two steps on the course model: at the start π_θ = π_ref (KL exactly 0); the cached lower layers give the same
    sequence log-probabilities as a full forward pass; the update moves the adapter; remove() restores the model."""
    from labkit import dpo

    prompts = [lm.chat_prompt("Describe a lake in one short sentence."), lm.chat_prompt("Describe a bus in one short sentence.")]
    reward = lambda texts: torch.tensor([float(len(t)) / 10 for t in texts])
    before = {n: p.detach().clone() for n, p in lm.model.named_parameters()}
    tr = rlhf.LoraRLOO(lm, prompts, reward, true_reward_fn=preference.true_reward, k=2, max_new_tokens=4, n_lora_layers=1,
                       rank=2, lr=1e-2, seed=0)
    try:
        batch, texts = tr.sample()
        assert batch["input_ids"].shape[0] == 4 and len(texts) == 4
        assert int(batch["response_mask"].sum(1).min()) >= 1 and int(batch["response_mask"].sum(1).max()) <= 4
        tr.adapter.cache_responses(batch)
        cached = tr.adapter.logps(torch.arange(4)).cpu()
        with torch.no_grad(), tr.adapter.policy():
            logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        full = dpo.sequence_logprobs(logits, batch["input_ids"], batch["response_mask"])
        assert torch.allclose(cached, full, atol=1e-3)
        assert torch.allclose(cached, tr.adapter.ref_logps, atol=1e-5)          # LoRA starts at B = 0: π_θ = π_ref
        initial = [p.detach().clone() for p in tr.adapter.adapter_parameters]
        hist = tr.train(2, progress=False)
        assert abs(hist["kl"][0]) < 1e-4 and len(hist["proxy"]) == 2 and len(hist["true"]) == 2
        assert hist["samples_per_second"] > 0 and len(hist["last_texts"]) == 4 and len(hist["texts"]) == 2
        assert hist["first_texts"] == hist["texts"][0] and hist["last_texts"] == hist["texts"][1]
        moved = [p for p, p0 in zip(tr.adapter.adapter_parameters, initial) if not torch.equal(p, p0)]
        assert moved, "the RLOO step changed no adapter weight"
    finally:
        tr.remove()
    after = dict(lm.model.named_parameters())
    assert set(after) == set(before) and all(torch.equal(after[n], before[n]) for n in before)
