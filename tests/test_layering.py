"""The package's layers depend one way: a module may import its own layer and the layers below it,
never one above. Checked from the import graph of every source file (imports inside functions too)."""

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]

# Lowest first. ``objectives`` are the built-in objective files (installed as prefbench.objectives).
LAYERS = ("util", "stats", "registry", "objectives", "conformance", "formats", "engine", "tasks", "judges", "benchmark",
          "data", "evaluation", "reporting", "pipeline", "cli")
# Statistics, data formats and reporting are plain Python and numpy: no model library at all.
MODEL_LIBRARIES = {"torch", "transformers", "peft", "bitsandbytes", "accelerate"}
NO_MODELS = {"util", "stats", "formats", "reporting"}
# Reporting reads results.json; it never trains, samples or judges.
NOT_FOR_REPORTING = {"registry", "objectives", "conformance", "engine", "tasks", "judges", "benchmark", "data",
                     "pipeline"}


def layer_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root)
    if rel.parts[0] == "objectives":
        return "objectives"
    inner = rel.parts[1:]                                # below prefbench/
    return "prefbench" if inner == ("__init__.py",) else Path(inner[0]).stem


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, the names of ``from prefbench import x`` as modules."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "prefbench":
                out += [(node.lineno, f"prefbench.{alias.name}") for alias in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def target_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "prefbench":
        return None
    return parts[1] if len(parts) > 1 else "prefbench"


def violations(root: Path) -> list[str]:
    found = []
    files = sorted((root / "prefbench").rglob("*.py")) + sorted((root / "objectives").glob("*.py"))
    for path in files:
        layer = layer_of(path, root)
        if layer == "prefbench":       # the package's own __init__: the public API, above every layer
            continue
        where = path.relative_to(root)
        for line, module in imported_modules(path):
            target = target_layer(module)
            if module.split(".")[0] in MODEL_LIBRARIES and layer in NO_MODELS:
                found.append(f"{where}:{line}: {layer} imports {module}")
            if target is None or target == layer:
                continue
            if layer not in LAYERS or target not in LAYERS or LAYERS.index(target) > LAYERS.index(layer):
                found.append(f"{where}:{line}: {layer} imports {module} (a higher layer)")
            elif layer == "reporting" and target in NOT_FOR_REPORTING:
                found.append(f"{where}:{line}: reporting imports {module}")
    return found


def test_the_package_depends_one_way():
    assert violations(ROOT) == []


def test_every_subpackage_has_a_layer():
    present = {layer_of(p, ROOT) for p in (ROOT / "prefbench").rglob("*.py")} - {"prefbench"}
    assert present <= set(LAYERS), present - set(LAYERS)


def test_the_check_catches_an_upward_import(tmp_path):
    def write(rel: str, text: str) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)

    write("prefbench/engine/loop.py", "def f():\n    from prefbench.pipeline.run import run\n")
    write("prefbench/stats/ci.py", "import numpy\nimport torch\n")
    write("prefbench/reporting/table.py", "from prefbench.engine import models\n")
    write("prefbench/tasks/fine.py", "from prefbench.formats.records import DataError\nfrom prefbench import util\n")
    write("objectives/bad.py", "from prefbench.engine.logprobs import token_logprobs\n")
    write("prefbench/__init__.py", "from prefbench.pipeline import run\n")   # the public API may import anything
    assert violations(tmp_path) == [
        "prefbench/engine/loop.py:2: engine imports prefbench.pipeline.run (a higher layer)",
        "prefbench/reporting/table.py:1: reporting imports prefbench.engine",
        "prefbench/stats/ci.py:2: stats imports torch",
        "objectives/bad.py:1: objectives imports prefbench.engine.logprobs (a higher layer)",
    ]
