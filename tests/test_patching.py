"""labkit.patching: exact activation patching against its definition, batching, gradient estimates, bad input."""

from __future__ import annotations

import pytest
import torch

from labkit import patching


@pytest.fixture(scope="module")
def setup(lm):
    clean, patch = patching.tokenize_pair(lm, "The nurse said that", "The man said that")
    metric = patching.logit_diff_readout(lm.token_id(" he"), lm.token_id(" she"))
    with torch.no_grad():
        m_c = float(metric(lm.model(input_ids=clean).logits))
        m_p = float(metric(lm.model(input_ids=patch).logits))
    return clean, patch, metric, m_c, m_p


def test_different_token_lengths_are_refused(lm):
    with pytest.raises(ValueError, match="same token length"):
        patching.tokenize_pair(lm, "The nurse said that", "The police officer said that")
    with pytest.raises(ValueError, match="one corrupted prompt per clean prompt"):
        patching.tokenize_pair(lm, ["a", "b"], ["c"])


def test_patching_the_whole_input_gives_the_whole_effect(lm, setup):
    clean, patch, metric, m_c, m_p = setup
    # resid_pre.0 at every position is the corrupted input itself: F = m(x_p) - m(x_c)
    F = patching.exact_patching(lm, clean, patch, [[("resid_pre.0", (slice(None),))]], metric)
    assert F.item() == pytest.approx(m_p - m_c, abs=1e-4)
    # positions before the profession are identical in both prompts: patching them changes nothing
    F0 = patching.exact_patching(lm, clean, patch, [[("resid_pre.3", (0,))]], metric)
    assert abs(F0.item()) < 1e-4


def test_batched_interventions_equal_one_at_a_time(lm, setup):
    clean, patch, metric, _, _ = setup
    ivs = patching.head_interventions(2, 9)[:6] + patching.resid_interventions(2, 4)[:3]
    batched = patching.exact_patching(lm, clean, patch, ivs, metric, batch_size=9)
    single = patching.exact_patching(lm, clean, patch, ivs, metric, batch_size=1)
    assert torch.allclose(batched, single, atol=1e-4)


def test_attribution_patching_is_the_gradient_times_difference(lm, setup):
    clean, patch, metric, _, _ = setup
    attr = patching.attribution_patching(lm, clean, patch, ["resid_pre.0"], metric)["resid_pre.0"]
    # ground truth: finite differences along (a_p - a_c) at the clean point
    from labkit.lm import hooks

    with torch.no_grad(), hooks.capture(lm, "resid_pre.0") as c:
        lm.model(input_ids=clean)
    with torch.no_grad(), hooks.capture(lm, "resid_pre.0") as p:
        lm.model(input_ids=patch)
    delta = p["resid_pre.0"] - c["resid_pre.0"]
    eps = 1e-2
    with torch.no_grad():
        vals = []
        for sign in (1, -1):
            with hooks.patch(lm, {"resid_pre.0": c["resid_pre.0"] + sign * eps * delta}):
                vals.append(float(metric(lm.model(input_ids=clean).logits)))
    fd = (vals[0] - vals[1]) / (2 * eps)
    assert attr.sum().item() == pytest.approx(fd, rel=0.05, abs=1e-3)
    assert attr[0].abs().max() < 1e-6  # position 0 does not differ


def test_integrated_gradients_converge_to_the_exact_effect(lm, setup):
    """Completeness: summed over a whole site, IG is a Riemann sum of m along the path from a_p to a_c.

    Its error shrinks like 1/N. With N = 10 it need not beat the first-order estimate where m is nearly
    linear in the site (late layers: at resid_pre.20 attribution patching is already within 3%), so the
    test compares IG with attribution patching at an early layer, where the first-order estimate is poor,
    and checks the convergence in N at a late one.
    """
    clean, patch, metric, m_c, m_p = setup
    ivs = [[("resid_pre.5", (slice(None),))], [("resid_pre.20", (slice(None),))]]
    exact = patching.exact_patching(lm, clean, patch, ivs, metric)
    # patching a whole residual stream swaps the input: both equal m(x_p) - m(x_c)
    assert torch.allclose(exact, torch.full((2,), m_p - m_c), atol=1e-4)
    ig10 = {s: v.sum().item() for s, v in patching.ig_patching(lm, clean, patch, ["resid_pre.5", "resid_pre.20"], metric, 10).items()}
    ap = {s: v.sum().item() for s, v in patching.attribution_patching(lm, clean, patch, ["resid_pre.5", "resid_pre.20"], metric).items()}
    target = m_p - m_c
    assert abs(ig10["resid_pre.5"] - target) < 0.5 * abs(ap["resid_pre.5"] - target)
    ig50 = patching.ig_patching(lm, clean, patch, ["resid_pre.20"], metric, 50)["resid_pre.20"].sum().item()
    assert abs(ig50 - target) < 0.5 * abs(ig10["resid_pre.20"] - target)
    assert abs(ig50 - target) < 0.02 * abs(target)


