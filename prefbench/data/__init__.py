"""A run's training data: on-policy pairs sampled from the reference and scored by the task's
judge, pairs from a dataset source, SFT examples, and pairs acquired with a pairwise judge."""
