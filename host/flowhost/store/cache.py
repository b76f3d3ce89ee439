"""The step cache: outputs of idempotent steps by plugin, version and resolved inputs.

The key is the SHA-256 of the plugin's name and version and the canonical JSON of the
resolved inputs, in which every secret value is replaced by its own SHA-256: the key
changes when a secret does, and no secret is ever stored. Outputs holding a secret value are
not cached at all. The engine checks a hit with the step's validation before trusting it.
An entry points at the ``StepFinished`` event that holds the outputs, so they are stored once.

Entries are written by ``StoreListener`` in batches, and only once the step's
``StepFinished`` says the primary plugin itself succeeded (outputs of a fallback are not
the primary's). The keys of a plugin are read once per run, so a miss costs no query, and
no key at all while nothing of the plugin is cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any

from flowhost.events import StepFinished
from flowhost.invokers import Invoker
from flowhost.plan import PlannedStep
from flowhost.store.codec import make_encoder
from flowhost.store.db import Store

CacheRow = tuple[str, bytes, str, int, float]  # plugin, key, version, event id, created_at
_Staged = tuple[Invoker, str]  # the plugin, its inputs' JSON (the key material)


def digest(plugin: str, version: str, material: str) -> bytes:
    text = f"{plugin}\0{version}\0{material}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


_canonical = make_encoder(sort_keys=True)


class KeyedCache:
    """``flowhost.engine.StepCache`` but for its storage: keys, staging until the step's
    ``StepFinished``, the entries to write. A backend says how a plugin's keys and an
    entry's outputs are read (``_load``, ``_outputs``)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._digests = {s: "sha256:" + hashlib.sha256(s.encode()).hexdigest()
                         for s in self._secrets}
        self._known: dict[Invoker, dict[bytes, float]] = {}  # key -> created_at, by plugin
        self._staged: dict[str, _Staged] = {}  # step id -> entry, until its StepFinished
        self._ready: list[tuple[Invoker, str, int]] = []
        self._asked: tuple[object, str] = (None, "")  # the last lookup's inputs, their JSON
        self.hits = 0
        self.misses = 0

    # -- the StepCache protocol --------------------------------------------------------
    def lookup(self, step: PlannedStep, inputs: dict[str, Any]) -> dict[str, Any] | None:
        invoker = step.invoker
        known = self._known.get(invoker)
        if known is None:
            known = self._known[invoker] = self._load(invoker.name, invoker.version)
        if not known:  # nothing cached for this plugin: no key to compute
            self.misses += 1
            return None
        material = self.material(inputs)
        self._asked = (inputs, material)
        key = digest(invoker.name, invoker.version, material)
        created = known.get(key)
        ttl = step.step.cache_ttl
        if created is None or (ttl is not None and time.time() - created > ttl):
            self.misses += 1
            return None
        outputs = self._outputs(invoker.name, key)
        if outputs is None:  # cleared by another process meanwhile
            self.misses += 1
            return None
        self.hits += 1
        return outputs

    def store(self, step: PlannedStep, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        if self._secrets and self._holds_secret(outputs):
            return  # never stored, not even masked: a masked result is useless
        asked, material = self._asked
        if asked is not inputs:
            material = _canonical(self._hide(inputs)) if self._secrets else _canonical(inputs)
        self._staged[step.id] = (step.invoker, material)

    # -- with the listener -------------------------------------------------------------
    def settle(self, finished: StepFinished, event_id: int) -> int:
        """Keep a staged entry only if the step succeeded with its own plugin (its outputs
        are those of ``finished``, event ``event_id``); how many entries became ready."""
        if not self._staged:
            return 0
        entry = self._staged.pop(finished.step_id, None)
        if entry is None or finished.status != "success" or finished.cached:
            return 0
        if finished.used_plugin != entry[0].name:
            return 0
        self._ready.append((*entry, event_id))
        return 1

    def drain(self) -> list[CacheRow]:
        """The rows to write, sorted by key (each b-tree page is then written once)."""
        entries, self._ready = self._ready, []
        now = time.time()
        return sorted((invoker.name, digest(invoker.name, invoker.version, material),
                       invoker.version, event_id, now) for invoker, material, event_id in entries)

    # -- keys --------------------------------------------------------------------------
    def key(self, plugin: str, version: str, inputs: dict[str, Any]) -> bytes:
        """SHA-256 of plugin, version and canonical inputs, each secret replaced by its hash."""
        return digest(plugin, version, self.material(inputs))

    def material(self, inputs: dict[str, Any]) -> str:
        """The canonical JSON of the inputs, each secret value replaced by its hash."""
        return _canonical(self._hide(inputs) if self._secrets else inputs)

    def _hide(self, value: Any) -> Any:
        """``value`` with every secret replaced by its digest, for the key material."""
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, self._digests[secret])
            return value
        if isinstance(value, dict):
            return {self._hide(str(k)): self._hide(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._hide(v) for v in value]
        return value

    def _holds_secret(self, value: Any) -> bool:
        if isinstance(value, str):
            return any(secret in value for secret in self._secrets)
        if isinstance(value, dict):
            return any(self._holds_secret(str(k)) or self._holds_secret(v)
                       for k, v in value.items())
        if isinstance(value, list | tuple):
            return any(self._holds_secret(v) for v in value)
        return isinstance(value, int | float) and self._holds_secret(str(value))

    def _load(self, plugin: str, version: str) -> dict[bytes, float]:
        raise NotImplementedError

    def _outputs(self, plugin: str, key: bytes) -> dict[str, Any] | None:
        raise NotImplementedError


class StoreCache(KeyedCache):
    """``flowhost.engine.StepCache`` on the state database."""

    def __init__(self, store: Store, secrets: Iterable[str] = ()) -> None:
        super().__init__(secrets)
        self._conn = store.conn

    def _outputs(self, plugin: str, key: bytes) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT json_extract(e.payload, '$.outputs') FROM cache AS c JOIN events AS e "
            "ON e.id = c.event_id WHERE c.plugin = ? AND c.key = ?", (plugin, key)).fetchone()
        if row is None or row[0] is None:
            return None
        outputs: dict[str, Any] = json.loads(row[0])
        return outputs

    def _load(self, plugin: str, version: str) -> dict[bytes, float]:
        rows = self._conn.execute("SELECT key, created_at FROM cache "
                                  "WHERE plugin = ? AND version = ?", (plugin, version))
        return {bytes(key): float(created) for key, created in rows}
