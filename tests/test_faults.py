"""Fault drills (issue #15 item 8): a run killed in any stage resumes to the uninterrupted run's results; the HTTP
judge rides out time-outs, 429s, 5xx, garbage and truncated replies without losing or re-buying a verdict; a full
disk or an unwritable run directory stops a run with one line and leaves a folder a rerun resumes from.

Every run here is the tiny end-to-end run of ``test_run.py`` (a random 2-layer Llama built in the suite, no
download) judged by :class:`StubJudge`, an OpenAI-compatible server on 127.0.0.1 whose verdicts are a pure
function of the prompt, so two runs get the same verdicts and a kill in the judge stage has a cache to resume from.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from prefbench.cli import main
from prefbench.judges import (
    JudgeDiagnostics,
    JudgeError,
    JudgmentCache,
    OpenAICompatibleJudge,
    judge_many,
)
from prefbench.util import chat_endpoint, files
from prefbench.util.runs import RunInUseError, run_lock

ROOT = Path(__file__).resolve().parents[1]

# test_run.py's tiny spec, checkpointing every step so a kill in training has a checkpoint to resume from
SPEC = {
    "name": "tiny-ifeval", "task": "ifeval-lite", "description": "fault drills",
    "data": {"train_prompts": 6, "samples_per_prompt": 3, "max_new_tokens": 10, "min_gap": 0.0001,
             "temperature": 1.0, "top_p": 1.0, "keep_truncated": True},
    "eval": {"prompts": 3, "max_new_tokens": 8, "variants": ["typo", "distractor"], "kl_samples": 1},
    "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-3, "warmup_steps": 0, "max_length": 512, "save_every": 1},
    "objective_params": {"dpo": {"beta": 0.1}, "jpo": {"beta": 0.1}},
    "presets": {"smoke": {}},
}

# what the last stages leave in a run directory: the state "after stage X" is a finished run without the later
# stages' artifacts
PRODUCES = {"generate": ["generations", "kl"], "judge": ["judge_cache.jsonl", "judgments.jsonl", "results.json"],
            "report": ["leaderboard.csv", "report.md", "report.html", "plots"]}


# ------------------------------------------------------------------------------------------------ stub judge

def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def stub_answer(h: str) -> str:
    """The stub's verdict on the prompt with hash ``h``: A, B, tie or an unparseable sentence, naming ``h`` so a
    cached verdict can be traced back to its request."""
    return f"stub {h}: " + ("[[A]]", "[[B]]", "[[tie]]", "I cannot decide between them.")[int(h, 16) % 4]


class StubJudge:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1:0 (a real HTTP server in a thread).

    Serves the faults in ``faults`` first, one per request, then :func:`stub_answer`. ``poison``: prompt hashes
    that always get a 500. ``stall_after = n``: request n+1 and later are held until ``release`` is set
    (``stalled`` says one is held). ``seen``: the prompt hash of every request, in arrival order.

    Faults: ``timeout`` (the reply comes after the client gave up), ``429``, ``429-retry-after`` (Retry-After: 3),
    ``500``, ``garbage`` (200 with an HTML body), ``truncated`` (200 with JSON cut short), ``cut`` (200 whose
    connection closes before the Content-Length it announced).
    """

    def __init__(self):
        self.seen: list[str] = []
        self.faults: list[str] = []
        self.poison: set[str] = set()
        self.stall_after: int | None = None
        self.stalled, self.release = threading.Event(), threading.Event()
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                h = prompt_hash(body["messages"][0]["content"])
                with stub.lock:
                    stub.seen.append(h)
                    fault = stub.faults.pop(0) if stub.faults else None
                    stall = stub.stall_after is not None and len(stub.seen) > stub.stall_after
                if stall:
                    stub.stalled.set()
                    stub.release.wait(120)
                reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                         "content": stub_answer(h)}}]})
                if h in stub.poison:
                    return self._send(500, "internal error")
                if fault == "timeout":
                    stub.release.wait(2)   # longer than the client's timeout
                    return self._send(200, reply)
                if fault in ("429", "429-retry-after"):
                    return self._send(429, "rate limited", {"Retry-After": "3"} if fault == "429-retry-after" else {})
                if fault == "500":
                    return self._send(500, "internal error")
                if fault == "garbage":
                    return self._send(200, "<html><body>502 Bad Gateway</body></html>", {"Content-Type": "text/html"})
                if fault == "truncated":
                    return self._send(200, reply[:len(reply) // 2])
                if fault == "cut":
                    return self._send(200, reply, length=len(reply) + 100)
                self._send(200, reply)

            def _send(self, status, text, headers=None, length=None):
                data = text.encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(length or len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass   # a held request whose client was killed: its reply has nowhere to go

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def reset(self):
        self.seen, self.faults, self.poison, self.stall_after = [], [], set(), None
        self.stalled.clear()
        self.release.clear()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def stub():
    server = StubJudge()
    yield server
    server.close()


@pytest.fixture
def judge_stub(stub):
    stub.reset()
    yield stub
    stub.release.set()


@pytest.fixture
def sleeps(monkeypatch):
    """Record the judge's back-off waits instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(chat_endpoint.time, "sleep", recorded.append)
    return recorded


# ------------------------------------------------------------------------------------------------ tiny runs

def run_argv(out: Path, spec_file: Path, model_dir: Path, url: str) -> list[str]:
    return ["run", "--benchmark", str(spec_file), "--preset", "smoke", "--objectives", "dpo,jpo", "--model",
            str(model_dir), "--quantization", "none", "--judge", f"openai:stub-judge@{url}", "--output-dir", str(out)]


def comparable(results: dict) -> dict:
    """results.json without what legitimately differs between an interrupted and an uninterrupted run: wall
    times (``timings``, the data stage's ``seconds``) and how many verdicts came from the judgment cache (their
    sum, every verdict the results rest on, is kept)."""
    results = json.loads(json.dumps(results))
    results.pop("timings")
    results["data"].pop("seconds")
    diagnostics = results["judge"]["diagnostics"]
    diagnostics["verdicts"] = diagnostics.pop("calls") + diagnostics.pop("cached")
    return results


def read_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def cached_hashes(out: Path) -> set[str]:
    """The prompts (by hash) whose verdicts the run's judgment cache holds."""
    path = out / "judge_cache.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return {json.loads(line)["raw"].split()[1].rstrip(":") for line in lines if line.endswith("}")}


def assert_lock_free(out: Path) -> None:
    with run_lock(out):   # flock: released with the killed process, so taken at once
        pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every run here (in this process and in the killed subprocesses) on one CPU thread: the machine's cores are
    shared, and a run and its resumption must add in the same order to give the same numbers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def baseline(tiny_model_dir, stub, tmp_path_factory):
    """One uninterrupted run; ``restore(stage)`` puts its directory back as it stood after ``stage``
    (the training folders record the run directory's path, so drills that start mid-run reuse that path)."""
    root = tmp_path_factory.mktemp("faults-baseline")
    spec_file = root / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    out, done = root / "run", root / "run.done"
    argv = run_argv(out, spec_file, tiny_model_dir, stub.url)
    stub.reset()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFBENCH_CACHE", str(root / "cache"))
        assert main(argv) == 0
    shutil.copytree(out, done)
    asked = list(stub.seen)

    def restore(stage: str) -> Path:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(done, out)
        stages = ["train", *PRODUCES]
        for later in stages[stages.index(stage) + 1:]:
            for name in PRODUCES[later]:
                path = out / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        (out / "timings.json").unlink()
        return out

    return {"argv": argv, "out": out, "results": read_results(done), "asked": asked, "cache": root / "cache",
            "restore": restore, "spec_file": spec_file, "model_dir": tiny_model_dir}


def start_killable(argv: list[str], env: dict, hook_stage: str | None, marker: Path) -> subprocess.Popen:
    """``prefbench run`` in a subprocess (its output in ``marker``.log); with ``hook_stage`` it pauses inside that
    stage (see DRIVER) and writes ``marker`` so the test knows where the kill lands."""
    with open(f"{marker}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", DRIVER, *argv], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **env, "FAULT_STAGE": hook_stage or "",
                                     "FAULT_MARKER": str(marker)})


