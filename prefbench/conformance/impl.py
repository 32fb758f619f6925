"""Finding the implementation under test and calling it as its adapter says.

Adapters (``--adapter``):

* ``keywords`` (the default): ``fn(**tensors, **params)``. The tensors are the objective's keywords —
  ``policy_chosen_logps``, ``policy_rejected_logps``, ``reference_chosen_logps``, ``reference_rejected_logps`` (only
  for objectives with a reference), ``chosen_tokens``, ``rejected_tokens`` (int64), and for sft_jpo
  ``chosen_response_logps``, ``chosen_response_tokens`` — each of shape [B], log-probs summed over the response;
  the params are the objective's, by prefbench's names (``prefbench objectives``). ``fn`` returns the per-pair
  losses, a tensor [B] (or a tuple whose first element is), unreduced; for a batch-level objective it may return
  their mean instead.
* ``positional``: ``fn(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps)``
  (the first two only, without a reference), the classic ``dpo_loss`` shape; its parameters are fixed inside it, so
  only the cases at the objective's defaults, or at ``--params``, are run.
* ``trl``: TRL 1.16 DPOTrainer's loss type named by ``--impl trl:LOSS_TYPE`` (see ``trl_adapter``).
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from prefbench.conformance.cases import POLICY, REFERENCE, ConformanceError, KnownDifference
from prefbench.registry import Objective
from prefbench.util.names import suggest

ADAPTERS = ("keywords", "positional", "trl")


@dataclass
class Implementation:
    """The function under test, what the report calls it, and how it is called."""

    label: str
    adapter: str
    fn: Callable
    tensor_names: tuple[str, ...]
    known_differences: dict[str, KnownDifference] = field(default_factory=dict)
    description: str = ""

    @property
    def takes_params(self) -> bool:
        return self.adapter != "positional"

    def __call__(self, tensors: dict[str, Tensor], params: dict[str, float]):
        if self.adapter == "positional":
            return self.fn(*(tensors[k] for k in self.tensor_names))
        return self.fn(**{k: tensors[k] for k in self.tensor_names}, **params)


def parse_params(items: list[str]) -> dict[str, float]:
    """``["beta=0.1", "tau=0.05"]`` -> ``{"beta": 0.1, "tau": 0.05}``."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ConformanceError(f"--params takes NAME=NUMBER, e.g. beta=0.1; got '{item}'") from None
    return out


def load_function(spec: str) -> Callable:
    """``package.module:function`` (the module imported from the current folder or the installed packages)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise ConformanceError(f"--impl '{spec}': give MODULE:FUNCTION (e.g. my_lib.losses:dpo_loss) or trl:LOSS_TYPE")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # whatever the import raised, the user's module is what to fix
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConformanceError(f"--impl {spec}: cannot import '{module_name}': {type(exc).__name__}: "
                               f"{message}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(target) if not n.startswith("_")]
            raise ConformanceError(f"--impl {spec}: '{module_name}' has no '{attr}'{suggest(part, names)}")
        target = getattr(target, part)
    if not callable(target):
        raise ConformanceError(f"--impl {spec}: '{attr}' is a {type(target).__name__}, not a function")
    return target


def resolve(impl: str | Callable, adapter: str | None, objective: Objective, keywords: list[str],
            known_differences: dict[str, KnownDifference] | None = None) -> Implementation:
    """The implementation to check: ``impl`` is ``module:function``, ``trl:LOSS_TYPE`` or a callable."""
    if adapter is None:
        adapter = "trl" if isinstance(impl, str) and impl.startswith("trl:") else "keywords"
    if adapter not in ADAPTERS:
        raise ConformanceError(f"unknown adapter '{adapter}'{suggest(adapter, ADAPTERS)}; "
                               f"adapters: {', '.join(ADAPTERS)}")
    if adapter == "trl":
        from prefbench.conformance.trl_adapter import trl_adapter

        if not isinstance(impl, str):
            raise ConformanceError("the trl adapter takes a TRL loss type (e.g. 'sigmoid'), not a function")
        fn = trl_adapter(impl.removeprefix("trl:"), objective)
        label = fn.__name__
    elif isinstance(impl, str):
        fn, label = load_function(impl), impl
    else:
        fn, label = impl, f"{getattr(impl, '__module__', '?')}:{getattr(impl, '__qualname__', repr(impl))}"
    if adapter == "positional":
        tensors = (*POLICY, *(REFERENCE if objective.needs_reference else ()))
        _check_signature(fn, label, adapter, args=tensors)
    else:
        tensors = tuple(k for k in keywords if k not in objective.params)
        _check_signature(fn, label, adapter, kwargs=keywords)
    return Implementation(label, adapter, fn, tensors,
                          {**getattr(fn, "known_differences", {}), **(known_differences or {})},
                          getattr(fn, "description", ""))


def _check_signature(fn: Callable, label: str, adapter: str, args: list[str] = (), kwargs: list[str] = ()) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):   # a builtin or C function: it will speak for itself when called
        return
    try:
        signature.bind(*args, **dict.fromkeys(kwargs))
    except TypeError as exc:
        given = (f"{len(args)} positional arguments ({', '.join(args)})" if args else
                 f"the keywords {', '.join(kwargs)}")
        raise ConformanceError(f"{label} has the wrong signature for the {adapter} adapter: {exc}; it is called with "
                               f"{given}") from None


def losses_of(result: object, label: str, case: str, n_pairs: int, batch_level: bool) -> list[float]:
    """The float64 per-pair losses in a result (or its batch mean, for a batch-level objective); a result of another
    kind or shape is an error of the implementation's contract, not a failing case."""
    if isinstance(result, tuple) and result:
        result = result[0]
    if not isinstance(result, Tensor):
        raise ConformanceError(f"{label} returned a {type(result).__name__} for case '{case}'; the contract asks for a "
                               f"tensor of per-pair losses [B] (or a tuple starting with one)")
    shape = tuple(result.shape)
    if shape != (n_pairs,) and not (batch_level and shape == ()):
        reduced = shape == () or (shape == (1,) and n_pairs > 1)
        hint = " (a reduced loss? return the losses before .mean())" if reduced else ""
        raise ConformanceError(f"{label} returned losses of shape {shape} for case '{case}' of {n_pairs} "
                               f"pair{'s' if n_pairs != 1 else ''}; expected ({n_pairs},), one unreduced loss per "
                               f"pair{hint}")
    return result.detach().to(device="cpu", dtype=torch.float64).reshape(-1).tolist()
