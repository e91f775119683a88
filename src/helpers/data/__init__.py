"""Stage 1, the data: sources in any supported format (sources), the embedded synthetic mini-CT2
(synthetic), image decoding and preprocessing (images), and the inputs a prediction reads
(folders, CSVs, data sets; inputs)."""
