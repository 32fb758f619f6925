"""Choosing the next token of each decoding row: the most likely one (greedy), or a draw from the
temperature-scaled distribution restricted to its nucleus (top-p), by inverse CDF.

torch.multinomial draws one exponential variate per vocabulary entry and row (a quarter of a sampling
step on the embedded model's 49k-token vocabulary on a CPU); the inverse CDF needs one uniform per row,
and each row's uniforms come from its own stream (:func:`row_uniforms`), so a row's sample does not
depend on which other rows share its batch, or on when they finish.

Nucleus: the most likely tokens, in descending order, up to and including the first at which their
mass reaches ``top_p`` (a token is kept when the mass of the tokens before it is below ``top_p``),
as in Holtzman et al. 2020 and transformers' ``TopPLogitsWarper``.
"""

from __future__ import annotations

import hashlib

import torch

# candidates looked at before sorting a whole row: a nucleus of p <= 0.95 of a chat model's next-token
# distribution almost always lies within them; a row whose doesn't is sorted in full
_CANDIDATES = 1024


def row_uniforms(seed: int, key: tuple, steps: int) -> torch.Tensor:
    """``steps`` uniforms in [0, 1) for one row: a stream named by the run's seed and the row's ``key`` (e.g.
    prompt index and sample number), independent of the torch global generator."""
    digest = hashlib.sha256(repr((seed, key)).encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.rand(steps, generator=generator, dtype=torch.float64)


def nucleus_sample(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float = 1.0,
                   top_p: float = 1.0) -> torch.Tensor:
    """One token per row of ``logits`` [R, V]: the inverse CDF at ``uniforms`` [R] of softmax(logits /
    temperature) restricted to its top-p nucleus and renormalised."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:   # the whole vocabulary, in its own order
        cdf = probs.cumsum(-1, dtype=torch.float64)
        return _invert(cdf, uniforms * cdf[:, -1])
    out = torch.empty(len(probs), dtype=torch.long, device=probs.device)
    k = min(_CANDIDATES, probs.shape[-1])
    top, index = probs.topk(k, dim=-1)
    cdf = top.cumsum(-1, dtype=torch.float64)
    whole = cdf[:, -1] < top_p           # the nucleus may reach past the candidates: sort these rows in full
    if whole.any():
        full, full_index = probs[whole].sort(dim=-1, descending=True)
        out[whole] = full_index.gather(-1, _nucleus_pick(full, full.cumsum(-1, dtype=torch.float64), uniforms[whole], top_p))[:, 0]
    rest = ~whole
    if rest.any():
        out[rest] = index[rest].gather(-1, _nucleus_pick(top[rest], cdf[rest], uniforms[rest], top_p))[:, 0]
    return out


def _nucleus_pick(sorted_probs, cdf, uniforms, top_p: float) -> torch.Tensor:
    """Column [R, 1] of the draw within descending ``sorted_probs`` whose nucleus is the kept prefix."""
    kept = (cdf - sorted_probs) < top_p          # mass before the token below top_p (always true for the first)
    mass = (sorted_probs * kept).sum(-1)
    return _invert(cdf, uniforms * mass, last=kept.sum(-1) - 1)[:, None]


def _invert(cdf: torch.Tensor, targets: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
    """First column whose cumulative mass exceeds the row's target (clamped to the row's last kept column,
    which rounding could otherwise pass)."""
    column = torch.searchsorted(cdf, targets[:, None].to(cdf.dtype), right=True)[:, 0]
    limit = torch.full_like(column, cdf.shape[-1] - 1) if last is None else last
    return torch.minimum(column, limit)
