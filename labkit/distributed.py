"""Training on several processes (data parallel, through ``accelerate``): LoRA DPO and on-policy RLOO.

Each process holds the whole model and the same LoRA adapter. At every step it takes its **shard** of the step's
batch (DPO: a contiguous share of the step's preference pairs; RLOO: a share of the prompts, with all k samples
of each), computes the gradient of *its share of the full-batch loss*, and the shares are summed over the
processes (one all-reduce), so every process applies the gradient of the whole batch and the adapters stay
identical. For a loss that is a mean over the batch, L = 1/n Σ_i ℓ_i, process r with shard S_r computes

    ∇L_r = 1/n Σ_{i ∈ S_r} ∇ℓ_i,   and   Σ_r ∇L_r = ∇L,

where n is the size of the **whole** step's batch, not of the shard (shards may differ in size by one, or be
empty). This is the all-reduce data parallelism of distributed SGD (Goyal et al. 2017, "Accurate, large
minibatch SGD"; Li et al. 2020, "PyTorch Distributed: experiences on accelerating data parallel training"),
written out with ``accelerate``'s collectives (``reduce``, ``broadcast``, ``gather_object``) instead of
``DistributedDataParallel``, because the trainers run only the adapted top layers (``LanguageModel.run_from``)
rather than the wrapped model's ``forward``. The adapter's initial weights are broadcast from process 0.

Use it through the trainers' ``accelerator`` argument (:meth:`labkit.dpo.LoraDPO.train`,
:class:`labkit.rlhf.LoraRLOO`); without one they run on one process exactly as before. The command line trains
DPO on the data of notebook 12 (or RLOO on its prompts):

    accelerate launch --multi_gpu --num_processes 2 -m labkit.distributed dpo --epochs 2
    accelerate launch --multi_gpu --num_processes 2 -m labkit.distributed rloo --steps 8
    python -m labkit.distributed dpo --epochs 2              # one process: the notebook's numbers

``--multi_gpu`` starts the processes with ``torchrun``; on a machine without CUDA the processes use the CPU and
the ``gloo`` backend (``accelerate launch --cpu`` would need MPI). Options: ``python -m labkit.distributed dpo
--help``. Process 0 prints the per-step loss; ``--out DIR`` writes each process's history and adapter to
``DIR/<dpo|rloo>_rank<r>.pt``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["DataParallel", "dpo_data", "main", "parser"]


def _device_key(device) -> tuple[str, int]:
    """(type, index) of a device, the index made explicit (``cpu`` = ``cpu:0``, ``cuda`` = the current GPU)."""
    device = torch.device(device)
    if device.index is not None:
        return device.type, device.index
    if device.type == "cuda" and torch.cuda.is_available():
        return "cuda", torch.cuda.current_device()
    return device.type, 0


class DataParallel:
    """The collective operations of data-parallel training over an ``accelerate.Accelerator`` (or its
    ``PartialState``): this process's shard of a step's batch, sums over processes, the adapter's broadcast.

    ``world`` is the number of processes and ``rank`` this process's index. With one process every
    operation is the identity.
    """

    def __init__(self, accelerator):
        try:
            from accelerate import Accelerator, PartialState
        except ModuleNotFoundError:  # pragma: no cover - accelerate is a dependency of labkit
            raise ModuleNotFoundError("training on several processes needs the accelerate package: "
                                      "pip install accelerate") from None
        if not isinstance(accelerator, (Accelerator, PartialState)):
            raise TypeError("accelerator must be an accelerate.Accelerator (from accelerate import Accelerator; "
                            f"accelerator = Accelerator()), got {type(accelerator).__name__}")
        self.accelerator = accelerator
        self.world = int(accelerator.num_processes)
        self.rank = int(accelerator.process_index)
        self.device = accelerator.device

    @property
    def is_main(self) -> bool:
        """True on process 0 (the one that prints)."""
        return self.rank == 0

    def check_device(self, device, what: str = "the model") -> None:
        """Refuse a model on another device than this process's (``accelerator.device``)."""
        if _device_key(device) != _device_key(self.device):
            raise ValueError(f"{what} is on {device} but this process's device is {self.device}: load the model with "
                             "labkit.load_lm(device=accelerator.device)")

    def shard(self, items) -> torch.Tensor:
        """This process's contiguous share of the 1-D tensor ``items`` (``torch.tensor_split`` into ``world``
        parts: sizes differ by at most one; a part is empty when there are fewer items than processes)."""
        if not isinstance(items, torch.Tensor) or items.dim() != 1:
            raise TypeError("items must be a 1-D torch.Tensor (the indices of a step's pairs or prompts), got "
                            + (f"shape {tuple(items.shape)}" if isinstance(items, torch.Tensor) else type(items).__name__))
        return torch.tensor_split(items, self.world)[self.rank]

    def sum(self, values) -> torch.Tensor:
        """``values`` (a tensor) summed over the processes, returned on every process (all-reduce)."""
        from accelerate.utils import reduce

        if not isinstance(values, torch.Tensor) or not values.is_floating_point():
            raise TypeError(f"values must be a floating-point torch.Tensor, got "
                            f"{values.dtype if isinstance(values, torch.Tensor) else type(values).__name__}")
        if self.world == 1:
            return values.clone()
        return reduce(values.to(self.device), reduction="sum").to(values.device)

    def gather_texts(self, texts: Sequence[str]) -> list[str]:
        """Every process's list of ``texts``, concatenated in process order, on every process."""
        from accelerate.utils import gather_object

        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or any(not isinstance(t, str) for t in texts):
            raise TypeError("texts must be a list of strings")
        return list(texts) if self.world == 1 else list(gather_object(list(texts)))

    @staticmethod
    def _params(params, name: str = "params") -> list[torch.Tensor]:
        if isinstance(params, torch.Tensor):
            raise TypeError(f"{name} must be a list of parameters (e.g. trainer.adapter_parameters), not one tensor")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{name} must be a list of torch parameters, got {type(params).__name__}") from None
        if not params or any(not isinstance(p, torch.Tensor) or not p.is_floating_point() for p in params):
            raise TypeError(f"{name} must be a non-empty list of floating-point torch parameters")
        return params

    @torch.no_grad()
    def broadcast_(self, params) -> None:
        """Overwrite ``params`` (in place) with process 0's values, so every process starts from the same adapter."""
        from accelerate.utils import broadcast

        params = self._params(params)
        if self.world == 1:
            return
        flat = torch.cat([p.detach().reshape(-1).to(self.device) for p in params])
        flat = broadcast(flat, from_process=0)
        for p, v in zip(params, flat.split([p.numel() for p in params])):
            p.copy_(v.view_as(p))

    @torch.no_grad()
    def sum_gradients_(self, params) -> None:
        """Replace each parameter's ``.grad`` by its sum over the processes (a missing gradient counts as zero),
        in one all-reduce of the flattened gradients."""
        params = self._params(params)
        if self.world == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = self.sum(torch.cat([g.reshape(-1) for g in grads]))
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p).to(p.dtype).clone()


