"""Reports from a synthetic run directory: exact numbers in the tables, the plain reading's claims,
self-contained HTML, valid PNGs, null-tolerant fields, and runs compared side by side."""

from __future__ import annotations

import base64
import json
import math
import random
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from prefbench.reporting import plots
from prefbench.reporting.compare import compare_runs, run_labels
from prefbench.reporting.leaderboard import leaderboard_text
from prefbench.reporting.load import ReportError, load_results
from prefbench.reporting.reading import plain_reading
from prefbench.reporting.report import render_report
from prefbench.stats import mean_ci, paired_difference

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("forest", "win_rate", "training", "robustness", "reward_kl")


def iv(estimate: float, low: float, high: float) -> dict:
    return {"estimate": estimate, "low": low, "high": high, "method": "bca"}


def robustness(original: float, drop: dict, flip_rate: dict | None) -> dict:
    """Per-variant scores whose mean over the four variants is ``original - drop`` (multipliers sum to 4)."""
    d = drop["estimate"]
    per_variant = {"original": original, "paraphrase": original - 1.2 * d, "typo": original - 0.8 * d,
                   "case": original - 0.2 * d, "distractor": original - 1.8 * d}
    return {"mean": iv(original - d, original - d - 0.05, original - d + 0.05), "drop": drop,
            "worst": iv(0.40, 0.30, 0.50), "spread": iv(0.12, 0.08, 0.16), "flip_rate": flip_rate,
            "per_variant": per_variant}


def system(name: str, seeds: list[int], win_rate: dict, wtl: tuple, kl: dict | None, **extra) -> dict:
    return {"name": name, "objective": name, "params": {"beta": 0.1}, "seeds": seeds, "win_rate": win_rate,
            "wins": wtl[0], "ties": wtl[1], "losses": wtl[2], "lc_win_rate": extra.get("lc", 0.5),
            "mean_score": extra.get("score", iv(0.5, 0.45, 0.55)), "mean_length": extra.get("length", 30.0),
            "robustness": robustness(extra.get("score", iv(0.5, 0.45, 0.55))["estimate"],
                                     extra.get("drop", iv(0.02, -0.01, 0.05)), iv(0.1, 0.05, 0.15)),
            "kl": kl, "training": [{"seed": k, "metrics": f"{name}/seed{k}/metrics.jsonl"} for k in seeds]}


def write_metrics(path: Path, start_loss: float, rate: float, seed: int, steps: int = 60) -> None:
    """Noisy decaying loss, rising accuracy and margin, as a small-batch run logs them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    lines = [json.dumps({"step": t, "loss": start_loss * math.exp(-t * rate) * (1 + 0.2 * rng.random()),
                         "accuracy": min(1.0, 0.5 + t * rate * 0.5 + 0.2 * rng.random()),
                         "margin": rate * t + 0.2 * rng.random(), "chosen_logps": -50.0, "rejected_logps": -50.0 - t,
                         "grad_norm": 1.0, "lr": 1e-4, "tokens": 800, "tokens_per_s": 150.0})
             for t in range(1, steps + 1)]
    path.write_text("\n".join(lines) + "\n")


def make_run(root: Path, systems: list[dict], comparisons: list[dict], kl_free: bool = False) -> Path:
    """A finished run: results.json, config.yaml and every system's metrics.jsonl."""
    root.mkdir(parents=True)
    if kl_free:
        systems = [{**s, "kl": None} for s in systems]
    results = {"schema": 1, "benchmark": "ifeval-lite", "preset": "quick", "model": "embedded:smollm2-135m-instruct",
               "baseline": "reference", "confidence": 0.95, "n_prompts": 48, "correction": "holm",
               "judge": {"name": "gold:ifeval-lite", "kind": "pointwise",
                         "diagnostics": {"judged": 0, "position_consistency": None, "first_slot_win_rate": None,
                                         "unparseable": 0}},
               "reference": {"mean_score": iv(0.48, 0.41, 0.55), "mean_length": 31.2,
                             "robustness": robustness(0.48, iv(0.04, 0.0, 0.08), None)},
               "systems": systems, "comparisons": comparisons,
               "timings": {"data": 120.5, "train": 800.1, "generate": 200.0, "judge": 1.0, "total": 1200.0}}
    (root / "results.json").write_text(json.dumps(results))
    (root / "config.yaml").write_text("model: embedded:smollm2-135m-instruct\nobjectives: [jpo, dpo, ipo]\n"
                                      "lr: 5.0e-05\n")
    for i, s in enumerate(systems):
        for k in s["seeds"]:
            write_metrics(root / s["name"] / f"seed{k}" / "metrics.jsonl", 25.0 if s["name"] == "ipo" else 0.69,
                          rate=0.01 * (i + 2), seed=10 * i + k)
    return root


