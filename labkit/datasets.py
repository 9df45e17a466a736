"""Datasets: the course's text corpus and the data loaders the notebooks share.

The corpus
    ``labkit/data/corpus.jsonl.gz`` holds a little over 200,000 tokens of diverse English text that the
    course model, SmolLM2-135M-Instruct, wrote itself: stories, explanations, dialogues, lists, letters,
    instructions, news reports, poems, essays, Q&A, descriptions, summaries and diary entries on two dozen
    topics. The notebooks use it for activation statistics (sparse autoencoders, neuron explanations from
    top-activating contexts, probing) and as the worked example of a datasheet. How it was made, its exact
    size, its sha256 and its limitations are in ``labkit/data/corpus.md``; the script that rebuilds it is
    ``python -m tools.build_corpus``.

    * :func:`load_corpus` — the documents with their metadata (genre, topic, prompt, seed, …);
    * :func:`corpus_texts` — only the texts;
    * :func:`corpus_token_batches` — the texts tokenised and packed into a ``[n, seq_len]`` tensor.

The professions
    ``labkit/data/professions.json``: 320 profession words with crowd-rated definitional and stereotypical
    gender scores (Bolukbasi et al. 2016; provenance in ``professions.md``), used by notebooks 07 and 08.

    * :func:`load_professions` — the rows as dicts;
    * :func:`filter_professions` — Vig et al.'s (2020) filter: not gendered by definition, and one token
      like " man", so a profession and "man"/"woman" occupy the same position.

Every loader reads files shipped inside the package, so nothing here needs a network.
"""

from __future__ import annotations

import functools
import gzip
import json
import zlib
from pathlib import Path
from typing import Iterable

import torch

