"""Helpers of the secret scan (no tests here): a secret value whose common encodings all
differ, and a ``Scan`` that looks for each of them in texts, files, trees and SQLite
databases and says where it found which.

The base64 forms (of the value, and of its JSON-escaped forms: a JSON text in a bytes
field) are searched for at each of the three byte alignments (a value inside a longer base64
text starts at any byte offset), without the characters its neighbours share.
"""

from __future__ import annotations

import base64
import json
import secrets
import shlex
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

SUFFIX = secrets.token_hex(12)
# A slash, a plus, an ampersand, a space, both quotes, a backslash and a non-ASCII letter:
# JSON, URL-encoding (quote, quote_plus), SQL and shell quoting each change it in their own
# way; "~~~???" puts a "+" and a "/" into its base64 at each alignment (so the URL-safe forms
# differ), and its length (52 bytes) pads it.
SECRET = f"s3cr3t/+& \"q'uote\\ñ!~~~???-{SUFFIX}"
# One a URL can hold as it is (for http_ok: a URL with a space is refused before it is sent).
URL_SECRET = f"k3y.{secrets.token_hex(10)}~x"
# Read as a plain ${env.X}: a plugin returns it in an output field it marks SecretStr.
VAULT_SECRET = f"v4ult-{secrets.token_hex(10)}"


def _base64_cores(value: bytes, what: str) -> dict[str, bytes]:
    """The part of base64(value) that does not depend on the bytes around ``value``, for
    each alignment of its first byte (0, 1 or 2 bytes into a group of three)."""
    cores: dict[str, bytes] = {}
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value)
        start = -(-8 * shift // 6)  # the first character made only of value's bits
        end = 8 * (shift + len(value)) // 6  # past the last one
        core = encoded[start:end]
        cores[f"base64 of {what} (offset {shift})"] = core
        cores[f"urlsafe base64 of {what} (offset {shift})"] = (
            core.replace(b"+", b"-").replace(b"/", b"_"))
    return cores


def encodings(secret: str) -> dict[str, bytes]:
    """Name -> bytes of each form ``secret`` may take in what flowhost prints or writes."""
    raw = secret.encode()
    escaped = json.dumps(secret)[1:-1].encode()
    escaped_utf8 = json.dumps(secret, ensure_ascii=False)[1:-1].encode()
    forms = {
        "raw": raw,
        "the random suffix alone": secret.rsplit("-", 1)[-1].encode(),
        "JSON-escaped (ASCII)": escaped,
        "JSON-escaped (UTF-8)": escaped_utf8,
        "Python repr": repr(secret)[1:-1].encode(),
        "shell-quoted": shlex.quote(secret).encode(),
        "SQL-quoted": secret.replace("'", "''").encode(),
        "latin-1": secret.encode("latin-1", "replace"),
        "URL-encoded (quote)": urllib.parse.quote(secret).encode(),
        "URL-encoded (quote, safe='')": urllib.parse.quote(secret, safe="").encode(),
        "URL-encoded (quote_plus)": urllib.parse.quote_plus(secret).encode(),
        "base64": base64.b64encode(raw),
        "base64 without padding": base64.b64encode(raw).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(raw),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
        # inside base64 of a longer text: of the value, or of JSON that holds it
        **_base64_cores(raw, "the value"),
        **_base64_cores(escaped, "the JSON-escaped value"),
        **_base64_cores(escaped_utf8, "the JSON-escaped value (UTF-8)"),
    }
    return forms


@dataclass
class Found:
    place: str
    form: str
    context: str

    def __str__(self) -> str:
        return f"{self.place}: {self.form}: ...{self.context}..."


@dataclass
class Scan:
    """Everything the scan looked at (``places``, ``scanned_bytes``) and what it found."""

    values: tuple[str, ...] = (SECRET, URL_SECRET, VAULT_SECRET)
    forms: dict[str, bytes] = field(default_factory=dict)
    places: int = 0
    scanned_bytes: int = 0
    found: list[Found] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.forms:
            for number, secret in enumerate(self.values, 1):
                for form, needle in encodings(secret).items():
                    if needle not in self.forms.values():
                        self.forms[f"secret {number} {form}"] = needle

    def data(self, place: str, data: bytes | str) -> None:
        blob = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        self.places += 1
        self.scanned_bytes += len(blob)
        self.seen.append(place)
        for form, needle in self.forms.items():
            at = blob.find(needle)
            if at >= 0:
                context = blob[max(0, at - 40):at + len(needle) + 40]
                self.found.append(Found(place, form, context.decode("utf-8", "replace")))

    def file(self, path: Path, place: str | None = None) -> None:
        self.data(place or str(path), path.read_bytes())
        if path.suffix == ".db" or path.name.endswith((".db", ".sqlite")):
            self.sqlite(path, f"{place or path} (dumped)")

    def sqlite(self, path: Path, place: str) -> None:
        """The database as ``iterdump`` writes it (SQL text, every table and row)."""
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            self.data(place, "\n".join(conn.iterdump()))
        conn.close()

    def tree(self, root: Path, exclude: Callable[[Path], str | None] = lambda _: None,
             label: str = "") -> list[tuple[Path, str]]:
        """Every file under ``root``, byte-wise (databases dumped too), except those
        ``exclude`` gives a reason for: those are returned with the reason."""
        skipped: list[tuple[Path, str]] = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            reason = exclude(path)
            if reason is not None:
                skipped.append((path, reason))
                continue
            self.file(path, f"{label}{path.relative_to(root)}" if label else str(path))
        return skipped

    def texts(self, pairs: Iterable[tuple[str, bytes | str]]) -> None:
        for place, data in pairs:
            self.data(place, data)

    def report(self) -> str:
        lines = [str(found) for found in self.found]
        return (f"the secret was found {len(self.found)} times in {self.places} places "
                f"({self.scanned_bytes} bytes scanned):\n" + "\n".join(lines))
