"""User-facing errors of the command line: one line naming the problem, exit status 2, nothing written."""

import pytest

from prefbench.cli import main


@pytest.mark.parametrize("argv, message", [
    (["run", "--objectives", "dpo,jpoo"], "unknown objective 'jpoo' (did you mean 'jpo'?)"),
    (["run", "--benchmark", "ifeval-lit"], "did you mean 'ifeval-lite'"),
    (["run", "--preset", "quik"], "quik"),
    (["run", "--param", "beta=0.2"], "objective.name=number"),
    (["run", "--objectives", "dpo", "--param", "dpo.beta=-1"], "beta"),
    (["run", "--objectives", "dpo", "--param", "ipo.tau=0.2"], "not among the objectives"),
    (["run", "--judge", "gpt4"], "unknown judge kind"),
    (["data", "build", "--benchmark", "sentimnt"], "did you mean 'sentiment'"),
    (["run", "--benchmark", "tldr"], "has no built-in scorer: its answers are compared with gold responses"),
    (["run", "--benchmark", "tldr", "--set", "data.locaton=x"], "did you mean 'location'"),
    (["run", "--set", "max_steps=3"], "with --set max_steps=3: unknown key 'max_steps'"),
    (["run", "--set", "train.max_steps"], "--set takes section.key=value"),
    (["data", "build", "--benchmark", "tldr"], "--set data.location=PATH"),
    (["report", "no/such/run"], "run directory no/such/run does not exist"),
    (["eval", "no/such/run"], "config.yaml: not found"),
    (["run", "--plan", "--pilot", "no/such/run"], "--pilot no/such/run: cannot read"),
    (["run", "--seeds", "0,x"], "--seeds 0,x: expected distinct integers"),
])
def test_bad_input_is_one_actionable_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefbench: error:") and message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_an_unwritable_run_directory_is_reported_not_a_traceback(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", "--objectives", "dpo", "--preset", "smoke", "--output-dir", str(blocker / "run")]) == 2
    assert "prefbench: error:" in capsys.readouterr().err