__all__ = [
    "CORPUS_FIELDS",
    "CorpusError",
    "corpus_path",
    "load_corpus",
    "corpus_texts",
    "corpus_token_batches",
    "load_professions",
    "filter_professions",
    "load_data",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
CORPUS_FILE = "corpus.jsonl.gz"
#: The fields of every corpus document.
CORPUS_FIELDS = ("id", "genre", "topic", "subject", "prompt", "seed", "batch", "finished", "text", "n_tokens")
REBUILD_COMMAND = "python -m tools.build_corpus"
_RESTORE_HINT = (
    "Restore it by reinstalling labkit (from the repository: `git checkout labkit/data/corpus.jsonl.gz` and "
    "`pip install -e .`; otherwise reinstall the course's package from its repository, e.g. "
    "`pip install --force-reinstall \"trustworthy-dl-labkit @ git+https://github.com/trustworthy-dl/lab-notebooks\"`"
    " — not PyPI's unrelated `labkit`), or rebuild it with "
    f"`{REBUILD_COMMAND}` (about 20 minutes on a laptop CPU; the text can differ on other hardware)."
)


class CorpusError(RuntimeError):
    """The corpus file is missing or damaged."""


# --------------------------------------------------------------------------------------------------
# The corpus


def corpus_path() -> Path:
    """Where the shipped corpus file lives (``labkit/data/corpus.jsonl.gz``)."""
    return DATA_DIR / CORPUS_FILE


def load_corpus(
    genres: str | Iterable[str] | None = None,
    topics: str | Iterable[str] | None = None,
    path: str | Path | None = None,
) -> list[dict]:
    """The corpus documents, in file order, as a list of dicts (fresh copies: change them freely).

    Each document has the fields :data:`CORPUS_FIELDS`: ``id``, ``genre``, ``topic``, ``subject`` (what the
    prompt was about), ``prompt`` (the user message the model answered), ``seed`` and ``batch`` (of the
    sampling run), ``finished`` (whether the model ended the reply itself rather than hitting the token
    limit), ``text`` and ``n_tokens`` (SmolLM2 tokens of ``text``).

    ``genres`` and ``topics`` keep only documents of those genres/topics (a name or a list of names; an
    unknown name raises ``ValueError`` listing the known ones). ``path`` reads another corpus file of the
    same format instead of the shipped one. Raises :class:`CorpusError` when the file is missing or damaged.
    """
    file = Path(path) if path is not None else corpus_path()
    if not file.is_file():
        raise CorpusError(f"the course corpus {file} is missing. {_RESTORE_HINT}")
    stat = file.stat()
    docs = _read_corpus(str(file), stat.st_mtime_ns, stat.st_size)
    docs = _select(docs, "genre", genres)
    docs = _select(docs, "topic", topics)
    return [dict(d) for d in docs]


def corpus_texts(
    genres: str | Iterable[str] | None = None,
    topics: str | Iterable[str] | None = None,
    path: str | Path | None = None,
) -> list[str]:
    """The texts of the corpus documents, in file order (the same filters as :func:`load_corpus`)."""
    return [d["text"] for d in load_corpus(genres=genres, topics=topics, path=path)]


def corpus_token_batches(
    tokenizer,
    seq_len: int = 128,
    max_tokens: int | None = None,
    genres: str | Iterable[str] | None = None,
    separator: int | None | str = "eos",
    path: str | Path | None = None,
) -> torch.Tensor:
    """The corpus as one token stream cut into contiguous chunks: a ``[n, seq_len]`` LongTensor.

    The texts are tokenised in file order without special tokens, joined into a single stream with
    ``separator`` after every document (``"eos"``: the tokenizer's end-of-sequence token, so a model sees
    where a document ends; an int: that token id; ``None``: nothing), and the stream is cut into rows of
    ``seq_len`` tokens: row ``i`` is tokens ``i*seq_len … (i+1)*seq_len - 1`` of the stream, so
    ``batches.flatten()`` is the stream itself. The incomplete last chunk is dropped. Documents run across
    row boundaries and a row can start mid-document, so the first positions of a row have little context:
    for activation statistics skip them or use long rows. ``max_tokens`` stops once
    ``max_tokens // seq_len`` rows are filled (only as many documents as needed are tokenised).

    ``tokenizer`` is a Hugging Face tokenizer or a :class:`labkit.lm.LanguageModel` (its tokenizer is
    used). Feed the rows to the model with no attention mask: there is no padding.
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)  # a LanguageModel carries its tokenizer
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive integer, got {seq_len!r}")
    if max_tokens is not None and max_tokens < seq_len:
        raise ValueError(f"max_tokens ({max_tokens}) must be at least seq_len ({seq_len})")
    if separator == "eos":
        sep = tok.eos_token_id
        if sep is None:
            raise ValueError("the tokenizer has no end-of-sequence token: pass separator=<token id> or None")
    elif separator is None or isinstance(separator, int):
        sep = separator
    else:
        raise ValueError(f"separator must be 'eos', a token id or None, not {separator!r}")
    texts = corpus_texts(genres=genres, path=path)
    limit = None if max_tokens is None else (max_tokens // seq_len) * seq_len
    stream: list[int] = []
    chunk = 64  # documents tokenised per call (the fast tokenizers work on lists)
    for start in range(0, len(texts), chunk):
        for ids in tok(texts[start : start + chunk], add_special_tokens=False)["input_ids"]:
            stream.extend(ids)
            if sep is not None:
                stream.append(sep)
        if limit is not None and len(stream) >= limit:
            break
    n = len(stream) // seq_len
    if limit is not None:
        n = min(n, limit // seq_len)
    if n == 0:
        raise ValueError(f"the selected texts have {len(stream)} tokens, fewer than one row of {seq_len}")
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


# --------------------------------------------------------------------------------------------------
# Course data files


def load_data(name: str) -> dict | list:
    """A JSON data file written for the course, by name: ``"weat_words"``, ``"minimal_pairs"``,
    ``"mc_questions"``, ``"values"``, … (``labkit/data/<name>.json``; each has a ``.md`` note on its design)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be the name of a course data file (e.g. 'weat_words'), got {name!r}")
    path = DATA_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in DATA_DIR.glob("*.json"))
        raise ValueError(f"no course data file {name!r}; known: {known}")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------------
# The professions


PROFESSIONS_FILE = "professions.json"