# --------------------------------------------------------------------------------------------------
# The command line: notebook 12's DPO data (or notebook 11's prompts) on several processes


def dpo_data(lm, n_prompts: int = 20, n_responses: int = 5) -> dict:
    """The preference data of notebook 12: the course responses of the first ``n_prompts`` prompts (at most 32)
    and their first ``n_responses`` responses each (at most 8), chat-formatted for ``lm``, with every labelled
    within-prompt pair among them (``preference.load_preference_data``). Returns ``{"prompts", "responses"``
    (texts, one per response), ``"chosen", "rejected"`` (response indices, one per pair), ``"groups"``
    (the prompt of each pair)}."""
    from labkit import preference
    from labkit import validation as V

    V.language_model(lm)
    n_prompts = V.integer("n_prompts", n_prompts, lo=1, hi=32)
    n_responses = V.integer("n_responses", n_responses, lo=2, hi=8)
    data = preference.load_preference_data()
    rs = data["responses"]
    use = [i for i, r in enumerate(rs) if r["prompt_id"] < n_prompts and r["response_id"] < n_responses]
    pos = {i: k for k, i in enumerate(use)}
    pairs = [p for p in data["pairs"] if p["chosen_index"] in pos and p["rejected_index"] in pos]
    return {"prompts": [lm.chat_prompt(rs[i]["prompt"], system=rs[i]["system"]) for i in use],
            "responses": [rs[i]["response"] for i in use],
            "chosen": torch.tensor([pos[p["chosen_index"]] for p in pairs]),
            "rejected": torch.tensor([pos[p["rejected_index"]] for p in pairs]),
            "groups": torch.tensor([p["prompt_id"] for p in pairs])}


def _length_reward(texts):
    """Characters / 10: a reward that any model, even a random one, can move (for smoke tests)."""
    return torch.tensor([len(t) / 10 for t in texts])


