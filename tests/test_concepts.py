"""labkit.concepts against ground truth: planted concepts, the oracle, hand-built models with known sensitivities."""

import numpy as np
import pytest
import torch
from torch import nn

from labkit import concepts


def test_rendering_and_label_rule_are_what_the_docstrings_say():
    d = concepts.planted_concepts(200, noise=0.0, seed=0, device="cpu")
    T = concepts.templates().flatten(1)
    # with no noise, every image is a non-negative combination of its own concepts' strokes
    for x, c in zip(d["X"][:20], d["C"][:20]):
        absent_only = (T[c == 0].sum(0) > 0) & (T[c == 1].sum(0) == 0)
        assert torch.all(x[absent_only] == 0)
    brute = torch.tensor([float(c[0] + c[1] + c[2] - c[3] >= 2) for c in d["C"]])
    assert torch.equal(d["y"], brute)
    forced = concepts.planted_concepts(30, seed=1, force={5: 1}, device="cpu")
    assert torch.all(forced["C"][:, 5] == 1)


def test_intervene_replaces_only_the_masked_entries():
    p = torch.rand(4, 3)
    t = (torch.rand(4, 3) > 0.5).float()
    m = torch.tensor([True, False, True])
    out = concepts.intervene(p, t, m)
    assert torch.equal(out[:, [0, 2]], t[:, [0, 2]]) and torch.equal(out[:, 1], p[:, 1])
    assert torch.equal(concepts.intervene(p, t, torch.ones(4, 3, dtype=torch.bool)), t)


@pytest.fixture(scope="module")
def small_cbms():
    tr = concepts.planted_concepts(600, noise=0.5, seed=0, device="cpu")
    te = concepts.planted_concepts(300, noise=0.5, seed=1, device="cpu")
    models = {m: concepts.train_cbm(tr["X"], tr["C"], tr["y"], mode=m, epochs=150, seed=0) for m in ["independent", "joint"]}
    return tr, te, models


def test_intervention_curve_reaches_the_oracle(small_cbms):
    _, te, models = small_cbms
    ind = models["independent"]
    curve = concepts.intervention_curve(ind, te["X"], te["C"], te["y"], n_orders=2)
    with torch.no_grad():
        oracle = float(((ind.head(te["C"]) > 0).float() == te["y"]).float().mean())
    assert abs(float(curve[-1]) - oracle) < 1e-6
    assert curve[-1] > curve[0] and oracle > 0.97
    # the head of the independent model learned the planted rule's signs
    w = ind.f.weight[0]
    assert (w[:3] > 1).all() and w[3] < -1 and (w[4:].abs() < w[:3].min()).all()


def test_joint_cbm_predicts_concepts_and_labels(small_cbms):
    _, te, models = small_cbms
    with torch.no_grad():
        m = models["joint"]
        assert ((m.concept_probs(te["X"]) > 0.5).float() == te["C"]).float().mean() > 0.8
        assert ((m(te["X"]) > 0).float() == te["y"]).float().mean() > 0.75


def test_cav_points_towards_the_concept():
    g = torch.Generator().manual_seed(0)
    direction = torch.tensor([3.0, 0.0, -1.0, 0.0])
    a = torch.randn(200, 4, generator=g) + direction
    r = torch.randn(200, 4, generator=g)
    v = concepts.cav(a, r)
    assert abs(float(v.norm()) - 1) < 1e-5
    assert float(v @ direction / direction.norm()) > 0.95
    S = concepts.directional_derivatives(torch.stack([direction, -direction]), v)
    assert S[0] > 0 > S[1]
    assert concepts.tcav_score(torch.stack([direction, direction, -direction]), v) == pytest.approx(2 / 3)


class _KnownModel(nn.Module):
    """h = relu(T⁺ x) holds each concept's stroke intensity; log p1 depends on h through w = (3, 3, 3, −3, 0, 0, 0, 0)."""

    def __init__(self):
        super().__init__()
        self.layer2 = nn.Sequential(nn.Linear(100, 8, bias=False), nn.ReLU())
        self.out = nn.Linear(8, 2)
        with torch.no_grad():
            self.layer2[0].weight.copy_(torch.linalg.pinv(concepts.templates().flatten(1)).T)  # h_j ≈ stroke j's intensity
            self.out.weight.zero_()
            self.out.weight[1] = torch.tensor([3.0, 3, 3, -3, 0, 0, 0, 0])
            self.out.bias.copy_(torch.tensor([0.0, -3.0]))

    def forward(self, x):
        return torch.log_softmax(self.out(self.layer2(x)), -1)


def test_tcav_significance_on_a_model_with_known_sensitivities():
    torch.manual_seed(0)
    model = _KnownModel()
    mk = lambda seed, **kw: concepts.planted_concepts(60, noise=0.5, seed=seed, device="cpu", **kw)["X"]  # noqa: E731
    class_inputs = mk(1)
    concept_sets = {"top bar": mk(10, force={0: 1}), "centre square": mk(13, force={3: 1}), "right bar": mk(15, force={5: 1})}
    randoms = [mk(100 + i) for i in range(11)]
    res = concepts.tcav_significance(model, "layer2", class_inputs, concept_sets, randoms, target=1)
    assert res["top bar"]["significant"] and res["top bar"]["mean"] > 0.9
    assert res["centre square"]["significant"] and res["centre square"]["mean"] < 0.1
    assert not res["right bar"]["significant"]
    assert len(res["top bar"]["scores"]) == 10 and len(res["top bar"]["null"]) == 10

    # the same experiments from tensors (tcav_test) agree with captum's TCAV, score for score
    h_of = lambda x: model.layer2(x).detach()  # noqa: E731
    h = h_of(class_inputs).requires_grad_(True)
    grads = torch.autograd.grad(torch.log_softmax(model.out(h), -1)[:, 1].sum(), h)[0]
    acts_random = [h_of(r) for r in randoms]
    for name, ex in concept_sets.items():
        mine = concepts.tcav_test(grads, h_of(ex), acts_random)
        assert mine["scores"] == pytest.approx(res[name]["scores"], abs=1e-6)
        assert mine["null"] == pytest.approx(res[name]["null"], abs=1e-6)
        assert mine["p_value"] == pytest.approx(res[name]["p_value"], rel=1e-6, abs=1e-12)
        assert mine["significant"] == res[name]["significant"]


