"""labkit.distributed: data-parallel LoRA DPO and RLOO on two CPU processes (``accelerate launch``, gloo) equal the
one-process runs, on a tiny randomly initialised Llama saved to a folder (the course tokenizer; no download).

One launch of tests/distributed_worker.py trains three ways on two processes; the test repeats each on one process
with the unchanged code path (no accelerator) and compares per-step losses and the final adapters:

* the command line ``python -m labkit.distributed dpo`` on notebook 12's pairs, with uneven shards (9 pairs per
  step split 5/4, 3 pairs split 2/1): the mean over the step's pairs must be weighted by shard size;
* ``LoraDPO.train`` with one pair per step, so that process 1's shard is always empty;
* ``LoraRLOO.train``: the two processes sample for their shards of 3 prompts (2 and 1) with their own random
  streams; the one-process reference applies :meth:`LoraRLOO.update` to the union of both processes' samples.

Both processes must end with bit-identical adapters. Tolerance against one process: 1e-5 absolute or 1e-5 relative
on every per-step statistic and adapter weight (float32 sums taken in another order; the largest difference seen
was 1.0e-5 absolute, 1.7e-6 relative, on a mean log-ratio log π_θ/π_ref of 5.78 after four steps).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import distributed_worker as W
import pytest
import torch

from labkit import distributed, dpo, rlhf
from labkit.lm import load_lm

HERE = Path(__file__).resolve().parent
ATOL = RTOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, lm) -> Path:
    """A tiny random Llama (3 layers, width 32) with the course tokenizer, saved with save_pretrained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = lm.tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.2,
                      pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def two_processes(tiny_folder, tmp_path_factory) -> dict:
    """Each process's outputs of tests/distributed_worker.py, started by ``accelerate launch`` on two CPU processes."""
    out = tmp_path_factory.mktemp("ranks")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           str(HERE / "distributed_worker.py"), str(tiny_folder), str(out)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert "on 2 process(es), DistributedType.MULTI_CPU" in run.stdout, run.stdout
    return {name: [torch.load(out / f"{name}_rank{r}.pt", weights_only=False) for r in range(2)]
            for name in ("dpo", "dpo_single_pair", "rloo")}


def _same_adapters(ranks):
    for a, b in zip(ranks[0]["adapter"], ranks[1]["adapter"]):
        assert torch.equal(a, b), "the two processes hold different adapters"


def _close(adapter, reference):
    moved = 0
    for a, p in zip(adapter, reference):
        torch.testing.assert_close(a, p.detach(), atol=ATOL, rtol=RTOL)
        moved += int(p.detach().abs().max() > 1e-3)
    assert moved, "no adapter weight moved: the comparison would be empty"


