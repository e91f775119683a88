"""Image perturbations for the robustness curves. Each takes an RGB image and a level and
returns an RGB image; the level that leaves the image as it is comes first in LEVELS."""

from __future__ import annotations

import io

from PIL import Image, ImageFilter


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at `quality` (100 still re-encodes, with the least loss)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def downscale(image: Image.Image, factor: float) -> Image.Image:
    """Shrink both sides by `factor` (1.0 = unchanged), as when a platform resizes an upload."""
    if factor >= 1.0:
        return image
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.BICUBIC)


def blur(image: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with radius `sigma` pixels (0 = unchanged)."""
    return image if sigma <= 0 else image.filter(ImageFilter.GaussianBlur(sigma))


def centre_crop(image: Image.Image, fraction: float) -> Image.Image:
    """Keep the central `fraction` of each side (1.0 = unchanged)."""
    if fraction >= 1.0:
        return image
    width, height = max(1, round(image.width * fraction)), max(1, round(image.height * fraction))
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


PERTURBATIONS = {"jpeg_quality": jpeg, "downscale": downscale, "blur_sigma": blur, "centre_crop": centre_crop}
LEVELS = {
    "jpeg_quality": [100, 90, 70, 50, 30],
    "downscale": [1.0, 0.75, 0.5, 0.25],
    "blur_sigma": [0.0, 0.5, 1.0, 2.0],
    "centre_crop": [1.0, 0.8, 0.6, 0.5],
}
# The levels at which a perturbation returns the image itself (JPEG at 100 still re-encodes).
UNCHANGED = {"downscale": 1.0, "blur_sigma": 0.0, "centre_crop": 1.0}
