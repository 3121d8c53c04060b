"""examples/llm_gateway end to end: the stub model server and the gateway on real uvicorn
processes, driven with httpx, and a short headless locust run of its locustfile.

The gateway's ``tokens`` rule (``ratelimit.toml``): a token bucket of 4,000 filled at
20,000/minute, 500 reserved per request, the answer's ``usage.total_tokens`` charged by the
gateway. The model answers exactly ``max_tokens`` tokens after one per word of the prompt.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.redis_server import HAVE_REDIS, SKIP_REASON, redis_server
from tests.support.servers import server_process

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "llm_gateway"
MODEL = ["python", "-m", "uvicorn", "examples.llm_gateway.model_server:app", "--port", "{port}"]
GATEWAY = ["python", "-m", "uvicorn", "examples.llm_gateway.gateway:app", "--port", "{port}"]
PROMPT = "count these five words"  # 4 prompt tokens
BURST = 4000  # the tokens rule's bucket
RESERVED = 500  # its cost: reserved up front
PER_SECOND = 20000 / 60

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    # 20 ms between chunks: a 3,400-token answer streams for about 1.4 s.
    env = {"MODEL_SERVER_CHUNK_DELAY": "0.02"}
    with server_process(MODEL, cwd=str(ROOT), env=env) as url:
        yield url


#: The API keys the gateway under test serves (``GATEWAY_API_KEYS``).
KEYS = "sk-light,sk-steady,sk-heavy,sk-bursty,sk-intact,sk-heavy-test,sk-light-test,"
KEYS += "sk-small,sk-gone,sk-redis"


@pytest.fixture(scope="module")
def gateway_url(model_url: str) -> Iterator[str]:
    """The gateway as shipped (memory backend)."""
    env = {"MODEL_SERVER_URL": model_url, "GATEWAY_API_KEYS": KEYS}
    with server_process(GATEWAY, cwd=str(ROOT), env=env) as url:
        yield url


def chat(url: str, key: str, max_tokens: int) -> tuple[httpx.Response, list[bytes]]:
    """One streamed completion: the response and its events (the raw ``data:`` lines)."""
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    headers = {"authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        lines = [line.encode() for line in response.iter_lines() if line.startswith("data:")]
    return response, lines


def answer(lines: list[bytes]) -> tuple[int, dict[str, int], bool]:
    """The answer's word count, its usage and whether ``[DONE]`` closed the stream."""
    words = 0
    usage: dict[str, int] = {}
    for line in lines:
        data = line[5:].strip()
        if data == b"[DONE]":
            continue
        event = json.loads(data)
        for choice in event["choices"]:
            words += len(choice["delta"].get("content", "").split())
        usage = event.get("usage") or usage
    return words, usage, bool(lines) and lines[-1] == b"data: [DONE]"


def refill(seconds: float) -> int:
    """The most tokens the bucket can regain in ``seconds`` (rounded up, plus one)."""
    return math.ceil(seconds * PER_SECOND) + 1


def refused_for_tokens(url: str, key: str, wait_at_least: Callable[[], float]) -> httpx.Response:
    """Probe ``key`` (1-token requests) until the tokens rule refuses it with a
    ``Retry-After`` of at least ``wait_at_least()`` seconds; fail after 15 s.

    A charge is settled once its response is over: the client may see the end of its
    answer a moment before the charge lands, so its next request is polled, not assumed."""
    deadline = time.monotonic() + 15
    while True:
        probe, _ = chat(url, key, 1)
        if (
            probe.status_code == 429
            and probe.headers["ratelimit"].startswith('"tokens";r=0;')
            and int(probe.headers["retry-after"]) >= wait_at_least()
        ):
            return probe
        assert time.monotonic() < deadline, f"never refused long enough: {probe.headers}"
        time.sleep(0.05)


def test_the_stream_comes_through_intact(gateway_url: str) -> None:
    response, lines = chat(gateway_url, "sk-intact", 120)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    words, usage, done = answer(lines)
    assert done
    assert words == 120
    assert usage == {"prompt_tokens": 4, "completion_tokens": 120, "total_tokens": 124}
    assert '"tokens";q=4000;w=12;qu="tokens"' in response.headers["ratelimit-policy"]
    assert '"requests";q=60;w=60' in response.headers["ratelimit-policy"]


def test_a_key_in_debt_waits_and_other_keys_do_not(gateway_url: str) -> None:
    """Two 3,404-token answers fit (the second on the 595 left), and put the key ~2,800 in
    debt; the next request is refused until the debt is paid. With only the reservations
    counted (500 each), it would have been admitted."""
    start = time.monotonic()
    for _ in range(2):
        response, lines = chat(gateway_url, "sk-heavy-test", 3400)
        assert response.status_code == 200
        _, usage, done = answer(lines)
        assert done and usage["total_tokens"] == 3404

    def owed() -> float:
        """The seconds until 500 are back: 4000 − 2 × 3404 + what refilled since the start."""
        missing = RESERVED - (BURST - 2 * 3404) - refill(time.monotonic() - start)
        assert missing > 0, "too slow to tell: the debt would be paid already"
        return missing / PER_SECOND

    refused_for_tokens(gateway_url, "sk-heavy-test", owed)
    light, lines = chat(gateway_url, "sk-light-test", 100)
    assert light.status_code == 200
    assert answer(lines)[2]


