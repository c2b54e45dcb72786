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
