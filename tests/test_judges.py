"""Judges: verdict parsing, both-order scoring, the cache, the HTTP judge against a real loopback
server, and the local model judges on tiny random models built in the test (no download)."""

from __future__ import annotations

import json
import re
import socket

import pytest
import torch

from prefbench.formats.records import DataError
from prefbench.judges import (
    DEFAULT_TEMPLATE,
    GoldJudge,
    JudgeDiagnostics,
    JudgeError,
    JudgmentCache,
    LocalLMJudge,
    OpenAICompatibleJudge,
    RewardModelJudge,
    Verdict,
    judge_many,
    judge_pair,
    judgment_key,
    make_judge,
    parse_verdict,
    score_outcome,
)
from prefbench.tasks.base import TaskPrompt
from tests.chat_stub import ChatStub

KEY_ENV = "PREFBENCH_TEST_JUDGE_KEY"
KEY = "sk-test-do-not-leak-1234"

# (instruction, response_1, response_2) with a hand-derived outcome for a judge preferring the longer text
LONGER_WINS = ("q1", "a long answer", "short")        # score 1
SHORTER_LOSES = ("q2", "tiny", "a much longer answer")  # score 0
SAME_TEXT = ("q3", "same", "same")                      # identical: tie, no call
SAME_LENGTH = ("q4", "abc", "xyz")                      # judge says tie in both orders: 0.5, consistent
ITEMS = [LONGER_WINS, SHORTER_LOSES, SAME_TEXT, SAME_LENGTH]


class FakeJudge:
    """An in-process pairwise judge: 'longer' prefers the longer text (position-free), 'first'
    always picks slot A, 'garbage' answers something unparseable."""

    template = DEFAULT_TEMPLATE

    def __init__(self, mode: str, concurrent: bool = False):
        self.mode, self.concurrent, self.name = mode, concurrent, f"fake:{mode}"
        self.calls: list[tuple[str, str, str]] = []

    def identity(self):
        return {"kind": "fake", "mode": self.mode}

    def judge(self, instruction, response_a, response_b):
        self.calls.append((instruction, response_a, response_b))
        if self.mode == "longer":
            gap = len(response_a) - len(response_b)
            text = "[[A]]" if gap > 0 else "[[B]]" if gap < 0 else "[[tie]]"
        else:
            text = "Response A is better." if self.mode == "first" else "I cannot decide."
        return Verdict(winner=parse_verdict(text), raw=text)


# ---------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text, expected", [
    ("[[A]]", "A"), ("[[B]]", "B"), ("[[tie]]", "tie"), ("[[C]]", "tie"),
    ("Response B covers both points. Final verdict: [[b]]", "B"),
    ("A", "A"), ("b.", "B"), ("**A**", "A"), ("Tie", "tie"),
    ("Answer: B", "B"), ("Verdict: **A**", "A"), ("The answer is A", "A"), ("Final verdict - Response B", "B"),
    ("Response A is better", "A"), ("Assistant B is clearly better than assistant A.", "B"),
    ("I prefer Response B.", "B"), ("It's a tie.", "tie"), ("Both are equally good.", "tie"),
    ("Not a tie: [[A]]", "A"),              # the bracketed form outranks prose
    ("", None), ("I cannot decide.", None), ("C", None),
    ("[[A]] or maybe [[B]]", None),         # two different bracketed verdicts: ambiguous
    ("Response A is better. Answer: B", None),
    ("a better answer would cite sources", None),  # the article "a" is not slot A
    ("Answer: Apple", None),
])
def test_parse_verdict_table(text, expected):
    assert parse_verdict(text) == expected


def test_template_must_have_the_three_fields():
    with pytest.raises(JudgeError, match=r"missing \['response_b'\]"):
        OpenAICompatibleJudge("http://localhost:1/v1", "m", template="{instruction} {response_a}")
    with pytest.raises(JudgeError, match=r"unknown \['extra'\]"):
        OpenAICompatibleJudge("http://localhost:1/v1", "m", template="{instruction}{response_a}{response_b}{extra}")


