"""Short garbage collections in the long-running server.

Python's collector sometimes scans every tracked object (a full collection of its oldest
generation), and every session's script run waits while it does. With pandas, plotly, scikit-learn
and the app's modules loaded that is millions of objects that live as long as the server: 0.25 to
0.3 s a scan, measured under bench/concurrency_bench.py. `gc.freeze()` moves every object alive now
out of the collector's reach (it no longer scans them), so after the modules a page imports are in,
a full collection scans only what the sessions made since. It runs again whenever a run has
imported new modules (the first visit of a page that needs them), so the set of frozen objects
grows with the modules loaded, not with the sessions served.
"""

from __future__ import annotations

import gc
import sys

_modules_frozen = 0


def freeze_loaded_modules() -> bool:
    """After a script run: freeze what is alive if new modules were imported since the last freeze."""
    global _modules_frozen
    loaded = len(sys.modules)
    if loaded == _modules_frozen:
        return False
    gc.freeze()
    _modules_frozen = loaded
    return True
