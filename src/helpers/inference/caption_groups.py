"""Decoding a caption's images together (the paper's future work: "model the relationships between
images associated with the same caption"). In CT2 every caption comes once per class, one real
photo and one image of each of the five generators; when a caption's group is complete, its six
images are assigned to the six classes at once, so that the summed log-probability of the
assignment is highest, and Task A follows from the class (real or not).

This uses the data set's structure, which a detector in the wild does not have: every table that
shows it says so. Groups that are not complete (fewer or more than six images, a missing caption)
keep the per-image decoding, and the report says how many groups fell back and why; no row is
dropped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from helpers.data.splits import normalised_captions
from helpers.inference.cached import Predictions, ai_class_probabilities, decode
from helpers.labels import NUM_CLASSES, REAL

LABEL = "caption groups (uses the set's one-image-per-class structure)"


@dataclass
class GroupReport:
    """How a split's rows fell into caption groups: groups and images per kind (complete, partial,
    over-full, no caption), and, when labels are known, complete groups whose labels are not one
    per class (the assumption broken: the assignment cannot be right on all six)."""

    groups: dict[str, int] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)
    not_one_per_class: int | None = None
    jointly: np.ndarray | None = None  # [N] bool: the rows decoded with their group

    def summary(self) -> str:
        used = self.groups.get("complete", 0)
        fell_back = {k: v for k, v in self.groups.items() if k != "complete" and v}
        text = f"{used} complete caption groups ({self.images.get('complete', 0)} images) decoded jointly"
        if fell_back:
            text += "; per-image decoding for " + ", ".join(
                f"{v} {k} group{'s' if v != 1 else ''} ({self.images[k]} images)" for k, v in fell_back.items()
            )
        if self.not_one_per_class:
            text += f"; {self.not_one_per_class} complete groups are labelled with a class twice"
        return text


def class_probabilities(prob_ai: np.ndarray, probs_b: np.ndarray) -> np.ndarray:
    """[N, 6] probability of each class for each image: P(real) = 1 - P(AI) and P(k) = P(AI) x
    head B renormalised over the AI classes, whatever the per-image decoding. Head B's own 'real'
    column is never trained under the paper's loss (Task B's cross-entropy sees AI rows only), so
    under six_class it could overrule head A inside a group: the real photo is head A's to find."""
    prob_ai = np.asarray(prob_ai, np.float64)[:, None]
    return np.concatenate([1.0 - prob_ai, prob_ai * ai_class_probabilities(np.asarray(probs_b, np.float64))], axis=1)


def caption_groups(captions) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """({normalised caption: row positions}, {caption: kind}); kind is complete (six images),
    partial (two to five), singleton, over-full (more than six: a caption repeated) or no caption."""
    keys = normalised_captions(captions)
    rows: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        rows.setdefault(key, []).append(position)
    kinds = {}
    for key, members in rows.items():
        size = len(members)
        kinds[key] = (
            "no caption"
            if not key
            else "complete"
            if size == NUM_CLASSES
            else "singleton"
            if size == 1
            else "partial"
            if size < NUM_CLASSES
            else "over-full"
        )
    return {k: np.asarray(v) for k, v in rows.items()}, kinds


def group_decode(
    prob_ai, probs_b, captions, mode: str = "hierarchical", threshold: float = 0.5, label_b=None
) -> tuple[Predictions, GroupReport]:
    """Predictions with every complete caption group assigned jointly (one image per class), the
    others decoded per image with `mode`; label_b (the truth, when known) only feeds the report."""
    if len(captions) != len(prob_ai):
        raise ValueError(
            f"caption-group decoding needs one caption per image: {len(captions)} captions for {len(prob_ai)} images"
        )
    per_image = decode(prob_ai, probs_b, threshold, mode)
    label_b_out, confidence_b = per_image.label_b.copy(), per_image.confidence_b.copy()
    class_probs = class_probabilities(per_image.prob_ai, per_image.probs_b)
    groups, kinds = caption_groups(captions)
    mismatched, jointly = 0, np.zeros(len(captions), bool)
    for key, members in groups.items():
        if kinds[key] != "complete":
            continue
        jointly[members] = True
        cost = -np.log(class_probs[members].clip(min=1e-12))
        images, classes = linear_sum_assignment(cost)
        label_b_out[members[images]] = classes
        confidence_b[members[images]] = class_probs[members[images], classes]
        if label_b is not None and sorted(np.asarray(label_b)[members]) != list(range(NUM_CLASSES)):
            mismatched += 1
    # Task A follows the class only where the group decided it; other rows keep their own answers
    # (under six_class an image can be AI by head A and 'real' by head B's argmax).
    label_a = np.where(jointly, label_b_out != REAL, per_image.label_a).astype(np.int64)
    confidence_a = np.where(label_a == 1, per_image.prob_ai, 1.0 - per_image.prob_ai)
    # A joint answer's Task B confidence is the class's own probability; a real answer is Task A's.
    confidence_b = np.where(jointly, np.where(label_a == 1, confidence_b, confidence_a), per_image.confidence_b)
    predictions = Predictions(per_image.prob_ai, per_image.probs_b, label_a, label_b_out, confidence_a, confidence_b)
    counts = Counter(kinds.values())
    images = Counter()
    for key, members in groups.items():
        images[kinds[key]] += len(members)
    order = ("complete", "partial", "singleton", "over-full", "no caption")
    report = GroupReport(
        {k: counts.get(k, 0) for k in order},
        {k: images.get(k, 0) for k in order},
        mismatched if label_b is not None else None,
        jointly,
    )
    return predictions, report


def decode_scored(scored, captions, mode: str = "hierarchical", threshold: float = 0.5):
    """(a streaming.Scored with complete caption groups decoded jointly, which decoding each row got,
    the group report); an image that could not be read joins no group."""
    import dataclasses

    captions = [c if ok else "" for c, ok in zip(captions, scored.ok)]
    joint, report = group_decode(scored.predictions.prob_ai, scored.predictions.probs_b, captions, mode, threshold)
    decoding = np.where(report.jointly, "caption group", "per image").astype(object)
    return dataclasses.replace(scored, predictions=joint), decoding, report
