"""Model organisms — SmolLM2 with a small LoRA adapter trained to hold a planted, known behaviour (notebooks 10,
13 and 14).

An instrument that measures a model's opinions, pluralism or judgement is only validated when it recovers an
effect that is *known to be there*. On the 135M course model the effects are close to null, so this module
plants them: a LoRA adapter (``peft``) on the top layers is fine-tuned on course-written data so that the model
holds stances we chose (``opinions``), answers with persona-conditional distributions we chose (``pluralist``),
or judges pairs of replies by labels we wrote (``judge``). The notebooks then run their instruments on the
organism and on the base model, on held-out prompts, and score each against the planted truth.

* :class:`Organism` — the adapter inside ``lm.model`` (in place: no second copy of the weights). It is **off**
  unless inside ``with organism:``; off, ``lm`` is the base model exactly. :meth:`Organism.fit` trains it on
  *choice* examples (a prompt, its answer options — one token each — and the planted distribution over them:
  cross-entropy at the last position) and *text* examples (a prompt and a response: the response's
  log-likelihood).
* :func:`load_organism` — a shipped adapter (``labkit/data/organisms/<name>.safetensors``), its sha256 checked
  against ``<name>.json`` before it is used.
* :func:`build_organism` — trains one from its recipe (``labkit/organisms/<name>.py``: the data from
  ``labkit/data/organism_<name>.json``, written by the seeded script next to it, and the training settings);
  ``python -m labkit.organisms build <name>`` writes the adapter and its ``.json``.

Efficiency: the layers below the adapter are frozen, so the residual stream entering the first adapted layer
is computed once per training prompt and cached (``lm.run_to``); each step runs only the adapted layers
(``lm.run_from``) on a random minibatch, and the 49k-wide unembedding only at the positions that are scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch

from labkit import validation
from labkit.dpo import encode_responses
from labkit.lm.install import COURSE_LMS

__all__ = ["Organism", "ORGANISMS", "ADAPTER_DIR", "load_organism", "build_organism", "save_organism", "rebuild_difference",
           "choice_examples", "text_examples", "sha256_of", "main"]

ORGANISMS = ("opinions", "pluralist", "judge")
ADAPTER_DIR = Path(__file__).resolve().parent.parent / "data" / "organisms"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj")


def sha256_of(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got {type(path).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not a file")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def choice_examples(prompts: Sequence[str], options: Sequence[str], targets) -> dict:
    """Choice training examples: ``prompts`` (the model's full input texts, e.g. ``lm.chat_prompt(...)``), the
    answer ``options`` (each one token, the same for every prompt, e.g. ``["A", "B"]``) and ``targets``
    ``[n_prompts, n_options]``, the planted probability of each option (rows sum to 1)."""
    prompts = validation.strings("prompts", prompts)
    options = validation.strings("options", options) if not isinstance(options, str) else validation.strings("options", [options])
    if len(options) < 2 or len(set(options)) != len(options):
        raise ValueError(f"options must be at least two different answers, got {options}")
    t = validation.tensor("targets", torch.as_tensor(targets, dtype=torch.float32) if not isinstance(targets, torch.Tensor)
                          else targets, dims=2).float()
    if t.shape != (len(prompts), len(options)):
        raise ValueError(f"targets must have shape [{len(prompts)} prompts, {len(options)} options], got {tuple(t.shape)}")
    if (t < 0).any() or not torch.allclose(t.sum(1), torch.ones(len(t)), atol=1e-4):
        raise ValueError("each row of targets must be a probability distribution (non-negative, summing to 1)")
    return {"prompts": prompts, "options": options, "targets": t}


def text_examples(prompts: Sequence[str], responses: Sequence[str]) -> dict:
    """Text training examples: the model learns to continue each prompt (full input text) with its response."""
    prompts, responses = validation.strings("prompts", prompts), validation.strings("responses", responses)
    if len(prompts) != len(responses):
        raise ValueError(f"mismatched lengths: {len(prompts)} prompts but {len(responses)} responses")
    return {"prompts": prompts, "responses": responses}


class Organism:
    """A LoRA adapter on the top ``n_lora_layers`` layers of ``lm.model``, inserted in place and **off** unless
    inside ``with organism:`` (then every ``lm`` method — scoring, generation, hooks — computes the organism).

    A new adapter starts at LoRA's B = 0, i.e. exactly the base model; :meth:`fit` plants the behaviour.
    One organism per model at a time: :meth:`remove` takes the adapter out again.
    """

    def __init__(self, lm, name: str = "organism", n_lora_layers: int = 4, rank: int = 8, alpha: float = 16.0,
                 target_modules: Sequence[str] = TARGET_MODULES, seed: int = 0):
        from peft import LoraConfig, get_peft_model

        validation.language_model(lm)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        n_layers = lm.model.config.num_hidden_layers
        self.n_lora_layers = validation.integer("n_lora_layers", n_lora_layers, 1, n_layers)
        self.rank = validation.integer("rank", rank, 1)
        self.alpha = validation.number("alpha", alpha, 0, lo_open=True)
        seed = validation.integer("seed", seed, 0)
        self.target_modules = validation.strings("target_modules", target_modules)
        if hasattr(lm.model, "peft_config"):
            raise ValueError("the model already carries a peft adapter (another organism or a LoraDPO trainer): "
                             "remove it first, or load a fresh model with labkit.load_lm()")
        self.lm, self.name = lm, name
        self.first = n_layers - self.n_lora_layers
        # peft freezes every base parameter; remember their flags so the model the caller handed us keeps them
        # (gradient methods — attribution, patching — need them) while the organism is in and after it is removed
        self._base_flags = [(p, p.requires_grad) for p in lm.model.parameters()]
        torch.manual_seed(seed)
        config = LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=0.0, target_modules=self.target_modules,
                            layers_to_transform=list(range(self.first, n_layers)))
        with warnings.catch_warnings():  # peft calls a transformers API that transformers 5 marks deprecated
            warnings.simplefilter("ignore", FutureWarning)
            self._peft = get_peft_model(lm.model, config)  # LoRA layers inserted into lm.model, in place
        self._names = [n for n, p in self._peft.named_parameters() if p.requires_grad]
        self.parameters = [p for p in self._peft.parameters() if p.requires_grad]
        self._restore_base_flags()
        self._depth = 0
        self._off()
        self._peft.eval()
        self.history: dict = {}

    # -- on and off -------------------------------------------------------------------------------
    def __enter__(self) -> "Organism":
        if self._depth == 0:
            self._peft.base_model.enable_adapter_layers()
        self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._off()

    def _restore_base_flags(self) -> None:
        for p, flag in self._base_flags:
            p.requires_grad_(flag)

    @contextlib.contextmanager
    def _base_frozen(self):
        """Training: only the adapter's parameters need gradients."""
        for p, _ in self._base_flags:
            p.requires_grad_(False)
        try:
            yield
        finally:
            self._restore_base_flags()

    def _off(self) -> None:
        self._peft.base_model.disable_adapter_layers()
        for p in self.parameters:
            p.requires_grad_(True)  # peft would freeze them

    @property
    def active(self) -> bool:
        """True inside ``with organism:``."""
        return self._depth > 0

    def remove(self) -> None:
        """Take the LoRA layers out of ``lm.model``: the model is the base model again, for good."""
        self._peft.unload()
        self._restore_base_flags()
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if hasattr(self.lm.model, attr):
                try:
                    delattr(self.lm.model, attr)
                except AttributeError:
                    pass

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters)
        return (f"Organism({self.name!r}: LoRA rank {self.rank} on layers {self.first}-"
                f"{self.first + self.n_lora_layers - 1}, {n:,} parameters, {'on' if self.active else 'off'})")

    # -- weights ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter's weights by parameter name (CPU copies)."""
        return {n: p.detach().cpu().clone().contiguous() for n, p in zip(self._names, self.parameters)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Set the adapter's weights from :meth:`state_dict`'s output (names and shapes must match)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict of tensors, got {type(state).__name__}")
        missing = sorted(set(self._names) - set(state))
        extra = sorted(set(state) - set(self._names))
        if missing or extra:
            raise ValueError(f"state does not match this adapter: missing {missing[:3]}, unexpected {extra[:3]}")
        for n, p in zip(self._names, self.parameters):
            t = validation.tensor(f"state[{n!r}]", state[n])
            if t.shape != p.shape:
                raise ValueError(f"state[{n!r}] has shape {tuple(t.shape)}, the adapter needs {tuple(p.shape)}")
            p.copy_(t.to(p.device, p.dtype))

    # -- training ---------------------------------------------------------------------------------
    @torch.no_grad()
    def _cache_choices(self, ex: dict) -> dict:
        lm = self.lm
        enc = lm.batch(ex["prompts"], padding_side="left")
        hs = []
        for s in range(0, len(ex["prompts"]), 64):
            sl = slice(s, s + 64)
            hs.append(lm.run_to(f"resid_pre.{self.first}", enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl],
                                position_ids=enc["position_ids"][sl]))
        ids = torch.tensor([lm.token_id(o) for o in ex["options"]], device=lm.device)
        return {"h": torch.cat(hs), "mask": enc["attention_mask"], "pos": enc["position_ids"], "ids": ids,
                "targets": ex["targets"].to(lm.device), "n": len(ex["prompts"])}

    @torch.no_grad()
    def _cache_texts(self, ex: dict) -> dict:
        lm = self.lm
        b = encode_responses(lm, ex["prompts"], ex["responses"])
        ids, mask = b["input_ids"].to(lm.device), b["attention_mask"].to(lm.device)
        hs = [lm.run_to(f"resid_pre.{self.first}", ids[s : s + 64], attention_mask=mask[s : s + 64])
              for s in range(0, len(ids), 64)]
        return {"h": torch.cat(hs), "mask": mask, "ids": ids, "resp": b["response_mask"].to(lm.device), "n": len(ids)}

    def _choice_logprobs(self, cache: dict, idx: torch.Tensor) -> torch.Tensor:
        """log p(option | prompt) over the whole vocabulary for cached choice examples ``idx``, ``[len(idx), K]``."""
        mask = cache["mask"][idx]
        keep = slice(int(mask.any(0).nonzero()[0]), None)  # left padding: drop the columns padded in every row
        h = self.lm.run_from(self.first, cache["h"][idx][:, keep], attention_mask=mask[:, keep],
                             position_ids=cache["pos"][idx][:, keep], output="hidden")[:, -1]
        return torch.log_softmax(self.lm.layout.unembed(h).float(), -1)[:, cache["ids"]]

    def _text_nll(self, cache: dict, idx: torch.Tensor) -> torch.Tensor:
        mask = cache["mask"][idx]
        keep = slice(None, int(mask.any(0).nonzero()[-1]) + 1)  # right padding: drop the all-padding tail
        h = self.lm.run_from(self.first, cache["h"][idx][:, keep], attention_mask=mask[:, keep], output="hidden")
        pred = cache["resp"][idx][:, keep][:, 1:].bool()
        logits = self.lm.layout.unembed(h[:, :-1][pred]).float()
        return torch.nn.functional.cross_entropy(logits, cache["ids"][idx][:, keep][:, 1:][pred])

    def fit(self, choices: dict | Sequence[dict] | None = None, texts: dict | None = None, steps: int = 200,
            batch_size: int = 32, lr: float = 2e-3, text_weight: float = 1.0, seed: int = 0,
            progress: bool = True, text_batch_size: int | None = None) -> dict:
        """Plant the behaviour: Adam on the adapter for ``steps`` steps. Each step takes ``batch_size`` random
        examples of every choice set (:func:`choice_examples`; one set or a list) and ``text_batch_size``
        (default ``batch_size``) of ``texts`` (:func:`text_examples`) and minimises Σ_sets KL(target ‖ p over the options, whole vocabulary) +
        ``text_weight`` × the responses' mean token negative log-likelihood.

        Returns (and stores in ``self.history``) per step the choice loss (KL, nats), the text loss and the
        seconds taken.
        """
        sets = [] if choices is None else ([choices] if isinstance(choices, dict) else list(choices))
        for c in sets:
            if not isinstance(c, dict) or set(c) != {"prompts", "options", "targets"}:
                raise TypeError("choices must be choice_examples(...) (or a list of them)")
        if texts is not None and (not isinstance(texts, dict) or set(texts) != {"prompts", "responses"}):
            raise TypeError("texts must be text_examples(...)")
        if not sets and texts is None:
            raise ValueError("nothing to train on: give choices, texts or both")
        steps = validation.integer("steps", steps, 1)
        batch_size = validation.integer("batch_size", batch_size, 1)
        text_batch_size = batch_size if text_batch_size is None else validation.integer("text_batch_size", text_batch_size, 1)
        lr = validation.number("lr", lr, 0, lo_open=True)
        text_weight = validation.number("text_weight", text_weight, 0)
        seed = validation.integer("seed", seed, 0)
        from tqdm.auto import tqdm

        start = time.perf_counter()
        caches = [self._cache_choices(c) for c in sets]
        tcache = self._cache_texts(texts) if texts is not None else None
        entropy = [float(-(c["targets"] * c["targets"].clamp_min(1e-12).log()).sum(1).mean()) for c in caches]
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.parameters, lr=lr)
        hist = {"choice_kl": [], "text_nll": [], "seconds": 0.0}
        self._peft.train()
        try:
            with self, self._base_frozen():
                for _ in tqdm(range(steps), desc=f"training the {self.name} organism", disable=not progress):
                    loss = torch.zeros((), device=self.lm.device)
                    kl = 0.0
                    for c, H in zip(caches, entropy):
                        idx = torch.randperm(c["n"], generator=g)[:batch_size].to(self.lm.device)
                        ce = -(c["targets"][idx] * self._choice_logprobs(c, idx)).sum(1).mean()
                        loss = loss + ce
                        kl += ce.item() - float(-(c["targets"][idx] * c["targets"][idx].clamp_min(1e-12).log()).sum(1).mean())
                    if tcache is not None:
                        idx = torch.randperm(tcache["n"], generator=g)[:text_batch_size].to(self.lm.device)
                        nll = self._text_nll(tcache, idx)
                        loss = loss + text_weight * nll
                        hist["text_nll"].append(nll.item())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if caches:
                        hist["choice_kl"].append(kl / len(caches))
        finally:
            self._peft.eval()
        hist["seconds"] = time.perf_counter() - start
        self.history = hist
        return hist


