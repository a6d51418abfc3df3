"""Seeded test accounts, derived on demand from (seed, number of students): nothing is stored per account.

75,000 students, their parents and teachers are a few integer formulas, so the server starts at once at
any size and every process agrees on every account without sharing memory. Only test accounts exist.

Layout: student i sits in class i // students_per_class; classes fill collèges of classes_per_college.
Parent p is the legal guardian of student p, and every `sibling_every`-th parent also of student p+1.
Teacher number c*teachers_per_college + l teaches classes_per_teacher consecutive classes of collège c.
Ids: `s-<i>` (student), `p-<i>` (parent), `t-<i>` (teacher), `class-<k>`, `college-<c>`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

FIRST = [
    "Léa",
    "Hugo",
    "Chloé",
    "Lucas",
    "Manon",
    "Nathan",
    "Emma",
    "Louis",
    "Inès",
    "Gabriel",
    "Jade",
    "Arthur",
    "Sarah",
    "Raphaël",
    "Camille",
    "Adam",
    "Zoé",
    "Jules",
    "Lina",
    "Noah",
    "Alice",
    "Paul",
    "Louise",
    "Mohamed",
    "Anna",
    "Tom",
    "Rose",
    "Sacha",
    "Maëlys",
    "Yanis",
]
LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "Andre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "Francois",
    "Martinez",
    "Diallo",
]
PERSONAS = {"s": "student", "p": "parent", "t": "teacher"}
ODE_TYPES = {"s": "Student", "p": "Relative", "t": "Teacher"}


class Directory:
    """All accounts of a miniature (or full-size) département, computed from indices."""

    def __init__(self, students: int, seed: int, layout: dict[str, int]):
        self.students = int(students)
        self.seed = int(seed)
        self.spc = layout["students_per_class"]
        self.cpc = layout["classes_per_college"]
        self.tpc = layout["teachers_per_college"]
        self.kpt = min(layout["classes_per_teacher"], self.cpc)
        self.sibling_every = layout["sibling_every"]
        self.n_classes = -(-self.students // self.spc)
        self.n_colleges = -(-self.n_classes // self.cpc)
        self.blocks = max(1, self.cpc // self.kpt)
        self._key = hashlib.sha256(f"entload-staging-seed:{self.seed}".encode()).digest()
        # global numbering for per-user arrays: students, then parents, then teacher slots
        self.n_users = 2 * self.students + self.n_colleges * self.tpc

    # -- identities ------------------------------------------------------------------------------------
    def parse(self, uid: str) -> tuple[str, int] | None:
        """('s'|'p'|'t', index) for a valid user id, else None."""
        if len(uid) < 3 or uid[1] != "-" or uid[0] not in PERSONAS:
            return None
        try:
            i = int(uid[2:])
        except ValueError:
            return None
        return (uid[0], i) if self.exists(uid[0], i) and str(i) == uid[2:] else None

    def exists(self, kind: str, i: int) -> bool:
        if kind in ("s", "p"):
            return 0 <= i < self.students
        if kind == "t":
            if not 0 <= i < self.n_colleges * self.tpc:
                return False
            return bool(self.teacher_classes(i))
        return False

    def number(self, kind: str, i: int) -> int:
        """Index of the user in arrays shared by all processes (upload quotas)."""
        return i if kind == "s" else self.students + i if kind == "p" else 2 * self.students + i

    def login_of(self, kind: str, i: int) -> str:
        return f"{PERSONAS[kind]}.{i}"

    def from_login(self, login: str) -> tuple[str, int] | None:
        persona, _, num = login.strip().lower().partition(".")
        kind = {"student": "s", "parent": "p", "teacher": "t"}.get(persona)
        if kind is None or not num.isdigit() or str(int(num)) != num:
            return None
        i = int(num)
        return (kind, i) if self.exists(kind, i) else None

    def password(self, login: str) -> str:
        """Deterministic test password: a keyed hash of the login, so it is known only from the seed."""
        return "Ent-" + hmac.new(self._key, login.encode(), hashlib.sha256).hexdigest()[:10]

    def check(self, login: str, password: str) -> tuple[str, int] | None:
        who = self.from_login(login)
        if who is None:
            return None
        return who if hmac.compare_digest(self.password(self.login_of(*who)), password) else None

    def display_name(self, kind: str, i: int) -> str:
        """A plausible name; parent p and student p share the family name (same family index)."""
        h = hashlib.blake2s(f"{self.seed}:{kind}:{i}".encode(), digest_size=2).digest()
        fam = hashlib.blake2s(
            f"{self.seed}:family:{i if kind != 't' else -1 - i}".encode(), digest_size=2
        ).digest()
        return f"{FIRST[h[0] % len(FIRST)]} {LAST[(fam[0] + 256 * fam[1]) % len(LAST)].upper()}"

    # -- relations -------------------------------------------------------------------------------------
    def student_class(self, i: int) -> int:
        return i // self.spc

    def class_college(self, k: int) -> int:
        return k // self.cpc

    def class_students(self, k: int) -> range:
        return range(k * self.spc, min((k + 1) * self.spc, self.students))

    def children_of(self, p: int) -> list[int]:
        kids = [p]
        if p % self.sibling_every == 0 and p + 1 < self.students:
            kids.append(p + 1)
        return kids

    def parents_of(self, s: int) -> list[int]:
        parents = [s]
        if s >= 1 and (s - 1) % self.sibling_every == 0:
            parents.append(s - 1)
        return parents

    def teacher_classes(self, t: int) -> list[int]:
        college, local = divmod(t, self.tpc)
        first = college * self.cpc + (local % self.blocks) * self.kpt
        last = min(first + self.kpt, (college + 1) * self.cpc, self.n_classes)
        return list(range(first, last))

    def class_teachers(self, k: int) -> list[int]:
        college, local_class = divmod(k, self.cpc)
        block = local_class // self.kpt
        if block >= self.blocks:
            block = self.blocks - 1
        return [college * self.tpc + loc for loc in range(block, self.tpc, self.blocks)]

    def classes_of(self, kind: str, i: int) -> list[int]:
        if kind == "s":
            return [self.student_class(i)]
        if kind == "p":
            return sorted({self.student_class(c) for c in self.children_of(i)})
        return self.teacher_classes(i)

    def can_see_student(self, kind: str, i: int, student: int) -> bool:
        """Whether a user may read a student's carnet de liaison / results."""
        if not 0 <= student < self.students:
            return False
        if kind == "s":
            return student == i
        if kind == "p":
            return student in self.children_of(i)
        return self.student_class(student) in self.teacher_classes(i)

    def userinfo(self, kind: str, i: int) -> dict:
        classes = self.classes_of(kind, i)
        info = {
            "userId": f"{kind}-{i}",
            "login": self.login_of(kind, i),
            "username": self.display_name(kind, i),
            "type": ODE_TYPES[kind],
            "classes": [f"class-{k}" for k in classes],
            "structures": sorted({f"college-{self.class_college(k)}" for k in classes}),
        }
        if kind == "p":
            kids = self.children_of(i)
            info["children"] = [{"id": f"s-{c}", "displayName": self.display_name("s", c)} for c in kids]
            info["childrenIds"] = [f"s-{c}" for c in kids]
        return info

    # -- export ----------------------------------------------------------------------------------------
    def iter_accounts(self) -> Iterator[dict[str, str]]:
        """Every account, as the rows of `--export-accounts`."""
        for kind, count in (("s", self.students), ("p", self.students), ("t", self.n_colleges * self.tpc)):
            for i in range(count):
                if kind == "t" and not self.exists("t", i):
                    continue
                info = self.userinfo(kind, i)
                login = info["login"]
                yield {
                    "login": login,
                    "password": self.password(login),
                    "persona": PERSONAS[kind],
                    "user_id": info["userId"],
                    "display_name": info["username"],
                    "school_id": ";".join(info["structures"]),
                    "class_ids": ";".join(info["classes"]),
                    "children_ids": ";".join(info.get("childrenIds", [])),
                }