THREE = [system("jpo", [0, 1], iv(0.625, 0.51, 0.731), (20, 10, 18), iv(1.2, 0.9, 1.5), lc=0.55,
                score=iv(0.612, 0.54, 0.68), length=23.4, drop=iv(0.05, 0.01, 0.09)),
         system("ipo", [0], iv(0.40, 0.30, 0.49), (12, 14, 22), iv(0.4, 0.3, 0.5)),
         system("dpo", [0], iv(0.545, 0.44, 0.65), (18, 16, 14), None)]
COMPARISONS = [{"a": "jpo", "b": "dpo", "diff": iv(0.08, 0.012, 0.149), "p": 0.004, "p_holm": 0.012,
                "significant": True},
               {"a": "ipo", "b": "jpo", "diff": iv(-0.225, -0.35, -0.10), "p": 0.0002, "p_holm": 0.0006,
                "significant": True},
               {"a": "dpo", "b": "ipo", "diff": iv(0.145, -0.01, 0.29), "p": 0.03, "p_holm": 0.06,
                "significant": False}]


def leaderboard_rows(md: str) -> list[str]:
    section = md.split("## Leaderboard\n")[1].split("\n## ")[0]
    return [line for line in section.splitlines() if line.startswith("| ")][2:]  # after header and alignment


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "run1", THREE, COMPARISONS)
    md_path, html_path = render_report(run)
    return run, md_path.read_text(), html_path.read_text()


