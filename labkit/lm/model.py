"""The ``LanguageModel`` wrapper: batching, scoring, generation and running part of the model.

Every topic module that works with the course model goes through these methods; none batches, pads,
scores or re-runs layers on its own. ``lm.model`` and ``lm.tokenizer`` are the Hugging Face objects,
untouched, for anything not covered here.

Texts are tokenised without special tokens unless stated, so a prompt means exactly the tokens it spells;
:meth:`LanguageModel.chat_prompt` adds the chat template's markup. Wherever a method takes prompts, a
prompt may also be a list of token ids (e.g. a prefix and a suffix tokenised separately).

Padding. A batch of prompts of different lengths is **left-padded** for next-token work (every prompt ends
at the last column, so one ``logits_to_keep=1`` pass reads every prompt's next-token distribution), with
position ids counted from each prompt's first real token (:func:`left_padded_positions`), so a prompt's
result does not depend on its batch-mates — also for models with absolute position embeddings (GPT-2).
Continuations are scored in **right-padded** batches (positions ``0 … len − 1`` need no correction).
"""

from __future__ import annotations

import copy
import math
from typing import Iterator, Sequence

import torch

from labkit.lm import hooks

__all__ = ["LanguageModel", "left_padded_positions"]


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: each row counts 0, 1, … from its first real token (pads get 0).

    ``attention_mask`` [batch, seq] with 1 on real tokens. This is what ``generate`` does internally; a plain
    forward pass would otherwise number the pads and shift every real token's position.
    """
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be a [batch, seq] tensor, got {getattr(attention_mask, 'shape', attention_mask)!r}")
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class LanguageModel:
    """A causal LM with its tokenizer and the operations the notebooks need again and again.

    * tokens: :meth:`encode`, :meth:`decode`, :meth:`tokens`, :meth:`token_id`, :meth:`chat_prompt`;
    * batches: :meth:`batch` (padding, attention mask, correct position ids);
    * next-token distributions: :meth:`last_logits` (prepared inputs), :meth:`next_token_logits` (texts, with
      an optional shared-prefix key/value cache), :meth:`next_token_probs`, :meth:`top_tokens`;
    * scoring: :meth:`logprobs` (continuations), :meth:`option_logprobs` (answer options);
    * generation: :meth:`generate` (with the chat template);
    * inside the model: :meth:`last_token_states` (every layer's residual stream in one pass),
      :meth:`run_to` (stop after a site), :meth:`run_from` (start at a layer from a given residual stream);
      the activation sites themselves are :mod:`labkit.lm.hooks`;
    * sizes: ``n_layers``, ``n_heads``, ``d_model``, ``d_mlp`` (the MLP width), ``max_length``, from the config of
      any supported family, so that code written for one model runs on another.
    """

    def __init__(self, model, tokenizer, name: str = "model"):
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model must be a Hugging Face causal language model (a torch.nn.Module with a config), "
                            f"got {type(model).__name__}; load one with labkit.load_lm()")
        if not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers if hasattr(cfg, "num_hidden_layers") else cfg.n_layer
        self.n_heads = cfg.num_attention_heads if hasattr(cfg, "num_attention_heads") else cfg.n_head
        self.d_model = cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd
        # MLP width (the neurons of mlp_post): GPT-2 leaves n_inner unset for its default 4 · d_model
        self.d_mlp = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * self.d_model
        self.max_length = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.model.parameters())
        return (
            f"LanguageModel({self.name!r}: {n / 1e6:.0f}M parameters, {self.n_layers} layers, "
            f"{self.n_heads} heads, d_model {self.d_model}, on {self.device})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def layout(self) -> hooks.Layout:
        """Where the embedding, the blocks, the final norm and the output layer live (:func:`hooks.layout`)."""
        return hooks.layout(self)

    # -- tokens ------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        """The text of token ids (a list or a 1-D tensor); special tokens are kept."""
        flat = torch.as_tensor(ids).flatten()
        if flat.is_floating_point() or flat.is_complex() or ((flat < 0) | (flat >= self.vocab_size)).any():
            raise ValueError(f"token ids must be integers in 0-{self.vocab_size - 1}, got {flat.tolist()[:8]}")
        return self.tokenizer.decode([int(i) for i in flat])

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``text`` as readable strings."""
        return [self.tokenizer.decode([i]) for i in self.encode(text)]

    def token_id(self, text: str) -> int:
        """The id of a text that must be exactly one token, e.g. ``lm.token_id(" he")``."""
        ids = self.encode(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens ({self.tokens(text)}), not one")
        return ids[0]

    def _sequences(self, prompts, what: str = "prompts") -> list[list[int]]:
        """Token ids of each prompt (a string, a list of strings, or a list of token-id lists), validated."""
        if isinstance(prompts, str):
            prompts = [prompts]
        elif isinstance(prompts, torch.Tensor):
            prompts = prompts.tolist() if prompts.dim() == 2 else [prompts.tolist()]
        if not isinstance(prompts, Sequence) or isinstance(prompts, (bytes, dict)):
            raise TypeError(f"{what} must be a string or a list of strings (or of token-id lists), got {type(prompts).__name__}")
        if len(prompts) == 0:
            raise ValueError(f"{what} must not be empty")
        vocab = self.vocab_size
        seqs = []
        for p in prompts:
            if isinstance(p, str):
                if not p:
                    raise ValueError(f"{what} must be non-empty strings")
                seqs.append(self.encode(p))
            elif isinstance(p, Sequence) and not isinstance(p, (bytes, dict)):
                if not p:
                    raise ValueError(f"{what} must be non-empty: got an empty list of token ids")
                if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab for i in p):
                    raise ValueError(f"token ids in {what} must be integers in 0-{vocab - 1}")
                seqs.append(list(p))
            else:
                raise TypeError(f"each of the {what} must be a string or a list of token ids, got {type(p).__name__}")
        longest = max(len(s) for s in seqs)
        if self.max_length and longest > self.max_length:
            raise ValueError(f"a prompt has {longest} tokens, more than the model's context of {self.max_length}")
        return seqs

    # -- batches -----------------------------------------------------------------------------------
    def batch(self, prompts, padding_side: str = "left") -> dict[str, torch.Tensor]:
        """One padded batch of prompts, on the model's device: ``{"input_ids", "attention_mask", "position_ids"}``.

        ``padding_side="left"``: every prompt ends at the last column, position ids count from each prompt's
        first real token (:func:`left_padded_positions`); ``"right"``: positions ``0 … len − 1``. Prompts are
        strings (tokenised without special tokens) or token-id lists. Pass the dict to ``lm.model(**batch)``.
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        seqs = self._sequences(prompts)
        return self._pad(seqs, padding_side)

    def _pad(self, seqs: list[list[int]], padding_side: str) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            cols = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
            ids[i, cols] = torch.tensor(s)
            mask[i, cols] = 1
        positions = left_padded_positions(mask) if padding_side == "left" else torch.arange(width).expand(len(seqs), -1)
        dev = self.device
        return {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), "position_ids": positions.to(dev)}

    # -- chat --------------------------------------------------------------------------------------
    def chat_prompt(self, user: str | list[dict], system: str | None = None) -> str:
        """The prompt text for a chat turn, with the model's chat template and the assistant prefix.

        ``user`` is the user's message, or a full list of ``{"role", "content"}`` messages.
        """
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{self.name} has no chat template: use plain prompts (chat=False)")
        if not isinstance(user, (str, list)):
            raise TypeError(f"user must be a message (a string) or a list of {{'role', 'content'}} dicts, got {type(user).__name__}")
        messages = [{"role": "user", "content": user}] if isinstance(user, str) else list(user)
        if system is not None:
            messages = [{"role": "system", "content": system}] + messages
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _chat_texts(self, prompts, chat: bool, system: str | None):
        if not chat:
            if system is not None:
                raise ValueError("a system message needs chat=True (it is part of the chat template)")
            return prompts
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("prompts must not be empty")
        if any(not isinstance(p, str) or not p for p in prompts):
            raise ValueError("prompts must be non-empty strings (chat=True wraps each in the chat template)")
        return [self.chat_prompt(p, system=system) for p in prompts]

    # -- next-token distributions ------------------------------------------------------------------
    def last_logits(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        """The model's logits at the last position of each row, ``[batch, vocab]`` (the model's dtype and device).

        Takes prepared inputs: token ids ``[batch, seq]`` without padding, a left-padded batch from
        :meth:`batch` (``lm.last_logits(**lm.batch(prompts))``) or ``inputs_embeds``. The output layer runs on
        the last position only (``logits_to_keep=1``), so no ``[batch, seq, vocab]`` tensor is ever held.
        Gradients flow when they are enabled (no ``torch.no_grad`` inside).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give input_ids or inputs_embeds (one of them)")
        x = input_ids if input_ids is not None else inputs_embeds
        if not isinstance(x, torch.Tensor) or x.dim() != (2 if input_ids is not None else 3) or x.shape[0] == 0:
            raise ValueError(f"input_ids must be a non-empty [batch, seq] tensor (inputs_embeds [batch, seq, d_model]), "
                             f"got {getattr(x, 'shape', type(x).__name__)}")
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                         position_ids=position_ids, logits_to_keep=1, use_cache=False)
        return out.logits[:, -1]

    def _next_logits_batches(self, seqs: list[list[int]], batch_size: int, shared_prefix: bool, progress: bool = False
                             ) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Yield ``(row indices, next-token logits [rows, vocab])`` batch by batch, without gradients."""
        starts = _progress(range(0, len(seqs), batch_size), progress, "next-token logits")
        if not shared_prefix:
            for start in starts:
                rows = list(range(start, min(start + batch_size, len(seqs))))
                with torch.no_grad():
                    yield rows, self.last_logits(**self._pad([seqs[i] for i in rows], "left"))
            return
        # Shared prefixes: sort the sequences so that each batch of neighbours shares a long common prefix
        # (for a sorted list that is the common prefix of the batch's first and last member); run the prefix
        # once, repeat its key/value cache over the batch, and run only the left-padded suffixes, their
        # positions continuing after the prefix.
        from transformers import DynamicCache

        order = sorted(range(len(seqs)), key=seqs.__getitem__)
        dev = self.device
        for start in starts:
            rows = order[start : start + batch_size]
            first, last = seqs[rows[0]], seqs[rows[-1]]
            shortest = min(len(seqs[i]) for i in rows)
            n_pre = 0
            while n_pre < min(len(first), len(last), shortest - 1) and first[n_pre] == last[n_pre]:
                n_pre += 1
            suffix = self._pad([seqs[i][n_pre:] for i in rows], "left")
            kwargs = {}
            mask, positions = suffix["attention_mask"], suffix["position_ids"] + n_pre
            with torch.no_grad():
                if n_pre > 0:
                    cache = DynamicCache(config=self.model.config)
                    self.model(input_ids=torch.tensor([first[:n_pre]], device=dev), past_key_values=cache,
                               use_cache=True, logits_to_keep=1)
                    cache.batch_repeat_interleave(len(rows))
                    mask = torch.cat([torch.ones((len(rows), n_pre), dtype=mask.dtype, device=dev), mask], 1)
                    kwargs = dict(past_key_values=cache, use_cache=True)
                logits = self.model(input_ids=suffix["input_ids"], attention_mask=mask, position_ids=positions,
                                    logits_to_keep=1, **kwargs).logits[:, -1]
            yield rows, logits

    def next_token_logits(self, prompts, batch_size: int = 32, shared_prefix: bool = False,
                          progress: bool = False) -> torch.Tensor:
        """Logits of the token that follows each prompt, ``[n_prompts, vocab]`` (float32, on the CPU).

        Prompts are strings or token-id lists, run in left-padded batches of ``batch_size`` through
        :meth:`last_logits`. ``shared_prefix=True`` is for prompts that repeat long beginnings (chat markup,
        a system message, few-shot demonstrations): the prompts are sorted so that each batch shares a long
        common prefix, which runs once and whose key/value cache serves the whole batch; the result equals
        the plain computation up to float rounding, in the original order. ``progress=True`` shows a
        progress bar over the batches.
        """
        seqs = self._sequences(prompts)
        batch_size = _positive_int(batch_size, "batch_size")
        out = torch.empty(len(seqs), self.vocab_size)
        for rows, logits in self._next_logits_batches(seqs, batch_size, shared_prefix, progress):
            out[torch.tensor(rows)] = logits.float().cpu()
        return out

    def next_token_probs(self, prompts, batch_size: int = 32, shared_prefix: bool = False) -> torch.Tensor:
        """p(next token | prompt) for each prompt, shape ``[n_prompts, vocab]``; rows sum to 1."""
        return torch.softmax(self.next_token_logits(prompts, batch_size, shared_prefix), dim=-1)

    def top_tokens(self, prompt: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` most likely next tokens after ``prompt`` with their probabilities."""
        k = _positive_int(k, "k")
        if k > self.vocab_size:
            raise ValueError(f"k = {k} is more than the vocabulary's {self.vocab_size} tokens")
        probs = self.next_token_probs(prompt)[0]
        p, idx = probs.topk(k)
        return [(self.tokenizer.decode([int(i)]), float(q)) for q, i in zip(p, idx)]

    # -- scoring continuations ---------------------------------------------------------------------
    def logprobs(self, prompts, continuations, reduce: str = "sum", batch_size: int = 16, grad: bool = False):
        """log p(continuation | prompt) for each pair, batched with padding and a mask.

        Prompt and continuation are tokenised separately and concatenated, so only the continuation's
        tokens are scored: log p(c | p) = Σ_t log p(c_t | p, c_<t). A single prompt is paired with every
        continuation. ``reduce`` is ``"sum"`` (total log-probability), ``"mean"`` (per token) or
        ``"none"`` (a list of per-token tensors). With ``grad=True`` the result keeps its graph
        (for training); otherwise it is computed without gradients and returned on the CPU.
        """
        conts = _as_list(continuations, "continuations")
        prs = _as_list(prompts, "prompts")
        if len(prs) == 1 and len(conts) > 1:
            prs = prs * len(conts)
        if len(prs) != len(conts):
            raise ValueError(f"{len(prs)} prompts but {len(conts)} continuations: give one prompt or one per continuation")
        if reduce not in ("sum", "mean", "none"):
            raise ValueError(f"reduce must be 'sum', 'mean' or 'none', not {reduce!r}")
        batch_size = _positive_int(batch_size, "batch_size")
        results: list[torch.Tensor] = []
        with torch.set_grad_enabled(grad):
            for start in range(0, len(conts), batch_size):
                results.extend(self._score(prs[start : start + batch_size], conts[start : start + batch_size], grad))
        if reduce == "none":
            return results
        sums = [r.sum() if reduce == "sum" else r.mean() for r in results]
        return torch.stack(sums)

    def _score(self, prompts: list[str], conts: list[str], grad: bool) -> list[torch.Tensor]:
        rows, spans = [], []
        for p, c in zip(prompts, conts):
            if not isinstance(c, str) or not c:
                raise ValueError("continuations must be non-empty strings")
            if not isinstance(p, str) or not p:
                raise ValueError("prompts must be non-empty strings")
            p_ids, c_ids = self.encode(p), self.encode(c)
            rows.append(p_ids + c_ids)
            spans.append((len(p_ids), len(p_ids) + len(c_ids)))
        width = max(len(r) for r in rows)
        if self.max_length and width > self.max_length:
            raise ValueError(f"a prompt with its continuation has {width} tokens, more than the context of {self.max_length}")
        enc = self._pad(rows, "right")
        logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
        ids = enc["input_ids"]
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        out = [logp[i, a - 1 : b - 1] for i, (a, b) in enumerate(spans)]
        return out if grad else [o.detach().cpu() for o in out]

    def option_logprobs(self, prompts, options, normalize: bool = False, chat: bool = False, system: str | None = None,
                        shared_prefix: bool = False, batch_size: int = 32, return_next_logits: bool = False,
                        progress: bool = False):
        """log p(option | prompt) = Σ_t log p(o_t | prompt, o_<t) for answer options, ``[n_prompts, n_options]``.

        ``options`` is one list of strings for every prompt (``[" A", " B", " C"]``) or one list per prompt
        (all of the same length). ``chat=True`` wraps each prompt in the chat template (with ``system``) and
        reads the options as the assistant's reply. ``normalize=True`` renormalises over the options:
        log p(o | prompt, o ∈ options).

        When every option is a single token the next-token distribution answers all of them at once (one
        left-padded pass per batch; ``shared_prefix=True`` reuses the key/value cache of long common
        beginnings, see :meth:`next_token_logits`). Otherwise each prompt runs **once** with its key/value
        cache kept and every option feeds only its own tokens on top, so k options cost one prompt pass plus
        k short passes. Both equal :meth:`logprobs` up to float rounding (tested). With
        ``return_next_logits=True`` also returns the next-token logits after each prompt ``[n, vocab]``.
        ``progress=True`` shows a progress bar over the batches.
        """
        texts = self._chat_texts(prompts, chat, system)
        seqs = self._sequences(texts)
        n = len(seqs)
        if isinstance(options, str) or not isinstance(options, Sequence) or len(options) == 0:
            raise ValueError("options must be a non-empty list of strings (or one such list per prompt)")
        per_prompt = not isinstance(options[0], str)
        table = [list(o) for o in options] if per_prompt else [list(options)] * n
        if len(table) != n:
            raise ValueError(f"{len(table)} lists of options for {n} prompts: give one list per prompt, or one list for all")
        k = len(table[0])
        if k == 0 or any(len(row) != k for row in table):
            raise ValueError("every prompt needs the same number of options (at least one)")
        if any(not isinstance(o, str) or not o for row in table for o in row):
            raise ValueError("options must be non-empty strings")
        for row in table:
            if len(set(row)) != len(row):
                dup = sorted({o for o in row if row.count(o) > 1})
                raise ValueError(f"the options contain duplicates {dup}: each option must appear once")
        batch_size = _positive_int(batch_size, "batch_size")
        cache: dict[str, list[int]] = {}
        conts = [[cache.setdefault(o, self.encode(o)) for o in row] for row in table]
        if any(not c for row in conts for c in row):
            raise ValueError("every option must be at least one token")
        longest = max(len(s) + max(len(c) for c in row) - 1 for s, row in zip(seqs, conts))
        if self.max_length and longest > self.max_length:
            raise ValueError(f"a prompt with its option has {longest} tokens, more than the context of {self.max_length}")
        scores = torch.zeros(n, k, dtype=torch.float64)
        nexts = torch.empty(n, self.vocab_size) if return_next_logits else None
        if all(len(c) == 1 for row in conts for c in row):
            ids = torch.tensor([[c[0] for c in row] for row in conts])
            for rows, logits in self._next_logits_batches(seqs, batch_size, shared_prefix, progress):
                r = torch.tensor(rows)
                logp = torch.log_softmax(logits.float(), -1)
                scores[r] = logp.gather(-1, ids[r].to(logp.device)).double().cpu()
                if nexts is not None:
                    nexts[r] = logits.float().cpu()
        else:
            for start in _progress(range(0, n, batch_size), progress, "option log-probabilities"):
                rows = list(range(start, min(start + batch_size, n)))
                lp, nl = self._multi_token_options([seqs[i] for i in rows], [conts[i] for i in rows])
                scores[rows] = lp
                if nexts is not None:
                    nexts[rows] = nl
        lp = scores.float()
        if normalize:
            lp = torch.log_softmax(lp, -1)
        return (lp, nexts) if return_next_logits else lp

    @torch.no_grad()
    def _multi_token_options(self, seqs: list[list[int]], conts: list[list[list[int]]]):
        """Options of several tokens: each prompt once (key/value cache kept), each option on top of it."""
        enc = self._pad(seqs, "left")
        mask = enc["attention_mask"]
        first = self.model(**enc, use_cache=True, logits_to_keep=1)
        cache, first_logits = first.past_key_values, first.logits[:, -1].float()
        first_logp = torch.log_softmax(first_logits, -1)
        prompt_len = mask.sum(-1)
        dev, pad = self.device, self.tokenizer.pad_token_id
        scores = torch.zeros(len(seqs), len(conts[0]), dtype=torch.float64)
        for j in range(len(conts[0])):
            col = [row[j] for row in conts]
            longest = max(len(c) for c in col)
            ids = torch.full((len(col), longest), pad, dtype=torch.long)
            cmask = torch.zeros((len(col), longest), dtype=torch.long)
            for i, c in enumerate(col):
                ids[i, : len(c)] = torch.tensor(c)
                cmask[i, : len(c)] = 1
            ids, cmask = ids.to(dev), cmask.to(dev)
            total = first_logp.gather(-1, ids[:, :1]).double()[:, 0].cpu()  # log p(o_1 | prompt)
            if longest > 1:
                pos = prompt_len[:, None] + torch.arange(longest - 1, device=dev)[None]
                logits = self.model(input_ids=ids[:, :-1], attention_mask=torch.cat([mask, cmask[:, :-1]], 1),
                                    position_ids=pos, past_key_values=copy.deepcopy(cache), use_cache=True).logits.float()
                logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])[..., 0]
                total += (logp * cmask[:, 1:]).sum(-1).double().cpu()
            scores[:, j] = total
        return scores, first_logits.cpu()

    # -- generation --------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        chat: bool = True,
        system: str | None = None,
        seed: int | None = None,
        batch_size: int = 16,
    ) -> str | list[str]:
        """Generate a reply to each prompt (greedy when ``temperature == 0``).

        With ``chat=True`` each prompt is a user message wrapped in the chat template; with ``chat=False``
        it is continued as plain text. Returns only the new text (a string for a single prompt).
        ``seed`` makes sampling reproducible. Prompts run in left-padded batches of ``batch_size``.
        """
        single = isinstance(prompts, str)
        prompts = _as_list(prompts, "prompts")
        if any(not isinstance(p, str) or not p for p in prompts):  # before the chat template hides it
            raise ValueError("prompts must be non-empty strings")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        max_new_tokens = _positive_int(max_new_tokens, "max_new_tokens")
        batch_size = _positive_int(batch_size, "batch_size")
        texts = [self.chat_prompt(p, system=system) for p in prompts] if chat else list(prompts)
        seqs = self._sequences(texts)
        if seed is not None:
            torch.manual_seed(seed)
        replies: list[str] = []
        for start in range(0, len(seqs), batch_size):
            enc = self._pad(seqs[start : start + batch_size], "left")
            enc.pop("position_ids")  # generate() derives them from the attention mask
            kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            out = self.model.generate(**enc, **kwargs)
            new = out[:, enc["input_ids"].shape[1] :]
            replies.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return replies[0] if single else replies

    # -- inside the model --------------------------------------------------------------------------
    def _layers(self, layers) -> list[int]:
        if layers is None:
            return list(range(self.n_layers))
        layers = [layers] if isinstance(layers, int) and not isinstance(layers, bool) else list(layers)
        if not layers:
            raise ValueError("layers must not be empty")
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise TypeError(f"layer indices must be ints, got {layer!r}")
            if not 0 <= layer < self.n_layers:
                raise ValueError(f"layer {layer} out of range: this model has {self.n_layers} layers (0-{self.n_layers - 1})")
        return layers

    @torch.no_grad()
    def last_token_states(self, prompts, layers=None, batch_size: int = 32) -> torch.Tensor:
        """Residual stream after each layer (``resid_post.l``) at each prompt's last token: ``[n_layers, n, d_model]``.

        All requested layers are captured in one forward pass per batch (left padding with correct position
        ids, so a prompt's states do not depend on its batch-mates). Returned on the CPU as float32.
        """
        seqs = self._sequences(prompts)
        layers = self._layers(layers)
        batch_size = _positive_int(batch_size, "batch_size")
        sites = [f"resid_post.{layer}" for layer in layers]
        out = []
        for start in range(0, len(seqs), batch_size):
            enc = self._pad(seqs[start : start + batch_size], "left")
            with hooks.capture(self, sites, positions=-1) as cache, hooks.stop_after(self, f"resid_post.{max(layers)}"):
                self.model(**enc, use_cache=False)
            out.append(torch.stack([cache[s] for s in sites]).float().cpu())
        return torch.cat(out, dim=1)

    def run_to(self, site: str, input_ids: torch.Tensor, attention_mask=None, position_ids=None,
               positions=None) -> torch.Tensor:
        """The activation at ``site`` for these inputs, with the forward pass stopped right after it.

        The layers above the site cannot change it, so an early site costs only the layers below it.
        ``positions`` keeps only these sequence positions (as in :func:`hooks.capture`). Gradients flow when
        enabled (the activation stays in the graph).
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty [batch, seq] tensor, got {getattr(input_ids, 'shape', input_ids)!r}")
        kind, layer = hooks.parse_site(self, site)
        name = kind if layer is None else f"{kind}.{layer}"
        detach = not torch.is_grad_enabled()
        with hooks.capture(self, name, detach=detach, positions=positions) as cache, hooks.stop_after(self, name):
            self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=False)
        return cache[name]

    def run_from(self, layer: int, hidden: torch.Tensor, attention_mask=None, position_ids=None,
                 output: str = "logits", last_only: bool = True) -> torch.Tensor:
        """Run blocks ``layer …`` and the output layer from ``hidden``, the residual stream entering block ``layer``.

        ``hidden`` is ``resid_pre.layer`` ``[batch, seq, d_model]``, e.g. captured once and reused for many
        runs whose changes all sit at or above ``layer``: the blocks below are skipped, not recomputed
        (:func:`hooks.start_at`). ``attention_mask``/``position_ids`` as for the full pass (right padding
        needs none). ``output="logits"`` returns the logits, at the last position only (``[batch, vocab]``)
        unless ``last_only=False`` (``[batch, seq, vocab]``); ``output="hidden"`` returns the final hidden
        states after the last norm, ``[batch, seq, d_model]``. Hooks of :mod:`hooks` on block ``layer`` and
        above apply as in a full pass; gradients flow when enabled.
        """
        if output not in ("logits", "hidden"):
            raise ValueError(f"output must be 'logits' or 'hidden', not {output!r}")
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"hidden must be resid_pre.{layer}, a [batch, seq, {self.d_model}] tensor, got "
                             f"{getattr(hidden, 'shape', type(hidden).__name__)}")
        hidden = hidden.to(self.device)
        with hooks.start_at(self, layer, hidden):
            kwargs = dict(inputs_embeds=hidden, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            if output == "hidden":
                return self.layout.decoder(**kwargs).last_hidden_state
            if last_only:
                return self.model(**kwargs, logits_to_keep=1).logits[:, -1]
            return self.model(**kwargs).logits


def _progress(iterable, show: bool, desc: str):
    """``iterable`` with a ``tqdm.auto`` progress bar when ``show`` is true."""
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="batch")


def _as_list(x, what: str) -> list:
    if isinstance(x, str):
        return [x]
    if not isinstance(x, Sequence):
        raise TypeError(f"{what} must be a string or a list of strings, got {type(x).__name__}")
    x = list(x)
    if not x:
        raise ValueError(f"{what} must not be empty")
    return x
