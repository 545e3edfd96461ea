"""Training: protocols, runs, the training loop and its optimizer, metrics and sharding."""