def test_made_up_keys_buy_no_budget(gateway_url: str) -> None:
    """An attacker inventing a new API key for every request: each is refused with 401, and
    all of them count against the address's one budget of 60 requests a minute, not against
    60 fresh ones."""
    statuses = []
    for i in range(61):
        response = httpx.post(
            f"{gateway_url}/v1/chat/completions",
            json={"messages": [], "max_tokens": 1},
            headers={"authorization": f"Bearer sk-made-up-{i}"},
            timeout=30,
        )
        statuses.append(response.status_code)
    assert statuses[:60] == [401] * 60
    assert statuses[60] == 429


def test_what_was_not_used_is_given_back(gateway_url: str) -> None:
    """Twelve answers of 14 tokens: 168 charged in all. Had the 500 reserved by each stayed
    charged, the bucket (4,000) would have refused the ninth."""
    start = time.monotonic()
    statuses = [chat(gateway_url, "sk-small", 10)[0].status_code for _ in range(12)]
    if time.monotonic() - start < (RESERVED * 12 - BURST) / PER_SECOND:
        assert statuses == [200] * 12
    else:  # a machine slow enough to refill the reservations: it proves nothing here
        assert 429 not in statuses


def test_a_charge_lands_after_the_client_hung_up(gateway_url: str) -> None:
    """The client reads one event of a 3,404-token answer and disconnects: the gateway still
    reads the answer to its end and charges it, so the key soon owes ~2,800 tokens."""
    key = "sk-gone"
    response, _ = chat(gateway_url, key, 3400)  # leaves 595
    assert response.status_code == 200
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 3400}
    with httpx.stream(
        "POST",
        f"{gateway_url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as gone:
        assert gone.status_code == 200
        next(gone.iter_lines())  # one event, then hang up mid-answer
    # Uncharged, the bucket holds ~95 + refill: a refusal says "retry in 2 s" at most. Once
    # the 3,404 land, it is more than 2,000 below the 500 needed: over 6 s.
    refused_for_tokens(gateway_url, key, lambda: 6)


@pytest.mark.redis
@pytest.mark.skipif(not HAVE_REDIS, reason=SKIP_REASON)
def test_the_token_counter_drops_by_the_usage(model_url: str) -> None:
    """With a shared backend (``GATEWAY_BACKEND``), the tokens rule's counter, read from
    Redis, is 4,000 − usage after one answer (plus what refilled meanwhile)."""
    from ratelimit import Limiter, backend_from_url
    from ratelimit.http.config import load_config

    config = load_config(EXAMPLE / "ratelimit.toml")
    rule = config.rule("tokens")
    counter = config.counter_key(rule, "key:sk-redis")
    with redis_server() as redis:
        env = {
            "MODEL_SERVER_URL": model_url,
            "GATEWAY_BACKEND": redis.url,
            "GATEWAY_API_KEYS": KEYS,
        }
        with server_process(GATEWAY, cwd=str(ROOT), env=env) as url:
            limiter = Limiter(backend_from_url(redis.url))
            try:
                assert limiter.peek(counter, *rule.limits).remaining == BURST
                start = time.monotonic()
                response, lines = chat(url, "sk-redis", 1000)
                assert response.status_code == 200
                total = answer(lines)[1]["total_tokens"]
                assert total == 1004
                # Polled: the charge is settled once the response is over (see above).
                deadline = time.monotonic() + 15
                while True:
                    remaining = limiter.peek(counter, *rule.limits).remaining
                    elapsed = time.monotonic() - start
                    if remaining <= BURST - total + refill(elapsed):
                        break
                    assert time.monotonic() < deadline, f"never charged: {remaining} left"
                    time.sleep(0.05)
            finally:
                close = getattr(limiter.backend, "close", None)
                if callable(close):
                    close()
    assert remaining >= BURST - total  # charged once, and the reservation given back


def locust_command() -> list[str]:
    """``locust`` from this interpreter's environment (the test extra installs it)."""
    found = shutil.which("locust", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "locust"]


def test_locust_run_and_chart(gateway_url: str, tmp_path: Path) -> None:
    """Five users (four keys) for 8 s: no failure (every stream intact, every 429 with
    ``Retry-After``), the CSV written, the heavy key held, the light key never; the chart
    script draws it."""
    # Not imported here: importing locust monkey-patches the test process with gevent.
    if importlib.util.find_spec("locust") is None:
        pytest.fail("locust is not installed: pip install -e '.[test]'")
    tokens_csv = tmp_path / "tokens.csv"
    run = subprocess.run(
        [
            *locust_command(),
            "-f",
            str(EXAMPLE / "locustfile.py"),
            "--headless",
            "-u",
            "5",
            "-r",
            "5",
            "-t",
            "8s",
            "--host",
            gateway_url,
            "--only-summary",
            "--tokens-csv",
            str(tokens_csv),
        ],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    totals: dict[str, list[int]] = {}
    with tokens_csv.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            sums = totals.setdefault(row["key"], [0, 0, 0])
            for i, column in enumerate(("tokens", "admitted", "rejected")):
                sums[i] += int(row[column])
    assert set(totals) == {"sk-light", "sk-steady", "sk-heavy", "sk-bursty"}
    assert totals["sk-light"][0] > 0 and totals["sk-light"][2] == 0
    assert totals["sk-heavy"][2] > 0  # back-to-back 1,500-token answers: held
    from examples.llm_gateway.chart import main as chart

    assert chart([str(tokens_csv), "--out", str(tmp_path / "tokens.png")]) == 0
    assert (tmp_path / "tokens.png").read_bytes().startswith(b"\x89PNG")
