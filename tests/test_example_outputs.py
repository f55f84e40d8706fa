"""docs/quickstart.md shows what each framework's example prints when run (docs/example_outputs.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "example_outputs.py"
# fp32 on another CPU or thread count moves a score by up to 1e-5 (docs/fidelity.md), which can flip the printed third
# decimal: numbers agree within one unit of it, everything else exactly.
PRINTED_UNIT = 1e-3


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_example_outputs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def same_output(shown: str, printed: str) -> bool:
    shown_words, printed_words = shown.split(), printed.split()
    if len(shown_words) != len(printed_words):
        return False
    for a, b in zip(shown_words, printed_words, strict=True):
        try:
            if abs(float(a) - float(b)) > PRINTED_UNIT + 1e-9:
                return False
        except ValueError:
            if a != b:
                return False
    return True


def test_the_quickstart_shows_what_the_examples_print(script):
    pytest.importorskip("haystack")
    pytest.importorskip("langchain_classic")
    pytest.importorskip("llama_index.core")
    page = script.PAGE.read_text(encoding="utf-8")
    shown = {match["name"]: match["body"] for match in script.BLOCK.finditer(page)}
    assert sorted(shown) == sorted(script.EXAMPLES)
    printed = script.run_examples()
    for name in script.EXAMPLES:
        body = shown[name].removeprefix("```text\n").removesuffix("```\n")
        assert same_output(body, printed[name]), f"examples/{name} now prints:\n{printed[name]}"
        assert printed[name].count("\n") == 3  # the question and the best two passages


def test_rendering_replaces_only_the_blocks(script):
    page = "intro\n<!-- output: examples/a.py -->\nstale\n<!-- /output -->\nmiddle\n<!-- output: examples/b.py -->\n"
    page += "<!-- /output -->\nend\n"
    rendered = script.render(page, {"a.py": "one\n", "b.py": "two\nthree\n"})
    assert rendered == (
        "intro\n<!-- output: examples/a.py -->\n```text\none\n```\n<!-- /output -->\nmiddle\n"
        "<!-- output: examples/b.py -->\n```text\ntwo\nthree\n```\n<!-- /output -->\nend\n"
    )
    assert script.render(rendered, {"a.py": "one\n", "b.py": "two\nthree\n"}) == rendered  # idempotent


def test_outputs_compare_numbers_within_one_printed_unit():
    assert same_output("Q?\n0.898  a passage", "Q?\n0.899  a passage")
    assert not same_output("Q?\n0.898  a passage", "Q?\n0.900  a passage")
    assert not same_output("Q?\n0.898  a passage", "Q?\n0.898  another passage")
    assert not same_output("Q?\n0.898  a passage", "Q?\n0.898  a passage\n0.5  more")
