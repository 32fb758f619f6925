"""The whole comparison, stage after stage in one run directory (``prefbench run``), re-judging a
finished run (``prefbench eval``), and the quick ``prefbench demo``."""
