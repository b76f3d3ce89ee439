"""Durable runs: the SQLite state store, the checkpoint listener and the step cache.

A run's state is what its events say: ``StoreListener`` appends them to the state
database as they happen, ``Store.events`` loads them back for ``flowhost.result.fold`` and
for ``resume``, and ``checkpoint.read`` tells which steps are finished, in flight or waiting.
"""

from typing import TYPE_CHECKING

from flowhost.store.cache import StoreCache
from flowhost.store.checkpoint import Checkpoint, read
from flowhost.store.db import Store
from flowhost.store.estimate import estimate
from flowhost.store.listener import StoreListener
from flowhost.store.opening import DEFAULT_STATE_DIR
from flowhost.store.rows import RunRecord

__all__ = [
    "DEFAULT_STATE_DIR",
    "Checkpoint",
    "RunRecord",
    "Store",
    "StoreCache",
    "StoreListener",
    "estimate",
    "read",
]

if TYPE_CHECKING:  # the SQLite backend keeps the whole contract (checked by mypy)
    from flowhost.store.interface import StateStore

    _SQLITE: type[StateStore] = Store