def test_files_exist_and_pngs_are_valid(rendered):
    run, _, _ = rendered
    assert (run / "report.md").is_file() and (run / "report.html").is_file()
    for name in PLOTS:
        data = (run / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(run / "plots" / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_leaderboard_rows_carry_the_input_numbers_sorted_by_win_rate(rendered):
    _, md, _ = rendered
    assert leaderboard_rows(md) == [
        "| jpo | beta=0.1 | 0, 1 | 62.5% [51.0, 73.1] | **better** | 20/10/18 | 55.0% | 0.612 [0.540, 0.680] "
        "| 23.4 | +0.050 [+0.010, +0.090] | 1.20 [0.90, 1.50] |",
        "| dpo | beta=0.1 | 0 | 54.5% [44.0, 65.0] | n.s. | 18/16/14 | 50.0% | 0.500 [0.450, 0.550] "
        "| 30.0 | +0.020 [-0.010, +0.050] | — |",
        "| ipo | beta=0.1 | 0 | 40.0% [30.0, 49.0] | **worse** | 12/14/22 | 50.0% | 0.500 [0.450, 0.550] "
        "| 30.0 | +0.020 [-0.010, +0.050] | 0.40 [0.30, 0.50] |",
        "| reference (baseline) | base model | — | 50% by definition | — | — | — | 0.480 [0.410, 0.550] "
        "| 31.2 | +0.040 [+0.000, +0.080] | 0 |",
    ]


def test_reading_names_real_differences_only(rendered):
    _, md, _ = rendered
    reading = md.split("## Reading\n")[1].split("\n## ")[0]
    assert "1 of 3 systems beat the reference model significantly" in reading
    assert "jpo (62.5% [51.0, 73.1])" in reading
    assert "Worse than the reference model: ipo (40.0% [30.0, 49.0])" in reading
    assert "Indistinguishable from it: dpo (54.5% [44.0, 65.0])" in reading
    assert "2 of 3 pairwise differences survive Holm correction" in reading
    assert "jpo beats dpo by +8.0 pp [+1.2, +14.9] (p_holm = 0.012)" in reading
    # given as ipo − jpo < 0, read with the winner first
    assert "jpo beats ipo by +22.5 pp [+10.0, +35.0] (p_holm < 0.001)" in reading
    assert "dpo beats ipo" not in reading and "ipo beats dpo" not in reading
    assert "the other 1 difference does not" in reading


def test_reading_says_when_nothing_survives(tmp_path):
    weak = [{**c, "significant": False, "p_holm": 0.5} for c in COMPARISONS]
    md = plain_reading(load_results(make_run(tmp_path / "r", THREE, weak)))
    # widest interval: dpo − ipo, 0.29 − (−0.01) = 0.30, i.e. ±15.0 points
    assert "None of the 3 pairwise differences survives Holm correction" in md
    assert "±15.0 percentage points" in md


def test_html_is_self_contained_with_inline_pngs(rendered):
    _, _, html = rendered
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == len(PLOTS)
    assert all(base64.b64decode(data)[:8] == PNG_SIGNATURE for data in images)
    assert "<details>" in html and "lr: 5.0e-05" in html and "<table>" in html


def test_config_shown_verbatim_and_diagnostics_dash(rendered):
    run, md, _ = rendered
    assert (run / "config.yaml").read_text() in md
    assert "| position consistency | — |" in md
    assert "| train | 800.1 s | 66.7% |" in md  # 800.1 / 1200


def test_null_kl_missing_timings_and_metrics_are_noted_not_fatal(tmp_path):
    run = make_run(tmp_path / "r", THREE, COMPARISONS, kl_free=True)
    results = json.loads((run / "results.json").read_text())
    del results["timings"]
    results["reference"]["robustness"]["per_variant"]["typo"] = None  # a variant kind without scores
    results["systems"][0]["mean_score"] = None  # as a pairwise judge leaves it
    (run / "results.json").write_text(json.dumps(results))
    (run / "jpo" / "seed1" / "metrics.jsonl").unlink()
    (run / "plots").mkdir()
    (run / "plots" / "reward_kl.png").write_bytes(PNG_SIGNATURE)  # left over from an earlier render
    md = render_report(run)[0].read_text()
    assert "Reward-vs-KL plot skipped: no system has both a KL estimate and a mean score" in md
    assert not (run / "plots" / "reward_kl.png").exists()
    assert "![Mean score vs KL" not in md
    cells = [row.split(" | ") for row in leaderboard_rows(md)]
    assert [c[-1] for c in cells] == ["— |", "— |", "— |", "0 |"]  # KL
    assert [c[7] for c in cells] == ["—", "0.500 [0.450, 0.550]", "0.500 [0.450, 0.550]", "0.480 [0.410, 0.550]"]
    assert "Timings were not recorded." in md
    assert "Missing training metrics (not plotted): `jpo/seed1/metrics.jsonl`" in md
    assert (run / "plots" / "training.png").is_file()


def test_mean_over_seeds_uses_the_seeds_that_reached_each_step():
    seed0 = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 3.0}]
    seed1 = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 4.0}]
    steps, means = plots.mean_over_seeds([seed0, seed1], "loss")
    assert steps.tolist() == [1, 2, 3] and np.allclose(means, [2.0, 3.0, 3.0])


