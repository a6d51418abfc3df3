"""Where load may go: loopback always, any other host only when allow-listed.

Load tests aimed at the wrong address are an incident; this is the single place that decides.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from entload.errors import UsageError


def is_loopback_host(hostname: str) -> bool:
    """True when every address the name resolves to is loopback (127.0.0.0/8 or ::1)."""
    if hostname in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(hostname, None)
    except OSError:
        return False
    addrs = {info[4][0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


def check_host(url: str, allow_hosts: list[str] | tuple[str, ...] = (), option: str = "--host") -> str:
    """Return the URL if its host is loopback or allow-listed, else raise a one-line UsageError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{option}: expected an http(s) URL such as http://127.0.0.1:8080, got {url!r}")
    host = parts.hostname
    if is_loopback_host(host):
        return url
    allowed = {h.strip().lower() for h in allow_hosts if h.strip()}
    if host.lower() in allowed:
        return url
    raise UsageError(
        f"{option}: refusing to send load to {host!r}: it is not loopback and not allow-listed "
        f"(add --allow-host {host} if this staging host is yours)"
    )
