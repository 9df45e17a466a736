"""labkit.counterfactual: Wachter counterfactuals, the recourse ILP against brute force, actionability,
infeasibility diagnoses, and greedy visual counterfactuals against exhaustive search."""

import itertools

import pytest
import torch
import torch.nn as nn

from labkit import counterfactual as CF


@pytest.fixture(scope="module")
def credit():
    X, y = CF.make_credit_data(1200, seed=1)
    model = CF.fit_logistic(X[:1000], y[:1000], device="cpu")
    a, c = model.linear_score()
    with torch.no_grad():
        denied = X[1000:][model(X[1000:]).argmax(-1) == 0]
    return X, y, model, a, c, denied


def test_linear_score_matches_the_model(credit):
    X, _, model, a, c, _ = credit
    with torch.no_grad():
        logits = model(X[:50])
    assert torch.allclose(logits[:, 1] - logits[:, 0], X[:50] @ a + c, atol=1e-4)
    # the fitted coefficients recover the planted rule's signs
    assert torch.equal(torch.sign(a), torch.sign(CF.TRUE_WEIGHTS))


def test_milp_is_optimal_by_brute_force(credit):
    _, _, _, a, c, denied = credit
    cost = torch.tensor([1.0, 0.4, 1.0, 0.5, 1.0, 2.0])
    inside = 0
    for x in denied[:15]:
        r = CF.recourse_milp(a, c, x, cost_per_step=cost)
        bf, _ = CF.brute_force_recourse(a, c, x, cost_per_step=cost, max_steps=6)
        assert bf >= r.cost - 1e-9  # enumeration never beats the ILP
        if r.steps.abs().max() <= 6:  # optimum inside the grid: the enumeration must find the same cost
            inside += 1
            assert abs(r.cost - bf) < 1e-9
        assert float(a @ r.x_new + c) >= 0
    assert inside >= 5


def test_immutable_and_monotone_features_are_respected(credit):
    _, _, _, a, c, denied = credit
    # make raising education and lowering late payments (immutable) the cheapest levers by far
    cost = torch.tensor([50.0, 50.0, 0.01, 50.0, 0.01, 0.01])
    feats = CF.with_bounds(education=(0, 4))
    for x in denied[:10]:
        r = CF.recourse_milp(a, c, x, features=feats, cost_per_step=cost)
        assert r.steps[2] == 0 and r.steps[4] == 0  # late_payments, age untouched
        assert r.steps[5] >= 0  # education never lowered
        assert "late_payments" not in r.changed and "age" not in r.changed
    # an only-decrease feature: flip education's direction and the ILP must not raise it
    down = tuple(CF.Feature(f.name, f.unit, f.lower, f.upper, f.step, f.mutable, -1) if f.name == "education" else f
                 for f in CF.FEATURES)
    x = denied[0].clone()
    try:
        r = CF.recourse_milp(a, c, x, features=down, cost_per_step=cost)
        assert r.steps[5] <= 0
    except CF.InfeasibleRecourse:
        pass


def test_step_bounds():
    b = CF.step_bounds(torch.tensor([42.0, 3.0, 5.0]), torch.tensor([10.0, 0, 0]), torch.tensor([200.0, 4, 9]),
                       torch.tensor([5.0, 1, 1]), torch.tensor([True, True, False]), torch.tensor([0, 1, 0]))
    assert b.tolist() == [[-6, 0, 0], [31, 1, 0]]


def test_infeasible_recourse_names_the_blocking_constraint(credit):
    _, _, _, a, c, _ = credit
    x = torch.tensor([25.0, 45.0, 12.0, 2.0, 30.0, 4.0])
    feats = CF.with_bounds(income=(10, 40), savings=(0, 10), debt=(30, 100))
    with pytest.raises(CF.InfeasibleRecourse, match="no recourse exists") as info:
        CF.recourse_milp(a, c, x, features=feats)
    assert any("income" in b for b in info.value.blocking)
    # education is already at its top level and can only increase: that monotonicity is named when it blocks
    x2 = torch.tensor([10.0, 100.0, 20.0, 0.0, 18.0, 2.0])
    frozen = tuple(CF.Feature(f.name, f.unit, f.lower, f.upper, f.step, f.name == "education", -1 if f.name == "education" else 0)
                   for f in CF.FEATURES)
    with pytest.raises(CF.InfeasibleRecourse) as info:
        CF.recourse_milp(a, c, x2, features=frozen)
    assert "education can only decrease" in info.value.blocking or "late_payments is immutable" in " ".join(info.value.blocking) \
        or info.value.blocking == []
    with pytest.raises(ValueError, match="unknown features"):
        CF.with_bounds(salary=(0, 1))


