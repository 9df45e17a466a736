"""Tests of labkit.lm.model.LanguageModel: the course model against ground truth computed by hand with the raw
Hugging Face model, and clear errors for bad input, refused before the model runs."""

from __future__ import annotations

import pytest
import torch

from labkit.lm import LanguageModel, load_embedder

LONG = " the" * 9000  # 9000 tokens, more than SmolLM2's context of 8192

# Pairs of very different lengths, so that batching pads: (1 + 10 tokens), (21 + 1), (5 + 4).
PAIRS = [
    ("Hi", " there, how are you doing today my friend?"),
    ("Once upon a time in a land far away, there lived a very old king who had three daughters and", " a"),
    ("The capital of France is", " Paris, a city"),
]

# --------------------------------------------------------------------------------------------------
# Helpers and fixtures


def logprobs_by_hand(lm: LanguageModel, prompt: str, continuation: str) -> torch.Tensor:
    """log p(c_t | prompt, c_<t) for each continuation token: one unbatched forward pass, no padding."""
    p_ids, c_ids = lm.encode(prompt), lm.encode(continuation)
    ids = torch.tensor([p_ids + c_ids])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), dim=-1)
    positions = torch.arange(len(p_ids) - 1, len(p_ids) + len(c_ids) - 1)
    return logp[positions, torch.tensor(c_ids)]


def last_logits(model, lm: LanguageModel, prompt: str) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([lm.encode(prompt)])).logits[0, -1]


@pytest.fixture(scope="module")
def by_hand(lm):
    return [logprobs_by_hand(lm, p, c) for p, c in PAIRS]


