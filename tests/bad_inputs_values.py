"""Bad-input cases for group C's modules: labkit.bias, labkit.values, labkit.preference, labkit.dpo.

Each case calls one public callable with one bad argument and names the error and the message it must give
(run by tests/test_bad_input.py). Cases that need the language model load a private copy lazily (LoraDPO adds
an adapter to the model it is given, so the session's shared model is never handed to it).
"""

from __future__ import annotations

import functools

import torch

from bad_input import Bad
from labkit import bias, dpo, preference, values

NAN, INF = float("nan"), float("inf")
T = torch.tensor


@functools.lru_cache(maxsize=1)
def _lm():
    from labkit.lm import load_lm

    return load_lm(device="cpu")  # a private copy: the trainer below adds a LoRA adapter to it


@functools.lru_cache(maxsize=1)
def _trainer():
    lm = _lm()
    p = lm.chat_prompt("Describe the sea in one short sentence.")
    return dpo.LoraDPO(lm, [p] * 3, ["The sea is calm.", "A grey sea.", "Waves."], n_lora_layers=1, device="cpu")


@functools.lru_cache(maxsize=1)
def _mlp():
    X, y = bias.simplicity_data(40, seed=0)
    return bias.train_mlp(X, y, hidden=4, steps=2, device="cpu")[0]


def _sets(n=4, d=5):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, d, generator=g) for _ in range(4)]


X4, Y4, A4, B4 = _sets()
LP3 = torch.log_softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(1)), -1)
RESP = [{"prompt_id": 0, "prompt": "p", "system": "s", "response": t} for t in ("happy", "sad")]

