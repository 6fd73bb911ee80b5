"""ui/heap.py: objects alive after new modules are imported leave the collector's scans."""

from __future__ import annotations

import gc
import sys
import types

from ui import heap


def test_new_modules_freeze_what_is_alive_once():
    heap.freeze_loaded_modules()
    frozen = gc.get_freeze_count()
    kept = [[index] for index in range(1000)]  # long-lived containers the collector tracks
    assert heap.freeze_loaded_modules() is False  # no new module: nothing frozen
    sys.modules["tests._heap_probe"] = types.ModuleType("tests._heap_probe")
    try:
        assert heap.freeze_loaded_modules() is True
        assert gc.get_freeze_count() >= frozen + len(kept)
        assert heap.freeze_loaded_modules() is False
    finally:
        del sys.modules["tests._heap_probe"]
        gc.unfreeze()