def wait_until(proc: subprocess.Popen, ready, what: str, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def kill(proc: subprocess.Popen, out: Path) -> None:
    with pytest.raises(RunInUseError):   # the lock is held while the run writes...
        assert_lock_free(out)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    assert_lock_free(out)                # ...and a kill does not leave it behind


# Runs ``prefbench run`` (argv) after wrapping one function of the stage named by $FAULT_STAGE so that, at a
# point inside that stage where part of its work is on disk, it writes $FAULT_MARKER and waits to be killed.
# Test code only: production code has no hook. The judge stage needs none: the stub judge holds a request.
DRIVER = r"""
import functools, importlib, os, sys, time
from pathlib import Path

def pause_after(module_name, name, nth):
    module = importlib.import_module(module_name)
    original, calls = getattr(module, name), []

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        value = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == nth:
            Path(os.environ["FAULT_MARKER"]).write_text("paused")
            while True:
                time.sleep(60)
        return value

    setattr(module, name, wrapper)

stage = os.environ["FAULT_STAGE"]
if stage == "data":        # the reference's samples written into the data cache's temporary folder, no pairs yet
    pause_after("prefbench.data.onpolicy", "write_jsonl", 2)
elif stage == "train":     # dpo trained; jpo checkpointed at step 1 of 2
    pause_after("prefbench.engine.trainer", "save_checkpoint", 2)
elif stage == "generate":  # the reference's answers and dpo's KL samples written, dpo's answers not
    pause_after("prefbench.evaluation.generate", "write_jsonl", 2)
elif stage == "report":    # leaderboard.csv written, report.md not
    pause_after("prefbench.reporting.report", "atomic_write_text", 1)

from prefbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def resume_and_compare(out: Path, argv: list[str], baseline: dict, stub: StubJudge) -> None:
    """Resume with the same command; results.json must be the uninterrupted run's, and no verdict the killed run
    had paid for (it is in the judgment cache) is asked for again."""
    paid = cached_hashes(out)
    stub.seen.clear()
    assert main(argv) == 0
    assert not paid & set(stub.seen)
    assert paid | set(stub.seen) == set(baseline["asked"])
    assert comparable(read_results(out)) == comparable(baseline["results"])
    leftovers = [p.name for p in out.rglob(".*") if p.name != ".prefbench.lock"]
    assert leftovers == []   # no temporary file or folder of the killed run is left behind


def test_baseline_run_judges_with_the_stub(baseline):
    """The drills below are only as good as the baseline: it asks the stub for verdicts, of every kind."""
    diagnostics = baseline["results"]["judge"]["diagnostics"]
    assert diagnostics["calls"] == len(baseline["asked"]) == len(set(baseline["asked"])) > 8
    assert diagnostics["unparseable"] > 0 and diagnostics["decisive_verdicts"] > 0


def test_kill_in_the_judge_stage_then_resume(baseline, judge_stub, tmp_path):
    """Fast variant of the kill drill: a run whose data, training and generations are done is killed (SIGKILL) in
    the judge stage, half its verdicts bought; the same command resumes it to the uninterrupted results."""
    out = baseline["restore"]("generate")
    half = len(baseline["asked"]) // 2
    judge_stub.stall_after = half
    proc = start_killable(baseline["argv"], {"PREFBENCH_CACHE": str(baseline["cache"])}, None, tmp_path / "marker")
    wait_until(proc, judge_stub.stalled.is_set, "a judge request", Path(f"{tmp_path / 'marker'}.log"))
    kill(proc, out)
    judge_stub.release.set()
    assert len(cached_hashes(out)) >= half - 4   # the pool's other requests may have been in flight
    judge_stub.stall_after = None
    resume_and_compare(out, baseline["argv"], baseline, judge_stub)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["data", "train", "generate", "judge", "report"])
def test_kill_at_each_stage_then_resume(stage, baseline, judge_stub, tmp_path, monkeypatch):
    """A tiny run from scratch, SIGKILLed while it is in ``stage`` with part of that stage's work on disk, then
    resumed with the same command: the lock does not block it and results.json is the uninterrupted run's."""
    out = tmp_path / "run"
    argv = run_argv(out, baseline["spec_file"], baseline["model_dir"], judge_stub.url)
    monkeypatch.setenv("PREFBENCH_CACHE", str(tmp_path / "cache"))   # a fresh data cache: the data stage samples
    marker = tmp_path / "marker"
    if stage == "judge":
        judge_stub.stall_after = len(baseline["asked"]) // 2
    proc = start_killable(argv, {}, None if stage == "judge" else stage, marker)
    wait_until(proc, judge_stub.stalled.is_set if stage == "judge" else marker.exists, f"a pause in {stage}",
               Path(f"{marker}.log"))
    kill(proc, out)
    judge_stub.release.set()
    judge_stub.stall_after = None
    # the data stage writes the data cache's entry in a temporary folder (left behind by the kill) before the run's
    expected = {"data": any((tmp_path / "cache" / "onpolicy").glob(".*")) and not (out / "data/summary.json").exists(),
                "train": (out / "dpo/seed0/adapter").is_dir() and (out / "jpo/seed0/checkpoint").is_dir()
                and not (out / "jpo/seed0/adapter").exists(),
                "generate": (out / "generations/reference.jsonl").exists() and (out / "kl/dpo/seed0.jsonl").exists()
                and not (out / "generations/dpo/seed0.jsonl").exists(),
                "judge": (out / "judge_cache.jsonl").exists() and not (out / "judgments.jsonl").exists(),
                "report": (out / "leaderboard.csv").exists() and not (out / "report.md").exists()}
    assert expected[stage], f"the kill did not land inside {stage}"
    resume_and_compare(out, argv, baseline, judge_stub)


# ------------------------------------------------------------------------------------------ judge endpoint

def http_judge(stub: StubJudge, **kwargs) -> OpenAICompatibleJudge:
    return OpenAICompatibleJudge(stub.url, "stub-judge", api_key_env="PREFBENCH_TEST_NO_SUCH_KEY", backoff=0.01,
                                 **kwargs)


def test_http_judge_rides_out_every_transient_fault(judge_stub, sleeps):
    """Each fault once, then an answer: retried with the back-off (Retry-After when given), one verdict."""
    judge_stub.faults = ["timeout", "429", "429-retry-after", "500", "garbage", "truncated", "cut"]
    verdict = http_judge(judge_stub, max_retries=7, timeout=0.5).judge("q", "a", "b")
    assert len(judge_stub.seen) == 8 and len(set(judge_stub.seen)) == 1
    assert verdict.raw == stub_answer(judge_stub.seen[0])
    assert sleeps == [0.01, 0.02, 3.0, 0.08, 0.16, 0.32, 0.64]   # backoff * 2**k, or Retry-After


@pytest.mark.parametrize("fault, error", [("garbage", "reply is not JSON: '<html>"),
                                          ("truncated", r"reply is not JSON: '\{\"choices\""),
                                          ("cut", "ChunkedEncodingError"), ("429", "HTTP 429")])
def test_http_judge_gives_up_on_a_fault_that_persists(judge_stub, sleeps, fault, error):
    judge_stub.faults = [fault] * 3
    with pytest.raises(JudgeError, match=f"gave up after 3 attempts; last error: {error}"):
        http_judge(judge_stub, max_retries=2).judge("q", "a", "b")
    assert len(judge_stub.seen) == 3 and sleeps == [0.01, 0.02]


def test_judge_faults_lose_no_verdict_and_buy_none_twice(judge_stub, sleeps, tmp_path):
    """Pairs judged in a thread pool through transient faults, one prompt failing for good: the stage stops with the
    judge's error, every verdict bought is in the cache (an unparseable one too: it is an answer, counted as such),
    the failure is not; a rerun asks only for what the cache lacks and the counts add up."""
    from prefbench.judges.verdicts import DEFAULT_TEMPLATE, render_prompt

    items = [(f"instruction {i}", f"answer {i}", "the reference's answer") for i in range(12)] + [("q", "x", "x")]
    needed = {prompt_hash(render_prompt(DEFAULT_TEMPLATE, q, *pair)) for q, a, b in items[:12]
              for pair in ((a, b), (b, a))}
    poisoned = prompt_hash(render_prompt(DEFAULT_TEMPLATE, *items[7]))
    judge_stub.poison = {poisoned}
    judge_stub.faults = ["429", "500", "garbage", "truncated", "cut", "429-retry-after"]
    path = tmp_path / "judge_cache.jsonl"
    # six retries: however the threads interleave, only the poisoned prompt can run out of them (the six scripted
    # faults could otherwise all land on one prompt's attempts and make it give up first)
    with pytest.raises(JudgeError, match="gave up after 7 attempts; last error: HTTP 500"):
        judge_many(http_judge(judge_stub, max_retries=6), items, JudgmentCache(path))
    paid = {json.loads(line)["raw"].split()[1].rstrip(":") for line in path.read_text().splitlines()}
    assert paid == set(judge_stub.seen) - {poisoned}   # every answer received is kept, the failure is not
    assert 3.0 in sleeps and all(s == 3.0 or s / 0.01 in (1, 2, 4, 8, 16, 32) for s in sleeps)

    judge_stub.reset()
    results = judge_many(http_judge(judge_stub, max_retries=2), items, JudgmentCache(path))
    asked = judge_stub.seen
    assert not paid & set(asked) and len(asked) == len(set(asked)) and paid | set(asked) == needed
    d = JudgeDiagnostics.from_judgments(results)
    assert (d.judged, d.identical, d.calls, d.cached) == (13, 1, len(asked), len(paid))
    answers = [stub_answer(h)[-5:] for h in needed]
    assert (d.unparseable, d.tie_verdicts, d.decisive_verdicts) == \
        (sum(not a.endswith("]]") for a in answers), answers.count("tie]]"), answers.count("[[A]]") +
         answers.count("[[B]]"))

    judge_stub.reset()
    again = judge_many(http_judge(judge_stub), items, JudgmentCache(path))
    assert judge_stub.seen == [] and [r.score for r in again] == [r.score for r in results]


# --------------------------------------------------------------------------------------------- full disk

class FullDisk:
    """Stands in for ``os`` in :mod:`prefbench.util.files`: while ``full``, a file it opens takes half of what is
    written to it and then fails with ENOSPC, as a write does when the disk fills."""

    def __init__(self):
        self.full = False

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, fd, *args, **kwargs):
        handle = os.fdopen(fd, *args, **kwargs)
        return Filling(handle) if self.full else handle


