"""Bad-input cases for the alignment and data modules of notebooks 13-15: labkit.pluralistic, labkit.constitutional,
labkit.datasheet and labkit.widgets. Calls with a parameter receive the session's course model (see tests/bad_input.py).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from bad_input import Bad
from labkit import constitutional as ca
from labkit import dpo
from labkit import datasheet as ds
from labkit import pluralistic as pl
from labkit import widgets

NAN, INF = float("nan"), float("inf")
f64 = dict(dtype=torch.float64)

# a small, valid pluralism problem to spoil one argument at a time
X = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), **f64)
P = torch.tensor([[0, 1], [2, 3], [4, 5], [1, 2]])
Y = torch.tensor([1.0, 0.0, 1.0, 0.0], **f64)
ANN = torch.tensor([0, 0, 1, 1])
W2 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], **f64)
R = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], **f64)
R3 = torch.cat([R, torch.tensor([[0.5, 0.5, 0.5]], **f64)])
REF = torch.full((3,), 1 / 3, **f64)
PRINCIPLE = {"id": "k", "text": "Be kind.", "critique": "Is it unkind?", "revision": "Make it kind."}
VOTES = torch.tensor([[1, -1, 0], [1, 0, 1], [-1, 1, 1], [0, 1, -1]])
RECORDS = [{"text": "a b", "label": "x", "g": "u"}, {"text": "c d", "label": "y", "g": "v"}]


def _sheet():
    return ds.Datasheet("bad-input test")


def _nan_audit():
    records = [{"text": "a"}, {"text": "b"}]
    return ds.audit(records, text_field="text", embeddings=torch.tensor([[1.0, 0.0], [NAN, 1.0]]))


def _save_over_folder():
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "sheet.json"
        folder.mkdir()
        return _sheet().save(folder)


def _load_nan_json():
    text = json.dumps(_sheet().to_dict()).replace('"audit": {}', '"audit": {"x": NaN}')
    return ds.Datasheet.from_json(text)


CASES = [
    # ---------------------------------------------------------------- labkit.pluralistic
    Bad("labkit.pluralistic.simulate_preferences", "a float number of responses",
        lambda: pl.simulate_preferences(n_responses=10.5), TypeError, "n_responses must be an integer"),
    Bad("labkit.pluralistic.simulate_preferences", "cosine NaN",
        lambda: pl.simulate_preferences(cosine=NAN), ValueError, "cosine must be a finite number"),
    Bad("labkit.pluralistic.simulate_preferences", "a group of size 0",
        lambda: pl.simulate_preferences(group_sizes=(10, 0)), ValueError, "group_sizes must be an integer >= 1"),
    Bad("labkit.pluralistic.simulate_preferences", "negative scale",
        lambda: pl.simulate_preferences(scale=-1.0), ValueError, r"scale .* must be > 0"),
    Bad("labkit.pluralistic.all_pairs", "one response: no pairs", lambda: pl.all_pairs(1), ValueError,
        r"n \(the number of responses\) must be an integer >= 2"),
    Bad("labkit.pluralistic.fit_bt", "NaN in the features",
        lambda: pl.fit_bt(torch.full((6, 3), NAN), P, Y), ValueError, "features has NaN"),
    Bad("labkit.pluralistic.fit_bt", "a response compared with itself",
        lambda: pl.fit_bt(X, torch.tensor([[0, 0], [1, 2], [3, 4], [4, 5]]), Y), ValueError, "compare a response with itself"),
    Bad("labkit.pluralistic.fit_bt", "labels that are NaN",
        lambda: pl.fit_bt(X, P, torch.tensor([1.0, NAN, 0.0, 1.0])), ValueError, r"labels must be 1 .* or 0"),
    Bad("labkit.pluralistic.fit_bt", "negative sample weights",
        lambda: pl.fit_bt(X, P, Y, sample_weight=torch.tensor([1.0, -1.0, 1.0, 1.0])), ValueError, "sample_weight must be >= 0"),
    Bad("labkit.pluralistic.fit_bt", "l2 = 0", lambda: pl.fit_bt(X, P, Y, l2=0.0), ValueError, r"l2 .* must be > 0"),
    Bad("labkit.pluralistic.pair_loglik", "weights with the wrong number of features",
        lambda: pl.pair_loglik(torch.ones(2, 5), X, P, Y), ValueError, r"weights must be \[dim\] or \[K, dim\] with dim = 3"),
    Bad("labkit.pluralistic.e_step", "NaN log-likelihoods",
        lambda: pl.e_step(torch.tensor([[NAN, -1.0]]), torch.tensor([0.5, 0.5])), ValueError, "loglik has NaN"),
    Bad("labkit.pluralistic.e_step", "shares that do not sum to one",
        lambda: pl.e_step(torch.zeros(3, 2), torch.tensor([0.5, 0.7])), ValueError, "eta sums to"),
    Bad("labkit.pluralistic.e_step", "one share for two groups",
        lambda: pl.e_step(torch.zeros(3, 2), torch.tensor([1.0])), ValueError, "eta must be one share per group"),
    Bad("labkit.pluralistic.em_rewards", "k = 0 groups",
        lambda: pl.em_rewards(X, P, Y, ANN, k=0), ValueError, r"k \(the number of groups\) must be an integer >= 1"),
    Bad("labkit.pluralistic.em_rewards", "an unknown unit",
        lambda: pl.em_rewards(X, P, Y, ANN, k=2, unit="person"), ValueError, "unit must be 'annotator'"),
    Bad("labkit.pluralistic.em_rewards", "annotator ids with a gap",
        lambda: pl.em_rewards(X, P, Y, torch.tensor([0, 0, 2, 2]), k=2), ValueError, "id 1 has no comparisons"),
    Bad("labkit.pluralistic.em_rewards", "no annotator ids with unit='annotator'",
        lambda: pl.em_rewards(X, P, Y, k=2), ValueError, "annotator .* is needed"),
    Bad("labkit.pluralistic.em_rewards", "n_iter = 0", lambda: pl.em_rewards(X, P, Y, ANN, k=2, n_iter=0), ValueError,
        "n_iter must be an integer >= 1"),
    Bad("labkit.pluralistic.EMResult", "responsibilities that do not sum to one",
        lambda: pl.EMResult(W2, torch.tensor([0.5, 0.5]), torch.tensor([[0.5, 0.2]]), [-1.0]), ValueError, "resp sums to"),
    Bad("labkit.pluralistic.EMResult", "an empty log-likelihood history",
        lambda: pl.EMResult(W2, torch.tensor([0.5, 0.5]), torch.tensor([[0.5, 0.5]]), []), ValueError, "loglik must be a non-empty"),
    Bad("labkit.pluralistic.match_groups", "different lengths",
        lambda: pl.match_groups([0, 1, 1], [0, 1]), ValueError, "one entry per unit each"),
    Bad("labkit.pluralistic.match_groups", "k smaller than the ids",
        lambda: pl.match_groups([0, 1, 2], [0, 1, 2], k=2), ValueError, "k must be at least 3"),
    Bad("labkit.pluralistic.group_accuracy", "NaN in the learned reward",
        lambda: pl.group_accuracy(torch.tensor([NAN, 0.0, 0.0]), W2, X), ValueError, "weights has NaN"),
    Bad("labkit.pluralistic.reward_cosine", "a zero reward (no direction)",
        lambda: pl.reward_cosine(torch.zeros(3), W2), ValueError, "a zero reward has no direction"),
    Bad("labkit.pluralistic.tilted_policy", "beta NaN", lambda: pl.tilted_policy(REF, R[0], NAN), ValueError,
        "beta .* must be a finite number"),
    Bad("labkit.pluralistic.tilted_policy", "a reward per candidate missing",
        lambda: pl.tilted_policy(REF, torch.zeros(2), 1.0), ValueError, r"reward must have one value per candidate \(3\)"),
    Bad("labkit.pluralistic.kl", "q does not sum to one", lambda: pl.kl(REF, torch.tensor([0.5, 0.5, 0.5])), ValueError,
        "q sums to"),
    Bad("labkit.pluralistic.policy_report", "a policy with a negative entry",
        lambda: pl.policy_report(torch.tensor([1.5, -0.5, 0.0]), R, REF), ValueError, "policy has negative"),
    Bad("labkit.pluralistic.utilitarian_policy", "weights for three groups, rewards for two",
        lambda: pl.utilitarian_policy(R, REF, 1.0, weights=[0.2, 0.3, 0.5]), ValueError, r"one share per group \(2\)"),
    Bad("labkit.pluralistic.maxmin_policy", "NaN rewards", lambda: pl.maxmin_policy(torch.full((2, 3), NAN), REF, 1.0),
        ValueError, "rewards has NaN"),
    Bad("labkit.pluralistic.maxmin_policy", "beta = 0", lambda: pl.maxmin_policy(R, REF, 0.0), ValueError, "beta .* must be > 0"),
    Bad("labkit.pluralistic.maxmin_objective", "rewards for the wrong number of candidates",
        lambda: pl.maxmin_objective(REF, torch.zeros(2, 4), REF, 1.0), ValueError, r"\[K groups, n candidates\] with n = 3"),
    Bad("labkit.pluralistic.maxmin_grid", "a reference that does not sum to one",
        lambda: pl.maxmin_grid(R3, torch.tensor([0.5, 0.5, 0.5]), 1.0), ValueError, "ref sums to"),
    Bad("labkit.pluralistic.maxmin_grid", "a grid too fine for 6 groups",
        lambda: pl.maxmin_grid(torch.zeros(6, 3), REF, 1.0, n_grid=101), ValueError, "use maxmin_policy"),
    Bad("labkit.pluralistic.maxmin_grid", "one grid point", lambda: pl.maxmin_grid(R, REF, 1.0, n_grid=1), ValueError,
        "n_grid must be an integer >= 2"),
    Bad("labkit.pluralistic.welfare", "unknown welfare function", lambda: pl.welfare(R.T, "majority"), ValueError,
        "kind must be 'utilitarian'"),
    Bad("labkit.pluralistic.welfare", "NaN utilities", lambda: pl.welfare(torch.tensor([[NAN, 1.0]])), ValueError,
        "utilities has NaN"),
    Bad("labkit.pluralistic.js_distance", "base 1", lambda: pl.js_distance(REF, REF, base=1.0), ValueError, "!= 1"),
    Bad("labkit.pluralistic.js_distance", "NaN in p", lambda: pl.js_distance(torch.tensor([NAN, 1.0]), torch.tensor([0.5, 0.5])),
        ValueError, "p has negative, NaN"),
    Bad("labkit.pluralistic.check_distribution", "infinite entries",
        lambda: pl.check_distribution(torch.tensor([INF, 0.0])), ValueError, "infinite"),
    Bad("labkit.pluralistic.check_distribution", "an empty vector", lambda: pl.check_distribution(torch.zeros(0)),
        ValueError, "empty"),
    Bad("labkit.pluralistic.overton_coverage", "a viewpoint id without statements",
        lambda: pl.overton_coverage(torch.eye(3), torch.eye(3), torch.tensor([0, 0, 2])), ValueError, r"ids \[1\] have none"),
    Bad("labkit.pluralistic.overton_coverage", "NaN in the answers",
        lambda: pl.overton_coverage(torch.full((1, 3), NAN), torch.eye(3), torch.tensor([0, 1, 2])), ValueError,
        "answer_emb has NaN"),
    # ---------------------------------------------------------------- labkit.constitutional
    Bad("labkit.constitutional.validate_constitution", "an empty constitution",
        lambda: ca.validate_constitution({"principles": []}), ValueError, "the constitution is empty"),
    Bad("labkit.constitutional.validate_constitution", "a principle that is not a dict",
        lambda: ca.validate_constitution(["be kind"]), TypeError, "principle 0 must be a dict"),
    Bad("labkit.constitutional.build_prompt", "a principle without requests",
        lambda: ca.build_prompt("Q", "A", {"id": "k"}), ValueError, "principle must be a dict with 'critique'"),
    Bad("labkit.constitutional.build_prompt", "a response that is not text",
        lambda: ca.build_prompt("Q", None, PRINCIPLE), TypeError, "response must be a string"),
    Bad("labkit.constitutional.critique_revision", "one prompt given as a bare string",
        lambda lm: ca.critique_revision(lm, "How do I cheat?", PRINCIPLE), TypeError, "prompts must be a list of strings, not one string"),
    Bad("labkit.constitutional.critique_revision", "zero new tokens",
        lambda lm: ca.critique_revision(lm, ["Q"], PRINCIPLE, max_new_tokens=0), ValueError, "max_new_tokens must be an integer >= 1"),
    Bad("labkit.constitutional.critique_revision", "not a language model",
        lambda: ca.critique_revision("smollm2", ["Q"], PRINCIPLE), TypeError, "lm must be the course's LanguageModel"),
    Bad("labkit.constitutional.yes_probability", "a bare string of questions",
        lambda lm: ca.yes_probability(lm, "Is it safe?"), TypeError, "questions must be a list of strings, not one string"),
    Bad("labkit.constitutional.harmlessness_score", "fewer responses than prompts",
        lambda lm: ca.harmlessness_score(lm, ["Q1", "Q2"], ["A1"]), ValueError, "2 prompts but 1 responses"),
    Bad("labkit.constitutional.helpfulness_score", "a response that is None",
        lambda lm: ca.helpfulness_score(lm, ["Q1"], [None]), TypeError, r"responses\[0\] is a NoneType"),
    Bad("labkit.constitutional.bootstrap_ci", "n_boot = 0", lambda: ca.bootstrap_ci([0.1, 0.2, 0.3], n_boot=0), ValueError,
        r"n_boot \(the number of bootstrap resamples\) must be an integer >= 100"),
    Bad("labkit.constitutional.bootstrap_ci", "NaN among the values", lambda: ca.bootstrap_ci([0.1, NAN, 0.3]), ValueError,
        "values has NaN"),
    Bad("labkit.constitutional.bootstrap_ci", "level 95 instead of 0.95", lambda: ca.bootstrap_ci([0.1, 0.2], level=95),
        ValueError, r"level must be a number in \(0, 1\)"),
    Bad("labkit.constitutional.judge_ab", "no pairs", lambda lm: ca.judge_ab(lm, [], [], []), ValueError,
        "same, non-zero length"),
    Bad("labkit.constitutional.judge_ab", "criteria that are not text",
        lambda lm: ca.judge_ab(lm, ["Q"], ["A"], ["B"], criterion=[3]), TypeError, r"criterion\[0\] is a int"),
    Bad("labkit.constitutional.judge_report", "a probability above 1",
        lambda: ca.judge_report([0.9, 1.7], [0.2, 0.3]), ValueError, r"p_ab must hold probabilities in \[0, 1\]"),
    Bad("labkit.constitutional.judge_report", "the two orders of different lengths",
        lambda: ca.judge_report([0.9, 0.7], [0.2]), ValueError, "both orders of the same pairs"),
    Bad("labkit.constitutional.length_bias", "NaN probabilities",
        lambda: ca.length_bias([NAN], [0.5]), ValueError, "p_long_first must hold probabilities"),
    Bad("labkit.constitutional.simulate_votes", "shares that do not sum to one",
        lambda: ca.simulate_votes({**ca.load_public_statements(), "shares": [0.5, 0.5, 0.5]}), ValueError,
        "shares'\\] must be group shares >= 0 that sum to 1"),
    Bad("labkit.constitutional.simulate_votes", "no participants", lambda: ca.simulate_votes(n_participants=0), ValueError,
        "n_participants must be an integer >= 1"),
    Bad("labkit.constitutional.check_votes", "a vote of 2", lambda: ca.check_votes(torch.tensor([[1, 2]])), ValueError,
        "unknown vote values"),
    Bad("labkit.constitutional.check_votes", "one row, not a matrix", lambda: ca.check_votes(torch.tensor([1, 0, -1])),
        ValueError, r"\[participants, statements\] matrix"),
    Bad("labkit.constitutional.opinion_groups", "more groups than participants",
        lambda: ca.opinion_groups(VOTES, k=9), ValueError, "k must be between 1 and the number of participants"),
    Bad("labkit.constitutional.group_consensus", "fractional group ids",
        lambda: ca.group_consensus(VOTES, torch.tensor([0.0, 0.5, 1.0, 1.0])), ValueError, "integer group ids"),
    Bad("labkit.constitutional.deduplicate", "NaN embeddings",
        lambda: ca.deduplicate(torch.tensor([[NAN, 1.0], [1.0, 0.0]]), [1.0, 0.5]), ValueError, "embeddings has NaN"),
    Bad("labkit.constitutional.deduplicate", "threshold NaN",
        lambda: ca.deduplicate(torch.eye(2), [1.0, 0.5], threshold=NAN), ValueError, r"threshold is a cosine similarity"),
    Bad("labkit.constitutional.deduplicate", "NaN scores",
        lambda: ca.deduplicate(torch.eye(2), [1.0, NAN]), ValueError, "scores has NaN"),
    Bad("labkit.constitutional.make_constitution", "one statement as a bare string",
        lambda: ca.make_constitution("Be kind."), TypeError, "texts must be a list of strings, not one string"),
    # ---------------------------------------------------------------- labkit.datasheet
    Bad("labkit.datasheet.question_ids", "sections that are not the question set",
        lambda: ds.question_ids([{"title": "x"}]), TypeError, "sections must be a list of sections"),
    Bad("labkit.datasheet.Datasheet", "a blank name", lambda: ds.Datasheet("  "), ValueError, "a datasheet needs a name"),
    Bad("labkit.datasheet.Datasheet", "an audit with NaN (not JSON)",
        lambda: ds.Datasheet("x", audit={"imbalance": NAN}), ValueError, "audit holds NaN or infinity"),
    Bad("labkit.datasheet.Datasheet", "a name with a lone surrogate", lambda: ds.Datasheet("data\udcff"), ValueError,
        "lone surrogate"),
    Bad("labkit.datasheet.Datasheet.question", "an unknown question id", lambda: _sheet().question("purpose"),
        ds.DatasheetError, "unknown question id 'purpose'.*Did you mean"),
    Bad("labkit.datasheet.Datasheet.answer", "an answer with a lone surrogate",
        lambda: _sheet().answer("motivation.purpose", "caf\udce9"), ValueError, "lone surrogate"),
    Bad("labkit.datasheet.Datasheet.answer", "a number as the answer",
        lambda: _sheet().answer("composition.count", 12), TypeError, "an answer is a string"),
    Bad("labkit.datasheet.Datasheet.is_answered", "a question id that is not a string",
        lambda: _sheet().is_answered(3), TypeError, "a question id is a string"),
    Bad("labkit.datasheet.Datasheet.prefill", "not an audit result", lambda: _sheet().prefill(["n_records", 3]), TypeError,
        "audit_result must be the dict that audit\\(\\) returns"),
    Bad("labkit.datasheet.Datasheet.prefill", "a draft for an unknown question",
        lambda: _sheet().prefill({"n_records": 1}, answers={"composition.size": "1"}), ds.DatasheetError,
        "unknown question id 'composition.size'"),
    Bad("labkit.datasheet.Datasheet.completeness", "about_people as a string",
        lambda: _sheet().completeness(about_people="no"), TypeError, "about_people must be True or False"),
    Bad("labkit.datasheet.Datasheet.completeness_table", "about_people as a number",
        lambda: _sheet().completeness_table(about_people=0), TypeError, "about_people must be True or False"),
    Bad("labkit.datasheet.Datasheet.from_dict", "not a datasheet", lambda: ds.Datasheet.from_dict([1, 2]), ds.DatasheetError,
        "is not a labkit datasheet"),
    Bad("labkit.datasheet.Datasheet.from_json", "bare NaN in the JSON text", _load_nan_json, ds.DatasheetError,
        "not strict JSON: it contains a bare NaN"),
    Bad("labkit.datasheet.Datasheet.from_json", "bytes instead of text", lambda: ds.Datasheet.from_json(b"{}"), TypeError,
        "text must be the JSON text"),
    Bad("labkit.datasheet.Datasheet.save", "a .txt file", lambda: _sheet().save("sheet.txt"), ValueError,
        r"save to a \.json file .* or a \.md file"),
    Bad("labkit.datasheet.Datasheet.save", "overwrite as a string", lambda: _sheet().save("sheet.json", overwrite="yes"),
        TypeError, "overwrite must be True or False"),
    Bad("labkit.datasheet.Datasheet.save", "a folder named like a file", _save_over_folder, IsADirectoryError, "is a folder"),
    Bad("labkit.datasheet.Datasheet.load", "the Markdown export",
        lambda: ds.Datasheet.load(ds.shipped_path("corpus", ".md")), ds.DatasheetError, "Markdown export"),
    Bad("labkit.datasheet.Datasheet.load", "a number as the path", lambda: ds.Datasheet.load(3), TypeError,
        "path must be a file path"),
    Bad("labkit.datasheet.missing_values", "one column as a bare string",
        lambda: ds.missing_values(RECORDS, columns="text"), TypeError, "columns must be a list, not one string"),
    Bad("labkit.datasheet.missing_values", "a dict of columns instead of records",
        lambda: ds.missing_values({"a": [1, 2]}), TypeError, "records must be a list of dicts"),
    Bad("labkit.datasheet.exact_duplicates", "one text instead of a list", lambda: ds.exact_duplicates("aab"), TypeError,
        "texts must be a list, not one string"),
    Bad("labkit.datasheet.exact_duplicates", "a number among the texts", lambda: ds.exact_duplicates(["a", 3]), TypeError,
        r"texts\[1\] is a int"),
    Bad("labkit.datasheet.embed_texts", "a None among the texts", lambda: ds.embed_texts(["a", None]), TypeError,
        r"texts\[1\] is a NoneType"),
    Bad("labkit.datasheet.embed_texts", "max_tokens = 0", lambda: ds.embed_texts(["a"], max_tokens=0), ValueError,
        "max_tokens must be an integer >= 1"),
    Bad("labkit.datasheet.near_duplicate_pairs", "NaN embeddings",
        lambda: ds.near_duplicate_pairs(torch.tensor([[1.0, 0.0], [NAN, 1.0], [1.0, 0.0]]), 0.9), ValueError,
        r"embeddings has NaN or infinite entries \(rows \[1\]"),
    Bad("labkit.datasheet.near_duplicate_pairs", "an all-zero embedding",
        lambda: ds.near_duplicate_pairs(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 0.9), ValueError, "all-zero rows"),
    Bad("labkit.datasheet.near_duplicate_pairs", "block = 0",
        lambda: ds.near_duplicate_pairs(torch.eye(3), 0.9, block=0), ValueError, "block must be an integer >= 1"),
    Bad("labkit.datasheet.label_balance", "one label string", lambda: ds.label_balance("positive"), TypeError,
        "labels must be a list, not one string"),
    Bad("labkit.datasheet.label_balance", "unhashable labels", lambda: ds.label_balance([["a"], ["b"]]), TypeError,
        "labels must be hashable"),
    Bad("labkit.datasheet.subpopulation_stats", "a column that no record has",
        lambda: ds.subpopulation_stats(RECORDS, "age"), KeyError, "no record has the column 'age'"),
    Bad("labkit.datasheet.subpopulation_stats", "a group field that is not a name",
        lambda: ds.subpopulation_stats(RECORDS, ["g"]), TypeError, "group_field must be a column name"),
    Bad("labkit.datasheet.sensitive_columns", "max_scan = 0", lambda: ds.sensitive_columns(RECORDS, max_scan=0), ValueError,
        "max_scan must be an integer >= 1"),
    Bad("labkit.datasheet.sensitive_mentions", "one text instead of a list", lambda: ds.sensitive_mentions("She prayed."),
        TypeError, "texts must be a list, not one string"),
    Bad("labkit.datasheet.audit", "no records", lambda: ds.audit([]), ValueError, "nothing to audit"),
    Bad("labkit.datasheet.audit", "NaN embeddings (the near-duplicate check would find nothing)", _nan_audit, ValueError,
        "embeddings has NaN"),
    Bad("labkit.datasheet.audit", "group_fields as a bare string",
        lambda: ds.audit(RECORDS, group_fields="g"), TypeError, "group_fields must be a list, not one string"),
    Bad("labkit.datasheet.audit", "near_threshold above 1",
        lambda: ds.audit(RECORDS, text_field="text", near_threshold=1.5), ValueError, r"near_threshold is a cosine similarity"),
    Bad("labkit.datasheet.audit_answers", "not an audit result", lambda: ds.audit_answers({"n": 3}), ValueError,
        r"result must be what audit\(\) returns"),
    Bad("labkit.datasheet.toy_dataset", "a float seed", lambda: ds.toy_dataset(seed=0.5), TypeError, "seed must be an integer"),
    Bad("labkit.datasheet.course_records", "an unknown dataset", lambda: ds.course_records("imagenet"), ValueError,
        "unknown course dataset 'imagenet'"),
    Bad("labkit.datasheet.shipped_path", "a path instead of a name", lambda: ds.shipped_path("../questions"), ValueError,
        "name must be a datasheet name"),
    Bad("labkit.datasheet.shipped_path", "an unknown suffix", lambda: ds.shipped_path("corpus", ".txt"), ValueError,
        "suffix must be '.json' or '.md'"),
    Bad("labkit.datasheet.load_shipped", "an unknown datasheet", lambda: ds.load_shipped("imagenet"), FileNotFoundError,
        r"no shipped datasheet 'imagenet'; shipped: \['corpus'"),
    # ---------------------------------------------------------------- labkit.widgets
    Bad("labkit.widgets.datasheet_form", "a dict instead of a Datasheet", lambda: widgets.datasheet_form({"answers": {}}),
        TypeError, "edits a labkit.datasheet.Datasheet"),
    Bad("labkit.widgets.datasheet_form", "rows = 0", lambda: widgets.datasheet_form(_sheet(), rows=0), ValueError,
        "rows .* must be an integer >= 1"),
    Bad("labkit.widgets.DatasheetForm", "about_people as a string",
        lambda: widgets.DatasheetForm(_sheet(), about_people="yes"), TypeError, "about_people must be True or False"),
    # ---------------------------------------------------------------- issue 17: the "implement it yourself" exercises
    Bad("labkit.dpo.dpo_step", "a learning rate of 0",
        lambda: dpo.dpo_step(torch.zeros(3), dpo.bandit_as_sequences(3)[2], *dpo.bandit_as_sequences(3)[:2],
                             torch.tensor([0]), torch.tensor([1]), torch.zeros(3), 0.1, 0.0), ValueError, "lr must be a positive"),
    Bad("labkit.dpo.dpo_step", "a response index out of range",
        lambda: dpo.dpo_step(torch.zeros(3), dpo.bandit_as_sequences(3)[2], *dpo.bandit_as_sequences(3)[:2],
                             torch.tensor([0]), torch.tensor([3]), torch.zeros(3), 0.1, 1.0), ValueError, "rejected must hold response indices"),
    Bad("labkit.dpo.dpo_step", "logits_fn that is not a function",
        lambda: dpo.dpo_step(torch.zeros(3), None, *dpo.bandit_as_sequences(3)[:2],
                             torch.tensor([0]), torch.tensor([1]), torch.zeros(3), 0.1, 1.0), TypeError, "logits_fn must be a function"),
    Bad("labkit.dpo.bandit_as_sequences", "one answer: nothing to compare",
        lambda: dpo.bandit_as_sequences(1), ValueError, "k must be at least 2"),
    Bad("labkit.pluralistic.em_rewards", "initial responsibilities of the wrong shape",
        lambda: pl.em_rewards(X, P, Y, ANN, k=2, n_iter=1, init=torch.full((3, 2), 0.5, **f64)), ValueError,
        r"init must be \[2 annotators, 2 groups\]"),
    Bad("labkit.pluralistic.em_rewards", "initial responsibilities that do not sum to one",
        lambda: pl.em_rewards(X, P, Y, ANN, k=2, n_iter=1, init=torch.full((2, 2), 0.3, **f64)), ValueError, "init"),
    Bad("labkit.constitutional.clean_reply", "a list instead of one reply",
        lambda: ca.clean_reply(["a", "b"]), TypeError, "text must be a string"),
    Bad("labkit.datasheet.label_gaps", "a threshold above 1",
        lambda: ds.label_gaps(RECORDS, "g", "label", 1.5), ValueError, "threshold must be a number between 0 and 1"),
    Bad("labkit.datasheet.label_gaps", "no labels at all",
        lambda: ds.label_gaps([{"g": "u"}, {"g": "v", "label": None}], "g", "label"), ValueError, "no record has a label"),
    Bad("labkit.datasheet.label_gaps", "no label field",
        lambda: ds.label_gaps(RECORDS, "g", None), (TypeError, ValueError), "label_field"),
]

EXEMPT = {
    "labkit.datasheet.is_missing": "any Python value is a valid input: it answers whether that value counts as missing",
}
