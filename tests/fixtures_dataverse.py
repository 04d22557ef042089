"""A tiny Dataverse imitation served on 127.0.0.1 (used by test_dataverse and the paper miniature).

The server speaks the two native-API calls nlp4neuro.dataverse uses (data-set JSON and file
access, with HTTP Range) and can misbehave on purpose: wrong bytes, a connection closed halfway,
an HTML error page, an unknown DOI. Nothing here touches the real internet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

DOI = "10.5072/FK2/TINY"


@dataclass
class ServedFile:
    """One file of the fake data set and how the server misbehaves when serving it."""

    file_id: int
    directory: str | None
    name: str
    content: bytes
    # "ok", "corrupt" (serves other bytes than the listed md5), "interrupt_once" (first GET
    # sends half the body then closes), "interrupt_always", "html" (Content-Type text/html),
    # "html_body" (HTML bytes labelled as binary), "tabular" (ingested: needs format=original),
    # "ignore_range" (interrupts once, then answers every Range request with the whole file),
    # "unavailable_once" (first GET answers 503), "forbidden" (every GET answers 403)
    behaviour: str = "ok"
    n_gets: int = 0


class FakeDataverse:
    def __init__(self, files: list[ServedFile]) -> None:
        self.files = {f.file_id: f for f in files}
        self.requests: list[tuple[str, str | None]] = []  # (path?query, Range header)
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def file_requests(self) -> list[tuple[str, str | None]]:
        return [r for r in self.requests if "/api/access/" in r[0]]

    def listing(self) -> dict:
        entries = []
        for f in self.files.values():
            data = {
                "id": f.file_id,
                "filename": f.name,
                "filesize": len(f.content),
                "md5": hashlib.md5(f.content).hexdigest(),
                "checksum": {"type": "MD5", "value": hashlib.md5(f.content).hexdigest()},
            }
            if f.behaviour == "tabular":
                # Dataverse renames an ingested table to .tab; the checksum stays the original's.
                data.update(
                    filename=f.name.rsplit(".", 1)[0] + ".tab",
                    filesize=999,
                    originalFileFormat="text/csv",
                    originalFileName=f.name,
                    originalFileSize=len(f.content),
                )
            entry = {"label": data["filename"], "dataFile": data}
            if f.directory:
                entry["directoryLabel"] = f.directory
            entries.append(entry)
        return {
            "status": "OK",
            "data": {
                "persistentUrl": f"https://doi.org/{DOI}",
                "latestVersion": {
                    "versionNumber": 1,
                    "versionMinorNumber": 0,
                    "versionState": "RELEASED",
                    "files": entries,
                },
            },
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body: bytes, content_type: str, extra=None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                if parsed.path == "/api/datasets/:persistentId/":
                    if query.get("persistentId") == [f"doi:{DOI}"]:
                        body = json.dumps(server.listing()).encode()
                        self._send(200, body, "application/json")
                    else:
                        error = {
                            "status": "ERROR",
                            "message": f"Dataset with Persistent ID {query['persistentId'][0]} "
                            "not found.",
                        }
                        self._send(404, json.dumps(error).encode(), "application/json")
                    return
                match = re.fullmatch(r"/api/access/datafile/(\d+)", parsed.path)
                if match is None or int(match.group(1)) not in server.files:
                    self._send(404, b'{"status":"ERROR"}', "application/json")
                    return
                f = server.files[int(match.group(1))]
                f.n_gets += 1
                if f.behaviour == "tabular" and query.get("format") != ["original"]:
                    self._send(200, b"archival\ttab\n", "text/tab-separated-values")
                    return
                if f.behaviour == "unavailable_once" and f.n_gets == 1:
                    self._send(503, b"busy", "text/plain")
                    return
                if f.behaviour == "forbidden":
                    self._send(
                        403, b'{"status":"ERROR","message":"restricted"}', "application/json"
                    )
                    return
                if f.behaviour == "html":
                    self._send(200, b"<html><body>Maintenance</body></html>", "text/html")
                    return
                if f.behaviour == "html_body":
                    page = b"  <!DOCTYPE html><html>Forbidden</html>"
                    self._send(200, page, "application/octet-stream")
                    return
                body = f.content
                if f.behaviour == "corrupt":
                    body = bytes(b ^ 0xFF for b in body[:3]) + body[3:]
                start = 0
                header = self.headers.get("Range")
                if header and f.behaviour != "ignore_range":
                    start = int(re.fullmatch(r"bytes=(\d+)-", header).group(1))
                cut = f.behaviour == "interrupt_always" or (
                    f.behaviour in ("interrupt_once", "ignore_range") and f.n_gets == 1
                )
                if cut:
                    # Announce the whole body, send half, close: an interrupted transfer.
                    self.send_response(206 if start else 200)
                    self.send_header("Content-Type", "application/octet-stream")
                    if start:
                        crange = f"bytes {start}-{len(body) - 1}/{len(body)}"
                        self.send_header("Content-Range", crange)
                    self.send_header("Content-Length", str(len(body) - start))
                    self.end_headers()
                    self.wfile.write(body[start : start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if start:
                    self._send(
                        206,
                        body[start:],
                        "application/octet-stream",
                        {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
                    )
                else:
                    self._send(200, body, "application/octet-stream")

        return Handler


@contextlib.contextmanager
def served(files: list[ServedFile]) -> Iterator[FakeDataverse]:
    """A FakeDataverse serving `files` on 127.0.0.1 while the block runs."""
    fake = FakeDataverse(files)
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()
        fake.httpd.server_close()


@pytest.fixture
def serve() -> Iterator:
    """serve(files) -> a started FakeDataverse; every server is stopped after the test."""
    with contextlib.ExitStack() as stack:
        yield lambda files: stack.enter_context(served(files))


def served_tree(root: Path) -> list[ServedFile]:
    """Every file below `root` as a served file, its folder relative to `root` as directoryLabel."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return [
        ServedFile(
            file_id=i,
            directory=str(path.parent.relative_to(root)) if path.parent != root else None,
            name=path.name,
            content=path.read_bytes(),
        )
        for i, path in enumerate(files, start=1)
    ]
