"""Benchmark closed-form survey scoring in labkit.values, side by side in one run; writes benchmarks/values.md.

The same chat-template survey questions (propositions × 10 wordings × 3 personas, both scale orders) scored
three ways, all reading p(letter | question) from one forward pass per question (no sampling):

1. one question at a time (``lm.next_token_probs``), the naive loop;
2. batched, full forward passes (``lm.option_logprobs``: left padding, last-position logits only);
3. ``values.likert_logprobs``: batches of lexicographically sorted questions, whose common prefix (chat
   markup, system message, persona, start of the wording) is run once and its key/value cache reused.

Usage: ``python benchmarks/values.py`` (CPU; timings vary with the machine's load).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import labkit
from labkit import values

from _timing import timed  # benchmarks/_timing.py

HERE = Path(__file__).resolve().parent


def main(n_props: int = 3):
    lm = labkit.load_lm(device="cpu")
    data = values.load_data("values")
    reverse = [v % 2 == 1 for v in range(len(data["variants"]))]
    qs = values.likert_prompts(data["propositions"][:n_props], data["variants"], data["personas"], reverse)
    texts = [lm.chat_prompt(q, system=values.SURVEY_SYSTEM) for q in qs]
    ids = [lm.token_id(L) for L in values.LETTERS]

    def naive():
        return torch.cat([torch.log(lm.next_token_probs(t))[:, ids] for t in texts])

    ref, t_naive = timed(naive)
    lp_batch, t_batch = timed(lambda: lm.option_logprobs(texts, list(values.LETTERS), batch_size=32))
    lp_prefix, t_prefix = timed(lambda: values.likert_logprobs(lm, qs, normalize=False))
    n_tok = sum(len(lm.encode(t)) for t in texts)
    rows = [
        ("one question at a time", t_naive, 0.0),
        ("batched full forward passes (lm.option_logprobs)", t_batch, float((lp_batch - ref).abs().max())),
        ("batched, shared-prefix cache (values.likert_logprobs)", t_prefix, float((lp_prefix - ref).abs().max())),
    ]
    lines = [
        "# labkit.values benchmark: closed-form survey scoring",
        "",
        f"Machine: {labkit.runtime.describe(torch.device('cpu'))}. {len(texts)} chat questions ({n_tok} tokens). "
        "Timings vary with load; ratios are from one run.",
        "",
        "| method | time (s) | speed-up vs one at a time | largest abs. difference of log p vs one at a time |",
        "|---|---|---|---|",
    ]
    for name, t, diff in rows:
        lines.append(f"| {name} | {t:.2f} | {t_naive / t:.1f}× | {diff:.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "values.md").write_text(text)
    (HERE / "values.json").write_text(json.dumps([dict(zip(["method", "seconds", "max_abs_diff"], r)) for r in rows], indent=1))


if __name__ == "__main__":
    main()
