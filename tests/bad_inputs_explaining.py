"""Bad-input cases for Part A · Explaining predictions: labkit.attribution, counterfactual, concepts and
data_attribution (notebooks 01–04). Each public callable gets at least one bad call that must raise a clear error
naming the argument; ``tests/test_bad_input.py`` runs them.

The models the cases need are tiny and built once, lazily (``functools.lru_cache``), so collecting the cases
costs nothing.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn

from bad_input import Bad
from labkit import attribution as A
from labkit import concepts as CO
from labkit import counterfactual as CF
from labkit import data_attribution as DA

NAN = float("nan")
INF = float("inf")


def _nan_like(t: torch.Tensor, where=0) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[where] = NAN
    return t


# -- shared tiny fixtures ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _linear():
    """A linear 3-class model on 2×3 images and four inputs."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).eval(), torch.rand(4, 1, 2, 3) + 0.1


@functools.lru_cache(maxsize=None)
def _mus():
    torch.manual_seed(0)
    h = A.PixelMLP(16, 8, 3).eval()
    groups = A.patch_groups(4, 2)
    return h, groups, A.MuS(h, 0.25, groups, q=8)


@functools.lru_cache(maxsize=None)
def _cnn():
    torch.manual_seed(0)
    return A.DigitsCNN().eval()


@functools.lru_cache(maxsize=None)
def _credit():
    X, y = CF.make_credit_data(300, seed=0)
    model = CF.fit_logistic(X, y, device="cpu")
    a, c = model.linear_score()
    with torch.no_grad():
        denied = X[model(X).argmax(-1) == 0]
    return X, y, model, a, c, denied


def _bounds_args(**change):
    args = dict(x=torch.tensor([42.0, 3.0]), lower=torch.tensor([10.0, 0.0]), upper=torch.tensor([200.0, 4.0]),
                step=torch.tensor([5.0, 1.0]), mutable=torch.tensor([True, True]), direction=torch.tensor([0, 1]))
    args.update(change)
    return args


@functools.lru_cache(maxsize=None)
def _concept_data():
    return CO.planted_concepts(40, seed=0, device="cpu")


@functools.lru_cache(maxsize=None)
def _blackbox():
    d = _concept_data()
    return CO.train_blackbox(d["X"], d["y"], hidden=8, epochs=5, seed=0)


@functools.lru_cache(maxsize=None)
def _cbm():
    d = _concept_data()
    return CO.train_cbm(d["X"], d["C"], d["y"], mode="joint", epochs=5, seed=0)


@functools.lru_cache(maxsize=None)
def _logreg_task():
    d = DA.digits_pair(1, 7, n_train=40, device="cpu")
    X, y = d["X_train"], d["y_train"]
    theta = DA.fit_logreg(X, y, 1e-2)
    return X, y, theta


def _risk(theta):
    X, y, _ = _logreg_task()
    return DA.objective(DA.logreg_forward, theta, X, y, 1e-2)


F = DA.logreg_forward


# -- labkit.attribution --------------------------------------------------------------------------------------

