"""Asyncio marks for LangChain's standard tests (checkpoints and reference engines come from tests/conftest.py)."""

from __future__ import annotations

import inspect

import pytest


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object):
    """Mark coroutine tests in this folder with ``asyncio``.

    langchain_tests' async standard tests carry no mark (LangChain runs pytest-asyncio in auto mode); the project runs
    strict mode. This wrapper runs inside pytest-asyncio's (``trylast``), so the mark is there when it converts items.
    """
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio)
    return result