# ---------------------------------------------------------------------------------------- both orders

def test_identical_responses_tie_without_a_call():
    judge = FakeJudge("longer")
    result = judge_pair(judge, *SAME_TEXT)
    assert (result.score, result.identical, result.calls) == (0.5, True, 0)
    assert judge.calls == []


def test_consistent_judge_scores_one_and_zero():
    judge = FakeJudge("longer")
    results = [judge_pair(judge, *item) for item in ITEMS]
    assert [r.score for r in results] == [1.0, 0.0, 0.5, 0.5]
    assert [r.slots for r in results] == [("A", "B"), ("B", "A"), ("tie", "tie"), ("tie", "tie")]
    assert [r.preferred for r in results[:2]] == [(1, 1), (2, 2)]
    # each non-identical pair asked once per order, response_1 first, then swapped
    assert judge.calls == [("q1", "a long answer", "short"), ("q1", "short", "a long answer"),
                           ("q2", "tiny", "a much longer answer"), ("q2", "a much longer answer", "tiny"),
                           ("q4", "abc", "xyz"), ("q4", "xyz", "abc")]
    d = JudgeDiagnostics.from_judgments(results)
    # 3 asked pairs all consistent; decisive verdicts A,B,B,A -> half won by the first slot
    assert d.to_json() == {"judged": 4, "identical": 1, "position_consistency": 1.0, "first_slot_win_rate": 0.5,
                           "decisive_verdicts": 4, "tie_verdicts": 2, "unparseable": 0, "calls": 6, "cached": 0}


def test_first_slot_judge_gives_only_ties():
    results = [judge_pair(FakeJudge("first"), *item) for item in ITEMS]
    assert [r.score for r in results] == [0.5] * 4
    assert [r.preferred for r in results[:2]] == [(1, 2), (1, 2)]
    d = JudgeDiagnostics.from_judgments(results)
    assert (d.position_consistency, d.first_slot_win_rate, d.decisive_verdicts) == (0.0, 1.0, 6)


def test_unparseable_verdicts_are_ties_and_counted():
    results = [judge_pair(FakeJudge("garbage"), *item) for item in ITEMS]
    assert [r.score for r in results] == [0.5] * 4
    d = JudgeDiagnostics.from_judgments(results)
    assert (d.unparseable, d.position_consistency, d.first_slot_win_rate) == (6, 0.0, None)


def test_judge_many_keeps_input_order_in_a_thread_pool():
    items = [(f"q{i}", "x" * (i % 3 + 1), "x" * (2 - i % 3 + 1)) for i in range(12)]
    expected = [score_outcome(len(a), len(b)) for _, a, b in items]
    judge = FakeJudge("longer", concurrent=True)
    assert [r.score for r in judge_many(judge, items, workers=3)] == expected
    assert len(judge.calls) == 2 * sum(a != b for _, a, b in items)


# ---------------------------------------------------------------------------------------------- cache

def test_cache_second_run_makes_no_calls(tmp_path):
    path = tmp_path / "judgments.jsonl"
    first = FakeJudge("longer")
    before = judge_many(first, ITEMS, JudgmentCache(path))
    again = FakeJudge("longer")
    after = judge_many(again, ITEMS, JudgmentCache(path))
    assert again.calls == []
    assert [r.score for r in after] == [r.score for r in before]
    d = JudgeDiagnostics.from_judgments(after)
    assert (d.calls, d.cached) == (0, 6)
    assert len(path.read_text().splitlines()) == 6


def test_cache_key_covers_judge_template_and_order():
    base = judgment_key({"model": "m"}, "T {instruction}", "i", "a", "b")
    assert base == judgment_key({"model": "m"}, "T {instruction}", "i", "a", "b")
    assert len({base, judgment_key({"model": "n"}, "T {instruction}", "i", "a", "b"),
                judgment_key({"model": "m"}, "U {instruction}", "i", "a", "b"),
                judgment_key({"model": "m"}, "T {instruction}", "i", "b", "a")}) == 4


