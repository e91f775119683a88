import datasets
import numpy as np
import pandas as pd
import pytest

from conftest import png_bytes
from helpers.data.schema import WIDE_IMAGE_COLUMNS, DataError, wide_to_long
from helpers.data.sources import load_source
from helpers.data.splits import split_by_caption
from helpers.labels import UNLABELLED


def _wide(n=3):
    rows = {"caption": [f"caption {i}" for i in range(n)]}
    for k, column in enumerate(WIDE_IMAGE_COLUMNS):
        rows[column] = [{"bytes": png_bytes(color=(k * 40, i, 0)), "path": None} for i in range(n)]
    features = datasets.Features(
        {"caption": datasets.Value("string"), **{c: datasets.Image() for c in WIDE_IMAGE_COLUMNS}}
    )
    return datasets.Dataset.from_dict(rows, features=features)


def test_wide_release_becomes_six_long_rows_per_caption(tmp_path):
    wide = _wide()
    datasets.DatasetDict({"train": wide}).save_to_disk(str(tmp_path / "wide"))
    long = load_source(str(tmp_path / "wide"))["train"]
    assert len(long) == 18 and long.column_names == ["Caption", "Image", "Label_A", "Label_B"]
    assert long["Label_B"][:6] == [0, 1, 2, 3, 4, 5] and long["Label_A"][:6] == [0, 1, 1, 1, 1, 1]
    assert long["Caption"][:6] == ["caption 0"] * 6
    # The SDXL image of caption 1 is the wide row's sdxl_image, byte for byte.
    assert (
        long[6 + 2]["Image"]["bytes"]
        == wide.cast_column("sdxl_image", datasets.Image(decode=False))[1]["sdxl_image"]["bytes"]
    )


def test_wide_to_long_batch_function():
    out = wide_to_long({"caption": ["x"], **{c: [c] for c in WIDE_IMAGE_COLUMNS}})
    assert out["Image"] == list(WIDE_IMAGE_COLUMNS) and out["Label_B"] == list(range(6))


def test_split_by_caption_has_no_caption_on_both_sides():
    captions = [f"c{i // 6}" for i in range(120)]
    ds = datasets.Dataset.from_dict({"Caption": captions, "Label_B": [i % 6 for i in range(120)]})
    rest, held = split_by_caption(ds, 0.25, seed=3)
    assert not set(rest["Caption"]) & set(held["Caption"])
    assert len(rest) + len(held) == 120 and len(set(held["Caption"])) == 5
    assert all(len(held.filter(lambda r, c=c: r["Caption"] == c)) == 6 for c in set(held["Caption"]))


def _long(tmp_path, **columns):
    n = len(next(iter(columns.values())))
    rows = {"Image": [{"bytes": png_bytes(), "path": None}] * n, **columns}
    ds = datasets.Dataset.from_dict(rows).cast_column("Image", datasets.Image())
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "long"))
    return str(tmp_path / "long")


def test_label_outside_range_is_named(tmp_path):
    with pytest.raises(DataError, match="row 1.*Label_B = 7"):
        load_source(_long(tmp_path, Caption=["a", "b"], Label_A=[0, 1], Label_B=[0, 7]))


def test_inconsistent_labels_are_named(tmp_path):
    with pytest.raises(DataError, match="row 0.*contradicts"):
        load_source(_long(tmp_path, Caption=["a"], Label_A=[1], Label_B=[0]))


def test_missing_caption_column_is_named(tmp_path):
    with pytest.raises(DataError, match="no caption column"):
        load_source(_long(tmp_path, Label_A=[0], Label_B=[0]))


def test_unlabelled_split_gets_minus_one(tmp_path):
    ds = load_source(_long(tmp_path, caption=["a", "b"]))["train"]
    assert ds["Label_A"] == [UNLABELLED] * 2 and ds["Label_B"] == [UNLABELLED] * 2


