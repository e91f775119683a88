from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from helpers.cache.dataset import collate
from helpers.evaluation.metrics import all_metrics
from helpers.inference.cached import predict
from helpers.modeling.building import build_model
from helpers.study import stages


def test_a_few_steps_lower_the_loss(smoke_cfg, smoke_splits):
    torch.manual_seed(0)
    model, tokenizer = build_model(smoke_cfg)
    train = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["train"])["train"]
    batch = collate(train.__getitems__(np.arange(32)))
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(30):
        loss = model(**batch).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * losses[0]


def test_trainer_keeps_the_best_epoch_and_one_checkpoint(smoke_cfg, smoke_splits, tmp_path):
    from helpers.training import trainer as training

    model, tokenizer = build_model(smoke_cfg)
    caches = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    model, history = training.train(smoke_cfg, model, caches["train"], caches["validation"], tmp_path / "ck", {"seed": 0})
    _, evals = training.learning_curves(history)
    assert list(evals["epoch"]) == [1.0, 2.0]
    checkpoints = sorted((tmp_path / "ck").glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 2  # the latest, plus the best while it is another one
    assert all((c / "provenance.json").is_file() for c in checkpoints)
    metric = f"eval_{smoke_cfg.metric_for_best}"
    logged = history[history[metric].notna()].reset_index(drop=True)
    best_step = int(logged.loc[logged[metric].idxmax(), "step"])  # the first epoch with the best metric
    best_checkpoint = Path(history.attrs["best_checkpoint"])
    assert best_checkpoint.name == f"checkpoint-{best_step}"
    # The returned weights are the best checkpoint's, and scored afresh they give its logged metric.
    saved = load_file(str(best_checkpoint / "model.safetensors"))
    returned = model.state_dict()
    assert all(torch.equal(returned[k].cpu(), saved[k]) for k in saved)
    validation = caches["validation"]
    preds = predict(model, validation, 64)
    rescored = all_metrics(validation.label_a, validation.label_b, preds.label_a, preds.label_b)
    assert np.isclose(rescored[smoke_cfg.metric_for_best], evals[metric].max())


def test_frozen_text_features_are_computed_on_the_training_device(smoke_cfg, smoke_splits, tmp_path):
    """On a GPU the frozen tower's features must not be computed on the CPU before the Trainer
    moves the model: here the training device is patched to 'meta', which only a moved model is on."""
    import dataclasses
    from unittest import mock

    import pytest
    from transformers import TrainingArguments

    from helpers.training import trainer as training

    class Seen(Exception):
        pass

    def spy(split, model, *args, **kwargs):
        raise Seen(next(model.text_encoder.parameters()).device.type)

    cfg = dataclasses.replace(smoke_cfg, freeze_text=True)
    model, tokenizer = build_model(cfg)
    caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    with mock.patch.object(TrainingArguments, "device", new_callable=mock.PropertyMock,
                           return_value=torch.device("meta")), \
            mock.patch("helpers.training.trainer.with_text_features", spy), pytest.raises(Seen) as seen:
        training.train(cfg, model, caches["train"], caches["validation"], tmp_path / "ck")
    assert str(seen.value) == "meta"


def test_loader_worker_processes_train_the_same_model_as_the_main_process(smoke_cfg, smoke_splits, tmp_path):
    """num_workers > 0: batches come from worker processes (the cache's file reads in each), in the
    same order and with the same contents, so the trained model and its curve are the same."""
    import dataclasses

    import pandas as pd

    from helpers.training import trainer as training

    curves, weights = [], []
    for workers in (0, 2):
        cfg = dataclasses.replace(smoke_cfg, num_workers=workers)
        model, tokenizer = build_model(cfg)
        caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
        model, history = training.train(cfg, model, caches["train"], caches["validation"], tmp_path / f"w{workers}")
        curves.append(training.learning_curves(history)[1].drop(columns=["eval_runtime"], errors="ignore")
                      .filter(regex="^(epoch|eval_(?!.*per_second))"))
        weights.append(model.head_b.weight.detach().clone())
    pd.testing.assert_frame_equal(curves[0], curves[1])
    assert torch.equal(weights[0], weights[1])