def test_colours_are_stable_and_distinct():
    a = plots.system_colours(["jpo", "my_loss", "dpo", "other"])
    b = plots.system_colours(["other", "dpo", "my_loss"])
    assert a["dpo"] == b["dpo"] and a["my_loss"] == b["my_loss"] and a["other"] == b["other"]
    assert len({a[n] for n in ("jpo", "my_loss", "dpo", "other", "reference")}) == 5


def test_errors_name_the_path_and_the_fix(tmp_path):
    (tmp_path / "run1").mkdir()
    with pytest.raises(ReportError, match=r"run1/results.json not found: run `prefbench eval .*run1` first"):
        render_report(tmp_path / "run1")
    with pytest.raises(ReportError, match="did you mean .*run1"):
        load_results(tmp_path / "rnu1")
    run = make_run(tmp_path / "bad", THREE, COMPARISONS)
    results = json.loads((run / "results.json").read_text())
    del results["systems"][1]["win_rate"]["low"]
    results["comparisons"][0]["b"] = "dpoo"
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=r"systems\[1\]\.win_rate\.low: expected a number"):
        load_results(run)
    del results["systems"][1]
    results["systems"].insert(1, THREE[1])
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(ReportError, match=r"comparisons\[0\]\.b: 'dpoo' .*did you mean 'dpo'"):
        load_results(run)


def test_compare_runs_with_different_system_sets(tmp_path):
    run_a = make_run(tmp_path / "modelA" / "run", THREE, COMPARISONS)
    simpo = system("simpo", [0], iv(0.70, 0.60, 0.80), (30, 8, 10), None, score=iv(0.7, 0.6, 0.8))
    run_b = make_run(tmp_path / "modelB" / "run", [THREE[2], simpo], [], kl_free=True)
    md_path, html_path = compare_runs([run_a, run_b], tmp_path / "cmp")
    md, html = md_path.read_text(), html_path.read_text()
    assert "| system | modelA/run: win rate (CI) | modelA/run: mean score (CI) | modelB/run: win rate (CI) " \
           "| modelB/run: mean score (CI) |" in md
    # simpo leads (70%), jpo next; missing systems show a dash in the other run's columns
    assert "| simpo | — | — | **70.0% [60.0, 80.0]** | 0.700 [0.600, 0.800] |" in md
    assert "| jpo | **62.5% [51.0, 73.1]** | 0.612 [0.540, 0.680] | — | — |" in md
    assert md.index("| simpo |") < md.index("| jpo |") < md.index("| dpo |") < md.index("| ipo |")
    assert "**modelB/run**: No pairwise comparisons" in md
    assert matplotlib.image.imread(tmp_path / "cmp" / "plots" / "compare_win_rate.png").shape[0] > 100
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 1


