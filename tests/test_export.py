"""``prefbench export`` of a real (tiny) run, read back as the other tools read it, and results.json against the
shipped JSON Schema: the run's own and the committed reports'."""

from __future__ import annotations

import csv
import importlib.resources
import json
from pathlib import Path

import jsonschema
import pytest

from prefbench.cli import main
from prefbench.reporting import export
from prefbench.reporting.export import export_run

ROOT = Path(__file__).parents[1]
SEEDS = [0, 1]   # the seeds of the tiny_finished_run fixture


@pytest.fixture
def run_dir(tiny_finished_run):
    return tiny_finished_run


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _generations(run_dir: Path) -> dict[str, list[dict]]:
    names = ["reference"] + [f"{o}/seed{k}" for o in ("dpo", "jpo") for k in SEEDS]
    return {name: _jsonl(run_dir / "generations" / f"{name}.jsonl") for name in names}


def test_alpaca_eval_model_outputs_per_system(run_dir, tmp_path, capsys):
    """AlpacaEval reads model outputs with pandas.read_json (utils.load_or_convert_to_dataframe) and takes the
    model's name from the one value of its ``generator`` column (utils.get_generator_name); each row needs the
    ``instruction`` and ``output`` its prompts are formatted with (tatsu-lab/alpaca_eval README, 'model_outputs')."""
    import pandas as pd

    out = tmp_path / "ae"
    assert main(["export", str(run_dir), "--format", "alpaca_eval", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    originals = [p["text"] for p in _jsonl(run_dir / "data" / "eval.jsonl") if p["variant"] == "original"]
    assert len(originals) == 3
    everything = []
    for name, rows in _generations(run_dir).items():
        generator = name.replace("/", "-")
        records = json.loads((out / generator / "model_outputs.json").read_text(encoding="utf-8"))
        assert isinstance(records, list)
        assert [set(r) for r in records] == [{"instruction", "output", "generator", "dataset"}] * 3
        assert all(isinstance(r[k], str) for r in records for k in r)
        assert [r["instruction"] for r in records] == originals
        assert [r["output"] for r in records] == [g["response"] for g in rows if g["variant"] == "original"]
        frame = pd.read_json(out / generator / "model_outputs.json")
        assert list(frame["generator"].unique()) == [generator] and frame["dataset"].eq("tiny-ifeval").all()
        assert list(frame["output"]) == [r["output"] for r in records]
        everything += records if name != "reference" else []
    assert json.loads((out / "all_model_outputs.json").read_text(encoding="utf-8")) == everything
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["all_model_outputs.json", "reference", "dpo-seed0", "dpo-seed1", "jpo-seed0", "jpo-seed1"])


def test_jsonl_holds_every_answer_with_its_system(run_dir, tmp_path):
    out = export_run(run_dir, "jsonl", tmp_path / "g")
    rows = _jsonl(out / "generations.jsonl")
    expected = [{**g, "system": name, "objective": None if name == "reference" else name.split("/")[0],
                 "seed": None if name == "reference" else int(name[-1])}
                for name, gens in _generations(run_dir).items() for g in gens]
    assert rows == expected and len(rows) == 5 * 3 * 3   # systems x prompts x (original + 2 variants)


def test_csv_leaderboard_and_comparisons(run_dir, tmp_path):
    out = export_run(run_dir, "csv", tmp_path / "c")
    results = json.loads((run_dir / "results.json").read_text())
    assert (out / "leaderboard.csv").read_text() == (run_dir / "leaderboard.csv").read_text()
    board = list(csv.DictReader((out / "leaderboard.csv").open()))
    assert [r["system"] for r in board] == [s["name"] for s in results["systems"]] + ["reference"]
    for row, system in zip(board, results["systems"]):
        assert float(row["win_rate"]) == pytest.approx(system["win_rate"]["estimate"], abs=5e-5)
        assert int(row["wins"]) + int(row["ties"]) + int(row["losses"]) == 3 * len(SEEDS)
    (comparison,) = list(csv.DictReader((out / "comparisons.csv").open()))
    (expected,) = results["comparisons"]
    assert (comparison["a"], comparison["b"]) == (expected["a"], expected["b"])
    assert float(comparison["diff"]) == expected["diff"]["estimate"]
    assert (float(comparison["diff_low"]), float(comparison["diff_high"])) == (expected["diff"]["low"],
                                                                               expected["diff"]["high"])
    assert float(comparison["p_holm"]) == expected["p_holm"]
    assert comparison["significant"] == str(expected["significant"])


def test_hf_dataset_judgments_and_per_prompt_outcomes(run_dir, tmp_path):
    import datasets

    out = export_run(run_dir, "hf-dataset", tmp_path / "d")
    loaded = datasets.load_from_disk(str(out))
    judgments = _jsonl(run_dir / "judgments.jsonl")
    rows = loaded["judgments"].to_list()
    assert len(rows) == len(judgments) == 5 * 3 * 3
    texts = {(name, g["id"]): g for name, gens in _generations(run_dir).items() for g in gens}
    for row, j in zip(rows, judgments):
        assert {k: row[k] for k in ("system", "id", "variant", "score", "outcome", "words")} == \
            {k: j[k] for k in ("system", "id", "variant", "score", "outcome", "words")}
        assert row["response"] == texts[(j["system"], j["id"])]["response"]
        assert row["gaming"] == j.get("gaming") and row["finished"] == j.get("finished")
        assert row["seed"] == (None if j["system"] == "reference" else int(j["system"][-1]))
    # the outcomes are the per-prompt numbers behind each win rate: their mean is its estimate, their counts W/T/L
    results = {s["name"]: s for s in json.loads((run_dir / "results.json").read_text())["systems"]}
    outcomes = loaded["outcomes"].to_list()
    assert len(outcomes) == 2 * 3
    for objective, entry in results.items():
        mine = [r for r in outcomes if r["objective"] == objective]
        assert all(r["seeds"] == SEEDS and r["outcome"] == pytest.approx(sum(r["outcomes"]) / 2) for r in mine)
        assert sum(r["outcome"] for r in mine) / 3 == pytest.approx(entry["win_rate"]["estimate"])
        flat = [o for r in mine for o in r["outcomes"]]
        assert (flat.count(1.0), flat.count(0.5), flat.count(0.0)) == (entry["wins"], entry["ties"], entry["losses"])


def test_an_export_replaces_the_last_one_whole_or_not_at_all(run_dir, tmp_path, monkeypatch):
    out = export_run(run_dir, "csv", tmp_path / "c")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def disk_full(folder):
        (folder / "leaderboard.csv").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "_csv", lambda run: disk_full)
    with pytest.raises(OSError):
        export_run(run_dir, "csv", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]   # no temporary folder left behind
    monkeypatch.undo()
    assert export_run(run_dir, "csv") == run_dir / "export" / "csv"   # the default place, inside the run
    assert {p.name: p.read_bytes() for p in (run_dir / "export" / "csv").iterdir()} == before


