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
# Answer options and shared prefixes


def test_option_logprobs_equal_lm_logprobs(lm):
    prompt = "Question: What is 2 plus 2?\nAnswer:"
    lp = lm.option_logprobs([prompt], [" 4", " 5", " four"])  # " four" is one token: the next-token route
    torch.testing.assert_close(lp[0], lm.logprobs(prompt, [" 4", " 5", " four"]), atol=1e-4, rtol=0)


def test_multi_token_options_with_a_cache_equal_plain_forward_passes(lm):
    prompts = ["Question: What is the capital of France?\nAnswer:", "Question: How many legs does a spider have?\nAnswer:"]
    options = [[" Paris", " the city of Rome", " Berlin"], [" eight", " six", " a great many legs indeed"]]
    lp, nxt = lm.option_logprobs(prompts, options, return_next_logits=True, batch_size=1)
    ref = torch.stack([lm.logprobs(p, o) for p, o in zip(prompts, options)])
    torch.testing.assert_close(lp, ref, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(nxt, lm.next_token_logits(prompts), atol=1e-3, rtol=1e-4)
    normalized = lm.option_logprobs(prompts, options, normalize=True)
    torch.testing.assert_close(normalized, torch.log_softmax(ref, -1), atol=1e-3, rtol=1e-4)


def test_single_token_options_match_next_token_probs(lm):
    prompts = ["Question: Which animal can fly?\nA) a bird\nB) a dog\nC) a fish\nAnswer:", "The capital of France is"]
    lp = lm.option_logprobs(prompts, [" A", " B", " C"])
    ref = torch.log(lm.next_token_probs(prompts))[:, [lm.token_id(t) for t in (" A", " B", " C")]]
    torch.testing.assert_close(lp, ref, atol=1e-4, rtol=0)


def test_chat_options_renormalised(lm):
    prompts = ["Is the sky blue? Answer Yes or No.", "Is fire cold? Answer Yes or No."]
    got = lm.option_logprobs(prompts, ["Yes", "No"], chat=True, normalize=True).exp()
    full = lm.next_token_probs([lm.chat_prompt(p) for p in prompts])
    ids = [lm.token_id("Yes"), lm.token_id("No")]
    torch.testing.assert_close(got, full[:, ids] / full[:, ids].sum(-1, keepdim=True), atol=1e-4, rtol=0)
    system = lm.option_logprobs(prompts[:1], ["Yes", "No"], chat=True, system="Answer in one word.")
    plain = lm.option_logprobs([lm.chat_prompt(prompts[0], system="Answer in one word.")], ["Yes", "No"])
    torch.testing.assert_close(system, plain, atol=1e-5, rtol=0)


def test_shared_prefix_scoring_equals_the_full_forward_pass(lm):
    texts = ["Hello", "Hello there, friend. A or B?", "Hello there, pal. A or B?", "Hi. A or B?", "Hello there"]
    ref = lm.option_logprobs(texts, [" A", " B"])
    full = lm.next_token_logits(texts)
    for bs in (1, 2, 5):  # different batchings share different prefixes; a prompt may be a prefix of another
        torch.testing.assert_close(lm.option_logprobs(texts, [" A", " B"], shared_prefix=True, batch_size=bs), ref,
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(lm.next_token_logits(texts, batch_size=bs, shared_prefix=True), full,
                                   atol=1e-3, rtol=1e-4)


def test_token_id_prompts_equal_text_prompts(lm):
    prefix, suffix = "Review: Great film.\nSentiment: positive\n\n", "Review: Awful food.\nSentiment:"
    ids = lm.encode(prefix) + lm.encode(suffix)
    with torch.no_grad():
        full = lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
    torch.testing.assert_close(lm.next_token_logits([ids])[0], full, atol=1e-4, rtol=0)
    torch.testing.assert_close(lm.last_logits(**lm.batch([ids, ids[:5]]))[0], full, atol=1e-4, rtol=0)


def test_batch_left_and_right_padding(lm):
    enc = lm.batch(["Hi", "The capital of France is"])
    n = len(lm.encode("Hi"))
    width = len(lm.encode("The capital of France is"))
    assert enc["input_ids"].shape == (2, width)
    assert enc["attention_mask"][0].tolist() == [0] * (width - n) + [1] * n
    assert enc["position_ids"][0, -n:].tolist() == list(range(n)) and enc["position_ids"][1].tolist() == list(range(width))
    right = lm.batch(["Hi", "The capital of France is"], padding_side="right")
    assert right["attention_mask"][0].tolist() == [1] * n + [0] * (width - n)
    assert right["position_ids"][0].tolist() == list(range(width))


# --------------------------------------------------------------------------------------------------
# Running part of the model


def test_run_to_equals_a_capture_and_stops_early(lm):
    from labkit.lm import hooks

    ids = torch.tensor([lm.encode("The capital of France is")])
    with torch.no_grad(), hooks.capture(lm, ["mlp_post.3", "resid_post.29"]) as cache:
        lm.model(input_ids=ids)
    calls = []
    handle = lm.layout.layers[4].register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            act = lm.run_to("mlp_post.3", ids)
    finally:
        handle.remove()
    assert torch.equal(act, cache["mlp_post.3"]) and not calls  # block 4 never ran
    with torch.no_grad():
        assert torch.equal(lm.run_to("resid_post.29", ids, positions=-1), cache["resid_post.29"][:, -1])


def test_run_from_equals_the_full_forward_pass(lm):
    from labkit.lm import hooks

    enc = lm.batch(["Hi there", "The capital of France is"], padding_side="right")
    with torch.no_grad():
        full = lm.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True)
        for layer in (1, 12, 29):
            h = lm.run_to(f"resid_pre.{layer}", enc["input_ids"], attention_mask=enc["attention_mask"])
            logits = lm.run_from(layer, h, attention_mask=enc["attention_mask"], last_only=False)
            torch.testing.assert_close(logits, full.logits, atol=1e-4, rtol=1e-4)
            hidden = lm.run_from(layer, h, attention_mask=enc["attention_mask"], output="hidden")
            torch.testing.assert_close(hidden, full.hidden_states[-1], atol=1e-4, rtol=1e-4)
        # a patch at or above the start layer applies as in a full pass
        zero = {"head.12": lambda a: a * 0}
        with hooks.patch(lm, zero):
            patched = lm.last_logits(input_ids=enc["input_ids"][:1, :2])
            h = lm.run_to("resid_pre.12", enc["input_ids"][:1, :2])
            started = lm.run_from(12, h)
        torch.testing.assert_close(started, patched, atol=1e-4, rtol=1e-4)
    assert all(type(b).__name__ == "LlamaDecoderLayer" for b in lm.layout.layers)  # the blocks are put back


def test_run_from_and_run_to_refuse_bad_input(lm):
    with pytest.raises(ValueError, match="out of range"):
        lm.run_from(30, torch.zeros(1, 2, lm.d_model))
    with pytest.raises(ValueError, match=r"\[batch, seq, 576\]"):
        lm.run_from(3, torch.zeros(2, lm.d_model))
    with pytest.raises(ValueError, match="output must be"):
        lm.run_from(3, torch.zeros(1, 2, lm.d_model), output="probs")
    with pytest.raises(ValueError, match="unknown site kind"):
        lm.run_to("resid.3", torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match=r"\[batch, seq\]"):
        lm.run_to("resid_pre.3", torch.tensor([1, 2]))


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
    "NaN temperature": (lambda lm: lm.generate("Hi", temperature=float("nan")), "temperature must be a finite number"),
    "top_p above 1": (lambda lm: lm.generate("Hi", temperature=1.0, top_p=5), r"top_p must be in \(0, 1\]"),
    "zero new tokens": (lambda lm: lm.generate("Hi", max_new_tokens=0), "max_new_tokens must be a positive integer"),
    "a number as prompt": (lambda lm: lm.next_token_logits(123), "prompts must be a string"),
    "batch_size 0": (lambda lm: lm.next_token_logits("Hi", batch_size=0), "batch_size must be a positive integer"),
    "batch_size 0 (logprobs)": (lambda lm: lm.logprobs("Hi", " a", batch_size=0), "batch_size must be a positive integer"),
    "k above the vocabulary": (lambda lm: lm.top_tokens("Hi", k=10**6), "more than the vocabulary"),
    "token id out of range": (lambda lm: lm.next_token_logits([[1, 10**7]]), "token ids in prompts must be integers"),
    "options of different counts": (lambda lm: lm.option_logprobs(["a", "b"], [[" x", " y"]]), "one list per prompt"),
    "duplicate options": (lambda lm: lm.option_logprobs(["a"], [" A", " A"]), "duplicates"),
    "empty option": (lambda lm: lm.option_logprobs(["a"], [" A", ""]), "non-empty strings"),
    "option past the context": (
        lambda lm: lm.option_logprobs(["hello " * (8192 - 3)], [[" a b c d e f g"]]), "more than the context"),
    "system without chat": (lambda lm: lm.option_logprobs(["a"], [" A", " B"], system="x"), "needs chat=True"),
    "bad padding side": (lambda lm: lm.batch(["a"], padding_side="middle"), "padding_side"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_refused_before_the_model_runs(lm, no_forward, case):
    call, message = BAD_INPUT[case]
    with pytest.raises((ValueError, TypeError), match=message):
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
