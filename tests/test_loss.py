import math

import torch

from helpers.modeling.loss import detector_loss


def _bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_loss_matches_a_hand_computation():
    logits_a = torch.tensor([0.5, -1.0, 2.0])
    logits_b = torch.tensor([[0.1, 0.2, 0.3, 0.0, -0.1, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.5, 0.0, 0.2, 0.0]])
    label_a, label_b = torch.tensor([1, 0, 1]), torch.tensor([5, 0, 2])
    expected_a = sum(_bce(l, t) for l, t in zip([0.5, -1.0, 2.0], [1, 0, 1])) / 3
    expected_b = (_ce(logits_b[0].tolist(), 5) + _ce(logits_b[2].tolist(), 2)) / 2  # the real row is left out
    loss = detector_loss(logits_a, logits_b, label_a, label_b)
    assert math.isclose(loss.item(), expected_a + expected_b, rel_tol=1e-5)


def test_batch_without_ai_rows_gives_task_a_loss_only_not_nan():
    logits_a = torch.tensor([0.3, -0.7], requires_grad=True)
    logits_b = torch.randn(2, 6, requires_grad=True)
    loss = detector_loss(logits_a, logits_b, torch.tensor([0, 0]), torch.tensor([0, 0]))
    assert math.isclose(loss.item(), (_bce(0.3, 0) + _bce(-0.7, 0)) / 2, rel_tol=1e-5)
    loss.backward()
    assert torch.all(logits_b.grad == 0) and torch.isfinite(logits_a.grad).all()


def test_pred_condition_uses_head_a_decisions():
    logits_a = torch.tensor([2.0, -2.0, 1.0])  # head A calls rows 0 and 2 AI
    logits_b = torch.tensor([[0.0, 1.0, 0, 0, 0, 0], [0.0, 0.0, 3, 0, 0, 0], [0.5, 0.0, 0, 0, 0, 0]])
    label_a, label_b = torch.tensor([1, 1, 0]), torch.tensor([1, 2, 0])
    expected_a = (_bce(2.0, 1) + _bce(-2.0, 1) + _bce(1.0, 0)) / 3
    expected_b = (_ce(logits_b[0].tolist(), 1) + _ce(logits_b[2].tolist(), 0)) / 2
    loss = detector_loss(logits_a, logits_b, label_a, label_b, condition="pred")
    assert math.isclose(loss.item(), expected_a + expected_b, rel_tol=1e-5)
