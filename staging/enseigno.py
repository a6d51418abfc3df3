"""Enseigno: the tutoring service reached from the ENT, on its own port, with the ENT's seeded accounts.

Its sessions are stateless signed cookies (`enseigno_session`): Enseigno has no session quota, and a logout
is remembered in a bounded per-process list (documented limit: with --workers N a logged-out cookie may
still open another process until it expires, 8 h after login).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from staging.content import dumps, id_hash
from staging.core import ERR_FORBIDDEN, ERR_NOT_FOUND, HTML, NO_STORE, App, HTTPError, Request
from staging.ent import EXPIRE, Bounded, ok

COOKIE = b"enseigno_session"
LIFETIME_S = 8 * 3600


class EnseignoApp(App):
    name = "enseigno"
    login_path = "/login"

    def __init__(self, ctx, access_log):
        super().__init__(ctx, access_log)
        self.sizes = ctx.settings["sizes"]
        self.body_limit = ctx.settings["limits"]["json_body_bytes"]
        self.revoked = Bounded(ctx.settings["limits"]["drafts"])
        self.created = Bounded(ctx.settings["limits"]["drafts"])  # teacher-made paths of this process
        self.seq = 0
        a = self.add
        a("GET", "/healthz", self.healthz, auth=False)
        a("GET", "/login", self.login_page, auth=False, html=True)
        a("POST", "/login", self.login, auth=False, html=True)
        a("GET", "/logout", self.logout, auth=False, html=True)
        a("GET", "/", self.home, html=True)
        a("GET", "/api/paths", self.paths)
        a("GET", "/api/paths/:id", self.path)
        a("POST", "/api/paths", self.create_path)
        a("GET", "/api/exercises/:id", self.exercise)
        a("POST", "/api/exercises/:id/answers", self.answer)
        a("GET", "/media/:id", self.media, auth=False)
        a("GET", "/api/classes/:classId/results", self.results)
        a("POST", "/api/feedback", self.feedback)

    # -- sessions ----------------------------------------------------------------------------------------
    def authenticate(self, req: Request, now: float):
        raw = self.cookie(req.headers, COOKIE)
        if raw is None:
            return None
        ent = self.session_cache.get(raw)
        if ent is None:
            try:
                payload, _, sig = raw.decode("ascii").rpartition(".")
                uid, issued, nonce = payload.split(".")
                issued_f = float(issued)
            except (UnicodeDecodeError, ValueError):
                return None
            if not hmac.compare_digest(self.ctx.sign("enseigno:" + payload), sig):
                return None
            who = self.ctx.directory.parse(uid)
            if who is None:
                return None
            ent = [who, issued_f + LIFETIME_S, nonce, self.ctx.sign(f"exsrf:{nonce}").encode()]
            if len(self.session_cache) > 65536:
                self.session_cache.clear()
            self.session_cache[raw] = ent
        if ent[1] < now or ent[2] in self.revoked:
            return None
        return ent[0], ent, True

    async def healthz(self, req):
        return ok(b'{"status":"ok","app":"enseigno"}')

    def _page(self, title: str, error: bool = False) -> bytes:
        c = self.ctx.content
        extra = '<p class="error">Identifiant ou mot de passe incorrect.</p>' if error else ""
        return c.cached(("enseigno", title, error), lambda: c.page_html(title, self.sizes["enseigno_page"], extra))

    async def login_page(self, req):
        return 200, [HTML, NO_STORE], self._page("Enseigno - Connexion")

    async def login(self, req):
        form = await req.form(self.body_limit)
        who = self.ctx.directory.check(form.get("email", ""), form.get("password", ""))
        if who is None:
            self.ctx.counters["login_failures"] += 1
            return 200, [HTML, NO_STORE], self._page("Enseigno - Connexion", True)
        self.ctx.counters["logins"] += 1
        nonce = os.urandom(8).hex()
        payload = f"{who[0]}-{who[1]}.{int(time.time())}.{nonce}"
        token = f"{payload}.{self.ctx.sign('enseigno:' + payload)}"
        xsrf = self.ctx.sign(f"exsrf:{nonce}")
        nxt = form.get("next") or "/"
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        return 302, [
            (b"location", nxt.encode("ascii", "ignore")), NO_STORE,
            (b"set-cookie", f"enseigno_session={token}; Path=/; HttpOnly; SameSite=Lax".encode()),
            (b"set-cookie", f"XSRF-TOKEN={xsrf}; Path=/; SameSite=Lax".encode()),
        ], b""

    async def logout(self, req):
        who = self.authenticate(req, time.time())
        if who is not None:
            self.revoked.put(who[1][2], True)
        return 302, [
            (b"location", b"/login"), NO_STORE,
            (b"set-cookie", f"enseigno_session=; Path=/; Max-Age=0; Expires={EXPIRE}".encode()),
            (b"set-cookie", f"XSRF-TOKEN=; Path=/; Max-Age=0; Expires={EXPIRE}".encode()),
        ], b""

    async def home(self, req):
        return 200, [HTML, NO_STORE], self._page("Enseigno")

    # -- learning paths ----------------------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.ctx.worker}-{self.seq}-{int(time.time() * 1000) % 100000000}"

    async def paths(self, req):
        kind, i = req.user
        ks = self.ctx.directory.classes_of(kind, i)[:6]
        c = self.ctx.content
        base = c.cached(("paths", tuple(ks)), lambda: dumps([
            {"id": f"path-{k}-{j}", "title": c.text(28, f"path{k}{j}"), "classId": f"class-{k}"}
            for k in ks for j in range(4)]))
        own = [p for p in self.created.values() if p["owner"] == req.user]
        if not own:
            return ok(base)
        return ok(base[:-1] + b"," + dumps([{"id": p["id"], "title": p["title"]} for p in own])[1:])

    async def path(self, req):
        pid = req.params[0]
        made = self.created.get(pid)
        if made is not None:
            return ok(dumps({k: v for k, v in made.items() if k != "owner"}))
        if len(pid) > 64:
            return ok(ERR_NOT_FOUND, 404)
        h = id_hash(pid) % 64
        n = self.sizes["exercises_per_path"]
        return ok(self.ctx.content.cached(("path", pid), lambda: dumps({
            "id": pid, "title": self.ctx.content.text(28, pid),
            "exercises": [f"ex-{h}-{k}" for k in range(n)]})))

    async def create_path(self, req):
        if req.user[0] != "t":
            return ok(ERR_FORBIDDEN, 403)
        data = await req.json(self.body_limit)
        if not isinstance(data, dict):
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected a JSON object"}')
        pid = self._new_id("path")
        exercises = [str(e) for e in (data.get("exercises") or [])][:50] or [f"ex-{k}-0" for k in range(4)]
        self.created.put(pid, {"id": pid, "title": str(data.get("title", "Parcours"))[:200],
                               "classId": str(data.get("classId", "")), "exercises": exercises,
                               "owner": req.user})
        return ok(dumps({"id": pid}))

    async def exercise(self, req):
        eid = req.params[0]
        if len(eid) > 64:
            return ok(ERR_NOT_FOUND, 404)
        c, m = self.ctx.content, self.sizes["media_per_exercise"]
        return ok(c.cached(("exercise", eid), lambda: dumps(c.sized(
            {"id": eid, "title": c.text(30, eid), "kind": "qcm",
             "media": [f"/media/{eid}-{j}" for j in range(m)], "choices": ["a", "b", "c", "d"]},
            self.sizes["exercise"], eid, "statement"))))

    async def media(self, req):
        mid = req.params[0]
        etag = ('"' + hashlib.blake2s(mid.encode(), digest_size=8).hexdigest() + '"').encode()
        headers = [(b"content-type", b"image/jpeg"), (b"etag", etag), (b"cache-control", b"max-age=3600")]
        if req.headers.get(b"if-none-match") == etag:
            return 304, headers, b""
        return 200, headers, self.sizes["exercise_media"]

    async def answer(self, req):
        data = await req.json(self.body_limit)
        if not isinstance(data, dict | list):
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected JSON answers"}')
        score = id_hash(f"{req.params[0]}:{req.user}:{len(str(data))}") % 21
        return ok(dumps({"score": score, "max": 20}))

    async def results(self, req):
        kind, i = req.user
        d = self.ctx.directory
        cid = req.params[0]
        if not cid.startswith("class-") or not cid[6:].isdigit() or int(cid[6:]) >= d.n_classes:
            return ok(ERR_NOT_FOUND, 404)
        k = int(cid[6:])
        if kind != "t" or k not in d.teacher_classes(i):
            return ok(ERR_FORBIDDEN, 403)
        return ok(self.ctx.content.cached(("results", k), lambda: dumps([
            {"id": f"s-{s}", "studentId": f"s-{s}", "displayName": d.display_name("s", s),
             "score": id_hash(f"r{s}") % 21, "completed": id_hash(f"c{s}") % 9} for s in d.class_students(k)])))

    async def feedback(self, req):
        if req.user[0] != "t":
            return ok(ERR_FORBIDDEN, 403)
        data = await req.json(self.body_limit)
        if not isinstance(data, dict) or not {"studentId", "exerciseId"} <= set(data):
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected {studentId, exerciseId, text}"}')
        return ok(dumps({"id": self._new_id("fb")}))


