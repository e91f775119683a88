"""Stage 3, training: the Hugging Face Trainer set-up (trainer), the pseudo-label selection
(pseudo_labels), several processes and nodes under a launcher (distributed), and numerics (precision)."""
