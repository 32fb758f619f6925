"""A pairwise judge behind any OpenAI-compatible ``/chat/completions`` endpoint.

Works with hosted APIs, vLLM's and llama.cpp's servers. The API key is read from an environment
variable at each call and sent as a Bearer token; it is never stored on the object, so it cannot
leak into the cache, a repr or a saved config. Local servers that need no key work with the
variable unset (no Authorization header is sent).

Transient failures — connection errors, time-outs, 429, 5xx and a success whose body is not JSON (a
gateway's error page, a reply cut short) — are retried up to ``max_retries`` times, waiting
``Retry-After`` seconds when the server says so, else ``backoff * 2**k`` for the k-th retry.
Any other 4xx is a mistake in the request (wrong model name, bad key) that retrying cannot fix,
so it fails at once with the status and the start of the server's message; so does JSON without
``choices[0].message.content`` (the endpoint does not speak this API).
"""

from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from prefbench.judges.verdicts import (
    DEFAULT_TEMPLATE,
    JudgeError,
    Verdict,
    check_template,
    parse_verdict,
    render_prompt,
)

_BODY_EXCERPT = 500


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class OpenAICompatibleJudge:
    concurrent = True

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", template: str = DEFAULT_TEMPLATE,
                 max_retries: int = 5, backoff: float = 1.0, timeout: float = 60, temperature: float = 0.0):
        if not base_url.startswith(("http://", "https://")):
            raise JudgeError(f"judge base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.template = check_template(template)
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout
        self.temperature = temperature
        self.name = f"openai:{model}@{self.base_url}"

    def __repr__(self) -> str:
        return (f"OpenAICompatibleJudge(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, temperature={self.temperature})")

    def identity(self) -> dict[str, Any]:
        return {"kind": "openai", "base_url": self.base_url, "model": self.model, "temperature": self.temperature}

    def judge(self, instruction: str, response_a: str, response_b: str) -> Verdict:
        prompt = render_prompt(self.template, instruction, response_a, response_b)
        body = self._post({"model": self.model, "temperature": self.temperature,
                           "messages": [{"role": "user", "content": prompt}]})
        try:
            text = body["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"{self.name}: no choices[0].message.content in the reply: "
                             f"{str(body)[:_BODY_EXCERPT]}") from None
        return Verdict(winner=parse_verdict(text), raw=text)

    def _post(self, payload: dict[str, Any]) -> Any:
        url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                reply = requests.post(url, json=payload, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if reply.ok:
                    try:
                        return reply.json()
                    except ValueError:   # a gateway's error page, a body cut short: transient, like a 502
                        problem = f"reply is not JSON: {reply.text[:_BODY_EXCERPT]!r}"
                else:
                    problem = f"HTTP {reply.status_code} from {url}: {reply.text[:_BODY_EXCERPT]!r}"
                if not reply.ok and reply.status_code != 429 and reply.status_code < 500:
                    hint = (f" (is ${self.api_key_env} set to a valid key?)" if reply.status_code in (401, 403) else "")
                    raise JudgeError(f"{self.name}: {problem}{hint}")
                asked = _retry_after_seconds(reply.headers.get("Retry-After"))
                wait = wait if asked is None else asked
            if attempt < self.max_retries:
                time.sleep(wait)
        raise JudgeError(f"{self.name}: gave up after {self.max_retries + 1} attempts; last error: {problem}")
