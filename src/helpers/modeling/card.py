"""A model card in every saved model folder: README.md in the Hugging Face format (YAML metadata,
then prose), generated from the run. It says first what the model is good for, then what it was
trained on and how, its figures, its operating thresholds and the limitations the analyses found."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.files import written_whole

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md.j2"


def _hub_ids(params: dict) -> list[str]:
    """The pretrained encoders that name a hub model (not a packaged or a random one)."""
    return [
        params[f"{side}_encoder"]
        for side in ("text", "vision")
        if params.get(f"{side}_init") == "pretrained" and not str(params[f"{side}_encoder"]).startswith("pkg:")
    ]


def _eval_results(name: str, params: dict, metrics: dict) -> list:
    from huggingface_hub import EvalResult

    found = []
    for split, by_stage in ((s, metrics.get(s) or {}) for s in ("validation", "test")):
        values = by_stage.get(metrics.get("_stage", "")) or {}
        for key, metric in (("f1_a", "f1"), ("acc_a", "accuracy"), ("f1_b_weighted", "f1")):
            if key in values:
                found.append(
                    EvalResult(
                        task_type="image-classification",
                        task_name="CT2: Task A (real or AI), Task B (source)",
                        dataset_type=params["dataset"],
                        dataset_name=params["dataset"],
                        dataset_split=split,
                        metric_type=metric,
                        metric_name=key,
                        metric_value=round(100 * values[key], 2),
                    )
                )
    return found


def card_text(model_dir: Path, metrics: dict | None = None, stage: str = "", analysed: bool = True) -> str:
    """The card of a saved model, from its training_meta.json, its config and (when given) the
    report's metrics.json. analysed: whether the analyses and outside sets scored this model (the
    study's final one); another stage's card gets none of their conclusions, and says where they are."""
    from huggingface_hub import ModelCard, ModelCardData

    meta = json.loads((model_dir / "training_meta.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    params, metrics = meta["params"], dict(metrics or {}, _stage=stage)
    name = f"ct2-detector-{params['profile']}-{stage or model_dir.name}"
    revisions = meta.get("data_revisions") or {}
    data = ModelCardData(
        language="en",
        license="mit",
        library_name="transformers",
        model_name=name,
        base_model=_hub_ids(params) or None,
        datasets=[d for d in (params["dataset"], params.get("unlabelled_dataset")) if d],
        tags=["ai-generated-image-detection", "multimodal", "ct2", "defactify-4"],
        eval_results=_eval_results(name, params, metrics) or None,
        data_revisions={k: v.get("loaded") for k, v in revisions.items()} or None,
    )
    scores = {
        split: {"f1_b_weighted_argmax": float("nan"), **values}
        for split in ("validation", "test")
        if (values := (metrics.get(split) or {}).get(stage))
    }
    # Only the conclusions about this very model: an analysis that scored models of its own (the
    # ablation's, the held-out generators', the seeds') says nothing of this one's limits.
    limitations = [
        item
        for key, item in (metrics.get("analyses") or {}).items()
        if analysed and key in ("audit", "robustness", "calibration") and item.get("model") == stage
    ]
    card = ModelCard.from_template(
        data,
        template_path=TEMPLATE,
        title=name,
        params=params,
        meta=meta,
        config=config,
        stage=stage,
        revisions=revisions,
        scores=scores,
        outside=(metrics.get("external") or {}) if analysed else {},
        limitations=limitations,
        analysed=analysed,
        thresholds=config.get("operating_thresholds"),
    )
    return f"{card}\n"


def write_card(model_dir: str | Path, metrics: dict | None = None, stage: str = "", analysed: bool = True) -> Path:
    model_dir = Path(model_dir)
    with written_whole(model_dir / "README.md") as partial:
        partial.write_text(card_text(model_dir, metrics, stage, analysed), encoding="utf-8")
    return model_dir / "README.md"