CASES = [
    # ---------------------------------------------------------------------------------------- bias
    Bad("labkit.bias.simplicity_data", "n = 1", lambda: bias.simplicity_data(1), ValueError, "n must be at least 2"),
    Bad("labkit.bias.simplicity_data", "margin ≥ 1/3 leaves no slab", lambda: bias.simplicity_data(10, margin=0.5), ValueError, "margin"),
    Bad("labkit.bias.simplicity_data", "n as a float", lambda: bias.simplicity_data(10.5), TypeError, "n must be an integer"),
    Bad("labkit.bias.shortcut_digits", "correlation NaN", lambda: bias.shortcut_digits(NAN), ValueError, "correlation must be a finite"),
    Bad("labkit.bias.shortcut_digits", "patch larger than the image", lambda: bias.shortcut_digits(0.9, patch=9), ValueError, "patch must be at most 8"),
    Bad("labkit.bias.train_mlp", "NaN in X", lambda: bias.train_mlp(T([[NAN, 0.0], [1.0, 1.0]]), T([0, 1])), ValueError, "X contains NaN"),
    Bad("labkit.bias.train_mlp", "fractional labels", lambda: bias.train_mlp(torch.zeros(2, 2), T([0.5, 1.0])), ValueError, "integer class labels"),
    Bad("labkit.bias.train_mlp", "negative learning rate", lambda: bias.train_mlp(torch.zeros(2, 2), T([0, 1]), lr=-1.0), ValueError, "lr must be >"),
    Bad("labkit.bias.train_mlp", "all weights zero", lambda: bias.train_mlp(torch.zeros(2, 2), T([0, 1]), weights=torch.zeros(2)), ValueError, "weights must be one non-negative"),
    Bad("labkit.bias.train_mlp", "monitor set of another width", lambda: bias.train_mlp(torch.zeros(2, 2), T([0, 1]), monitor={"m": (torch.zeros(2, 3), T([0, 1]))}), ValueError, "monitor"),
    Bad("labkit.bias.accuracy", "X of the wrong width", lambda: bias.accuracy(_mlp(), torch.zeros(3, 5), T([0, 1, 0])), ValueError, "model expects 2"),
    Bad("labkit.bias.accuracy", "not a model", lambda: bias.accuracy("mlp", torch.zeros(3, 2), T([0, 1, 0])), TypeError, "model must be a torch.nn.Module"),
    Bad("labkit.bias.hidden_features", "inf in X", lambda: bias.hidden_features(_mlp(), T([[INF, 0.0]])), ValueError, "X contains infinite"),
    Bad("labkit.bias.group_weights", "different lengths", lambda: bias.group_weights(T([0, 1]), T([0, 1, 1])), ValueError, "same length"),
    Bad("labkit.bias.group_weights", "negative group ids", lambda: bias.group_weights(T([0, 1]), T([-1, 0])), ValueError, "groups must hold non-negative"),
    Bad("labkit.bias.last_layer_retrain", "three classes for a binary head", lambda: bias.last_layer_retrain(_mlp(), torch.zeros(6, 2), T([0, 1, 2, 0, 1, 2]), T([0, 1, 0, 1, 0, 1])), ValueError, "binary head"),
    Bad("labkit.bias.last_layer_retrain", "C = 0", lambda: bias.last_layer_retrain(_mlp(), torch.zeros(4, 2), T([0, 1, 0, 1]), T([0, 0, 1, 1]), C=0.0), ValueError, "C must be >"),
    Bad("labkit.bias.embed", "not an embedder", lambda: bias.embed(None, ["rose"]), TypeError, "embedder must be a sentence embedder"),
    Bad("labkit.bias.association", "NaN embedding", lambda: bias.association(T([[NAN, 1.0]]), A4[:, :2], B4[:, :2]), ValueError, "W contains NaN"),
    Bad("labkit.bias.association", "all-zero embedding", lambda: bias.association(torch.zeros(1, 5), A4, B4), ValueError, "all-zero embedding"),
    Bad("labkit.bias.association", "a 1-D tensor", lambda: bias.association(torch.ones(5), A4, B4), TypeError, "2-D tensor"),
    Bad("labkit.bias.weat_effect_size", "target sets of unequal size", lambda: bias.weat_effect_size(X4, Y4[:3], A4, B4), ValueError, "equal size"),
    Bad("labkit.bias.weat_effect_size", "identical words: no spread", lambda: bias.weat_effect_size(X4[:1].repeat(2, 1), X4[:1].repeat(2, 1), A4, B4), ValueError, "no spread"),
    Bad("labkit.bias.permutation_p_value", "NaN score", lambda: bias.permutation_p_value(T([NAN, 1.0]), T([0.0, 1.0])), ValueError, "s_x contains NaN"),
    Bad("labkit.bias.permutation_p_value", "n_permutations = 0 when sampling", lambda: bias.permutation_p_value(torch.ones(3), torch.zeros(3), n_permutations=0, exact_limit=0), ValueError, "n_permutations must be at least 1"),
    Bad("labkit.bias.weat_null_effect_sizes", "unequal sets", lambda: bias.weat_null_effect_sizes(torch.randn(3), torch.randn(4)), ValueError, "equal size"),
    Bad("labkit.bias.weat_null_effect_sizes", "constant scores", lambda: bias.weat_null_effect_sizes(torch.ones(3), torch.ones(3)), ValueError, "no spread"),
    Bad("labkit.bias.weat", "inf in an attribute set", lambda: bias.weat(X4, Y4, T([[INF] * 5]), B4), ValueError, "A contains infinite"),
    Bad("labkit.bias.seat_test", "sentences not a multiple of n_templates", lambda: bias.seat_test(X4, Y4, A4, B4, 3), ValueError, "not a multiple of n_templates"),
    Bad("labkit.bias.seat_test", "n_templates 0", lambda: bias.seat_test(X4, Y4, A4, B4, 0), ValueError, "n_templates must be at least 1"),
    Bad("labkit.bias.seat_sentences", "a template with two slots", lambda: bias.seat_sentences(["rose"], ["{} is {}."]), ValueError, "exactly one"),
    Bad("labkit.bias.seat_sentences", "one string instead of a word list", lambda: bias.seat_sentences("rose", ["This is {}."]), TypeError, "not one string"),
    Bad("labkit.bias.seat_sentences", "no words", lambda: bias.seat_sentences([], ["This is {}."]), ValueError, "no words"),
    Bad("labkit.bias.minimal_pair_scores", "not a language model", lambda: bias.minimal_pair_scores("smollm", [{"more": "a", "less": "b", "continuation": "c"}]), TypeError, "lm must be a labkit LanguageModel"),
    Bad("labkit.bias.minimal_pair_scores", "a pair that is not a dict", lambda: bias.minimal_pair_scores(_lm(), ["a pair"]), TypeError, "every pair must be a dict"),
    Bad("labkit.bias.mc_prompts", "template without {options}", lambda: bias.mc_prompts("Q?", ["a", "b"], ["A", "B"], template="Q: {question}"), ValueError, "template must be"),
    Bad("labkit.bias.mc_prompts", "duplicate letters", lambda: bias.mc_prompts("Q?", ["a", "b"], ["A", "A"]), ValueError, "letters have duplicates"),
    Bad("labkit.bias.position_bias", "NaN log-probability", lambda: bias.position_bias(T([[NAN, 0.0, 0.0]])), ValueError, "letter_logprobs contains NaN"),
    Bad("labkit.bias.position_bias", "one letter only", lambda: bias.position_bias(torch.zeros(4, 1)), ValueError, "at least two letters"),
    Bad("labkit.bias.label_bias", "a row of −inf", lambda: bias.label_bias(T([[-INF, -INF]])), ValueError, "every letter"),
    Bad("labkit.bias.contextual_calibration", "content-free letters of another count", lambda: bias.contextual_calibration(LP3, torch.zeros(2, 4)), ValueError, "content_free_logprobs has 4 letters"),
    Bad("labkit.bias.contextual_calibration", "+inf content-free log-probability", lambda: bias.contextual_calibration(LP3, T([[INF, 0.0, 0.0]])), ValueError, "content_free_logprobs contains infinite"),
    Bad("labkit.bias.domain_context_texts", "no texts", lambda: bias.domain_context_texts([]), ValueError, "no texts given"),
    Bad("labkit.bias.domain_context_texts", "length 0", lambda: bias.domain_context_texts(["a b"], length=0), ValueError, "length must be at least 1"),
    Bad("labkit.bias.domain_context_calibration", "a letter never chosen on the domain texts", lambda: bias.domain_context_calibration(LP3, T([[0.0, -INF, 0.0]])), ValueError, "probability 0"),
    # -------------------------------------------------------------------------------------- values
    Bad("labkit.values.likert_prompts", "a variant without {options}", lambda: values.likert_prompts(["S."], ["{statement}"], [None]), ValueError, "needs '{statement}' and '{options}'"),
    Bad("labkit.values.likert_prompts", "reverse as a string", lambda: values.likert_prompts(["S."], ["{statement} {options}"], [None], reverse="yes"), TypeError, "reverse must be one bool"),
    Bad("labkit.values.choice_logprobs", "not a language model", lambda: values.choice_logprobs(None, ["Q?"]), TypeError, "lm must be a labkit LanguageModel"),
    Bad("labkit.values.choice_logprobs", "one letter only", lambda: values.choice_logprobs(_lm(), ["Q?"], ["A"]), ValueError, "at least two answer options"),
    Bad("labkit.values.likert_logprobs", "batch_size 0", lambda: values.likert_logprobs(_lm(), ["Q?"], batch_size=0), ValueError, "batch_size must be at least 1"),
    Bad("labkit.values.to_scale_order", "reverse flags that do not broadcast", lambda: values.to_scale_order(torch.zeros(3, 4), torch.tensor([True, False])), ValueError, "does not broadcast"),
    Bad("labkit.values.to_scale_order", "NaN log-probabilities", lambda: values.to_scale_order(T([[NAN, 0.0, 0.0, 0.0]]), True), ValueError, "option_logprobs contains NaN"),
    Bad("labkit.values.calibrate", "NaN content-free estimate", lambda: values.calibrate(torch.zeros(2, 4), T([NAN, 0.0, 0.0, 0.0])), ValueError, "content_free_logprobs contains NaN"),
    Bad("labkit.values.letter_shares", "empty table", lambda: values.letter_shares(torch.zeros(0, 4)), ValueError, "option_logprobs is empty"),
    Bad("labkit.values.stance_scores", "scores with inf", lambda: values.stance_scores(torch.zeros(4), [-1.0, 0.0, 1.0, INF]), ValueError, "scores contains infinite"),
    Bad("labkit.values.stance_scores", "4 options, 3 scores", lambda: values.stance_scores(torch.zeros(4), [-1.0, 0.0, 1.0]), ValueError, "4 options but 3 scores"),
    Bad("labkit.values.open_stance", "not a string", lambda: values.open_stance(None), TypeError, "text must be a string"),
    Bad("labkit.values.variance_decomposition", "NaN stance", lambda: values.variance_decomposition(torch.full((2, 2, 2), NAN)), ValueError, "y contains NaN"),
    Bad("labkit.values.variance_decomposition", "a 2-D table", lambda: values.variance_decomposition(torch.randn(3, 3)), ValueError, r"\[propositions, variants, personas\]"),
    Bad("labkit.values.persona_permutation_test", "n_permutations 0", lambda: values.persona_permutation_test(torch.randn(2, 2, 2), n_permutations=0), ValueError, "n_permutations must be at least 1"),
    Bad("labkit.values.persona_permutation_test", "one persona", lambda: values.persona_permutation_test(torch.randn(2, 2, 1)), ValueError, "at least two personas"),
    Bad("labkit.values.cluster_texts", "k larger than the number of texts", lambda: values.cluster_texts(torch.randn(3, 4), 5), ValueError, "k must lie between"),
    Bad("labkit.values.cluster_texts", "an all-zero embedding", lambda: values.cluster_texts(torch.zeros(3, 4), 2), ValueError, "all-zero row"),
    Bad("labkit.values.pairwise_prompts", "template without {b}", lambda: values.pairwise_prompts(["x", "y"], "A) {a}"), ValueError, "needs '{a}' and '{b}'"),
    Bad("labkit.values.pairwise_prompts", "one outcome", lambda: values.pairwise_prompts(["x"], "{a} {b}"), ValueError, "at least two outcomes"),
    Bad("labkit.values.preference_matrix", "probability above 1", lambda: values.preference_matrix(T([1.5, 0.5]), [(0, 1), (1, 0)], 2), ValueError, r"probabilities in \[0, 1\]"),
    Bad("labkit.values.preference_matrix", "index out of range", lambda: values.preference_matrix(T([0.5]), [(0, 3)], 2), ValueError, "different indices"),
    Bad("labkit.values.preference_matrix", "fewer probabilities than pairs", lambda: values.preference_matrix(T([0.5]), [(0, 1), (1, 0)], 2), ValueError, "one per shown pair"),
    Bad("labkit.values.fit_bradley_terry", "infinite wins", lambda: values.fit_bradley_terry(T([[0.0, INF], [1.0, 0.0]])), ValueError, "wins contains infinite"),
    Bad("labkit.values.fit_bradley_terry", "max_iter 0", lambda: values.fit_bradley_terry(torch.ones(2, 2), max_iter=0), ValueError, "max_iter must be at least 1"),
    Bad("labkit.values.bradley_terry_probs", "NaN utility", lambda: values.bradley_terry_probs(T([0.0, NAN])), ValueError, "u contains NaN"),
    Bad("labkit.values.cyclic_triads", "not a preference matrix", lambda: values.cyclic_triads(torch.full((3, 3), 0.9)), ValueError, r"P\[i, j\] \+ P\[j, i\] = 1"),
    Bad("labkit.values.cyclic_triads", "not square", lambda: values.cyclic_triads(torch.full((3, 4), 0.5)), ValueError, "square"),
    # ---------------------------------------------------------------------------------- preference
    Bad("labkit.preference.true_reward", "a response that is not text", lambda: preference.true_reward(["fine", 3]), TypeError, "responses must be strings"),
    Bad("labkit.preference.true_reward", "negative length penalty", lambda: preference.true_reward("hi", length_penalty=-1.0), ValueError, "length_penalty must be ≥ 0"),
    Bad("labkit.preference.lexicon_words", "a list instead of one response", lambda: preference.lexicon_words(["happy"]), TypeError, "response must be one string"),
    Bad("labkit.preference.n_words", "one string instead of a list", lambda: preference.n_words("two words"), TypeError, "not one string"),
    Bad("labkit.preference.load_responses", "a path that is not a path", lambda: preference.load_responses(42), TypeError, "path must be a file path"),
    Bad("labkit.preference.load_responses", "a missing file", lambda: preference.load_responses("/nonexistent/responses.jsonl.gz"), FileNotFoundError, "build_preferences"),
    Bad("labkit.preference.sample_bt_labels", "NaN reward", lambda: preference.sample_bt_labels(T([NAN]), T([0.0])), ValueError, "r_a contains NaN"),
    Bad("labkit.preference.make_pairs", "rows without the needed fields", lambda: preference.make_pairs([{"response": "hi"}]), ValueError, "must be a dict with prompt_id"),
    Bad("labkit.preference.make_pairs", "one dict instead of a list", lambda: preference.make_pairs(RESP[0]), TypeError, "list of response dicts"),
    Bad("labkit.preference.load_preference_data", "seed as a string", lambda: preference.load_preference_data(seed="0"), TypeError, "seed must be an integer"),
    Bad("labkit.preference.bt_loss", "NaN reward", lambda: preference.bt_loss(T([NAN, 0.0]), T([0.0, 0.0])), ValueError, "chosen contains NaN"),
    Bad("labkit.preference.bt_loss", "mismatched shapes", lambda: preference.bt_loss(torch.zeros(2), torch.zeros(3)), ValueError, "same shape"),
    Bad("labkit.preference.train_reward_model", "NaN feature", lambda: preference.train_reward_model(T([[NAN, 0.0]]), T([[0.0, 0.0]])), ValueError, "feat_chosen contains NaN"),
    Bad("labkit.preference.train_reward_model", "max_iter 0", lambda: preference.train_reward_model(torch.ones(2, 2), torch.zeros(2, 2), max_iter=0), ValueError, "max_iter must be a positive integer"),
    Bad("labkit.preference.reward_model_step", "w of the wrong length", lambda: preference.reward_model_step(torch.zeros(3), torch.zeros(4, 2), torch.zeros(4, 2), 1.0), ValueError, "dim = len"),
    Bad("labkit.preference.reward_model_step", "negative learning rate", lambda: preference.reward_model_step(torch.zeros(2), torch.zeros(4, 2), torch.zeros(4, 2), -1.0), ValueError, "lr must be > 0"),
    Bad("labkit.preference.reward_model_step", "NaN feature", lambda: preference.reward_model_step(torch.zeros(2), T([[NAN, 0.0]]), T([[0.0, 0.0]]), 1.0), ValueError, "feat_chosen contains NaN"),
    Bad("labkit.preference.preference_accuracy", "inf reward", lambda: preference.preference_accuracy(T([INF]), T([0.0])), ValueError, "chosen contains infinite"),
    Bad("labkit.preference.noise_ceiling", "empty", lambda: preference.noise_ceiling(torch.zeros(0), torch.zeros(0)), ValueError, "empty batch"),
    Bad("labkit.preference.kl_regularised_policy", "NaN reward", lambda: preference.kl_regularised_policy(torch.zeros(3), T([0.0, NAN, 1.0]), 1.0), ValueError, "rewards contains NaN"),
    Bad("labkit.preference.kl_regularised_policy", "β = 0", lambda: preference.kl_regularised_policy(torch.zeros(3), torch.zeros(3), 0.0), ValueError, "beta must be a positive"),
    Bad("labkit.preference.kl_divergence", "NaN probability", lambda: preference.kl_divergence(T([NAN, 1.0]), T([0.5, 0.5])), ValueError, "p contains NaN"),
    Bad("labkit.preference.best_of_n_policy", "a reference that sums to 1.5", lambda: preference.best_of_n_policy(T([0.0, 1.0, 2.0]), 2, T([0.5, 0.5, 0.5])), ValueError, "sum to one"),
    Bad("labkit.preference.best_of_n_policy", "n = True", lambda: preference.best_of_n_policy(torch.zeros(3), True), TypeError, "n must be a positive integer"),
    Bad("labkit.preference.best_of_n_policy", "NaN reward", lambda: preference.best_of_n_policy(T([0.0, NAN]), 2), ValueError, "rewards contains NaN"),
    Bad("labkit.preference.best_of_n_kl", "n = 2.5", lambda: preference.best_of_n_kl(2.5), TypeError, "n must be a positive integer"),
    Bad("labkit.preference.policy_curve", "no betas", lambda: preference.policy_curve(torch.zeros(3), torch.zeros(3), {}, []), ValueError, "betas must be a non-empty"),
    Bad("labkit.preference.policy_curve", "an evaluated reward of another shape", lambda: preference.policy_curve(torch.zeros(3), torch.zeros(3), {"r": torch.zeros(4)}, [1.0]), ValueError, r"evaluated\['r'\]"),
    Bad("labkit.preference.embed_responses", "a blank response", lambda: preference.embed_responses(["fine", "  "]), ValueError, "non-empty strings"),
    # ----------------------------------------------------------------------------------------- dpo
    Bad("labkit.dpo.implicit_rewards", "NaN log-probability", lambda: dpo.implicit_rewards(T([NAN]), T([0.0]), 0.1), ValueError, "policy_logps contains NaN"),
    Bad("labkit.dpo.implicit_rewards", "β negative", lambda: dpo.implicit_rewards(T([0.0]), T([0.0]), -0.1), ValueError, "beta must be a positive"),
    Bad("labkit.dpo.dpo_loss", "−inf log-probability", lambda: dpo.dpo_loss(T([-INF]), T([-1.0]), T([-1.0]), T([-1.0])), ValueError, "policy_chosen contains infinite"),
    Bad("labkit.dpo.dpo_loss", "unknown reduction", lambda: dpo.dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), reduction="sum"), ValueError, "reduction must be"),
    Bad("labkit.dpo.sequence_logprobs", "token id outside the vocabulary", lambda: dpo.sequence_logprobs(torch.zeros(1, 3, 5), T([[0, 1, 7]]), T([[0, 1, 1]])), ValueError, r"input_ids must lie in \[0, 4\]"),
    Bad("labkit.dpo.sequence_logprobs", "a mask that scores position 0", lambda: dpo.sequence_logprobs(torch.zeros(1, 3, 5), T([[0, 1, 2]]), T([[1, 1, 1]])), ValueError, "must be 0 at position 0"),
    Bad("labkit.dpo.sequence_logprobs", "float token ids", lambda: dpo.sequence_logprobs(torch.zeros(1, 3, 5), T([[0.0, 1.0, 2.0]]), T([[0, 1, 1]])), TypeError, "integer token ids"),
    Bad("labkit.dpo.tabular_dpo", "NaN reward", lambda: dpo.tabular_dpo(T([0.5, 0.5]), T([NAN, 0.0]), 1.0), ValueError, "rewards contains NaN"),
    Bad("labkit.dpo.tabular_dpo", "steps 0", lambda: dpo.tabular_dpo(T([0.5, 0.5]), torch.zeros(2), 1.0, steps=0), ValueError, "steps must be at least 1"),
    Bad("labkit.dpo.ches_score", "masks of the wrong shape", lambda: dpo.ches_score(torch.ones(1, 3, 2), torch.ones(1, 3, 2), torch.ones(1, 4)), ValueError, r"mask_chosen must be \[B, T\]"),
    Bad("labkit.dpo.ches_score", "NaN hidden state", lambda: dpo.ches_score(torch.full((1, 2, 2), NAN), torch.ones(1, 2, 2)), ValueError, "h_chosen contains NaN"),
    Bad("labkit.dpo.ranking_accuracy", "NaN log-probability", lambda: dpo.ranking_accuracy(T([NAN]), T([0.0])), ValueError, "logp_chosen contains NaN"),
    Bad("labkit.dpo.idealised_ranking_accuracy", "mismatched lengths", lambda: dpo.idealised_ranking_accuracy(torch.zeros(2), torch.zeros(2), torch.zeros(3), torch.zeros(2), 0.1), ValueError, "mismatched batch sizes"),
    Bad("labkit.dpo.encode_responses", "not a language model", lambda: dpo.encode_responses("smollm", ["p"], ["r"]), TypeError, "lm must be a labkit LanguageModel"),
    Bad("labkit.dpo.encode_responses", "an empty response", lambda: dpo.encode_responses(_lm(), ["p"], [""]), ValueError, "empty response"),
    Bad("labkit.dpo.LoraDPO", "rank 0", lambda: dpo.LoraDPO(_lm(), ["p"], ["r"], rank=0, device="cpu"), ValueError, "rank must be at least 1"),
    Bad("labkit.dpo.LoraDPO", "not a language model", lambda: dpo.LoraDPO(object(), ["p"], ["r"]), TypeError, "lm must be a labkit LanguageModel"),
    Bad("labkit.dpo.LoraDPO.logps", "an index past the responses", lambda: _trainer().logps(T([0, 3])), ValueError, "between 0 and 2"),
    Bad("labkit.dpo.LoraDPO.token_kl", "float indices", lambda: _trainer().token_kl(T([0.0])), TypeError, "integer response indices"),
    Bad("labkit.dpo.LoraDPO.train", "negative learning rate", lambda: _trainer().train(T([0]), T([1]), lr=-1e-3, progress=False), ValueError, "lr must be a positive"),
    Bad("labkit.dpo.LoraDPO.train", "a negative pair index", lambda: _trainer().train(T([-1]), T([1]), progress=False), ValueError, "between 0 and 2"),
    Bad("labkit.dpo.LoraDPO.ches", "an index past the responses", lambda: _trainer().ches(T([0]), T([5])), ValueError, "between 0 and 2"),
    Bad("labkit.dpo.LoraDPO.generate", "max_new_tokens 0", lambda: _trainer().generate(["p"], max_new_tokens=0), ValueError, "max_new_tokens must be at least 1"),
    Bad("labkit.dpo.LoraDPO.generate", "one string instead of a list", lambda: _trainer().generate("p"), TypeError, "not one string"),
]
