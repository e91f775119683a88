import math

import torch

from helpers.modeling.loss import detector_loss
from helpers.training.arguments import training_arguments


def _bce(logit, target):
    p = 1 / (1 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_loss_matches_a_hand_computation():
    logits_a = torch.tensor([0.5, -1.0, 2.0])
    logits_b = torch.tensor(
        [[0.1, 0.2, 0.3, 0.0, -0.1, 0.4], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.5, 0.0, 0.2, 0.0]]
    )
    label_a, label_b = torch.tensor([1, 0, 1]), torch.tensor([5, 0, 2])
    expected_a = sum(_bce(logit, t) for logit, t in zip([0.5, -1.0, 2.0], [1, 0, 1])) / 3
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


def test_parts_of_a_batch_add_up_to_the_whole_batchs_loss_and_gradient():
    """Under gradient accumulation or several processes each part is divided by the whole batch's
    counts (global_counts): the parts' losses and gradients add up to the whole batch's, although
    the parts hold different numbers of AI rows (a mean of per-part means would not)."""
    from helpers.modeling.loss import global_counts

    torch.manual_seed(0)
    logits_a, logits_b = torch.randn(10, requires_grad=True), torch.randn(10, 6, requires_grad=True)
    label_a = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    label_b = torch.where(label_a == 1, torch.randint(1, 6, (10,)), torch.zeros(10, dtype=torch.long))
    whole = detector_loss(logits_a, logits_b, label_a, label_b)
    whole_grad = torch.autograd.grad(whole, logits_b)[0]
    parts = [{"label_a": label_a[:4]}, {"label_a": label_a[4:]}]
    counts = global_counts(parts)
    assert counts.tolist() == [10.0, 5.0]
    summed = sum(
        detector_loss(logits_a[s], logits_b[s], label_a[s], label_b[s], counts=counts)
        for s in (slice(0, 4), slice(4, 10))
    )
    assert torch.allclose(summed, whole)
    assert torch.allclose(torch.autograd.grad(summed, logits_b)[0], whole_grad)
    assert global_counts(parts, condition="pred") is None  # unknown before the forward: each part its own mean


def test_gradient_accumulation_trains_the_weights_one_whole_batch_trains(smoke_cfg, smoke_splits, tmp_path):
    """The Trainer (StudyTrainer) hands the model the whole batch's counts: a batch of 16 trained as
    two accumulated halves of 8 gives the weights that one batch of 16 gives."""
    import dataclasses

    from helpers.modeling.building import build_model
    from helpers.training import trainer as training
    from study import stages

    weights = []
    for most in (16, 8):
        cfg = dataclasses.replace(
            smoke_cfg,
            per_device_max_batch=most,
            epochs=1,
            batch_size=16,
            text_config={**smoke_cfg.text_config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        )
        model, tokenizer = build_model(cfg.model_spec)
        caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
        args = training_arguments(cfg.training_spec, tmp_path / f"m{most}")
        assert args.gradient_accumulation_steps == 16 // most
        args.eval_strategy, args.save_strategy, args.load_best_model_at_end = "no", "no", False
        training.make_trainer(cfg.training_spec, model, caches["train"], caches["validation"], args).train()
        weights.append(model.head_b.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)
