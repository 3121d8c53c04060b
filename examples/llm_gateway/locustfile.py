"""Load the LLM gateway with API keys of different appetite, and count the tokens admitted.

With the model server and the gateway running (see README.md), from the repository root::

    locust -f examples/llm_gateway/locustfile.py --host http://127.0.0.1:8000 \\
        --headless -u 5 -r 5 -t 90s --tokens-csv out/tokens.csv

Each kind of user has its own API key (one user per key, two for ``heavy``; ``-u 5`` starts
them all):

- ``light``: short answers (100 tokens), one request every 1-2 s: about 5,000 tokens a
  minute, far below the limits; it must never be held;
- ``steady``: 400-token answers, one a second: a little more than 20,000 tokens a minute;
- ``heavy``: two users asking for 1,500-token answers back to back: several times the
  token budget;
- ``bursty``: a burst of 25 short requests every 20 s: 75 requests a minute, over the
  ``60/minute`` request limit, with few tokens.

A 429 with ``Retry-After`` is the limiter doing its job: it counts as a rejection, not as a
failure. A user waits the longer of its own pace and the last ``Retry-After`` it was given
(at most 10 s) before its next request (a burst goes on to its end).
A failure is anything else: an error status, or a stream that does not end with its usage and
``[DONE]``, or whose answer is not as long as its usage says.

``--tokens-csv PATH`` writes, when the run ends, one row per second and key:
``second,key,tokens,admitted,rejected`` (the tokens of the answers that *ended* in that
second, by their usage; the requests admitted and rejected that started in it). Draw it with
``python examples/llm_gateway/chart.py PATH``.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from typing import Any

from locust import HttpUser, between, constant, events, task

#: (second of the run, key) → [tokens, admitted, rejected].
TABLE: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
_start = time.time()

PROMPT = "Explain in plain words how a token bucket rations what an API key may spend"
LONGEST_WAIT = 10.0  # the most a user waits after a 429 (its Retry-After, capped)


def _options(parser: Any) -> None:
    parser.add_argument(
        "--tokens-csv",
        default="",
        help="write second,key,tokens,admitted,rejected rows to this CSV when the test stops",
    )


def _started(**_: Any) -> None:
    global _start
    _start = time.time()
    TABLE.clear()


def _second() -> int:
    return int(time.time() - _start)


def _write_table(environment: Any, **_: Any) -> None:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_, key), row in TABLE.items():
        totals[key] = [a + b for a, b in zip(totals[key], row, strict=True)]
    for key, (tokens, admitted, rejected) in sorted(totals.items()):
        print(
            f"tokens  {key:<8} {tokens:>7} tokens  {admitted:>4} admitted  {rejected:>4} rejected"
        )
    path = getattr(environment.parsed_options, "tokens_csv", "")
    if path:
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["second", "key", "tokens", "admitted", "rejected"])
            for (second, key), row in sorted(TABLE.items()):
                writer.writerow([second, key, *row])


# locust's event hooks carry no annotations: registered through an ``Any`` for mypy --strict.
_hooks: Any = events
_hooks.init_command_line_parser.add_listener(_options)
_hooks.test_start.add_listener(_started)
_hooks.test_stop.add_listener(_write_table)


def read_stream(lines: Any) -> tuple[int, int, bool]:
    """The words of the answer, its ``usage.completion_tokens`` + ``prompt_tokens`` (the
    ``total_tokens``), and whether ``[DONE]`` closed it, from the lines of an SSE stream."""
    words = 0
    total = -1
    completion = -1
    done = False
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            done = True
            continue
        event = json.loads(data)
        for choice in event.get("choices", []):
            words += len(choice.get("delta", {}).get("content", "").split())
        usage = event.get("usage")
        if usage:
            total = usage["total_tokens"]
            completion = usage["completion_tokens"]
    intact = done and total >= 0 and completion == words
    return words, total, intact


class GatewayUser(HttpUser):
    """A client of the gateway with its own API key; subclasses say how hungry it is."""

    abstract = True
    api_key = "sk-?"
    max_tokens = 200
    _backoff = 0.0

    def chat(self) -> None:
        """One streamed chat completion: record what the limiter and the model said."""
        key = self.api_key
        second = _second()
        body = {
            "model": "stub-1",
            "stream": True,
            "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        with self.client.post(
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            name=f"POST /v1/chat/completions ({key})",
            stream=True,
            catch_response=True,
        ) as response:
            status = response.status_code
            if status == 429:
                TABLE[second, key][2] += 1
                retry_after = response.headers.get("retry-after")
                if retry_after is None:
                    response.failure("429 without Retry-After")
                else:
                    self._backoff = min(float(retry_after), LONGEST_WAIT)
                    response.success()
                return
            if status != 200:
                response.failure(f"unexpected status {status or 'no response'}")
                return
            TABLE[second, key][1] += 1
            words, total, intact = read_stream(response.iter_lines())
            if not intact:
                response.failure(f"broken stream: {words} words, usage {total}")
                return
            TABLE[_second(), key][0] += total
            response.success()

    def wait_time(self) -> float:  # type: ignore[override]
        backoff, self._backoff = self._backoff, 0.0
        return max(backoff, self.pace())

    def pace(self) -> float:
        return 0.0


class Light(GatewayUser):
    """Short answers, now and then: never near a limit."""

    fixed_count = 1
    api_key = "sk-light"
    max_tokens = 100
    pace = between(1.0, 2.0)

    @task
    def ask(self) -> None:
        self.chat()


class Steady(GatewayUser):
    """A 400-token answer every second: just over 20,000 tokens a minute."""

    fixed_count = 1
    api_key = "sk-steady"
    max_tokens = 400
    pace = constant(1.0)

    @task
    def ask(self) -> None:
        self.chat()


class Heavy(GatewayUser):
    """Two users on one key, asking for long answers back to back."""

    fixed_count = 2
    api_key = "sk-heavy"
    max_tokens = 1500

    @task
    def ask(self) -> None:
        self.chat()


class Bursty(GatewayUser):
    """25 short requests at once, every 20 seconds: over the request limit, not the tokens."""

    fixed_count = 1
    api_key = "sk-bursty"
    max_tokens = 60
    pace = constant(20.0)

    @task
    def burst(self) -> None:
        for _ in range(25):
            self.chat()