_attribution = [
    Bad("labkit.attribution.load_digits", "test_size outside (0, 1)", lambda: A.load_digits(test_size=1.5),
        ValueError, "test_size must lie in"),
    Bad("labkit.attribution.load_digits", "seed is a float", lambda: A.load_digits(seed=0.5), TypeError,
        "seed must be an integer"),
    Bad("labkit.attribution.make_pixel_task", "image too small for the planted pixels",
        lambda: A.make_pixel_task(10, size=5), ValueError, "size ≥ 7"),
    Bad("labkit.attribution.make_pixel_task", "n is a float", lambda: A.make_pixel_task(10.5), TypeError,
        "n must be an integer"),
    Bad("labkit.attribution.DigitsCNN", "one class", lambda: A.DigitsCNN(n_classes=1), ValueError, "n_classes"),
    Bad("labkit.attribution.DigitsCNN.features", "images of the wrong size",
        lambda: _cnn().features(torch.rand(2, 1, 6, 6)), ValueError, r"8×8 grey images \[B, 1, 8, 8\]"),
    Bad("labkit.attribution.DigitsCNN.features", "NaN pixels",
        lambda: _cnn().features(_nan_like(torch.rand(2, 1, 8, 8))), ValueError, "x contains NaN"),
    Bad("labkit.attribution.DigitsCNN.decide", "a flat feature vector instead of a grid",
        lambda: _cnn().decide(torch.rand(2, 512)), ValueError, "feats must be 4-D"),
    Bad("labkit.attribution.PixelMLP", "zero hidden units", lambda: A.PixelMLP(64, 0, 2), ValueError, "hidden"),
    Bad("labkit.attribution.train_classifier", "NaN in the training images",
        lambda: A.train_classifier(_linear()[0], _nan_like(torch.rand(8, 1, 2, 3)), torch.zeros(8, dtype=torch.long),
                                   epochs=1, device="cpu"), ValueError, "X contains NaN"),
    Bad("labkit.attribution.train_classifier", "float labels",
        lambda: A.train_classifier(_linear()[0], torch.rand(8, 1, 2, 3), torch.rand(8), epochs=1, device="cpu"),
        ValueError, "class indices"),
    Bad("labkit.attribution.train_classifier", "negative learning rate",
        lambda: A.train_classifier(_linear()[0], torch.rand(8, 1, 2, 3), torch.zeros(8, dtype=torch.long), lr=-1.0,
                                   device="cpu"), ValueError, "lr must lie in"),
    Bad("labkit.attribution.accuracy", "labels for a different number of rows",
        lambda: A.accuracy(_linear()[0], torch.rand(4, 1, 2, 3), torch.zeros(3, dtype=torch.long)), ValueError,
        "one label per row"),
    Bad("labkit.attribution.predict_proba", "batch_size 0",
        lambda: A.predict_proba(_linear()[0], torch.rand(4, 1, 2, 3), batch_size=0), ValueError, "batch_size"),
    Bad("labkit.attribution.attribute", "NaN input (would give a finite saliency map)",
        lambda: A.attribute(_linear()[0], _nan_like(_linear()[1]), 0, "saliency", device="cpu"), ValueError,
        "inputs contains NaN"),
    Bad("labkit.attribution.attribute", "inf input to integrated gradients",
        lambda: A.attribute(_linear()[0], _linear()[1] * INF, 0, "integrated_gradients", device="cpu"), ValueError,
        "inputs contains NaN or inf"),
    Bad("labkit.attribution.attribute", "zero integration steps",
        lambda: A.attribute(_linear()[0], _linear()[1], 0, "integrated_gradients", n_steps=0, device="cpu"),
        ValueError, "n_steps"),
    Bad("labkit.attribution.attribute", "NaN baseline",
        lambda: A.attribute(_linear()[0], _linear()[1], 0, "occlusion", baseline=NAN, device="cpu"), ValueError,
        "baseline must be finite"),
    Bad("labkit.attribution.attribute", "an occlusion window with the wrong number of axes",
        lambda: A.attribute(_linear()[0], _linear()[1], 0, "occlusion", window=(2, 2), device="cpu"), ValueError,
        "window must give one size per input axis"),
    Bad("labkit.attribution.integrated_gradients", "a single integration step (captum needs two points)",
        lambda: A.integrated_gradients(_linear()[0], _linear()[1], 0, n_steps=1, device="cpu"), ValueError, "n_steps"),
    Bad("labkit.attribution.integrated_gradients", "NaN input",
        lambda: A.integrated_gradients(_linear()[0], _nan_like(_linear()[1]), 0, device="cpu"), ValueError,
        "inputs contains NaN"),
    Bad("labkit.attribution.random_attributions", "not a tensor", lambda: A.random_attributions([1.0, 2.0]),
        TypeError, "like must be a torch.Tensor"),
    Bad("labkit.attribution.feature_order", "NaN attributions (their order is arbitrary)",
        lambda: A.feature_order(_nan_like(torch.rand(2, 6))), ValueError, "attributions contains NaN"),
    Bad("labkit.attribution.deletion_curve", "NaN attributions",
        lambda: A.deletion_curve(_linear()[0], _linear()[1], 0, _nan_like(_linear()[1]), device="cpu"), ValueError,
        "attributions contains NaN"),
    Bad("labkit.attribution.deletion_curve", "n_steps beyond the number of features",
        lambda: A.deletion_curve(_linear()[0], _linear()[1], 0, _linear()[1], n_steps=7, device="cpu"), ValueError,
        "n_steps must be between 1 and the number of features"),
    Bad("labkit.attribution.curve_auc", "a NaN on the curve", lambda: A.curve_auc(torch.tensor([1.0, NAN, 0.0])),
        ValueError, "curve contains NaN"),
    Bad("labkit.attribution.curve_auc", "one point", lambda: A.curve_auc(torch.tensor([1.0])), ValueError,
        "at least two points"),
    Bad("labkit.attribution.compactness", "fraction above 1",
        lambda: A.compactness(torch.tensor([[0.0, 0.5, 1.0]]), fraction=1.5), ValueError, "fraction must lie in"),
    Bad("labkit.attribution.precision_at_k", "relevant mask of the wrong size",
        lambda: A.precision_at_k(torch.rand(2, 6), torch.ones(5, dtype=torch.bool)), ValueError, "relevant has 5"),
    Bad("labkit.attribution.precision_at_k", "k larger than the number of features",
        lambda: A.precision_at_k(torch.rand(2, 6), torch.ones(6, dtype=torch.bool), k=10), ValueError, "k must be"),
    Bad("labkit.attribution.infidelity_score", "noise_std 0 (no perturbation)",
        lambda: A.infidelity_score(_linear()[0], _linear()[1], 0, _linear()[1], noise_std=0.0, device="cpu"),
        ValueError, "noise_std must lie in"),
    Bad("labkit.attribution.infidelity_score", "attributions of another shape",
        lambda: A.infidelity_score(_linear()[0], _linear()[1], 0, torch.rand(4, 6), device="cpu"), ValueError,
        "must have the shape of inputs"),
    Bad("labkit.attribution.sensitivity_score", "unknown method",
        lambda: A.sensitivity_score(_linear()[0], _linear()[1], 0, "lime", device="cpu"), ValueError,
        "unknown method"),
    Bad("labkit.attribution.sensitivity_score", "negative radius",
        lambda: A.sensitivity_score(_linear()[0], _linear()[1], 0, "saliency", radius=-0.1, device="cpu"), ValueError,
        "radius must lie in"),
    Bad("labkit.attribution.randomize_layers", "one name as a string (not a list)",
        lambda: A.randomize_layers(_linear()[0], "1"), TypeError, "names must be a list of layer names"),
    Bad("labkit.attribution.rank_correlation", "rows of different lengths",
        lambda: A.rank_correlation(torch.rand(2, 5), torch.rand(2, 6)), ValueError, "same number of rows and features"),
    Bad("labkit.attribution.rank_correlation", "NaN in a map",
        lambda: A.rank_correlation(_nan_like(torch.rand(2, 5)), torch.rand(2, 5)), ValueError, "a contains NaN"),
    Bad("labkit.attribution.cascading_randomization", "unknown method",
        lambda: A.cascading_randomization(_linear()[0], ["1"], _linear()[1], 0, ["lime"], device="cpu"), ValueError,
        "unknown method"),
    Bad("labkit.attribution.patch_groups", "patch 0", lambda: A.patch_groups(8, 0), ValueError, "patch must be"),
    Bad("labkit.attribution.mus_masks", "NaN λ", lambda: A.mus_masks(16, NAN, 64), ValueError, r"λ must be a number"),
    Bad("labkit.attribution.mus_masks", "zero features", lambda: A.mus_masks(0, 0.25, 64), ValueError, "n_features"),
    Bad("labkit.attribution.MuS", "λ above 1", lambda: A.MuS(_mus()[0], 1.5, _mus()[1], q=8), ValueError,
        r"λ must be a number in \(0, 1\]"),
    Bad("labkit.attribution.MuS", "feature ids with a gap",
        lambda: A.MuS(_mus()[0], 0.25, torch.tensor([[0, 0, 2, 2]] * 4), q=8), ValueError, "groups must number"),
    Bad("labkit.attribution.MuS", "a fractional mask α (the certificate is about 0/1 masks)",
        lambda: _mus()[2](torch.rand(1, 1, 4, 4), torch.full((4,), 0.5)), ValueError, "only 0s and 1s"),
    Bad("labkit.attribution.certified_radius", "logits instead of probabilities",
        lambda: A.certified_radius(torch.tensor([[3.0, -1.0, 0.5]]), 0.25), ValueError, "probability vectors"),
    Bad("labkit.attribution.certified_radius", "NaN probabilities",
        lambda: A.certified_radius(torch.tensor([[NAN, 0.5, 0.5]]), 0.25), ValueError, "probs contains NaN"),
    Bad("labkit.attribution.supersets_within", "negative radius",
        lambda: A.supersets_within(torch.tensor([1, 0, 0]), -1), ValueError, "radius must be ≥ 0"),
    Bad("labkit.attribution.supersets_within", "a mask with values other than 0/1",
        lambda: A.supersets_within(torch.tensor([1, 2, 0]), 1), ValueError, "only 0s and 1s"),
    Bad("labkit.attribution.verify_certificate", "a batch of images instead of one",
        lambda: A.verify_certificate(_mus()[2], torch.rand(2, 1, 4, 4), torch.tensor([1, 0, 0, 0]), 1), ValueError,
        r"one image \[1, C, H, W\]"),
    Bad("labkit.attribution.verify_certificate", "classify is not a function",
        lambda: A.verify_certificate("mus", torch.rand(1, 1, 4, 4), torch.tensor([1, 0, 0, 0]), 1), TypeError,
        "classify must be a function"),
    Bad("labkit.attribution.mus_probs_loop", "masks for the wrong number of features",
        lambda: A.mus_probs_loop(_mus()[0], torch.rand(1, 1, 4, 4), torch.ones(8, 5, dtype=torch.bool), _mus()[1]),
        ValueError, "masks must be"),
    Bad("labkit.attribution.masked_classifier", "not a model",
        lambda: A.masked_classifier("mlp", _mus()[1]), TypeError, "model must be a torch.nn.Module"),
    Bad("labkit.attribution.masked_classifier", "float feature ids",
        lambda: A.masked_classifier(_mus()[0], torch.rand(4, 4)), TypeError, "groups must be"),
]