def test_cache_drops_a_half_written_last_line(tmp_path):
    path = tmp_path / "judgments.jsonl"
    judge_many(FakeJudge("longer"), ITEMS, JudgmentCache(path))
    with path.open("a") as f:
        f.write('{"key": "abc", "judge": "fak')   # killed mid-append
    cache = JudgmentCache(path)
    assert len(cache) == 6
    cache.put("k7", "fake", Verdict("A", "[[A]]"))
    lines = path.read_text().splitlines()
    assert len(lines) == 7 and all(json.loads(line) for line in lines)
    assert JudgmentCache(path).get("k7") == Verdict("A", "[[A]]")


def test_cache_keeps_a_whole_last_line_without_newline(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text(json.dumps({"key": "k1", "judge": "j", "winner": "B", "raw": "[[B]]"}))
    cache = JudgmentCache(path)
    cache.put("k2", "j", Verdict(None, "?"))
    reloaded = JudgmentCache(path)
    assert (reloaded.get("k1"), reloaded.get("k2")) == (Verdict("B", "[[B]]"), Verdict(None, "?"))


def test_cache_names_a_corrupt_line(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text('{"key": "k1", "judge": "j", "winner": "A", "raw": "A"}\nnot json\n')
    with pytest.raises(DataError, match=r"judgments.jsonl: row 2: not a judgment cache line"):
        JudgmentCache(path)


# ---------------------------------------------------------------------------------- HTTP judge (loopback)

class LoopbackServer(ChatStub):
    """Rejects requests without the right Bearer key (401), then answers ``answer`` to everything (after the
    ``script`` replies)."""

    def __init__(self):
        self.answer = "After careful thought: [[A]]"
        super().__init__(self._reply)

    def _reply(self, request: dict):
        if request["auth"] != f"Bearer {KEY}":
            return 401, {}, '{"error": {"message": "invalid api key"}}'
        return 200, {}, json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                          "content": self.answer}}]})


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    srv = LoopbackServer()
    yield srv
    srv.close()


def http_judge(server, **kwargs) -> OpenAICompatibleJudge:
    return OpenAICompatibleJudge(server.url, "judge-model", api_key_env=KEY_ENV, backoff=0.01, **kwargs)


def test_http_judge_sends_the_key_and_both_orders(server):
    result = judge_pair(http_judge(server), *LONGER_WINS)
    assert [r["auth"] for r in server.requests] == [f"Bearer {KEY}"] * 2
    assert [r["path"] for r in server.requests] == ["/v1/chat/completions"] * 2
    body = server.requests[0]["body"]
    assert (body["model"], body["temperature"]) == ("judge-model", 0.0)
    shown = [r["body"]["messages"][0]["content"] for r in server.requests]
    assert shown == [DEFAULT_TEMPLATE.format(instruction="q1", response_a="a long answer", response_b="short"),
                     DEFAULT_TEMPLATE.format(instruction="q1", response_a="short", response_b="a long answer")]
    assert result.raw == ("After careful thought: [[A]]",) * 2 and result.slots == ("A", "A")


def test_position_biased_http_judge_gives_ties(server, tmp_path):
    cache_path = tmp_path / "judgments.jsonl"
    judge = http_judge(server)
    results = judge_many(judge, ITEMS, JudgmentCache(cache_path), workers=3)
    assert [r.score for r in results] == [0.5] * 4
    d = JudgeDiagnostics.from_judgments(results)
    assert (d.position_consistency, d.first_slot_win_rate, d.calls, d.cached) == (0.0, 1.0, 6, 0)
    assert len(server.requests) == 6

    rerun = judge_many(http_judge(server), ITEMS, JudgmentCache(cache_path), workers=3)
    assert len(server.requests) == 6   # every verdict came from the cache
    assert JudgeDiagnostics.from_judgments(rerun).cached == 6

    stored = cache_path.read_text()
    assert KEY not in stored and KEY not in repr(judge) and KEY not in json.dumps(judge.identity())
    assert {json.loads(line)["judge"] for line in stored.splitlines()} == {f"openai:judge-model@{server.url}"}


