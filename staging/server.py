"""Process model: the parent binds both ports, forks N workers that each serve the ENT and Enseigno with
real uvicorn (httptools + uvloop) on the inherited sockets, prints `ready` once every worker is up, and
stops them all on SIGINT/SIGTERM.

Binding in the parent makes "port in use" a clean error before anything starts, and lets the workers share
one accept queue per port, as `uvicorn --workers` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import time

from staging.accounts import Directory
from staging.config import RUNTIME_KEYS
from staging.content import Content
from staging.shared import SharedState


class BindError(OSError):
    """A port could not be bound; `option` names the command-line option."""

    def __init__(self, option: str, host: str, port: int, reason: str):
        super().__init__(f"{option} {port}: cannot listen on {host}:{port} ({reason})")
        self.option = option


def bind(host: str, port: int, option: str) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise BindError(option, host, port, f"cannot resolve: {exc}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == 98 else (exc.strerror or str(exc))
        raise BindError(option, host, port, reason) from None
    sock.set_inheritable(True)
    return sock


def enseigno_log_path(path: str | None) -> str | None:
    """Enseigno's own combined log, next to the ENT's: access.log -> access-enseigno.log."""
    if not path:
        return None
    root, ext = os.path.splitext(path)
    return f"{root}-enseigno{ext or '.log'}"


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _worker(index, socks, settings, directory, content, shared, secret, access_log, ready) -> None:
    """One worker process: both apps in one uvloop event loop."""
    import uvicorn
    import uvloop
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from staging.core import AccessLog, Context
    from staging.enseigno import EnseignoApp
    from staging.ent import EntApp

    class Protocol(HttpToolsProtocol):
        """uvicorn's httptools protocol, exposing the transport so a fault can reset the connection."""

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["_entload_transport"] = self.transport

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # the worker handles signals itself, for both servers
            yield

    # the parent forked with SIGINT/SIGTERM blocked: restore default handling, then let them in
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

    async def main() -> None:
        ctx = Context(settings, directory, content, shared, secret, index, access_log)
        ent_log, ens_log = AccessLog(access_log), AccessLog(enseigno_log_path(access_log))
        apps = [EntApp(ctx, ent_log), EnseignoApp(ctx, ens_log)]
        servers = [
            Server(uvicorn.Config(app, http=Protocol, lifespan="off", access_log=False, log_level="warning",
                                  server_header=False, timeout_keep_alive=30, backlog=2048,
                                  timeout_graceful_shutdown=5))
            for app in apps
        ]
        loop = asyncio.get_running_loop()

        def stop() -> None:
            for s in servers:
                s.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, socks, strict=True)]
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        else:
            ready.set()
        try:
            while not all(t.done() for t in tasks):
                await asyncio.sleep(0.5)
                ent_log.flush()
                ens_log.flush()
                ctx.publish()
        finally:
            ent_log.close()
            ens_log.close()
            ctx.publish()
        for t in tasks:
            t.result()

    uvloop.run(main())


def serve(settings: dict, host: str, port: int, enseigno_port: int, workers: int, seed: int, students: int,
          access_log: str | None, out=print) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code. Raises BindError before starting anything."""
    t0 = time.monotonic()
    directory = Directory(students, seed, settings["accounts"])
    ent_sock = bind(host, port, "--port")
    try:
        ens_sock = bind(host, enseigno_port, "--enseigno-port")
    except BindError:
        ent_sock.close()
        raise
    port, enseigno_port = ent_sock.getsockname()[1], ens_sock.getsockname()[1]
    shared = SharedState(settings["session_slots"], directory.n_users, workers,
                         {k: settings[k] for k in RUNTIME_KEYS})
    content = Content(seed, settings["sizes"])
    secret = os.urandom(32)
    if access_log:
        open(access_log, "a").close()
    ctx = multiprocessing.get_context("fork")
    readies = [ctx.Event() for _ in range(workers)]
    stopping = {"sig": None}

    def on_signal(sig, _frame) -> None:
        stopping["sig"] = sig

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = []
    try:
        # block the stop signals while forking, so no worker runs with the parent's handler
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        for w in range(workers):
            p = ctx.Process(target=_worker, name=f"staging-worker-{w}", daemon=False,
                            args=(w, [ent_sock, ens_sock], settings, directory, content, shared, secret,
                                  access_log, readies[w]))
            p.start()
            procs.append(p)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        deadline = time.monotonic() + 60
        while not all(e.is_set() for e in readies):
            if stopping["sig"]:
                return 0
            if any(not p.is_alive() for p in procs) or time.monotonic() > deadline:
                out("staging: a worker failed to start", file=sys.stderr)
                return 1
            time.sleep(0.02)
        ent_sock.close()
        ens_sock.close()
        quota = settings["session_quota"]
        out(f"staging ENT: {_url(host, port)}")
        out(f"Enseigno:    {_url(host, enseigno_port)}")
        out(f"admin:       {_url(host, port)}/__admin/faults and /__admin/stats (loopback clients only)")
        out(f"accounts:    {directory.students} students, {directory.students} parents, "
            f"{sum(1 for t in range(directory.n_colleges * directory.tpc) if directory.exists('t', t))} teachers "
            f"in {directory.n_colleges} collèges, seed {seed} (entload staging --export-accounts FILE)")
        out(f"sessions:    quota {quota if quota is not None else 'none'}; uploads {settings['upload_quota_mib']} MiB "
            f"a user; faults {len(settings['faults'])} rule(s)")
        out(f"access log:  {access_log + ' (Enseigno: ' + enseigno_log_path(access_log) + ')' if access_log else 'off (--access-log FILE)'}")
        out(f"ready in {time.monotonic() - t0:.2f}s: {workers} worker(s), pid {os.getpid()}; Ctrl-C stops", flush=True)
        code = 0
        while not stopping["sig"]:
            if any(not p.is_alive() for p in procs):
                out("staging: a worker exited unexpectedly; stopping", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
        return code
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(2)
        for s, h in old.items():
            signal.signal(s, h)
        ent_sock.close()
        ens_sock.close()
        if stopping["sig"]:
            out("staging: stopped", flush=True)
