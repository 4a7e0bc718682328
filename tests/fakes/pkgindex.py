"""A Python package index on 127.0.0.1 (PEP 503 simple pages) serving wheels a test builds, for installs that never
reach the internet.

    wheels = [pure_wheel(tmp, "swarm-tinypkg", {"swarm_tinypkg/__init__.py": "X = 1\n"}),
              *installed_wheels(tmp, "pytest")]       # pytest and what it needs, packed from this interpreter's
    with serve_index(wheels) as index:                # installed files (no download: the machine is offline)
        index.port, index.asked

`installed_wheels` packs a distribution installed here back into a wheel (its files as RECORD lists them, the
console scripts left for the installer to make from `entry_points.txt`), with its requirements, recursively.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from packaging.requirements import Requirement

from .static_http import Reply, Site, routes, serve_static

_SKIPPED = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel(directory: Path, name: str, version: str, files: Mapping[str, bytes], tag: str = "py3-none-any") -> Path:
    stem = f"{normalized(name).replace('-', '_')}-{version}"
    dist_info = f"{stem}.dist-info"
    record = ""
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(content)}\n"
    wheel = directory / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{dist_info}/RECORD", record + f"{dist_info}/RECORD,,\n")
    return wheel


def pure_wheel(directory: Path, name: str, files: Mapping[str, str], *, version: str = "0.1") -> Path:
    """A pure-Python wheel of `files` (path → text), written by hand (a zip with METADATA, WHEEL and RECORD)."""
    dist_info = f"{normalized(name).replace('-', '_')}-{version}.dist-info"
    contents = {path: text.encode() for path, text in files.items()}
    contents[f"{dist_info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    contents[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: swarm-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    return _wheel(directory, name, version, contents)


def installed_wheels(directory: Path, name: str, *, seen: set[str] | None = None) -> list[Path]:
    """`name` as installed in this interpreter, and what it requires here (recursively), each packed into a wheel."""
    seen = set() if seen is None else seen
    if normalized(name) in seen:
        return []
    seen.add(normalized(name))
    dist = importlib.metadata.distribution(name)
    contents: dict[str, bytes] = {}
    tag = "py3-none-any"
    for file in dist.files or []:
        path = str(file)
        if path.startswith("..") or "__pycache__" in path or path.split("/")[-1] in _SKIPPED:
            continue
        contents[path] = Path(str(file.locate())).read_bytes()
        if path.endswith(".dist-info/WHEEL"):
            found = re.search(r"^Tag: (\S+)$", contents[path].decode(), re.MULTILINE)
            tag = found.group(1) if found else tag
    wheels = [_wheel(directory, dist.metadata["Name"], dist.version, contents, tag)]
    for raw in dist.requires or []:
        requirement = Requirement(raw)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        wheels += installed_wheels(directory, requirement.name, seen=seen)
    return wheels


CACHEABLE = {"Cache-Control": "max-age=600"}  # (so that pip caches what it fetched, as from a real index)


@contextmanager
def serve_index(wheels: Sequence[Path]) -> Iterator[Site]:
    """Serve `wheels` as a PEP 503 index (`/simple/<project>/`, files under `/files/`) on 127.0.0.1."""
    table: dict[str, Reply] = {}
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        table[f"/files/{wheel.name}"] = Reply(200, wheel.read_bytes(), "application/octet-stream", CACHEABLE)
        projects.setdefault(normalized(wheel.name.split("-")[0]), []).append(wheel.name)
    for project, names in projects.items():
        links = "".join(
            f'<a href="/files/{n}#sha256={hashlib.sha256(table[f"/files/{n}"].body).hexdigest()}">{n}</a><br/>'
            for n in names
        )
        table[f"/simple/{project}/"] = Reply(200, f"<html><body>{links}</body></html>".encode(), "text/html")
    with serve_static(routes(table)) as site:
        yield site
