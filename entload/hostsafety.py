"""Where load may go: loopback always, any other host only when allow-listed.

The decision lives in the scenarios (`scenarios._options`), because a plain `locust -f scenarios` run must refuse a
foreign host too; this module is the CLI's door to it, turning the scenarios' refusal into a one-line UsageError.
"""

from __future__ import annotations

from entload.errors import UsageError
from scenarios._options import ScenarioError
from scenarios._options import check_url as _check_url
from scenarios._options import is_loopback as is_loopback_host

__all__ = ["check_host", "is_loopback_host"]


def check_host(url: str, allow_hosts: list[str] | tuple[str, ...] = (), option: str = "--host") -> str:
    """Return the URL if its host is loopback or allow-listed, else raise a one-line UsageError."""
    try:
        _check_url(url, option, list(allow_hosts))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    return url
