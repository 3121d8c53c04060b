"""The ``[metrics]`` table of the config (SPEC §7): Prometheus, OpenTelemetry, the status page.

::

    [metrics]
    prometheus = true                # record on prometheus_client's default registry
    opentelemetry = true             # record through the opentelemetry API, meter "ratelimit"
    status_path = "/_ratelimit"      # off when absent; JSON and an HTML page
    status_allow = ["127.0.0.1/32", "::1/128"]   # who may see it (anyone else: 404)

In code, ``prometheus`` may also be a ``prometheus_client.CollectorRegistry`` (record there
instead of the default registry) and ``opentelemetry`` a ``MeterProvider`` (instead of the
global one)::

    Config(metrics=MetricsConfig(prometheus=my_registry), rules=[...])
    {"metrics": {"prometheus": my_registry}, "rules": [...]}   # the dict form takes it too

Everything is off by default; with everything off the engine runs no metrics code at all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from ratelimit.errors import ConfigError
from ratelimit.http.policies import parse_networks

__all__ = ["DEFAULT_STATUS_ALLOW", "METRICS_KEYS", "MetricsConfig", "parse_metrics"]

#: Who may see the status page when ``status_allow`` is not given: loopback only.
DEFAULT_STATUS_ALLOW = ("127.0.0.1/32", "::1/128")
#: The keys of the ``[metrics]`` table.
METRICS_KEYS = ("prometheus", "opentelemetry", "status_path", "status_allow")

_EXTRAS = {
    "prometheus": ("prometheus_client", "prometheus"),
    "opentelemetry": ("opentelemetry.metrics", "otel"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """What the engine records, and where (see the module docstring).

    Attributes:
        prometheus: ``True`` for prometheus_client's default registry, a
            ``CollectorRegistry`` for that registry, ``False`` (default) for none.
        opentelemetry: ``True`` for the global meter provider, a ``MeterProvider`` for that
            one, ``False`` (default) for none.
        status_path: the path of the status page (JSON and HTML), ``None`` (default): off.
        status_allow: CIDRs of the peers that may see the status page; anyone else gets 404.
            The direct peer address counts (forwarding headers are not read here).

    Invalid values raise :class:`~ratelimit.ConfigError` naming the key
    (``metrics.status_allow[0]: invalid network ...``).
    """

    prometheus: Any = False
    opentelemetry: Any = False
    status_path: str | None = None
    status_allow: tuple[str, ...] = DEFAULT_STATUS_ALLOW

    def __post_init__(self) -> None:
        for name in ("prometheus", "opentelemetry"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, False)
            elif not isinstance(value, bool) and not hasattr(
                value, "register" if name == "prometheus" else "get_meter"
            ):
                what = "a CollectorRegistry" if name == "prometheus" else "a MeterProvider"
                raise ConfigError(f"metrics.{name}: must be true, false or {what}, got {value!r}")
            if value is not False and value is not None:
                module, extra = _EXTRAS[name]
                if not _installed(module):
                    raise ConfigError(
                        f"metrics.{name}: needs {module.split('.')[0]}, which is not installed: "
                        f"pip install 'ratelimit-middleware[{extra}]'"
                    )
        path = self.status_path
        if path is not None and (
            not isinstance(path, str)
            or not path.startswith("/")
            or any(c.isspace() or c in "?#" for c in path)
        ):
            raise ConfigError(
                f"metrics.status_path: must be a path such as '/_ratelimit', got {path!r}"
            )
        allow = self.status_allow
        try:
            parse_networks(allow)  # checked; kept as text
        except ConfigError as exc:
            text = str(exc)
            raise ConfigError(
                f"metrics.status_allow{'' if text.startswith('[') else ': '}{text}"
            ) from None
        object.__setattr__(self, "status_allow", tuple(allow))

    @property
    def enabled(self) -> bool:
        """Whether anything is recorded (metrics or the status page)."""
        return (
            self.prometheus is not False
            or self.opentelemetry is not False
            or self.status_path is not None
        )

    def networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``status_allow`` as network objects."""
        return tuple(ip_network(cidr, strict=False) for cidr in self.status_allow)


def parse_metrics(value: Any, where: str) -> MetricsConfig:
    """The :class:`MetricsConfig` of a ``[metrics]`` table (or a ready one, or ``None``).

    ``where`` names the source in errors: ``"<where>: metrics.status_allow[0]: ..."``.
    """
    if value is None:
        return MetricsConfig()
    if isinstance(value, MetricsConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: metrics: must be a table, got {value!r}")
    unknown = [k for k in value if k not in METRICS_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: metrics: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} (valid keys: {', '.join(METRICS_KEYS)})"
        )
    options = dict(value)
    for name in ("prometheus", "opentelemetry"):
        if name in options and options[name] is None:
            raise ConfigError(f"{where}: metrics.{name}: must be true or false, got None")
    if isinstance(options.get("status_allow"), list):
        options["status_allow"] = tuple(options["status_allow"])
    try:
        return MetricsConfig(**options)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