def test_folder_with_csv(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes(color=(i, 0, 0)))
    pd.DataFrame({"file": [f"img/{i}.png" for i in range(3)], "caption": ["x", "y", "z"], "label_b": [0, 3, 5]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    ds = load_source(str(tmp_path))["train"]
    assert ds["Label_A"] == [0, 1, 1] and ds["Caption"] == ["x", "y", "z"]
    assert ds[1]["Image"]["path"].endswith("img/1.png")


def test_synthetic_is_deterministic_and_grouped(smoke_cfg, smoke_splits, tmp_path):
    from helpers.data.synthetic import make_rows

    a, b = make_rows(["a cat"], 32, seed=1), make_rows(["a cat"], 32, seed=1)
    assert [i["bytes"] for i in a["Image"]] == [i["bytes"] for i in b["Image"]]
    train = smoke_splits["train"]
    counts = pd.Series(train["Caption"]).value_counts()
    assert (counts == 6).all()
    assert not set(train["Caption"]) & set(smoke_splits["test"]["Caption"])
    assert set(smoke_splits["unlabelled"]["Label_B"]) == {UNLABELLED}


def test_synthetic_splits_in_one_pool_are_the_rows_of_each_split():
    from helpers.data.synthetic import make_captions, make_rows, make_splits_parallel

    captions = make_captions(40, 5)
    split_captions = {"train": captions[:35], "unlabelled": captions[35:]}
    rows = make_splits_parallel(split_captions, 32, 5, unlabelled_splits=("unlabelled",))
    for name, texts in split_captions.items():
        alone = make_rows(texts, 32, 5, labelled=name != "unlabelled")
        assert rows[name]["Caption"] == alone["Caption"] and rows[name]["Label_B"] == alone["Label_B"]
        assert [i["bytes"] for i in rows[name]["Image"]] == [i["bytes"] for i in alone["Image"]]


def test_real_photos_fine_grain_stands_out_at_the_models_input():
    """What lets a from-scratch tower learn Task A: after JPEG and the resize to the model's input,
    every real photo has more fine-grain energy (image minus its 3 x 3 mean) than any generator's
    image. With the sensor noise before SYNTHETIC_VERSION 4 (sigma 6-10) the photos overlapped SD 2.1
    and SD 3, and the demo learned Task A from 2 of 10 seeds."""
    import io

    from PIL import Image
    from scipy.ndimage import uniform_filter

    from helpers.data.images import square_uint8
    from helpers.data.synthetic import make_captions, make_rows

    rows = make_rows(make_captions(30, 11), 64, 11)
    energy = {0: [], 1: []}
    for cell, label_a in zip(rows["Image"], rows["Label_A"]):
        pixels = square_uint8(Image.open(io.BytesIO(cell["bytes"])).convert("RGB"), 64).astype(np.float64)
        energy[label_a].append((pixels - uniform_filter(pixels, size=(1, 3, 3))).std())
    assert min(energy[0]) > max(energy[1]), (min(energy[0]), max(energy[1]))


def test_synthetic_traces_formats_and_sizes(smoke_splits):
    from helpers.data.images import read_image

    train = smoke_splits["train"]
    by_class = {}
    for row in train.select(range(12)):
        by_class.setdefault(row["Label_B"], []).append(read_image(row["Image"]))
    assert all(img.width != img.height for img in by_class[0])  # real photos are never square
    assert all(img.width == img.height for c in range(1, 6) for img in by_class[c])
    assert np.std(np.asarray(by_class[1][0], float)) > 5  # not flat colour


def test_image_metadata_reads_headers_and_samples_rows(smoke_splits):
    from study.exploration import image_metadata

    train = smoke_splits["train"]
    meta = image_metadata(train)
    assert len(meta) == len(train) and (meta["format"][meta["Label_B"] == 0] == "JPEG").all()
    assert (meta["jpeg_quality"][meta["Label_B"] == 0].between(60, 100)).all()
    sample = image_metadata(train, max_rows=10, seed=1)
    assert len(sample) == 10 and sample["row"].is_unique
    assert (sample["Label_B"].to_numpy() == np.asarray(train["Label_B"])[sample["row"]]).all()


def test_the_demos_test_split_and_pool_are_shifted_so_file_format_no_longer_names_the_class(tmp_path):
    """Train is drawn as before (each generator its own format: PNG, WebP for DALL-E 3, camera JPEG);
    the test split and the pool pass through one class-blind re-encoding (JPEG or WebP, rescaled),
    so every class shows both formats and no format belongs to one class."""
    import io
    from collections import defaultdict

    import datasets
    from PIL import Image

    from helpers.data.synthetic import SHIFTED_SPLITS, write_synthetic

    folder = write_synthetic(tmp_path / "mini", {"train": 12, "test": 12, "unlabelled": 12}, 32, seed=0)
    data = datasets.load_from_disk(str(folder)).cast_column("Image", datasets.Image(decode=False))
    assert set(SHIFTED_SPLITS) == {"test", "unlabelled"}

    def formats(split, labels=None):
        found = defaultdict(set)
        for i, cell in enumerate(data[split]["Image"]):
            found[(labels or data[split]["Label_B"])[i]].add(Image.open(io.BytesIO(cell["bytes"])).format)
        return found

    train = formats("train")
    assert train[0] == {"JPEG"} and train[4] == {"WEBP"} and all(train[k] == {"PNG"} for k in (1, 2, 3, 5))
    test = formats("test")
    assert all(test[k] == {"JPEG", "WEBP"} for k in range(6))  # both formats in every class
    pool = formats("unlabelled", [i % 6 for i in range(len(data["unlabelled"]))])  # rows come six per caption
    assert set().union(*pool.values()) == {"JPEG", "WEBP"}


def _shifted_shapes(captions: int = 60, size: int = 64):
    """(width, height, aspect) of the shifted images of `captions` captions, and their labels."""
    import io

    from PIL import Image

    from helpers.data.synthetic import make_captions, make_rows

    rows = make_rows(make_captions(captions, 3), size, 3, shift=True)
    shapes = np.array([Image.open(io.BytesIO(cell["bytes"])).size for cell in rows["Image"]], float)
    return np.c_[shapes, shapes[:, 0] / shapes[:, 1]], np.array(rows["Label_A"]), np.array(rows["Label_B"])


def test_the_shifted_splits_give_no_class_away_by_size_or_aspect():
    """The review's probe: a depth-4 tree on width, height and aspect alone, cross-validated on the
    shifted images, stays near chance (under 0.65 balanced accuracy for Task A, 0.35 for Task B;
    chance 0.5 and 0.17), and preprocessing upsamples about as many real photos as generated images."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    shapes, label_a, label_b = _shifted_shapes()
    for labels, limit in ((label_a, 0.65), (label_b, 0.35)):
        tree = DecisionTreeClassifier(max_depth=4, random_state=0)
        guessed = cross_val_predict(tree, shapes, labels, cv=StratifiedKFold(5, shuffle=True, random_state=0))
        assert balanced_accuracy_score(labels, guessed) < limit
    upsampled = shapes[:, :2].min(1) < 64
    assert abs(upsampled[label_a == 0].mean() - upsampled[label_a == 1].mean()) < 0.2
    assert (np.isclose(shapes[:, 2], 1.0)[label_a == 0]).any()  # real photos can be square too


def test_the_cue_audit_names_a_cue_that_answers_the_split_by_itself():
    """A split where AI images are square and real ones not, and formats carry nothing: the audit
    finds the aspect (and size) alone tells Task A, the format does not; the conclusion says so."""
    from helpers.evaluation.metadata_baseline import cue_audit
    from study.conclusions import cue_sentence

    rng = np.random.default_rng(0)
    label_b = np.tile(np.arange(6), 40)
    width = rng.integers(400, 700, len(label_b))
    height = np.where(label_b == 0, (width * 3) // 4, width)
    meta = pd.DataFrame(
        {
            "width": width,
            "height": height,
            "aspect": width / height,
            "format": rng.choice(["JPEG", "WEBP"], len(label_b)),
            "file_bytes": rng.integers(10_000, 90_000, len(label_b)),
            "jpeg_quality": rng.integers(70, 96, len(label_b)).astype(float),
            "Label_A": (label_b != 0).astype(int),
            "Label_B": label_b,
        }
    )
    cues = cue_audit(meta)
    assert cues.loc["aspect", "Task A"] == 1.0 and cues.loc["format", "Task A"] < 0.65
    assert cues.loc["chance", "Task B"] == pytest.approx(1 / 6) and cues.loc["aspect", "Task B"] < 0.4
    text = cue_sentence(cues, "test")
    assert "aspect" in text and "give Task A's answer away on this split" in text
    assert "Task B's answer away" not in text
