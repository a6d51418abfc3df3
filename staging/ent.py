"""The staging ENT: ODE / Open ENT NG routes (reference/ent-routes.md) with the shapes of docs/contracts.md.

Shared by all worker processes (staging/shared.py): live sessions and the quota, upload usage, runtime faults.
Kept per process, bounded by `limits:` (defaults.yaml): drafts and sent messages, document metadata,
acknowledgements. With --workers N a draft made on one process may be sent through another (ids are
opaque and accepted); read back elsewhere, it comes out as a generated message. Everything else a journey
reads (lists, messages, walls, diaries) is derived from ids and the seed, so every process serves the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from urllib.parse import quote

from staging.config import ConfigError, merge
from staging.content import MAX_PAGE, VARIANTS, dumps, id_hash, variant
from staging.core import (
    BINARY,
    ERR_FORBIDDEN,
    ERR_MULTIPART,
    ERR_NOT_FOUND,
    ERR_QUOTA,
    HTML,
    JSON,
    NO_STORE,
    App,
    HTTPError,
    Request,
    is_loopback,
)
from staging.shared import STATS

SESSION_COOKIE = b"oneSessionId"
DATE = "2026-03-16T08:{:02d}:{:02d}.000Z"
EXPIRE = "Thu, 01 Jan 1970 00:00:00 GMT"
TIMELINE_TYPES = ("MESSAGERIE", "BLOG", "SCHOOLBOOK", "RACK", "COLLABORATIVEWALL", "HOMEWORKS", "NEWS")
FOLDERS = ("INBOX", "OUTBOX", "DRAFT", "TRASH")
MAX_BODY_KEPT = 2000  # characters of a draft / sent message kept in memory (the rest is counted, not stored)


def ok(body: bytes, status: int = 200):
    return status, [JSON], body


class Bounded(OrderedDict):
    """An insertion-ordered dict that forgets its oldest entries past `limit` (state stays bounded)."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class EntApp(App):
    name = "ent"
    login_path = "/auth/login"

    def __init__(self, ctx, access_log):
        super().__init__(ctx, access_log)
        s = ctx.settings
        self.sizes = s["sizes"]
        lim = s["limits"]
        self.body_limit = lim["json_body_bytes"]
        self.messages = Bounded(lim["drafts"])  # id -> dict (drafts and sent messages of this process)
        self.docs = Bounded(lim["users_with_documents"])  # user number -> Bounded(id -> metadata)
        self.docs_per_user = lim["documents_per_user"]
        self.acks = Bounded(lim["acknowledgements"])  # (wordId, studentId) -> True
        self.seq = 0
        c = ctx.content
        self.js = c.asset("js", self.sizes["js_bundle"])
        self.css = c.asset("css", self.sizes["css_bundle"])
        self.etags = {
            "/assets/js/ent.bundle.js": ('"' + hashlib.sha1(self.js).hexdigest()[:20] + '"').encode(),
            "/assets/css/ent.css": ('"' + hashlib.sha1(self.css).hexdigest()[:20] + '"').encode(),
        }
        self._register()

    # -- sessions --------------------------------------------------------------------------------------
    def new_session(self, kind: str, i: int, now: float):
        """Open a live session (counted against the quota) and return its signed token, or None."""
        opened = self.ctx.shared.open_session(now, self.ctx.idle_s)
        if opened is None:
            return None
        slot, sid = opened
        payload = f"{kind}-{i}.{slot}.{sid}"
        return f"{payload}.{self.ctx.sign(payload)}", self.xsrf_for(sid)

    def xsrf_for(self, sid: int) -> str:
        return self.ctx.sign(f"xsrf:{sid}")

    def verify(self, raw: bytes):
        try:
            token = raw.decode("ascii")
            payload, _, sig = token.rpartition(".")
            uid, slot, sid = payload.split(".")
            slot_i, sid_i = int(slot), int(sid)
        except (UnicodeDecodeError, ValueError):
            return None
        if not hmac.compare_digest(self.ctx.sign(payload), sig):
            return None
        who = self.ctx.directory.parse(uid)
        if who is None:
            return None
        return [who, slot_i, sid_i, self.xsrf_for(sid_i).encode(), 0.0]

    def authenticate(self, req: Request, now: float):
        h = req.headers
        raw = self.cookie(h, SESSION_COOKIE)
        from_cookie = True
        if raw is None:
            auth = h.get(b"authorization")
            if not auth or auth[:7].lower() != b"bearer ":
                return None
            raw, from_cookie = auth[7:].strip(), False
        ent = self.session_cache.get(raw)
        if ent is None:
            ent = self.verify(raw)
            if ent is None:
                return None
            if len(self.session_cache) > 65536:
                self.session_cache.clear()
            self.session_cache[raw] = ent
        shared = self.ctx.shared
        if not shared.session_valid(ent[1], ent[2], now):
            return None
        if now - ent[4] > 30:
            shared.touch(ent[1], ent[2], now + self.ctx.idle_s)
            ent[4] = now
        return ent[0], ent, from_cookie

    def user_no(self, req: Request) -> int:
        return self.ctx.directory.number(*req.user)

    # -- routes ----------------------------------------------------------------------------------------
    def _register(self) -> None:
        a = self.add
        a("GET", "/healthz", self.healthz, auth=False)
        a("GET", "/", self.root, auth=False, html=True)
        a("GET", "/welcome", self.portal, html=True)
        a("GET", "/auth/login", self.login_page, auth=False, html=True)
        a("POST", "/auth/login", self.login, auth=False, html=True)
        a("GET", "/auth/logout", self.logout, auth=False, html=True)
        a("GET", "/auth/oauth2/userinfo", self.userinfo)
        a("POST", "/auth/oauth2/token", self.token, auth=False)
        a("GET", "/auth/configure/welcome", self.welcome, auth=False)
        a("GET", "/auth/context", self.auth_context, auth=False)
        a("GET", "/timeline/timeline", self.portal, html=True)
        a("GET", "/timeline/lastNotifications", self.timeline)
        a("GET", "/actualites/list", self.actualites)
        a("GET", "/actualites/info/:id", self.actualites_info)
        a("GET", "/conversation/list/:folder", self.conv_list)
        a("GET", "/conversation/count/:folder", self.conv_count)
        a("GET", "/conversation/message/:id", self.conv_message)
        a("GET", "/conversation/visible", self.conv_visible)
        a("POST", "/conversation/draft", self.conv_draft)
        a("PUT", "/conversation/draft/:id", self.conv_draft)
        a("POST", "/conversation/send", self.conv_send)
        a("POST", "/conversation/message/:id/attachment", self.conv_attach)
        a("GET", "/conversation/message/:id/attachment/:aid", self.conv_attachment)
        a("POST", "/rack", self.rack_deposit)
        a("GET", "/rack/list", self.rack_list)
        a("GET", "/rack/get/:id", self.rack_get)
        a("GET", "/rack/users/available", self.rack_users)
        a("GET", "/schoolbook/list/:page/:studentId", self.sb_list)
        a("POST", "/schoolbook/list", self.sb_teacher_list)
        a("GET", "/schoolbook/count/:studentId", self.sb_count)
        a("GET", "/schoolbook/report/:wordId", self.sb_report)
        a("POST", "/schoolbook/relation/acknowledge/:wordId/:studentId", self.sb_ack)
        a("POST", "/schoolbook/relation/reply/:wordId", self.sb_reply)
        a("POST", "/schoolbook/word", self.sb_word)
        a("GET", "/collaborativewall/list/all", self.walls)
        a("GET", "/collaborativewall/:id", self.wall)
        a("POST", "/collaborativewall/:id/note", self.wall_note)
        a("GET", "/blog/list/all", self.blogs)
        a("GET", "/blog/post/list/all/:blogId", self.blog_posts)
        a("POST", "/blog/post/:blogId", self.blog_post)
        a("GET", "/homeworks/list", self.homeworks)
        a("GET", "/homeworks/get/:diaryId", self.homework)
        a("POST", "/workspace/document", self.ws_upload)
        a("GET", "/workspace/document/:id", self.ws_get)
        a("GET", "/workspace/documents", self.ws_list)
        a("GET", "/assets/js/ent.bundle.js", self.asset, auth=False)
        a("GET", "/assets/css/ent.css", self.asset, auth=False)
        a("GET", "/__admin/faults", self.admin_get, auth=False)
        a("PUT", "/__admin/faults", self.admin_put, auth=False)
        a("GET", "/__admin/stats", self.admin_stats, auth=False)

    async def healthz(self, req):
        return ok(b'{"status":"ok","app":"ent","worker":%d}' % self.ctx.worker)

    # -- authentication ----------------------------------------------------------------------------------
    async def root(self, req):
        who = self.authenticate(req, time.time())
        return 302, [(b"location", b"/welcome" if who else b"/auth/login"), NO_STORE], b""

    async def portal(self, req):
        body = self.ctx.content.cached(("portal",), lambda: self.ctx.content.page_html(
            "ENT - Accueil", self.sizes["portal_page"]))
        return 200, [HTML, NO_STORE], body

    def _login_html(self, error: bool) -> bytes:
        news = self.ctx.news_enabled
        key = ("login", news, error)

        def build():
            c = self.ctx.content
            extra = ('<form method="post" action="/auth/login"><input name="email"><input type="password" '
                     'name="password"><input type="hidden" name="callBack" value="/"></form>')
            if error:
                extra = '<p class="error">Identifiant ou mot de passe incorrect.</p>' + extra
            if news:
                extra += f'<section class="news">{c.text(self.sizes["welcome_message"], "welcome")}</section>'
            return c.page_html("Connexion ENT", self.sizes["login_page"], extra)

        return self.ctx.content.cached(key, build)

    def _too_many_users(self) -> bytes:
        return self.ctx.content.cached(("toomany",), lambda: (
            b"<!doctype html><html><head><title>ENT</title></head><body><h1>Connexion impossible</h1>"
            b"<p>too many users: le nombre maximal d'utilisateurs connect\xc3\xa9s est atteint, "
            b"r\xc3\xa9essayez dans quelques minutes.</p></body></html>"))

    async def login_page(self, req):
        if self.ctx.shared.quota_full(time.time()):
            self.ctx.counters["quota_refusals"] += 1
            return 200, [HTML, NO_STORE], self._too_many_users()
        return 200, [HTML, NO_STORE], self._login_html(False)

    async def login(self, req):
        form = await req.form(self.body_limit)
        login, password = form.get("email", ""), form.get("password", "")
        who = self.ctx.directory.check(login, password)
        if who is None:
            self.ctx.counters["login_failures"] += 1
            return 200, [HTML, NO_STORE], self._login_html(True)
        opened = self.new_session(*who, time.time())
        if opened is None:
            self.ctx.counters["quota_refusals"] += 1
            return 200, [HTML, NO_STORE], self._too_many_users()
        token, xsrf = opened
        self.ctx.counters["logins"] += 1
        callback = form.get("callBack") or "/"
        if not callback.startswith("/") or callback.startswith("//"):
            callback = "/"
        return 302, [
            (b"location", quote(callback, safe="/?&=%:.-_~").encode()), NO_STORE,
            (b"set-cookie", f"oneSessionId={token}; Path=/; HttpOnly; SameSite=Lax".encode()),
            (b"set-cookie", b"authenticated=true; Path=/; SameSite=Lax"),
            (b"set-cookie", f"XSRF-TOKEN={xsrf}; Path=/; SameSite=Lax".encode()),
        ], b""

    async def logout(self, req):
        who = self.authenticate(req, time.time())
        if who is not None:
            ent = who[1]
            self.ctx.shared.close_session(ent[1], ent[2])
        callback = req.query("callback") or "/auth/login"
        if not callback.startswith("/") or callback.startswith("//"):
            callback = "/auth/login"
        return 302, [
            (b"location", quote(callback, safe="/?&=%:.-_~").encode()), NO_STORE,
            (b"set-cookie", f"oneSessionId=; Path=/; Max-Age=0; Expires={EXPIRE}".encode()),
            (b"set-cookie", f"authenticated=; Path=/; Max-Age=0; Expires={EXPIRE}".encode()),
            (b"set-cookie", f"XSRF-TOKEN=; Path=/; Max-Age=0; Expires={EXPIRE}".encode()),
        ], b""

    async def userinfo(self, req):
        kind, i = req.user
        return ok(self.ctx.content.cached(("userinfo", kind, i),
                                          lambda: dumps(self.ctx.directory.userinfo(kind, i))))

    async def token(self, req):
        form = await req.form(self.body_limit)
        grant = form.get("grant_type", "")
        now = time.time()
        if grant == "password":
            who = self.ctx.directory.check(form.get("username", ""), form.get("password", ""))
        elif grant == "refresh_token":
            ent = self.verify(form.get("refresh_token", "").encode())
            who = ent[0] if ent else None
        else:
            return ok(b'{"error":"unsupported_grant_type"}', 400)
        if who is None:
            self.ctx.counters["login_failures"] += 1
            return ok(b'{"error":"invalid_grant"}', 400)
        opened = self.new_session(*who, now)
        if opened is None:
            self.ctx.counters["quota_refusals"] += 1
            return ok(b'{"error":"quota_overflow"}', 509)
        self.ctx.counters["logins"] += 1
        token, _ = opened
        return ok(dumps({"access_token": token, "token_type": "Bearer", "expires_in": int(self.ctx.idle_s),
                         "refresh_token": token, "scope": "userinfo timeline conversation"}))

    async def welcome(self, req):
        news = self.ctx.news_enabled
        return ok(self.ctx.content.cached(("welcome", news), lambda: dumps({
            "welcomeMessage": self.ctx.content.text(self.sizes["welcome_message"], "welcome") if news else "",
            "enabled": news})))

    async def auth_context(self, req):
        return ok(b'{"callBack":"/","cgu":true,"passwordRegex":"^(?=.*[0-9])(?=.*[a-z]).{8,}$",'
                  b'"mandatory":{"mail":false,"phone":false}}')

    # -- lists -------------------------------------------------------------------------------------------
    def _page(self, key, n_items: int, make) -> bytes:
        """A cached JSON array of `n_items` objects built by make(k)."""
        return self.ctx.content.cached(key, lambda: dumps([make(k) for k in range(n_items)]))

    async def timeline(self, req):
        if not self.ctx.news_enabled:
            return ok(b'{"results":[],"status":"ok","number":0,"disabled":true}')
        page = req.int_query("page", 0)
        v = variant(self.user_no(req), page)
        if page > MAX_PAGE:
            return ok(b'{"results":[],"status":"ok","number":0}')
        n, size, c = self.sizes["timeline_page_items"], self.sizes["timeline_item"], self.ctx.content

        def build():
            items = []
            for k in range(n):
                t = TIMELINE_TYPES[(v + k) % len(TIMELINE_TYPES)]
                items.append(c.sized({"id": f"tl-{v}-{page}-{k}", "type": t, "event-type": f"{t}_NOTIFY",
                                      "date": {"$date": DATE.format(k % 60, page % 60)},
                                      "sender": f"t-{(v * 7 + k) % 40}", "resource": f"r-{v}-{k}",
                                      "params": {"uri": f"/{t.lower()}#/view/{v}-{k}"}},
                                     size, f"tl{v}{page}{k}", "message"))
            return dumps({"results": items, "status": "ok", "number": len(items)})

        return ok(c.cached(("timeline", v, page), build))

    async def actualites(self, req):
        page = req.int_query("page", 0)
        n = req.int_query("pageSize", self.sizes["actualites_page_items"], 1, 100)
        v = variant(self.user_no(req), page)
        if page > MAX_PAGE:
            return ok(b"[]")
        c, size = self.ctx.content, self.sizes["actualites_item"]
        return ok(self._page(("actu", v, page, n), n, lambda k: c.sized(
            {"id": f"news-{v}-{page}-{k}", "title": c.text(40, f"at{v}{page}{k}"), "status": 3,
             "publication_date": DATE.format(k % 60, 0), "owner": f"t-{k}"}, size, f"a{v}{page}{k}", "content")))

    async def actualites_info(self, req):
        nid = req.params[0]
        c = self.ctx.content
        return ok(c.cached(("actuinfo", nid), lambda: dumps(c.sized(
            {"id": nid, "title": c.text(40, nid), "status": 3, "publication_date": DATE.format(0, 0)},
            self.sizes["actualites_info"], nid, "content"))))

    # -- messaging -----------------------------------------------------------------------------------------
    async def conv_list(self, req):
        folder = req.params[0].upper()
        if folder not in FOLDERS:
            return ok(ERR_NOT_FOUND, 404)
        page = req.int_query("page", 0)
        v = variant(self.user_no(req), page)
        if page > MAX_PAGE:
            return ok(b"[]")
        c, size, n = self.ctx.content, self.sizes["message_list_item"], self.sizes["message_page_items"]
        return ok(self._page(("conv", folder, v, page), n, lambda k: c.sized(
            {"id": f"m-{folder[0]}{v}-{page}-{k}", "subject": c.text(36, f"s{folder}{v}{page}{k}"),
             "from": f"t-{(v + k) % 40}", "to": [f"s-{k}"], "cc": [], "date": 1773648000000 + k * 60000,
             "unread": k < 3 and folder == "INBOX", "hasAttachment": k % 4 == 0, "systemFolders": [folder],
             "displayNames": [[f"t-{(v + k) % 40}", c.text(18, f"dn{v}{k}")]]}, size, f"m{v}{page}{k}", "preview")))

    async def conv_count(self, req):
        unread = (self.user_no(req) * 7 + 3) % 9 if req.query("unread") == "true" else 60
        return ok(b'{"count":%d}' % unread)

    def _stored(self, mid: str, req):
        m = self.messages.get(mid)
        if m is not None and m["owner"] != req.user:
            raise HTTPError(404, ERR_NOT_FOUND)
        return m

    async def conv_message(self, req):
        mid = req.params[0]
        m = self._stored(mid, req)
        if m is not None:
            return ok(dumps({k: v for k, v in m.items() if k != "owner"}))
        if len(mid) > 64:
            return ok(ERR_NOT_FOUND, 404)
        c = self.ctx.content
        h = id_hash(mid)
        return ok(c.cached(("msg", mid), lambda: dumps(c.sized(
            {"id": mid, "subject": c.text(36, mid), "from": f"t-{h % 40}", "to": ["me"], "cc": [],
             "date": 1773648000000 + h % 86400000, "state": "SENT",
             "attachments": [{"id": f"{mid}-a{j}", "filename": f"piece-{j}.pdf", "contentType": "application/pdf",
                              "size": self.sizes["attachment"]} for j in range(1 if h % 4 == 0 else 0)]},
            self.sizes["message_body"], mid, "body"))))

    def _visible_users(self, kind: str, i: int) -> list[dict]:
        d = self.ctx.directory
        if kind == "t":
            k = d.teacher_classes(i)[0]
            people = [("s", s) for s in d.class_students(k)] + [("t", t) for t in d.class_teachers(k) if t != i]
        else:
            k = d.classes_of(kind, i)[0]
            people = [("t", t) for t in d.class_teachers(k)]
        return [{"id": f"{pk}-{pi}", "displayName": d.display_name(pk, pi)} for pk, pi in people]

    async def conv_visible(self, req):
        kind, i = req.user
        d = self.ctx.directory
        k = d.classes_of(kind, i)[0]
        return ok(self.ctx.content.cached(("visible", kind if kind == "t" else "sp", i if kind == "t" else k),
                                          lambda: dumps({
                                              "groups": [{"id": f"class-{k}", "name": f"Classe {k}", "nbUsers": 25}],
                                              "users": [dict(u, profile="Teacher" if u["id"][0] == "t" else "Student")
                                                        for u in self._visible_users(kind, i)]})))

    def _new_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.ctx.worker}-{self.seq}-{int(time.time() * 1000) % 100000000}"

    async def conv_draft(self, req):
        data = await req.json(self.body_limit)
        if not isinstance(data, dict):
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected a JSON object"}')
        if req.params:
            mid = req.params[0]
            m = self._stored(mid, req) or {"id": mid, "owner": req.user, "attachments": []}
        else:
            mid = self._new_id("m")
            m = {"id": mid, "owner": req.user, "attachments": []}
        m.update({"subject": str(data.get("subject", ""))[:512], "body": str(data.get("body", ""))[:MAX_BODY_KEPT],
                  "to": [str(x) for x in data.get("to", []) or []][:100], "state": "DRAFT"})
        self.messages.put(mid, m)
        return ok(dumps({"id": mid}))

    async def conv_send(self, req):
        data = await req.json(self.body_limit)
        if not isinstance(data, dict):
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected a JSON object"}')
        mid = req.query("id") or self._new_id("m")
        m = self._stored(mid, req) or {"id": mid, "owner": req.user, "attachments": []}
        to = [str(x) for x in (data.get("to") or m.get("to") or [])][:100]
        cc = [str(x) for x in (data.get("cc") or [])][:100] + [str(x) for x in (data.get("cci") or [])][:100]
        d = self.ctx.directory
        undelivered = [x for x in to + cc if d.parse(x) is None and not x.startswith("class-")]
        m.update({"subject": str(data.get("subject", m.get("subject", "")))[:512],
                  "body": str(data.get("body", m.get("body", "")))[:MAX_BODY_KEPT], "to": to, "state": "SENT"})
        self.messages.put(mid, m)
        return ok(dumps({"id": mid, "thread_id": mid, "sent": len(to) + len(cc) - len(undelivered),
                         "inactive": [], "undelivered": undelivered}))

    async def _upload(self, req, budget_owner: int):
        """Count an upload against `budget_owner`'s quota; returns (filename, size). Multipart or raw body."""
        quota, shared = self.ctx.upload_quota, self.ctx.shared
        budget = max(0, quota - shared.upload_usage(budget_owner, self.ctx.upload_window_s))
        ctype = req.headers.get(b"content-type", b"")
        if ctype.startswith(b"multipart/"):
            _, files = await req.multipart(budget)
            if not files:
                raise HTTPError(400, ERR_MULTIPART)
            name, size = files[0][1], sum(f[2] for f in files)
        else:
            declared = req.headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > budget:
                raise HTTPError(413, ERR_QUOTA)
            size = 0
            while True:
                msg = await req.receive()
                size += len(msg.get("body", b""))
                if size > budget:
                    raise HTTPError(413, ERR_QUOTA)
                if msg["type"] == "http.disconnect" or not msg.get("more_body"):
                    break
            name = "upload.bin"
        if not shared.reserve_upload(budget_owner, size, quota, self.ctx.upload_window_s):
            raise HTTPError(413, ERR_QUOTA)
        self.ctx.counters["uploads_bytes"] += size
        return name, size

    async def conv_attach(self, req):
        mid = req.params[0]
        name, size = await self._upload(req, self.user_no(req))
        aid = self._new_id("att")
        m = self._stored(mid, req)
        if m is not None and len(m["attachments"]) < 20:
            m["attachments"].append({"id": aid, "filename": name, "size": size,
                                     "contentType": "application/octet-stream"})
        return ok(dumps({"id": aid}))

    async def conv_attachment(self, req):
        mid, aid = req.params
        m = self._stored(mid, req)
        size = self.sizes["attachment"]
        if m is not None:
            found = [a for a in m["attachments"] if a["id"] == aid]
            if not found:
                return ok(ERR_NOT_FOUND, 404)
            size = found[0]["size"]
        return 200, [BINARY, (b"content-disposition", b'attachment; filename="piece.pdf"')], size

    # -- documents (rack and workspace share the per-user metadata store) ------------------------------
    def _docs_of(self, user_no: int, create: bool = False):
        docs = self.docs.get(user_no)
        if docs is None and create:
            docs = Bounded(self.docs_per_user)
            self.docs.put(user_no, docs)
        return docs

    def _find_doc(self, req, did: str):
        docs = self._docs_of(self.user_no(req))
        return docs.get(did) if docs else None

    async def rack_deposit(self, req):
        d = self.ctx.directory
        fields, files = await req.multipart(self.ctx.upload_quota)
        if not files:
            raise HTTPError(400, ERR_MULTIPART)
        recipients = [u.strip() for u in fields.get("users", "").split(",") if u.strip()][:200]
        if not recipients:
            raise HTTPError(400, b'{"error":"bad_request","detail":"no recipient in field users"}')
        name, size = files[0][1], sum(f[2] for f in files)
        success = failure = 0
        sender = f"{req.user[0]}-{req.user[1]}"
        for uid in recipients:
            who = d.parse(uid)
            if who is None or not self.ctx.shared.reserve_upload(d.number(*who), size, self.ctx.upload_quota,
                                                                 self.ctx.upload_window_s):
                failure += 1
                continue
            success += 1
            did = self._new_id("rack")
            self._docs_of(d.number(*who), True).put(did, {
                "id": did, "_id": did, "name": name, "owner": sender, "ownerName": d.display_name(*req.user),
                "to": uid, "created": DATE.format(0, 0), "metadata": {"size": size, "filename": name}})
        self.ctx.counters["uploads_bytes"] += size * success
        return ok(dumps({"success": success, "failure": failure}))

    async def rack_list(self, req):
        un = self.user_no(req)
        v = variant(un)
        c = self.ctx.content
        base = c.cached(("rack", v), lambda: dumps([
            {"id": f"rack-{v}-{k}", "_id": f"rack-{v}-{k}", "name": f"devoir-{k}.jpg", "owner": f"s-{k}",
             "to": "me", "created": DATE.format(k, 0),
             "metadata": {"size": self.sizes["rack_file"], "filename": f"devoir-{k}.jpg",
                          "content-type": "image/jpeg"}} for k in range(4)]))
        docs = self._docs_of(un)
        own = [doc for doc in docs.values() if doc["id"].startswith("rack")] if docs else []
        if not own:
            return ok(base)
        return ok(base[:-1] + b"," + dumps(own)[1:])

    async def rack_get(self, req):
        doc = self._find_doc(req, req.params[0])
        size = doc["metadata"]["size"] if doc else self.sizes["rack_file"]
        return 200, [(b"content-type", b"image/jpeg")], size

    async def rack_users(self, req):
        kind, i = req.user
        return ok(self.ctx.content.cached(("rackusers", kind, i), lambda: dumps(self._visible_users(kind, i))))

    async def ws_upload(self, req):
        un = self.user_no(req)
        name, size = await self._upload(req, un)
        did = self._new_id("doc")
        doc = {"id": did, "_id": did, "name": name, "owner": f"{req.user[0]}-{req.user[1]}",
               "created": DATE.format(0, 0), "metadata": {"size": size, "filename": name}}
        self._docs_of(un, True).put(did, doc)
        return ok(dumps(doc))

    async def ws_get(self, req):
        doc = self._find_doc(req, req.params[0])
        size = doc["metadata"]["size"] if doc else self.sizes["workspace_document"]
        return 200, [BINARY], size

    async def ws_list(self, req):
        docs = self._docs_of(self.user_no(req))
        own = [doc for doc in docs.values() if doc["id"].startswith("doc")] if docs else []
        return ok(dumps(own))

    # -- carnet de liaison ---------------------------------------------------------------------------------
    def _student(self, req, sid: str) -> int:
        who = self.ctx.directory.parse(sid)
        if who is None or who[0] != "s":
            raise HTTPError(404, ERR_NOT_FOUND)
        if not self.ctx.directory.can_see_student(*req.user, who[1]):
            raise HTTPError(403, ERR_FORBIDDEN)
        return who[1]

    def _words(self, klass: int, page: int) -> bytes:
        c, n, size = self.ctx.content, self.sizes["schoolbook_page_items"], self.sizes["schoolbook_item"]
        if page > MAX_PAGE:
            return b"[]"
        return self._page(("words", klass, page), n, lambda k: c.sized(
            {"id": f"w-{klass}-{page}-{k}", "title": c.text(32, f"wt{klass}{page}{k}"), "owner": f"t-{k}",
             "sendingDate": DATE.format(k, page % 60), "acknowledgments": [], "replies": 0},
            size, f"w{klass}{page}{k}", "text"))

    async def sb_list(self, req):
        try:
            page = int(req.params[0])
        except ValueError:
            return ok(ERR_NOT_FOUND, 404)
        s = self._student(req, req.params[1])
        return ok(self._words(self.ctx.directory.student_class(s), max(0, page)))

    async def sb_teacher_list(self, req):
        kind, i = req.user
        if kind != "t":
            return ok(ERR_FORBIDDEN, 403)
        data = await req.json(self.body_limit)
        try:
            page = max(0, int(data.get("page", 0))) if isinstance(data, dict) else 0
        except (TypeError, ValueError):
            page = 0
        return ok(self._words(self.ctx.directory.teacher_classes(i)[0], page))

    async def sb_count(self, req):
        s = self._student(req, req.params[0])
        base = (s * 5 + 1) % 4
        acked = sum(1 for k in range(base) if (f"w-{self.ctx.directory.student_class(s)}-0-{k}", s) in self.acks)
        return ok(b'{"count":%d}' % max(0, base - acked))

    async def sb_report(self, req):
        wid = req.params[0]
        if len(wid) > 64:
            return ok(ERR_NOT_FOUND, 404)
        c = self.ctx.content
        return ok(c.cached(("word", wid), lambda: dumps(c.sized(
            {"id": wid, "title": c.text(32, wid), "owner": "t-0", "sendingDate": DATE.format(0, 0)},
            self.sizes["schoolbook_report"], wid, "text"))))

    async def sb_ack(self, req):
        wid = req.params[0]
        s = self._student(req, req.params[1])
        self.acks.put((wid, s), True)
        return ok(b'{"status":"ok"}')

    async def sb_reply(self, req):
        data = await req.json(self.body_limit)
        if not isinstance(data, dict) or "studentId" not in data:
            raise HTTPError(400, b'{"error":"bad_request","detail":"expected {studentId, text}"}')
        self._student(req, str(data["studentId"]))
        return ok(dumps({"id": self._new_id("reply")}))

    async def sb_word(self, req):
        if req.user[0] != "t":
            return ok(ERR_FORBIDDEN, 403)
        await req.json(self.body_limit)
        return ok(dumps({"id": self._new_id("w")}))

    # -- collaborative spaces, homework ------------------------------------------------------------------------
    def _class_ids(self, req) -> list[int]:
        return self.ctx.directory.classes_of(*req.user)

    async def walls(self, req):
        ks = self._class_ids(req)
        return ok(self.ctx.content.cached(("walls", tuple(ks)), lambda: dumps([
            {"id": f"wall-{k}-{j}", "_id": f"wall-{k}-{j}", "name": f"Mur {k}-{j}", "owner": f"t-{k}",
             "modified": DATE.format(j, 0)} for k in ks[:3] for j in range(3)])))

    async def wall(self, req):
        wid = req.params[0]
        if len(wid) > 64:
            return ok(ERR_NOT_FOUND, 404)
        c, size, n = self.ctx.content, self.sizes["wall_note"], self.sizes["wall_notes"]
        h = id_hash(wid) % VARIANTS
        return ok(c.cached(("wall", wid), lambda: dumps({
            "id": wid, "_id": wid, "name": f"Mur {wid}", "background": "/assets/img/wall.jpg",
            "notes": [c.sized({"id": f"note-{h}-{k}", "owner": f"s-{k}", "x": k * 37 % 900, "y": k * 53 % 600},
                              size, f"n{h}{k}", "content") for k in range(n)]})))

    async def wall_note(self, req):
        await req.json(self.body_limit)
        return ok(dumps({"id": self._new_id("note")}))

    async def blogs(self, req):
        ks = self._class_ids(req)
        return ok(self.ctx.content.cached(("blogs", tuple(ks)), lambda: dumps([
            {"id": f"blog-{k}", "_id": f"blog-{k}", "title": f"Blog de la classe {k}", "author": f"t-{k}",
             "thumbnail": "/assets/img/blog.png"} for k in ks[:6]] + [
            {"id": "blog-college", "_id": "blog-college", "title": "Vie du college", "author": "t-0",
             "thumbnail": ""}])))

    async def blog_posts(self, req):
        bid = req.params[0]
        page = req.int_query("page", 0)
        content = req.query("content", "true") != "false"
        if page > MAX_PAGE or len(bid) > 64:
            return ok(b"[]")
        c, n = self.ctx.content, self.sizes["blog_page_items"]
        size = self.sizes["blog_post"] if content else 300
        h = id_hash(bid) % VARIANTS
        return ok(self._page(("posts", h, page, content), n, lambda k: c.sized(
            {"id": f"post-{h}-{page}-{k}", "_id": f"post-{h}-{page}-{k}", "title": c.text(30, f"p{h}{page}{k}"),
             "author": {"userId": f"t-{k}"}, "modified": DATE.format(k, 0), "state": "PUBLISHED"},
            size, f"pc{h}{page}{k}", "content")))

    async def blog_post(self, req):
        await req.json(self.body_limit)
        return ok(dumps({"id": self._new_id("post")}))

    async def homeworks(self, req):
        ks = self._class_ids(req)
        return ok(self.ctx.content.cached(("diaries", tuple(ks)), lambda: dumps([
            {"id": f"diary-{k}", "_id": f"diary-{k}", "title": f"Cahier de textes {k}", "owner": f"t-{k}",
             "classes": [f"class-{k}"]} for k in ks[:6]])))

    async def homework(self, req):
        did = req.params[0]
        if len(did) > 64:
            return ok(ERR_NOT_FOUND, 404)
        c, n, size = self.ctx.content, self.sizes["homework_entries"], self.sizes["homework_entry"]
        h = id_hash(did) % VARIANTS
        return ok(c.cached(("diary", did), lambda: dumps({
            "id": did, "_id": did, "title": f"Cahier de textes {did}",
            "data": [c.sized({"id": f"hw-{h}-{k}", "date": DATE.format(k, 0), "type": "devoir"},
                             size, f"hw{h}{k}", "value") for k in range(n)]})))

    # -- static assets -----------------------------------------------------------------------------------------
    async def asset(self, req):
        etag = self.etags[req.path]
        inm = req.headers.get(b"if-none-match")
        ctype = b"application/javascript" if req.path.endswith(".js") else b"text/css"
        headers = [(b"content-type", ctype), (b"etag", etag), (b"cache-control", b"no-cache")]
        if inm is not None and (inm == etag or inm.strip() == b"*" or etag in inm.split(b", ")):
            return 304, headers, b""
        return 200, headers, self.js if req.path.endswith(".js") else self.css

    # -- admin (loopback clients only) -----------------------------------------------------------------------
    def _admin_allowed(self, req) -> None:
        if not is_loopback(req.scope.get("client")):
            raise HTTPError(403, b'{"error":"forbidden","detail":"admin routes answer loopback clients only"}')

    async def admin_get(self, req):
        self._admin_allowed(req)
        _, runtime = self.ctx.shared.get_runtime()
        return ok(dumps(runtime))

    async def admin_put(self, req):
        self._admin_allowed(req)
        data = await req.json(self.body_limit)
        _, runtime = self.ctx.shared.get_runtime()
        base = dict(self.ctx.settings, **runtime)
        try:
            merged = merge(base, data, "PUT /__admin/faults", runtime_only=True)
        except ConfigError as exc:
            raise HTTPError(400, dumps({"error": "bad_request", "detail": str(exc)})) from None
        new = {k: merged[k] for k in ("faults", "news_feed_enabled", "session_quota")}
        self.ctx.shared.put_runtime(new)
        self.ctx.refresh_runtime()
        return ok(dumps(new))

    async def admin_stats(self, req):
        self._admin_allowed(req)
        self.ctx.publish()
        stats = self.ctx.shared.total_stats(time.time())
        stats["workers"] = len(self.ctx.shared.stats) // len(STATS)
        stats["per_worker_requests"] = [self.ctx.shared.stats[w * len(STATS)] for w in range(stats["workers"])]
        return ok(json.dumps(stats).encode())
