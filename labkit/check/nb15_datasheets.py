"""Checks for the exercises of notebook 15 · Datasheets for datasets."""

from __future__ import annotations

import math
from typing import Callable

import torch

from ._machinery import Case, Exercise

__all__ = ["missing_values", "near_duplicate_pairs", "label_gaps"]


# --------------------------------------------------------------------------------------------------
# missing_values(records, columns=None) -> {column: count}


def _missing_reference(records, columns=None):
    from labkit.datasheet import missing_values

    return missing_values(records, columns)


def _missing_cases() -> list[Case]:
    nan = float("nan")
    mixed = [
        {"id": 1, "text": "fine", "score": 0, "flag": False, "city": "Oslo"},
        {"id": 2, "text": "", "score": nan, "flag": True, "city": None},
        {"id": 3, "text": "   ", "score": 2.5, "flag": False},  # no "city" key at all
        {"id": 4, "text": "also fine", "score": None, "flag": None, "city": "0"},
        {"id": 5, "text": "x", "score": 0.0, "flag": True, "city": "Lima", "note": "only here"},
    ]
    return [
        Case("5 records mixing None, NaN, '', '   ', absent keys, and the values 0, 0.0, False and '0'", (mixed,)),
        Case("columns given explicitly, one that no record has", (mixed, ["text", "city", "age"])),
        Case("a column that first appears in a later record", ([{"a": 1}, {"a": 2, "b": None}, {"a": None, "b": "x"}],)),
        Case("an empty dataset", ([],)),
    ]


def _missing_mistakes() -> dict[str, Callable]:
    def columns_of(records, columns):
        if columns is not None:
            return list(columns)
        seen = {}
        for r in records:
            for k in r:
                seen.setdefault(k, None)
        return list(seen)

    def falsy(records, columns=None):
        return {c: sum(1 for r in records if not r.get(c)) for c in columns_of(records, columns)}

    def no_nan(records, columns=None):
        return {c: sum(1 for r in records if r.get(c) is None or (isinstance(r.get(c), str) and not r[c].strip()))
                for c in columns_of(records, columns)}

    def no_blank(records, columns=None):
        def miss(v):
            return v is None or v == "" or (isinstance(v, float) and math.isnan(v))
        return {c: sum(1 for r in records if miss(r.get(c))) for c in columns_of(records, columns)}

    def only_none(records, columns=None):
        return {c: sum(1 for r in records if r.get(c) is None) for c in columns_of(records, columns)}

    def present_only(records, columns=None):
        ref = _missing_reference(records, columns)
        return {c: n - sum(1 for r in records if c not in r) for c, n in ref.items()}

    def first_record_columns(records, columns=None):
        if columns is None:
            columns = list(records[0]) if records else []
        return _missing_reference(records, columns)

    return {
        "0, 0.0 and False are values, not missing ones: test for None, NaN and blank strings explicitly instead of "
        "`not value`.": falsy,
        "a string of spaces is blank too: test `not value.strip()`, not `value == ''`.": no_blank,
        "NaN marks a missing number: check `isinstance(v, float) and math.isnan(v)` (NaN == NaN is False).": no_nan,
        "None is not the only missing value: NaN and blank strings are missing too.": only_none,
        "a record that lacks the column altogether is missing it too: count absent keys (use `c not in r`).": present_only,
        "with columns=None, use every column seen in ANY record (in order of first appearance), not only the first "
        "record's.": first_record_columns,
    }


missing_values = Exercise("missing_values", _missing_reference, _missing_cases(), _missing_mistakes())
missing_values.__doc__ = "Check ``missing_values(records, columns=None)``: missing values per column."


# --------------------------------------------------------------------------------------------------
# near_duplicate_pairs(embeddings, threshold) -> [(i, j), ...]


def _near_reference(embeddings, threshold):
    from labkit.datasheet import near_duplicate_pairs

    return near_duplicate_pairs(embeddings, threshold)


def _near_cases() -> list[Case]:
    g = torch.Generator().manual_seed(15)
    base = torch.randn(6, 16, generator=g)
    planted = base.clone()
    planted[4] = 3.0 * base[1] + 0.05 * torch.randn(16, generator=g)  # a near copy of row 1, three times as long
    planted[5] = 0.5 * base[2]  # an exact copy of row 2's direction, half as long
    return [
        Case("6 random vectors with two planted near copies of different lengths, threshold 0.9", (planted, 0.9)),
        Case("a pair exactly at the threshold: cos([1, 0], [3, 4]) = 0.6, threshold 0.6", (torch.tensor([[1.0, 0.0], [3.0, 4.0], [-1.0, 0.0]]), 0.6)),
        Case("no near duplicates at all (orthogonal rows)", (torch.eye(4), 0.5)),
        Case("a single vector", (torch.ones(1, 3), 0.9)),
        Case("four copies of one direction: every pair once", (torch.tensor([[1.0, 2.0]] * 2 + [[2.0, 4.0]] * 2), 0.99)),
    ]


