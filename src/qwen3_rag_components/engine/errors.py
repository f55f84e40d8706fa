"""The engine's one typed error for a value out of range, so that a server can name the field without parsing text."""

from __future__ import annotations


class InvalidParameter(ValueError):
    """``param`` is the argument as the caller spelled it (``"top_k"``, ``"dimensions"``); ``message`` says what to
    change. A ``ValueError``, so ``except ValueError`` keeps working."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
