"""Built-in objectives, one per file. Importing ``prefbench.objective`` loads them all."""
