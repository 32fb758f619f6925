"""Generation through an OpenAI-compatible server: ``prefbench run --generator openai:MODEL@BASE_URL``.

For users who already serve their models (vLLM, llama.cpp's server, a hosted API), the generate stage asks
the server for every system's answers instead of decoding them locally: the reference system as MODEL (the
run's starting model, served under that name), each trained system as the LoRA adapter the server serves
under its name (vLLM: ``--lora-modules NAME=PATH``), ``<objective>-seed<k>`` unless a mapping names it
otherwise (``--generator-adapters dpo-seed0=my-lora,...``).

A request is the local path's generation (:mod:`prefbench.engine.generation`) in the chat completions API:
the prompt as the chat messages the template is applied to (the server applies it; a run in the plain format
sends that template as ``chat_template``, a vLLM extension), ``max_new_tokens`` as ``max_tokens``, greedy as
``temperature`` 0, sampling at the settings' temperature and top-p with a ``seed`` per sample. No stop
strings: the server ends an answer at the model's end-of-turn token, as the local path does. A
``finish_reason`` of ``length`` is an answer cut at the limit (``finished: false``); any other ended.

Replies are cached in the run directory (``generation_cache.jsonl``) by the judges' rules
(:class:`prefbench.judges.cache.KeyedCache`): keyed by the sha256 of the endpoint and the whole request (never
an API key), appended as they arrive, so a resumed run asks only for what it lacks. Requests overlap in a
thread pool and failures are retried as a judge's are (:class:`prefbench.util.chat_endpoint.ChatEndpoint`).
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from prefbench.engine.generation import GenerationSettings
from prefbench.evaluation.systems import System
from prefbench.judges.cache import KeyedCache
from prefbench.util.chat_endpoint import BODY_EXCERPT, ChatEndpoint
from prefbench.util.errors import ConfigError, UserError
from prefbench.util.names import suggest

GENERATOR_SPEC = "openai:MODEL@BASE_URL"
CACHE_FILE = "generation_cache.jsonl"
# requests in flight at once: a vLLM server batches concurrent requests, so throughput grows with them
CONCURRENT_REQUESTS = 16


class GenerationError(UserError, RuntimeError):
    """The served generator could not answer (the server refused the request, or does not speak the API)."""


@dataclass(frozen=True)
class ServedAnswer:
    content: str                # the text as the server sent it (the KL tokenizes it where it sits)
    finish_reason: str | None
    tokens: int | None          # completion tokens, as the server counts them (None: it reports no usage)

    @property
    def text(self) -> str:
        """The answer as the local path records it (stripped)."""
        return self.content.strip()

    @property
    def finished(self) -> bool:
        return self.finish_reason != "length"


def adapter_name(system: System) -> str:
    """The name a trained system is served under by default."""
    return f"{system.objective}-seed{system.seed}"


def parse_adapter_names(text: str) -> dict[str, str]:
    """``dpo-seed0=my-lora,jpo-seed0=other`` -> {"dpo-seed0": "my-lora", "jpo-seed0": "other"}."""
    names = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        system, eq, served = (s.strip() for s in item.partition("="))
        if not eq or not system or not served:
            raise ConfigError(f"--generator-adapters {text}: expected NAME=SERVED_NAME pairs separated by commas, "
                              "e.g. dpo-seed0=my-dpo-lora")
        names[system] = served
    return names


def _answer(entry: dict[str, Any]) -> ServedAnswer:
    if not isinstance(entry["content"], str):
        raise TypeError(f"content {entry['content']!r} is not text")
    return ServedAnswer(entry["content"], entry["finish_reason"], entry["tokens"])


class GenerationCache(KeyedCache):
    """A served generator's answers by request (:meth:`ServedGenerator.key`)."""

    def __init__(self, path: str | Path):
        super().__init__(path, "generation cache", _answer)

    def put(self, key: str, generator_name: str, answer: ServedAnswer) -> None:
        self._append({"key": key, "generator": generator_name, "content": answer.content,
                      "finish_reason": answer.finish_reason, "tokens": answer.tokens}, answer)


