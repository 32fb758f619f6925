"""An optimizer's ``state_dict`` as named tensors (for a safetensors file) plus plain JSON (everything else), and
back, checked against the optimizer it is meant for. A checkpoint stored this way loads without pickle, so
reading one received from someone else cannot run code, and one saved for other parameters is refused
instead of being half-applied."""

from __future__ import annotations

import torch


def split_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors named ``<param id>.<name>``, the JSON-ready rest: param_groups and non-tensor state values)."""
    tensors, plain = {}, {}
    for pid, values in state_dict["state"].items():
        plain[str(pid)] = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[str(pid)][name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": plain}


def join_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    """The ``state_dict`` that ``split_state`` took apart, for ``optimizer.load_state_dict``; raises ValueError
    naming the first thing that does not fit ``optimizer``: other group sizes, state of no parameter, or a
    per-element tensor whose shape is not its parameter's."""
    saved, live = plain["param_groups"], optimizer.param_groups
    sizes, live_sizes = [len(g["params"]) for g in saved], [len(g["params"]) for g in live]
    if sizes != live_sizes:
        raise ValueError(f"its optimizer has parameter groups of sizes {sizes}, this run's {live_sizes}")
    params = {pid: p for g, lg in zip(saved, live) for pid, p in zip(g["params"], lg["params"])}
    state = {int(pid): dict(values) for pid, values in plain["state"].items()}
    for name, tensor in tensors.items():
        pid, _, key = name.partition(".")
        state.setdefault(int(pid), {})[key] = tensor
    for pid, values in state.items():
        if pid not in params:
            raise ValueError(f"it holds optimizer state for parameter {pid}, which this run does not have")
        for key, value in values.items():
            # scalars (Adam's step) are per parameter; everything else is per element of its parameter
            if torch.is_tensor(value) and value.dim() and value.shape != params[pid].shape:
                raise ValueError(f"optimizer state {pid}.{key} has shape {list(value.shape)}, its parameter "
                                 f"{list(params[pid].shape)}")
    # JSON has no tuples: give back the tuples (Adam's betas) the optimizer's own groups hold
    groups = [{k: tuple(v) if isinstance(lg.get(k), tuple) else v for k, v in g.items()} for g, lg in zip(saved, live)]
    return {"state": state, "param_groups": groups}
