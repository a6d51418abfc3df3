"""Prove the capacity model on a real kernel-shaped link (`entload validate-link`, issue 8).

Why: a capacity plan is only as good as its model. This module builds a real bottleneck (a network
namespace of our own, its loopback at MTU 1500, shaped by Linux `tc` tbf, with a per-flow fair scheduler under
it by default, or the tbf's plain FIFO), runs the real staging ENT and an
open-loop load generator inside it, steps the offered load through utilisations, and compares what it measured
with what `capacity` predicts: the processor-sharing mean transfer time x / (C(1 - rho)) and the Gaussian
overflow probability from mu and v(T).

Three parts, one file:
- `Netns`: the namespace + qdisc lifecycle. Everything we create is recorded in a marker file and removed on
  every exit path (finally, SIGINT/SIGTERM handlers, atexit); a stale `entload-*` namespace is removed only
  when its marker says we made it and its creator is dead. We never touch an interface we did not create.
- the generator (`python -m entload.validate_link generate SPEC OUT`, run *inside* the namespace): an asyncio
  open-loop client. Arrivals are Poisson and never wait for completions (open model, no coordinated
  omission); each transfer is one new TCP connection doing real staging requests (a page GET, a message draft
  plus attachment upload, a casier `POST /rack` multipart); it records exact on-the-wire HTTP bytes and
  timestamps per transfer, and samples the namespace's loopback byte counter every 10 ms.
- the analysis: per utilisation and size class, measured mean / p95 against the model, overflow of short
  windows, saturation detection, and the outputs (validation.json, validation.md, validation.png).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

NS_PREFIX = "entload-"
MARKER_DIR = Path("/run/entload/netns")
MTU = 1500
WIRE_PACKET = MTU + 14  # what tbf and the loopback counters see per full segment (Ethernet header included)
SCHEMA_VERSION = 1
WINDOWS_S = (0.1, 1.0)  # the short windows whose overflow we measure

# ----------------------------------------------------------------------------------------------------------
# Size classes: what one "transfer" is. Sizes are what the user's browser would move; the staging ENT's own
# responses are whatever it serves (measured, not assumed).


@dataclass(frozen=True)
class SizeClass:
    name: str
    label: str
    upload_bytes: int  # file part of the multipart body (0 for a page GET)
    share: float  # probability that an arrival is of this class


# Serial round trips of one transfer outside its fair-share data phase (new TCP connection, initial window of
# 10 segments = 14.5 KB): the TCP handshake, one per HTTP request, and the slow-start flights of a transfer too
# small to reach its share. Each costs the queueing delay a round trip of that class meets on the link, measured
# per transfer as the kernel's SYN -> SYN-ACK RTT sample (FIFO: ~2W, the backlog both ways; fair queue: about one
# round of the other backlogged flows' packets).
ROUND_TRIPS = {
    "page": 3,  # handshake; GET + first 14.5 KB flight; second flight (38 KB in all)
    "message": 3,  # handshake; draft POST; attachment response
    "casier": 2,  # handshake; deposit response
}

DEFAULT_CLASSES = (
    SizeClass("page", "portal page", 0, 0.70),
    SizeClass("message", "message + 600 KB attachment", 600_000, 0.22),
    SizeClass("casier", "casier deposit 3 MB", 3_000_000, 0.08),
)

PAGE_PATH = "/welcome"  # the portal page shell: tens of KB (staging sizes.portal_page)


# ----------------------------------------------------------------------------------------------------------
# Namespace + qdisc lifecycle


def _run(cmd: list[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run a command; a failure becomes a one-line RuntimeError naming it and its stderr."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if not check:
            return subprocess.CompletedProcess(cmd, 1, "", str(exc))
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {exc}") from None
    if check and res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {res.returncode}): {res.stderr.strip()[-300:]}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def clean_stale_namespaces() -> list[str]:
    """Delete `entload-*` namespaces that we created (marker file) and whose creator process is dead."""
    removed = []
    if not MARKER_DIR.is_dir():
        return removed
    existing = set(list_namespaces())
    for marker in MARKER_DIR.glob(NS_PREFIX + "*"):
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if info.get("name") != marker.name or _pid_alive(int(info.get("pid", 0))):
            continue
        if marker.name in existing:
            _kill_namespace_pids(marker.name)
            _run(["ip", "netns", "del", marker.name], check=False)
            removed.append(marker.name)
        with contextlib.suppress(OSError):
            marker.unlink()
    return removed


def _kill_namespace_pids(name: str) -> None:
    """Kill what still runs inside one of *our* namespaces (e.g. a server whose parent was SIGKILLed)."""
    for pid in _run(["ip", "netns", "pids", name], check=False).stdout.split():
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


QUEUES = ("fair", "fifo")
FAIR_BUCKETS = 256  # per direction: flows hashed on 8 bits of the client port (SFQ-like; collisions are rare)
FAIR_DEFAULT_MINOR = 0x2  # leaf for anything unclassified (non-TCP, IP options); HTB never sends it "direct"
HTB_BURST = 256 * 1024  # far above any skb tbf lets through: HTB never throttles, only schedules


class Netns:
    """A network namespace of our own with a tbf-shaped loopback at MTU 1500; removed on every exit path.

    `queue="fifo"`: the tbf's own drop-tail FIFO (bfifo of `latency` at the rate). `queue="fair"`: the tbf stays
    the only shaper, and under it an HTB child does deficit round robin (quantum one packet) among per-flow
    leaves, so that every backlogged TCP flow gets an equal share of the link, as processor sharing assumes."""

    _live: list[Netns] = []
    _lock = threading.Lock()

    def __init__(self, rate_bps: float, burst_bytes: int, latency_s: float, queue: str = "fair",
                 server_ports: tuple[int, ...] = ()):
        if queue not in QUEUES:
            raise ValueError(f"queue must be one of {QUEUES}, got {queue!r}")
        self.name = NS_PREFIX + secrets.token_hex(4)
        self.rate_bps = rate_bps
        self.burst_bytes = burst_bytes
        self.latency_s = latency_s
        self.queue = queue
        self.server_ports = server_ports
        self.procs: list[subprocess.Popen] = []
        self.created = False
        self.marker = MARKER_DIR / self.name

    # tc's own syntax: bit/s as an integer `bit`, bytes as `b`, latency in ms
    def tbf_args(self) -> list[str]:
        return [
            "tbf", "rate", f"{int(self.rate_bps)}bit", "burst", f"{int(self.burst_bytes)}b",
            "latency", f"{self.latency_s * 1000:g}ms",
        ]

    def leaf_limit_bytes(self) -> int:
        """Buffer of one flow's leaf in the fair queue: the same `latency` at the link rate as the FIFO's whole
        buffer (tbf's own limit), i.e. a per-flow limit, as fq/fq_codel have (see docs/validate-link.md)."""
        return max(2 * WIRE_PACKET, int(self.rate_bps * self.latency_s / 8))

    def fair_queue_commands(self) -> list[str]:
        """`tc -batch` lines building the per-flow fair scheduler under the tbf (parent 1:1).

        HTB leaves all have rate = ceil = 10x the tbf rate, so HTB never throttles (the tbf alone shapes) and only
        its deficit round robin among backlogged leaves (quantum = one full packet) acts. u32 on the IPv4 header
        (no options: ports at offset 20): a packet *from* a server port (the response direction) is hashed on bits
        1-8 of its destination port into table 1:, every other TCP packet (requests, uploads and their ACKs) on
        bits 1-8 of its source port into table 2: (Linux picks even ephemeral ports for connect(), so bit 0 is
        skipped). Each bucket is its own leaf: one client connection = one leaf per direction."""
        dev = "dev lo"
        fast = f"{int(min(10 * self.rate_bps, 10e9))}bit"
        leaf = f"htb rate {fast} ceil {fast} quantum {WIRE_PACKET} burst {HTB_BURST}b cburst {HTB_BURST}b"
        limit = self.leaf_limit_bytes()
        cmds = [
            f"qdisc add {dev} parent 1:1 handle 10: htb default {FAIR_DEFAULT_MINOR:x}",
            f"class add {dev} parent 10: classid 10:1 htb rate {fast} ceil {fast} burst {4 * WIRE_PACKET}b "
            f"cburst {4 * WIRE_PACKET}b",
            f"class add {dev} parent 10:1 classid 10:{FAIR_DEFAULT_MINOR:x} {leaf}",
            f"qdisc add {dev} parent 10:{FAIR_DEFAULT_MINOR:x} bfifo limit {limit}",
        ]
        for _table, base in ((1, 0x100), (2, 0x200)):
            for b in range(FAIR_BUCKETS):
                cmds += [f"class add {dev} parent 10:1 classid 10:{base + b:x} {leaf}",
                         f"qdisc add {dev} parent 10:{base + b:x} bfifo limit {limit}"]
        flt = f"filter add {dev} parent 10: prio 1 protocol ip"
        cmds += [f"{flt} handle 1: u32 divisor {FAIR_BUCKETS}", f"{flt} handle 2: u32 divisor {FAIR_BUCKETS}"]
        for table, base in ((1, 0x100), (2, 0x200)):
            for b in range(FAIR_BUCKETS):
                cmds.append(f"{flt} u32 ht {table}:{b:x}: match u32 0 0 flowid 10:{base + b:x}")
        tcp4 = "match u8 0x45 0xff at 0 match u8 0x06 0xff at 9"  # IPv4, 20-byte header, TCP
        node = 1
        for port in self.server_ports:
            cmds.append(f"{flt} handle 800::{node:x} u32 ht 800:: {tcp4} match u16 {port} 0xffff at 20 "
                        f"hashkey mask 0x000001fe at 20 link 1:")
            node += 1
        cmds.append(f"{flt} handle 800::{node:x} u32 ht 800:: {tcp4} hashkey mask 0x01fe0000 at 20 link 2:")
        return cmds

    def create(self) -> Netns:
        existing = set(list_namespaces())
        while self.name in existing:  # never adopt (and later delete) a namespace we did not make
            self.name = NS_PREFIX + secrets.token_hex(4)
            self.marker = MARKER_DIR / self.name
        MARKER_DIR.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps({"name": self.name, "pid": os.getpid(), "created": time.time()}))
        with Netns._lock:
            Netns._live.append(self)
        self.created = True  # before `ip netns add`: an interrupt in between still deletes it
        _run(["ip", "netns", "add", self.name])
        # one MTU packet per skb, as on a wire: with GSO the loopback hands the qdisc skbs of up to 10 segments
        # (15 KB, the tbf burst), and DRR among such lumps is far from fair (measured: 2.2 / 6.3 / 11.0 Mbit/s for
        # three equal downloads on 20 Mbit/s; 6.36 each with one packet per skb)
        _run(["ip", "-n", self.name, "link", "set", "lo", "mtu", str(MTU), "gso_max_segs", "1", "up"])
        _run(["tc", "-n", self.name, "qdisc", "add", "dev", "lo", "root", "handle", "1:", *self.tbf_args()])
        if self.queue == "fair":
            batch = MARKER_DIR / f"{self.name}.tc"
            batch.write_text("\n".join(self.fair_queue_commands()) + "\n")
            try:
                _run(["tc", "-n", self.name, "-batch", str(batch)], timeout=60)
            finally:
                with contextlib.suppress(OSError):
                    batch.unlink()
        return self

    def fair_leaf_stats(self) -> dict:
        """Per-leaf counters of the fair queue: {classid: [bytes, packets, drops]} of leaves that carried traffic.
        (`tc -j class show` prints nothing for htb here: the text form is parsed.)"""
        res = _run(["tc", "-n", self.name, "-s", "class", "show", "dev", "lo"], check=False, timeout=30)
        out: dict = {}
        handle = None
        for line in res.stdout.splitlines():
            words = line.split()
            if words[:2] == ["class", "htb"]:
                handle = words[2] if words[2] != "10:1" else None
            elif handle and words[:1] == ["Sent"] and words[3] != "0":
                out[handle] = [int(words[1]), int(words[3]), int(words[6].rstrip(","))]
        return out

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start a process inside the namespace (its own session, so a terminal ^C reaches only us)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def exec(self, cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.name, *cmd], timeout=timeout)

    def qdisc_stats(self) -> dict:
        """tbf counters (bytes, packets, drops, overlimits, backlog) of our loopback."""
        res = _run(["tc", "-n", self.name, "-s", "-j", "qdisc", "show", "dev", "lo"], check=False)
        try:
            for q in json.loads(res.stdout or "[]"):
                if q.get("kind") == "tbf":
                    return {k: q.get(k) for k in ("bytes", "packets", "drops", "overlimits", "backlog", "qlen")}
        except ValueError:
            pass
        return {}

    def sample_backlog(self, stop: threading.Event, period_s: float = 0.05) -> list[tuple[float, int, int]]:
        """(monotonic time, backlog bytes, drops) of the tbf queue until `stop` is set (run in a thread)."""
        out: list[tuple[float, int, int]] = []
        while not stop.is_set():
            q = self.qdisc_stats()
            if q:
                out.append((time.monotonic(), int(q.get("backlog") or 0), int(q.get("drops") or 0)))
            stop.wait(period_s)
        return out

    def destroy(self) -> None:
        """Stop our processes, remove the qdisc, then the namespace; idempotent and safe from a handler."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 3  # the namespace goes anyway: no long graceful shutdown
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(3)
        if self.created:
            _kill_namespace_pids(self.name)  # anything left inside is ours (e.g. uvicorn workers)
            _run(["tc", "-n", self.name, "qdisc", "del", "dev", "lo", "root"], check=False)
            _run(["ip", "netns", "del", self.name], check=False)
            self.created = False
        with contextlib.suppress(OSError):
            self.marker.unlink()
        with Netns._lock:
            if self in Netns._live:
                Netns._live.remove(self)

    @classmethod
    def destroy_all(cls) -> None:
        for ns in list(cls._live):
            ns.destroy()


atexit.register(Netns.destroy_all)


@contextlib.contextmanager
def cleanup_on_signals():
    """SIGTERM/SIGHUP become KeyboardInterrupt, so every `finally` runs (SIGINT already does)."""

    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        old[sig] = signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------------------------------------
# The generator: runs inside the namespace. Plain asyncio + raw HTTP/1.1, so the bytes it counts are the
# bytes on the wire and nothing (no pool, no retry) hides between arrival and completion.


def read_lo_tx_bytes() -> int:
    """Loopback transmit bytes of *this* process's network namespace (what tbf let through)."""
    with open("/proc/net/dev") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[8])
    raise RuntimeError("no lo in /proc/net/dev")


