"""An OpenAI-compatible ``/chat/completions`` endpoint, as the HTTP judge and the served generator call it.

Works with hosted APIs, vLLM's and llama.cpp's servers. The API key is read from an environment
variable at each call and sent as a Bearer token; it is never stored on the object, so it cannot
leak into a cache, a repr or a saved config. Local servers that need no key work with the
variable unset (no Authorization header is sent).

Transient failures — connection errors, time-outs, 429, 5xx and a success whose body is not JSON (a
gateway's error page, a reply cut short) — are retried up to ``max_retries`` times, waiting
``Retry-After`` seconds when the server says so, else ``backoff * 2**k`` for the k-th retry.
Any other 4xx is a mistake in the request (wrong model name, bad key) that retrying cannot fix,
so it fails at once with the status and the start of the server's message.
"""

from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from prefbench.util.errors import UserError

BODY_EXCERPT = 500   # characters of a server's reply quoted in an error


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


class ChatEndpoint:
    """POSTs to ``<base_url>/chat/completions``; failures are raised as ``error`` (the caller's
    :class:`UserError`, e.g. a judge's JudgeError), one line starting with ``name``."""

    def __init__(self, base_url: str, name: str, error: type[UserError], api_key_env: str = "OPENAI_API_KEY",
                 max_retries: int = 5, backoff: float = 1.0, timeout: float = 60):
        if not base_url.startswith(("http://", "https://")):
            raise error(f"{name}: base_url must start with http:// or https://, got {base_url!r}")
        self.url = f"{base_url.rstrip('/')}/chat/completions"
        self.name = name
        self.error = error
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.backoff = backoff
        self.timeout = timeout

    def post(self, payload: dict[str, Any]) -> Any:
        """The server's JSON reply to ``payload``."""
        headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self.api_key_env):
            headers["Authorization"] = f"Bearer {key}"
        problem = ""
        for attempt in range(self.max_retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                reply = requests.post(self.url, json=payload, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if reply.ok:
                    try:
                        return reply.json()
                    except ValueError:   # a gateway's error page, a body cut short: transient, like a 502
                        problem = f"reply is not JSON: {reply.text[:BODY_EXCERPT]!r}"
                else:
                    problem = f"HTTP {reply.status_code} from {self.url}: {reply.text[:BODY_EXCERPT]!r}"
                if not reply.ok and reply.status_code != 429 and reply.status_code < 500:
                    hint = (f" (is ${self.api_key_env} set to a valid key?)" if reply.status_code in (401, 403) else "")
                    raise self.error(f"{self.name}: {problem}{hint}")
                asked = _retry_after_seconds(reply.headers.get("Retry-After"))
                wait = wait if asked is None else asked
            if attempt < self.max_retries:
                time.sleep(wait)
        raise self.error(f"{self.name}: gave up after {self.max_retries + 1} attempts; last error: {problem}")
