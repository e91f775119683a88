from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers.cache.dataset import collate
from helpers.evaluation.metrics import all_metrics, compute_metrics_for
from helpers.inference.cached import predict
from helpers.modeling.building import build_model
from helpers.training.arguments import training_arguments
from study import stages

METRICS = compute_metrics_for("hierarchical")


def test_a_few_steps_lower_the_loss(smoke_cfg, smoke_splits):
    torch.manual_seed(0)
    model, tokenizer = build_model(smoke_cfg.model_spec)
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

    model, tokenizer = build_model(smoke_cfg.model_spec)
    caches = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    model, run = training.train(
        smoke_cfg.training_spec,
        model,
        caches["train"],
        caches["validation"],
        tmp_path / "ck",
        METRICS,
        {"seed": 0},
        {"seed": 0},
    )
    history = run.history
    _, evals = training.learning_curves(history)
    assert list(evals["epoch"]) == [1.0, 2.0]
    checkpoints = sorted((tmp_path / "ck").glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 2  # the latest, plus the best while it is another one
    assert all((c / "provenance.json").is_file() for c in checkpoints)
    metric = f"eval_{smoke_cfg.metric_for_best}"
    logged = history[history[metric].notna()].reset_index(drop=True)
    best_step = int(logged.loc[logged[metric].idxmax(), "step"])  # the first epoch with the best metric
    best_checkpoint = Path(run.best_checkpoint)
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
    model, tokenizer = build_model(cfg.model_spec)
    caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    with (
        mock.patch.object(
            TrainingArguments, "device", new_callable=mock.PropertyMock, return_value=torch.device("meta")
        ),
        mock.patch("helpers.training.trainer.with_text_features", spy),
        pytest.raises(Seen) as seen,
    ):
        training.train(cfg.training_spec, model, caches["train"], caches["validation"], tmp_path / "ck", METRICS, {})
    assert str(seen.value) == "meta"


def test_loader_worker_processes_train_the_same_model_as_the_main_process(smoke_cfg, smoke_splits, tmp_path):
    """num_workers > 0: batches come from worker processes (the cache's file reads in each), in the
    same order and with the same contents, so the trained model and its curve are the same."""
    import dataclasses

    import pandas as pd

    from helpers.training import trainer as training

    curves, weights = [], []
    for workers in (0, 2):
        # No dropout: worker processes draw their seeds from the main process's generator, which
        # shifts the dropout masks drawn after them; the claim here is about the batches.
        cfg = dataclasses.replace(
            smoke_cfg,
            num_workers=workers,
            text_config={**smoke_cfg.text_config, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        )
        model, tokenizer = build_model(cfg.model_spec)
        caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
        model, run = training.train(
            cfg.training_spec, model, caches["train"], caches["validation"], tmp_path / f"w{workers}", METRICS, {}
        )
        curves.append(
            training.learning_curves(run.history)[1]
            .drop(columns=["eval_runtime"], errors="ignore")
            .filter(regex="^(epoch|eval_(?!.*per_second))")
        )
        weights.append(model.head_b.weight.detach().clone())
    pd.testing.assert_frame_equal(curves[0], curves[1])
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("resident", [False, True], ids=["from the cache files", "pixels on the device"])
def test_a_training_step_never_waits_for_the_device(smoke_cfg, smoke_splits, tmp_path, monkeypatch, resident):
    """Reading a tensor's value on the host (bool(), .item()) inside a step makes the host wait for
    the GPU before it can queue the next step. Counted here on the CPU from the step's start to its
    end (forward, loss, backward, clipping, optimiser), with batches read from the cache's files and
    gathered from pixels held on the device (device_cache; the CPU stands in): none."""
    from transformers import TrainerCallback

    from helpers.cache.pixels import DevicePixels
    from helpers.training import trainer as training

    monkeypatch.setattr(training, "device_cache", lambda cfg, splits, device: resident)

    reads, inside = [], [False]

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if inside[0]:
                reads.append(name)
            return original(self, *args, **kwargs)

        return read

    class Window(TrainerCallback):
        def on_step_begin(self, *args, **kwargs):
            inside[0] = True

        def on_step_end(self, *args, **kwargs):
            inside[0] = False

    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    model, tokenizer = build_model(smoke_cfg.model_spec)
    caches = stages.caches_for(smoke_cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    trainer = training.make_trainer(
        smoke_cfg.training_spec,
        model,
        caches["train"],
        caches["validation"],
        training_arguments(smoke_cfg.training_spec, tmp_path / "ck"),
        [Window()],
    )
    trainer.args.save_strategy, trainer.args.eval_strategy = "no", "no"
    trainer.args.load_best_model_at_end = False
    assert isinstance(trainer.train_dataset.pixels, DevicePixels) == resident
    trainer.train()
    assert trainer.state.global_step > 4 and reads == []


def test_a_batchs_indices_go_to_the_gpu_from_pinned_memory_without_blocking(monkeypatch):
    """DevicePixels gathers a batch on the GPU by index: the indices are copied from pinned memory,
    non-blocking (from pageable memory the host would wait at every step). The copy's calls are
    recorded here on the CPU, as a GPU would receive them."""
    from helpers.cache.pixels import device_index

    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin_memory") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: calls.append(("to", str(a[0]), k)) or self)
    index = device_index([3, 1, 2], torch.device("cuda"))
    assert index.tolist() == [3, 1, 2] and index.dtype == torch.int64
    assert calls == ["pin_memory", ("to", "cuda", {"non_blocking": True})]


def test_pixels_held_on_the_device_train_the_same_model(smoke_cfg, smoke_splits, tmp_path, monkeypatch):
    """device_cache: the Trainer gathers batches from pixels held on the device (here the CPU stands
    in for the GPU), in the same order as from the cache's files: the same curve and weights."""
    import dataclasses

    from helpers.cache.pixels import DevicePixels
    from helpers.training import trainer as training

    seen, weights = [], []
    for resident in (False, True):
        monkeypatch.setattr(training, "device_cache", lambda cfg, splits, device, resident=resident: resident)
        cfg = dataclasses.replace(smoke_cfg, num_workers=2)
        model, tokenizer = build_model(cfg.model_spec)
        caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
        trainer = training.make_trainer(
            cfg.training_spec,
            model,
            caches["train"],
            caches["validation"],
            training_arguments(cfg.training_spec, tmp_path / f"r{resident}"),
            compute_metrics=METRICS,
        )
        seen.append((type(trainer.train_dataset.pixels), trainer.args.dataloader_num_workers))
        trainer.train()
        weights.append(model.head_b.weight.detach().clone())
    assert seen[1] == (DevicePixels, 0) and seen[0][0] is not DevicePixels
    assert torch.equal(weights[0], weights[1])


def test_an_epoch_under_torch_compile_traces_at_most_four_static_graphs(smoke_cfg, smoke_splits, tmp_path, monkeypatch):
    """Text is trimmed to each batch's longest caption, so every new length was a new shape. Under
    torch_compile the Trainer sees a few fixed widths and static graphs: a backend that records
    what dynamo hands it counts the graphs of an epoch of captions of many lengths, and finds no
    symbolic shape among them."""
    import dataclasses

    import torch._dynamo
    from torch._dynamo.backends import registry

    from helpers.training import trainer as training

    graphs = []

    def probe(graph, example_inputs):
        shapes = [node.meta.get("example_value") for node in graph.graph.nodes if node.op == "placeholder"]
        graphs.append(
            any(
                isinstance(value, torch.SymInt)
                or isinstance(getattr(value, "shape", None), torch.Size)
                and any(isinstance(size, torch.SymInt) for size in value.shape)
                for value in shapes
            )
        )
        return graph.forward

    cfg = dataclasses.replace(smoke_cfg, torch_compile=True, epochs=1)
    model, tokenizer = build_model(cfg.model_spec)
    caches = stages.caches_for(cfg, smoke_splits, tokenizer, model.config.image_size, ["train", "validation"])
    train = caches["train"]
    rng = np.random.default_rng(0)
    # Mostly short captions and a few long ones, so that the longest of a batch varies from batch to batch.
    lengths = np.minimum(1 + rng.geometric(0.2, len(train)), cfg.max_caption_length).astype(train.lengths.dtype)
    train = dataclasses.replace(train, lengths=lengths)
    assert len(set(lengths.tolist())) > 8
    args = training_arguments(cfg.training_spec, tmp_path / "ck")
    registry.lookup_backend("eager")  # registers the built-in backends first
    monkeypatch.setitem(registry._COMPILER_FNS, "eager", probe)
    monkeypatch.setattr("helpers.modeling.compiled.BACKEND", "eager")
    args.eval_strategy, args.save_strategy = "no", "no"
    args.load_best_model_at_end = False
    torch._dynamo.reset()
    training.make_trainer(cfg.training_spec, model, train, caches["validation"], args).train()
    assert 1 <= len(graphs) <= 4 and not any(graphs)