def load_professions(path: str | Path | None = None) -> list[dict]:
    """The Bolukbasi et al. (2016) professions: ``[{"word", "definitional", "stereotypical"}]``, in file order.

    Scores run from −1 (female) to +1 (male). Multi-word entries use spaces (the file's underscores are
    replaced). ``path`` reads another file of the same format. See ``labkit/data/professions.md``.
    """
    file = Path(path) if path is not None else DATA_DIR / PROFESSIONS_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: reinstall labkit (it ships labkit/data/{PROFESSIONS_FILE})")
    data = json.loads(file.read_text())
    try:
        cols = data["columns"]
        w, de, st = cols.index("word"), cols.index("definitional"), cols.index("stereotypical")
        return [{"word": r[w].replace("_", " "), "definitional": float(r[de]), "stereotypical": float(r[st])}
                for r in data["rows"]]
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise ValueError(f"{file} is not a professions file (columns word, definitional, stereotypical): {e}") from e


def filter_professions(lm, professions: list[dict], max_definitional: float = 0.75, like: str = "man",
                       return_dropped: bool = False):
    """Vig et al.'s (2020) filter: keep |definitional| < ``max_definitional``; of those, keep the professions
    that tokenise (after a space) to as many tokens as ``" " + like``, so that an intervention can swap the
    profession for "man"/"woman" position by position.

    ``lm`` is a :class:`labkit.lm.LanguageModel` (its tokenizer decides the token counts). With
    ``return_dropped=True`` also returns ``{"definitional": [...], "several_tokens": [...]}``, the words each
    rule dropped.
    """
    if not 0 < max_definitional <= 1:
        raise ValueError(f"max_definitional must be in (0, 1], got {max_definitional!r}")
    n = len(lm.encode(" " + like))
    for w in ("man", "woman"):
        if len(lm.encode(" " + w)) != n:
            raise ValueError(f"' {w}' is {len(lm.encode(' ' + w))} tokens but ' {like}' is {n}: set-gender needs both the same length")
    kept, dropped = [], {"definitional": [], "several_tokens": []}
    for p in professions:
        if abs(p["definitional"]) >= max_definitional:
            dropped["definitional"].append(p["word"])
        elif len(lm.encode(" " + p["word"])) != n:
            dropped["several_tokens"].append(p["word"])
        else:
            kept.append(p)
    return (kept, dropped) if return_dropped else kept


# --------------------------------------------------------------------------------------------------
# Helpers


@functools.lru_cache(maxsize=4)
def _read_corpus(file: str, mtime_ns: int, size: int) -> tuple[dict, ...]:
    """Parse and check a corpus file (cached per path, modification time and size)."""
    try:
        with gzip.open(file, "rt", encoding="utf-8") as f:
            docs = tuple(json.loads(line) for line in f if line.strip())
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        # gzip.BadGzipFile is an OSError; a truncated file raises EOFError.
        raise CorpusError(f"the course corpus {file} is damaged ({type(e).__name__}: {e}). {_RESTORE_HINT}") from e
    if not docs:
        raise CorpusError(f"the course corpus {file} is damaged (it holds no documents). {_RESTORE_HINT}")
    for i, d in enumerate(docs):
        missing = [k for k in CORPUS_FIELDS if not isinstance(d, dict) or k not in d]
        if missing:
            raise CorpusError(
                f"the course corpus {file} is damaged (document {i} lacks {', '.join(missing)}). {_RESTORE_HINT}"
            )
    return docs


def _select(docs: Iterable[dict], field: str, wanted: str | Iterable[str] | None) -> list[dict]:
    """Keep the documents whose ``field`` is in ``wanted`` (all of them for None)."""
    docs = list(docs)
    if wanted is None:
        return docs
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    known = sorted({d[field] for d in docs})
    unknown = sorted(wanted.difference(known))
    if unknown:
        raise ValueError(f"unknown {field} {', '.join(map(repr, unknown))}: the corpus has {', '.join(known)}")
    return [d for d in docs if d[field] in wanted]