# -- labkit.counterfactual -----------------------------------------------------------------------------------

_counterfactual = [
    Bad("labkit.counterfactual.Feature", "lower above upper", lambda: CF.Feature("income", "k$", 100, 10, 5),
        ValueError, r"lower \(100\) must not exceed upper \(10\)"),
    Bad("labkit.counterfactual.Feature", "direction 2", lambda: CF.Feature("x", "u", 0, 1, 1, direction=2),
        ValueError, "direction must be -1"),
    Bad("labkit.counterfactual.Feature", "step 0", lambda: CF.Feature("x", "u", 0, 1, 0), ValueError,
        "step must be > 0"),
    Bad("labkit.counterfactual.make_credit_data", "n below 10", lambda: CF.make_credit_data(5), ValueError,
        "at least 10"),
    Bad("labkit.counterfactual.TabularModel", "a zero standard deviation",
        lambda: CF.TabularModel(nn.Linear(2, 2), torch.zeros(2), torch.tensor([1.0, 0.0])), ValueError,
        "std must be > 0"),
    Bad("labkit.counterfactual.fit_logistic", "NaN in X",
        lambda: CF.fit_logistic(_nan_like(_credit()[0]), _credit()[1], device="cpu"), ValueError, "X contains NaN"),
    Bad("labkit.counterfactual.fit_logistic", "labels other than 0/1",
        lambda: CF.fit_logistic(_credit()[0], _credit()[1] + 1, device="cpu"), ValueError, "labels 0"),
    Bad("labkit.counterfactual.fit_mlp", "epochs 0",
        lambda: CF.fit_mlp(_credit()[0], _credit()[1], epochs=0, device="cpu"), ValueError, "epochs"),
    Bad("labkit.counterfactual.wachter", "NaN in the applicants",
        lambda: CF.wachter(_credit()[2], _nan_like(_credit()[5][:2]), 1, CF.mad(_credit()[0]), device="cpu"),
        ValueError, "x contains NaN"),
    Bad("labkit.counterfactual.wachter", "a growth factor ≤ 1 (the penalty would never grow)",
        lambda: CF.wachter(_credit()[2], _credit()[5][:2], 1, CF.mad(_credit()[0]), growth=1.0, device="cpu"),
        ValueError, "growth must lie in"),
    Bad("labkit.counterfactual.validity", "a float target",
        lambda: CF.validity(_credit()[2], _credit()[0][:3], 0.5), TypeError, "target must"),
    Bad("labkit.counterfactual.proximity", "NaN in the counterfactual",
        lambda: CF.proximity(torch.zeros(2, 6), _nan_like(torch.zeros(2, 6)), torch.ones(6)), ValueError,
        "x_cf contains NaN"),
    Bad("labkit.counterfactual.proximity", "a zero scale",
        lambda: CF.proximity(torch.zeros(2, 6), torch.ones(2, 6), torch.zeros(6)), ValueError,
        "scale must be 6 positive numbers"),
    Bad("labkit.counterfactual.sparsity", "negative tolerance",
        lambda: CF.sparsity(torch.zeros(2, 6), torch.ones(2, 6), tol=-1.0), ValueError, "tol must lie in"),
    Bad("labkit.counterfactual.mad", "a single row", lambda: CF.mad(torch.ones(1, 6)), ValueError, "at least two rows"),
    Bad("labkit.counterfactual.step_bounds", "lower above upper (an empty range was accepted)",
        lambda: CF.step_bounds(**_bounds_args(lower=torch.tensor([300.0, 0.0]))), ValueError,
        "lower must not exceed upper"),
    Bad("labkit.counterfactual.step_bounds", "NaN in x", lambda: CF.step_bounds(**_bounds_args(x=torch.tensor([NAN, 3.0]))),
        ValueError, "x contains NaN"),
    Bad("labkit.counterfactual.step_bounds", "step 0", lambda: CF.step_bounds(**_bounds_args(step=torch.tensor([0.0, 1.0]))),
        ValueError, "step must be > 0"),
    Bad("labkit.counterfactual.step_bounds", "direction 3",
        lambda: CF.step_bounds(**_bounds_args(direction=torch.tensor([3, 0]))), ValueError, "direction must be"),
    Bad("labkit.counterfactual.step_bounds", "bounds for a different number of features",
        lambda: CF.step_bounds(**_bounds_args(upper=torch.tensor([200.0]))), ValueError,
        "upper must hold one value per feature"),
    Bad("labkit.counterfactual.Recourse", "float steps",
        lambda: CF.Recourse(torch.zeros(6), torch.zeros(6), 1.0), ValueError, "steps must be integers"),
    Bad("labkit.counterfactual.recourse_milp", "NaN in the score's coefficients",
        lambda: CF.recourse_milp(_nan_like(_credit()[3]), _credit()[4], _credit()[5][0]), ValueError,
        "a contains NaN"),
    Bad("labkit.counterfactual.recourse_milp", "a zero cost per step",
        lambda: CF.recourse_milp(_credit()[3], _credit()[4], _credit()[5][0], cost_per_step=torch.zeros(6)),
        ValueError, "cost_per_step must be 6 positive numbers"),
    Bad("labkit.counterfactual.brute_force_recourse", "a grid too large to enumerate",
        lambda: CF.brute_force_recourse(_credit()[3], _credit()[4], _credit()[5][0], max_steps=1000), ValueError,
        "too many to enumerate"),
    Bad("labkit.counterfactual.diverse_recourse", "k = 0", lambda: CF.diverse_recourse(_credit()[3], _credit()[4],
                                                                                       _credit()[5][0], k=0),
        ValueError, "k must be"),
    Bad("labkit.counterfactual.greedy_visual_counterfactual", "NaN pixels in the query",
        lambda: CF.greedy_visual_counterfactual(_cnn(), _nan_like(torch.rand(8, 8)), torch.rand(8, 8), 1, device="cpu"),
        ValueError, "query contains NaN"),
    Bad("labkit.counterfactual.greedy_cell_swaps", "feature grids of different shapes",
        lambda: CF.greedy_cell_swaps(_cnn().decide, torch.rand(32, 4, 4), torch.rand(32, 2, 2), 1), ValueError,
        "same shape"),
    Bad("labkit.counterfactual.greedy_cell_swaps", "target outside the classes",
        lambda: CF.greedy_cell_swaps(_cnn().decide, torch.rand(32, 4, 4), torch.rand(32, 4, 4), 10), ValueError,
        "target must be an integer in"),
    Bad("labkit.counterfactual.min_edits_exhaustive", "max_k too large to enumerate",
        lambda: CF.min_edits_exhaustive(_cnn(), torch.rand(8, 8), torch.rand(8, 8), 1, max_k=9, device="cpu"),
        ValueError, "max_k must be"),
    Bad("labkit.counterfactual.with_bounds", "a single number instead of (lower, upper)",
        lambda: CF.with_bounds(income=40), ValueError, r"income needs a \(lower, upper\) pair"),
    Bad("labkit.counterfactual.with_bounds", "lower above upper", lambda: CF.with_bounds(income=(40, 10)), ValueError,
        "must not exceed upper"),
]

