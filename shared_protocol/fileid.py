"""A file's identity: its device and inode, what tells the file a process opened from another put in its place.

The body's rates file and the brain's database are both opened by name and used for long; each compares the
identity it opened with the one its path names now, so that a file removed or replaced meanwhile (a restore, an
operator starting afresh) is not written to unseen.
"""

from __future__ import annotations

import os
from pathlib import Path


def file_identity(path: Path) -> tuple[int, int]:
    """(device, inode) of the file at `path`; another pair later means it was replaced. Raises `OSError` (e.g.
    `FileNotFoundError`) when it cannot be read."""
    st = os.stat(path)
    return st.st_dev, st.st_ino
