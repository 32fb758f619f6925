"""Evaluation: every system answers the eval prompts (generate stage, KL samples), a judge compares
each answer with the baseline's, and the judgments become results.json with its statistics."""
