"""A small SMTP server with STARTTLS (socket + ssl, one thread) for the end-to-end tests.

It listens on 127.0.0.1:0, answers EHLO/HELO, STARTTLS (when it has a TLS context), MAIL, RCPT,
DATA, RSET, NOOP and QUIT, and records each message it accepts with the TLS version it came over.
A failed handshake just closes the connection (and is counted).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple


def self_signed_certificate(directory: Path, name: str = "localhost") -> Tuple[Path, Path]:
    """A self-signed RSA certificate and key made with ``openssl req -x509``."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
         "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def legacy_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS-1.0-only server with legacy suites."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():  # deliberately TLS 1.0
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(cert, key)
    return ctx


def modern_server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server of today: TLS 1.2 and 1.3."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class Received:
    sender: str
    recipients: List[str]
    data: bytes
    tls_version: Optional[str]


@dataclass
class SmtpPeer:
    """Run with ``with SmtpPeer(ctx) as peer: ... peer.port``."""

    tls: Optional[ssl.SSLContext] = None
    name: str = "peer.test"
    messages: List[Received] = field(default_factory=list)
    connections: int = 0
    failed_handshakes: int = 0

    def __enter__(self) -> "SmtpPeer":
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(10)
            try:
                self._session(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        tls_version: Optional[str] = None

        def send(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        send(f"220 {self.name} ESMTP test peer")
        sender, recipients = "", []
        while True:
            raw = reader.readline()
            if not raw:
                return
            line = raw.decode("ascii", "replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                if verb == "HELO":
                    send(f"250 {self.name}")
                    continue
                lines = [self.name, "8BITMIME"]
                if self.tls is not None and tls_version is None:
                    lines.append("STARTTLS")
                for extension in lines[:-1]:
                    send(f"250-{extension}")
                send(f"250 {lines[-1]}")
            elif line.upper() == "STARTTLS":
                if self.tls is None or tls_version is not None:
                    send("502 5.5.1 not available")
                    continue
                send("220 2.0.0 ready to start TLS")
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    self.failed_handshakes += 1
                    return
                tls_version = conn.version()
                reader = conn.makefile("rb")
                sender, recipients = "", []
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip()
                send("250 2.1.0 ok")
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip())
                send("250 2.1.5 ok")
            elif verb == "DATA":
                send("354 go ahead")
                data = b""
                while True:
                    chunk = reader.readline()
                    if not chunk or chunk == b".\r\n":
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                self.messages.append(Received(sender, recipients, data, tls_version))
                send("250 2.0.0 queued")
            elif verb in ("RSET", "NOOP"):
                send("250 2.0.0 ok")
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                return
            else:
                send("500 5.5.2 unknown command")
