"""Pages draw no emoji or pictographic symbols: where the browser has no emoji font (Debian's Chromium
without fonts-noto-color-emoji, many servers) they show as empty boxes. Use Streamlit's Material icons
(`:material/name:`, in labels, buttons and markdown) or plain words (in table cells)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Emoji and pictographs, dingbats, the technical symbols emoji borrow (⏳ ⏸ ⏹ ⏭ ⌛), the geometric
# shapes some fonts lack (🟢 is above U+1F000 anyway), and the emoji presentation selector.
PICTOGRAPHS = re.compile("[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff\ufe0f]")


def test_pages_and_ui_draw_no_emoji():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for folder in ("pages", "ui") for path in sorted((ROOT / folder).glob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if PICTOGRAPHS.search(line)]
    found += [f"streamlit_app.py:{n}" for n, line in
              enumerate((ROOT / "streamlit_app.py").read_text(encoding="utf-8").splitlines(), 1) if PICTOGRAPHS.search(line)]
    assert not found, "emoji render as empty boxes without an emoji font:\n" + "\n".join(found)
