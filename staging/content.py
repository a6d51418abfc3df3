"""Response bodies of realistic sizes, rendered once and cached in bounded tables.

Lists are rendered per (kind, variant, page) with a few variants, not per user, so a page costs a dict
look-up while different users still see different ids. Text comes from one seeded ASCII corpus (sizes are
exact byte counts); binary downloads are streamed from one fixed block, never allocated whole.
"""

from __future__ import annotations

import hashlib
import json
import random

WORDS = [
    "classe",
    "devoir",
    "cahier",
    "sortie",
    "conseil",
    "parents",
    "reunion",
    "college",
    "professeur",
    "eleve",
    "cantine",
    "bus",
    "emploi",
    "temps",
    "semaine",
    "trimestre",
    "bulletin",
    "note",
    "controle",
    "exercice",
    "lecture",
    "histoire",
    "geographie",
    "sciences",
    "physique",
    "mathematiques",
    "francais",
    "anglais",
    "espagnol",
    "musique",
    "arts",
    "sport",
    "atelier",
    "projet",
    "voyage",
    "club",
    "vie",
    "scolaire",
    "absence",
    "retard",
    "rendez",
    "vous",
    "message",
    "information",
    "rappel",
    "calendrier",
    "vacances",
    "rentree",
    "examen",
    "brevet",
    "orientation",
    "stage",
    "inscription",
    "autorisation",
    "photo",
    "document",
    "fichier",
    "casier",
    "blog",
    "mur",
    "collaboratif",
]
VARIANTS = 8
MAX_PAGE = 12  # pages past this are empty: a folder has an end
BLOCK = 1 << 18
CACHE_ENTRIES = 8192  # rendered bodies kept per process ...
CACHE_BYTES = 48 << 20  # ... and their total size


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Content:
    def __init__(self, seed: int, sizes: dict[str, int]):
        self.sizes = sizes
        rnd = random.Random(seed)
        words: list[str] = []
        n = 0
        while n < 200_000:
            w = rnd.choice(WORDS)
            words.append(w)
            n += len(w) + 1
        self.corpus = " ".join(words)
        self.block = random.Random(seed + 1).randbytes(BLOCK)
        self._cache: dict = {}
        self._cache_bytes = 0

    def text(self, n: int, key: str | int) -> str:
        """Exactly n ASCII characters of plausible text, chosen by `key`."""
        if n <= 0:
            return ""
        out = []
        off = int.from_bytes(hashlib.blake2s(str(key).encode(), digest_size=4).digest(), "little")
        while n > 0:
            start = off % (len(self.corpus) - 1)
            piece = self.corpus[start : start + n]
            out.append(piece)
            n -= len(piece)
            off += 7919
        return "".join(out)

    def sized(self, obj: dict, target: int, key: str, field: str = "body") -> dict:
        """Pad `obj` with a text field so its JSON is `target` bytes (or its natural size if larger)."""
        obj[field] = ""
        missing = target - len(dumps(obj))
        if missing > 0:
            obj[field] = self.text(missing, key)
        return obj

    def cached(self, key, build) -> bytes:
        body = self._cache.get(key)
        if body is None:
            body = build()
            if len(self._cache) >= CACHE_ENTRIES or self._cache_bytes + len(body) > CACHE_BYTES:
                self._cache.clear()  # cheap and bounded: hot entries come back at once
                self._cache_bytes = 0
            self._cache[key] = body
            self._cache_bytes += len(body)
        return body

    def chunks(self, n: int):
        """The chunks of an n-byte binary download, from one fixed block (no n-byte allocation)."""
        block = self.block
        while n > 0:
            take = min(n, BLOCK)
            yield block if take == BLOCK else block[:take]
            n -= take

    def page_html(self, title: str, size: int, extra: str = "") -> bytes:
        head = (
            f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title>'
            '<link rel="stylesheet" href="/assets/css/ent.css"><script src="/assets/js/ent.bundle.js" '
            f'defer></script></head><body><h1>{title}</h1>{extra}<div class="filler">'
        )
        tail = "</div></body></html>"
        return (head + self.text(size - len(head) - len(tail), title) + tail).encode()

    def asset(self, kind: str, size: int) -> bytes:
        prefix = (
            "/* entload staging ENT bundle */\n"
            if kind == "css"
            else '/* entload staging ENT */\n"use strict";\n'
        )
        return (prefix + self.text(max(0, size - len(prefix)), f"asset-{kind}")).encode()


def variant(user_no: int, page: int = 0) -> int:
    return (user_no * 2654435761 + page * 40503) % VARIANTS


def id_hash(s: str) -> int:
    return int.from_bytes(hashlib.blake2s(s.encode(), digest_size=4).digest(), "little")
