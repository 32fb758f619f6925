"""Helpers every layer may use: atomic files and folders, did-you-mean suggestions, the cache
folder and the "same run?" check. They import nothing else from prefbench."""
