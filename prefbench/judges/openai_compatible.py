"""A pairwise judge behind any OpenAI-compatible ``/chat/completions`` endpoint.

Works with hosted APIs, vLLM's and llama.cpp's servers, through :class:`prefbench.util.chat_endpoint.ChatEndpoint`
(the API key read from an environment variable at each call, never stored; transient failures retried with
back-off, ``Retry-After`` honoured; any other 4xx fails at once). A reply without
``choices[0].message.content`` fails too: the endpoint does not speak this API.
"""

from __future__ import annotations

from typing import Any

from prefbench.judges.verdicts import (
    DEFAULT_TEMPLATE,
    JudgeError,
    Verdict,
    check_template,
    parse_verdict,
    render_prompt,
)
from prefbench.util.chat_endpoint import BODY_EXCERPT, ChatEndpoint


class OpenAICompatibleJudge:
    concurrent = True

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", template: str = DEFAULT_TEMPLATE,
                 max_retries: int = 5, backoff: float = 1.0, timeout: float = 60, temperature: float = 0.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.template = check_template(template)
        self.temperature = temperature
        self.name = f"openai:{model}@{self.base_url}"
        self.endpoint = ChatEndpoint(base_url, self.name, JudgeError, api_key_env, max_retries, backoff, timeout)

    def __repr__(self) -> str:
        return (f"OpenAICompatibleJudge(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, temperature={self.temperature})")

    def identity(self) -> dict[str, Any]:
        return {"kind": "openai", "base_url": self.base_url, "model": self.model, "temperature": self.temperature}

    def judge(self, instruction: str, response_a: str, response_b: str) -> Verdict:
        prompt = render_prompt(self.template, instruction, response_a, response_b)
        body = self.endpoint.post({"model": self.model, "temperature": self.temperature,
                                   "messages": [{"role": "user", "content": prompt}]})
        try:
            text = body["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"{self.name}: no choices[0].message.content in the reply: "
                             f"{str(body)[:BODY_EXCERPT]}") from None
        return Verdict(winner=parse_verdict(text), raw=text)
