"""The training and inference engine: models and adapters, chat formatting, per-sequence
log-probs, the training loop with its cached reference pass and checkpoints, generation, KL and
the SFT stage. It knows objectives only through the registry and data only as records."""
