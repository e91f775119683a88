"""The label space of CT2: Task A (real vs AI) and Task B (which generator)."""

CLASS_NAMES: tuple[str, ...] = ("real", "SD 2.1", "SDXL", "SD 3", "DALL-E 3", "Midjourney 6")
NUM_CLASSES = len(CLASS_NAMES)
REAL = 0
AI_CLASSES = tuple(range(1, NUM_CLASSES))
# Marks a row whose labels are unknown (an unlabelled test split); never a real class id.
UNLABELLED = -1


def label_a_of(label_b: int) -> int:
    """Task A follows from Task B: every class but 'real' is AI-generated."""
    return int(label_b != REAL)
