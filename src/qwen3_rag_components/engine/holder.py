"""The one place where an adapter (Haystack component, LangChain class, Ray callable) keeps its engine."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Generic

from .cache import EngineT, shared_engine
from .meta import RunMeta
from .options import EmbedOptions, LoadSpec, RerankOptions
from .placement import choose_dtype, resolve_device


class EngineHolder(Generic[EngineT]):
    """An adapter's engine: taken from the shared cache on first use, with the adapter's options; and its last meta.

    Loading is lazy and locked (one load, however many threads ask at once); components with the same
    :class:`LoadSpec` share the loaded weights. Copies of a holder (``copy.copy``, ``copy.deepcopy``, as frameworks
    make of their components) share the loaded engine and never copy the weights.
    """

    def __init__(
        self,
        engine_class: type[EngineT],
        spec: LoadSpec,
        options: RerankOptions | EmbedOptions,
        *,
        token: Callable[[], str | bool | None] | None = None,
    ) -> None:
        """``token``: reads the hub token when the model is loaded (a Haystack ``Secret`` is resolved that late)."""
        self.engine_class = engine_class
        self.spec = spec
        self.options = options
        self._token = token
        self._engine: EngineT | None = None
        self._last_meta: RunMeta | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> EngineT:
        """The engine, loading it on first use."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    spec = self.spec if self._token is None else dataclasses.replace(self.spec, token=self._token())
                    self._engine = shared_engine(self.engine_class, spec, self.options)
        return self._engine

    async def engine_async(self) -> EngineT:
        """:attr:`engine` for the event loop: a first load runs in a worker thread."""
        return self._engine if self._engine is not None else await asyncio.to_thread(lambda: self.engine)

    @property
    def last_meta(self) -> RunMeta | None:
        """The meta of the last call that finished through this holder (None before the first)."""
        return self._last_meta

    def record(self, meta: RunMeta) -> RunMeta:
        """Keep ``meta`` as the last call's and return it."""
        self._last_meta = meta
        return meta

    def record_nothing(self) -> RunMeta:
        """Record and return the meta of a call without inputs (the model is not loaded for it)."""
        device = resolve_device(self.spec.device)
        dtype, why = choose_dtype(self.spec.dtype, device)
        return self.record(RunMeta.nothing(device, dtype, why, self.spec.quantization))

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineHolder[EngineT]:
        return copy.copy(self)  # the engine is shared state, like the cache it comes from
