"""``prefbench push`` of a real tiny run: the dry run's folder (file list, manifest, model cards and their YAML front
matter, adapters that load with PEFT), and the upload with huggingface_hub's API replaced by a recorder. No test
reaches the network: the conftest sets HF_HUB_OFFLINE, and a dry run fails here if it so much as builds an HfApi."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from prefbench.cli import main
from prefbench.pipeline import push
from prefbench.registry import get_objective

SEEDS = [0, 1]   # the seeds of the tiny_finished_run fixture
REPO = "someone/tiny-comparison"


@pytest.fixture
def run_dir(tiny_finished_run):
    return tiny_finished_run


@pytest.fixture()
def no_hub(monkeypatch):
    """huggingface_hub's client, made to fail the test if anything constructs it."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run used the Hub client")

    monkeypatch.setattr(huggingface_hub, "HfApi", refuse)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _card(path: Path) -> tuple[dict, str]:
    """(front matter, body) of a model card."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


ADAPTER_FILES = ["README.md", "adapter_config.json", "adapter_model.safetensors"]
REPORT = ["report/leaderboard.csv", "report/report.html", "report/report.md", "report/results.json"]


def _expected_tree(run_dir: Path) -> list[str]:
    plots = sorted(f"report/plots/{p.name}" for p in (run_dir / "plots").glob("*.png"))
    return sorted(["README.md", "prefbench-manifest.json", *REPORT, *plots,
                   *(f"{o}/seed{k}/{f}" for o in ("dpo", "jpo") for k in SEEDS for f in ADAPTER_FILES)])


def test_dry_run_writes_the_tree_and_a_manifest_of_it(run_dir, tmp_path, no_hub, capsys):
    out = tmp_path / "preview"
    assert main(["push", str(run_dir), "--repo", REPO, "--dry-run", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: what `prefbench push` would upload to "
                                              f"https://huggingface.co/{REPO} (public)")
    files = _files(out)
    assert sorted(files) == _expected_tree(run_dir)
    assert len([f for f in files if f.startswith("report/plots/")]) >= 3
    # the adapters' weights and the report are the run's, byte for byte
    for o in ("dpo", "jpo"):
        for k in SEEDS:
            assert files[f"{o}/seed{k}/adapter_model.safetensors"] == \
                (run_dir / o / f"seed{k}" / "adapter" / "adapter_model.safetensors").read_bytes()
    for name in REPORT:
        assert files[name] == (run_dir / Path(name).name).read_bytes()
    manifest = json.loads(files["prefbench-manifest.json"])
    assert (manifest["repo"], manifest["private"]) == (REPO, False)
    listed = {f["path"]: f for f in manifest["files"]}
    assert sorted(listed) == sorted(set(files) - {"prefbench-manifest.json"})
    for path, entry in listed.items():
        assert entry["bytes"] == len(files[path]) and entry["sha256"] == hashlib.sha256(files[path]).hexdigest()
    assert manifest["total_bytes"] == sum(len(files[p]) for p in listed)


def test_model_cards_state_objective_paper_settings_data_and_results(run_dir, tmp_path, no_hub):
    out = tmp_path / "preview"
    push.push_run(run_dir, REPO, out)
    results = json.loads((run_dir / "results.json").read_text())

    def pct(iv: dict) -> str:
        return f"{100 * iv['estimate']:.1f}% [{100 * iv['low']:.1f}, {100 * iv['high']:.1f}]"

    front, body = _card(out / "README.md")
    assert front == {"library_name": "peft", "pipeline_tag": "text-generation",
                     "tags": ["prefbench", "lora", "preference-optimization", "dpo", "jpo"]}  # a local base model
    for s in results["systems"]:
        assert f"| {s['name']} | beta=0.1 | 0, 1 | {pct(s['win_rate'])} |" in body
        assert get_objective(s["name"]).paper in body
    (c,) = results["comparisons"]
    sign = "+" if c["diff"]["estimate"] >= 0 else ""
    assert f"| {c['a']} − {c['b']} | {sign}{100 * c['diff']['estimate']:.1f} pp" in body
    assert f'PeftModel.from_pretrained(base, "{REPO}", subfolder="dpo/seed0")' in body

    for s in results["systems"]:
        objective = s["name"]
        for k in SEEDS:
            front, body = _card(out / objective / f"seed{k}" / "README.md")
            assert front["library_name"] == "peft" and front["tags"][-1] == objective and "base_model" not in front
            assert get_objective(objective).paper in body and get_objective(objective).summary in body
            settings = yaml.safe_load((run_dir / objective / f"seed{k}" / "config.yaml").read_text())
            assert f"| beta | {settings['objective_params']['beta']} |" in body
            for name in ("lr", "max_steps", "batch_size", "lora_r", "seed"):
                assert f"| {name} | {settings[name]} |" in body
            assert str(run_dir) not in body   # the trainer's folders stay out of the card
            training = next(t for t in s["training"] if t["seed"] == k)
            kinds = f"{training['conditional']} conditional, {training['joint']} joint"
            assert f"- **pairs**: {training['pairs']} ({kinds})" in body
            assert f"- **data arm**: {results['arm']}" in body and f"- **tokens seen**: {training['tokens_seen']}" in body
            assert f"| win rate vs reference | {pct(s['win_rate'])} |" in body
            assert f"| wins / ties / losses | {s['wins']}/{s['ties']}/{s['losses']} |" in body
            assert f"| gaming rate | {pct(s['gaming_rate'])} |" in body


def test_an_embedded_base_model_is_named_by_its_hub_id(run_dir, tmp_path, no_hub):
    """The card's base_model and each adapter_config.json's base_model_name_or_path name the Hub model, and a
    benchmark reading a Hub dataset lists it; the rest of the adapter's config is unchanged."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**results, "model": "embedded:smollm2-135m-instruct"}))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["benchmark"]["data"]["location"] = "someone/preference-data"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    push.push_run(run, REPO, tmp_path / "preview")
    for card in ("README.md", "dpo/seed1/README.md"):
        front, body = _card(tmp_path / "preview" / card)
        assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert front["datasets"] == ["someone/preference-data"]
        assert 'from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in body
    pushed = json.loads((tmp_path / "preview" / "dpo/seed1/adapter_config.json").read_text())
    original = json.loads((run / "dpo/seed1/adapter/adapter_config.json").read_text())
    assert pushed == {**original, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def test_a_pushed_adapter_loads_from_its_subfolder(run_dir, tiny_model_dir, tmp_path, no_hub):
    """As a user loads it from the Hub: PeftModel.from_pretrained(base, REPO, subfolder=...), here the dry run's
    folder standing in for the repository."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    push.push_run(run_dir, REPO, tmp_path / "preview")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(tmp_path / "preview"), subfolder="jpo/seed1")
    trained = load_file(run_dir / "jpo/seed1/adapter/adapter_model.safetensors")
    loaded = get_peft_model_state_dict(model)
    assert set(loaded) == set(trained)
    assert all(torch.equal(loaded[k], trained[k]) for k in trained)


def test_a_dry_run_replaces_an_earlier_one_and_refuses_any_other_folder(run_dir, tmp_path, no_hub, capsys):
    out = tmp_path / "preview"
    push.push_run(run_dir, REPO, out)
    (out / "stale.txt").write_text("from an earlier dry run")
    push.push_run(run_dir, REPO, out, private=True)
    assert sorted(_files(out)) == _expected_tree(run_dir)
    assert json.loads((out / "prefbench-manifest.json").read_text())["private"] is True
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["push", str(run_dir), "--repo", REPO, "--dry-run", str(mine)]) == 2
    assert "is not an earlier dry run" in capsys.readouterr().err
    assert _files(mine) == {"notes.txt": b"keep me"}


class _Recorder:
    """huggingface_hub.HfApi's two calls that push does, recorded; the uploaded folder's files are read at the
    moment of the call (it is a temporary folder, removed afterwards)."""

    calls: ClassVar[list] = []

    def __init__(self, *args, **kwargs):
        self.calls.append(("HfApi", args, kwargs))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs, _files(Path(kwargs["folder_path"]))))


def test_push_creates_the_repository_and_uploads_the_dry_run_tree(run_dir, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    push.push_run(run_dir, REPO, tmp_path / "preview", private=True)   # what the dry run shows ...
    monkeypatch.setattr(_Recorder, "calls", [])
    monkeypatch.setattr(huggingface_hub, "HfApi", _Recorder)
    assert main(["push", str(run_dir), "--repo", REPO, "--private"]) == 0
    assert capsys.readouterr().out.strip() == f"https://huggingface.co/{REPO}"
    (_, new_args, new_kwargs), (_, repo, create), (_, upload, uploaded) = _Recorder.calls
    assert (new_args, new_kwargs) == ((), {})   # the token is huggingface_hub's own: HF_TOKEN or the login
    assert (repo, create) == (REPO, {"repo_type": "model", "private": True, "exist_ok": True})
    assert (upload["repo_id"], upload["repo_type"]) == (REPO, "model")
    assert upload["commit_message"] == f"prefbench run {run_dir.name}"
    assert uploaded == _files(tmp_path / "preview")   # ... is exactly what is sent
    assert not Path(upload["folder_path"]).exists()


def test_a_failed_upload_is_one_line(run_dir, monkeypatch, capsys):
    import huggingface_hub

    class Unauthorized(_Recorder):
        def upload_folder(self, **kwargs):
            raise OSError("401 Client Error: Unauthorized")

    monkeypatch.setattr(_Recorder, "calls", [])
    monkeypatch.setattr(huggingface_hub, "HfApi", Unauthorized)
    assert main(["push", str(run_dir), "--repo", REPO]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"prefbench: error: pushing {run_dir} to {REPO} failed")
    assert "401 Client Error" in err and "HF_TOKEN" in err


@pytest.mark.parametrize("repo", ["tiny-comparison", "a/b/c", "someone/tiny--comparison", "someone/.hidden",
                                  "someone/name.git", "some one/x"])
def test_a_repository_name_the_hub_refuses_is_refused_first(repo, tmp_path, no_hub, capsys):
    assert main(["push", str(tmp_path / "nosuch"), "--repo", repo, "--dry-run", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"prefbench: error: --repo {repo!r}: not a Hub repository name")
    assert not (tmp_path / "out").exists()