def test_already_approved_and_bad_shapes_are_refused(credit):
    X, _, model, a, c, _ = credit
    with torch.no_grad():
        approved = X[model(X).argmax(-1) == 1][:1]
    with pytest.raises(ValueError, match="already classified"):
        CF.recourse_milp(a, c, approved[0])
    with pytest.raises(ValueError, match="one value per feature"):
        CF.recourse_milp(a, c, torch.zeros(5))
    with pytest.raises(ValueError, match="already classified as their target"):
        CF.wachter(model, approved, 1, CF.mad(X), device="cpu")


def test_diverse_recourse_uses_different_levers(credit):
    _, _, _, a, c, denied = credit
    options = CF.diverse_recourse(a, c, denied[0], k=3)
    assert len(options) >= 2
    costs = [o.cost for o in options]
    assert costs == sorted(costs)
    for p, q in itertools.combinations(options, 2):
        assert not set(p.changed) <= set(q.changed)  # each later option drops a lever of each earlier one


def test_wachter_is_valid_and_close(credit):
    X, _, model, _, _, denied = credit
    scale = CF.mad(X)
    x_cf, valid = CF.wachter(model, denied[:8], 1, scale, device="cpu")
    assert valid.all() and CF.validity(model, x_cf, 1).mean() == 1
    assert (CF.proximity(denied[:8], x_cf, scale) < 10).all()
    with pytest.raises(ValueError, match="positive"):
        CF.wachter(model, denied[:2], 1, -scale, device="cpu")


class _Toy(nn.Module):
    """A CNN-shaped model with a linear head on a 2×2 grid, for exhaustive checks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(3 * 4, 3)

    def features(self, x):
        return torch.nn.functional.avg_pool2d(x.repeat(1, 3, 1, 1) * torch.tensor([1.0, -1.0, 2.0])[:, None, None], 2)

    def decide(self, f):
        return self.head(f.flatten(1))

    def forward(self, x):
        return self.decide(self.features(x))


def test_greedy_visual_counterfactual_against_exhaustive_search():
    model = _Toy().eval()
    g = torch.Generator().manual_seed(5)
    checked = 0
    for _ in range(40):
        q, d = torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g) * 3
        with torch.no_grad():
            cq, cd = int(model(q[None, None]).argmax()), int(model(d[None, None]).argmax())
        if cq == cd:
            continue
        out = CF.greedy_visual_counterfactual(model, q, d, cd, device="cpu")
        exact = CF.min_edits_exhaustive(model, q, d, cd, max_k=4, device="cpu")
        if out["flipped"]:
            assert exact is not None and exact <= len(out["edits"])
            if len(out["edits"]) == 1:
                assert exact == 1
            checked += 1
    assert checked >= 5
    with pytest.raises(ValueError, match="already classified"):
        CF.greedy_visual_counterfactual(model, q, d, cq, device="cpu")
    with pytest.raises(ValueError, match="out of range"):
        CF.greedy_visual_counterfactual(model, q, d, 7, device="cpu")


def test_step_bounds_refuses_lower_above_upper_and_other_bad_ranges():
    args = dict(x=torch.tensor([42.0, 3.0]), lower=torch.tensor([10.0, 0.0]), upper=torch.tensor([200.0, 4.0]),
                step=torch.tensor([5.0, 1.0]), mutable=torch.tensor([True, True]), direction=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"lower must not exceed upper: feature\(s\) \[1\]"):
        CF.step_bounds(**{**args, "lower": torch.tensor([10.0, 5.0])})
    with pytest.raises(ValueError, match="step must be > 0"):
        CF.step_bounds(**{**args, "step": torch.tensor([5.0, -1.0])})
    with pytest.raises(ValueError, match="x contains NaN"):
        CF.step_bounds(**{**args, "x": torch.tensor([float("nan"), 3.0])})
    with pytest.raises(ValueError, match="direction must be"):
        CF.step_bounds(**{**args, "direction": torch.tensor([0, 2])})
    with pytest.raises(TypeError, match="mutable must be a bool"):
        CF.step_bounds(**{**args, "mutable": torch.tensor([1.0, 1.0])})
    # equal bounds are a legal (one-point) range
    assert CF.step_bounds(**{**args, "lower": torch.tensor([42.0, 3.0]), "upper": torch.tensor([42.0, 3.0])}).tolist() \
        == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="must not exceed upper"):
        CF.Feature("income", "k$", 200, 10, 5)
