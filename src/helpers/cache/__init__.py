"""Stage 2, the decode cache: images decoded and captions tokenised once, on disk (store), and
read a batch at a time by the training and prediction loops (dataset)."""
