"""Stage 4, predictions: from a decode cache in large batches, with the decoding of the two heads
(cached), the joint decoding of a caption's six images (caption_groups), and from a stream of files
decoded ahead of the model (streaming)."""
