import torch
import torch.nn.functional as F

from magec.describers.base import Attribute, DescriptorLayout, Head, descriptor_loss, shift_distribution

AGES = tuple(float(a) for a in range(10))
LAYOUT = DescriptorLayout(
    heads=(Head("gender", "categorical", 2), Head("age", "categorical", 10, AGES), Head("smile", "binary", 1)),
    attributes=(
        Attribute("male", "gender", "binary", 1),
        Attribute("age", "age", "continuous"),
        Attribute("smile", "smile", "binary"),
    ),
)


def test_layout_slices_and_attribute_values():
    probs = torch.zeros(1, LAYOUT.dim)
    probs[0, 0:2] = torch.tensor([0.3, 0.7])
    probs[0, 2 + 4] = 1.0  # age 4
    probs[0, 12] = 0.9
    values = LAYOUT.attribute_values(probs)
    assert torch.allclose(values, torch.tensor([[0.7, 4.0, 0.9]]))


def test_shift_moves_expectation_by_amount_and_keeps_mass():
    block = torch.softmax(torch.randn(5, 10), -1) * 0 + torch.tensor([0, 0, 0.5, 0.5, 0, 0, 0, 0, 0, 0.0])
    shifted = shift_distribution(block, AGES, 2.5)
    values = torch.tensor(AGES)
    assert torch.allclose(shifted.sum(-1), torch.ones(5))
    assert torch.allclose((shifted * values).sum(-1), (block * values).sum(-1) + 2.5)
    clipped = shift_distribution(block, AGES, 100.0)
    assert torch.allclose(clipped[:, -1], torch.ones(5))  # mass beyond the end stays at the end


def test_edit_target_add_remove_and_shift():
    probs = LAYOUT.probabilities(torch.randn(3, LAYOUT.dim))
    add = LAYOUT.edit_target(probs, "male", +1)
    remove = LAYOUT.edit_target(probs, "male", -1)
    assert torch.equal(add[:, 0:2], torch.tensor([[0.0, 1.0]] * 3))
    assert torch.equal(remove[:, 0:2], torch.tensor([[1.0, 0.0]] * 3))
    assert torch.equal(add[:, 2:], probs[:, 2:])  # other heads untouched
    older = LAYOUT.edit_target(probs, "age", 1.5)
    assert torch.all(LAYOUT.attribute_values(older)[:, 1] > LAYOUT.attribute_values(probs)[:, 1])
    smile = LAYOUT.edit_target(probs, "smile", 1)
    assert torch.equal(smile[:, 12], torch.ones(3))


def test_descriptor_loss_is_the_training_loss_of_each_head():
    logits = torch.randn(4, LAYOUT.dim)
    targets = LAYOUT.probabilities(torch.randn(4, LAYOUT.dim))
    expected = (
        F.cross_entropy(logits[:, 0:2], targets[:, 0:2], reduction="none")
        + F.cross_entropy(logits[:, 2:12], targets[:, 2:12], reduction="none")
        + F.binary_cross_entropy_with_logits(logits[:, 12], targets[:, 12], reduction="none")
    )
    assert torch.allclose(descriptor_loss(LAYOUT, logits, targets, reduce_batch=False), expected, atol=1e-6)
    assert torch.allclose(descriptor_loss(LAYOUT, logits, targets), expected.mean(), atol=1e-6)
