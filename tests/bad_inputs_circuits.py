"""Bad-input cases for labkit.circuits (induction heads, IOI, path patching) and the engine's given source
activations. A call with a parameter receives the session's course model (see tests/bad_input.py)."""

from __future__ import annotations

import torch
from bad_input import Bad

from labkit import circuits as C
from labkit.lm import interventions as I

_pat = torch.rand(2, 1, 3, 9, 9).softmax(-1)
_ids = torch.tensor([[1, 5, 6, 5, 6]])


def _group(lm):
    return C.ioi_dataset(lm, n=1, templates=C.IOI_TEMPLATES[:1], orders=["ABBA"])[0]


def _readout(lm):
    g = _group(lm)
    return g, I.logratio_readout(g["io"], g["s"])


def _path(lm, fn=C.path_patching, **kw):
    g, readout = _readout(lm)
    args = {"senders": [(3, 1)], "receivers": [(9, 2)], "readout": readout}
    args.update(kw)
    return fn(lm, g["clean_ids"], g["corrupt_ids"], **args)


CASES = [
    Bad("labkit.circuits.repeated_tokens", "source a string", lambda: C.repeated_tokens("smollm", 2, 5), TypeError,
        "source must be a labkit LanguageModel or a vocabulary size"),
    Bad("labkit.circuits.repeated_tokens", "length 0", lambda: C.repeated_tokens(100, 2, 0), ValueError,
        "length must be an integer >= 1"),
    Bad("labkit.circuits.repeated_tokens", "bos outside the vocabulary", lambda: C.repeated_tokens(100, 2, 3, bos=100),
        ValueError, "bos must be None or a token id in 0-99"),
    Bad("labkit.circuits.document_start", "not a tokenizer", lambda: C.document_start("gpt2"), AttributeError,
        "get_vocab"),
    Bad("labkit.circuits.per_token_loss", "one token", lambda lm: C.per_token_loss(lm, torch.tensor([[5]])), ValueError,
        "at least 2 tokens"),
    Bad("labkit.circuits.per_token_loss", "float ids", lambda lm: C.per_token_loss(lm, torch.ones(1, 4)), TypeError,
        "integer token ids"),
    Bad("labkit.circuits.repeat_halves", "period too long", lambda: C.repeat_halves(torch.rand(2, 8), 5), ValueError,
        r"period 5 does not fit"),
    Bad("labkit.circuits.repeat_halves", "a 1-D loss", lambda: C.repeat_halves(torch.rand(8), 2), ValueError,
        r"loss must be a \[batch, seq − 1\]"),
    Bad("labkit.circuits.attention_patterns", "layer out of range", lambda lm: C.attention_patterns(lm, _ids, layers=[30]),
        ValueError, "layers must be a non-empty list of layer indices in 0-29"),
    Bad("labkit.circuits.attention_patterns", "ids 1-D", lambda lm: C.attention_patterns(lm, torch.tensor([1, 2])),
        ValueError, r"ids must be a non-empty \[batch, seq\] tensor"),
    Bad("labkit.circuits.induction_scores", "not square", lambda: C.induction_scores(torch.rand(1, 1, 2, 9, 8), 4),
        ValueError, "query = key length"),
    Bad("labkit.circuits.induction_scores", "period 0", lambda: C.induction_scores(_pat, 0), ValueError,
        "period must be an integer >= 1"),
    Bad("labkit.circuits.previous_token_scores", "start past the end", lambda: C.previous_token_scores(_pat, start=9),
        ValueError, "leaves no query position"),
    Bad("labkit.circuits.previous_token_scores", "integer patterns",
        lambda: C.previous_token_scores(torch.ones(1, 1, 2, 4, 4, dtype=torch.long)), TypeError, "floating-point"),
    Bad("labkit.circuits.duplicate_token_scores", "period too long", lambda: C.duplicate_token_scores(_pat, 5), ValueError,
        "does not fit"),
    Bad("labkit.circuits.top_heads", "k 0", lambda: C.top_heads(torch.rand(3, 4), k=0), ValueError,
        "k must be an integer >= 1"),
    Bad("labkit.circuits.top_heads", "NaN scores", lambda: C.top_heads(torch.tensor([[float("nan"), 1.0]])), ValueError,
        "NaN"),
    Bad("labkit.circuits.head_means", "empty ids", lambda lm: C.head_means(lm, torch.zeros(0, 3, dtype=torch.long)),
        ValueError, "non-empty"),
    Bad("labkit.circuits.repeat_loss_readout", "period too long", lambda: C.repeat_loss_readout(_ids, 3), ValueError,
        "does not fit"),
    Bad("labkit.circuits.logprob_readout", "float targets", lambda: C.logprob_readout(torch.tensor([1.5])), ValueError,
        "targets must be a non-empty 1-D tensor of token ids"),
    Bad("labkit.circuits.ablate_heads", "no head sets",
        lambda lm: C.ablate_heads(lm, _ids, [], C.repeat_loss_readout(_ids, 2)), ValueError, "head_sets must be a non-empty"),
    Bad("labkit.circuits.ablate_heads", "head out of range",
        lambda lm: C.ablate_heads(lm, _ids, [[(2, 9)]], C.repeat_loss_readout(_ids, 2)), ValueError,
        r"head \(2, 9\) in head_sets is out of range"),
    Bad("labkit.circuits.ablate_heads", "means of another length",
        lambda lm: C.ablate_heads(lm, _ids, [[(2, 1)]], C.repeat_loss_readout(_ids, 2),
                                  means={"head.2": torch.zeros(1, 3, 9, 64)}), ValueError, r"means\['head.2'\] must be"),
    Bad("labkit.circuits.single_token_names", "one string", lambda lm: C.single_token_names(lm, "Mary"), ValueError,
        "names must be a non-empty list"),
    Bad("labkit.circuits.ioi_dataset", "a name of several tokens",
        lambda lm: C.ioi_dataset(lm, names=["Mary", "John", "Tom", "Dan", "Sid", "Bartholomew"]), ValueError,
        r"\['Bartholomew'\] are not one token"),
    Bad("labkit.circuits.ioi_dataset", "template without {S}", lambda lm: C.ioi_dataset(lm, templates=["{A} and {B} went"]),
        ValueError, r"with \{A\}, \{B\} and \{S\} once each"),
    Bad("labkit.circuits.ioi_dataset", "unknown order", lambda lm: C.ioi_dataset(lm, orders=["ABAB"]), ValueError,
        "orders must be a list of 'ABBA'"),
    Bad("labkit.circuits.ioi_performance", "no groups", lambda lm: C.ioi_performance(lm, []), ValueError,
        "groups must be a non-empty list"),
    Bad("labkit.circuits.ioi_performance", "a group without ids", lambda lm: C.ioi_performance(lm, [{"io": 1}]), TypeError,
        "one group of ioi_dataset"),
    Bad("labkit.circuits.head_patching", "unknown position", lambda lm: C.head_patching(lm, _group(lm), positions=["S3"]),
        ValueError, r"unknown positions \['S3'\]"),
    Bad("labkit.circuits.head_patching", "empty heads", lambda lm: C.head_patching(lm, _group(lm), heads=[]), ValueError,
        "heads must not be empty"),
    Bad("labkit.circuits.ioi_readout", "not a group", lambda: C.ioi_readout([1, 2]), TypeError, "one group of ioi_dataset"),
    Bad("labkit.circuits.head_attribution", "positions a string", lambda lm: C.head_attribution(lm, _group(lm), positions="END"),
        ValueError, "positions must be a non-empty list of names"),
    Bad("labkit.circuits.compare_estimates", "shapes differ", lambda: C.compare_estimates(torch.rand(4), torch.rand(5)),
        ValueError, "one shape with at least 2 entries"),
    Bad("labkit.circuits.compare_estimates", "NaN", lambda: C.compare_estimates(torch.tensor([1.0, float("nan")]), torch.rand(2)),
        ValueError, "must be finite"),
    Bad("labkit.circuits.path_patching", "unknown receiver input", lambda lm: _path(lm, via="o"), ValueError,
        "via must be 'q', 'k', 'v'"),
    Bad("labkit.circuits.path_patching", "no senders", lambda lm: _path(lm, senders=[]), ValueError,
        "senders must be a non-empty list of heads"),
    Bad("labkit.circuits.path_patching", "receiver position past the end", lambda lm: _path(lm, receiver_positions=[99]),
        ValueError, "receiver_positions must be positions"),
    Bad("labkit.circuits.path_patching", "corrupted prompts of another length",
        lambda lm: C.path_patching(lm, _ids, _ids[:, :3], [(3, 1)], [(9, 2)], I.logit_diff_readout(3, 7)), ValueError,
        "clean_ids and corrupt_ids differ in shape"),
    Bad("labkit.circuits.path_patching", "batch_size 0", lambda lm: _path(lm, batch_size=0), ValueError,
        "batch_size must be an integer >= 1"),
    Bad("labkit.circuits.path_patching_naive", "receiver head out of range",
        lambda lm: _path(lm, C.path_patching_naive, receivers=[(30, 0)]), ValueError, r"head \(30, 0\) in receivers"),
    Bad("labkit.circuits.path_patching_naive", "readout not callable",
        lambda lm: _path(lm, C.path_patching_naive, readout="logit diff"), TypeError, "readout must be a function"),
    Bad("labkit.circuits.edge_attribution", "unknown receiver input", lambda lm: _path(lm, C.edge_attribution, via="z"),
        ValueError, "via must be 'q', 'k', 'v'"),
    Bad("labkit.circuits.edge_attribution", "sender head out of range",
        lambda lm: _path(lm, C.edge_attribution, senders=[(3, 9)]), ValueError, r"head \(3, 9\) in senders"),
    Bad("labkit.circuits.edge_attribution", "receiver position past the end",
        lambda lm: _path(lm, C.edge_attribution, receiver_positions=[99]), ValueError,
        "receiver_positions must be positions"),
    Bad("labkit.circuits.edge_attribution", "corrupted prompts of another length",
        lambda lm: C.edge_attribution(lm, _ids, _ids[:, :3], [(3, 1)], [(9, 2)], I.logit_diff_readout(3, 7)), ValueError,
        "clean_ids and corrupt_ids differ in shape"),
    Bad("labkit.circuits.circuit_faithfulness", "circuit of strings",
        lambda lm: C.circuit_faithfulness(lm, _group(lm), ["9.1"]), TypeError, r"circuit must be \(layer, head\) pairs"),
    Bad("labkit.circuits.minimality", "empty circuit", lambda lm: C.minimality(lm, _group(lm), []), ValueError,
        "circuit must not be empty"),
    Bad("labkit.circuits.minimality", "remove not a dict", lambda lm: C.minimality(lm, _group(lm), [(9, 1)], remove=[(9, 1)]),
        TypeError, "remove must be a dict"),
    Bad("labkit.lm.interventions.run_interventions", "given source activations miss a site",
        lambda lm: I.run_interventions(lm, _ids, {"head.3": torch.zeros(1, 5, 9, 64)}, [[("head.4", (slice(None), 0))]],
                                       I.logit_diff_readout(3, 7)), KeyError, "no source activation for 'head.4'"),
    Bad("labkit.lm.interventions.run_interventions", "given source activations with the wrong batch",
        lambda lm: I.run_interventions(lm, _ids, {"head.3": torch.zeros(2, 5, 9, 64)}, [[("head.3", (slice(None), 0))]],
                                       I.logit_diff_readout(3, 7)), ValueError, "batch axis of 1"),
]
