"""Build the shipped annotations of a planted annotator for notebook 12's "your own preferences" section.

Run from the repository root::

    python -m tools.build_planted_annotations           # rewrite labkit/data/preference_annotations_planted.json
    python -m tools.build_planted_annotations --check   # exit 1 if the shipped file differs from a rebuild

What it does (``preference_annotations_planted.md`` next to the data file is the provenance note):

1. **Pairs.** From the course preference data (``labkit.preference.load_responses()``, the responses of
   notebooks 11 and 12), for each of the prompts 0-19 the responses 0-4 (the training prompts and responses of
   notebook 12's section 4), ``PAIRS_PER_PROMPT`` (2) of the 10 possible pairs, drawn with
   ``random.Random(SEED)``: 40 pairs. Prompts 20-23 stay held out, as in section 4.
2. **The planted annotator.** One stated rule, :func:`planted_choice`: *it prefers the shorter response* (fewer
   words, counted by ``labkit.preference.n_words``) and *skips a pair whose lengths differ by fewer than*
   ``MIN_GAP`` (2) *words*. It sees each pair in the order the annotation form draws (``seed`` = ``SEED``) and
   answers "A", "B" or "skip" through :class:`labkit.widgets.PreferenceAnnotations` — the same code, and so the
   same file format, as a student clicking in the form.

No model is run and nothing is random beyond the seeded draws, so a rebuild gives the same bytes on any
machine; ``tests/test_widgets.py`` checks that.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "labkit" / "data" / "preference_annotations_planted.json"
SEED = 12
PROMPTS = range(20)  # notebook 12's training prompts (20-23 are held out there)
RESPONSES = range(5)  # notebook 12's responses per prompt
PAIRS_PER_PROMPT = 2
MIN_GAP = 2  # words
ANNOTATOR = (f"planted: prefers the shorter response (fewer words); skips pairs whose lengths differ by fewer than "
             f"{MIN_GAP} words")


def pairs_to_annotate() -> list[dict]:
    """The 40 pairs (dicts with ``id``, ``prompt``, ``a``, ``b``, ``prompt_id``, ``response_a``, ``response_b``)."""
    from labkit import preference

    rows = {(r["prompt_id"], r["response_id"]): r for r in preference.load_responses()}
    rng = random.Random(SEED)
    pairs = []
    for k in PROMPTS:
        combos = list(itertools.combinations(RESPONSES, 2))
        rng.shuffle(combos)
        for a, b in sorted(combos[:PAIRS_PER_PROMPT]):
            ra, rb = rows[(k, a)], rows[(k, b)]
            pairs.append({"id": f"p{k}-r{a}-r{b}", "prompt": ra["prompt"], "a": ra["response"], "b": rb["response"],
                          "prompt_id": k, "response_a": a, "response_b": b})
    return pairs


def planted_choice(shown_a: str, shown_b: str) -> str:
    """The planted rule: "A" or "B" for the response with fewer words; "skip" when they differ by < MIN_GAP words."""
    from labkit import preference

    na, nb = preference.n_words([shown_a, shown_b]).tolist()
    if abs(na - nb) < MIN_GAP:
        return "skip"
    return "A" if na < nb else "B"


def build(path: Path) -> Path:
    """Let the planted annotator answer every pair through the annotation state the form uses; write ``path``."""
    from labkit.widgets import PreferenceAnnotations

    ann = PreferenceAnnotations(pairs_to_annotate(), path, seed=SEED, annotator=ANNOTATOR, if_exists="overwrite")
    while not ann.done:
        cur = ann.current()
        ann.choose(planted_choice(cur["A"], cur["B"]))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare a rebuild with the shipped file")
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as d:
            fresh = build(Path(d) / OUT.name).read_bytes()
        same = OUT.is_file() and OUT.read_bytes() == fresh
        print(f"{OUT.relative_to(ROOT)}: {'up to date' if same else 'differs from a rebuild'}")
        return 0 if same else 1
    build(OUT)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
