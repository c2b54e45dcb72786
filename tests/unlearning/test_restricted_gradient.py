"""The update rule alone, on random flat vectors (METHOD.md section 1)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearning import restricted_gradient
from unlearning.methods.rg import coefficients

SEEDS = st.integers(0, 2**31 - 1)
WEIGHTS = st.floats(0.01, 20.0)


def pair(seed: int, n: int = 257, conflict: bool | None = None):
    g = torch.Generator().manual_seed(seed)
    f, r = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    if conflict is not None and (f.dot(r) < 0) != conflict:
        r = -r
    return f, r


@settings(max_examples=200, deadline=None)
@given(SEEDS, WEIGHTS)
def test_under_conflict_neither_objective_gets_worse(seed, w):
    f, r = pair(seed, conflict=True)
    d = restricted_gradient(f, r, w)
    scale = f.norm() * r.norm() * (1 + w)
    assert d.dot(f) >= -1e-9 * scale * f.norm()
    assert d.dot(r) >= -1e-9 * scale * r.norm()


@settings(max_examples=100, deadline=None)
@given(SEEDS, WEIGHTS)
def test_under_conflict_the_projections_are_orthogonal_to_the_other_gradient(seed, w):
    f, r = pair(seed, conflict=True)
    d = restricted_gradient(f, r, w)
    # d . g_f = |proj(g_f)|^2 and d . g_r = w |proj(g_r)|^2 (both projections use the originals)
    f_hat = f - f.dot(r) / r.dot(r) * r
    r_hat = r - r.dot(f) / f.dot(f) * f
    assert torch.allclose(d, f_hat + w * r_hat, atol=1e-9)
    assert torch.isclose(d.dot(f), f_hat.dot(f_hat))
    assert torch.isclose(d.dot(r), w * r_hat.dot(r_hat))


@settings(max_examples=100, deadline=None)
@given(SEEDS, WEIGHTS)
def test_without_conflict_the_direction_is_the_weighted_sum(seed, w):
    f, r = pair(seed, conflict=False)
    assert torch.allclose(restricted_gradient(f, r, w), f + w * r)


@pytest.mark.parametrize("zero", ["forget", "retain", "both"])
def test_a_zero_vector_means_no_projection(zero):
    f, r = pair(0)
    if zero in ("forget", "both"):
        f = torch.zeros_like(f)
    if zero in ("retain", "both"):
        r = torch.zeros_like(r)
    d = restricted_gradient(f, r, 1.6)
    assert torch.isfinite(d).all()
    assert torch.allclose(d, f + 1.6 * r)


def test_coefficients_never_divide_by_zero_norms():
    assert coefficients(0.0, 0.0, -1e-30, 2.0) == (1.0, 2.0)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="flat"):
        restricted_gradient(torch.ones(3), torch.ones(4), 1.0)
