"""Data formats: the record types every stage shares, and readers for the files users already have
(prefbench's own, TRL's, the JPO/DOVE release, summarize_from_feedback, hh-rlhf, SFT rows). Pure
Python: no model, no torch. A malformed row fails with the file, the 1-based row and the field."""
