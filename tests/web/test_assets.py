"""Static files go compressed to browsers that accept gzip: the same bytes once decoded, an
ETag of their own, conditional requests answered 304, and the file as it is for clients
that do not accept gzip, for ranges and for small files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.datastructures import Headers

from citybrain.kit.settings import get_settings
from citybrain.web.app import PACKAGE_DIR
from citybrain.web.assets import accepts_gzip

READER = "/static/vendor/jsQR.js"


def _vendor_file(name: str) -> Path:
    vendor = get_settings().vendor_dir or PACKAGE_DIR.parents[1] / "build" / "web-vendor"
    return Path(vendor) / name


def _raw(client: TestClient, url: str, **headers: str) -> tuple[int, Headers, bytes, int]:
    """Status, headers, body as sent (not decoded) and bytes on the wire."""
    with client.stream("GET", url, headers=headers) as response:
        body = b"".join(response.iter_raw())
        return response.status_code, Headers(raw=response.headers.raw), body, len(body)


def test_the_qr_reader_goes_compressed_and_decodes_to_the_file(client: TestClient) -> None:
    original = _vendor_file("jsQR.js").read_bytes()
    status, headers, body, sent = _raw(client, READER, **{"Accept-Encoding": "gzip, br"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"].startswith("text/javascript")
    assert gzip.decompress(body) == original
    assert sent < len(original) / 3  # about a fifth: what a phone at a checkpoint waits for

    # Its own ETag, and a browser that holds it is answered 304 with no body.
    plain_status, plain, plain_body, _ = _raw(client, READER, **{"Accept-Encoding": "identity"})
    assert plain_status == 200 and "content-encoding" not in plain
    assert plain_body == original and plain["vary"] == "Accept-Encoding"
    assert headers["etag"] != plain["etag"]
    again = client.get(
        READER, headers={"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""
    # The plain form's ETag does not match the compressed form.
    other = client.get(READER, headers={"Accept-Encoding": "gzip", "If-None-Match": plain["etag"]})
    assert other.status_code == 200


def test_ranges_small_files_and_refusals_get_the_file_as_it_is(client: TestClient) -> None:
    original = _vendor_file("jsQR.js").read_bytes()
    status, headers, body, _ = _raw(
        client, READER, **{"Accept-Encoding": "gzip", "Range": "bytes=0-99"}
    )
    assert status == 206 and body == original[:100] and "content-encoding" not in headers
    status, headers, body, _ = _raw(client, READER, **{"Accept-Encoding": "gzip;q=0"})
    assert status == 200 and body == original and "content-encoding" not in headers
    # favicon.svg is a few hundred bytes: not worth compressing.
    status, headers, body, _ = _raw(client, "/static/favicon.svg", **{"Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and body.startswith(b"<svg")
    assert client.get("/static/vendor/nothing.js").status_code == 404


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("GZIP", True),
        ("*", True),
        ("gzip;q=0", False),
        ("br", False),
        ("", False),
        ("identity", False),
    ],
)
def test_accept_encoding_is_read_with_its_qualities(header: str, accepted: bool) -> None:
    assert accepts_gzip(Headers({"accept-encoding": header})) is accepted
