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
import contextlib
import hashlib
import http.server
import importlib.metadata
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

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


@dataclass
class Index:
    port: int
    asked: list[str] = field(default_factory=list[str])
    """The paths requested, in order."""


@contextmanager
def serve_index(wheels: Sequence[Path]) -> Iterator[Index]:
    """Serve `wheels` as a PEP 503 index (`/simple/<project>/`, files under `/files/`) on 127.0.0.1."""
    files = {wheel.name: wheel.read_bytes() for wheel in wheels}
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        projects.setdefault(normalized(wheel.name.split("-")[0]), []).append(wheel.name)
    pages: dict[str, bytes] = {}
    for project, names in projects.items():
        links = "".join(
            f'<a href="/files/{n}#sha256={hashlib.sha256(files[n]).hexdigest()}">{n}</a><br/>' for n in names
        )
        pages[f"/simple/{project}/"] = f"<html><body>{links}</body></html>".encode()
    index = Index(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            index.asked.append(self.path)
            body = self._head()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (an installer that hung up)
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # (uv asks before it fetches a wheel)
            self._head()

        def _head(self) -> bytes:
            path = self.path.split("?")[0]
            if path in pages:
                body, kind = pages[path], "text/html"
            elif path.startswith("/files/") and path.removeprefix("/files/") in files:
                body, kind = files[path.removeprefix("/files/")], "application/octet-stream"
            else:
                body, kind = b"", "text/plain"
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return body

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    index.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        thread.join()
