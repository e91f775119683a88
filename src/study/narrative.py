"""The sentence on unreadable images that notebooks 02 and 04 both write, from the profile."""

from __future__ import annotations


def unreadable_images(bad_images: str) -> str:
    """What happens to an image that cannot be read, under the profile's bad_images."""
    return {
        "skip": "An image that cannot be read is listed with its reason and left out of training and metrics "
        "(never replaced by a blank image); the prediction files still have a row for it.",
        "error": "An image that cannot be read stops the run, naming the row (`bad_images: error`).",
        "zero": "An image that cannot be read is listed and given the all-zero model input, as the authors' code "
        "does (`bad_images: zero`); it is trained on and scored.",
    }[bad_images]
