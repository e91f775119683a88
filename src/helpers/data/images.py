"""The one image reader used by training, the cache and prediction.

Every input either becomes an RGB image or raises ImageReadError with a one-line reason;
nothing is zero-filled. Transparent images are composited on white (the usual way a
viewer shows them). The decompression-bomb guard stays on; raise its limit with the
environment variable HELPERS_MAX_IMAGE_PIXELS (pixels, or 0 for no limit).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own default


class ImageReadError(Exception):
    """An input that is not a readable image; the message is the reason."""


def _max_pixels() -> int | None:
    raw = os.environ.get("HELPERS_MAX_IMAGE_PIXELS")
    if raw is None:
        return DEFAULT_MAX_PIXELS
    return int(raw) or None


def _open(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, dict):  # a datasets Image cell with decode=False
        if source.get("bytes"):
            return _open(source["bytes"])
        if source.get("path"):
            return _open(source["path"])
        raise ImageReadError("the image cell holds neither bytes nor a path")
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageReadError("empty file (0 bytes)")
        return Image.open(io.BytesIO(source))
    path = Path(source)
    if not path.exists():
        raise ImageReadError(f"file not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"is a directory, not an image: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)")
    try:
        return Image.open(path)
    except PermissionError:
        raise ImageReadError(f"permission denied: {path}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or wide.max() > 255 else 255.0
        image = Image.fromarray(np.clip(wide / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    return image.convert("RGB")


def read_image(source) -> Image.Image:
    """An RGB image, upright per its EXIF orientation, first frame if animated."""
    Image.MAX_IMAGE_PIXELS = _max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(source)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageReadError(
            f"too large ({error}); if the file is trusted, raise the limit with "
            "HELPERS_MAX_IMAGE_PIXELS=<pixels> (0 = no limit)"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (format not recognised)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        reason = str(error) or type(error).__name__
        raise ImageReadError(f"cannot decode: {reason}") from None


def read_image_or_reason(source) -> tuple[Image.Image | None, str]:
    """(image, "") on success, (None, reason) when the input is not a readable image."""
    try:
        return read_image(source), ""
    except ImageReadError as error:
        return None, str(error)


def square_image(image: Image.Image, size: int) -> Image.Image:
    """CLIP's geometry, exactly as CLIPImageProcessor computes it: shortest edge to size (bicubic),
    the long edge truncated (int, not round), then centre crop to size x size."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if width <= height else (new_long, size)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def square_uint8(image: Image.Image, size: int) -> np.ndarray:
    """The model's input without normalisation: square_image as channel-first uint8
    (normalised later, on the device)."""
    return np.asarray(square_image(image, size), dtype=np.uint8).transpose(2, 0, 1)


def decode_for_model(cell, size: int, transform=None) -> tuple[np.ndarray | None, str, bytes]:
    """(the model's uint8 input or None, the reason it could not be read, a digest of the encoded
    file). transform(image), when given, is applied before the resize (a perturbation, a neutral
    re-encoding). Module-level and torch-free, so decode worker processes start light."""
    import hashlib

    image, reason = read_image_or_reason(cell)
    if image is None:
        return None, reason, b""
    raw = cell.get("bytes") if isinstance(cell, dict) else None
    if raw is None:
        raw = Path(cell.get("path") if isinstance(cell, dict) else cell).read_bytes()
    if transform is not None:
        image = transform(image)
    return square_uint8(image, size), "", hashlib.blake2b(raw, digest_size=16).digest()


def decode_many(cells: list, size: int, transform=None) -> list[tuple[np.ndarray | None, str, bytes]]:
    """decode_for_model over a chunk: one task for a worker process."""
    return [decode_for_model(cell, size, transform) for cell in cells]
