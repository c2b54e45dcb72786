import torch

from unlearning.train import FlatGradients


def test_parameter_grads_are_views_of_one_buffer_and_backward_fills_it():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    params = list(model.parameters())
    grads = FlatGradients(params, rows=2)
    model(torch.randn(7, 5)).square().mean().backward()
    assert all(p.grad.untyped_storage().data_ptr() == grads.rows.untyped_storage().data_ptr() for p in params)
    assert torch.equal(grads.buffer, torch.cat([p.grad.flatten() for p in params]))


def test_gram_gives_the_rules_dot_products():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    grads = FlatGradients(params, rows=2)
    f, r = torch.randn(7, dtype=torch.float32), torch.randn(7, dtype=torch.float32)
    grads.stash.copy_(f)
    grads.buffer.copy_(r)
    ff, rr, fr = grads.gram()
    assert torch.allclose(torch.tensor([ff, rr, fr]), torch.stack([f.dot(f), r.dot(r), f.dot(r)]), rtol=1e-5)


def large_pair(size: int = 1 << 24) -> FlatGradients:
    """Two 16.8 M-element gradients (SD's are 860 M): fp32 sums drift at this length."""
    g = torch.Generator().manual_seed(0)
    grads = FlatGradients([torch.nn.Parameter(torch.zeros(size))], rows=2)
    grads.stash.normal_(mean=0.01, generator=g)
    grads.buffer.normal_(mean=-0.01, generator=g)
    return grads


def relative_errors(values, reference) -> list[float]:
    return [abs(v - r) / abs(r) for v, r in zip(values, reference)]


def test_gram_is_exact_to_fp64_rounding_where_fp32_sums_are_not():
    grads = large_pair()
    f, r = grads.stash.double(), grads.buffer.double()
    reference = [float(f @ f), float(r @ r), float(f @ r)]
    assert max(relative_errors(grads.gram(), reference)) < 1e-10
    fp32 = (grads.rows @ grads.rows.T).tolist()  # the one-matmul fp32 product this replaced
    assert max(relative_errors([fp32[0][0], fp32[1][1], fp32[0][1]], reference)) > 1e-10


def test_restricted_gradient_takes_its_coefficients_from_exact_products():
    """d = a g_f + b g_r in fp32 with (a, b) from fp64 products: elementwise the same d as with
    (a, b) from a float64 reference; fp32 products move (a, b) enough to change most elements."""
    from unlearning import restricted_gradient
    from unlearning.methods.rg import coefficients

    g = torch.Generator().manual_seed(0)
    f = torch.randn(1 << 24, generator=g)
    r = -f + 0.01 * torch.randn(1 << 24, generator=g)  # nearly opposite: a strong projection
    f64, r64 = f.double(), r.double()
    a, b = coefficients(float(f64 @ f64), float(r64 @ r64), float(f64 @ r64), 1.6)
    expected = f * a + r * b

    def share_differing(d) -> float:
        return float((d != expected).double().mean())

    assert share_differing(restricted_gradient(f, r, 1.6)) < 1e-6
    a32, b32 = coefficients(float(f @ f), float(r @ r), float(f @ r), 1.6)  # fp32 products, as before
    assert share_differing(f * a32 + r * b32) > 0.1