def test_dpo_command_line_on_two_processes_equals_one_process(two_processes, tiny_folder):
    ranks = two_processes["dpo"]
    assert [r["world"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    _same_adapters(ranks)
    # one process, the notebooks' code path (no accelerator), with the command line's settings
    args = distributed.parser().parse_args(["dpo", "--model", str(tiny_folder), *W.DPO_ARGS])
    lm = load_lm(tiny_folder, device="cpu")
    data = distributed.dpo_data(lm, args.prompts, args.responses)
    assert len(data["chosen"]) == 12  # 4 prompts × 3 pairs: steps of 9 pairs (5 + 4) and 3 pairs (2 + 1)
    trainer = dpo.LoraDPO(lm, data["prompts"], data["responses"], n_lora_layers=args.n_lora_layers, rank=args.rank,
                          device="cpu", seed=args.seed)
    hist = trainer.train(data["chosen"], data["rejected"], beta=args.beta, epochs=args.epochs, groups=data["groups"],
                         groups_per_step=args.groups_per_step, lr=args.lr, seed=args.seed, progress=False)
    assert len(hist["loss"]) == 4
    for key in ("loss", "chosen_logratio", "rejected_logratio", "margin", "accuracy"):
        for r in ranks:
            assert r["history"][key] == pytest.approx(hist[key], rel=RTOL, abs=ATOL), key
    assert hist["loss"][-1] < hist["loss"][0] - 1e-3  # it trained
    _close(ranks[0]["adapter"], trainer.adapter_parameters)


def test_dpo_with_an_empty_shard_equals_one_process(two_processes, tiny_folder):
    ranks = two_processes["dpo_single_pair"]
    _same_adapters(ranks)
    lm = load_lm(tiny_folder, device="cpu")
    data = distributed.dpo_data(lm, 2, 3)
    trainer = dpo.LoraDPO(lm, data["prompts"], data["responses"], n_lora_layers=1, rank=2, device="cpu", seed=1)
    s = W.SINGLE_PAIRS
    hist = trainer.train(torch.tensor(s["chosen"]), torch.tensor(s["rejected"]), beta=s["beta"], epochs=1,
                         pairs_per_step=1, lr=s["lr"], seed=s["seed"], progress=False)
    assert ranks[0]["history"]["loss"] == pytest.approx(hist["loss"], rel=RTOL, abs=ATOL)
    _close(ranks[1]["adapter"], trainer.adapter_parameters)


def _merge(batches: list[dict], pad_id: int) -> dict:
    """Row-concatenate right-padded batches, padding them to a common width."""
    width = max(b["input_ids"].shape[1] for b in batches)
    out = {}
    for key in ("input_ids", "attention_mask", "response_mask"):
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.cat([torch.nn.functional.pad(b[key], (0, width - b[key].shape[1]), value=fill) for b in batches])
    return out


def test_rloo_on_two_processes_equals_one_process_on_their_samples(two_processes, tiny_folder):
    ranks = two_processes["rloo"]
    _same_adapters(ranks)
    k = W.RLOO["k"]
    assert [len(r["samples"][0][1]) for r in ranks] == [2 * k, 1 * k]  # prompt shards of 2 and 1
    lm = load_lm(tiny_folder, device="cpu")
    tr = rlhf.LoraRLOO(lm, W.rloo_prompts(lm), W.length_reward, k=k, max_new_tokens=W.RLOO["max_new_tokens"],
                       n_lora_layers=W.RLOO["n_lora_layers"], rank=W.RLOO["rank"], lr=W.RLOO["lr"], device="cpu",
                       seed=W.RLOO["seed"])
    for step in range(W.RLOO["steps"]):
        batch = _merge([r["samples"][step][0] for r in ranks], lm.tokenizer.pad_token_id)
        texts = ranks[0]["samples"][step][1] + ranks[1]["samples"][step][1]
        m = tr.update(batch, texts)
        for r in ranks:
            for key in ("proxy", "kl", "loss", "tokens"):
                assert r["history"][key][step] == pytest.approx(m[key], rel=RTOL, abs=ATOL), (key, step)
        assert texts == (ranks[0]["history"]["first_texts"] if step == 0 else ranks[1]["history"]["last_texts"])
    _close(ranks[0]["adapter"], tr.adapter.adapter_parameters)
    tr.remove()


def test_data_parallel_on_one_process_is_the_identity():
    from accelerate import PartialState

    dp = distributed.DataParallel(PartialState())  # one process: no launcher
    assert (dp.world, dp.rank, dp.is_main) == (1, 0, True)
    x = torch.arange(5)
    assert torch.equal(dp.shard(x), x)
    v = torch.tensor([1.5, -2.0])
    assert torch.equal(dp.sum(v), v)
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    dp.sum_gradients_([p])
    dp.broadcast_([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0)) and torch.equal(p.detach(), torch.ones(3))
    assert dp.gather_texts(["a", "b"]) == ["a", "b"]
    dp.check_device(dp.device)
    # the shards of 7 items over 3 processes, as each process computes them: contiguous, sizes 3, 2, 2
    parts = []
    for rank in range(3):
        dp.world, dp.rank = 3, rank
        parts.append(dp.shard(torch.arange(7)).tolist())
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
