"""What building a detector reads: the encoders, the fusion and heads, the text side, and the seed
of the starting weights. Each field is the profile key of its name (Config.model_spec)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    seed: int
    text_encoder: str
    text_init: str
    text_config: dict
    text_pooling: str
    tokenizer: str
    vision_encoder: str
    vision_init: str
    vision_config: dict
    vision_input: str
    image_size: int
    fusion_dim: int
    fusion: str
    modality: str
    dropout: float
    freeze_text: bool
    freeze_vision: bool
    max_caption_length: int
    caption_template: str
    template_splits: list
    loss_condition: str
    task_b_decoding: str

    def template_for(self, split: str) -> str:
        """The caption template of a split's text: the profile's on template_splits, bare elsewhere."""
        return self.caption_template if split in self.template_splits else "{}"