# --- results.json against its JSON Schema -----------------------------------------------------------------------

def _schema() -> dict:
    return json.loads((importlib.resources.files("prefbench.reporting") / "results.schema.json").read_text())


def test_the_schema_is_shipped_valid_and_versioned():
    from prefbench.evaluation.results import SCHEMA

    tomllib = pytest.importorskip("tomllib")   # Python 3.11 and later

    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"] == {"const": SCHEMA, "description": "The version of this layout."}
    assert schema["$id"].endswith(f":{SCHEMA}")
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "results.schema.json" in package_data["prefbench.reporting"]


@pytest.mark.parametrize("source", ["run", *sorted(p.parent.name for p in (ROOT / "reports").glob("*/results.json"))])
def test_results_validate_against_the_schema(source, run_dir):
    path = run_dir / "results.json" if source == "run" else ROOT / "reports" / source / "results.json"
    jsonschema.validate(json.loads(path.read_text()), _schema(), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("change, where", [
    (lambda r: r.pop("systems"), "'systems' is a required property"),
    (lambda r: r.update(schema=2), "schema"),
    (lambda r: r["systems"][0]["win_rate"].pop("low"), "'low' is a required property"),
    (lambda r: r["systems"][0].update(wins=1.5), "1.5 is not of type 'integer'"),
    (lambda r: r["comparisons"][0].update(p_holm="0.3"), "'0.3' is not of type 'number'"),
    (lambda r: r.update(baseline="judge"), "'judge' is not one of"),
])
def test_the_schema_refuses_a_damaged_results_file(change, where):
    results = json.loads((ROOT / "reports" / "ifeval-lite-quick" / "results.json").read_text())
    change(results)
    with pytest.raises(jsonschema.ValidationError, match=where):
        jsonschema.validate(results, _schema(), cls=jsonschema.Draft202012Validator)