def smoke_run(root: Path) -> Path:
    """Four prompts, every one a tie for both systems (a judge that cannot tell): the intervals and detectable
    differences the stats give such a run."""
    ties = np.full(4, 0.5)
    tied = mean_ci(ties, value_range=(0.0, 1.0)).to_json()
    diff, p = paired_difference(ties, ties, value_range=(-1.0, 1.0))
    no_spread = {"mde": None, "mde_note": "no spread in the differences"}
    run = make_run(root, [system("jpo", [0], tied, (0, 4, 0), None), system("dpo", [0], tied, (0, 4, 0), None)],
                   [{"a": "jpo", "b": "dpo", "diff": diff.to_json(), "p": p, "p_holm": p, "significant": False,
                     **no_spread}])
    results = json.loads((run / "results.json").read_text())
    results["n_prompts"] = 4
    results["head_to_head"] = [{"a": "jpo", "b": "dpo", "win_rate": tied, "wins": 0, "ties": 4, "losses": 0, "p": 1.0,
                                "p_holm": 1.0, "significant": False, **no_spread}]
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_a_run_where_every_prompt_ties_shows_honest_intervals_and_no_detectable_difference(tmp_path):
    run = smoke_run(tmp_path / "smoke")
    md = render_report(run)[0].read_text()
    # 4 ties: 0.5 ± (1 - 0.025^(1/4)) / 2 = [19.9, 80.1], not [50.0, 50.0]; the difference ±60.2 points
    assert "| jpo | beta=0.1 | 0 | 50.0% [19.9, 80.1] | n.s. | 0/4/0 |" in md
    assert "- **intervals**: 95% (Clopper-Pearson where every prompt gave the same outcome, an exact bound on the " \
           "share of prompts that could differ)" in md
    assert "| jpo − dpo | +0.0 pp [-60.2, +60.2] | 1.000 | 1.000 | no | not estimable (no spread in the differences) |" \
        in md
    assert "| jpo vs dpo | 50.0% [19.9, 80.1] | 0/4/0 | 1.000 | 1.000 | no | not estimable (no spread in the " \
           "differences) |" in md
    assert md.count("the CI is then an exact (Clopper–Pearson) bound") == 2 and "*Not estimable*:" in md
    reading = md.split("## Reading\n")[1].split("\n## ")[0]
    assert "Detectable difference of jpo − dpo: not estimable (no spread in the differences)." in reading
    assert "Detectable difference of jpo vs dpo: not estimable (no spread in the differences)." in reading
    assert "0.0 points" not in md and "0.0 pp |" not in md
    assert "detectable difference not estimable (no spread in the differences))" in leaderboard_text(load_results(run))
    compared = compare_runs([run], tmp_path / "cmp")[0].read_text()
    assert "| reference | 0 | Clopper-Pearson | 4 |" in compared
    assert "*Intervals*: Clopper-Pearson where every prompt gave the same outcome, an exact bound on the share of " \
           "prompts that could differ." in compared
    assert "| jpo | 50.0% [19.9, 80.1] |" in compared
    assert "Detectable difference of jpo − dpo: not estimable (no spread in the differences)." in compared


def test_run_labels_disambiguate_duplicates(tmp_path):
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "run", tmp_path / "z"]) == ["x/run", "y/run", "z"]
    assert run_labels([tmp_path / "a", tmp_path / "a"]) == ["a #1", "a #2"]


def test_same_input_gives_identical_files(rendered):
    run, md, html = rendered
    pngs = {name: (run / "plots" / f"{name}.png").read_bytes() for name in PLOTS}
    md_path, html_path = render_report(run)
    assert md_path.read_text() == md and html_path.read_text() == html
    assert all((run / "plots" / f"{name}.png").read_bytes() == data for name, data in pngs.items())


def test_objectives_of_several_families_are_grouped_by_family(tmp_path):
    families = {"jpo": "joint", "ipo": "loss-shape", "dpo": "dpo"}
    run = make_run(tmp_path / "families", [{**s, "family": families[s["name"]]} for s in THREE], COMPARISONS)
    md = render_report(run)[0].read_text()
    section = md.split("## By objective family\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][2:]
    # families ordered by their best system: jpo 62.5% (better: low 51% > 50%), dpo 54.5%, ipo 40.0% (worse)
    assert [r.split("|")[1].strip() for r in rows] == ["joint", "dpo", "loss-shape"]
    assert rows[0].split("|")[4].strip() == "better" and rows[2].split("|")[4].strip() == "worse"
    one = make_run(tmp_path / "one", [{**s, "family": "dpo"} for s in THREE], COMPARISONS)
    assert "## By objective family" not in render_report(one)[0].read_text()


def test_the_training_table_says_what_each_data_shape_trained_on():
    from prefbench.reporting.report import _trained_on

    assert _trained_on({"pair_kinds": "conditional", "pairs": 45, "conditional": 45}) == "conditional"
    assert _trained_on({"pair_kinds": "conditional", "examples": 6, "desirable": 3, "undesirable": 3}) == \
        "conditional pairs as 6 examples (3 desirable)"
    assert _trained_on({"lists": 5, "responses": 19}) == "5 lists of 19 answers"
