"""labkit.dpo against ground truth: the closed form, TRL's DPOTrainer loss, the tabular optimum, full forwards; bad input."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from labkit import dpo, preference


def test_dpo_loss_closed_form():
    pw, pl, rw, rl = torch.tensor([-5.0, -9.0]), torch.tensor([-7.0, -3.0]), torch.tensor([-6.0, -8.0]), torch.tensor([-6.0, -4.0])
    beta = 0.5
    z = beta * ((pw - rw) - (pl - rl))
    assert torch.allclose(dpo.dpo_loss(pw, pl, rw, rl, beta), -torch.log(torch.sigmoid(z)).mean())
    assert torch.allclose(dpo.dpo_loss(pw, pl, rw, rl, beta, reduction="none"), -torch.log(torch.sigmoid(z)))
    assert dpo.dpo_loss(pw, pl, pw, pl, 0.1).item() == pytest.approx(math.log(2))
    assert dpo.dpo_loss(torch.tensor([-1000.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]), 1.0).item() == pytest.approx(1000.0)
    assert torch.allclose(dpo.implicit_rewards(pw, rw, beta), beta * (pw - rw))


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


def test_dpo_loss_and_logprobs_match_trl():
    """TRL's own DPOTrainer loss code (``_compute_loss``) on the same batch as labkit's functions."""
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    from trl.trainer.utils import add_fused_lm_head

    model = _tiny_llama()
    g = torch.Generator().manual_seed(1)
    B, T = 3, 9
    ids = torch.randint(0, 50, (2 * B, T), generator=g)  # [chosen; rejected], as TRL stacks them
    attn = torch.ones_like(ids)
    attn[1, 7:] = 0
    attn[4, 6:] = 0
    resp = torch.zeros_like(ids)
    resp[:, 4:] = 1
    resp = resp * attn
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
    logps = dpo.sequence_logprobs(logits, ids, resp)
    ref_c, ref_r = logps[:B] + torch.tensor([0.3, -0.2, 1.0]), logps[B:] + torch.tensor([-0.5, 0.4, 0.0])
    beta = 0.3
    ours = dpo.dpo_loss(logps[:B], logps[B:], ref_c, ref_r, beta)

    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    metrics = defaultdict(lambda: defaultdict(list))
    fake = SimpleNamespace(
        model=model, accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=["sigmoid"], loss_weights=[1.0], beta=beta, use_weighting=False, label_smoothing=0.0,
        _metrics=metrics, _total_train_tokens=0, _tp_size=1,
    )
    inputs = {"input_ids": ids, "attention_mask": attn, "completion_mask": resp, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    with torch.no_grad():
        theirs = trl_dpo.DPOTrainer._compute_loss(fake, model, inputs, False)
    assert theirs.item() == pytest.approx(ours.item(), abs=1e-5)
    assert metrics["eval"]["logps/chosen"][0] == pytest.approx(logps[:B].mean().item(), abs=1e-4)
    r_w = dpo.implicit_rewards(logps[:B], ref_c, beta)
    r_l = dpo.implicit_rewards(logps[B:], ref_r, beta)
    assert metrics["eval"]["rewards/margins"][0] == pytest.approx((r_w - r_l).mean().item(), abs=1e-5)


def test_tabular_dpo_converges_to_closed_form():
    g = torch.Generator().manual_seed(0)
    ref = torch.softmax(torch.randn(8, generator=g), -1)
    r = torch.randn(8, generator=g)
    beta = 0.5
    out = dpo.tabular_dpo(ref, r, beta, n_pairs=30000, steps=600, lr=0.05, seed=0)
    pi_star = preference.kl_regularised_policy(ref.log(), r, beta)
    implicit = beta * (out["probs"].log() - ref.log())
    assert torch.corrcoef(torch.stack([implicit, r]))[0, 1] > 0.99
    assert preference.kl_divergence(pi_star, out["probs"]).item() < 0.01


def test_ches_and_ranking_accuracy_by_hand():
    hw = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    hl = torch.tensor([[[2.0, 0.0], [5.0, 5.0]]])
    ml = torch.tensor([[1, 0]])
    # Σh_w = (1, 1), Σh_l = (2, 0) with the mask: <(1,1),(2,0)> − ‖(1,1)‖² = 2 − 2 = 0
    assert dpo.ches_score(hw, hl, None, ml).item() == pytest.approx(0.0)
    assert dpo.ches_score(hw, hw).item() == pytest.approx(0.0)
    assert dpo.ranking_accuracy(torch.tensor([-1.0, -5.0]), torch.tensor([-2.0, -3.0])) == 0.5
    # π* ranks by log π_ref + R/β: (-1 + 0) vs (-2 + 2) → rejected wins; (-5 + 10) vs (-3 + 0) → chosen wins
    acc = dpo.idealised_ranking_accuracy(torch.tensor([-1.0, -5.0]), torch.tensor([-2.0, -3.0]),
                                         torch.tensor([0.0, 1.0]), torch.tensor([0.2, 0.0]), 0.1)
    assert acc == 0.5


@pytest.fixture(scope="module")
def own_lm():
    from labkit.lm import load_lm

    return load_lm(device="cpu")  # a private copy: LoraDPO adds an adapter to it


def test_lora_dpo_caching_matches_full_forward(own_lm):
    lm = own_lm
    prompt = lm.chat_prompt("Describe the sea in one short sentence.", system="Answer in one short sentence.")
    prompts = [prompt] * 3
    responses = ["The sea is calm and blue.", "A grey, cold and stormy sea.", "Waves."]
    expected = lm.logprobs(prompts, responses)
    lm.model.lm_head.weight.requires_grad_(False)  # a mix of flags, as a caller may have set them
    flags = [p.requires_grad for p in lm.model.parameters()]
    assert any(flags) and not all(flags)
    trainer = dpo.LoraDPO(lm, prompts, responses, n_lora_layers=2, device="cpu")
    assert torch.allclose(trainer.ref_logps, expected, atol=1e-4)
    hist = trainer.train(torch.tensor([0, 0]), torch.tensor([1, 2]), beta=0.5, epochs=3, pairs_per_step=2, lr=1e-2, progress=False)
    assert hist["loss"][-1] < hist["loss"][0]
    policy = trainer.logps(torch.arange(3))
    # the cached path equals a full forward of the adapted model
    b = trainer.batch
    with torch.no_grad():
        with trainer.policy():  # the adapter switched on inside lm.model
            logits = lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        ref_logits = lm.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    assert torch.allclose(policy, dpo.sequence_logprobs(logits, b["input_ids"], b["response_mask"]), atol=1e-3)
    # outside the trainer, lm is the reference (adapter off), unchanged by training
    assert torch.allclose(dpo.sequence_logprobs(ref_logits, b["input_ids"], b["response_mask"]), expected, atol=1e-3)
    assert torch.allclose(lm.logprobs(prompts, responses), expected, atol=1e-4)
    assert trainer.generate(prompts[:1], max_new_tokens=4, adapter=False) == [lm.generate(prompt, chat=False, max_new_tokens=4).strip()]
    assert (policy[0] - expected[0]) - (policy[1] - expected[1]) > 0  # the chosen gained relative to the rejected
    assert trainer.token_kl(torch.arange(3)).min() > 0
    with pytest.raises(ValueError, match="chosen equal to rejected"):
        trainer.train(torch.tensor([1]), torch.tensor([1]), progress=False)
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        trainer.train(torch.tensor([0, 1]), torch.tensor([2]), progress=False)
    with pytest.raises(ValueError, match="beta"):
        trainer.train(torch.tensor([0]), torch.tensor([1]), beta=0.0, progress=False)
    with pytest.raises(ValueError, match="already carries"):
        dpo.LoraDPO(lm, prompts, responses)
    trainer.reset()  # the adapter back at its initial weights: the policy is the reference again
    assert torch.allclose(trainer.logps(torch.arange(3)), trainer.ref_logps, atol=1e-5)
    again = trainer.train(torch.tensor([0, 0]), torch.tensor([1, 2]), beta=0.5, epochs=3, pairs_per_step=2, lr=1e-2, progress=False)
    assert again["loss"] == pytest.approx(hist["loss"], abs=1e-5)  # a second run from the same start repeats the first
    trainer.remove()  # the LoRA layers come out: lm.model is the plain model again
    assert not any("lora" in name for name, _ in lm.model.named_modules())
    assert torch.allclose(lm.logprobs(prompts, responses), expected, atol=1e-4)
    # with the gradient flags it had (peft froze them): the gradient methods of later notebooks and tests need them
    assert [p.requires_grad for p in lm.model.parameters()] == flags
    second = dpo.LoraDPO(lm, prompts[:1], responses[:1], n_lora_layers=1, device="cpu")  # and a new adapter may go in
    second.remove()
    assert [p.requires_grad for p in lm.model.parameters()] == flags


def test_encode_responses_bad_input(lm):
    p = lm.chat_prompt("Hi")
    with pytest.raises(ValueError, match="empty response"):
        dpo.encode_responses(lm, [p, p], ["fine", ""])
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        dpo.encode_responses(lm, [p], ["a", "b"])
    with pytest.raises(ValueError, match="more than the context"):
        dpo.encode_responses(lm, [p], ["word " * (lm.max_length + 10)])
    b = dpo.encode_responses(lm, [p, p], ["Hello there.", "Hi"])
    assert b["response_mask"].sum(1).tolist() == [len(lm.encode("Hello there.")), len(lm.encode("Hi"))]


@pytest.mark.parametrize("beta", [0, -0.1, float("nan")])
def test_dpo_loss_refuses_nonpositive_beta(beta):
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta must be a positive"):
        dpo.dpo_loss(x, x, x, x, beta)


def test_dpo_loss_refuses_mismatched_and_empty_batches():
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        dpo.dpo_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="empty batch"):
        dpo.dpo_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.1)
    with pytest.raises(ValueError, match="expected logits"):
        dpo.sequence_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))


def test_tabular_dpo_bad_input():
    with pytest.raises(ValueError, match="sum to one"):
        dpo.tabular_dpo(torch.tensor([0.5, 0.6]), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="beta"):
        dpo.tabular_dpo(torch.tensor([0.5, 0.5]), torch.zeros(2), -1.0)


def test_nan_log_probabilities_are_refused():
    nan = float("nan")
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="NaN"):
        dpo.dpo_loss(torch.tensor([nan, 0.0]), x, x, x, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        dpo.ranking_accuracy(torch.tensor([nan, 0.0]), x)  # NaN > x is False: a silently lower accuracy
    with pytest.raises(ValueError, match="NaN"):
        dpo.ches_score(torch.full((1, 2, 3), nan), torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="vocabulary"):
        dpo.sequence_logprobs(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 9]]), torch.tensor([[0, 1, 1]]))


def test_dpo_step_matches_the_closed_form_gradient_on_a_bandit():
    """For π_θ = softmax(θ), log π(w) − log π(l) = θ_w − θ_l, so ∇L = −(β/n) Σ_i σ(−m_i)(e_{w_i} − e_{l_i})."""
    g = torch.Generator().manual_seed(1)
    k, beta, lr = 6, 0.3, 2.0
    theta = torch.randn(k, generator=g, dtype=torch.float64)
    ref = torch.log_softmax(torch.randn(k, generator=g, dtype=torch.float64), -1)
    w = torch.tensor([0, 1, 2, 5, 3])
    l = torch.tensor([4, 0, 5, 1, 2])
    ids, mask, fn = dpo.bandit_as_sequences(k)
    new = dpo.dpo_step(theta, fn, ids, mask, w, l, ref, beta, lr)
    logp = torch.log_softmax(theta, -1)
    m = beta * ((logp[w] - ref[w]) - (logp[l] - ref[l]))
    grad = torch.zeros(k, dtype=torch.float64)
    coef = -beta * torch.sigmoid(-m) / len(w)
    grad.index_add_(0, w, coef).index_add_(0, l, -coef)
    torch.testing.assert_close(new, theta - lr * grad)
    # the input is not modified and the loss falls after the step
    before = dpo.dpo_loss(logp[w], logp[l], ref[w], ref[l], beta)
    lp2 = torch.log_softmax(new, -1)
    assert dpo.dpo_loss(lp2[w], lp2[l], ref[w], ref[l], beta) < before
