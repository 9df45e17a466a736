"""Tests of labkit.datasets: the shipped corpus, its datasheet and the loaders."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from labkit import datasets
from labkit.datasets import CORPUS_FIELDS, CorpusError, corpus_path, corpus_texts, corpus_token_batches, load_corpus

DATASHEET = Path(datasets.__file__).parent / "data" / "corpus.md"


@pytest.fixture(scope="module")
def tokenizer():
    """The SmolLM2 tokenizer from the course model cache (the tokenizer alone: fast)."""
    from transformers import AutoTokenizer

    from labkit.lm.install import lm_cache_dir

    folder = lm_cache_dir()
    if not (folder / "tokenizer.json").is_file():
        pytest.skip("the course model cache is missing: run `python -m labkit download`")
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="module")
def docs():
    return load_corpus()


@pytest.fixture(scope="module")
def datasheet_numbers():
    """The numbers stated in corpus.md's table of numbers (``| name | value |`` rows)."""
    text = DATASHEET.read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\|\s*([^|]+?)\s*\|\s*`?([0-9a-f,]+)`?\s*\|\s*$", text, flags=re.M))
    return {k: v.replace(",", "") for k, v in rows.items()}


def test_corpus_loads_with_metadata(docs):
    assert len(docs) >= 800
    for d in docs:
        assert set(CORPUS_FIELDS) <= set(d), d.get("id")
        assert isinstance(d["text"], str) and d["text"].strip() == d["text"] and d["text"]
        assert isinstance(d["n_tokens"], int) and d["n_tokens"] > 0
        assert isinstance(d["seed"], int) and isinstance(d["finished"], bool)
        assert d["prompt"] and d["genre"] and d["topic"]
    assert len({d["id"] for d in docs}) == len(docs)


def test_corpus_has_enough_tokens(docs, tokenizer):
    texts = [d["text"] for d in docs]
    counts = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    assert sum(counts) >= 200_000
    assert counts == [d["n_tokens"] for d in docs]  # the stored counts are the tokenizer's


def test_corpus_is_diverse(docs):
    genres = Counter(d["genre"] for d in docs)
    common = [g for g, c in genres.items() if c >= 0.03 * len(docs)]
    assert len(common) >= 8, genres
    topics = Counter(d["topic"] for d in docs)
    assert len(topics) >= 15, topics
    assert topics["work and professions"] >= 50  # the bias notebooks need these


def test_datasheet_matches_shipped_file(docs, datasheet_numbers):
    data = corpus_path().read_bytes()
    assert datasheet_numbers["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(datasheet_numbers["bytes compressed"]) == len(data)
    assert int(datasheet_numbers["bytes uncompressed"]) == len(gzip.decompress(data))
    assert int(datasheet_numbers["documents"]) == len(docs)
    assert int(datasheet_numbers["tokens"]) == sum(d["n_tokens"] for d in docs)
    assert len(data) < 5_000_000


def test_filters(docs):
    poems = load_corpus(genres="poem")
    assert poems and all(d["genre"] == "poem" for d in poems)
    assert len(poems) == sum(d["genre"] == "poem" for d in docs)
    two = load_corpus(genres=["poem", "story"], topics="food")
    assert two and {d["genre"] for d in two} <= {"poem", "story"} and {d["topic"] for d in two} == {"food"}
    assert corpus_texts(genres="poem") == [d["text"] for d in poems]
    with pytest.raises(ValueError, match="unknown genre 'sonnet'.*poem"):
        load_corpus(genres="sonnet")
    poems[0]["text"] = "changed"  # fresh copies: the next load is unaffected
    assert load_corpus(genres="poem")[0]["text"] != "changed"


def test_token_batches_are_contiguous_chunks(tokenizer):
    texts = corpus_texts()
    stream = []
    for t in texts[:40]:
        stream += tokenizer.encode(t, add_special_tokens=False) + [tokenizer.eos_token_id]
    batches = corpus_token_batches(tokenizer, seq_len=128, max_tokens=5000)
    assert batches.dtype == torch.long and batches.shape == (5000 // 128, 128)
    assert batches.flatten().tolist() == stream[: batches.numel()]
    assert batches[0, -1] == stream[127] and batches[1, 0] == stream[128]

    plain = corpus_token_batches(tokenizer, seq_len=100, max_tokens=1000, separator=None)
    no_sep = [i for t in texts[:10] for i in tokenizer.encode(t, add_special_tokens=False)]
    assert plain.shape == (10, 100) and plain.flatten().tolist() == no_sep[:1000]


def test_token_batches_cover_the_whole_corpus(docs, tokenizer):
    batches = corpus_token_batches(tokenizer, seq_len=256)
    total = sum(d["n_tokens"] for d in docs) + len(docs)  # one separator per document
    assert batches.shape == (total // 256, 256)
    with pytest.raises(ValueError):
        corpus_token_batches(tokenizer, seq_len=0)


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "corpus.jsonl.gz"
    shutil.copyfile(corpus_path(), target)
    return target


def test_a_damaged_corpus_raises_a_clear_error(tmp_path):
    bad = _copy(tmp_path)
    assert len(load_corpus(path=bad)) > 0

    bad.write_bytes(b"this is not a gzip file at all" * 10)
    with pytest.raises(CorpusError, match=r"damaged.*(reinstall|build_corpus)"):
        load_corpus(path=bad)

    data = corpus_path().read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CorpusError, match="damaged"):
        load_corpus(path=bad)

    bad.write_bytes(gzip.compress(b'{"id": "x"}\n{not json'))
    with pytest.raises(CorpusError, match="damaged.*JSONDecodeError"):
        load_corpus(path=bad)

    bad.write_bytes(gzip.compress(b'{"id": "x", "text": "no other fields"}\n'))
    with pytest.raises(CorpusError, match="damaged.*lacks genre"):
        load_corpus(path=bad)

    with pytest.raises(CorpusError, match=r"missing.*build_corpus"):
        load_corpus(path=tmp_path / "nowhere.jsonl.gz")


def test_professions_data_and_filter(lm):
    profs = datasets.load_professions()
    assert len(profs) == 320 and {"word", "definitional", "stereotypical"} <= set(profs[0])
    nurse = next(p for p in profs if p["word"] == "nurse")
    assert nurse["stereotypical"] == pytest.approx(-0.9)
    kept, dropped = datasets.filter_professions(lm, profs, return_dropped=True)
    assert len(kept) + len(dropped["definitional"]) + len(dropped["several_tokens"]) == len(profs)
    assert all(abs(p["definitional"]) < 0.75 and len(lm.encode(" " + p["word"])) == 1 for p in kept)
    words = {p["word"] for p in kept}
    assert "nurse" in words and "actress" in dropped["definitional"]  # actress is definitional (−1)
    assert "adjunct professor" in dropped["several_tokens"] and "barber" in dropped["several_tokens"] and not any(" " in w for w in words)
    assert datasets.filter_professions(lm, profs) == kept
    with pytest.raises(FileNotFoundError):
        datasets.load_professions("/nonexistent/professions.json")
