"""Build the course text corpus: diverse English text written by SmolLM2-135M-Instruct itself.

Run from the repository root::

    python -m tools.build_corpus                     # rebuild labkit/data/corpus.jsonl.gz (~23 min, 2 CPU cores)
    python -m tools.build_corpus --limit 64 --out /tmp/c.jsonl.gz   # a quick trial (the first batch)
    python -m tools.build_corpus --stats             # print the statistics of an existing corpus file

What it does (``corpus.md`` next to this file is the datasheet of the shipped result):

1. **Prompts.** A fixed, hand-written grid of ``GENRES`` (stories, explanations, dialogues, lists, …)
   × ``TOPICS`` (science, history, work and professions, food, …). Each cell gets ``REPLICATES`` prompts
   (more for work and professions, which the bias notebooks use); each prompt combines one of the genre's
   wordings with one of the topic's subjects and, sometimes, a length hint, all chosen by rotation, so
   the grid is the same on every run and balanced by construction. The prompts are then shuffled with
   a fixed seed, so that every batch mixes genres and topics, and a ``--limit N`` trial gives exactly
   the first ``N`` prompts of a full run.
2. **Generation.** Each prompt is a chat user message (the model's chat template). Batches of
   ``BATCH_SIZE`` prompts are sampled with temperature 0.8, top-k 50 and then top-p 0.95 (the order and
   the values Hugging Face ``generate`` uses for these settings), at most ``MAX_NEW_TOKENS`` new tokens,
   from a ``torch.Generator`` seeded with ``BASE_SEED + batch index``. The sampling loop is written out
   here (KV cache, left padding with explicit position ids) instead of calling ``LanguageModel.generate``
   because it is three to four times faster on a small CPU (197 against 46 tokens/s on 2 cores): it
   scores only the last position during the prompt pass, avoids sorting the whole 49k-token vocabulary at
   every step, writes the key/value cache in place instead of concatenating, and removes finished rows
   from the batch.
3. **Post-processing.** Texts are stripped. A text that stopped at the token limit (``finished`` false)
   is cut back to its last sentence end (``.``, ``!``, ``?``, a closing quote after one, or a line
   break) when that keeps at least 60% of it. Then a text is **dropped** when it is degenerate:

   * shorter than ``MIN_WORDS`` (20) words, or
   * repetitive: fewer than ``MIN_DISTINCT_4GRAMS`` (50%) of its word 4-grams (lower-cased) are
     distinct, or one non-empty line occurs more than ``MAX_LINE_REPEATS`` (3) times.

4. **Output.** One JSON object per document (``id``, ``genre``, ``topic``, ``subject``, ``prompt``,
   ``seed``, ``batch``, ``finished``, ``text``, ``n_tokens``), gzip-compressed with a zero timestamp so
   that the same documents give the same bytes. ``n_tokens`` counts the text's tokens with the SmolLM2
   tokenizer, without special tokens.

Determinism: the prompt grid, the batch order and the seeds are fixed, so the same torch and
transformers versions on the same kind of CPU produce the same text and the same file (sha256). Other
versions, CPUs (different vector instructions change float rounding) or a GPU can produce different text:
the shipped file, not a rebuild, is the course's reference corpus.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from labkit.lm import left_padded_positions

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "labkit" / "data" / "corpus.jsonl.gz"

MODEL = "smollm2-135m-instruct"
TEMPERATURE = 0.8
TOP_K = 50
TOP_P = 0.95
MAX_NEW_TOKENS = 256
BATCH_SIZE = 64
BASE_SEED = 20240
SHUFFLE_SEED = 7
REPLICATES = 4  # prompts per (genre, topic) cell
REPLICATES_BY_TOPIC = {"work and professions": 8}

MIN_WORDS = 20
MIN_DISTINCT_4GRAMS = 0.5
MAX_LINE_REPEATS = 3
KEEP_FRACTION_WHEN_TRIMMING = 0.6

# --------------------------------------------------------------------------------------------------
# The prompt grid. ``{s}`` is a subject: a noun phrase that reads well after "about".

GENRES: dict[str, list[str]] = {
    "story": [
        "Write a short story about {s}.",
        "Tell me a short story involving {s}. Give the main character a name.",
        "Write a brief piece of fiction featuring {s}.",
        "Write a bedtime story for children about {s}.",
    ],
    "explanation": [
        "Explain something interesting about {s} in simple terms.",
        "Write a clear explanation for a beginner about {s}.",
        "Teach me the basics of {s}.",
        "Give a short, clear explanation of how {s} works or why it matters.",
    ],
    "dialogue": [
        "Write a dialogue between two people talking about {s}.",
        "Write a short conversation between two friends who disagree about {s}.",
        "Write a script for a scene in which a customer and an employee talk about {s}.",
        "Write a dialogue between a parent and a child about {s}.",
    ],
    "list": [
        "Make a numbered list of interesting facts about {s}.",
        "List some practical tips related to {s}.",
        "Write a bulleted list of things everyone should know about {s}.",
        "Give me a list of ideas connected to {s}, with one sentence for each.",
    ],
    "letter": [
        "Write an email to a friend about {s}.",
        "Write a letter to the editor of a local newspaper about {s}.",
        "Write a short, polite work email that mentions {s}.",
        "Write a thank-you note that mentions {s}.",
    ],
    "instructions": [
        "Write step-by-step instructions for a task related to {s}.",
        "Write a short how-to guide connected to {s}.",
        "Explain, step by step, how a beginner can get started with something related to {s}.",
        "Write a recipe or a set of instructions inspired by {s}.",
    ],
    "news": [
        "Write a short news report about {s}.",
        "Write a local newspaper article about an event involving {s}.",
        "Write a news bulletin about a recent development related to {s}.",
        "Write a short press release about {s}.",
    ],
    "poem": [
        "Write a poem about {s}.",
        "Write a short rhyming poem about {s}.",
        "Write a free-verse poem inspired by {s}.",
        "Write a few haiku about {s}.",
    ],
    "essay": [
        "Write an opinion paragraph about {s}.",
        "Write a short persuasive essay about {s}.",
        "Write a short essay weighing the pros and cons of something related to {s}.",
        "Write a reflective essay about {s}.",
    ],
    "qa": [
        "Answer this question in a few paragraphs: what should everyone know about {s}?",
        "Write a short FAQ (questions and answers) about {s}.",
        "Write three questions a student might ask about {s}, each followed by an answer.",
        "What are the most common misunderstandings about {s}? Answer clearly.",
    ],
    "description": [
        "Describe {s} in vivid detail.",
        "Write a descriptive paragraph about {s}.",
        "Describe a person whose life is connected to {s}: their appearance, habits and personality.",
        "Describe a place associated with {s}, using all five senses.",
    ],
    "summary": [
        "Write a short summary of an imaginary book about {s}.",
        "Summarize the main points someone should know about {s}.",
        "Write the summary of a meeting where people discussed {s}.",
        "Summarize a documentary about {s}.",
    ],
    "diary": [
        "Write a diary entry about a day that involved {s}.",
        "Write a personal journal entry reflecting on {s}.",
        "Write a first-person account of an experience with {s}.",
        "Write a blog post about my week, in which {s} plays a part.",
    ],
}

TOPICS: dict[str, list[str]] = {
    "science": [
        "how volcanoes form", "the water cycle", "black holes", "magnets", "photosynthesis", "DNA",
        "the speed of light", "chemical reactions in the kitchen", "earthquakes", "the human brain",
        "electricity", "fossils",
    ],
    "history": [
        "the invention of the printing press", "ancient Rome", "the first moon landing", "the Silk Road",
        "the building of the pyramids", "the Industrial Revolution", "the fall of the Berlin Wall",
        "medieval castles", "the history of the bicycle", "the first telephones", "Viking explorers",
        "the history of writing",
    ],
    "daily life": [
        "a rainy Monday morning", "doing the laundry", "moving to a new apartment", "a long queue at the supermarket",
        "cooking dinner after work", "a noisy neighbour", "waiting for the bus", "cleaning the house on a Sunday",
        "a power cut in the evening", "getting up early", "a birthday at home", "a lost set of keys",
    ],
    "work and professions": [
        "a nurse starting a night shift", "an engineer testing a new bridge", "a secretary organising a busy office",
        "a plumber fixing a leak", "a CEO giving a speech", "a kindergarten teacher", "a firefighter",
        "a software developer fixing a bug", "a nanny looking after twins", "a pilot preparing for take-off",
        "a housekeeper in a large hotel", "a surgeon before a difficult operation", "a receptionist at a clinic",
        "a construction worker", "a librarian", "a car mechanic", "a flight attendant", "a research scientist",
        "a lawyer preparing for a trial", "a farmer at harvest time", "a chef in a busy restaurant",
        "a ballet dancer", "a police officer on patrol", "a hairdresser", "a waitress in a diner",
        "a businessman on a trip", "a businesswoman starting a company", "a fireman", "a policewoman",
        "a male nurse", "a female engineer", "a stay-at-home dad", "a housewife", "a midwife",
        "an accountant at the end of the year", "a truck driver", "a cleaner working at night",
        "a professor grading exams", "a cashier", "a security guard", "a social worker", "a programmer",
        "a doctor", "a carpenter", "a babysitter", "an electrician", "a banker", "a childcare worker",
    ],
    "sport": [
        "a football match", "learning to swim", "running a marathon", "a tennis tournament", "basketball practice",
        "the Olympic Games", "cycling in the mountains", "a chess championship", "yoga", "a school sports day",
        "rock climbing", "a cricket match",
    ],
    "food": [
        "making fresh bread", "a vegetable soup", "street food", "chocolate", "a family recipe for pancakes",
        "spicy food", "eating healthily on a budget", "a picnic", "coffee", "rice dishes around the world",
        "a dinner party", "growing your own herbs",
    ],
    "nature": [
        "a forest in autumn", "rivers", "a thunderstorm", "wild flowers", "the ocean at night", "deserts",
        "mountains", "a coral reef", "bees and pollination", "a walk in the woods", "tides", "old trees",
    ],
    "technology": [
        "smartphones", "the internet", "electric cars", "robots in factories", "video games", "3D printing",
        "password security", "artificial intelligence", "solar panels", "social media", "online shopping",
        "how computers store data",
    ],
    "health": [
        "getting enough sleep", "drinking water", "a visit to the dentist", "staying active at a desk job",
        "the common cold", "stress", "healthy breakfasts", "vaccines", "washing your hands", "back pain",
        "walking every day", "a hospital visit",
    ],
    "travel": [
        "a train journey across Europe", "packing a suitcase", "a first trip abroad", "a busy airport",
        "a road trip", "camping by a lake", "a small fishing village", "getting lost in a foreign city",
        "a hotel with a view", "learning a few words of a new language before a trip", "a night bus", "a ferry crossing",
    ],
    "emotions": [
        "feeling nervous before an exam", "joy", "loneliness in a big city", "gratitude", "anger and how to calm down",
        "homesickness", "jealousy between siblings", "the pride of finishing something hard", "fear of the dark",
        "forgiveness", "boredom", "hope",
    ],
    "money": [
        "saving money", "a first salary", "budgeting for a family", "borrowing money from a friend",
        "credit cards", "starting a small business", "paying rent", "pocket money for children",
        "the price of a house", "a lottery win", "comparing prices", "taxes",
    ],
    "school": [
        "the first day at a new school", "homework", "a science fair", "a school trip to a museum",
        "learning to read", "a difficult maths test", "a school library", "a favourite teacher", "group projects",
        "school uniforms", "a class election", "graduation day",
    ],
    "animals": [
        "a stray cat", "elephants", "a dog that learns a new trick", "migrating birds", "owls", "a farm with goats",
        "dolphins", "ants", "a visit to the zoo", "a pet hamster", "wolves", "butterflies",
    ],
    "family and friends": [
        "a grandmother's stories", "a family holiday", "an old friend who moved away", "brothers and sisters",
        "making new friends", "a wedding", "a family argument", "a surprise party", "twins", "neighbours who help each other",
        "a new baby in the family", "a reunion after many years",
    ],
    "arts and music": [
        "learning the piano", "a street musician", "painting a portrait", "a rock concert", "a small theatre",
        "an art museum", "writing songs", "a school choir", "photography", "jazz", "pottery", "a dance class",
    ],
    "weather and seasons": [
        "the first snow of winter", "a heatwave", "spring rain", "fog in the morning", "a windy day",
        "the weather forecast", "summer holidays", "autumn leaves", "a rainbow", "a hailstorm",
        "the longest day of the year", "a frosty morning",
    ],
    "space": [
        "the Moon", "life on the International Space Station", "Mars", "comets", "the Sun", "stargazing",
        "astronauts", "the planets of the solar system", "a rocket launch", "galaxies", "satellites", "an eclipse",
    ],
    "cities and places": [
        "a busy market", "an old town square", "a quiet village", "a train station at rush hour", "a city park",
        "a harbour", "a skyscraper", "a small bookshop", "a bridge over a river", "a night market",
        "a seaside town", "a museum of history",
    ],
    "hobbies": [
        "gardening", "knitting", "collecting stamps", "fishing", "board games", "baking cakes", "bird watching",
        "building model trains", "hiking", "reading novels", "learning to draw", "playing the guitar",
    ],
    "environment": [
        "recycling", "plastic in the ocean", "planting trees", "saving energy at home", "climate change",
        "clean air in cities", "composting", "protecting endangered species", "electric buses", "saving water",
        "wind farms", "a beach clean-up",
    ],
    "transport": [
        "riding a bicycle to work", "a subway system", "learning to drive", "a traffic jam", "an old steam train",
        "a sailing boat", "a taxi ride", "electric scooters", "a cargo ship", "a hot-air balloon",
        "a long flight", "a city bus",
    ],
    "holidays and celebrations": [
        "New Year's Eve", "a harvest festival", "a birthday party", "a national holiday", "a summer festival",
        "fireworks", "giving gifts", "a family celebration", "a parade", "a lantern festival",
        "a graduation party", "a holiday meal",
    ],
    "language and books": [
        "learning a second language", "a favourite book", "writing a novel", "poetry", "dictionaries",
        "fairy tales", "sign language", "a book club", "the history of the alphabet", "translating a story",
        "comic books", "libraries",
    ],
}

LENGTH_HINTS = ["", "", " Keep it short.", " Use about 150 words.", " Write two or three paragraphs.", ""]
#: Genres whose replies are not made of paragraphs get hints of their own.
LENGTH_HINTS_BY_GENRE = {
    "poem": ["", "", " Keep it short.", " Make it three or four stanzas long.", " Use simple words.", ""],
    "dialogue": ["", "", " Keep it short.", " Use about 150 words.", " Give each speaker three or four lines.", ""],
    "list": ["", "", " Keep it short.", " Give five items.", " Give about eight items.", ""],
}


def build_prompts() -> list[dict]:
    """The fixed prompt grid, shuffled with ``SHUFFLE_SEED``: a list of ``{genre, topic, subject, prompt}``."""
    items = []
    for g_i, (genre, templates) in enumerate(GENRES.items()):
        for t_i, (topic, subjects) in enumerate(TOPICS.items()):
            for r in range(REPLICATES_BY_TOPIC.get(topic, REPLICATES)):
                # Rotations with different strides so that neighbouring cells differ in every component.
                subject = subjects[(g_i * 5 + r * 7 + t_i) % len(subjects)]
                template = templates[(r + g_i + t_i) % len(templates)]
                hints = LENGTH_HINTS_BY_GENRE.get(genre, LENGTH_HINTS)
                hint = hints[(g_i + 2 * t_i + 3 * r) % len(hints)]
                items.append(
                    {"genre": genre, "topic": topic, "subject": subject, "prompt": template.format(s=subject) + hint}
                )
    random.Random(SHUFFLE_SEED).shuffle(items)
    return items


# --------------------------------------------------------------------------------------------------
# Sampling


def _buffered_cache(n_layers: int, capacity: int):
    """A ``DynamicCache`` whose layers write into preallocated buffers instead of growing by concatenation.

    ``DynamicLayer`` copies the whole key/value cache at every step (``torch.cat``), a fifth of the time of
    a decoding step on a small CPU; these layers write each new position in place. Keys and values are the
    same tensors as with the default cache, so the logits are the same.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class BufferedLayer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.dtype, self.device = key_states.dtype, key_states.device
                b, h, _, d = key_states.shape
                self._k = key_states.new_empty(b, h, capacity, d)
                self._v = value_states.new_empty(b, h, capacity, d)
                self._len = 0
                self.is_initialized = True
            n = key_states.shape[-2]
            self._k[:, :, self._len : self._len + n] = key_states
            self._v[:, :, self._len : self._len + n] = value_states
            self._len += n
            self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]
            return self.keys, self.values

        def batch_select_indices(self, indices):
            if self.is_initialized:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys, self.values = self._k[:, :, : self._len], self._v[:, :, : self._len]

    cache = DynamicCache()
    cache.layers = [BufferedLayer() for _ in range(n_layers)]
    return cache