# -- labkit.concepts -----------------------------------------------------------------------------------------

_concepts = [
    Bad("labkit.concepts.label_rule", "concept values other than 0/1",
        lambda: CO.label_rule(torch.full((2, 8), 3.0)), ValueError, r"C must hold values in \[0, 1\]"),
    Bad("labkit.concepts.planted_concepts", "p outside [0, 1]", lambda: CO.planted_concepts(10, p=1.5), ValueError,
        r"p must lie in \[0, 1\]"),
    Bad("labkit.concepts.planted_concepts", "a forced concept index out of range",
        lambda: CO.planted_concepts(10, force={9: 1}), ValueError, "concept index"),
    Bad("labkit.concepts.CBM", "zero concepts", lambda: CO.CBM(100, 0), ValueError, "n_concepts"),
    Bad("labkit.concepts.CBM.concept_probs", "inputs of the wrong width",
        lambda: _cbm().concept_probs(torch.rand(3, 50)), ValueError, "100 features per row"),
    Bad("labkit.concepts.CBM.head", "NaN concepts", lambda: _cbm().head(_nan_like(torch.rand(3, 8))), ValueError,
        "c contains NaN"),
    Bad("labkit.concepts.train_cbm", "NaN inputs",
        lambda: CO.train_cbm(_nan_like(_concept_data()["X"]), _concept_data()["C"], _concept_data()["y"], epochs=1),
        ValueError, "X contains NaN"),
    Bad("labkit.concepts.train_cbm", "negative λ",
        lambda: CO.train_cbm(_concept_data()["X"], _concept_data()["C"], _concept_data()["y"], lam=-1.0, epochs=1),
        ValueError, "lam must lie in"),
    Bad("labkit.concepts.train_blackbox", "labels for a different number of rows",
        lambda: CO.train_blackbox(_concept_data()["X"], _concept_data()["y"][:5], epochs=1), ValueError,
        "one row per input"),
    Bad("labkit.concepts.intervene", "a mask of the wrong length",
        lambda: CO.intervene(torch.rand(2, 3), torch.ones(2, 3), torch.ones(4, dtype=torch.bool)), ValueError,
        "mask must have shape"),
    Bad("labkit.concepts.intervene", "NaN predicted concepts",
        lambda: CO.intervene(_nan_like(torch.rand(2, 3)), torch.ones(2, 3), torch.ones(3, dtype=torch.bool)),
        ValueError, "concept_probs contains NaN"),
    Bad("labkit.concepts.intervention_curve", "not a CBM",
        lambda: CO.intervention_curve(_blackbox(), _concept_data()["X"], _concept_data()["C"], _concept_data()["y"]),
        TypeError, "model must be a CBM"),
    Bad("labkit.concepts.cav", "NaN activations", lambda: CO.cav(_nan_like(torch.rand(5, 3)), torch.rand(5, 3)),
        ValueError, "acts_concept contains NaN"),
    Bad("labkit.concepts.cav", "C ≤ 0", lambda: CO.cav(torch.rand(5, 3), torch.rand(5, 3), C=0.0), ValueError,
        "C .* must be > 0"),
    Bad("labkit.concepts.directional_derivatives", "a zero CAV",
        lambda: CO.directional_derivatives(torch.rand(3, 4), torch.zeros(4)), ValueError, "zero vector"),
    Bad("labkit.concepts.tcav_score", "a zero CAV (returned a score of 0)",
        lambda: CO.tcav_score(torch.rand(3, 4), torch.zeros(4)), ValueError, "zero vector"),
    Bad("labkit.concepts.tcav_score", "NaN gradients", lambda: CO.tcav_score(_nan_like(torch.rand(3, 4)), torch.ones(4)),
        ValueError, "grads contains NaN"),
    Bad("labkit.concepts.tcav_test", "only two random sets (no significance test possible)",
        lambda: CO.tcav_test(torch.rand(5, 4), torch.rand(6, 4), [torch.rand(6, 4)] * 2), ValueError,
        "at least 3 random sets"),
    Bad("labkit.concepts.tcav_test", "activations of another layer (width differs from the gradients)",
        lambda: CO.tcav_test(torch.rand(5, 4), torch.rand(6, 3), [torch.rand(6, 4)] * 3), ValueError,
        "acts_concept has width 3"),
    Bad("labkit.concepts.tcav_significance", "a layer the model does not have",
        lambda: CO.tcav_significance(_blackbox(), "layer9", _concept_data()["X"], {"c": _concept_data()["X"]},
                                     [_concept_data()["X"]] * 4, target=1), ValueError, "layer must name a module"),
    Bad("labkit.concepts.tcav_significance", "target class out of range",
        lambda: CO.tcav_significance(_blackbox(), "layer2", _concept_data()["X"], {"c": _concept_data()["X"]},
                                     [_concept_data()["X"]] * 4, target=5), ValueError, "target must be an integer in"),
    Bad("labkit.concepts.animal_texts", "zero texts per class", lambda: CO.animal_texts(0), ValueError, "n_per_class"),
    Bad("labkit.concepts.label_free_cbm", "a zero embedding (cosine undefined)",
        lambda: CO.label_free_cbm(torch.zeros(4, 8), torch.rand(3, 8), torch.tensor([0, 1, 0, 1])), ValueError,
        "zero vector"),
    Bad("labkit.concepts.label_free_cbm", "one label too few",
        lambda: CO.label_free_cbm(torch.rand(4, 8), torch.rand(3, 8), torch.tensor([0, 1, 0])), ValueError,
        "one integer class per text"),
    Bad("labkit.concepts.output_view", "an unknown output", lambda: CO.output_view(_blackbox(), "probability"),
        ValueError, "output must be 'logit' or 'log_prob'"),
    Bad("labkit.concepts.output_view", "a shift of the wrong width",
        lambda: CO.output_view(_blackbox(), shift=torch.ones(3)), ValueError, "one number per unit of layer2"),
]