def parser() -> argparse.ArgumentParser:
    """The command line of ``python -m labkit.distributed`` (subcommands ``dpo`` and ``rloo``)."""
    cli = argparse.ArgumentParser(prog="python -m labkit.distributed", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = cli.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="course model, hub id or saved folder (default: the course model)")
    common.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    common.add_argument("--n-lora-layers", type=int, default=2)
    common.add_argument("--rank", type=int, default=8, help="LoRA rank")
    common.add_argument("--lr", type=float, default=None)
    common.add_argument("--beta", type=float, default=None)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--out", default=None, help="folder for each process's history and adapter")
    dpo = sub.add_parser("dpo", parents=[common], help="LoRA DPO on notebook 12's preference pairs")
    dpo.add_argument("--prompts", type=int, default=20, help="prompts whose pairs are trained on (of 32)")
    dpo.add_argument("--responses", type=int, default=5, help="responses per prompt (of 8)")
    dpo.add_argument("--epochs", type=int, default=2)
    dpo.add_argument("--groups-per-step", type=int, default=4, help="prompts whose pairs make one step")
    rloo = sub.add_parser("rloo", parents=[common], help="on-policy RLOO on notebook 12's prompts")
    rloo.add_argument("--prompts", type=int, default=8, help="prompts sampled at every step (of 32)")
    rloo.add_argument("--k", type=int, default=4, help="samples per prompt")
    rloo.add_argument("--steps", type=int, default=4)
    rloo.add_argument("--max-new-tokens", type=int, default=20)
    rloo.add_argument("--reward", choices=("true", "length"), default="true",
                      help="the course's true reward R* (preference.true_reward) or characters / 10")
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    """Train on every process that ``accelerate launch`` started (or on this one alone); see the module docstring.
    ``argv`` are the command-line arguments (default: ``sys.argv[1:]``)."""
    if argv is not None and (isinstance(argv, str) or any(not isinstance(a, str) for a in argv)):
        raise TypeError("argv must be a list of command-line arguments (strings), e.g. ['dpo', '--epochs', '1']")
    args = parser().parse_args(argv)
    from accelerate import Accelerator

    from labkit import dpo, preference, rlhf
    from labkit.lm import load_lm
    from labkit.lm.install import DEFAULT_LM
    from labkit.runtime import seed_everything

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    dp = DataParallel(accelerator)
    device = "cpu" if accelerator.device.type == "cpu" else accelerator.device
    seed_everything(args.seed)
    lm = load_lm(args.model or DEFAULT_LM, device=device, dtype=args.dtype)
    parallel = accelerator if dp.world > 1 else None  # one process: exactly the notebooks' code path
    say = print if dp.is_main else (lambda *a, **k: None)
    say(f"{lm.name} on {dp.world} process(es), {accelerator.distributed_type}, device {accelerator.device}")
    t0 = time.perf_counter()
    if args.command == "dpo":
        data = dpo_data(lm, args.prompts, args.responses)
        trainer = dpo.LoraDPO(lm, data["prompts"], data["responses"], n_lora_layers=args.n_lora_layers,
                              rank=args.rank, device=device, seed=args.seed)
        hist = trainer.train(data["chosen"], data["rejected"], beta=0.1 if args.beta is None else args.beta,
                             epochs=args.epochs, groups=data["groups"], groups_per_step=args.groups_per_step,
                             lr=5e-3 if args.lr is None else args.lr, seed=args.seed, progress=False,
                             accelerator=parallel)
        params = trainer.adapter_parameters
        say(f"{len(data['chosen'])} pairs, {len(hist['loss'])} steps of {args.groups_per_step} prompts")
    else:
        prompts = sorted({r["prompt_id"]: r for r in preference.load_responses()}.items())[: args.prompts]
        chats = [lm.chat_prompt(r["prompt"], system=r["system"]) for _, r in prompts]
        reward = preference.true_reward if args.reward == "true" else _length_reward
        trainer = rlhf.LoraRLOO(lm, chats, reward, k=args.k, max_new_tokens=args.max_new_tokens,
                                n_lora_layers=args.n_lora_layers, rank=args.rank,
                                lr=2e-3 if args.lr is None else args.lr, beta=0.05 if args.beta is None else args.beta,
                                device=device, seed=args.seed, accelerator=parallel)
        hist = trainer.train(args.steps, progress=False)
        params = trainer.adapter.adapter_parameters
    seconds = time.perf_counter() - t0
    for s, loss in enumerate(hist["loss"]):
        say(f"step {s + 1:3d}  loss {loss:.5f}")
    say(f"{seconds:.1f} s (model loading excluded)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"history": {k: v for k, v in hist.items() if k not in ("texts", "first_texts", "last_texts")},
                    "adapter": [p.detach().cpu().clone() for p in params], "world": dp.world, "rank": dp.rank,
                    "seconds": seconds}, out / f"{args.command}_rank{dp.rank}.pt")
    accelerator.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
