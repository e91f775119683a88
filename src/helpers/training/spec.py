"""What setting up a training reads: the paper's schedule, the batch over the processes, precision,
and where the data sit while it trains. Each field is the profile key of its name
(Config.training_spec)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingSpec:
    seed: int
    learning_rate: float
    weight_decay: float
    batch_size: int
    per_device_max_batch: int
    eval_batch_size: int
    epochs: int
    warmup_ratio: float
    metric_for_best: str
    bf16: bool
    tf32: bool
    torch_compile: bool
    num_workers: int
    device_cache: str
    ddp_timeout: int
    report_to: str
    modality: str
    text_pooling: str
