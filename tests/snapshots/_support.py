"""Helpers for the snapshot tests: exact tree states, sample workspaces, and a snapshotter on them."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from body_mcp.snapshots import SnapshotSettings, Snapshotter

TreeState = dict[str, tuple[Any, ...]]


def tree_state(root: Path) -> TreeState:
    """Everything a restore promises to reproduce: types, modes, bytes and symlink targets, by path."""
    out: TreeState = {".": ("dir", stat.S_IMODE(os.lstat(root).st_mode))}

    def walk(directory: Path, prefix: str) -> None:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            rel = prefix + entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(entry.path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
                walk(Path(entry.path), rel + "/")
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), Path(entry.path).read_bytes())
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))

    walk(root, "")
    return out


def make_tree(root: Path, files: int = 30) -> None:
    """State B of the tests: nested files of several modes, an empty dir, a read-only dir, symlinks."""
    for index in range(files):
        path = root / f"d{index % 3}" / f"f{index:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {index}\n".encode() * (index + 1))
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "bin" / "run.sh", 0o755)
    (root / "secret.key").write_bytes(os.urandom(64))
    os.chmod(root / "secret.key", 0o600)
    (root / "empty").mkdir()
    (root / "locked").mkdir()
    (root / "locked" / "inside.txt").write_text("in a read-only dir\n")
    os.chmod(root / "locked", 0o555)
    os.symlink("d0/f000.txt", root / "link-to-file")
    os.symlink("d1", root / "link-to-dir")
    os.symlink("/nonexistent/target", root / "dangling")


def mutate_tree(root: Path) -> None:
    """From state B to state A: content, modes, deletions, additions, symlinks, a dir replaced by a file."""
    (root / "d0" / "f000.txt").write_text("changed content\n")
    os.chmod(root / "bin" / "run.sh", 0o644)
    os.chmod(root / "d1", 0o700)
    (root / "d2" / "f002.txt").unlink()
    (root / "new.txt").write_text("added\n")
    (root / "newdir" / "deep").mkdir(parents=True)
    (root / "newdir" / "deep" / "x.bin").write_bytes(b"\x00\x01" * 100)
    (root / "link-to-file").unlink()
    os.symlink("d2/f005.txt", root / "link-to-file")
    (root / "dangling").unlink()
    (root / "empty").rmdir()
    (root / "empty").write_text("now a file\n")


def snapshotter(workspace: Path, state_dir: Path, **kwargs: Any) -> Snapshotter:
    settings_keys = {"state_db", "config_file", "exclude", "keep_last", "keep_daily"}
    settings = SnapshotSettings(
        workspace=workspace, state_dir=state_dir, **{k: v for k, v in kwargs.items() if k in settings_keys}
    )
    return Snapshotter(settings, **{k: v for k, v in kwargs.items() if k not in settings_keys})


def siblings(workspace: Path) -> list[str]:
    """Directories a restore left beside the workspace."""
    return sorted(name for name in os.listdir(workspace.parent) if ".swarm-" in name)
