"""Counting and measuring: percentiles, timelines, peaks, header summaries, demo traffic."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratelimit import Rate
from ratelimit.cli.demo import demo_traffic
from ratelimit.cli.loadgen import DROPPED, ERROR, Sample, uniform_schedule
from ratelimit.cli.report import format_table, percentile, policy_quota, policy_rate, summarize


def _sample(due: float, status: int, latency: float = 0.001, **headers: str) -> Sample:
    if status == DROPPED:
        return Sample(due=due, status=DROPPED)
    return Sample(due=due, sent=due, latency=latency, status=status, **headers)  # type: ignore[arg-type]


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..10 is 5, p90 is 9, p99 and p100 are 10, and an empty list gives nan."""
    values = [float(v) for v in range(10, 0, -1)]
    assert percentile(values, 50) == 5
    assert percentile(values, 90) == 9
    assert percentile(values, 99) == 10
    assert percentile(values, 100) == 10
    assert math.isnan(percentile([], 50))


def test_uniform_schedule_is_open_loop_arithmetic() -> None:
    """Request i is due at i / rate, and exactly rate × duration requests fit in duration."""
    schedule = uniform_schedule(40, 2.5)
    assert len(schedule) == 100
    assert schedule[0] == 0
    assert schedule[39] == pytest.approx(39 / 40)
    assert schedule[-1] < 2.5


def test_policy_rate_takes_the_tightest_item() -> None:
    """``RateLimit-Policy`` items give q / w per second; the smallest wins; junk gives None."""
    assert policy_rate('"api";q=10;w=1') == 10
    assert policy_rate('"a";q=100;w=60, "b";q=5;w=1') == pytest.approx(100 / 60)
    assert policy_rate('"x";q=10') is None
    assert policy_rate(None) is None
    assert policy_quota('"a";q=100;w=60, "b";q=1000;w=3600') == (1000, 3600)


def test_summary_counts_add_up() -> None:
    """Admitted, rejected, errors and dropped partition the scheduled requests."""
    samples = [
        _sample(0.00, 200, policy='"r";q=2;w=1', ratelimit='"r";r=1;t=1'),
        _sample(0.05, 200, policy='"r";q=2;w=1', ratelimit='"r";r=0;t=1'),
        _sample(0.10, 429, retry_after="1", ratelimit='"r";r=0;t=1'),
        _sample(0.15, 429, retry_after="2"),
        _sample(0.20, 503),
        _sample(0.25, ERROR),
        _sample(0.30, DROPPED),
    ]
    samples[5].error = "timeout"
    s = summarize(samples, duration=1.0)
    assert (s.scheduled, s.sent, s.dropped) == (7, 6, 1)
    assert (s.admitted, s.rejected, s.errors) == (2, 2, 2)
    assert s.status == {200: 2, 429: 2, 503: 1}
    assert s.error_kinds == {"timeout": 1}
    assert s.headers.retry_after == 2
    assert dict(s.headers.retry_after_values) == {1: 1, 2: 1}
    assert s.headers.remaining == {0, 1}
    assert s.policy_rate == 2
    assert s.admitted_rate == 2.0
    t = s.timeline
    assert len(t.admitted) == 10
    assert t.admitted[0] == 2 and t.rejected[1] == 2 and t.errors[2] == 2 and t.dropped[3] == 1
    assert sum(t.served) == s.admitted


def test_peak_counts_admissions_in_the_busiest_window() -> None:
    """The peak is the most admissions inside any window of the given length."""
    times = [0.0, 0.1, 0.95, 1.0, 1.05, 1.1, 2.5]
    samples = [_sample(t, 200) for t in times] + [_sample(1.02, 429)]
    assert summarize(samples, duration=3.0, peak_window=2.0).peak_admitted == 6
    assert summarize(samples, duration=3.0, peak_window=1.0).peak_admitted == 4  # 0 and 1 apart
    assert summarize(samples, duration=3.0, peak_window=0.12).peak_admitted == 3


