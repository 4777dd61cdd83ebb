"""scripts/gen_component_docs.py writes pages that do not contradict the specs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from layotto.server.components.registry import BUILDING_BLOCKS

ROOT = Path(__file__).resolve().parent.parent


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_component_docs", ROOT / "scripts" / "gen_component_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_required_key_shows_no_default() -> None:
    generator = _generator()
    rows = [
        line.split(" | ")
        for block in BUILDING_BLOCKS
        for line in generator.page(block).splitlines()
        if line.startswith("| `")
    ]
    assert rows
    required = [cells for cells in rows if cells[3] == "yes"]
    assert required, "some component has a required key"
    for cells in required:
        assert cells[2] == "", f"{cells[0]} is required yet shows the default {cells[2]}"
    redis_host = next(cells for cells in required if cells[0] == "| `redisHost`")
    assert "Example: `127.0.0.1:6379`" in redis_host[4]
