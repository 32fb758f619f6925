"""Length control: the win rate a system would have if its answers were as long as the baseline's."""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
import scipy.special
from numpy.typing import ArrayLike

from prefbench.stats.intervals import StatsError, as_array, same_prompts

# Ridge weight on the length coefficient of the length-controlled fit (see that function).
_LC_RIDGE = 1e-3


# ----------------------------------------------------------------------------- length control


def length_controlled_win_rate(outcomes: ArrayLike, len_a: ArrayLike, len_b: ArrayLike) -> float:
    """AlpacaEval-style length-controlled win rate of system a against b.

    Fits ``P(a wins | prompt) = sigmoid(w0 + w1 * tanh(delta / std(delta)))`` with
    ``delta = len_a - len_b`` by maximising the fractional-response (weighted) logistic
    likelihood ``sum_i y_i log p_i + (1 - y_i) log(1 - p_i)`` with ``y_i`` in {1, 0.5, 0} (a tie
    counts as half a win and half a loss), using ``scipy.optimize.minimize`` (BFGS, analytic
    gradient). The LC win rate is the prediction at zero length difference, ``sigmoid(w0)``: the
    win rate a would have if both answers were equally long. The tanh keeps a few very long
    answers from dominating the fit, as in AlpacaEval; std(delta) is not centred, so zero still
    means equal length.

    A tiny ridge term ``0.5 * 1e-3 * w1**2`` keeps the fit finite when length separates wins
    from losses perfectly; it is negligible otherwise. With equal lengths everywhere the length
    term is zero and the result is the plain win rate; all wins (or all losses) give 1 (or 0).
    """
    y = as_array(outcomes, "outcomes", 1)
    a, b = as_array(len_a, "len_a", 1), as_array(len_b, "len_b", 1)
    same_prompts(y, a, "outcomes and len_a")
    same_prompts(y, b, "outcomes and len_b")
    if ((y < 0) | (y > 1)).any():
        raise StatsError(f"outcomes must lie in [0, 1] (1 win, 0.5 tie, 0 loss); got {y[(y < 0) | (y > 1)][0]}")
    win_rate = float(y.mean())
    if win_rate in (0.0, 1.0):
        return win_rate  # the intercept's MLE is infinite; the limit is the plain rate
    delta = a - b
    scale = float(np.std(delta))
    if scale == 0.0:
        if delta.any():
            raise StatsError("len_a - len_b is the same nonzero value for every prompt, so a length effect cannot "
                             "be told apart from a plain preference for a; report the plain win rate instead")
        return win_rate
    z = np.tanh(delta / scale)
    n = len(y)

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = w[0] + w[1] * z
        # -log-likelihood per prompt, written with logaddexp so large |eta| cannot overflow.
        loss = np.sum(y * np.logaddexp(0, -eta) + (1 - y) * np.logaddexp(0, eta)) / n + 0.5 * _LC_RIDGE * w[1] ** 2
        residual = scipy.special.expit(eta) - y
        grad = np.array([residual.mean(), (residual * z).mean() + _LC_RIDGE * w[1]])
        return float(loss), grad

    start = np.array([math.log(win_rate / (1 - win_rate)), 0.0])
    fit = scipy.optimize.minimize(loss_and_grad, start, jac=True, method="BFGS", options={"gtol": 1e-10})
    return float(scipy.special.expit(fit.x[0]))