def test_ig_with_one_step_is_the_gradient_at_the_patched_point(lm, setup):
    """N = 1 evaluates the gradient at a_p only: for a whole residual stream that is attribution patching run
    from the corrupted prompt towards the clean one, with the sign flipped. This also checks that widening the
    batch inside the model (the layers below run once) gives the same numbers as a full pass."""
    clean, patch, metric, _, _ = setup
    ig1 = patching.ig_patching(lm, clean, patch, ["resid_pre.7"], metric, n_steps=1)["resid_pre.7"]
    swapped = patching.attribution_patching(lm, patch, clean, ["resid_pre.7"], metric)["resid_pre.7"]
    assert torch.allclose(ig1, -swapped, atol=1e-5)


def test_profession_pairs_and_multi_token_professions(lm):
    clean, corrupt, chosen = patching.profession_pairs(lm, n=4)
    assert len(clean) == len(corrupt) == len(chosen) == 4
    assert [s for _, s in chosen] == sorted(s for _, s in chosen) and chosen[0][1] <= -0.8
    c, p = patching.tokenize_pair(lm, clean, corrupt)
    assert c.shape == p.shape == (4, 4) and (c[:, 2:] == p[:, 2:]).all()
    # a profession written with several tokens cannot be patched position by position: refused, naming both
    with pytest.raises(ValueError, match=r"'The firefighter said that' has 5 tokens.*4 tokens"):
        patching.tokenize_pair(lm, "The firefighter said that", "The man said that")
    with pytest.raises(ValueError, match="must contain"):
        patching.profession_pairs(lm, template="The nurse said that")
    assert patching.profession_pairs(lm, words=["nurse"])[0] == ["The nurse said that"]
    with pytest.raises(ValueError, match="pick one-token professions"):
        patching.profession_pairs(lm, words=["firefighter"])
    with pytest.raises(ValueError, match="unknown profession"):
        patching.profession_pairs(lm, words=["astronaut_chef"])


def test_unknown_sites_and_bad_arguments(lm, setup):
    clean, patch, metric, _, _ = setup
    with pytest.raises(ValueError, match="unknown site kind"):
        patching.exact_patching(lm, clean, patch, [[("neuron.3", (0,))]], metric)
    with pytest.raises(ValueError, match="out of range"):
        patching.attribution_patching(lm, clean, patch, ["head.99"], metric)
    with pytest.raises(ValueError, match="n_steps"):
        patching.ig_patching(lm, clean, patch, ["head.0"], metric, n_steps=0)
    with pytest.raises(ValueError, match="differ in shape"):
        patching.run_interventions(lm, clean, patch[:, :3], [[("head.0", (slice(None), 0))]], metric)
    with pytest.raises(ValueError, match="differ in shape"):
        patching.attribution_patching(lm, clean, patch[:, :3], ["head.0"], metric)
    with pytest.raises(ValueError, match="differ in shape"):
        patching.ig_patching(lm, clean, patch[:, :3], ["head.0"], metric)
    with pytest.raises(ValueError, match="unknown site kind"):
        patching.ig_patching(lm, clean, patch, ["heads.0"], metric)
    with pytest.raises(KeyError, match="no attribution"):
        patching.reduce_site({"head.0": torch.zeros(4, 9, 64)}, [[("head.1", (slice(None), 0))]])
