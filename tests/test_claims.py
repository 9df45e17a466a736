"""labkit.claim: a true claim prints ✓ with its numbers; a false one raises with them; bad use is refused."""

import numpy as np
import pytest
import torch

import labkit
from labkit.claims import ClaimFailed, claim


def test_a_true_claim_prints_its_evidence(capsys):
    labkit.claim(0.996 > 0.9, "attribution patching tracks exact patching", r=0.99612, n=270)
    assert capsys.readouterr().out == "✓ attribution patching tracks exact patching (r = 0.9961, n = 270)\n"
    claim(torch.tensor(True), "a tensor truth value")
    claim(np.bool_(True), "a numpy truth value", p=np.float64(2.5e-5), v=torch.tensor([1.0, 2.0]))
    out = capsys.readouterr().out
    assert "✓ a tensor truth value\n" in out and "p = 2.5e-05" in out and "v = tensor [2] [1., 2.]" in out


def test_a_false_claim_raises_with_the_numbers():
    with pytest.raises(ClaimFailed, match=r"'the null control is not significant'.*p = 0\.0081.*d = 0\.7"):
        claim(0.0081 > 0.05, "the null control is not significant", p=0.0081, d=0.70)
    with pytest.raises(AssertionError):  # ClaimFailed is an AssertionError: pytest and nbval report it as such
        claim(False, "anything")


@pytest.mark.parametrize("condition, text, error", [
    (torch.tensor([True, False]), "x", ValueError),
    (np.array([True, True]), "x", ValueError),
    (0.5, "x", TypeError),
    ("yes", "x", TypeError),
    (True, "", ValueError),
    (True, None, ValueError),
])
def test_bad_use_is_refused(condition, text, error):
    with pytest.raises(error):
        claim(condition, text)
