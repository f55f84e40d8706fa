"""What the three components share: the placement options, the engine holder, serialisation, input checks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

from haystack import Document, default_from_dict, default_to_dict
from haystack.utils import ComponentDevice, Secret, deserialize_secrets_inplace

from ..engine import EmbedOptions, EngineHolder, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions

C = TypeVar("C", bound="EngineComponent")


class EngineComponent:
    """Base of the components: keeps the placement options (for ``to_dict``) and the engine holder.

    The model is loaded on first use from :func:`qwen3_rag_components.engine.shared_engine`, so components with the
    same model, device and dtype share one copy of the weights. ``holder.engine`` is the loaded engine and
    ``holder.last_meta`` the meta of the last run (also returned by ``run`` as ``meta``).
    """

    holder: EngineHolder[Any]

    def _init_engine(
        self,
        engine_class: type[Qwen3RerankEngine] | type[Qwen3EmbedEngine],
        options: RerankOptions | EmbedOptions,
        model: str | os.PathLike[str],
        device: ComponentDevice | None,
        dtype: str | None,
        quantization: str | None,
        token: Secret | None,
        local_files_only: bool,
        revision: str | None,
    ) -> None:
        # A single device, or raise now rather than at warm_up; None picks the best one here (and is saved as None).
        torch_device = ComponentDevice.resolve_device(device).to_torch_str()
        spec = LoadSpec(model, torch_device, dtype, local_files_only, revision, quantization=quantization)
        self.holder = EngineHolder(
            engine_class, spec, options, token=lambda: token.resolve_value() if token is not None else None
        )
        self.model = os.fspath(model)
        self.device = device
        self.dtype = dtype
        self.quantization = quantization
        self.token = token
        self.local_files_only = local_files_only
        self.revision = revision

    def warm_up(self) -> None:
        """Load the model (or take it from the shared engine cache); later calls do nothing."""
        _ = self.holder.engine

    async def warm_up_async(self) -> None:
        """:meth:`warm_up` in a worker thread, so loading the model does not block the event loop."""
        await self.holder.engine_async()

    def _own_parameters(self) -> dict[str, Any]:
        """The ``__init__`` parameters of the subclass after the placement ones, as saved by :meth:`to_dict`."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """
        Serializes the component to a dictionary.

        :returns:
            Dictionary with serialized data.
        """
        return default_to_dict(
            self,
            model=self.model,
            device=self.device,
            dtype=self.dtype,
            quantization=self.quantization,
            token=self.token,
            local_files_only=self.local_files_only,
            revision=self.revision,
            **self._own_parameters(),
        )

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Deserialize the component from a dictionary (the caller's dictionary is left unchanged).

        :param data:
            The dictionary returned by ``to_dict()``.
        :returns:
            The deserialized component.
        """
        init_parameters = dict(data.get("init_parameters", {}))
        if init_parameters.get("device") is not None:
            init_parameters["device"] = ComponentDevice.from_dict(init_parameters["device"])
        deserialize_secrets_inplace(init_parameters, keys=["token"])
        return default_from_dict(cls, {**data, "init_parameters": init_parameters})


def check_documents(documents: object, component_name: str, hint: str = "") -> None:
    """Raise ``TypeError`` unless ``documents`` is a list of ``Document``."""
    if isinstance(documents, list) and all(isinstance(doc, Document) for doc in documents):
        return
    found = type(documents).__name__
    if isinstance(documents, list):
        found = next(f"list with a {type(d).__name__} entry" for d in documents if not isinstance(d, Document))
    raise TypeError(f"{component_name} expects a list of Documents as input, got {found}.{hint}")


def texts_to_embed(documents: Sequence[Document], meta_fields_to_embed: list[str], separator: str) -> list[str]:
    """The text the model sees per document: the listed meta values, then the content, joined by ``separator``.

    As in Haystack's own rankers and embedders, missing or ``None`` meta values are skipped and ``content=None``
    counts as an empty string.
    """
    texts = []
    for doc in documents:
        meta_values = [str(doc.meta[key]) for key in meta_fields_to_embed if doc.meta.get(key) is not None]
        texts.append(separator.join([*meta_values, doc.content or ""]))
    return texts
