"""Test accounts from a CSV (`login,password,persona[,...]`, as `entload staging --export-accounts` writes).

The passwords are held in memory only: never logged, never put in a request name, a result or a label.
Optional columns the journeys use when present: `user_id`, `class_ids` and `children_ids` (`;`-separated).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from scenarios._options import ScenarioError


@dataclass(frozen=True)
class Account:
    login: str
    password: str = field(repr=False)
    kind: str
    user_id: str = ""
    class_ids: tuple[str, ...] = ()
    children_ids: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never print a login or password by accident
        return f"Account(kind={self.kind!r})"


def load_accounts(path: str | Path, needed_kinds: set[str] = frozenset()) -> dict[str, list[Account]]:
    """Accounts by kind (student, parent, teacher). One-line ScenarioError on any problem."""
    p = Path(path)
    try:
        fh = p.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"--accounts: cannot read {p} ({exc.strerror or exc})") from None
    out: dict[str, list[Account]] = {}
    with fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        for lineno, row in enumerate(reader, start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None and lineno == 1 and [c.strip().lower() for c in row[:3]] == [
                    "login", "password", "persona"]:
                header = [c.strip().lower() for c in row]
                continue
            if len(row) < 3 or not row[0].strip() or not row[1] or not row[2].strip():
                raise ScenarioError(f"{p}:{lineno}: expected login,password,persona[,...]")
            cols = dict(zip(header, row, strict=False)) if header else {}

            def split(name: str, cols: dict = cols) -> tuple[str, ...]:
                return tuple(x for x in cols.get(name, "").split(";") if x)

            kind = row[2].strip().lower()
            out.setdefault(kind, []).append(Account(row[0].strip(), row[1], kind, cols.get("user_id", ""),
                                                    split("class_ids"), split("children_ids")))
    for kind in sorted(needed_kinds):
        if not out.get(kind):
            raise ScenarioError(f"{p}: no {kind!r} accounts (column persona); the workload's personas need them")
    return out
