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


def _parsers(parser, prog="prefbench"):
    """(command, parser) for the top-level parser and every subcommand's, nested ones included."""
    import argparse

    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog} {name}")


def test_every_option_of_every_command_has_help_and_no_empty_default():
    import argparse

    from prefbench.cli import build_parser

    parsers = dict(_parsers(build_parser()))
    assert {"prefbench train", "prefbench sft", "prefbench run", "prefbench data build", "prefbench export",
            "prefbench cache clear", "prefbench conformance"} <= set(parsers)
    missing = [f"{prog} {'/'.join(a.option_strings) or a.dest}" for prog, p in parsers.items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []
    for prog, p in parsers.items():
        text = p.format_help()
        assert "default: None" not in text and "default: []" not in text, prog
    # a default is shown where there is one: an ordinary option's, and TrainConfig's for the training flags
    run_help = " ".join(parsers["prefbench run"].format_help().split())
    assert "(default: quick)" in run_help and "(default: 4bit)" in run_help
    assert "(default: 0)" in " ".join(parsers["prefbench demo"].format_help().split())   # a zero is a default too
    train_help = " ".join(parsers["prefbench train"].format_help().split())
    assert "(default: 0.0001)" in train_help and "(default: runs/train)" in train_help
    assert "(default: runs/sft)" in " ".join(parsers["prefbench sft"].format_help().split())


def test_every_training_setting_has_its_own_help():
    import dataclasses

    from prefbench.cli import CONFIG_HELP
    from prefbench.engine.config import TrainConfig

    assert set(CONFIG_HELP) == {f.name for f in dataclasses.fields(TrainConfig)} - {"objective_params"}


def test_version_is_the_installed_package_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"prefbench {importlib.metadata.version('prefbench')}"


def test_every_imported_library_is_a_declared_dependency():
    """Each third-party module the package imports belongs to a distribution pyproject.toml names: a runtime
    dependency, or an extra for the optional integrations (TRL parity, the pytest plugin, the ray and slurm
    executors)."""
    import ast
    import importlib.metadata
    import re
    import sys
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")   # Python 3.11 and later
    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]

    def name(requirement: str) -> str:
        return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()

    declared = {name(r) for r in project["dependencies"]}
    optional = {name(r) for extra in project["optional-dependencies"].values() for r in extra}
    modules = {}
    for path in [*(root / "prefbench").rglob("*.py"), *(root / "objectives").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for module in names:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "prefbench":
                    modules.setdefault(top, path.relative_to(root))
    distributions = importlib.metadata.packages_distributions()
    undeclared = {m: str(where) for m, where in modules.items()
                  if not {name(d) for d in distributions.get(m, [m])} & (declared | optional)}
    assert undeclared == {}
    only_in_extras = {m for m in modules if not {name(d) for d in distributions.get(m, [m])} & declared}
    assert only_in_extras == {"pytest", "trl", "ray", "submitit"}


@pytest.mark.parametrize("typed, offered", [
    ("prefbench ex", "export"),
    ("prefbench data b", "build"),
    ("prefbench export run --format h", "hf-dataset"),
    ("prefbench run --quantization ", "4bit none"),
    ("prefbench data build --qu", "--quantization"),
    ("prefbench cache clear --d", "--dry-run"),
    ("prefbench train --lora-", "--lora-r --lora-alpha --lora-dropout"),
])
def test_bash_completion_offers_commands_options_and_choices(typed, offered, capsys, tmp_path):
    """The script ``prefbench completion bash`` prints, sourced in a real bash and asked as bash asks it."""
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "prefbench.bash"
    script.write_text(capsys.readouterr().out)
    ask = ('source "$1"; read -ra COMP_WORDS <<< "$2"; [[ "$2" == *" " ]] && COMP_WORDS+=(""); '
           'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _prefbench; echo "${COMPREPLY[*]}"')
    done = subprocess.run(["bash", "-c", ask, "_", str(script), typed], capture_output=True, text=True, check=True)
    assert done.stderr == "" and done.stdout.strip() == offered


def test_bash_completion_offers_files_where_a_value_is_a_path(capsys, tmp_path):
    import shutil
    import subprocess

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "prefbench.bash"
    script.write_text(capsys.readouterr().out)
    (tmp_path / "run-a").mkdir()
    ask = ('source "$1"; COMP_WORDS=(prefbench export "$2"); COMP_CWORD=2; _prefbench; echo "${COMPREPLY[*]}"')
    done = subprocess.run(["bash", "-c", ask, "_", str(script), str(tmp_path / "run-")], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == str(tmp_path / "run-a")