# -- shipped organisms -------------------------------------------------------------------------------
def _folder(folder) -> Path:
    if not isinstance(folder, (str, Path)):
        raise TypeError(f"folder must be a directory path (str or pathlib.Path), got {type(folder).__name__}")
    return Path(folder)


def _recipe(name: str):
    if name not in ORGANISMS:
        raise ValueError(f"unknown organism {name!r}: choose one of {', '.join(ORGANISMS)}")
    return importlib.import_module(f"labkit.organisms.{name}")


def build_organism(lm, name: str, progress: bool = True, steps: int | None = None) -> Organism:
    """Train organism ``name`` from its recipe (data and settings in ``labkit/organisms/<name>.py``) into ``lm``.

    ``steps`` (default: the recipe's) stops the run early: the first ``steps`` steps of the recipe's training,
    identical to those of the full run (same seed, same minibatches), which is how the tests check the shipped
    adapter's recorded loss curve without training it all again.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be an organism's name (one of {', '.join(ORGANISMS)}), got {type(name).__name__}")
    validation.language_model(lm)
    recipe = _recipe(name)
    training = dict(recipe.TRAINING)
    if steps is not None:
        training["steps"] = validation.integer("steps", steps, 1, training["steps"])
    settings = dict(recipe.ADAPTER)
    org = Organism(lm, name=name, **settings)
    examples = recipe.training_examples(lm)
    org.fit(**examples, **training, progress=progress)
    return org


def save_organism(org: Organism, folder: str | Path = ADAPTER_DIR) -> Path:
    """Write ``<name>.safetensors`` and ``<name>.json`` (settings, sha256, training summary) into ``folder``."""
    from safetensors.torch import save_file

    if not isinstance(org, Organism):
        raise TypeError(f"org must be an Organism, got {type(org).__name__}")
    folder = _folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{org.name}.safetensors"
    save_file(org.state_dict(), str(path))
    path.chmod(0o644)  # safetensors writes 0600; the shipped file is read by everyone
    h = org.history
    info = {
        "name": org.name,
        "adapter": {"n_lora_layers": org.n_lora_layers, "rank": org.rank, "alpha": org.alpha,
                    "target_modules": list(org.target_modules)},
        "parameters": sum(p.numel() for p in org.parameters),
        "bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "training_seconds": round(h.get("seconds", float("nan")), 1),
        "final_choice_kl": round(sum(h["choice_kl"][-10:]) / max(1, len(h["choice_kl"][-10:])), 4) if h.get("choice_kl") else None,
        "final_text_nll": round(sum(h["text_nll"][-10:]) / max(1, len(h["text_nll"][-10:])), 4) if h.get("text_nll") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),  # the summation order, hence the last bits, depend on it
        # every step's losses: the tests retrain the first steps and compare (build_organism(..., steps=k))
        "choice_kl_curve": [round(x, 6) for x in h.get("choice_kl", [])],
        "text_nll_curve": [round(x, 6) for x in h.get("text_nll", [])],
    }
    (folder / f"{org.name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return path


def load_organism(lm, name: str, folder: str | Path = ADAPTER_DIR, progress: bool = True) -> Organism:
    """The shipped organism ``name`` inserted into ``lm`` (off until ``with organism:``); its file's sha256 is
    checked against the ``.json`` written with it, and a mismatch raises instead of planting something else.

    The shipped adapters are trained for the course model. For any other model (a notebook's ``MODEL`` set to
    another hub id or folder) the organism is trained from its recipe instead (:func:`build_organism`, with a
    message and a progress bar): the same data and settings, planted in that model; its ``info`` is the summary
    :func:`save_organism` writes (size, sha256, final losses), from a copy saved to a temporary folder."""
    from safetensors.torch import load_file

    if not isinstance(name, str):
        raise TypeError(f"name must be an organism's name (one of {', '.join(ORGANISMS)}), got {type(name).__name__}")
    if name not in ORGANISMS:
        raise ValueError(f"unknown organism {name!r}: choose one of {', '.join(ORGANISMS)}")
    validation.language_model(lm)
    folder = _folder(folder)
    if lm.name not in COURSE_LMS:
        print(f"The shipped {name!r} organism is trained for the course model; training it into {lm.name} from its "
              f"recipe (labkit/organisms/{name}.py).")
        import tempfile

        org = build_organism(lm, name, progress=progress)
        with tempfile.TemporaryDirectory() as tmp:
            org.info = json.loads(save_organism(org, tmp).with_suffix(".json").read_text())
        return org
    path, meta = folder / f"{name}.safetensors", folder / f"{name}.json"
    if not path.exists() or not meta.exists():
        raise FileNotFoundError(f"no shipped organism {name!r} in {folder}: build it with "
                                f"`python -m labkit.organisms build {name}`")
    info = json.loads(meta.read_text())
    digest = sha256_of(path)
    if digest != info["sha256"]:
        raise ValueError(f"{path.name} is corrupted or was changed: sha256 {digest[:12]}… but {meta.name} records "
                         f"{info['sha256'][:12]}…; rebuild it with `python -m labkit.organisms build {name}`")
    org = Organism(lm, name=name, **info["adapter"])
    org.load_state_dict(load_file(str(path)))
    org.info = info
    return org


def rebuild_difference(lm, name: str, folder: str | Path = ADAPTER_DIR, progress: bool = True) -> dict:
    """Train organism ``name`` again from its recipe and compare with the shipped one in ``folder``: the largest
    absolute weight difference, whether the files' sha256 agree, and the largest difference between the two
    runs' per-step losses. The full check behind the tests' shortened one (the first steps' losses)."""
    import tempfile

    shipped = load_organism(lm, name, folder)
    try:
        old = shipped.state_dict()
    finally:
        shipped.remove()
    org = build_organism(lm, name, progress=progress)
    try:
        new = org.state_dict()
        with tempfile.TemporaryDirectory() as tmp:
            path = save_organism(org, tmp)
            rebuilt = json.loads(path.with_suffix(".json").read_text())
    finally:
        org.remove()
    info = json.loads((_folder(folder) / f"{name}.json").read_text())
    curve_diff = 0.0
    for key in ("choice_kl_curve", "text_nll_curve"):
        a, b = info.get(key), rebuilt[key]
        if a is None or len(a) != len(b):
            curve_diff = float("inf")
        elif a:
            curve_diff = max(curve_diff, max(abs(x - y) for x, y in zip(a, b)))
    return {"max_weight_difference": max(float((old[k] - new[k]).abs().max()) for k in old),
            "same_sha256": rebuilt["sha256"] == info["sha256"], "max_loss_difference": curve_diff}


def main(argv=None) -> None:
    """The command line: ``python -m labkit.organisms build|check [names] [--out folder]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m labkit.organisms", description="build the course's model organisms, "
                                 "or check that their recipes rebuild the shipped adapters")
    ap.add_argument("command", choices=["build", "check"])
    ap.add_argument("names", nargs="*", help=f"organisms to build or check (default: all of {', '.join(ORGANISMS)})")
    ap.add_argument("--out", default=str(ADAPTER_DIR), help="where the adapters are written (build) or read (check)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in ORGANISMS]
    if unknown:
        ap.error(f"unknown organism(s) {', '.join(unknown)}: choose from {', '.join(ORGANISMS)}")
    from labkit import load_lm

    for name in args.names or ORGANISMS:
        lm = load_lm()
        if args.command == "check":
            d = rebuild_difference(lm, name, args.out)
            print(f"{name}: rebuilt from its recipe — same sha256: {d['same_sha256']}, largest weight difference "
                  f"{d['max_weight_difference']:.2e}, largest per-step loss difference {d['max_loss_difference']:.2e}")
            continue
        org = build_organism(lm, name)
        path = save_organism(org, args.out)
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB, trained in {org.history['seconds']:.0f} s)")
        org.remove()
