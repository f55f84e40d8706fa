"""What both callables share: checking the constructor arguments without loading, the engine holder, meta."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from ..engine import EmbedOptions, EngineHolder, LoadSpec, RerankOptions, RunMeta


class EngineActor:
    """Shared by both callables: checking the constructor arguments in the driver, the engine holder, the meta."""

    holder: EngineHolder[Any]
    meta_column: str | None
    load_on_init: ClassVar[bool] = True  # False for the unloaded twin that check_arguments builds

    @classmethod
    def check_arguments(cls, **arguments: Any) -> dict[str, Any]:
        """Check constructor arguments without loading anything; returns them with the defaults filled in.

        Raises:
            TypeError: an unknown argument, or a value of the wrong type.
            ValueError: a value out of range (the message says which values are accepted).
        """
        signature = inspect.signature(cls)
        try:
            bound = signature.bind(**arguments)
        except TypeError as error:  # an unknown or a missing argument
            raise TypeError(f"{cls.__name__}: {error}; its arguments are {list(signature.parameters)}.") from None
        bound.apply_defaults()
        # Every check runs in the constructor: build an instance of a twin class that does not load the model.
        unloaded = type(cls.__name__, (cls,), {"load_on_init": False})
        unloaded(**bound.arguments)
        return bound.arguments

    def _hold(
        self,
        engine_class: type[Any],
        spec: LoadSpec,
        options: RerankOptions | EmbedOptions,
        meta_column: str | None,
    ) -> None:
        """Keep the engine holder and load the engine now (once per actor), so that a failed load fails the actor's
        constructor; not in the unloaded twin that :meth:`check_arguments` builds in the driver."""
        self.holder = EngineHolder(engine_class, spec, options)
        self.meta_column = meta_column
        if self.load_on_init:
            _ = self.holder.engine

    def _with_meta(self, batch: pa.Table, meta: RunMeta) -> pa.Table:
        """The batch with the call's meta as a struct column, when ``meta_column`` asks for one."""
        self.holder.record(meta)
        if self.meta_column is None:
            return batch
        return batch.append_column(self.meta_column, pa.array([meta.to_dict()] * batch.num_rows))


def hidden_size(model: str | os.PathLike[str], revision: str | None) -> int | None:
    """The checkpoint's hidden size when its config.json is at hand (a local folder or the Hub cache), else None."""
    path = Path(model) / "config.json"
    if not path.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(os.fspath(model), "config.json", revision=revision)
        except ValueError:  # not a hub id (HFValidationError)
            return None
        if not isinstance(cached, str):
            return None
        path = Path(cached)
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