def test_http_judge_retries_503_then_succeeds(server, sleeps):
    server.script = [(503, {}, "overloaded"), (503, {}, "overloaded")]
    verdict = http_judge(server).judge("q", "a", "b")
    assert verdict.winner == "A" and len(server.requests) == 3
    assert sleeps == [0.01, 0.02]   # backoff * 2**k


def test_http_judge_honours_retry_after(server, sleeps):
    server.script = [(429, {"Retry-After": "7"}, "slow down"), (502, {}, "bad gateway")]
    assert http_judge(server).judge("q", "a", "b").winner == "A"
    assert sleeps == [7.0, 0.02]


def test_http_judge_reads_retry_after_dates_and_ignores_junk(server, sleeps):
    server.script = [(503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, ""), (503, {"Retry-After": "soon"}, "")]
    assert http_judge(server).judge("q", "a", "b").winner == "A"
    assert sleeps == [0.0, 0.02]   # a date in the past: no wait; unreadable: the back-off


def test_http_judge_rejects_a_reply_without_content(server):
    server.script = [(200, {}, '{"oops": 1}')]
    with pytest.raises(JudgeError, match=r"no choices\[0\].message.content in the reply: \{'oops': 1\}"):
        http_judge(server).judge("q", "a", "b")


def test_http_judge_gives_up_after_max_retries(server, sleeps):
    server.script = [(500, {}, "boom")] * 3
    with pytest.raises(JudgeError, match=r"gave up after 3 attempts.*HTTP 500"):
        http_judge(server, max_retries=2).judge("q", "a", "b")
    assert sleeps == [0.01, 0.02]


def test_http_judge_fails_at_once_on_400(server, sleeps):
    server.script = [(400, {}, '{"error": "model judge-model does not exist"}')]
    with pytest.raises(JudgeError, match=r"HTTP 400 .*model judge-model does not exist"):
        http_judge(server).judge("q", "a", "b")
    assert len(server.requests) == 1 and sleeps == []


def test_http_judge_without_key_names_the_variable(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeError, match=rf"HTTP 401.*\${KEY_ENV}"):
        http_judge(server).judge("q", "a", "b")
    assert server.requests[0]["auth"] is None


def test_http_judge_retries_connection_errors(sleeps):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAICompatibleJudge(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff=0.5, timeout=5)
    with pytest.raises(JudgeError, match="gave up after 3 attempts; last error: ConnectionError"):
        judge.judge("q", "a", "b")
    assert sleeps == [0.5, 1.0]


# --------------------------------------------------------------------------------------- local models

INSTRUCTION = "List two fruits as bullet points."
ANSWER_1, ANSWER_2 = "- apple\n- banana", "Paris is the capital."


def test_local_lm_judge_reads_letter_log_probs(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    judge = LocalLMJudge(str(tiny_model_dir))
    assert str(tiny_model_dir) in judge.name
    forward = judge.judge(INSTRUCTION, ANSWER_1, ANSWER_2)
    assert forward.winner in ("A", "B")
    assert LocalLMJudge(str(tiny_model_dir)).judge(INSTRUCTION, ANSWER_1, ANSWER_2) == forward  # deterministic

    # independent reference: one forward pass over the chat-formatted prompt and "[["
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64).eval()
    prompt = DEFAULT_TEMPLATE.format(instruction=INSTRUCTION, response_a=ANSWER_1, response_b=ANSWER_2)
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True) + "[["
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logps = torch.log_softmax(model(ids).logits[0, -1], dim=-1)
    expected = {x: logps[tok.convert_tokens_to_ids(x)].item() for x in ("A", "B")}
    got = dict(re.findall(r"logp\((\w)\)=(-?[\d.]+)", forward.raw))
    assert float(got["A"]) == pytest.approx(expected["A"], abs=1e-5)
    assert float(got["B"]) == pytest.approx(expected["B"], abs=1e-5)
    assert forward.winner == max(expected, key=expected.get)

    # the swapped order is a different prompt, and the pair's score follows the both-orders rule
    swapped = judge.judge(INSTRUCTION, ANSWER_2, ANSWER_1)
    assert swapped.raw != forward.raw
    pair = judge_pair(judge, INSTRUCTION, ANSWER_1, ANSWER_2)
    assert pair.raw == (forward.raw, swapped.raw)
    prefers_1 = (forward.winner == "A", swapped.winner == "B")
    assert pair.score == (1.0 if all(prefers_1) else 0.0 if not any(prefers_1) else 0.5)


