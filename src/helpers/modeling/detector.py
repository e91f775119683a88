"""The dual encoder: a text encoder and a vision encoder, fused into two heads.

pooled text ⊕ pooled image → Linear(fusion_dim) + ReLU → head A (1 logit, AI vs real) and
head B (6 logits, the class); `fusion: attention` adds a cross-attention step (modeling.fusion). Pixels enter as uint8 (from the cache) and are normalised
inside the model, on the device. A trained model is one directory: config.json (with both
encoders' configs and the preprocessing embedded), model.safetensors and the tokenizer;
it loads with no network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from helpers.labels import CLASS_NAMES
from helpers.modeling.fusion import CrossAttentionFusion, concat_fusion, patch_states
from helpers.modeling.loss import detector_loss

# Towers whose attention takes a ready 4D mask as it is (transformers' masking_utils).
ADDITIVE_MASK_TOWERS = {"bert", "roberta"}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class DetectorConfig(PretrainedConfig):
    model_type = "ct2_dual_encoder"

    def __init__(
        self,
        text_config: dict | None = None,
        vision_config: dict | None = None,
        text_pooling: str = "pooler",
        fusion_dim: int = 512,
        dropout: float = 0.0,
        class_names: list[str] | None = None,
        image_size: int = 224,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        loss_condition: str = "label",
        text_source: str = "",
        vision_source: str = "",
        max_caption_length: int = 128,
        modality: str = "both",
        freeze_text: bool = False,
        freeze_vision: bool = False,
        task_b_decoding: str = "hierarchical",
        inference_caption_template: str = "{}",
        fusion: str = "concat",
        vision_input: str = "pixels",
        bf16: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.text_config = text_config or {}
        self.vision_config = vision_config or {}
        self.text_pooling = text_pooling
        self.fusion_dim = fusion_dim
        self.fusion = fusion
        self.vision_input = vision_input
        self.dropout = dropout
        self.class_names = list(class_names or CLASS_NAMES)
        self.image_size = image_size
        self.image_mean = list(image_mean or CLIP_MEAN)
        self.image_std = list(image_std or CLIP_STD)
        self.loss_condition = loss_condition
        self.text_source = text_source
        self.vision_source = vision_source
        self.max_caption_length = max_caption_length
        self.modality = modality
        self.freeze_text = freeze_text
        self.freeze_vision = freeze_vision
        # How answers are read off the heads, and the text a new caption is wrapped in, for prediction.
        self.task_b_decoding = task_b_decoding
        self.inference_caption_template = inference_caption_template
        # The precision it was trained and evaluated in (bf16 autocast: set by the Trainer that trains
        # it, on CUDA only), so that every scorer answers as the report does; fp32 until trained.
        self.bf16 = bf16


@dataclass
class DetectorOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits_a: torch.Tensor | None = None
    logits_b: torch.Tensor | None = None


def _sub_config(values: dict) -> PretrainedConfig:
    values = dict(values)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def _pixel_affine(config: DetectorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / 255 - mean) / std == x * scale + shift, per channel."""
    std = torch.tensor(config.image_std).view(1, 3, 1, 1)
    return 1.0 / (255.0 * std), -torch.tensor(config.image_mean).view(1, 3, 1, 1) / std


def _attention(config: PretrainedConfig) -> dict:
    """PyTorch's fused attention (SDPA) wherever the architecture supports it."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    model_class = MODEL_MAPPING.get(type(config), None)
    return {"attn_implementation": "sdpa"} if getattr(model_class, "_supports_sdpa", False) else {}


def _width(config: PretrainedConfig) -> int:
    """Size of the pooled output: hidden_size for transformers, the last stage's width for CNNs."""
    sizes = getattr(config, "hidden_sizes", None)
    return sizes[-1] if sizes else config.hidden_size


