"""A plain HTTP server on 127.0.0.1 answering GET and HEAD from a function of the path, in a thread: for the
tests that send real requests from the sandbox through the body's proxy (package indexes, registries, robots.txt).

    with serve_static(lambda path: Reply(200, b"hello")) as site:
        site.port, site.asked    # the paths requested, in order (HEADs included)
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Callable, Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    headers: Mapping[str, str] = field(default_factory=dict[str, str])


NOT_FOUND = Reply(404)


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    """Trusts the server's certificate (and nothing else)."""
    cert: Path
    """The certificate (PEM), self-signed: what a client trusts (`SSL_CERT_FILE`, `cafile`)."""


def self_signed(directory: Path, *names: str) -> Tls:
    """A certificate for `names` (DNS names or IP addresses) signed by its own key, written under `directory`, and
    the contexts of a server presenting it and a client trusting it: TLS on 127.0.0.1 verified as a real CA's would
    be."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([_alt_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)
    return Tls(server=server, client=ssl.create_default_context(cafile=str(cert_path)), cert=cert_path)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class Site:
    port: int
    asked: list[str] = field(default_factory=list[str])
    """The paths requested, in order."""


def routes(table: Mapping[str, Reply]) -> Callable[[str], Reply]:
    """Answer a fixed table of paths (the query string ignored); 404 for the rest."""
    return lambda path: table.get(path.split("?")[0], NOT_FOUND)


@contextmanager
def serve_static(
    answer: Callable[[str], Reply], *, keep_alive: bool = False, tls: ssl.SSLContext | None = None
) -> Generator[Site]:
    """Serve `answer(path)` for every GET and HEAD until the block ends. `keep_alive`: HTTP/1.1 connections that
    stay open between requests (for tests of what one connection may carry). `tls`: HTTPS, with that server
    context."""
    site = Site(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_GET(self) -> None:
            body = self._head()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # (a client that hung up)
                self.wfile.write(body)

        def do_HEAD(self) -> None:  # (uv asks before it fetches a wheel)
            self._head()

        def _head(self) -> bytes:
            site.asked.append(self.path)
            reply = answer(self.path)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            return reply.body

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    site.port = server.server_address[1]
    # (a short poll: `shutdown` waits for the serving loop's next look, which is every 0.5 s by default, and each
    # test using a site waited most of that out at its end)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
