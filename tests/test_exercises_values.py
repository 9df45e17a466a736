"""The implement-it-yourself exercises of notebooks 09-11 (issue 17): a correct solution written differently
from labkit's reference (other loop order, other vectorisation) passes its check."""

import torch

from labkit import check


def test_reward_model_step_accepts_a_closed_form_loop_over_pairs():
    """No autograd: the gradient of −log σ(Δ·w) is −(1 − σ(Δ·w)) Δ, accumulated pair by pair."""

    def reward_model_step(w, feat_chosen, feat_rejected, lr, l2=0.0):
        grad = torch.zeros_like(w)
        for fc, fr in zip(feat_chosen, feat_rejected):
            delta = fc - fr
            grad -= (1 - torch.sigmoid(delta @ w)) * delta
        grad = grad / len(feat_chosen) + 2 * l2 * w
        return w - lr * grad

    assert check.reward_model_step(reward_model_step) is reward_model_step


def test_seat_test_accepts_loops_over_words_and_partitions():
    """Per-word means by an explicit loop, cosines by hand, the partitions by itertools: no labkit inside."""
    import itertools

    def seat_test(X, Y, A, B, n_templates):
        def words(E):
            rows = [E[i:i + n_templates].sum(0) for i in range(0, len(E), n_templates)]
            return [r / r.norm() for r in rows]

        Xw, Yw, Aw, Bw = words(X), words(Y), words(A), words(B)
        s = torch.stack([sum(w @ a for a in Aw) / len(Aw) - sum(w @ b for b in Bw) / len(Bw) for w in Xw + Yw]).double()
        n = len(Xw)
        d = (s[:n].mean() - s[n:].mean()) / s.std()
        observed = s[:n].sum() - s[n:].sum()
        stats = [s[list(c)].sum() - (s.sum() - s[list(c)].sum()) for c in itertools.combinations(range(2 * n), n)]
        p = sum(float(v >= observed - 1e-9) for v in stats) / len(stats)
        return torch.tensor([float(d), p], dtype=torch.float64)

    assert check.seat_test(seat_test) is seat_test


def test_option_scores_accepts_a_full_pass_per_option_without_the_cache():
    """Slower but correct: run prompt + option from scratch for every option and sum the option's token log-probs."""

    def option_scores(lm, prompt, options):
        p = lm.encode(prompt)
        out = []
        with torch.no_grad():
            for option in options:
                o = lm.encode(option)
                ids = torch.tensor([p + o], device=lm.device)
                logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), -1)
                out.append(sum(logp[len(p) - 1 + j, t] for j, t in enumerate(o)))
        return torch.stack(out).cpu()

    assert check.option_scores(option_scores) is option_scores
