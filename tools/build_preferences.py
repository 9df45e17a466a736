"""Build the course preference data: responses written by SmolLM2-135M-Instruct to short prompts.

Run from the repository root::

    python -m tools.build_preferences            # rebuild labkit/data/preference_responses.jsonl.gz
    python -m tools.build_preferences --limit 2  # a quick trial: the first 2 prompts, to /tmp

What it does (``preference_responses.md`` next to this file is the provenance note):

1. **Prompts.** ``TOPICS`` (32 everyday subjects) give 32 user messages
   ``"Describe {topic} in one short sentence."``, each sent with the system message ``SYSTEM``.
2. **Generation.** ``N_RESPONSES`` (8) responses per prompt, sampled with ``LanguageModel.generate``
   (chat template, temperature 0.9, top-p 0.95, at most ``MAX_NEW_TOKENS`` = 32 new tokens),
   ``BATCH_PROMPTS`` prompts per batch, the batch seeded with ``BASE_SEED + batch index``.
3. **Output.** One JSON object per response (``prompt_id``, ``prompt``, ``system``, ``response_id``,
   ``response``, ``n_tokens``, ``finished``), gzip-compressed with a zero timestamp. ``finished`` is false
   when the response hit the token limit. Texts are stripped; nothing is filtered, so the data keep the
   model's failures (off-topic, truncated, odd) — they are what a reward model meets in practice.

There are no labels here: the true reward, the Bradley-Terry labels and every model trained on the data
are computed in the notebooks from :mod:`labkit.preference`. Load the data with
``labkit.preference.load_preference_data()``.

Determinism: same torch/transformers versions on the same kind of CPU give the same text; other versions
or hardware can differ, so the shipped file is the course's reference.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import time
from pathlib import Path

import torch

SYSTEM = "Answer in one short sentence."
TOPICS = [
    "a rainy morning", "a city at night", "your neighbour's dog", "a Monday at work", "a long train ride",
    "winter in the mountains", "a crowded market", "the ocean", "doing homework", "an old house",
    "a summer festival", "a traffic jam", "a birthday party", "a hospital waiting room", "a forest walk",
    "a thunderstorm", "a first day at school", "a quiet library", "a job interview", "a family dinner",
    "a power cut", "a football match", "a garden in spring", "a lost wallet", "a mountain sunrise",
    "a dentist appointment", "a small village", "a snowy evening", "a busy airport", "a cup of coffee",
    "a broken phone", "a night sky",
]
N_RESPONSES = 8
MAX_NEW_TOKENS = 32
TEMPERATURE = 0.9
TOP_P = 0.95
BATCH_PROMPTS = 8
BASE_SEED = 1100
OUT = Path(__file__).resolve().parent.parent / "labkit" / "data" / "preference_responses.jsonl.gz"


def prompts() -> list[str]:
    return [f"Describe {t} in one short sentence." for t in TOPICS]


def build(limit: int | None = None, out: Path = OUT) -> list[dict]:
    from labkit.lm import load_lm

    torch.set_num_threads(1)  # a shared small CPU: one thread avoids oversubscription (the shipped file was built this way)
    lm = load_lm(device="cpu")
    ps = prompts()[:limit] if limit else prompts()
    rows = []
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, len(ps), BATCH_PROMPTS)):
        batch = ps[start : start + BATCH_PROMPTS]
        flat = [p for p in batch for _ in range(N_RESPONSES)]
        replies = lm.generate(flat, max_new_tokens=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=TOP_P,
                              system=SYSTEM, seed=BASE_SEED + b, batch_size=len(flat))
        for k, (p, r) in enumerate(zip(flat, replies)):
            n = len(lm.encode(r))
            rows.append({
                "prompt_id": start + k // N_RESPONSES, "prompt": p, "system": SYSTEM,
                "response_id": k % N_RESPONSES, "response": r.strip(), "n_tokens": n,
                "finished": n < MAX_NEW_TOKENS,
            })
        print(f"batch {b}: {len(rows)} responses, {time.perf_counter() - t0:.0f} s", flush=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
    out.write_bytes(buf.getvalue())
    print(f"wrote {len(rows)} responses to {out}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts (written to /tmp)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or (Path("/tmp/preference_responses_trial.jsonl.gz") if args.limit else OUT)
    build(args.limit, out)