def pooled_output(outputs, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    if how == "pooler" and getattr(outputs, "pooler_output", None) is not None:
        return outputs.pooler_output.flatten(1)  # convolutional towers pool to [B, C, 1, 1]
    hidden = outputs.last_hidden_state
    if how == "mean" and attention_mask is not None:
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return hidden[:, 0]


def npr_residual(pixels: torch.Tensor) -> torch.Tensor:
    """Neighbouring-pixel relationships (Tan et al., "Rethinking the Up-Sampling Operations in
    CNN-based Generative Network for Generalizable Deepfake Detection", CVPR 2024): each pixel less
    the top-left one of its 2x2 block, zero wherever an image was up-sampled by nearest neighbour."""
    height, width = pixels.shape[-2:]
    blocks = nn.functional.interpolate(pixels[..., ::2, ::2], scale_factor=2.0, mode="nearest")
    return pixels - blocks[..., :height, :width]


class DualEncoderDetector(PreTrainedModel):
    config_class = DetectorConfig
    base_model_prefix = "detector"
    main_input_name = "input_ids"
    _supports_sdpa = True

    def __init__(self, config: DetectorConfig):
        super().__init__(config)
        text_config, vision_config = _sub_config(config.text_config), _sub_config(config.vision_config)
        self.text_encoder = AutoModel.from_config(text_config, **_attention(text_config))
        self.vision_encoder = AutoModel.from_config(vision_config, **_attention(vision_config))
        widths = (text_config.hidden_size, _width(vision_config), config.fusion_dim, config.dropout)
        self.fusion = CrossAttentionFusion(*widths) if config.fusion == "attention" else concat_fusion(*widths)
        self.head_a = nn.Linear(config.fusion_dim, 1)
        self.head_b = nn.Linear(config.fusion_dim, len(config.class_names))
        # Kept as buffers so that they travel with the weights.
        scale, shift = _pixel_affine(config)
        self.register_buffer("pixel_scale", scale)
        self.register_buffer("pixel_shift", shift)
        self.post_init()

    def _fused_linear(self) -> nn.Linear:
        return self.fusion.project[0] if self.config.fusion == "attention" else self.fusion[0]

    def _init_weights(self, module):
        # The fusion layer and the heads keep nn.Linear's own initialisation, as the authors' code
        # does (no N(0, 0.02) re-draw); only the pixel constants are set here.
        if module is self:
            scale, shift = _pixel_affine(self.config)
            self.pixel_scale.copy_(scale)
            self.pixel_shift.copy_(shift)

    def normalise(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dtype == torch.uint8:
            pixel_values = pixel_values.float() * self.pixel_scale + self.pixel_shift
        return pixel_values

    def train(self, mode: bool = True):
        # A frozen tower stays in eval mode (no dropout), so its output is a fixed function of the
        # caption and can be computed once (cache.with_text_features) without changing training.
        super().train(mode)
        if self.config.freeze_text:
            self.text_encoder.eval()
        if self.config.freeze_vision:
            self.vision_encoder.eval()
        return self

    def encode_text(self, input_ids, attention_mask) -> torch.Tensor:
        text = self.text_encoder(input_ids=input_ids, attention_mask=self.text_attention_mask(attention_mask))
        return pooled_output(text, attention_mask, self.config.text_pooling)

    def text_attention_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """BERT-family towers get their mask already in 4D additive form: given the 2D mask, they
        first ask whether any token is padding (mask.all()), a read on the host that waits for the
        GPU at every step; the additive mask is the one they would build."""
        if self.text_encoder.config.model_type not in ADDITIVE_MASK_TOWERS:
            return attention_mask
        dtype = self.text_encoder.get_input_embeddings().weight.dtype
        return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def encode_image(self, pixel_values, blank_image=None) -> tuple[ModelOutput, torch.Tensor]:
        """(the vision tower's outputs, its pooled vector) for uint8 or normalised pixels, fed as the
        profile says (vision_input)."""
        pixels = self.normalise(pixel_values)
        if blank_image is not None:
            # An unreadable image is a black one, normalised (pixel_shift is 0 normalised): what the
            # authors' code gets by passing zeros through the feature extractor, and what the
            # frozen-feature probes see.
            pixels = torch.where(blank_image.view(-1, 1, 1, 1), self.pixel_shift.to(pixels.dtype), pixels)
        if self.config.vision_input == "npr":
            pixels = npr_residual(pixels)
        # oneDNN's and cuDNN's convolutions run faster on channels-last input (about 10 % of a
        # training step of the demo's ResNet on 2 CPU cores); the weights keep their layout.
        outputs = self.vision_encoder(pixel_values=pixels.contiguous(memory_format=torch.channels_last))
        return outputs, pooled_output(outputs, None, "pooler")

    def features(self, input_ids, attention_mask, pixel_values, text_features=None, blank_image=None) -> torch.Tensor:
        modality = self.config.modality
        if modality != "image":
            text_vec = text_features if text_features is not None else self.encode_text(input_ids, attention_mask)
        if modality != "text":
            vision_out, vision_vec = self.encode_image(pixel_values, blank_image)
        if self.config.fusion == "attention":  # both towers (config: attention refuses an ablation)
            return self.fusion(text_vec, vision_vec.to(text_vec.dtype), patch_states(vision_out))
        # An ablated tower contributes zeros of its usual width, so the fusion layer keeps its shape.
        width = self._fused_linear().in_features
        if modality == "image":
            text_vec = vision_vec.new_zeros(vision_vec.shape[0], width - vision_vec.shape[1])
        if modality == "text":
            vision_vec = text_vec.new_zeros(text_vec.shape[0], width - text_vec.shape[1])
        return self.fusion(torch.cat([text_vec, vision_vec.to(text_vec.dtype)], dim=-1))

    # The Trainer hands the loss the global batch's counts (training.trainer.StudyTrainer), so that
    # each task's mean is one mean over the whole batch under accumulation and several processes.
    accepts_loss_kwargs = True

    def forward(
        self,
        input_ids,
        attention_mask,
        pixel_values,
        label_a=None,
        label_b=None,
        text_features=None,
        blank_image=None,
        num_items_in_batch=None,
    ) -> DetectorOutput:
        shared = self.features(input_ids, attention_mask, pixel_values, text_features, blank_image)
        logits_a, logits_b = self.head_a(shared).squeeze(-1), self.head_b(shared)
        loss = None
        if label_a is not None and label_b is not None:
            loss = detector_loss(logits_a, logits_b, label_a, label_b, self.config.loss_condition, num_items_in_batch)
        return DetectorOutput(loss=loss, logits_a=logits_a, logits_b=logits_b)


# Registered so that Auto classes (and the tokenizer loader, which reads config.json) know the type.
AutoConfig.register(DetectorConfig.model_type, DetectorConfig, exist_ok=True)
AutoModel.register(DetectorConfig, DualEncoderDetector, exist_ok=True)
