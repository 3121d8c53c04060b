"""Chart the tokens each API key was admitted per second, from the locustfile's CSV.

    python examples/llm_gateway/chart.py out/tokens.csv --out docs/img/llm_gateway_tokens.png

One panel per key (the hungriest last), on one scale: bars are the tokens of the answers
that ended in each second; the solid line is their average over the last 60 s (over the
seconds since the start, in the first minute), to hold against the dashed limit, 20,000
tokens a minute = 333 a second. The dotted line is the most a minute can hold: the
bucket's burst on top of the minute's tokens. The script also prints a Markdown table of the
numbers per key.

The limit, burst and rule are read from ``ratelimit.toml`` (the ``tokens`` rule) next to
this file, or from ``--config``. Uses matplotlib's object API (no pyplot, no display).
"""

from __future__ import annotations

import argparse
import csv
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from ratelimit import Rate

__all__ = ["Series", "draw", "load", "table"]

HERE = Path(__file__).parent
WINDOW = 60  # seconds: "per minute"
_TOKENS = "#2e8b57"
_AVERAGE = "#1b1b1b"
_LIMIT = "#1f4e9c"


@dataclass
class Series:
    """What one key was admitted, second by second."""

    key: str
    tokens: list[int] = field(default_factory=list)
    admitted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    def rolling(self, window: int = WINDOW) -> list[int]:
        """The tokens of the last ``window`` seconds, at the end of each second."""
        out: list[int] = []
        total = 0
        for second, tokens in enumerate(self.tokens):
            total += tokens
            if second >= window:
                total -= self.tokens[second - window]
            out.append(total)
        return out


def load(path: Path) -> list[Series]:
    """The series of every key in the CSV, the one with the fewest tokens first."""
    rows: dict[str, dict[int, tuple[int, int, int]]] = defaultdict(dict)
    last = 0
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            second = int(row["second"])
            last = max(last, second)
            rows[row["key"]][second] = (
                int(row["tokens"]),
                int(row["admitted"]),
                int(row["rejected"]),
            )
    series = []
    for key, seconds in rows.items():
        s = Series(key)
        for second in range(last + 1):
            tokens, admitted, rejected = seconds.get(second, (0, 0, 0))
            s.tokens.append(tokens)
            s.admitted.append(admitted)
            s.rejected.append(rejected)
        series.append(s)
    return sorted(series, key=lambda s: sum(s.tokens))


def token_limit(config: Path) -> tuple[Rate, int]:
    """The rate and burst of the ``tokens`` rule of ``config``."""
    with config.open("rb") as file:
        rules = tomllib.load(file)["rules"]
    rule = next(r for r in rules if r.get("name") == "tokens")
    rate = Rate.parse(rule["limit"])
    return rate, int(rule.get("burst", rate.limit))


def table(series: list[Series], rate: Rate, burst: int) -> str:
    """A Markdown table of each key's requests, tokens and busiest minute."""
    seconds = max((len(s.tokens) for s in series), default=0)
    lines = [
        f"| key | requests admitted | rejected (429) | tokens | tokens/s over {seconds} s "
        f"| most tokens in any {WINDOW} s |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for s in series:
        tokens = sum(s.tokens)
        lines.append(
            f"| `{s.key}` | {sum(s.admitted)} | {sum(s.rejected)} | {tokens:,} "
            f"| {tokens / max(1, seconds):.0f} | {max(s.rolling(), default=0):,} |"
        )
    per_second = rate.limit / rate.period
    lines.append("")
    lines.append(
        f"Limit: {rate.limit:,} tokens per {rate.period:g} s ({per_second:.0f}/s), burst "
        f"{burst:,}: at most {burst + rate.limit:,} in any minute, plus the answers in flight."
    )
    return "\n".join(lines)


def draw(series: list[Series], rate: Rate, burst: int, out: Path) -> None:
    """One panel per key, sharing both axes; a PNG at ``out``."""
    per_second = rate.limit / rate.period
    count = max(1, len(series))
    fig = Figure(figsize=(11, 1.7 * count + 1.4), dpi=110, layout="constrained")
    axes = fig.subplots(count, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    # The scale shows the limit lines well; a taller bar (a burst) is cut and labelled.
    top = per_second * 5
    for ax, s in zip(axes, series, strict=False):
        x = list(range(len(s.tokens)))
        ax.bar(
            x,
            s.tokens,
            width=1.0,
            align="edge",
            color=_TOKENS,
            linewidth=0,
            label="tokens admitted in the second",
        )
        for second, tokens in enumerate(s.tokens):
            if tokens > top:
                ax.annotate(
                    f"{tokens:,}",
                    (second + 0.5, top),
                    xytext=(0, -2),
                    textcoords="offset points",
                    ha="center",
                    va="top",
                    fontsize=6,
                    color="white",
                    rotation=90,
                )
        average = [total / min(i + 1, WINDOW) for i, total in enumerate(s.rolling())]
        ax.step(
            [*x, len(x)],
            [*average, average[-1] if average else 0],
            where="post",
            color=_AVERAGE,
            linewidth=1.4,
            label=f"average over the last {WINDOW} s (or since the start)",
        )
        ax.axhline(
            per_second,
            color=_LIMIT,
            linestyle="--",
            linewidth=1.4,
            label=f"limit: {rate.limit:,}/minute = {per_second:.0f}/s",
        )
        ax.axhline(
            (rate.limit + burst) / WINDOW,
            color=_LIMIT,
            linestyle=":",
            linewidth=1.2,
            label=f"limit + burst ({burst:,}) per minute",
        )
        title = (
            f"{s.key}: {sum(s.tokens):,} tokens, {sum(s.admitted)} requests admitted, "
            f"{sum(s.rejected)} rejected (429)"
        )
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_ylabel("tokens / s", fontsize=8)
        ax.set_ylim(0, top)
        ax.set_xlim(0, len(x))
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    axes[-1].set_xlabel("seconds since the start of the run")
    fig.suptitle("LLM gateway: tokens admitted per API key per second", fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=out.suffix.lstrip(".") or "png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("csv", type=Path, help="the --tokens-csv file of a locust run")
    parser.add_argument("--out", type=Path, default=Path("llm_gateway_tokens.png"))
    parser.add_argument("--config", type=Path, default=HERE / "ratelimit.toml")
    args = parser.parse_args(argv)
    series = load(args.csv)
    rate, burst = token_limit(args.config)
    draw(series, rate, burst, args.out)
    print(table(series, rate, burst))
    print(f"\nchart: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
