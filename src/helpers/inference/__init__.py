"""Stage 4, predictions: from a decode cache in large batches, with the decoding of the two heads
(cached), and from a stream of files decoded ahead of the model (streaming)."""