@torch.no_grad()
def sample_batch(lm, prompts: list[str], seed: int, max_new_tokens: int = MAX_NEW_TOKENS) -> list[tuple[str, bool]]:
    """Sample one reply per chat prompt; return ``(text, finished)`` pairs (``finished``: ended with EOS).

    Temperature ``TEMPERATURE``, then top-k ``TOP_K``, then top-p ``TOP_P`` on the renormalised top-k
    (Hugging Face's order), drawn from a ``torch.Generator`` seeded with ``seed``. Rows that have produced
    the end-of-turn token are removed from the batch (a few at a time), so the remaining rows decode faster.
    """
    model, tok = lm.model, lm.tokenizer
    device = lm.device
    eos = tok.eos_token_id
    texts = [lm.chat_prompt(p) for p in prompts]
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    pos = left_padded_positions(mask)
    gen = torch.Generator(device=device).manual_seed(seed)
    cache = _buffered_cache(lm.n_layers, ids.shape[1] + max_new_tokens)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1]
    pos = pos[:, -1:]
    n = len(prompts)
    rows = torch.arange(n, device=device)  # the prompt index of each row still in the batch
    finished = torch.zeros(n, dtype=torch.bool, device=device)  # per row still in the batch
    replies: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    for step in range(max_new_tokens):
        scores = logits.float() / TEMPERATURE
        top_v, top_i = scores.topk(TOP_K, dim=-1)  # sorted, largest first
        probs = torch.softmax(top_v, dim=-1)
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        probs = probs.masked_fill(before > TOP_P, 0.0)  # the most likely token always stays
        choice = torch.multinomial(probs, 1, generator=gen)
        nxt = top_i.gather(-1, choice)
        nxt = torch.where(finished[:, None], torch.full_like(nxt, eos), nxt)
        for r, t in zip(rows.tolist(), nxt[:, 0].tolist()):
            if not done[r]:
                if t == eos:
                    done[r] = True
                else:
                    replies[r].append(t)
        finished |= nxt[:, 0] == eos
        n_done = int(finished.sum())
        if n_done == len(rows) or step == max_new_tokens - 1:
            break
        if n_done >= max(4, len(rows) // 8):  # drop finished rows from the batch and the cache
            keep = (~finished).nonzero()[:, 0]
            rows, finished, nxt = rows[keep], finished[keep], nxt[keep]
            mask, pos = mask[keep], pos[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=-1)
        pos = pos + 1
        out = model(input_ids=nxt, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]
    return [(tok.decode(r, skip_special_tokens=True), d) for r, d in zip(replies, done)]


# --------------------------------------------------------------------------------------------------
# Post-processing

_SENTENCE_END = re.compile(r"""[.!?]["'”’)]?(?=\s)|\n""")


def trim_unfinished(text: str) -> str:
    """Cut a text that hit the token limit back to its last sentence end, if that keeps ≥60% of it."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text + " ")]
    if ends and ends[-1] >= KEEP_FRACTION_WHEN_TRIMMING * len(text):
        return text[: ends[-1]].rstrip()
    return text


def degenerate_reason(text: str) -> str | None:
    """Why a text is dropped (``"short"``, ``"repetitive-ngrams"``, ``"repeated-line"``), or None to keep it."""
    words = text.lower().split()
    if len(words) < MIN_WORDS:
        return "short"
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    if len(set(grams)) < MIN_DISTINCT_4GRAMS * len(grams):
        return "repetitive-ngrams"
    lines = Counter(line.strip().lower() for line in text.splitlines() if line.strip())
    if lines and max(lines.values()) > MAX_LINE_REPEATS:
        return "repeated-line"
    return None


# --------------------------------------------------------------------------------------------------
# Files and statistics


def write_jsonl_gz(docs: list[dict], path: Path) -> None:
    """Write documents as gzip-compressed JSON lines with a zero timestamp (same documents → same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(raw)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def stats(path: Path) -> dict:
    """Computed statistics of a corpus file: sizes, sha256, documents, tokens, genre and topic counts."""
    path = Path(path)
    data = path.read_bytes()
    raw = gzip.decompress(data)
    docs = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
    n_tokens = [d["n_tokens"] for d in docs]
    return {
        "file": str(path),
        "bytes_compressed": len(data),
        "bytes_uncompressed": len(raw),
        "sha256": hashlib.sha256(data).hexdigest(),
        "documents": len(docs),
        "tokens": sum(n_tokens),
        "tokens_per_document": {
            "min": min(n_tokens),
            "median": sorted(n_tokens)[len(n_tokens) // 2],
            "mean": round(sum(n_tokens) / len(n_tokens), 1),
            "max": max(n_tokens),
        },
        "words": sum(len(d["text"].split()) for d in docs),
        "finished_with_eos": sum(d["finished"] for d in docs),
        "genres": dict(Counter(d["genre"] for d in docs).most_common()),
        "topics": dict(Counter(d["topic"] for d in docs).most_common()),
    }


def print_stats(s: dict) -> None:
    """Print statistics as the markdown snippets ``corpus.md`` uses."""
    print(f"file: {s['file']}")
    print(f"documents: {s['documents']}")
    print(f"tokens (SmolLM2 tokenizer, no special tokens): {s['tokens']}")
    t = s["tokens_per_document"]
    print(f"tokens per document: min {t['min']}, median {t['median']}, mean {t['mean']}, max {t['max']}")
    print(f"words (whitespace-separated): {s['words']}")
    print(f"finished with end-of-turn token: {s['finished_with_eos']}")
    print(f"bytes compressed: {s['bytes_compressed']}")
    print(f"bytes uncompressed: {s['bytes_uncompressed']}")
    print(f"sha256: {s['sha256']}")
    for key in ("genres", "topics"):
        print(f"\n| {key[:-1]} | documents | share |\n| --- | ---: | ---: |")
        for name, c in s[key].items():
            print(f"| {name} | {c} | {100 * c / s['documents']:.1f}% |")


# --------------------------------------------------------------------------------------------------


def build(out: Path, limit: int | None = None, batch_size: int = BATCH_SIZE, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Generate, filter and write the corpus; return its statistics."""
    from tqdm.auto import tqdm

    from labkit.lm import load_lm

    lm = load_lm(MODEL, device="cpu")
    items = build_prompts()
    if limit is not None:
        items = items[:limit]
    print(
        f"{len(items)} prompts ({len(GENRES)} genres × {len(TOPICS)} topics), batch {batch_size}, "
        f"≤{max_new_tokens} new tokens, T={TEMPERATURE}, top-k {TOP_K}, top-p {TOP_P}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        flush=True,
    )
    docs, dropped = [], Counter()
    t0 = time.perf_counter()
    generated = 0
    batches = range(0, len(items), batch_size)
    bar = tqdm(batches, desc="batches", unit="batch", file=sys.stdout, mininterval=5)
    for b, start in enumerate(bar):
        chunk = items[start : start + batch_size]
        seed = BASE_SEED + b
        replies = sample_batch(lm, [it["prompt"] for it in chunk], seed=seed, max_new_tokens=max_new_tokens)
        for j, (it, (text, finished)) in enumerate(zip(chunk, replies)):
            text = text.strip()
            generated += len(lm.encode(text)) if text else 0
            if not finished:
                text = trim_unfinished(text)
            reason = degenerate_reason(text)
            if reason:
                dropped[reason] += 1
                continue
            docs.append(
                {
                    "id": f"c{start + j:05d}",
                    "genre": it["genre"],
                    "topic": it["topic"],
                    "subject": it["subject"],
                    "prompt": it["prompt"],
                    "seed": seed,
                    "batch": b,
                    "finished": finished,
                    "text": text,
                    "n_tokens": len(lm.encode(text)),
                }
            )
        elapsed = time.perf_counter() - t0
        bar.set_postfix(docs=len(docs), tokens=sum(d["n_tokens"] for d in docs), tok_s=f"{generated / elapsed:.0f}")
    elapsed = time.perf_counter() - t0
    write_jsonl_gz(docs, out)
    s = stats(out)
    print(
        f"\ngenerated {generated} tokens in {elapsed:.0f} s ({generated / elapsed:.0f} tokens/s); "
        f"kept {len(docs)} of {len(items)} documents; dropped: {dict(dropped) or 'none'}"
    )
    print_stats(s)
    return s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts (a quick trial)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="prompts per batch (changes the text)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, help="token limit per reply")
    parser.add_argument("--stats", action="store_true", help="only print the statistics of an existing --out file")
    args = parser.parse_args(argv)
    if args.stats:
        print_stats(stats(args.out))
        return
    build(args.out, limit=args.limit, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)


if __name__ == "__main__":
    main()
