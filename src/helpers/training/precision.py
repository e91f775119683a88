"""Numerics as the profile writes them. bf16 autocast (CUDA only) and TF32 (CUDA matrix multiplies
and cuDNN convolutions) follow the keys bf16 and tf32, whatever ACCELERATE_MIXED_PRECISION says
or TrainingArguments does (under its own torch_compile, which the study leaves off and replaces
with modeling.compiled, it switches TF32 on); what this process really uses is recorded in provenance."""

from __future__ import annotations

import os
from operator import attrgetter

import torch

ENV_PRECISION = "ACCELERATE_MIXED_PRECISION"


def bf16_autocast(bf16: bool) -> bool:
    """Whether bf16 autocast runs: the profile's bf16, on CUDA only."""
    return torch.cuda.is_available() and bf16


def _mode(enabled: bool) -> str:
    return "tf32" if enabled else "ieee"


# Every TF32 switch this package sets, through torch's fp32_precision API (torch >= 2.9, the floor in
# pyproject.toml). Each leaf is set itself: the global default does not reach cuDNN's conv and RNN
# switches in every release, and a leaf left behind reads as a mix of the legacy and new APIs,
# which torch.compile refuses (pytorch issues 166387, 179445). Nothing here touches allow_tf32.
TF32_SWITCHES = ("backends", "backends.cuda.matmul", "backends.cudnn", "backends.cudnn.conv", "backends.cudnn.rnn")


def apply_tf32(tf32: bool) -> None:
    """TF32 on CUDA's matrix multiplies and cuDNN as the profile's tf32 says, every switch the same
    (they win over torch's global default, which a library may change); no effect on a CPU."""
    set_tf32_switches({name: _mode(tf32) for name in TF32_SWITCHES})


def tf32_switches() -> dict[str, str]:
    """Each switch's fp32_precision, by its path under torch."""
    return {name: attrgetter(name)(torch).fp32_precision for name in TF32_SWITCHES}


def set_tf32_switches(values: dict[str, str]) -> None:
    for name, value in values.items():
        attrgetter(name)(torch).fp32_precision = value


def effective_tf32() -> bool:
    """Whether CUDA float32 matrix multiplies run on TF32 cores now."""
    level = torch.backends.cuda.matmul.fp32_precision
    return (torch.backends.fp32_precision if level == "none" else level) == "tf32"


def build_arguments(bf16: bool, tf32: bool, make):
    """make(): TrainingArguments, held to the profile afterwards: mixed precision is the profile's
    `bf16` (not the environment's), TF32 the profile's `tf32` (torch's global default, put back if
    TrainingArguments changed it). A change is announced."""
    saved_global, saved_env = torch.backends.fp32_precision, os.environ.get(ENV_PRECISION)
    args = make()
    wanted = "bf16" if bf16_autocast(bf16) else "no"
    if saved_env not in (None, wanted):
        print(
            f"{ENV_PRECISION}={saved_env} in the environment is ignored: the profile says bf16: {bf16} "
            f"(mixed precision '{wanted}' on this device)"
        )
    # TrainingArguments reads the variable when bf16 is off; the Trainer hands this to accelerate.
    args.mixed_precision = wanted
    if torch.backends.fp32_precision != saved_global:
        print(
            f"TrainingArguments set torch's TF32 default to '{torch.backends.fp32_precision}'; "
            f"kept as the profile says: tf32: {tf32}"
        )
    apply_tf32(tf32)
    return args


def summary(bf16: bool, tf32: bool, torch_compile: bool) -> dict:
    """The precision a run asked for (the profile's keys) and what this device gives it."""
    return {
        "bf16_autocast": bf16_autocast(bf16),
        "tf32": effective_tf32() if torch.cuda.is_available() else False,
        "tf32_key": tf32,
        "torch_compile": torch_compile,
    }
