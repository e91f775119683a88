"""A model card in every saved model folder: README.md in the Hugging Face format (YAML metadata,
then prose), generated from the run. It says first what the model is good for, then what it was
trained on and how, its figures, its operating thresholds and the limitations the analyses found."""
from __future__ import annotations

import json
from pathlib import Path

SYNTHETIC_WARNING = ("**Trained on the embedded synthetic demo set, not on real photographs or real generators: "
                     "its answers on real-world images mean nothing.** It exists to show the pipeline end to end; train "
                     "the paper profile (or your own data) for a detector.")


def _hub_ids(params: dict) -> list[str]:
    """The pretrained encoders that name a hub model (not a packaged or a random one)."""
    return [params[f"{side}_encoder"] for side in ("text", "vision")
            if params.get(f"{side}_init") == "pretrained" and not str(params[f"{side}_encoder"]).startswith("pkg:")]


def _eval_results(name: str, params: dict, metrics: dict) -> list:
    from huggingface_hub import EvalResult

    found = []
    for split, by_stage in ((s, metrics.get(s) or {}) for s in ("validation", "test")):
        values = by_stage.get(metrics.get("_stage", "")) or {}
        for key, metric in (("f1_a", "f1"), ("acc_a", "accuracy"), ("f1_b_weighted", "f1")):
            if key in values:
                found.append(EvalResult(task_type="image-classification", task_name="CT2: Task A (real or AI), Task B (source)",
                                        dataset_type=params["dataset"],
                                        dataset_name=params["dataset"], dataset_split=split, metric_type=metric,
                                        metric_name=key, metric_value=round(100 * values[key], 2)))
    return found


def _results(meta: dict, metrics: dict, stage: str) -> str:
    lines = [f"Best validation epoch {meta.get('best_epoch', '?'):.0f} ({meta['params']['metric_for_best']} = "
             f"{meta.get('best_metric', float('nan')):.4f}) on {meta.get('train_rows', '?')} training rows."]
    for split in ("validation", "test"):
        values = (metrics.get(split) or {}).get(stage)
        if values:
            lines.append(f"- {split}: F1-A {100 * values['f1_a']:.2f}, accuracy A {100 * values['acc_a']:.2f}, "
                         f"weighted F1-B {100 * values['f1_b_weighted']:.2f} (six-way argmax "
                         f"{100 * values.get('f1_b_weighted_argmax', float('nan')):.2f})")
    for name, item in (metrics.get("external") or {}).items():
        lines.append(f"- outside set {name}: {item['conclusion']}")
    return "\n".join(lines)


def _thresholds(thresholds: dict | None) -> str:
    if not thresholds:
        return "This model stores no operating thresholds."
    return ("| name | P(AI) at or above | chosen so that |\n|---|---|---|\n"
            f"| 0.5 | 0.5 | the default |\n"
            f"| fpr1 | {thresholds['fpr1']:.6g} | at most 1 % of the validation's {thresholds['set_on_real_images']} real images are called AI |\n"
            f"| fpr5 | {thresholds['fpr5']:.6g} | at most 5 % of them are called AI |\n"
            f"| f1 | {thresholds['f1']:.6g} | F1 of Task A is highest on validation |\n\n"
            "Use one with `python -m helpers.predict --threshold fpr5 ...`; set your own on reference real images "
            "of the kind you will score.")


def card_text(model_dir: Path, metrics: dict | None = None, stage: str = "") -> str:
    """The card of a saved model, from its training_meta.json, its config and (when given) the
    report's metrics.json."""
    from huggingface_hub import ModelCardData

    meta = json.loads((model_dir / "training_meta.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    params, metrics = meta["params"], dict(metrics or {}, _stage=stage)
    name = f"ct2-detector-{params['profile']}-{stage or model_dir.name}"
    datasets = [d for d in (params["dataset"], params.get("unlabelled_dataset")) if d]
    revisions = meta.get("data_revisions") or {}
    data = ModelCardData(language="en", license="mit", library_name="transformers", model_name=name,
                         base_model=_hub_ids(params) or None, datasets=datasets,
                         tags=["ai-generated-image-detection", "multimodal", "ct2", "defactify-4"],
                         eval_results=_eval_results(name, params, metrics) or None,
                         data_revisions={k: v.get("loaded") for k, v in revisions.items()} or None)
    synthetic = params["dataset"] == "synthetic"
    analyses = metrics.get("analyses") or {}
    limitations = [f"- {item['title']}: {item['conclusion']}" for key, item in analyses.items()
                   if key in ("audit", "robustness", "unseen", "calibration")]
    body = [f"# {name}", SYNTHETIC_WARNING if synthetic else "",
            "A multi-modal, multi-task detector of AI-generated images (NAU-QMUL's CT2 method): an image and its caption "
            "go in; Task A says real or AI, Task B which of real, SD 2.1, SDXL, SD 3, DALL-E 3, Midjourney 6.",
            "## Intended use", "Research on AI-generated image detection and reproduction of the CT2 shared task. Not "
            "for deciding about a person or a publication on its own: see the limitations.",
            "## Training data and profile",
            f"Profile `{params['profile']}`; data `{params['dataset']}`"
            + "".join(f"; {k} @ `{v.get('loaded')}`" for k, v in revisions.items())
            + f". Text tower `{params['text_encoder']}` ({params['text_init']}), vision tower `{params['vision_encoder']}` "
              f"({params['vision_init']}); lr {params['learning_rate']}, batch {params['batch_size']}, {params['epochs']} "
              f"epochs, best epoch by `{params['metric_for_best']}`; seed {params['seed']}. Stage `{stage}`"
            + (f" with pseudo-labels ({meta['pseudo'].get('selected')} of {meta['pseudo'].get('pool')} pool rows kept)"
               if meta.get("pseudo") else "") + ".",
            "## Fidelity choices",
            f"Fusion `{config.get('fusion', 'concat')}`, Task B decoding `{config.get('task_b_decoding')}`, text pooling `{params['text_pooling']}`, caption template "
            f"`{params['caption_template']}` on {params['template_splits']}, unreadable images `{params['bad_images']}`, "
            f"pseudo-label confidence `{params['pseudo_confidence']}` and split `{params['pseudo_split']}`, pool overlap "
            f"`{params['pool_overlap']}` (the README's fidelity table says where each follows the authors' code).",
            "## Results", _results(meta, metrics, stage),
            "## Operating thresholds", _thresholds(config.get("operating_thresholds")),
            "## Limitations",
            "\n".join(limitations) or "Run the analyses (notebooks 05-11) for this model's limitations.",
            "## Provenance", f"git {meta.get('git_sha')}; " + ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(part for part in body if part) + "\n"


def write_card(model_dir: str | Path, metrics: dict | None = None, stage: str = "") -> Path:
    from helpers.files import written_whole

    model_dir = Path(model_dir)
    with written_whole(model_dir / "README.md") as partial:
        partial.write_text(card_text(model_dir, metrics, stage), encoding="utf-8")
    return model_dir / "README.md"