class HttpError(Exception):
    pass


TCP_INFO_RTT_OFFSET = 68  # struct tcp_info: 8 bytes of u8 fields, then u32 rto ... rcv_ssthresh, *rtt* (us)


def handshake_rtt(sock) -> float | None:
    """The kernel's RTT sample of the SYN -> SYN-ACK exchange of a just-connected socket (TCP_INFO tcpi_rtt, in
    microseconds, before any data): the queueing delay a new flow's packets see, both ways, at that moment,
    free of the generator's scheduling jitter. None when the kernel has no sample (e.g. a retransmitted SYN)."""
    import socket
    import struct

    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        rtt_us = struct.unpack_from("I", info, TCP_INFO_RTT_OFFSET)[0]
    except (OSError, AttributeError, struct.error):
        return None
    return rtt_us / 1e6 if rtt_us else None


class Conn:
    """One TCP connection; requests in sequence; counts request and response bytes exactly."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.sent = 0
        self.received = 0
        self.handshake_rtt_s: float | None = None

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        self.handshake_rtt_s = handshake_rtt(self.writer.get_extra_info("socket"))
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if self.writer is None:
            return
        if exc_type is not None:  # cancelled or failed: drop the connection now (RST), do not flush its buffer
            self.writer.transport.abort()
            return
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if body or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        self.received += len(raw)
        lines = raw.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            raise HttpError(f"bad status line {lines[0]!r}") from None
        rh: dict[str, str] = {}
        cookies: list[str] = []
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                rh[k.strip().lower()] = v.strip()
                if k.strip().lower() == "set-cookie":
                    cookies.append(v.strip())
        chunks = []
        if "content-length" in rh:
            n = int(rh["content-length"])
            chunks.append(await self.reader.readexactly(n))
            self.received += n
        elif rh.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                self.received += len(size_line) + len(chunk)
                chunks.append(chunk[:-2])
                if size == 0:
                    # trailers end with an empty line; the common case has none
                    break
        body_out = b"".join(chunks)
        return status, rh, cookies, body_out


def multipart(fields: dict[str, str], file_field: str, filename: str, payload: bytes, ctype: str):
    boundary = "entload" + secrets.token_hex(8)
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n".encode()
    )
    body = b"".join(parts) + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class Session:
    cookie: str
    xsrf: str
    rack_to: str = ""


class EntClient:
    """The three transfer classes as real staging ENT requests (routes of docs/contracts.md)."""

    def __init__(self, host: str, port: int, sessions: list[Session], payloads: dict[str, bytes], rng):
        self.host, self.port, self.sessions, self.payloads, self.rng = host, port, sessions, payloads, rng

    def _headers(self, s: Session, extra: dict | None = None) -> dict:
        h = {"Cookie": s.cookie, "X-XSRF-TOKEN": s.xsrf, "Accept": "application/json"}
        h.update(extra or {})
        return h

    async def transfer(self, cls: str) -> tuple[int, int, int, float | None]:
        """Run one transfer on a fresh connection; return (http status of the main request, sent, received,
        handshake RTT)."""
        s = self.sessions[self.rng.randrange(len(self.sessions))]
        async with Conn(self.host, self.port) as c:
            if cls == "page":
                status, *_ = await c.request("GET", PAGE_PATH, self._headers(s))
            elif cls == "message":
                body = json.dumps({"subject": "devoir", "body": "<p>ci-joint</p>", "to": []}).encode()
                st, _, _, resp = await c.request(
                    "POST", "/conversation/draft", self._headers(s, {"Content-Type": "application/json"}), body
                )
                if st >= 400:
                    raise HttpError(f"draft {st}")
                draft = json.loads(resp or b"{}").get("id", "0")
                mp, ctype = multipart({}, "file", "piece-jointe.pdf", self.payloads["message"], "application/pdf")
                status, *_ = await c.request(
                    "POST", f"/conversation/message/{draft}/attachment",
                    self._headers(s, {"Content-Type": ctype}), mp,
                )
            else:
                mp, ctype = multipart({"users": s.rack_to}, "file", "devoir.jpg", self.payloads["casier"], "image/jpeg")
                status, *_ = await c.request(
                    "POST", "/rack?thumbnail=120x120", self._headers(s, {"Content-Type": ctype}), mp
                )
            return status, c.sent, c.received, c.handshake_rtt_s


async def login(host: str, port: int, login_name: str, password: str) -> Session:
    form = f"email={_q(login_name)}&password={_q(password)}&callBack=%2F".encode()
    async with Conn(host, port) as c:
        status, _, cookies, _ = await c.request(
            "POST", "/auth/login", {"Content-Type": "application/x-www-form-urlencoded"}, form
        )
        jar = {}
        for ck in cookies:
            k, _, v = ck.split(";", 1)[0].partition("=")
            jar[k.strip()] = v.strip()
        if status >= 400 or "oneSessionId" not in jar:
            raise HttpError(f"login failed for a seeded account (HTTP {status})")
        s = Session("; ".join(f"{k}={v}" for k, v in jar.items()), jar.get("XSRF-TOKEN", ""))
        with contextlib.suppress(Exception):
            st, _, _, body = await c.request("GET", "/rack/users/available", {"Cookie": s.cookie})
            users = json.loads(body) if st == 200 else []
            if users:
                s.rack_to = str(users[0].get("id", ""))
        return s


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _emit(event: str, **kw) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


class Sampler:
    """Loopback byte counter every 10 ms (timestamps on the generator's clock)."""

    def __init__(self, t0: float):
        self.t0 = t0
        self.samples: list[tuple[float, int, int]] = []
        self.active = 0

    async def run(self):
        while True:
            self.samples.append((time.monotonic() - self.t0, read_lo_tx_bytes(), self.active))
            await asyncio.sleep(0.01)


async def _generate(spec: dict, out: Path) -> None:
    host, port = spec["host"], spec["port"]
    rng = random.Random(spec.get("seed", 1))
    deadline = time.monotonic() + 30
    while True:  # the staging ENT answers /healthz once ready
        try:
            async with Conn(host, port) as c:
                st, *_ = await c.request("GET", "/healthz", {})
            if st == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("staging ENT did not answer /healthz within 30 s")
        await asyncio.sleep(0.1)
    sessions = [await login(host, port, a["login"], a["password"]) for a in spec["accounts"]]
    payloads = {c["name"]: rng.randbytes(c["upload_bytes"]) for c in spec["classes"] if c["upload_bytes"]}
    # its own generator for session picks, so the arrival sequence depends on the seed only, not on timing
    client = EntClient(host, port, sessions, payloads, random.Random(spec.get("seed", 1) + 1))
    t0 = time.monotonic()
    _emit("clock", t0=t0)  # CLOCK_MONOTONIC is shared with the parent: it aligns its qdisc samples on it
    sampler = Sampler(t0)
    sampler_task = asyncio.create_task(sampler.run())
    records: list[dict] = []

    async def one(cls: str, step: int, intended: float, measured: bool) -> dict:
        rec = {"step": step, "cls": cls, "intended": intended, "start": time.monotonic() - t0,
               "measured": measured, "end": None, "sent": 0, "received": 0, "status": None, "error": None,
               "handshake_rtt": None}
        sampler.active += 1
        try:
            rec["status"], rec["sent"], rec["received"], rec["handshake_rtt"] = await client.transfer(cls)
            rec["end"] = time.monotonic() - t0
        except asyncio.CancelledError:
            rec["error"] = "cancelled"
        except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
            rec["error"] = type(exc).__name__ + ": " + str(exc)[:120]
            rec["end"] = time.monotonic() - t0
        finally:
            sampler.active -= 1
        return rec

    async def wait_idle(max_s: float = 5.0) -> None:
        """Let the link drain (no loopback bytes for 100 ms) so steps do not leak into each other."""
        end = time.monotonic() + max_s
        last, quiet_since = read_lo_tx_bytes(), time.monotonic()
        while time.monotonic() < end:
            await asyncio.sleep(0.05)
            now_b = read_lo_tx_bytes()
            if now_b != last:
                last, quiet_since = now_b, time.monotonic()
            elif time.monotonic() - quiet_since >= 0.1:
                return

    if spec["mode"] == "calibrate":
        _emit("calibrate_start")
        for c in spec["classes"]:
            for _ in range(spec["calibration_repeats"][c["name"]]):
                await wait_idle()
                b0 = read_lo_tx_bytes()
                rec = await one(c["name"], -1, time.monotonic() - t0, True)
                await wait_idle()
                rec["wire"] = read_lo_tx_bytes() - b0
                records.append(rec)
        _emit("calibrate_end")
    else:
        max_inflight = spec.get("max_inflight", 400)
        for i, step in enumerate(spec["steps"]):
            await wait_idle()
            names = [c["name"] for c in spec["classes"]]
            probs = [c["share"] for c in spec["classes"]]
            lam = step["arrival_rate"]
            start = time.monotonic() - t0
            m_from, m_to = start + step["warmup_s"], start + step["warmup_s"] + step["duration_s"]
            hard_end = m_to + step["drain_limit_s"]
            _emit("step_start", step=i, rho=step["rho"], t=start, measure_from=m_from, measure_to=m_to)
            tasks: set[asyncio.Task] = set()
            measured_pending: set[asyncio.Task] = set()
            dropped = 0
            t_next = start + rng.expovariate(lam)
            last_progress = start
            while True:
                now = time.monotonic() - t0
                if now >= m_to and (not measured_pending or now >= hard_end):
                    break
                if t_next <= now:
                    measured = m_from <= t_next < m_to
                    if len(tasks) >= max_inflight:
                        dropped += 1
                    else:
                        # i.i.d. classes: each class then arrives as its own Poisson process, as the
                        # M/G/1-PS model assumes (a stratified, round-robin mix would make casiers nearly
                        # periodic and flatter the model: tried, rejected)
                        cls = rng.choices(names, probs)[0]
                        task = asyncio.create_task(one(cls, i, t_next, measured))
                        tasks.add(task)
                        if measured:
                            measured_pending.add(task)
                    t_next += rng.expovariate(lam)
                    continue
                done = [t for t in tasks if t.done()]
                for t in done:
                    tasks.discard(t)
                    measured_pending.discard(t)
                    records.append(t.result())
                if now - last_progress >= 5:
                    last_progress = now
                    _emit("progress", step=i, t=now - start, in_flight=len(tasks),
                          measured_pending=len(measured_pending), done=len(records))
                await asyncio.sleep(max(0.0, min(t_next - now, 0.02)))
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    records.append(await t)
            end = time.monotonic() - t0
            _emit("step_end", step=i, t=end, dropped=dropped, unfinished=len(measured_pending))
            step["dropped"] = dropped
            step["t_start"], step["t_end"] = start, end
    sampler_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler_task
    (out / f"{spec['mode']}-transfers.json").write_text(json.dumps({"records": records, "steps": spec["steps"]}))
    with open(out / f"{spec['mode']}-link.csv", "w") as fh:
        fh.write("t_s,lo_tx_bytes,active\n")
        for t, b, a in sampler.samples:
            fh.write(f"{t:.4f},{b},{a}\n")
    _emit("done", records=len(records))


def _die_with_parent() -> None:
    """Linux PR_SET_PDEATHSIG: if the orchestrator is killed outright, the load stops too."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def generator_main(argv: list[str]) -> int:
    _die_with_parent()
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    try:
        asyncio.run(_generate(spec, out))
    except KeyboardInterrupt:
        return 130
    return 0


# ----------------------------------------------------------------------------------------------------------
# Orchestration (runs outside the namespace, as root)


@dataclass
class Options:
    rate_bps: float = 20e6
    utilisations: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)
    out: Path = Path("results/validate-link")
    duration_s: float = 60.0
    warmup_s: float | None = None  # default: 10 % of the step, at least 2 s
    drain_limit_s: float | None = None  # default: one step duration
    latency_s: float = 0.05
    burst_bytes: int | None = None  # default: 10 full packets
    seed: int = 1
    congestion_control: str | None = None  # None: the kernel default the namespace inherits
    queue: str = "fair"  # "fair": per-flow DRR under the tbf (PS-like); "fifo": the tbf's own drop-tail FIFO
    accounts: int = 24
    staging_config: Path | None = None
    classes: tuple[SizeClass, ...] = DEFAULT_CLASSES
    calibration_repeats: dict = field(default_factory=lambda: {"page": 6, "message": 3, "casier": 2})

    def resolved_warmup(self, rho: float = 0.0, mean_service_s: float = 0.0) -> float:
        """User's choice, else 10 % of the step (>= 2 s), stretched up to one step duration towards the queue's
        relaxation time E[S]/(1 - sqrt(rho))^2, so that high loads are measured in their steady state."""
        if self.warmup_s is not None:
            return self.warmup_s
        base = max(2.0, 0.1 * self.duration_s)
        if 0 < rho < 1 and mean_service_s > 0:
            base = max(base, min(self.duration_s, mean_service_s / (1 - math.sqrt(rho)) ** 2))
        return base

    def resolved_drain(self) -> float:
        return self.drain_limit_s if self.drain_limit_s is not None else self.duration_s

    def resolved_burst(self) -> int:
        return self.burst_bytes if self.burst_bytes is not None else 10 * WIRE_PACKET


STAGING_PORT = 8000
SATURATION_STEP_S = 10.0  # a step at rho >= 1 measures only that the backlog grows
SATURATION_DRAIN_S = 5.0  # inside our own namespace every port is free


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def export_accounts(opts: Options, workdir: Path) -> list[dict]:
    """Seeded staging accounts (students first); the file stays in the work dir, never in the results."""
    path = workdir / "accounts.csv"
    res = _run([sys.executable, "-m", "entload", "staging", "--export-accounts", str(path),
                "--seed", str(opts.seed), "--students", str(max(opts.accounts, 10))], check=False, timeout=60)
    if res.returncode != 0 or not path.exists():
        raise RuntimeError("could not export staging accounts: " + (res.stderr or res.stdout).strip()[-300:])
    rows = []
    for line in path.read_text().splitlines():
        parts = line.strip().split(",")
        if len(parts) >= 3 and parts[0] != "login":
            rows.append({"login": parts[0], "password": parts[1], "persona": parts[2]})
    students = [r for r in rows if "student" in r["persona"].lower()] or rows
    if not students:
        raise RuntimeError(f"{path}: no accounts exported")
    return [{"login": r["login"], "password": r["password"]} for r in students[: opts.accounts]]


def run_generator(ns: Netns, spec: dict, workdir: Path, private: Path, timeout_s: float, on_event=None) -> None:
    spec_path = private / f"{spec['mode']}-spec.json"  # holds the accounts: private folder only
    spec_path.write_text(json.dumps(spec))
    public = {k: v for k, v in spec.items() if k != "accounts"}
    (workdir / f"{spec['mode']}-spec.json").write_text(json.dumps(public, indent=1))
    proc = ns.popen(
        [sys.executable, "-m", "entload.validate_link", "generate", str(spec_path), str(workdir)],
        stdout=subprocess.PIPE, stderr=open(workdir / f"{spec['mode']}-generator.err", "wb"), text=True,
    )
    deadline = time.monotonic() + timeout_s
    lines: list[str] = []

    def _reader():
        for line in proc.stdout:
            lines.append(line)

    th = threading.Thread(target=_reader, daemon=True)
    th.start()
    seen = 0
    while proc.poll() is None or seen < len(lines) or th.is_alive():
        while seen < len(lines):
            line = lines[seen]
            seen += 1
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                if on_event:
                    on_event(ev)
        if proc.poll() is not None and not th.is_alive() and seen >= len(lines):
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"load generator exceeded its time bound ({timeout_s:.0f} s)")
        time.sleep(0.05)
    if proc.returncode != 0:
        err = (workdir / f"{spec['mode']}-generator.err").read_text(errors="replace").strip()
        raise RuntimeError(f"load generator failed (exit {proc.returncode}): {err[-400:]}")


def queue_description(ns: Netns) -> str:
    if ns.queue == "fifo":
        return f"fifo (the tbf's drop-tail bfifo, {int(ns.rate_bps * ns.latency_s / 8)} bytes)"
    return (f"fair (HTB deficit round robin under the tbf, quantum {WIRE_PACKET} B, 2 x {FAIR_BUCKETS} per-flow "
            f"leaves hashed on the client port, bfifo {ns.leaf_limit_bytes()} bytes per leaf)")


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def calibrate_classes(cal: dict, opts: Options) -> dict:
    """Per class: payload bytes x, wire bytes w (what tbf counts: headers, handshakes, ACKs), unloaded time."""
    out = {}
    for c in opts.classes:
        recs = [r for r in cal["records"] if r["cls"] == c.name and r["error"] is None and r["end"] is not None]
        if not recs:
            raise RuntimeError(f"calibration: no successful {c.name} transfer (see the staging log)")
        bad = [r for r in recs if (r["status"] or 0) >= 400]
        if bad:
            raise RuntimeError(f"calibration: the staging ENT answered HTTP {bad[0]['status']} to a {c.name} transfer")
        n = len(recs)
        out[c.name] = {
            "payload_bytes": sum(r["sent"] + r["received"] for r in recs) / n,
            "wire_bytes": sum(r["wire"] for r in recs) / n,
            "unloaded_s": sum(r["end"] - r["start"] for r in recs) / n,
            "handshake_rtt_s": _mean([r.get("handshake_rtt") for r in recs]),
            "n": n,
        }
    return out


def collect(opts: Options, workdir: Path) -> dict:
    """Create the link, run staging + generator inside it, return the raw measurements.

    Measurements go to `workdir`; the seeded accounts and the specs that carry their passwords stay in a
    private temporary folder that is deleted at the end (passwords never reach a results folder)."""
    import tempfile

    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="entload-validate-") as private:
        return _collect(opts, workdir, Path(private))


def _collect(opts: Options, workdir: Path, private: Path) -> dict:
    clean_stale_namespaces()
    accounts = export_accounts(opts, private)
    ns = Netns(opts.rate_bps, opts.resolved_burst(), opts.latency_s, queue=opts.queue,
               server_ports=(STAGING_PORT, STAGING_PORT + 1))  # the staging ENT and its Enseigno listener
    raw: dict = {"namespace": ns.name, "tbf": " ".join(ns.tbf_args()), "queue": queue_description(ns)}
    with cleanup_on_signals():
        try:
            ns.create()
            _say(f"link: namespace {ns.name}, lo mtu {MTU} gso_max_segs 1, {raw['tbf']}, queue: {raw['queue']}")
            if opts.congestion_control:  # per-namespace sysctl: the host's own setting is untouched
                ns.exec(["sh", "-c", f"echo {opts.congestion_control} > /proc/sys/net/ipv4/tcp_congestion_control"])
            raw["congestion_control"] = ns.exec(
                ["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]).stdout.strip()
            cmd = [
                sys.executable, "-m", "entload", "staging", "--host", "127.0.0.1", "--port", str(STAGING_PORT),
                "--enseigno-port", str(STAGING_PORT + 1), "--seed", str(opts.seed),
                "--students", str(max(opts.accounts, 10)),
            ]
            if opts.staging_config:
                cmd += ["--config", str(opts.staging_config)]
            ns.popen(cmd, stdout=open(workdir / "staging.log", "wb"), stderr=subprocess.STDOUT)
            base = {"host": "127.0.0.1", "port": STAGING_PORT, "seed": opts.seed, "accounts": accounts,
                    "classes": [{"name": c.name, "upload_bytes": c.upload_bytes, "share": c.share}
                                for c in opts.classes]}
            _say("calibrating: each size class alone on the idle link")
            run_generator(ns, {**base, "mode": "calibrate", "steps": [],
                               "calibration_repeats": opts.calibration_repeats}, workdir, private, 120)
            cal = json.loads((workdir / "calibrate-transfers.json").read_text())
            sizes = calibrate_classes(cal, opts)
            mean_wire = sum(c.share * sizes[c.name]["wire_bytes"] for c in opts.classes)
            steps = []
            for rho in opts.utilisations:
                # at or above capacity the only result is "saturation": a short step confirms it
                sat = rho >= 1
                steps.append({"rho": rho, "arrival_rate": rho * opts.rate_bps / (8 * mean_wire),
                              "warmup_s": opts.resolved_warmup(rho, 8 * mean_wire / opts.rate_bps),
                              "duration_s": min(opts.duration_s, SATURATION_STEP_S) if sat else opts.duration_s,
                              "drain_limit_s": min(opts.resolved_drain(), SATURATION_DRAIN_S) if sat
                              else opts.resolved_drain()})
            qstats: dict = {}

            clock: dict = {}

            def on_event(ev):
                if ev["event"] == "clock":
                    clock["t0"] = ev["t0"]
                elif ev["event"] == "step_start":
                    qstats[ev["step"]] = {"start": ns.qdisc_stats(), "loadavg_start": os.getloadavg()[0]}
                    if ns.queue == "fair":
                        qstats[ev["step"]]["leaves_start"] = ns.fair_leaf_stats()
                    _say(f"step {ev['step'] + 1}/{len(steps)}: utilisation {ev['rho']:g}, "
                         f"{steps[ev['step']]['arrival_rate']:.2f} transfers/s")
                elif ev["event"] == "step_end":
                    qstats[ev["step"]]["end"] = ns.qdisc_stats()
                    qstats[ev["step"]]["loadavg_end"] = os.getloadavg()[0]
                    if ns.queue == "fair":
                        qstats[ev["step"]]["leaves_end"] = ns.fair_leaf_stats()
                    if ev["unfinished"]:
                        _say(f"  {ev['unfinished']} measured transfers unfinished at the drain limit")
                elif ev["event"] == "progress":
                    _say(f"  t={ev['t']:.0f}s in flight {ev['in_flight']}, measured pending "
                         f"{ev['measured_pending']}")

            bound = 60 + sum(s["warmup_s"] + s["duration_s"] + s["drain_limit_s"] + 10 for s in steps)
            stop = threading.Event()
            backlog: list = []
            sampler = threading.Thread(target=lambda: backlog.extend(ns.sample_backlog(stop)), daemon=True)
            sampler.start()
            try:
                run_generator(ns, {**base, "mode": "steps", "steps": steps}, workdir, private, bound, on_event)
            finally:
                stop.set()
                sampler.join(5)
            t0 = clock.get("t0", 0.0)
            with open(workdir / "steps-qdisc.csv", "w") as fh:
                fh.write("t_s,backlog_bytes,drops\n")
                for t, b, d in backlog:
                    fh.write(f"{t - t0:.4f},{b},{d}\n")
            data = json.loads((workdir / "steps-transfers.json").read_text())
            (workdir / "raw.json").write_text(json.dumps({**raw, "sizes": sizes, "steps": data["steps"],
                                                           "qdisc": {str(k): v for k, v in qstats.items()},
                                                           "link_csv": "steps-link.csv",
                                                           "qdisc_csv": "steps-qdisc.csv"}, indent=1))
            raw.update({"sizes": sizes, "steps": data["steps"], "records": data["records"],
                        "qdisc": {str(k): v for k, v in qstats.items()},
                        "link_csv": str(workdir / "steps-link.csv"),
                        "qdisc_csv": str(workdir / "steps-qdisc.csv")})
        finally:
            ns.destroy()
    return raw



# ----------------------------------------------------------------------------------------------------------
# Analysis: measured against predicted


def _read_link_csv(path: str):
    import numpy as np

    arr = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _window_sums(times, weights, t_from: float, t_to: float, window: float):
    import numpy as np

    n = int((t_to - t_from) // window)
    if n < 2:
        return np.zeros(0)
    edges = t_from + window * np.arange(n + 1)
    sums, _ = np.histogram(times, bins=edges, weights=weights)
    return sums


def _counter_windows(ts, bytes_, t_from: float, t_to: float, window: float):
    import numpy as np

    n = int((t_to - t_from) // window)
    if n < 1 or len(ts) < 2:
        return np.zeros(0)
    edges = t_from + window * np.arange(n + 1)
    return np.diff(np.interp(edges, ts, bytes_))


def analyse(raw: dict, opts: Options) -> dict:
    """validation.json content: per utilisation and size class, the model against the measurement."""
    import numpy as np

    from capacity.dimension import overflow_probability
    from capacity.latency import ps_mean_transfer_time

    rate = opts.rate_bps
    sizes = raw["sizes"]
    shares = {c.name: c.share for c in opts.classes}
    mean_payload = sum(shares[k] * sizes[k]["payload_bytes"] for k in shares)
    mean_wire = sum(shares[k] * sizes[k]["wire_bytes"] for k in shares)
    efficiency = mean_payload / mean_wire
    c_eff = rate * efficiency  # payload bits/s the shaped link carries for this mix
    ts, lo_bytes, _active = _read_link_csv(raw["link_csv"])
    hs_idle_s = _mean([sizes[c.name].get("handshake_rtt_s") for c in opts.classes])
    hs_idle = hs_idle_s or 0.0
    result = {
        "schema_version": SCHEMA_VERSION,
        "link": {"namespace": raw.get("namespace"), "rate_bps": rate, "effective_bps": c_eff, "payload_efficiency": efficiency, "mtu": MTU,
                 "tbf": raw["tbf"], "queue": raw.get("queue"), "congestion_control": raw.get("congestion_control"),
                 "handshake_rtt_idle_s": hs_idle_s},
        "classes": {c.name: {"label": c.label, "share": c.share, **sizes[c.name],
                             "overhead_s": sizes[c.name]["unloaded_s"] - 8 * sizes[c.name]["payload_bytes"] / c_eff}
                    for c in opts.classes},
        "steps": [],
    }
    for i, step in enumerate(raw["steps"]):
        t_start = step["t_start"]
        m_from = t_start + step["warmup_s"]
        m_to = m_from + step["duration_s"]
        recs = [r for r in raw["records"] if r["step"] == i]
        measured = [r for r in recs if r["measured"]]
        # offered load that really arrived in the measurement window (Poisson: it differs from the target)
        arrivals = [r for r in recs if m_from <= r["intended"] < m_to]
        offered_wire_bits = 8 * sum(sizes[r["cls"]]["wire_bytes"] for r in arrivals)
        rho_realised = offered_wire_bits / (rate * step["duration_s"])
        carried = _counter_windows(ts, lo_bytes, m_from, m_to, step["duration_s"])
        rho_carried = float(8 * carried.sum() / (rate * step["duration_s"])) if carried.size else None
        queue_delay = None
        if raw.get("qdisc_csv") and Path(raw["qdisc_csv"]).exists():
            q = np.loadtxt(raw["qdisc_csv"], delimiter=",", skiprows=1, ndmin=2)
            sel = q[(q[:, 0] >= m_from) & (q[:, 0] < m_to)] if q.size else q
            if sel.size:
                queue_delay = float(8 * sel[:, 1].mean() / rate)
        unfinished = [r for r in measured if r["error"] == "cancelled"]
        failed = [r for r in measured if r["error"] not in (None, "cancelled") or (r["status"] or 0) >= 400]
        predicted_saturation = step["rho"] >= 1 or rho_realised >= 1
        measured_saturation = bool(unfinished)
        # M/G/1 relaxation time ~ E[S] / (1 - sqrt(rho))^2 (M/M/1 form): a step whose warm-up is shorter starts
        # from an empty link that has not reached its steady state, and its measured means come out low
        mean_service = mean_wire * 8 / rate
        relax = mean_service / (1 - math.sqrt(rho_realised)) ** 2 if rho_realised < 1 else math.inf
        entry = {
            "rho": step["rho"], "rho_realised": rho_realised, "rho_carried": rho_carried,
            "relaxation_time_s": relax if math.isfinite(relax) else None,
            "stationary": bool(step["warmup_s"] >= relax),
            "arrival_rate_per_s": step["arrival_rate"], "duration_s": step["duration_s"],
            "warmup_s": step["warmup_s"], "transfers": len(measured), "unfinished": len(unfinished),
            "failed": len(failed), "dropped": step.get("dropped", 0),
            "status": "saturation" if (predicted_saturation or measured_saturation) else "ok",
            "predicted_status": "saturation" if predicted_saturation else "ok",
            "measured_status": "saturation" if measured_saturation else "ok",
            "qdisc": _qdisc_delta(raw.get("qdisc", {}).get(str(i), {})),
            "fair_leaves_used": _leaves_used(raw.get("qdisc", {}).get(str(i), {})),
            "queue_delay_mean_s": queue_delay,
            # 1-min load average of the host: CPU contention inflates short transfer times (not the link's doing)
            "host_loadavg": [raw.get("qdisc", {}).get(str(i), {}).get(k) for k in ("loadavg_start", "loadavg_end")],
            "classes": {}, "overflow": [],
        }
        # PS replayed on every arrival of the step (warm-up and drain included: they share the link)
        replay = {} if predicted_saturation else dict(zip(
            (id(r) for r in recs), ps_replay([(r["intended"], 8 * sizes[r["cls"]]["payload_bytes"]) for r in recs],
                                             c_eff), strict=True))
        for c in opts.classes:
            ok = [r for r in measured if r["cls"] == c.name and r["error"] is None and (r["status"] or 0) < 400]
            times = np.array([r["end"] - r["intended"] for r in ok])
            x_bits = 8 * sizes[c.name]["payload_bytes"]
            ce: dict = {"n": int(times.size)}
            overhead = sizes[c.name]["unloaded_s"] - x_bits / c_eff
            # the queueing delay one round trip of *this class's* transfers met: the kernel's SYN -> SYN-ACK RTT
            # of their own connections in this step, less the idle link's (both measured, nothing fitted)
            hs = _mean([r.get("handshake_rtt") for r in ok])
            rt_queueing = max(0.0, hs - hs_idle) if hs is not None else 2 * (queue_delay or 0.0)
            ce["handshake_rtt_mean_s"] = hs
            ce["round_trip_queueing_s"] = rt_queueing
            latency_term = ROUND_TRIPS.get(c.name, 0) * rt_queueing
            if predicted_saturation:
                ce["predicted_mean_s"] = ce["predicted_corrected_s"] = "saturation"
            else:
                ps = float(ps_mean_transfer_time(x_bits, c_eff, rho_realised))
                ce["predicted_mean_s"] = ps
                ce["predicted_corrected_s"] = ps + overhead + latency_term
                ce["correction_s"] = {"idle_overhead": overhead, "round_trips": latency_term}
                ce["predicted_mean_s_at_target_rho"] = float(ps_mean_transfer_time(x_bits, c_eff, step["rho"]))
                if ok:
                    ce["predicted_replay_s"] = sum(replay[id(r)] for r in ok) / len(ok) + overhead + latency_term
            if measured_saturation:
                ce["measured_mean_s"] = "saturation"
                ce["completed"] = int(times.size)
            elif times.size:
                ce["measured_mean_s"] = float(times.mean())
                ce["measured_p95_s"] = float(np.percentile(times, 95))
                ce["measured_sem_s"] = float(times.std(ddof=1) / math.sqrt(times.size)) if times.size > 1 else None
            else:
                ce["measured_mean_s"] = None
            if isinstance(ce.get("predicted_mean_s"), float) and isinstance(ce.get("measured_mean_s"), float):
                ce["error"] = ce["predicted_mean_s"] / ce["measured_mean_s"] - 1
                ce["error_corrected"] = ce["predicted_corrected_s"] / ce["measured_mean_s"] - 1
                if "predicted_replay_s" in ce:
                    ce["error_replay"] = ce["predicted_replay_s"] / ce["measured_mean_s"] - 1
            entry["classes"][c.name] = ce
        # all classes together: by Little's law this is the mean number of transfers on the link over lambda
        done = {k: v for k, v in entry["classes"].items() if isinstance(v.get("measured_mean_s"), float)}
        n_all = sum(v["n"] for v in done.values())
        if n_all and not predicted_saturation and len(done) == len(entry["classes"]):
            agg = {"n": n_all}
            for key in ("measured_mean_s", "predicted_mean_s", "predicted_corrected_s", "predicted_replay_s"):
                agg[key] = sum(v["n"] * v.get(key, math.nan) for v in done.values()) / n_all
            agg["error"] = agg["predicted_mean_s"] / agg["measured_mean_s"] - 1
            agg["error_corrected"] = agg["predicted_corrected_s"] / agg["measured_mean_s"] - 1
            agg["error_replay"] = agg["predicted_replay_s"] / agg["measured_mean_s"] - 1
            # standard error of the measured mean (classes are independent samples)
            agg["measured_sem_s"] = math.sqrt(sum((v["n"] * (v.get("measured_sem_s") or 0.0)) ** 2
                                                  for v in done.values())) / n_all
            entry["all_transfers"] = agg
        # overflow of short windows: offered payload bits per window (arrival timestamps) against C_eff * T
        for window in WINDOWS_S:
            a_times = np.array([r["intended"] for r in arrivals])
            a_bits = np.array([8 * sizes[r["cls"]]["payload_bytes"] for r in arrivals])
            sums = _window_sums(a_times, a_bits, m_from, m_to, window)
            lo_w = _counter_windows(ts, lo_bytes, m_from, m_to, window)
            ov = {"window_s": window, "windows": int(sums.size)}
            if sums.size >= 2:
                mu = float(sums.mean() / window)
                var = float(sums.var(ddof=1))
                ov.update({
                    "mean_bps": mu, "var_bits2": var,
                    "predicted": float(overflow_probability(mu, var, window, c_eff)),
                    "measured": float(np.mean(sums > c_eff * window)),
                    "link_full_fraction": float(np.mean(8 * lo_w >= 0.95 * rate * window)) if lo_w.size else None,
                })
            entry["overflow"].append(ov)
        result["steps"].append(entry)
    return result


def ps_replay(arrivals: list[tuple[float, float]], capacity_bps: float) -> list[float]:
    """Exact processor sharing of a link of `capacity_bps` fed with these (arrival time, bits): each transfer's
    sojourn. The model's mechanism on the step's *own* arrivals, where x / (C(1 - rho)) is its stationary mean:
    the two differ by how far one step's arrival sample is from the long-run average."""
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])
    remaining: dict[int, float] = {}
    sojourn = [math.nan] * len(arrivals)
    t, k = 0.0, 0
    while k < len(order) or remaining:
        t_arrival = arrivals[order[k]][0] if k < len(order) else math.inf
        t_finish, first = math.inf, None
        if remaining:
            first = min(remaining, key=remaining.get)
            t_finish = t + remaining[first] * len(remaining) / capacity_bps
        now = min(t_arrival, t_finish)
        if remaining:
            served = (now - t) * capacity_bps / len(remaining)
            for i in remaining:
                remaining[i] -= served
        t = now
        if t_arrival <= t_finish:
            i = order[k]
            remaining[i] = arrivals[i][1]
            k += 1
        else:
            for i in [j for j, left in remaining.items() if j == first or left <= 1e-9 * arrivals[j][1]]:
                sojourn[i] = t - arrivals[i][0]
                del remaining[i]
    return sojourn


