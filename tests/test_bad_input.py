"""The bad-input sweep: every public labkit callable refuses bad input with a clear error.

The cases are in ``tests/bad_inputs_*.py`` (one file per group of modules); :mod:`bad_input` holds the
machinery and the exemptions. Two tests: each case raises the expected error with a message that names what
is wrong, and every public callable (functions, classes, public methods) has a case or a stated exemption
(callables without parameters have nothing to make bad).
"""

from __future__ import annotations

import importlib
import inspect
import pathlib

import pytest

from bad_input import EXEMPT, Bad, public_callables, takes_no_arguments

HERE = pathlib.Path(__file__).parent


def _cases() -> tuple[list[Bad], dict[str, str]]:
    cases, exempt = [], dict(EXEMPT)
    for path in sorted(HERE.glob("bad_inputs_*.py")):
        module = importlib.import_module(path.stem)
        cases += module.CASES
        exempt.update(getattr(module, "EXEMPT", {}))
    return cases, exempt


CASES, ALL_EXEMPT = _cases()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_gets_a_clear_error(case, request):
    """``case.call()`` raises; a call that takes one parameter receives the session's course model."""
    takes_lm = bool(inspect.signature(case.call).parameters)
    args = (request.getfixturevalue("lm"),) if takes_lm else ()
    with pytest.raises(case.error, match=case.match):
        case.call(*args)


def test_every_public_callable_is_swept():
    api = public_callables()
    covered = {c.target for c in CASES}
    unknown = sorted(covered - set(api))
    assert not unknown, f"cases name callables that are not public labkit API: {unknown}"
    stale = sorted(set(ALL_EXEMPT) - set(api))
    assert not stale, f"exemptions name callables that are not public labkit API: {stale}"
    missing = sorted(name for name, obj in api.items()
                     if name not in covered and name not in ALL_EXEMPT and not takes_no_arguments(obj))
    assert not missing, f"{len(missing)} public callables have no bad-input case: " + ", ".join(missing)
    print(f"{len(covered)} of {len(api)} public callables swept with {len(CASES)} bad calls; "
          f"{sum(takes_no_arguments(o) for o in api.values())} take no arguments; {len(ALL_EXEMPT)} exempt")
