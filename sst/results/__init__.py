"""Results: the result folder on disk, checkpoints, and what made each result (its key and code)."""
