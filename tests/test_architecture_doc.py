"""docs/architecture.md names the function at every hop of the data path: each
``derivex.module.qualname`` written there must import, so the page cannot rot."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
NAME = re.compile(r"`[^`]*?\b(derivex(?:\.[A-Za-z_]\w*)+)")
# docs/ paths and file names that happen to start with the package name are no names
NOT_NAMES = re.compile(r"\.(md|py|json)$")


def names(text: str) -> list[str]:
    """Every dotted ``derivex...`` name inside backticks, in order, without repeats."""
    found = [m for m in NAME.findall(text) if not NOT_NAMES.search(m)]
    return list(dict.fromkeys(found))


def resolve(name: str) -> Any:
    """Import the longest module prefix of ``name`` and get the rest as attributes.
    Raises ImportError or AttributeError naming what is missing."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            target = getattr(target, attribute)
        return target
    raise ImportError(name)


def test_every_name_in_the_architecture_doc_resolves() -> None:
    found = names(DOC.read_text())
    assert len(found) > 40  # the page names the hops, not a handful of modules
    missing = []
    for name in found:
        try:
            resolve(name)
        except (ImportError, AttributeError) as error:
            missing.append(f"{name}: {error!r}")
    assert not missing, "docs/architecture.md names what does not exist:\n" + "\n".join(missing)


def test_the_doc_numbers_six_stages_for_both_modes() -> None:
    text = DOC.read_text()
    for stage in ("1 gateway", "2 sequencer", "3 journal", "4 engine", "5 projection", "6 "):
        assert text.count(f"| {stage}") >= 2, stage  # a row in each mode's table
    assert "derivex.sequencer.Sequencer.sequence" in text
    assert "derivex.runtime.engine_process.Sequencer.sequence" in text


def test_the_resolver_rejects_a_missing_name() -> None:
    assert resolve("derivex.sequencer.Sequencer.sequence") is not None
    for wrong in ("derivex.sequencer.Sequencer.no_such_stage", "derivex.no_such_module.f"):
        try:
            resolve(wrong)
        except (ImportError, AttributeError):
            continue
        raise AssertionError(f"{wrong} resolved")
    assert names("`derivex.a.b` and `docs/derivex.md` and `x = derivex.c.d()`") == [
        "derivex.a.b",
        "derivex.c.d",
    ]


def test_the_readme_and_the_sequencer_point_to_it() -> None:
    assert "docs/architecture.md" in (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in importlib.import_module("derivex.sequencer").__doc__
