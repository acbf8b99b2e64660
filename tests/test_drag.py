import pytest
import torch

from emgeo import drag, stats


@pytest.fixture
def model():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(3, 8, generator=gen) * 0.6
    b = torch.randn(8, generator=gen) * 0.2
    b[2] = -5.0  # a target whose ReLU is dead on its own task input
    return W, b


@pytest.mark.parametrize("target", [0, 2, 7])
def test_prediction_equals_autograd_first_order(model, target):
    W, b = model
    predicted = drag.predicted_drag(W, b, target, x_t=0.7, gamma=3.0, lr=0.05)
    assert torch.allclose(
        predicted, drag.first_order_change(W, b, target, 0.7, 3.0, 0.05), atol=1e-6
    )


def test_dead_target_gets_no_drag(model):
    W, b = model
    assert drag.predicted_drag(W, b, 2).abs().max() == 0


def test_one_sgd_step_moves_other_readouts_exactly_as_predicted(model):
    """Only W_t moves, along itself, so the first-order drag is exact for j != t."""
    W, b = model
    m = drag.measure_drag(W, b, target=0, steps=1, lr=0.05)
    assert torch.allclose(m.measured_readout, m.predicted, atol=1e-6)
    assert torch.allclose(m.overlap, (W.T @ W[:, 0])[1:])


def test_pushback_from_reconstruction_breaks_exactness():
    W = torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 1.0]])
    b = torch.zeros(3)  # feature 1 is active on feature 0's input, so it pushes back
    m = drag.measure_drag(W, b, 0, steps=50, lr=0.05, reconstruct_others=True)
    assert not torch.allclose(m.measured_readout, m.predicted, atol=1e-3)


def test_pearson_r_and_pooling(model):
    W, b = model
    ms = drag.drag_over_models(torch.stack([W, W]), torch.stack([b, b]), targets=[0, 1])
    assert len(ms) == 4 and drag.pooled(ms, "predicted").shape == (4 * 7,)
    assert stats.pearson_r(torch.tensor([1.0, 2, 3]), torch.tensor([2.0, 4, 6])) == pytest.approx(
        1.0
    )


def test_neighbours_of_finds_near_and_orthogonal():
    W = torch.tensor([[1.0, 0.9, 0.0, -1.0], [0.0, 0.44, 1.0, 0.0]])
    assert drag.neighbours_of(W, 0) == (1, 2)


def test_harmful_rise_is_larger_for_the_near_neighbour():
    W = torch.tensor([[1.0, 0.9, 0.0], [0.0, 0.44, 1.0]])
    b = torch.zeros(3)
    near = drag.harmful_rise(W, b, target=1, harmful=0, steps=20)
    orthogonal = drag.harmful_rise(W, b, target=2, harmful=0, steps=20)
    assert near["readout"] > 0.05 and abs(orthogonal["readout"]) < 1e-6


def test_context_dataset_and_drag_aware_keep():
    gen = torch.Generator().manual_seed(0)
    x = drag.context_dataset(6, target=1, harmful=0, n_samples=50, generator=gen)
    assert (x[:, 1] >= 0.5).all() and (x[:, 0] == 0).all() and ((x != 0).sum(1) == 2).all()
    W = torch.randn(3, 6, generator=gen)
    keep = drag.drag_aware_keep(x, W, harmful=0, keep_fraction=0.4)
    score = (x @ W.T) @ W[:, 0]
    dropped = torch.ones(50, dtype=torch.bool)
    dropped[keep] = False
    assert len(keep) == 20 and score[keep].max() <= score[dropped].min()


def test_most_crowded_has_the_nearest_neighbour():
    W = torch.tensor([[1.0, 0.0, 0.95, -1.0], [0.0, 1.0, 0.31, 0.0]])
    assert drag.most_crowded(W) in (0, 2)  # features 0 and 2 are each other's nearest neighbour
    W[:, 3] = torch.tensor([0.0, 0.999])
    assert drag.most_crowded(W) in (1, 3)


def test_measured_drag_is_the_readout_change_of_the_other_features(model):
    W, b = model
    W_before, b_before = W.clone(), b.clone()
    change = drag.measured_drag(W, b, 2, steps=3, lr=1e-2)
    W1, b1 = drag.narrow_finetune(W, b, 2, steps=3, lr=1e-2)
    x = drag.task_input(W.shape[1], 2)
    full = (drag.readouts(W1, b1, x) - drag.readouts(W, b, x))[0]
    assert change.shape == (W.shape[1] - 1,)
    assert torch.allclose(change, torch.cat([full[:2], full[3:]]))
    assert torch.equal(W, W_before) and torch.equal(b, b_before)  # fine-tuned a copy


def test_measure_drag_takes_a_measurement_function(model):
    W, b = model
    default = drag.measure_drag(W, b, 1, steps=5)
    given = drag.measure_drag(W, b, 1, steps=5, measured=drag.measured_drag)
    for field in ("predicted", "measured_readout", "measured_output"):
        assert torch.allclose(getattr(default, field), getattr(given, field), atol=1e-6)
    with pytest.raises(ValueError, match="target-only SGD"):
        drag.measure_drag(W, b, 1, optimizer="adam", measured=drag.measured_drag)


def test_measure_drag_takes_a_prediction_function(model):
    W, b = model
    doubled = drag.measure_drag(W, b, 1, predicted=lambda *args: 2 * drag.predicted_drag(*args))
    assert torch.allclose(doubled.predicted, 2 * drag.measure_drag(W, b, 1).predicted)
