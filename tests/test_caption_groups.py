"""Caption-group decoding on hand-built groups: the joint assignment, and what falls back."""

import numpy as np
import pytest

from helpers.inference.cached import decode
from helpers.inference.caption_groups import caption_groups, class_probabilities, group_decode


def _heads(class_probs):
    """Head outputs whose hierarchical reading is class_probs ([N, 6], rows summing to 1)."""
    class_probs = np.asarray(class_probs, float)
    prob_ai = 1.0 - class_probs[:, 0]
    probs_b = np.concatenate([np.full((len(class_probs), 1), 1e-6), class_probs[:, 1:]], axis=1)
    return prob_ai, probs_b / probs_b.sum(1, keepdims=True)


def test_class_probabilities_read_the_heads_as_the_decoding_does():
    wanted = np.array([[0.1, 0.5, 0.1, 0.1, 0.1, 0.1], [0.7, 0.0, 0.3, 0.0, 0.0, 0.0]])
    prob_ai, probs_b = _heads(wanted)
    np.testing.assert_allclose(class_probabilities(prob_ai, probs_b), wanted, atol=1e-5)


@pytest.mark.parametrize("mode", ["hierarchical", "six_class"])
def test_head_bs_untrained_real_column_never_overrules_head_a_in_a_group(mode):
    """Image 0 is real by head A (P(AI) 0.01) and image 1 AI (0.97); head B takes both for SD 2.1,
    its 'real' column (never trained) at 0.001 and 0.002. Every mode assigns the group with the
    hierarchical class probabilities: image 0 real, image 1 SD 2.1."""
    prob_ai = np.array([0.01, 0.97, 0.99, 0.99, 0.99, 0.99])
    probs_b = np.full((6, 6), 0.02)
    probs_b[0] = [0.001, 0.919, 0.02, 0.02, 0.02, 0.02]
    probs_b[1] = [0.002, 0.918, 0.02, 0.02, 0.02, 0.02]
    for image in range(2, 6):
        probs_b[image, image] = 0.9
    probs_b /= probs_b.sum(1, keepdims=True)
    joint, _ = group_decode(prob_ai, probs_b, ["a cat"] * 6, mode=mode)
    assert joint.label_b.tolist() == [0, 1, 2, 3, 4, 5] and joint.label_a.tolist() == [0, 1, 1, 1, 1, 1]


def test_a_complete_group_gets_one_image_per_class_where_per_image_decoding_repeats_a_class():
    # Images 1 and 2 both look most like SDXL (2); image 2 is a little more SDXL than image 1, and
    # image 1 is the only plausible SD 2.1 (1). Image 0 is the real photo, though only just.
    probs = np.full((6, 6), 0.02)
    probs[0] = [0.45, 0.11, 0.11, 0.11, 0.11, 0.11]
    probs[1] = [0.02, 0.40, 0.50, 0.02, 0.04, 0.02]
    probs[2] = [0.02, 0.02, 0.90, 0.02, 0.02, 0.02]
    probs[3] = [0.02, 0.02, 0.02, 0.90, 0.02, 0.02]
    probs[4] = [0.02, 0.02, 0.02, 0.02, 0.90, 0.02]
    probs[5] = [0.02, 0.02, 0.02, 0.02, 0.02, 0.90]
    probs /= probs.sum(1, keepdims=True)
    prob_ai, probs_b = _heads(probs)
    alone = decode(prob_ai, probs_b)
    assert alone.label_b.tolist() == [1, 2, 2, 3, 4, 5]  # image 0 is called AI, image 1 SDXL
    joint, report = group_decode(prob_ai, probs_b, ["A dog."] + ["a  dog"] * 5, label_b=[0, 1, 2, 3, 4, 5])
    assert joint.label_b.tolist() == [0, 1, 2, 3, 4, 5]
    assert joint.label_a.tolist() == [0, 1, 1, 1, 1, 1]
    assert report.groups["complete"] == 1 and report.images["complete"] == 6 and report.not_one_per_class == 0
    np.testing.assert_allclose(joint.confidence_b[1], probs[1, 1], rtol=1e-4)
    assert joint.confidence_a[0] == pytest.approx(1 - prob_ai[0])


def test_incomplete_over_full_and_captionless_groups_keep_the_per_image_answer_and_are_counted():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=6 + 3 + 1 + 12 + 2)
    prob_ai, probs_b = _heads(probs)
    captions = ["six"] * 6 + ["three"] * 3 + ["one"] + ["twelve"] * 12 + [None, ""]
    joint, report = group_decode(prob_ai, probs_b, captions)
    alone = decode(prob_ai, probs_b)
    assert sorted(joint.label_b[:6]) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(joint.label_b[6:], alone.label_b[6:])
    np.testing.assert_array_equal(joint.label_a[6:], alone.label_a[6:])
    assert report.groups == {"complete": 1, "partial": 1, "singleton": 1, "over-full": 1, "no caption": 1}
    assert report.images == {"complete": 6, "partial": 3, "singleton": 1, "over-full": 12, "no caption": 2}
    assert sum(report.images.values()) == len(captions)  # nothing dropped
    assert report.not_one_per_class is None
    text = report.summary()
    assert "1 complete caption groups (6 images)" in text and "1 over-full group (12 images)" in text


