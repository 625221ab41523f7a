"""Static files sent compressed (gzip) to browsers that accept it.

The cockpit loads ECharts (1.1 MB) and the gate's phone page the QR reader (257 KB) over
whatever network a checkpoint has; compressed they are a third and a fifth of that. Each file
is compressed once per server process, on its first request, and kept in memory while the
file is unchanged; only the static mounts use this, so no API answer pays for compression.
"""

from __future__ import annotations

import gzip
import os
import threading
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

# Text that compresses well; images and fonts are compressed already.
COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".html", ".map", ".txt")
# Below this a compressed answer saves less than its headers cost.
MIN_BYTES = 1024
# Level 6: within a few per cent of level 9 for JavaScript, at a third of the time.
LEVEL = 6


def accepts_gzip(headers: Headers) -> bool:
    """Whether the request's Accept-Encoding allows gzip (and does not refuse it, q=0)."""
    for part in headers.get("accept-encoding", "").lower().split(","):
        coding, _, params = part.partition(";")
        if coding.strip() in ("gzip", "*"):
            quality = params.strip()
            if not quality.startswith("q="):
                return True
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return True
    return False


class CompressedStaticFiles(StaticFiles):
    """``StaticFiles`` that answers gzip to clients that accept it, with its own ETag (so a
    cache never mixes the two forms) and ``Vary: Accept-Encoding``. Range requests, small
    files and already-compressed formats get the file as it is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        # path -> (mtime_ns, size, compressed bytes)
        self._compressed: dict[str, tuple[int, int, bytes]] = {}

    def _gzip_of(self, path: str, stat_result: os.stat_result) -> bytes:
        with self._lock:
            hit = self._compressed.get(path)
        if hit is not None and hit[:2] == (stat_result.st_mtime_ns, stat_result.st_size):
            return hit[2]
        with open(path, "rb") as handle:
            data = gzip.compress(handle.read(), compresslevel=LEVEL, mtime=0)
        with self._lock:
            self._compressed[path] = (stat_result.st_mtime_ns, stat_result.st_size, data)
        return data

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file, compressed when the client accepts gzip and it is worth it."""
        request_headers = Headers(scope=scope)
        path = os.fspath(full_path)
        if (
            status_code != 200
            or stat_result.st_size < MIN_BYTES
            or not path.endswith(COMPRESSIBLE)
            or "range" in request_headers
            or not accepts_gzip(request_headers)
        ):
            response = super().file_response(full_path, stat_result, scope, status_code)
            if path.endswith(COMPRESSIBLE) and stat_result.st_size >= MIN_BYTES:
                response.headers["vary"] = "Accept-Encoding"
            return response
        plain = FileResponse(path, stat_result=stat_result)
        headers = {
            "content-type": plain.headers["content-type"],
            "last-modified": plain.headers["last-modified"],
            "etag": plain.headers["etag"].removesuffix('"') + '-gzip"',
            "content-encoding": "gzip",
            "vary": "Accept-Encoding",
        }
        if self.is_not_modified(Headers(headers), request_headers):
            return NotModifiedResponse(Headers(headers))
        return Response(self._gzip_of(path, stat_result), status_code, headers=headers)
