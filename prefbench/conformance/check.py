"""Running the golden cases of an objective against an implementation, and the report: one row per check."""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from prefbench.conformance.cases import (
    ConformanceError,
    KnownDifference,
    Unsupported,
    input_tensors,
    load_golden,
)
from prefbench.conformance.impl import Implementation, losses_of, resolve
from prefbench.registry import get_objective

PASS, FAIL, KNOWN, SKIPPED, ERROR = "pass", "FAIL", "known difference", "skipped", "ERROR"


@dataclass
class CaseResult:
    """One check: the worst element's expected and obtained values, the largest errors and the verdict."""

    name: str
    verdict: str
    at: str = ""
    expected: float | str | None = None
    got: float | None = None
    abs_err: float | None = None
    rel_err: float | None = None
    tolerance: str = ""
    note: str = ""


@dataclass
class Report:
    objective: str
    implementation: str
    header: str
    results: list[CaseResult] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(r.verdict == verdict for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 when every check that ran passed (or showed a known difference), 1 otherwise or when none ran."""
        ran = self.count(PASS) + self.count(KNOWN)
        return 0 if ran and not (self.count(FAIL) or self.count(ERROR)) else 1

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if r.verdict in (FAIL, ERROR)]

    def table(self) -> str:
        rows = [("case", "at", "expected", "got", "abs err", "rel err", "tolerance", "verdict")]
        rows += [(r.name, r.at, _num(r.expected), _num(r.got), _err(r.abs_err), _err(r.rel_err), r.tolerance, r.verdict)
                 for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [self.header, ""]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(3, "  ".join("-" * w for w in widths))
        notes = {}
        for r in self.results:
            if r.note and r.verdict != PASS:
                notes.setdefault(r.note, []).append(r.name)
        lines += [""] + [f"{', '.join(names)}: {note}" for note, names in notes.items()]
        known = self.count(KNOWN)
        summary = (f"{len(self.results)} checks: {self.count(PASS)} passed, {known} known difference"
                   f"{'s' if known != 1 else ''}, "
                   f"{self.count(SKIPPED)} skipped, {self.count(FAIL) + self.count(ERROR)} failed")
        if self.exit_code:
            summary += (f" — FAILED: {', '.join(self.failed)}" if self.failed else " — FAILED: no check ran")
        return "\n".join(lines + [summary])


def _num(x) -> str:
    if x is None:
        return ""
    return x if isinstance(x, str) else f"{x:.10g}"


def _err(x) -> str:
    return "" if x is None else f"{x:.1e}"


def _select(cases: list[dict], objective, params: dict[str, float] | None, takes_params: bool) -> list[dict]:
    """The cases at ``params`` (only the names given; all of them for an implementation whose parameters are fixed,
    the rest at their defaults)."""
    if not params and takes_params:
        return cases
    given = objective.resolve_params(**(params or {}))
    wanted = {k: given[k] for k in (params or {})} if takes_params else given
    chosen = [c for c in cases if all(math.isclose(c["params"][k], v, rel_tol=1e-12) for k, v in wanted.items())]
    if not chosen:
        seen = {k: sorted({c["params"][k] for c in cases}) for k in wanted}
        raise ConformanceError(f"no golden case of '{objective.name}' is at {_params_text(wanted)}; the cases have "
                               + "; ".join(f"{k} in {', '.join(f'{v:g}' for v in vs)}" for k, vs in seen.items()))
    return chosen


def _where(n: int, batch_level: bool, i: int) -> str:
    """Which value a row shows: the batch mean, or pair i+1 of n."""
    return f"mean of {n}" if batch_level else f"pair {i + 1}/{n}" if n > 1 else ""


def _params_text(params: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items()) or "no parameters"


def _known(impl: Implementation, case: str) -> KnownDifference | None:
    for pattern, difference in impl.known_differences.items():
        if fnmatch.fnmatchcase(case, pattern):
            return difference
    return None


def _compare(name: str, got: list[float], expected: list[float], tol: dict, known: KnownDifference | None,
             at: Callable[[int], str], check: str = "value") -> CaseResult:
    tolerance = f"rtol {tol['rtol']:.3g} atol {tol['atol']:.3g}"
    if check == "finite":
        bad = [i for i, g in enumerate(got) if not math.isfinite(g)]
        worst = bad[0] if bad else max(range(len(got)), key=lambda i: abs(got[i]))
        explained = known is not None and all(known.explains(got[i], expected[i]) for i in bad)
        verdict = PASS if not bad else KNOWN if explained else FAIL
        return CaseResult(name, verdict, at(worst), "finite", got[worst], tolerance="finite",
                          note=known.reason if known and verdict == KNOWN else "")
    errors, failing = [], []
    for i, (g, e) in enumerate(zip(got, expected)):
        err = abs(g - e) if math.isfinite(g) else math.inf
        errors.append(err)
        if not err <= tol["atol"] + tol["rtol"] * abs(e):
            failing.append(i)
    worst = max(range(len(got)), key=lambda i: (i in failing, errors[i]))
    # relative errors of the elements above atol (below it a relative error says nothing: e^-100 against 0)
    rel = [err / abs(e) if abs(e) > tol["atol"] else 0.0 if err <= tol["atol"] else math.inf
           for err, e in zip(errors, expected)]
    if not failing:
        verdict = PASS
    elif known and all(known.explains(got[i], expected[i]) for i in failing):
        verdict = KNOWN
    else:
        verdict = FAIL
    return CaseResult(name, verdict, at(worst), expected[worst], got[worst], max(errors), max(rel), tolerance,
                      known.reason if known and verdict == KNOWN else "")


def check_conformance(objective: str, impl: str | Callable, *, adapter: str | None = None,
                      params: dict[str, float] | None = None,
                      known_differences: dict[str, KnownDifference] | None = None) -> Report:
    """Run prefbench's golden cases of ``objective`` on ``impl`` (``module:function``, ``trl:LOSS_TYPE`` or a
    callable, called as ``adapter`` says: see :mod:`prefbench.conformance.impl`); ``params`` keeps only the cases
    at those values. Problems with the invocation raise :class:`ConformanceError`; failing cases are in the report."""
    obj = get_objective(objective)
    golden = load_golden()
    entry = golden["objectives"].get(obj.name)
    if entry is None:
        raise ConformanceError(f"no golden cases for '{obj.name}' ({obj.source}): they ship for prefbench's "
                               f"built-in objectives only")
    implementation = resolve(impl, adapter, obj, entry["keywords"], known_differences)
    cases = _select(entry["cases"], obj, params, implementation.takes_params)
    commit = golden["objectives_commit"][:12]
    header = (f"prefbench conformance: objective '{obj.name}' — golden cases format {golden['format_version']}, "
              f"prefbench {golden['prefbench_version']}, objectives at {commit}\n"
              f"implementation: {implementation.label} ({implementation.adapter} adapter"
              + (f"; {implementation.description}" if implementation.description else "") + ")"
              + ("; batch-level: compared on the batch mean" if obj.batch_level else ""))
    report = Report(obj.name, implementation.label, header)
    outputs: dict[tuple, list[float] | Exception] = {}

    def run(input_name: str, params: dict, case: str) -> list[float]:
        key = (input_name, tuple(sorted(params.items())))
        if key not in outputs:
            values = golden["inputs"][input_name]
            tensors = input_tensors(values, implementation.tensor_names)
            n = len(values["policy_chosen_logps"])
            try:
                result = implementation(tensors, params if implementation.takes_params else {})
            except (Unsupported, ConformanceError):
                raise
            except Exception as exc:  # the implementation's own failure is a failing case, reported, not a crash
                outputs[key] = exc
            else:
                outputs[key] = losses_of(result, implementation.label, case, n, obj.batch_level)
        if isinstance(outputs[key], Exception):
            raise outputs[key]
        return outputs[key]

    def mean(xs: list[float]) -> list[float]:
        return [math.fsum(xs) / len(xs)]

    for case in cases:
        name, values = case["name"], golden["inputs"][case["inputs"]]
        tol = golden["tolerances"][values["dtype"]]
        n = len(values["policy_chosen_logps"])
        try:
            got = run(case["inputs"], case["params"], name)
            if case["check"] == "invariant":   # batch-level: the index reorders the whole batch, the mean stays
                base = run(case["base"], case["params"], name)
                expected = base if obj.batch_level else [base[i] for i in case["index"]]
            else:
                expected = case["expected"]
        except Unsupported as exc:
            report.results.append(CaseResult(name, SKIPPED, note=f"skipped: {exc}"))
            continue
        except ConformanceError:
            raise
        except Exception as exc:
            text = " ".join(str(exc).split())[:160]
            report.results.append(CaseResult(name, ERROR, note=f"raised {type(exc).__name__}: {text}"))
            continue
        if obj.batch_level:   # a list of one for a batch of several is the implementation's own mean
            got, expected = (got if len(got) == 1 else mean(got)), (expected if len(expected) == 1 else mean(expected))
        result = _compare(name, got, expected, tol, _known(implementation, name), partial(_where, n, obj.batch_level),
                          case["check"])
        if result.verdict == FAIL and case.get("note"):
            result.note = case["note"]
        report.results.append(result)
    return report


def assert_conforms(objective: str, impl: str | Callable, *, adapter: str | None = None,
                    known_differences: dict[str, KnownDifference] | None = None, **params: float) -> Report:
    """For a library's own test suite: run the golden cases and fail (AssertionError with the table) unless every
    check passes or shows a declared known difference. ``params`` keeps only the cases at those values."""
    report = check_conformance(objective, impl, adapter=adapter, params=params or None,
                               known_differences=known_differences)
    if report.exit_code:
        raise AssertionError(f"{report.implementation} does not conform to prefbench's '{report.objective}':\n"
                             + report.table())
    return report