class ServedGenerator:
    """``openai:MODEL@BASE_URL``; ``adapters`` maps a system's default served name (:func:`adapter_name`) to the
    one the server uses. The API key is read from ``api_key_env`` at each call (none sent when it is unset)."""

    def __init__(self, spec: str, adapters: dict[str, str] | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_retries: int = 5, backoff: float = 1.0, timeout: float = 600):
        kind, _, arg = spec.strip().partition(":")
        # the last "@" splits, as in a judge's spec: model ids may contain "@", URLs should not
        model, at, base_url = arg.rpartition("@")
        if kind != "openai" or not at or not model or not base_url:
            raise ConfigError(f"--generator {spec!r}: expected {GENERATOR_SPEC}, e.g. "
                              "openai:Qwen/Qwen2.5-0.5B-Instruct@http://127.0.0.1:8000/v1 for a vLLM server")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.adapters = dict(adapters or {})
        self.name = f"openai:{model}@{self.base_url}"
        # a long answer from a busy server takes minutes: the time-out is per request, not per token
        self.endpoint = ChatEndpoint(base_url, self.name, GenerationError, api_key_env, max_retries, backoff, timeout)

    def __repr__(self) -> str:
        return f"ServedGenerator(base_url={self.base_url!r}, model={self.model!r}, adapters={self.adapters!r})"

    def check_systems(self, systems: list[System]) -> None:
        """Every name the adapter mapping renames is one of the run's systems."""
        defaults = [adapter_name(s) for s in systems if s.objective is not None]
        for name in self.adapters:
            if name not in defaults:
                raise ConfigError(f"--generator-adapters names '{name}', which is not a system of this run"
                                  f"{suggest(name, defaults)}; the systems are {', '.join(defaults)}")

    def served_model(self, system: System) -> str:
        if system.objective is None:
            return self.model
        return self.adapters.get(adapter_name(system), adapter_name(system))

    def key(self, payload: dict[str, Any]) -> str:
        text = json.dumps([{"kind": "openai", "base_url": self.base_url}, payload], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def generate(self, system: System, prompts: list, settings: GenerationSettings, cache: GenerationCache,
                 chat_template: str | None = None) -> list[list[ServedAnswer]]:
        """``settings.num_samples`` answers of ``system`` to each prompt (text or chat messages), in prompt order;
        ``chat_template``: sent with every request (the plain format, which the served model does not know)."""
        payloads = [self._payload(system, prompt, settings, s, chat_template)
                    for prompt in prompts for s in range(settings.num_samples)]
        with tqdm(total=len(payloads), desc=f"generate {system.name} ({self.name})", unit="answer",
                  leave=False) as bar:
            def one(payload: dict[str, Any]) -> ServedAnswer:
                answer = self._ask(payload, cache)
                bar.update(1)
                return answer

            pool = ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS)
            try:
                answers = list(pool.map(one, payloads))
            finally:
                # after a failure, the requests not yet sent are dropped: a dead server fails the stage after one
                # round of retries, not one per queued request (those that did answer are in the cache)
                pool.shutdown(cancel_futures=True)
        n = settings.num_samples
        return [answers[i:i + n] for i in range(0, len(answers), n)]

    def _payload(self, system: System, prompt, settings: GenerationSettings, sample: int,
                 chat_template: str | None) -> dict[str, Any]:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        payload: dict[str, Any] = {"model": self.served_model(system), "messages": messages,
                                   "max_tokens": settings.max_new_tokens}
        if settings.do_sample:
            payload.update(temperature=settings.temperature, top_p=settings.top_p, seed=settings.seed + sample)
        else:
            payload["temperature"] = 0.0
        if chat_template is not None:
            payload["chat_template"] = chat_template
        return payload

    def _ask(self, payload: dict[str, Any], cache: GenerationCache) -> ServedAnswer:
        key = self.key(payload)
        if (hit := cache.get(key)) is not None:
            return hit
        body = self.endpoint.post(payload)
        try:
            choice = body["choices"][0]
            answer = ServedAnswer(choice["message"]["content"] or "", choice.get("finish_reason"),
                                  (body.get("usage") or {}).get("completion_tokens"))
        except (KeyError, IndexError, TypeError, AttributeError):
            raise GenerationError(f"{self.name}: no choices[0].message.content in the reply to {payload['model']}: "
                                  f"{str(body)[:BODY_EXCERPT]}") from None
        cache.put(key, self.name, answer)
        return answer
