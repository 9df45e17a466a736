"""The bad-input sweep's machinery (not a test file): what counts as labkit's public API, and one bad call.

Every public labkit function, class and public method must refuse bad input (wrong types and shapes,
out-of-range values, NaN/inf, empty input) with a clear error that names the argument and what is expected.
The cases live in ``tests/bad_inputs_<group>.py`` files, each a list ``CASES`` of :class:`Bad` (and optionally a
dict ``EXEMPT`` of ``{"labkit.module.name": "why no bad input exists"}``); ``tests/test_bad_input.py`` runs them
all and checks that every public callable has at least one case or an exemption with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Callable

import labkit


@dataclass(frozen=True)
class Bad:
    """One bad call: ``call()`` must raise ``error`` with a message matching ``match`` (a regex). A ``call`` that
    takes one parameter is given the session's course model (``call(lm)``), so cases need not load their own.

    ``target`` names what is called, as ``module.function``, ``module.Class`` or ``module.Class.method``
    (e.g. ``"labkit.lm.model.LanguageModel.generate"``); ``why`` says what is wrong with the input.
    """

    target: str
    why: str
    call: Callable[[], object]
    error: type | tuple[type, ...]
    match: str

    @property
    def id(self) -> str:
        return f"{self.target.removeprefix('labkit.')}: {self.why}"


def with_organism(action: Callable) -> Callable:
    """A case's ``call(lm)`` that needs an organism: insert a small stand-in organism (LoRA rank 2 on one layer)
    into the course model, run ``action(organism)`` and always remove it, so the shared model stays the base model."""
    def call(lm):
        from labkit.organisms import Organism

        organism = Organism(lm, "bad-input", n_lora_layers=1, rank=2)
        try:
            action(organism)
        finally:
            organism.remove()
    return call


#: Public callables that need no bad-input case, with the reason.
EXEMPT: dict[str, str] = {}

#: Method names of torch.nn.Module subclasses that follow torch's protocol and are checked through the class.
_MODULE_PROTOCOL = {"forward", "extra_repr"}


def _modules() -> list:
    out = []
    for info in pkgutil.walk_packages(labkit.__path__, "labkit."):
        name = info.name
        if name.startswith("labkit.check") or name.endswith("__main__") or name == "labkit.data" or name.startswith("labkit.data."):
            continue
        out.append(importlib.import_module(name))
    return out


def public_callables() -> dict[str, object]:
    """``{"labkit.module.name": obj}`` for every public function and class defined in a labkit module (listed
    in its ``__all__`` when it has one), and every public method defined on those classes. Exceptions count
    as classes only if they take arguments beyond the message (none do), so they are left out."""
    found: dict[str, object] = {}
    for mod in _modules():
        names = getattr(mod, "__all__", None)
        if names is None:
            names = [n for n in vars(mod) if not n.startswith("_")]
        for name in names:
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            found[f"{mod.__name__}.{name}"] = obj
            if inspect.isclass(obj):
                import torch

                is_module = issubclass(obj, torch.nn.Module)
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or (is_module and attr in _MODULE_PROTOCOL):
                        continue
                    if inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod)):
                        found[f"{mod.__name__}.{name}.{attr}"] = member
    return found


def takes_no_arguments(obj) -> bool:
    """True for a function (or method, beyond ``self``) without parameters: there is nothing to make bad."""
    target = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return False
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return not params