class Filling:
    def __init__(self, handle):
        self.handle = handle

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

    def write(self, data):
        self.handle.write(data[:len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_enospc_in_an_atomic_write_leaves_no_half_written_file(tmp_path, monkeypatch):
    disk = FullDisk()
    monkeypatch.setattr(files, "os", disk)
    target = tmp_path / "results.json"
    files.write_jsonl(target, [{"a": 1}])
    folder = tmp_path / "adapter"
    with files.atomic_dir(folder) as tmp:
        files.atomic_write_text(tmp / "weights", "old")
    disk.full = True
    with pytest.raises(OSError) as failed:
        files.write_jsonl(target, [{"a": 2}] * 100)
    assert failed.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write_text(tmp_path / "new.json", "{}" * 100)
    with pytest.raises(OSError, match="No space left"), files.atomic_dir(folder) as tmp:
        files.atomic_write_text(tmp / "weights", "new")
    # the old file and folder as they were; no new file, no temporary sibling
    assert files.read_jsonl(target) == [{"a": 1}] and (folder / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "results.json"]
    assert [p.name for p in folder.iterdir()] == ["weights"]


def test_a_cache_line_cut_by_a_full_disk_spoils_no_other(tmp_path, monkeypatch):
    """The judgment cache appends rather than replaces: a line the disk cut short must not glue itself to the next
    one, which would make the whole cache unreadable."""
    import pathlib

    from prefbench.judges import Verdict

    path = tmp_path / "judge_cache.jsonl"
    cache = JudgmentCache(path)
    cache.put("k1", "j", Verdict("A", "[[A]]"))
    open_ = pathlib.Path.open
    monkeypatch.setattr(pathlib.Path, "open",
                        lambda self, *a, **k: Filling(open_(self, *a, **k)) if self == path else open_(self, *a, **k))
    with pytest.raises(OSError, match="No space left"):
        cache.put("k2", "j", Verdict("B", "[[B]]"))
    monkeypatch.undo()                                   # space again
    cache.put("k3", "j", Verdict(None, "no idea"))
    reloaded = JudgmentCache(path)
    assert (reloaded.get("k1"), reloaded.get("k2"), reloaded.get("k3")) == \
        (Verdict("A", "[[A]]"), None, Verdict(None, "no idea"))
    assert len(path.read_text().splitlines()) == 2


def read_only_holds(tmp_path: Path) -> bool:
    """Whether chmod 0o500 stops this process writing (not for root, nor for anyone holding CAP_DAC_OVERRIDE)."""
    folder = tmp_path / "probe"
    folder.mkdir(mode=0o500)
    try:
        (folder / "f").touch()
    except PermissionError:
        return True
    finally:
        folder.chmod(0o700)
    return False


@pytest.mark.parametrize("fault", ["full-disk", "read-only"])
def test_a_full_disk_or_read_only_run_directory_mid_run(fault, baseline, judge_stub, monkeypatch, capsys, tmp_path):
    """The disk fills (or the run directory turns read-only) when a run whose data and training are done starts
    generating: one line on stderr, status 2, no half-written file; once there is room, the same command resumes
    without redoing data or training and gives the uninterrupted run's results."""
    if fault == "read-only" and not read_only_holds(tmp_path):
        pytest.skip("this user writes into a chmod 0o500 folder (root); the full-disk case covers the failure")
    import prefbench.engine.trainer as train_mod
    import prefbench.pipeline.run as run_mod

    out = baseline["restore"]("train")
    disk, generate = FullDisk(), run_mod.generate_systems

    def filling_up(*args, **kwargs):
        if fault == "full-disk":
            disk.full = True
        else:
            out.chmod(0o500)
        return generate(*args, **kwargs)

    try:
        with monkeypatch.context() as mp:
            mp.setattr(files, "os", disk)
            mp.setattr(run_mod, "generate_systems", filling_up)
            capsys.readouterr()
            assert main(baseline["argv"]) == 2
    finally:
        out.chmod(0o700)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert errors == [err.rstrip().splitlines()[-1]] and "Traceback" not in err
    assert errors[0].startswith("prefbench: error: ")
    assert ("No space left on device" if fault == "full-disk" else "Permission denied") in errors[0]
    assert str(out) in errors[0]                      # the message names where: the run folder, not the cache
    assert not (out / "generations").exists() or list((out / "generations").rglob("*")) == []
    assert (out / "dpo/seed0/adapter").is_dir() and not (out / "results.json").exists()

    def forbidden(*a, **k):
        raise AssertionError("a completed stage was redone")

    monkeypatch.setattr(train_mod, "load_base_model", forbidden)
    monkeypatch.setattr("prefbench.data.onpolicy.generate", forbidden)
    judge_stub.seen.clear()
    assert main(baseline["argv"]) == 0
    assert sorted(judge_stub.seen) == sorted(baseline["asked"])
    assert comparable(read_results(out)) == comparable(baseline["results"])