# -- labkit.data_attribution ---------------------------------------------------------------------------------

_data_attribution = [
    Bad("labkit.data_attribution.digits_pair", "the same digit twice", lambda: DA.digits_pair(3, 3), ValueError,
        "two different digits"),
    Bad("labkit.data_attribution.digits_pair", "more training points than exist",
        lambda: DA.digits_pair(1, 7, n_train=10_000), ValueError, "n_train=10000 exceeds"),
    Bad("labkit.data_attribution.logreg_forward", "θ of the wrong length",
        lambda: DA.logreg_forward(torch.ones(10), torch.ones(2, 64)), ValueError, "mismatched"),
    Bad("labkit.data_attribution.logreg_forward", "NaN in θ",
        lambda: DA.logreg_forward(_nan_like(torch.ones(65)), torch.ones(2, 64)), ValueError, "theta contains NaN"),
    Bad("labkit.data_attribution.mlp_forward", "X of the wrong width",
        lambda: DA.mlp_forward(DA.mlp_init((4, 3, 1)), torch.ones(2, 5), (4, 3, 1)), ValueError, "mismatched"),
    Bad("labkit.data_attribution.mlp_init", "a layer of width 0", lambda: DA.mlp_init((4, 0, 1)), ValueError,
        r"sizes\[1\]"),
    Bad("labkit.data_attribution.per_example_loss", "forward is not a function",
        lambda: DA.per_example_loss("logreg", torch.ones(65), torch.ones(2, 64), torch.ones(2)), TypeError,
        "forward must be a function"),
    Bad("labkit.data_attribution.per_example_loss", "labels that do not match the rows",
        lambda: DA.per_example_loss(F, torch.ones(65), torch.ones(2, 64), torch.ones(3)), ValueError, "mismatched"),
    Bad("labkit.data_attribution.objective", "negative l2",
        lambda: DA.objective(F, torch.ones(65), torch.ones(2, 64), torch.ones(2), -1.0), ValueError, "l2 must lie in"),
    Bad("labkit.data_attribution.fit_logreg", "float64 data with a NaN",
        lambda: DA.fit_logreg(_nan_like(torch.ones(4, 2, dtype=torch.float64)), torch.ones(4, dtype=torch.float64)),
        ValueError, "X contains NaN"),
    Bad("labkit.data_attribution.fit_logreg", "labels outside [0, 1]",
        lambda: DA.fit_logreg(torch.rand(4, 2), torch.tensor([0.0, 1.0, 2.0, 1.0])), ValueError, r"labels in \[0, 1\]"),
    Bad("labkit.data_attribution.fit_logreg", "negative example weights",
        lambda: DA.fit_logreg(torch.rand(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), weights=-torch.ones(4)),
        ValueError, "weights must be ≥ 0"),
    Bad("labkit.data_attribution.logreg_hessian", "θ for another number of features",
        lambda: DA.logreg_hessian(torch.ones(5), torch.ones(3, 64), 0.01), ValueError, "mismatched"),
    Bad("labkit.data_attribution.hessian_matrix", "θ with NaN",
        lambda: DA.hessian_matrix(_risk, _nan_like(_logreg_task()[2])), ValueError, "theta contains NaN"),
    Bad("labkit.data_attribution.hessian_matrix", "fn is not a function",
        lambda: DA.hessian_matrix(None, torch.ones(3)), TypeError, "fn must be a function"),
    Bad("labkit.data_attribution.hvp_fn", "θ as a matrix", lambda: DA.hvp_fn(_risk, torch.ones(2, 65)), ValueError,
        "theta must be 1-D"),
    Bad("labkit.data_attribution.conjugate_gradient", "NaN in b (returned zeros)",
        lambda: DA.conjugate_gradient(lambda v: v, torch.tensor([1.0, NAN])), ValueError, "b contains NaN"),
    Bad("labkit.data_attribution.conjugate_gradient", "an HVP that returns NaN",
        lambda: DA.conjugate_gradient(lambda v: v * NAN, torch.ones(3)), ValueError, "hvp returned NaN"),
    Bad("labkit.data_attribution.conjugate_gradient", "negative tolerance",
        lambda: DA.conjugate_gradient(lambda v: v, torch.ones(3), tol=-1.0), ValueError, "tol must lie in"),
    Bad("labkit.data_attribution.lissa", "NaN in b", lambda: DA.lissa(lambda v: v, torch.tensor([NAN, 1.0]), scale=2.0),
        ValueError, "b contains NaN"),
    Bad("labkit.data_attribution.lissa", "depth 0", lambda: DA.lissa(lambda v: v, torch.ones(2), scale=2.0, depth=0),
        ValueError, "depth must be"),
    Bad("labkit.data_attribution.inverse_hvp", "negative damping",
        lambda: DA.inverse_hvp(torch.ones(2), hessian=torch.eye(2), damping=-0.5), ValueError, "damping must lie in"),
    Bad("labkit.data_attribution.inverse_hvp", "NaN in the Hessian",
        lambda: DA.inverse_hvp(torch.ones(2), hessian=_nan_like(torch.eye(2))), ValueError, "hessian contains NaN"),
    Bad("labkit.data_attribution.per_example_grads", "labels for fewer rows",
        lambda: DA.per_example_grads(F, torch.ones(65), torch.ones(3, 64), torch.ones(2)), ValueError,
        "one label per row"),
    Bad("labkit.data_attribution.output_grads", "NaN in X",
        lambda: DA.output_grads(F, torch.ones(65), _nan_like(torch.ones(3, 64)), torch.ones(3)), ValueError,
        "X contains NaN"),
    Bad("labkit.data_attribution.influence", "unknown method",
        lambda: DA.influence(torch.ones(4, 2), torch.ones(2), hessian=torch.eye(2), method="newton"), ValueError,
        "unknown method"),
    Bad("labkit.data_attribution.influence", "NaN in the test gradient",
        lambda: DA.influence(torch.ones(4, 2), torch.tensor([NAN, 1.0]), hessian=torch.eye(2)), ValueError,
        "test_grad contains NaN"),
    Bad("labkit.data_attribution.self_influence", "no Hessian",
        lambda: DA.self_influence(torch.ones(4, 2), None), ValueError, "needs the Hessian"),
    Bad("labkit.data_attribution.leave_one_out", "float64 data with float indices",
        lambda: DA.leave_one_out(_logreg_task()[0].double(), _logreg_task()[1].double(), [0.5, 1.0]), TypeError,
        "indices must be integers"),
    Bad("labkit.data_attribution.leave_one_out", "an index out of range",
        lambda: DA.leave_one_out(_logreg_task()[0], _logreg_task()[1], [0, 999]), ValueError, "indices must lie in"),
    Bad("labkit.data_attribution.train_ensemble", "unknown optimizer",
        lambda: DA.train_ensemble(F, torch.zeros(65), torch.ones(3, 64), torch.ones(3), torch.ones(2, 3),
                                  optimizer="sgd"), ValueError, "unknown optimizer"),
    Bad("labkit.data_attribution.train_ensemble", "negative example weights",
        lambda: DA.train_ensemble(F, torch.zeros(65), torch.ones(3, 64), torch.ones(3), -torch.ones(2, 3)),
        ValueError, "weights must be ≥ 0"),
    Bad("labkit.data_attribution.train_loop", "lr 0",
        lambda: DA.train_loop(F, torch.zeros(65), torch.ones(3, 64), torch.ones(3), torch.ones(2, 3), lr=0.0),
        ValueError, "lr must lie in"),
    Bad("labkit.data_attribution.sgd_checkpoints", "batch_size 0",
        lambda: DA.sgd_checkpoints(F, torch.zeros(65), torch.ones(3, 64), torch.ones(3), batch_size=0), ValueError,
        "batch_size must be"),
    Bad("labkit.data_attribution.tracin", "a negative learning rate",
        lambda: DA.tracin(torch.ones(2, 3, 4), torch.ones(2, 4), [0.1, -0.1]), ValueError, "positive, finite"),
    Bad("labkit.data_attribution.tracin", "NaN in a checkpoint's gradients",
        lambda: DA.tracin(_nan_like(torch.ones(2, 3, 4)), torch.ones(2, 4), [0.1, 0.1]), ValueError,
        "train_grads contains NaN"),
    Bad("labkit.data_attribution.random_subsets", "α = 1", lambda: DA.random_subsets(10, 5, alpha=1), ValueError,
        "strictly between 0 and 1"),
    Bad("labkit.data_attribution.random_subsets", "an integer dtype",
        lambda: DA.random_subsets(10, 5, dtype=torch.int64), TypeError, "dtype must be a floating-point"),
    Bad("labkit.data_attribution.fit_datamodels", "NaN outputs",
        lambda: DA.fit_datamodels(torch.ones(5, 3), _nan_like(torch.ones(5, 2))), ValueError, "outputs contains NaN"),
    Bad("labkit.data_attribution.fit_datamodels", "l1 = 0", lambda: DA.fit_datamodels(torch.ones(5, 3), torch.ones(5, 2),
                                                                                       l1=0.0),
        ValueError, "l1 must be > 0"),
    Bad("labkit.data_attribution.lds", "a constant prediction column (Spearman undefined)",
        lambda: DA.lds(torch.ones(6, 1), torch.randn(6, 1)), ValueError, "constant vector has no ranking"),
    Bad("labkit.data_attribution.lds", "NaN outputs", lambda: DA.lds(torch.randn(6, 2), _nan_like(torch.randn(6, 2))),
        ValueError, "actual contains NaN"),
    Bad("labkit.data_attribution.trak", "q of the wrong length",
        lambda: DA.trak(torch.ones(5, 4), torch.ones(2, 4), torch.ones(3)), ValueError, "one weight 1 − p_i"),
    Bad("labkit.data_attribution.trak", "proj_dim 0",
        lambda: DA.trak(torch.ones(5, 4), torch.ones(2, 4), torch.ones(5), proj_dim=0), ValueError, "proj_dim"),
    Bad("labkit.data_attribution.margins", "labels that do not match the rows",
        lambda: DA.margins(F, torch.ones(65), torch.ones(2, 64), torch.ones(3)), ValueError, "mismatched"),
]

CASES = _attribution + _counterfactual + _concepts + _data_attribution