def test_label_free_cbm_weights_sit_on_the_planted_concepts():
    g = torch.Generator().manual_seed(0)
    protos = torch.nn.functional.normalize(torch.randn(6, 32, generator=g), dim=1)  # 3 class concepts + 3 irrelevant
    labels = torch.arange(3).repeat(40)
    emb = protos[labels] + 0.3 * torch.randn(120, 32, generator=g)
    clf, A, _, _ = concepts.label_free_cbm(emb, protos, labels, l1_C=0.1)
    for c in range(3):
        assert int(np.argmax(clf.coef_[c])) == c
    assert np.abs(clf.coef_[:, 3:]).sum() < 0.5 * np.abs(clf.coef_[:, :3]).sum()


def test_animal_texts_state_their_planted_facts():
    texts, labels, planted = concepts.animal_texts(5, seed=0)
    descriptions = [d for cls in concepts.ANIMAL_DESCRIPTIONS.values() for d in cls]
    for text, row in zip(texts, planted):
        stated = {k for k, d in enumerate(descriptions) if d in text}
        assert stated == set(np.flatnonzero(row.numpy()).tolist())
    assert sorted(set(labels.tolist())) == [0, 1, 2]


# -- bad input --------------------------------------------------------------------------------------


def test_too_few_random_sets_or_examples_for_a_significance_test():
    model = _KnownModel()
    x = concepts.planted_concepts(40, seed=0, device="cpu")["X"]
    with pytest.raises(ValueError, match="at least 10"):
        concepts.tcav_significance(model, "layer2", x, {"c": x}, [x, x], target=1)
    with pytest.raises(ValueError, match="only 5 examples"):
        concepts.tcav_significance(model, "layer2", x, {"c": x[:5]}, [x] * 10, target=1)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="same width"):
        concepts.cav(torch.ones(5, 3), torch.ones(5, 4))
    with pytest.raises(ValueError, match="same shape"):
        concepts.intervene(torch.ones(2, 3), torch.ones(2, 4), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="8 concepts"):
        concepts.label_rule(torch.ones(3, 5))
    with pytest.raises(ValueError, match="unknown mode"):
        concepts.train_cbm(torch.ones(4, 100), torch.ones(4, 8), torch.ones(4), mode="end-to-end")
    with pytest.raises(ValueError, match="mismatched"):
        concepts.directional_derivatives(torch.ones(3, 4), torch.ones(5))


# -- the silent result, and the logit vs log-probability TCAV ------------------------------------------


def test_a_zero_cav_is_refused_instead_of_scoring_zero():
    grads = torch.randn(5, 4)
    with pytest.raises(ValueError, match="zero vector"):
        concepts.tcav_score(grads, torch.zeros(4))
    with pytest.raises(ValueError, match="grads contains NaN"):
        concepts.tcav_score(torch.full((5, 4), float("nan")), torch.ones(4))
    with pytest.raises(ValueError, match="cannot be told apart"):
        concepts.cav(torch.ones(6, 3), torch.ones(6, 3))


def test_output_view_shift_leaves_probabilities_but_moves_logit_tcav():
    d = concepts.planted_concepts(300, noise=0.5, seed=0, device="cpu")
    model = concepts.train_blackbox(d["X"], d["y"], hidden=16, epochs=150, seed=0)
    x = d["X"][:50]
    logits = concepts.output_view(model)
    assert torch.allclose(torch.log_softmax(logits(x), -1), model(x), atol=1e-6)
    h = model.layer2(model.layer1(x)).detach()
    v = torch.randn(16, generator=torch.Generator().manual_seed(1))
    shift = 5.0 * v
    shifted = concepts.output_view(model, shift=shift)
    shifted_logp = concepts.output_view(model, output="log_prob", shift=shift)
    with torch.no_grad():
        assert torch.allclose(shifted(x), logits(x) + (h @ shift)[:, None], atol=1e-4)  # every logit moves by s·h
        assert torch.allclose(shifted_logp(x), model(x), atol=1e-5)  # the probabilities do not
    # at layer2 (followed by a linear output) ∇_h z_1 = w_1 (+ s): a closed form for the logit TCAV score
    w1 = model.out.weight[1].detach()
    grad_z1 = lambda m: torch.autograd.grad(m.out(hh := h.clone().requires_grad_(True))[:, 1].sum()  # noqa: E731
                                            + (hh @ m.shift).sum(), hh)[0]
    assert torch.allclose(grad_z1(shifted), (w1 + shift).expand(50, -1), atol=1e-5)
    assert concepts.tcav_score(grad_z1(shifted), v) == float((w1 + shift) @ v > 0)
    assert concepts.tcav_score(grad_z1(shifted), v) == 1.0  # 5‖v‖² outweighs w₁·v
    with pytest.raises(TypeError, match="train_blackbox"):
        concepts.output_view(torch.nn.Linear(3, 2))