def test_a_complete_group_labelled_with_a_class_twice_is_reported():
    probs = np.eye(6) * 0.9 + 0.02
    prob_ai, probs_b = _heads(probs / probs.sum(1, keepdims=True))
    _, report = group_decode(prob_ai, probs_b, ["c"] * 6, label_b=[0, 1, 2, 2, 4, 5])
    assert report.not_one_per_class == 1 and "labelled with a class twice" in report.summary()


def test_one_caption_per_image_is_required():
    with pytest.raises(ValueError, match="one caption per image: 2 captions for 3 images"):
        group_decode(np.zeros(3), np.full((3, 6), 1 / 6), ["a", "b"])


def test_groups_are_keyed_by_the_normalised_caption():
    groups, kinds = caption_groups(["A cat.", "a   cat", "a dog"])
    assert groups["a cat"].tolist() == [0, 1] and kinds == {"a cat": "partial", "a dog": "singleton"}


def test_the_profile_key_decodes_per_image_as_hierarchical_where_no_captions_are_at_hand():
    from helpers.config import load_config

    rng = np.random.default_rng(1)
    prob_ai, probs_b = rng.uniform(size=10), rng.dirichlet(np.ones(6), size=10)
    grouped_mode, plain = decode(prob_ai, probs_b, mode="caption_groups"), decode(prob_ai, probs_b)
    np.testing.assert_array_equal(grouped_mode.label_b, plain.label_b)
    assert load_config({"profile": "x", "task_b_decoding": "caption_groups"}).task_b_decoding == "caption_groups"


def test_a_split_without_captions_falls_back_everywhere_and_says_so():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(6), size=12)
    prob_ai, probs_b = _heads(probs)
    joint, report = group_decode(prob_ai, probs_b, [None] * 6 + [""] * 6)
    np.testing.assert_array_equal(joint.label_b, decode(prob_ai, probs_b).label_b)
    assert report.groups["complete"] == 0 and report.images["no caption"] == 12
    assert report.summary() == (
        "0 complete caption groups (0 images) decoded jointly; per-image decoding for 1 no caption group (12 images)"
    )


def test_under_six_class_decoding_rows_outside_a_complete_group_keep_their_own_task_a():
    # Head A says AI (0.9) while head B's argmax over six is 'real': per image, six_class decoding
    # answers A = AI, B = real. With no group to decide, the row keeps both answers.
    probs_b = np.array([[0.6, 0.1, 0.1, 0.1, 0.05, 0.05], [0.05, 0.05, 0.7, 0.1, 0.05, 0.05]])
    prob_ai = np.array([0.9, 0.8])
    alone = decode(prob_ai, probs_b, mode="six_class")
    assert alone.label_a.tolist() == [1, 1] and alone.label_b.tolist() == [0, 2]
    joint, report = group_decode(prob_ai, probs_b, ["a lone caption", "another"], "six_class")
    assert not report.jointly.any()
    np.testing.assert_array_equal(joint.label_a, alone.label_a)
    np.testing.assert_array_equal(joint.label_b, alone.label_b)
    np.testing.assert_allclose(joint.confidence_b, alone.confidence_b)


def test_the_scorecards_by_group_table_reads_the_rows_as_the_model_decodes():
    """Notebook 04's 'by caption group' column: rows outside a complete group keep the answer the
    model's own decoding gives (here six_class, where head B may say 'real' for an AI answer)."""
    from types import SimpleNamespace

    import datasets

    from study.scorecard import Evaluation, by_caption_group

    probs_b = np.array([[0.6, 0.1, 0.1, 0.1, 0.05, 0.05], [0.05, 0.05, 0.7, 0.1, 0.05, 0.05]])
    per_image = decode(np.array([0.9, 0.8]), probs_b, mode="six_class")
    split = datasets.Dataset.from_dict({"Caption": ["a lone caption", "another"], "Label_A": [1, 1], "Label_B": [3, 2]})
    complete = SimpleNamespace(rows=np.arange(2), label_b=np.array([3, 2]))
    result = Evaluation(["after"], ["test"])
    joint = by_caption_group(result, split, "test", complete, per_image, "six_class")
    np.testing.assert_array_equal(joint.label_b, per_image.label_b)
    assert result.groups["test"].groups["singleton"] == 2