def _leaves_used(q: dict) -> dict | None:
    """Fair queue: how many per-flow leaves carried packets in the step, and how many were dropped in them."""
    if "leaves_end" not in q:
        return None
    a, b = q.get("leaves_start") or {}, q["leaves_end"]
    used = {k: [v[i] - (a.get(k) or [0, 0, 0])[i] for i in range(3)] for k, v in b.items()}
    used = {k: v for k, v in used.items() if v[1] > 0}
    return {"leaves": len(used), "drops": sum(v[2] for v in used.values())}


def _qdisc_delta(q: dict) -> dict:
    a, b = q.get("start") or {}, q.get("end") or {}
    return {k: (b.get(k) or 0) - (a.get(k) or 0) for k in ("bytes", "packets", "drops", "overlimits") if k in b}



# ----------------------------------------------------------------------------------------------------------
# Outputs


def _fmt_s(v) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "–"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def _fmt_ms1(v) -> str:
    return "–" if not isinstance(v, float) else f"{v * 1000:.1f} ms"


def _fmt_err(v) -> str:
    return "–" if v is None else f"{v * 100:+.0f} %"


def markdown_table(res: dict) -> str:
    link = res["link"]
    lines = [
        f"Link: {link['tbf']} on a namespace loopback at MTU {link['mtu']} (one packet per skb), queue {link.get('queue') or 'fifo'} "
        f"(TCP {link.get('congestion_control')}); effective rate C = {link['effective_bps'] / 1e6:.2f} Mbit/s "
        f"of HTTP payload ({link['payload_efficiency'] * 100:.1f} % of the tbf rate).",
        "",
        "| ρ target | ρ realised | class | n | measured mean | measured p95 | PS x/(C(1−ρ)) | error | "
        "queueing per round trip | PS + correction | error | PS on the step's arrivals + correction | error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for st in res["steps"]:
        mark = "" if st.get("stationary", True) or st["status"] == "saturation" else " †"
        rows = list(st["classes"].items())
        if st.get("all_transfers"):
            rows.append(("**all**", st["all_transfers"]))
        for name, c in rows:
            lines.append(
                f"| {st['rho']:g} | {st['rho_realised']:.2f}{mark} | {name} | {c['n']} | {_fmt_s(c.get('measured_mean_s'))} | "
                f"{_fmt_s(c.get('measured_p95_s'))} | {_fmt_s(c.get('predicted_mean_s'))} | {_fmt_err(c.get('error'))} | "
                f"{_fmt_ms1(c.get('round_trip_queueing_s'))} | "
                f"{_fmt_s(c.get('predicted_corrected_s'))} | {_fmt_err(c.get('error_corrected'))} | "
                f"{_fmt_s(c.get('predicted_replay_s'))} | {_fmt_err(c.get('error_replay'))} |"
            )
    lines += ["", "Error = predicted / measured − 1. Correction = idle overhead of the class (calibration) + "
              "round trips × the queueing delay of one round trip of the class in the step (the kernel's "
              "SYN→SYN-ACK RTT of its own connections − the idle link's; docs/validate-link.md). "
              "PS on the step's arrivals: exact processor sharing replayed on the step's own arrival times and "
              "sizes (the model's mechanism without the stationary average). "
              "† the warm-up was shorter than the queue's relaxation time E[S]/(1−√ρ)²: the step had not reached its "
              "steady state, so its measured means are biased low."]
    lines += ["", "| ρ target | window T | predicted P(A(T) > C·T) | measured (offered) | link full (≥95 %) |",
              "| --- | --- | --- | --- | --- |"]
    for st in res["steps"]:
        for ov in st["overflow"]:
            if "predicted" not in ov:
                continue
            lf = ov.get("link_full_fraction")
            lines.append(f"| {st['rho']:g} | {ov['window_s'] * 1000:.0f} ms | {ov['predicted']:.3f} | "
                         f"{ov['measured']:.3f} | {'–' if lf is None else f'{lf:.3f}'} |")
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> None:
    """Measured against predicted: mean transfer time per class and utilisation, and window overflow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    markers = {"page": "o", "message": "s", "casier": "^"}
    lo, hi = math.inf, 0.0
    for st in res["steps"]:
        for name, c in st["classes"].items():
            m = c.get("measured_mean_s")
            for key, face in (("predicted_mean_s", "none"), ("predicted_corrected_s", None),
                              ("predicted_replay_s", "replay")):
                p = c.get(key)
                if face == "replay":
                    if isinstance(m, float) and isinstance(p, float) and m > 0 and p > 0:
                        color = f"C{list(markers).index(name) if name in markers else 3}"
                        ax1.scatter(p, m, marker="x", color=color, s=18, linewidths=0.8)
                    continue
                if isinstance(m, float) and isinstance(p, float) and m > 0 and p > 0:
                    ax1.scatter(p, m, marker=markers.get(name, "x"), facecolors=face,
                                edgecolors=f"C{list(markers).index(name) if name in markers else 3}",
                                color=None if face else f"C{list(markers).index(name) if name in markers else 3}")
                    ax1.annotate(f"{st['rho_realised']:.2f}", (p, m), fontsize=7, xytext=(3, 3),
                                 textcoords="offset points")
                    lo, hi = min(lo, p, m), max(hi, p, m)
    if hi > 0:
        xs = [lo / 1.5, hi * 1.5]
        ax1.plot(xs, xs, "k-", lw=0.8, label="measured = predicted")
        ax1.fill_between(xs, [x / 1.2 for x in xs], [x / 0.8 for x in xs], color="grey", alpha=0.15,
                         label="prediction within ±20 %")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    for name, mk in markers.items():
        ax1.scatter([], [], marker=mk, color=f"C{list(markers).index(name)}", label=f"{name} (open: PS, filled: + correction)")
    ax1.scatter([], [], marker="x", color="k", s=18, label="x: PS on the step's arrivals + correction")
    ax1.set_xlabel("predicted mean transfer time (s)")
    ax1.set_ylabel("measured mean transfer time (s)")
    ax1.set_title("Mean transfer time, PS x / (C(1−ρ)); labels = realised ρ")
    ax1.legend(fontsize=7, loc="upper left")
    for k, window in enumerate(WINDOWS_S):
        pts = [(ov["predicted"], ov["measured"], st["rho"]) for st in res["steps"] for ov in st["overflow"]
               if ov["window_s"] == window and "predicted" in ov]
        if pts:
            ax2.scatter([p for p, _, _ in pts], [m for _, m, _ in pts], color=f"C{k}", label=f"T = {window:g} s")
            for p, m, r in pts:
                ax2.annotate(f"{r:g}", (p, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax2.plot([0, 1], [0, 1], "k-", lw=0.8)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("predicted P(A(T) > C·T) (Gaussian, μ and v(T))")
    ax2.set_ylabel("measured fraction of windows")
    ax2.set_title("Overflow of short windows; labels = target ρ")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(res: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "validation.json", "markdown": out / "validation.md", "plot": out / "validation.png"}
    paths["json"].write_text(json.dumps(res, indent=2) + "\n")
    paths["markdown"].write_text(markdown_table(res))
    plot(res, paths["plot"])
    return paths


def validate(opts: Options) -> tuple[dict, dict[str, Path]]:
    """The whole command: link, measurements, model comparison, outputs (raw data kept under OUT/raw)."""
    raw = collect(opts, opts.out / "raw")
    res = analyse(raw, opts)
    res["command"] = {"rate_bps": opts.rate_bps, "utilisations": list(opts.utilisations),
                      "duration_per_step_s": opts.duration_s, "warmup_s": opts.resolved_warmup(),
                      "drain_limit_s": opts.resolved_drain(), "seed": opts.seed, "queue": opts.queue}
    return res, write_outputs(res, opts.out)


if __name__ == "__main__" and len(sys.argv) >= 4 and sys.argv[1] == "generate":
    raise SystemExit(generator_main(sys.argv[2:]))
