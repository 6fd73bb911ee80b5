"""Files that hold personal data (the SQLite database, attachments, exports, error logs) are private to
the account that runs the app: folders 0700, files 0600, whatever the umask says."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: str | os.PathLike) -> Path:
    """Create `path` (and missing parents) as private folders; folders that exist are left as they are."""
    folder = Path(path)
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    for created in missing:
        os.chmod(created, PRIVATE_DIR_MODE)
    return folder


def private_file(path: str | os.PathLike) -> Path:
    """Create `path` as an empty private file (in private folders) unless it exists."""
    target = Path(path)
    private_dir(target.parent)
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
    except FileExistsError:
        return target
    os.chmod(target, PRIVATE_FILE_MODE)
    return target


def write_private(path: str | os.PathLike, content: bytes) -> Path:
    """Write `content` to a new private file (in a private folder)."""
    target = Path(path)
    private_dir(target.parent)
    descriptor = os.open(target, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    os.chmod(target, PRIVATE_FILE_MODE)
    return target
