"""labkit.stats: Spearman's ρ against its definition (Pearson's r of the ranks) and bad input."""

import numpy as np
import pytest
import torch

from labkit.stats import spearman


def test_spearman_is_pearson_of_the_ranks():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    b = a + 0.8 * b
    ranks = lambda x: np.argsort(np.argsort(x)).astype(float)  # noqa: E731  (no ties in continuous data)
    expected = np.corrcoef(ranks(a), ranks(b))[0, 1]
    assert spearman(a, b) == pytest.approx(expected, abs=1e-12)
    assert spearman(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, abs=1e-12)
    assert spearman(a, np.exp(3 * a)) == pytest.approx(1.0)  # a monotone transform
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # ties get average ranks


@pytest.mark.parametrize("a, b, message", [
    ([1, 2, 3], [1, 2], "same length"),
    ([1], [2], "at least two"),
    ([1, float("nan"), 3], [1, 2, 3], "finite"),
    ([2, 2, 2], [1, 2, 3], "constant"),
])
def test_spearman_refuses_bad_input(a, b, message):
    with pytest.raises(ValueError, match=message):
        spearman(a, b)
