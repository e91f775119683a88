"""Every kind of file people point the detector at: each row's status and reason."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import pattern
from helpers.data.images import ImageReadError, read_image, square_uint8


def _photo(size=(48, 32), seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, size[0])[None, :, None] * np.ones((size[1], 1, 3))
    return Image.fromarray(np.clip(base + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8))


def make_zoo(folder):
    """Readable files of every supported kind, and broken ones; returns {name: expected status}."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = _photo()
    expected = {}

    def save(name, image, **options):
        image.save(folder / name, **options)
        expected[name] = "ok"

    save("photo.jpg", photo, quality=95)
    save("photo.png", photo)
    save("photo.webp", photo, quality=80)
    save("photo.bmp", photo)
    save("photo.tiff", photo)
    frames = [_photo(seed=i) for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=50)
    expected["animated.gif"] = "ok"
    save("grey.png", photo.convert("L"))
    save("grey_alpha.png", photo.convert("LA"))
    save("palette.png", photo.convert("P"))
    transparent = photo.convert("P")
    transparent.info["transparency"] = 0
    save("palette_transparent.png", transparent)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.new("L", photo.size, 0))
    save("rgba_clear.png", rgba)
    save("cmyk.jpg", photo.convert("CMYK"))
    deep = Image.fromarray((np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16))
    save("sixteen_bit.png", deep)
    exif = photo.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    photo.transpose(Image.Transpose.ROTATE_90).save(folder / "exif_rotated.jpg", exif=exif, quality=95)
    expected["exif_rotated.jpg"] = "ok"
    (folder / "empty.jpg").write_bytes(b"")
    expected["empty.jpg"] = "failed"
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    expected["truncated.jpg"] = "failed"
    (folder / "notes.txt").write_text("not an image")
    expected["notes.txt"] = "failed"
    (folder / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    expected["fake.png"] = "failed"
    (folder / "sub").mkdir(exist_ok=True)
    photo.save(folder / "sub" / "nested.jpg")
    expected["sub/nested.jpg"] = "ok"
    return expected


def test_every_kind_reads_to_rgb_or_fails_with_a_reason(tmp_path):
    expected = make_zoo(tmp_path)
    for name, status in expected.items():
        if status == "ok":
            image = read_image(tmp_path / name)
            assert image.mode == "RGB", name
        else:
            with pytest.raises(ImageReadError) as error:
                read_image(tmp_path / name)
            assert str(error.value), name


def test_transparency_is_composited_on_white(tmp_path):
    make_zoo(tmp_path)
    assert np.asarray(read_image(tmp_path / "rgba_clear.png")).min() == 255


def test_sixteen_bit_keeps_its_range(tmp_path):
    make_zoo(tmp_path)
    image = np.asarray(read_image(tmp_path / "sixteen_bit.png"))
    reference = np.asarray(read_image(tmp_path / "grey.png"))
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    make_zoo(tmp_path)
    rotated, upright = read_image(tmp_path / "exif_rotated.jpg"), read_image(tmp_path / "photo.jpg")
    assert rotated.size == upright.size
    assert np.abs(np.asarray(rotated, float) - np.asarray(upright, float)).mean() < 4  # same picture, up to JPEG


def test_reasons_are_specific(tmp_path):
    make_zoo(tmp_path)
    reasons = {}
    for name in ("empty.jpg", "truncated.jpg", "notes.txt", "missing.png"):
        with pytest.raises(ImageReadError) as error:
            read_image(tmp_path / name)
        reasons[name] = str(error.value)
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.jpg"].lower() and "not found" in reasons["missing.png"]


def test_decompression_bomb_is_a_clear_error_with_a_way_out(tmp_path, monkeypatch):
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setenv("HELPERS_MAX_IMAGE_PIXELS", "20000")
    with pytest.raises(ImageReadError, match="HELPERS_MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "big.png")
    monkeypatch.setenv("HELPERS_MAX_IMAGE_PIXELS", "0")
    assert read_image(tmp_path / "big.png").size == (300, 300)


def test_square_uint8_is_shortest_edge_then_centre_crop():
    image = Image.fromarray(np.tile(np.arange(80, dtype=np.uint8)[None, :, None], (40, 1, 3)))
    out = square_uint8(image, 20)
    assert out.shape == (3, 20, 20) and out.dtype == np.uint8
    # 80 columns of values 0..79 become 40 (values step 2), of which the middle 20 are kept: about 20..58.
    assert abs(int(out[0, 10, 0]) - 20) <= 3 and abs(int(out[0, 10, -1]) - 58) <= 3


def test_predict_folder_accounts_for_every_input(tmp_path, trained_dir):
    from helpers.predict import run

    expected = make_zoo(tmp_path / "zoo")
    out = tmp_path / "out" / "preds.csv"
    frame = run(str(trained_dir), str(tmp_path / "zoo"), str(out), json_out=str(tmp_path / "out" / "answer.json")).frame
    assert len(frame) == len(expected)
    by_name = {str(p).split("zoo/")[1]: row for p, row in zip(frame["path"], frame.to_dict("records"))}
    for name, status in expected.items():
        assert by_name[name]["status"] == status, (name, by_name[name]["reason"])
        assert bool(by_name[name]["reason"]) == (status == "failed"), name
    parsed = pd.read_csv(out)
    assert len(parsed) == len(expected) and (parsed["caption_missing"]).all()
    scored = parsed[parsed["status"] == "ok"]
    assert np.allclose(scored[[c for c in parsed.columns if c.startswith("p_") and c != "p_ai"]].sum(1), 1, atol=1e-4)
    errors = pd.read_csv(out.with_suffix(".errors.csv"))
    assert set(errors["path"].str.split("zoo/").str[1]) == {n for n, s in expected.items() if s == "failed"}
    answer = json.loads((tmp_path / "out" / "answer.json").read_text())
    # One entry per input, unreadable ones included (scored on the all-zero input, as the authors' code).
    assert [a["index"] for a in answer] == list(range(len(expected))) and set(answer[0]) == {
        "index",
        "Label_A",
        "Label_B",
    }
    assert {(a["Label_A"], a["Label_B"]) for a in answer} <= {(0, 0)} | {(1, b) for b in range(1, 6)}


def test_predict_refuses_a_model_with_another_label_set(tmp_path, trained_dir):
    import shutil

    from helpers.predict import main

    other = tmp_path / "other"
    shutil.copytree(trained_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["class_names"] = ["real", "SDXL", "SD 2.1", "SD 3", "DALL-E 3", "Midjourney 6"]
    (other / "config.json").write_text(json.dumps(config))
    make_zoo(tmp_path / "zoo")
    assert main(["--model", str(other), "--images", str(tmp_path / "zoo"), "--out", str(tmp_path / "p.csv")]) == 2


def test_predict_reads_a_csv_with_captions_and_counts_missing_ones(tmp_path, trained_dir):
    from helpers.predict import run

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _photo(seed=i).save(folder / f"{i}.png")
    pd.DataFrame({"image": [f"imgs/{i}.png" for i in range(3)], "caption": ["a dog", "", "two cats"]}).to_csv(
        tmp_path / "list.csv", index=False
    )
    frame = run(str(trained_dir), str(tmp_path / "list.csv"), str(tmp_path / "p.csv")).frame
    assert frame["status"].tolist() == ["ok"] * 3 and frame["caption_missing"].tolist() == [False, True, False]


def test_predict_folder_with_a_captions_file(tmp_path, trained_dir):
    from helpers.predict import run

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        _photo(seed=i).save(folder / f"{i}.png")
    pd.DataFrame({"path": ["imgs/0.png"], "Prompt": ["a red bus"]}).to_csv(tmp_path / "captions.csv", index=False)
    frame = run(str(trained_dir), str(folder), str(tmp_path / "p.csv"), captions=str(tmp_path / "captions.csv")).frame
    assert frame.set_index(frame["path"].str[-5:])["caption_missing"].to_dict() == {"0.png": False, "1.png": True}


def test_predict_takes_the_profile_keys_that_apply_to_prediction(tmp_path, trained_dir, capsys):
    from helpers.predict import main

    folder = tmp_path / "two"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 30, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "p.csv"
    assert (
        main(
            [
                "--model",
                str(trained_dir),
                "--images",
                str(folder),
                "--out",
                str(out),
                "--set",
                "task_b_decoding=six_class",
                "--set",
                "eval_batch_size=1",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 2
    assert (
        main(["--model", str(trained_dir), "--images", str(folder), "--out", str(out), "--set", "image_size=64"]) == 2
    )
    assert "image_size: does not apply to prediction" in capsys.readouterr().err
    assert (
        main(
            ["--model", str(trained_dir), "--images", str(folder), "--out", str(out), "--set", "task_b_decoding=maybe"]
        )
        == 2
    )
    assert "task_b_decoding" in capsys.readouterr().err


def test_exif_orientation_decides_the_answer_of_a_model_that_reads_orientation(tmp_path, learned_dir):
    """The learned model calls a photo real when it is bright on top: a file stored upside down with
    EXIF 'rotate 180°' is real once the orientation is applied, and AI without it."""
    from helpers.predict import run

    folder = tmp_path / "exif"
    folder.mkdir()
    upside_down = pattern(0, seed=3).transpose(Image.Transpose.ROTATE_180)
    exif = upside_down.getexif()
    exif[0x0112] = 3
    upside_down.save(folder / "with_exif.jpg", exif=exif, quality=95)
    upside_down.save(folder / "without_exif.jpg", quality=95)
    frame = run(str(learned_dir), str(folder), str(tmp_path / "p.csv")).frame
    by_name = dict(zip(frame["path"].str.rsplit("/", n=1).str[-1], frame["Label_A"]))
    assert by_name == {"with_exif.jpg": 0, "without_exif.jpg": 1}


@pytest.mark.parametrize("decoding", ["hierarchical", "six_class"])
def test_both_decodings_name_the_generator_a_learned_model_sees(tmp_path, learned_dir, decoding):
    from helpers.labels import CLASS_NAMES
    from helpers.predict import main

    folder = tmp_path / "patterns"
    folder.mkdir()
    for label_b in range(6):
        pattern(label_b, seed=70 + label_b).save(folder / f"{label_b}.png")
    out = tmp_path / "p.csv"
    assert (
        main(
            [
                "--model",
                str(learned_dir),
                "--images",
                str(folder),
                "--out",
                str(out),
                "--set",
                f"task_b_decoding={decoding}",
            ]
        )
        == 0
    )
    frame = pd.read_csv(out)
    truth = frame["path"].str.rsplit("/", n=1).str[-1].str[0].astype(int)
    assert (frame["Label_A"] == (truth != 0)).all() and (frame["Label_B"] == truth).all()
    probs = frame[[f"p_{name}" for name in CLASS_NAMES]].to_numpy()
    ai = frame["Label_A"] == 1
    if decoding == "six_class":  # the argmax over all six classes, set to real where Task A says real
        assert (frame.loc[ai, "Label_B"] == probs[ai].argmax(1)).all()
    else:  # the best of the five AI classes where Task A says AI
        assert (frame.loc[ai, "Label_B"] == probs[ai][:, 1:].argmax(1) + 1).all()