@pytest.fixture(scope="module")
def tiny_gpt2(lm):
    """A tiny random GPT-2 (absolute position embeddings) with the course tokenizer: no download."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(lm.tokenizer), n_embd=16, n_layer=2, n_head=2, n_positions=64)
    config.bos_token_id = config.eos_token_id = lm.tokenizer.eos_token_id
    return LanguageModel(GPT2LMHeadModel(config).eval(), lm.tokenizer, name="tiny-gpt2")


@pytest.fixture
def no_forward(lm, monkeypatch):
    """Make any forward pass of the course model fail, to prove that bad input is refused before it."""

    def forward(*args, **kwargs):
        raise AssertionError("the model ran on bad input")

    monkeypatch.setattr(lm.model, "forward", forward)


# --------------------------------------------------------------------------------------------------
# Tokens and the chat template


def test_token_ids(lm):
    assert lm.token_id(" he") == 384  # course facts, used in the bias notebooks
    assert lm.token_id(" she") == 1041
    assert lm.encode(" he") == [384] and lm.tokens(" he she") == [" he", " she"]


@pytest.mark.parametrize("text", [" unbelievably", "", "he said"])
def test_token_id_of_several_tokens_names_them(lm, text):
    tokens = lm.tokens(text)
    with pytest.raises(ValueError, match=f"is {len(tokens)} tokens") as info:
        lm.token_id(text)
    assert str(tokens) in str(info.value) and "not one" in str(info.value)


def test_chat_prompt(lm):
    prompt = lm.chat_prompt("What is 2+2?")
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert prompt.startswith("<|im_start|>system\n")  # SmolLM2's template adds its default system turn
    custom = lm.chat_prompt("Hi", system="Answer in one word.")
    assert custom.startswith("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nHi")
    assert custom.count("<|im_start|>system") == 1
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]
    multi = lm.chat_prompt(turns)
    assert "<|im_start|>assistant\nHello!<|im_end|>" in multi and multi.endswith("Bye<|im_end|>\n<|im_start|>assistant\n")


# --------------------------------------------------------------------------------------------------
# Next-token distributions


def test_next_token_probs_match_the_raw_model(lm):
    prompts = ["The cat sat on the", "Once upon a time in a land far away, there lived a king who", "Hi"]
    probs = lm.next_token_probs(prompts)  # left-padded batch
    assert probs.shape == (3, len(lm.tokenizer)) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3), atol=1e-5, rtol=0)
    for row, prompt in zip(probs, prompts):
        single = lm.next_token_probs(prompt)
        assert single.shape == (1, len(lm.tokenizer))
        torch.testing.assert_close(row, single[0], atol=1e-5, rtol=0)
        by_hand = torch.softmax(last_logits(lm.model, lm, prompt), -1)
        torch.testing.assert_close(single[0], by_hand, atol=1e-6, rtol=0)
    top = lm.top_tokens(prompts[0], k=3)
    assert [t for t, _ in top] == [lm.tokenizer.decode([int(i)]) for i in probs[0].topk(3).indices]
    assert [p for _, p in top] == pytest.approx(probs[0].topk(3).values.tolist(), abs=1e-5)


def test_left_padding_keeps_absolute_positions(tiny_gpt2):
    """GPT-2 adds absolute position embeddings: a left-padded prompt must still start at position 0."""
    prompts = ["a b c d e f g h i j", "Hi"]
    batch = tiny_gpt2.next_token_logits(prompts)
    for row, prompt in zip(batch, prompts):
        torch.testing.assert_close(row, last_logits(tiny_gpt2.model, tiny_gpt2, prompt), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------------
# Scoring continuations


def test_logprobs_none_match_by_hand(lm, by_hand):
    got = lm.logprobs([p for p, _ in PAIRS], [c for _, c in PAIRS], reduce="none", batch_size=2)
    assert isinstance(got, list) and len(got) == len(PAIRS)
    for g, expected, (_, c) in zip(got, by_hand, PAIRS):
        assert g.shape == (len(lm.encode(c)),) and not g.requires_grad
        torch.testing.assert_close(g, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_logprobs_reduced_match_by_hand(lm, by_hand, reduce):
    got = lm.logprobs([p for p, _ in PAIRS], [c for _, c in PAIRS], reduce=reduce)
    expected = torch.stack([e.sum() if reduce == "sum" else e.mean() for e in by_hand])
    assert got.shape == (len(PAIRS),) and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert (got < 0).all()


def test_one_prompt_is_paired_with_every_continuation(lm):
    prompt, conts = "The capital of France is", [" Paris", " London", " a large city in Europe"]
    broadcast = lm.logprobs(prompt, conts)
    assert torch.equal(broadcast, lm.logprobs([prompt] * 3, conts))
    assert broadcast.argmax() == 0  # a sanity fact of any competent LM


def test_logprobs_with_grad(lm):
    with_grad = lm.logprobs("Hi", " there", grad=True)
    assert with_grad.grad_fn is not None and with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), lm.logprobs("Hi", " there"), atol=1e-5, rtol=0)
    assert lm.logprobs("Hi", " there").grad_fn is None


def test_logprobs_gradient_reaches_the_weights(tiny_gpt2):
    tiny_gpt2.model.zero_grad()
    loss = -tiny_gpt2.logprobs(["a b", "Hi"], [" c d e", " there"], grad=True).sum()
    loss.backward()
    grad = tiny_gpt2.model.transformer.wte.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    tiny_gpt2.model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------------------------------
# Generation


def test_greedy_generation_is_the_argmax(lm):
    prompt = "The capital of France is"
    reply = lm.generate(prompt, max_new_tokens=1, chat=False)
    assert reply == lm.tokenizer.decode([int(lm.next_token_logits(prompt)[0].argmax())])


def test_greedy_generation_is_deterministic_and_batch_equals_one_by_one(lm):
    prompts = ["What is 2+2?", "Name one colour of the rainbow, and say why you like it."]
    batch = lm.generate(prompts, max_new_tokens=5)  # left-padded: the chat prompts differ in length
    one_by_one = [lm.generate(p, max_new_tokens=5) for p in prompts]
    assert isinstance(batch, list) and all(isinstance(r, str) and r for r in one_by_one)
    assert batch == one_by_one
    assert lm.generate(prompts[0], max_new_tokens=5) == one_by_one[0]


def test_sampling_with_a_seed_reproduces(lm):
    kwargs = dict(max_new_tokens=5, temperature=1.0, seed=123, chat=False)
    first = lm.generate("Once upon a time", **kwargs)
    assert lm.generate("Once upon a time", **kwargs) == first


# --------------------------------------------------------------------------------------------------
# Bad input to the wrapper: refused with a clear message, before the model runs


BAD_INPUT = {
    "empty prompt (probs)": (lambda lm: lm.next_token_probs(""), "prompts must be non-empty"),
    "no prompts (probs)": (lambda lm: lm.next_token_probs([]), "prompts must not be empty"),
    "prompt too long (probs)": (lambda lm: lm.next_token_probs(LONG), "9000 tokens, more than the model's context of 8192"),
    "empty prompt (logprobs)": (lambda lm: lm.logprobs("", " a"), "prompts must be non-empty"),
    "empty continuation": (lambda lm: lm.logprobs("Hi", ""), "continuations must be non-empty"),
    "no continuations": (lambda lm: lm.logprobs("Hi", []), "continuations must not be empty"),
    "mismatched counts": (lambda lm: lm.logprobs(["a", "b"], [" x", " y", " z"]), "2 prompts but 3 continuations"),
    "prompt too long (logprobs)": (lambda lm: lm.logprobs(LONG, " a"), "9001 tokens, more than the context of 8192"),
    "continuation pushes past the context": (
        lambda lm: lm.logprobs(" the" * 8190, " the the the"),
        "8193 tokens, more than the context of 8192",
    ),
    "invalid reduce": (lambda lm: lm.logprobs("Hi", " there", reduce="max"), "reduce must be 'sum', 'mean' or 'none'"),
    "negative temperature": (lambda lm: lm.generate("Hi", temperature=-0.5), "temperature must be >= 0"),
    "empty prompt (generate)": (lambda lm: lm.generate(""), "prompts must be non-empty"),
    "empty prompt in a batch (generate)": (lambda lm: lm.generate(["Hi", ""], chat=False), "prompts must be non-empty"),
    "no prompts (generate)": (lambda lm: lm.generate([]), "prompts must not be empty"),
    "prompt too long (generate)": (lambda lm: lm.generate(LONG, chat=False), "more than the model's context of 8192"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_before_the_model_runs(lm, no_forward, case):
    call, message = BAD_INPUT[case]
    with pytest.raises(ValueError, match=message):
        call(lm)


# --------------------------------------------------------------------------------------------------
# The sentence embedder


def test_embedder_paraphrases_are_closer_than_unrelated_sentences():
    embedder = load_embedder()
    sentences = [
        "The cat is sleeping on the sofa.",
        "A cat naps on the couch.",
        "Interest rates rose again this quarter.",
    ]
    emb = torch.as_tensor(embedder.encode(sentences, normalize_embeddings=True))
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    cos = emb @ emb.T
    assert cos[0, 1] > cos[0, 2] + 0.3 and cos[0, 1] > cos[1, 2] + 0.3, cos