def test_served_is_binned_by_response_time() -> None:
    """A delayed admitted response counts where it was sent in ``admitted``, where it ended in
    ``served``, and the timeline grows to cover it."""
    s = summarize([_sample(0.0, 200, latency=1.25)], duration=1.0)
    assert s.timeline.admitted[0] == 1
    assert s.timeline.served[12] == 1
    assert len(s.timeline.served) == 13


def test_demo_traffic_has_a_burst_across_the_window_edge() -> None:
    """The demo sends 2.05x the limit, then L requests just before and L just after an edge,
    and no two steady arrivals are exactly one window apart."""
    traffic = demo_traffic(10.0, Rate.parse("10/second"))
    assert traffic.edge == 6.0
    before = [t for t in traffic.schedule if traffic.edge - 0.2 <= t < traffic.edge]
    after = [t for t in traffic.schedule if traffic.edge <= t < traffic.edge + 0.2]
    assert len(before) == len(after) == 10
    steady = [t for t in traffic.schedule if t < traffic.steady_until]
    assert len(steady) == 99  # 20.5/s for 4.8 s
    assert not any(round(b - a, 9) == 1.0 for a in steady for b in steady if b > a)
    assert not [t for t in traffic.schedule if traffic.steady_until <= t < traffic.edge - 0.2]
    assert max(traffic.schedule) < 10.0
    assert traffic.schedule == sorted(traffic.schedule)


def test_format_table_aligns_columns() -> None:
    """Every line of a table has the same column starts."""
    table = format_table(["name", "n"], [["a", "1"], ["long name", "100"]]).splitlines()
    assert table[0].startswith("name     ")
    assert table[2].endswith("  1") and table[3].endswith("100")
    assert len({len(line) for line in table}) == 1


def test_progress_on_a_pipe_prints_plain_lines_then_the_final_state() -> None:
    """Off a terminal, progress is a plain line every couple of seconds, and done() adds the
    final state when it was not the last line printed."""
    import io

    from ratelimit.cli.progress import Progress

    stream = io.StringIO()
    progress = Progress(lambda t: f"t={t:g}", stream=stream, every_plain=2.0)
    for elapsed in (0.0, 0.5, 1.9, 2.0, 3.0, 3.5):
        progress(elapsed)
    progress.done()
    assert stream.getvalue().splitlines() == ["t=0", "t=2", "t=3.5"]
    quiet = io.StringIO()
    muted = Progress(lambda t: "x", stream=quiet, enabled=False)
    muted(1.0)
    muted.done()
    assert quiet.getvalue() == ""


_STATUSES = st.sampled_from([DROPPED, ERROR, 200, 204, 302, 401, 429, 503])


@given(
    st.lists(
        st.tuples(
            st.floats(0, 5, allow_nan=False),
            _STATUSES,
            st.floats(0, 2, allow_nan=False),
        ),
        max_size=60,
    ),
    st.floats(0.1, 5),
)
def test_summary_partitions_every_sample(
    rows: list[tuple[float, int, float]], duration: float
) -> None:
    """Whatever happened, each scheduled request is counted once in the totals and once in
    the timeline, and admitted requests once more by response time."""
    samples = [_sample(due, status, latency) for due, status, latency in rows]
    s = summarize(samples, duration)
    assert s.scheduled == len(samples) == s.sent + s.dropped
    assert s.sent == s.admitted + s.rejected + s.errors
    t = s.timeline
    assert (sum(t.admitted), sum(t.rejected), sum(t.errors), sum(t.dropped)) == (
        s.admitted,
        s.rejected,
        s.errors,
        s.dropped,
    )
    assert sum(t.served) == s.admitted
    assert len({len(t.admitted), len(t.rejected), len(t.served)}) == 1
    assert 0 <= s.peak_admitted <= s.admitted
