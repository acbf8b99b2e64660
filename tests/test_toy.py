import math

import pytest
import torch

from emgeo import toy


def _pentagon() -> torch.Tensor:
    angles = torch.arange(5) * 2 * math.pi / 5
    return torch.stack([angles.cos(), angles.sin()])  # (2, 5)


def test_generate_batch_shape_sparsity_and_seeding():
    p = torch.tensor([1.0, 0.25])
    x = toy.generate_batch(40_000, p, 3, torch.Generator().manual_seed(0))
    assert x.shape == (40_000, 2, 3)
    assert torch.allclose((x != 0).float().mean((0, 2)), p, atol=0.01)
    assert torch.equal(x, toy.generate_batch(40_000, p, 3, torch.Generator().manual_seed(0)))


def test_toy_forward_matches_a_per_instance_loop():
    W, b = torch.randn(3, 2, 5), torch.randn(3, 5)
    x = torch.rand(4, 3, 5)
    out = toy.toy_forward(W, b, x)
    for i in range(3):
        expected = torch.relu(x[:, i] @ W[i].T @ W[i] + b[i])
        assert torch.allclose(out[:, i], expected, atol=1e-6)


def test_importance_loss_weighs_features():
    x, x_hat = torch.ones(2, 1, 2), torch.zeros(2, 1, 2)
    assert toy.importance_loss(x, x_hat, torch.tensor([[1.0, 0.5]])).tolist() == [1.5]


@pytest.mark.parametrize(
    "W, expected",
    [
        (_pentagon(), [0.4] * 5),
        (torch.eye(3), [1.0] * 3),
        (torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]]), [0.5, 0.5, 1.0]),
    ],
    ids=["pentagon", "orthogonal", "antipodal-pair"],
)
def test_feature_dimensionality_of_known_geometries(W, expected):
    D = toy.feature_dimensionality(W[None])[0]
    assert torch.allclose(D, torch.tensor(expected), atol=1e-5)


def test_instances_train_independently():
    cfg = toy.ToyConfig(n_features=4, d_hidden=2, n_instances=3)
    model = toy.ToyModel(cfg, torch.full((3,), 0.5), torch.ones(3, 4))
    x = model.generate_batch(16)
    loss = toy.importance_loss(x, model(x), model.importance)
    (grad_W,) = torch.autograd.grad(loss[1], model.W)
    assert grad_W[0].abs().sum() == 0 and grad_W[2].abs().sum() == 0
    assert grad_W[1].abs().sum() > 0


def test_training_lowers_the_loss():
    cfg = toy.ToyConfig(n_features=5, d_hidden=2, n_instances=2)
    gen = torch.Generator().manual_seed(0)
    model = toy.ToyModel(cfg, torch.tensor([1.0, 0.1]), torch.ones(2, 5), gen)
    with torch.no_grad():
        x = model.generate_batch(4096, gen)
        before = toy.importance_loss(x, model(x), model.importance)
    after = toy.train(model, steps=300, batch_size=256, lr=1e-2, generator=gen, progress=False)
    assert (after < 0.7 * before).all()


def test_sweep_keeps_the_best_restart():
    sweep = toy.train_sweep([0.0, 0.9], decays=(1.0,), n_restarts=2, steps=50, progress=False)
    assert sweep.W_all.shape == (2, 1, 2, 2, 5) and sweep.W.shape == (2, 1, 2, 5)
    k = sweep.loss_all[1, 0].argmin()
    W, b = sweep.condition(0.9, 1.0)
    assert torch.equal(W, sweep.W_all[1, 0, k]) and torch.equal(b, sweep.b_all[1, 0, k])
    assert sweep.loss[1, 0] == sweep.loss_all[1, 0].min()


def test_represented_features_and_pentagon_angles():
    W = _pentagon() * torch.tensor([1.0, 1.0, 1.0, 1.0, 0.1])
    assert toy.n_represented(W).item() == 4
    assert torch.allclose(toy.angles_2d(_pentagon()), torch.full((5,), 72.0), atol=1e-3)


def test_sweep_trains_with_the_trainer_it_is_given():
    calls = []

    def trainer(model, steps, batch_size, lr, generator, progress):
        calls.append((model.cfg.n_instances, steps, batch_size))
        return toy.train(model, steps, batch_size, lr, generator, progress)

    sweep = toy.train_sweep([0.0, 0.9], n_restarts=2, steps=20, progress=False, trainer=trainer)
    reference = toy.train_sweep([0.0, 0.9], n_restarts=2, steps=20, progress=False)
    assert calls == [(4, 20, 1024)]
    assert torch.equal(sweep.W_all, reference.W_all)
    assert torch.equal(sweep.loss_all, reference.loss_all)


def test_sweep_builds_its_model_with_the_class_it_is_given():
    built = []

    class Recorded(toy.ToyModel):
        def __init__(self, *args):
            super().__init__(*args)
            built.append(self.cfg.n_instances)

    sweep = toy.train_sweep([0.0, 0.9], n_restarts=2, steps=20, progress=False, model_cls=Recorded)
    reference = toy.train_sweep([0.0, 0.9], n_restarts=2, steps=20, progress=False)
    assert built == [4] and torch.equal(sweep.W_all, reference.W_all)


def test_a_toy_model_keeps_its_own_copy_of_the_data_tensors():
    cfg = toy.ToyConfig(n_features=3, d_hidden=2, n_instances=2)
    probability, importance = torch.ones(2), torch.ones(2, 3)
    model = toy.ToyModel(cfg, probability, importance, torch.Generator().manual_seed(0))
    importance.fill_(float("nan"))
    assert torch.equal(model.importance, torch.ones(2, 3))