def _near_mistakes() -> dict[str, Callable]:
    def dot(e, t):
        s = e @ e.T
        n = e.shape[0]
        return [(i, j) for i in range(n) for j in range(i + 1, n) if s[i, j] >= t]

    def with_self(e, t):
        e = torch.nn.functional.normalize(e, dim=-1)
        s = e @ e.T
        n = e.shape[0]
        return [(i, j) for i in range(n) for j in range(i, n) if s[i, j] >= t]

    def both_orders(e, t):
        e = torch.nn.functional.normalize(e, dim=-1)
        s = e @ e.T
        n = e.shape[0]
        return [(i, j) for i in range(n) for j in range(n) if i != j and s[i, j] >= t]

    def strict(e, t):
        e = torch.nn.functional.normalize(e, dim=-1)
        s = e @ e.T
        n = e.shape[0]
        return [(i, j) for i in range(n) for j in range(i + 1, n) if s[i, j] > t]

    return {
        "cosine similarity needs unit vectors: normalise each row (torch.nn.functional.normalize) before the dot "
        "product.": dot,
        "a text is not a near duplicate of itself: leave out the diagonal (keep i < j).": with_self,
        "report each pair once, as (i, j) with i < j, not also as (j, i).": both_orders,
        "the threshold is inclusive: a pair with similarity exactly equal to it counts (use >=).": strict,
    }


near_duplicate_pairs = Exercise("near_duplicate_pairs", _near_reference, _near_cases(), _near_mistakes())
near_duplicate_pairs.__doc__ = "Check ``near_duplicate_pairs(embeddings, threshold)``: pairs i < j with cosine ≥ threshold."


# -- label_gaps ------------------------------------------------------------------------------------


def _gaps_reference(records, group_field, label_field, threshold=0.2):
    from labkit.datasheet import label_gaps

    return label_gaps(records, group_field, label_field, threshold)


def _gaps_cases() -> list[Case]:
    from labkit.datasheet import toy_dataset

    records, _ = toy_dataset()
    exact = ([{"g": "a", "y": "x"}] * 3 + [{"g": "a", "y": "z"}] + [{"g": "b", "y": "x"}] * 1 + [{"g": "b", "y": "z"}] * 3)
    # overall share of x = 4/8 = 0.5; in a: 0.75 (gap 0.25 exactly), in b: 0.25 (gap 0.25)
    three = ([{"g": "u", "y": 1}] * 4 + [{"g": "u", "y": 2}] * 2 + [{"g": "v", "y": 3}] * 3 + [{"g": "w", "y": 1}]
             + [{"g": "w", "y": 2}] + [{"g": None, "y": 3}] + [{"y": 1}] + [{"g": "u", "y": None}] * 4 + [{"g": "v", "y": " "}])
    return [
        Case("the notebook's toy reviews by age group, threshold 0.1", (records, "age_group", "label", 0.1)),
        Case("the toy reviews, threshold 0.05", (records, "age_group", "label", 0.05)),
        Case("gaps of exactly 0.25 at threshold 0.25 (≥ counts)", (exact, "g", "y", 0.25)),
        Case("three labels, a label absent from a group, missing groups and missing labels", (three, "g", "y", 0.2)),
    ]


def _gaps_mistakes() -> dict[str, Callable]:
    from collections import Counter

    from labkit.datasheet import is_missing

    def gaps(records, gf, lf, threshold=0.2, keep_missing_labels=False, mean_of_groups=False, only_present=False,
             strict=False, drop_missing_groups=False):
        rows = records if keep_missing_labels else [r for r in records if not is_missing(r.get(lf))]
        if drop_missing_groups:
            rows = [r for r in rows if not is_missing(r.get(gf))]
        key = lambda r: "(missing)" if is_missing(r.get(gf)) else str(r.get(gf))  # noqa: E731
        lab = lambda r: str(r.get(lf))  # noqa: E731
        overall = Counter(lab(r) for r in rows if not is_missing(r.get(lf)))
        groups: dict = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        n_all = len(rows)
        if mean_of_groups:
            base = {k: sum(Counter(lab(r) for r in g)[k] / len(g) for g in groups.values()) / len(groups) for k in overall}
        else:
            base = {k: overall[k] / n_all for k in overall}
        out = []
        for g, rs in groups.items():
            c = Counter(lab(r) for r in rs)
            for k in overall:
                if only_present and c[k] == 0:
                    continue
                share = c[k] / len(rs)
                gap = abs(share - base[k])
                if (gap > threshold) if strict else (gap >= threshold):
                    out.append((g, k, share, base[k]))
        return sorted(out, key=lambda t: (-abs(t[2] - t[3]), t[0], t[1]))

    return {
        "leave out records whose label is missing (None, NaN, blank): they belong to no label's share.":
            lambda *a: gaps(*a, keep_missing_labels=True),
        "the overall share p_k counts every labelled record, n_k / n — not the average of the groups' shares.":
            lambda *a: gaps(*a, mean_of_groups=True),
        "a label that never occurs in a group has share 0 there — compare it too.":
            lambda *a: gaps(*a, only_present=True),
        "report gaps of AT LEAST the threshold (≥), not only larger ones.":
            lambda *a: gaps(*a, strict=True),
        "records with a missing group value form the group '(missing)'; do not drop them.":
            lambda *a: gaps(*a, drop_missing_groups=True),
    }


label_gaps = Exercise("label_gaps", _gaps_reference, _gaps_cases(), _gaps_mistakes())
label_gaps.__doc__ = ("Check ``label_gaps(records, group_field, label_field, threshold)``: groups whose label shares differ "
                      "from the whole dataset's by at least the threshold.")