@pytest.fixture(scope="module", params=["chat-template", "plain"])
def reward_model_dir(request, tiny_model_dir, tmp_path_factory):
    """A tiny random Llama reward model (one output) with the suite's offline tokenizer, with and
    without a chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    folder = tmp_path_factory.mktemp(f"tiny-rm-{request.param}")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if request.param == "plain":
        tok.chat_template = None
    tok.save_pretrained(folder)
    torch.manual_seed(1)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, num_labels=1,
                         pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder, request.param


def test_reward_model_judge_batches_like_single_calls(reward_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder, kind = reward_model_dir
    prompts = [TaskPrompt(id=f"p{i}", text=t) for i, t in enumerate(["Name a fruit.", "What is the capital of France?"])]
    items = [(prompts[0], "apple"), (prompts[1], "Paris is the capital."), (prompts[0], "- apple\n- banana\n- red"),
             (prompts[1], "blue"), (prompts[0], "")]
    batched = RewardModelJudge(str(folder), batch_size=2).score_many(items)
    single = RewardModelJudge(str(folder), batch_size=1).score_many(items)
    assert batched == pytest.approx(single, abs=1e-5)

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    reference = []
    for prompt, response in items:
        if kind == "chat-template":
            text = tok.apply_chat_template([{"role": "user", "content": prompt.text},
                                            {"role": "assistant", "content": response}], tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(f"{prompt.text}\n\n{response}")["input_ids"]
        with torch.no_grad():
            reference.append(model(torch.tensor([ids])).logits[0, 0].item())
    assert batched == pytest.approx(reference, abs=1e-5)
    assert all(isinstance(x, float) for x in batched) and len(set(batched)) == len(batched)


# ------------------------------------------------------------------------------------ gold and factory

class ToyTask:
    name = "toy"

    def score(self, prompt, response):
        return min(1.0, len(response) / 10)


def test_gold_judge_and_score_outcome():
    judge = make_judge("gold", task=ToyTask())
    assert isinstance(judge, GoldJudge) and judge.name == "gold:toy"
    prompt = TaskPrompt(id="p0", text="say something")
    assert judge.score_many([(prompt, "abcde"), (prompt, "x" * 30)]) == [0.5, 1.0]
    assert [score_outcome(0.7, 0.2), score_outcome(0.2, 0.7), score_outcome(0.4, 0.4)] == [1.0, 0.0, 0.5]


def test_make_judge_specs(tiny_model_dir):
    judge = make_judge("openai:claude-3@20240229@https://example.invalid/v1/")
    assert (judge.model, judge.base_url) == ("claude-3@20240229", "https://example.invalid/v1")
    assert make_judge(f"local:{tiny_model_dir}").name == f"local:{tiny_model_dir}"
    with pytest.raises(JudgeError, match="did you mean 'reward-model'"):
        make_judge("reward_model:foo")
    with pytest.raises(JudgeError, match="expected openai:MODEL@BASE_URL"):
        make_judge("openai:gpt-4o-mini")
    with pytest.raises(JudgeError, match="pass the task"):
        make_judge("gold")
    with pytest.raises(JudgeError, match="missing its argument"):
        make_judge("local:")
