"""The input guard reads a NUL where the request's encoding would decode one, and only there;
the request-context middleware adds its headers without wrapping the app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from citybrain.web.guards import body_has_nul, url_has_nul
from tests.web.conftest import csrf_of

FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"


@pytest.mark.parametrize(
    ("body", "content_type", "nul"),
    [
        # JSON: the escape \u0000 decodes to NUL; "%00" is three characters of text.
        (b'{"code": "CB1:AB%00CD"}', JSON, False),
        (b'{"name": "a\\u0000b"}', JSON, True),
        (b'{"name": "a\x00b"}', JSON, True),
        # No type: FastAPI reads it as JSON.
        (b'{"code": "%00"}', b"", False),
        (b'{"name": "\\u0000"}', b"", True),
        # A form decodes %00; a "%" of the text itself arrives as %25.
        (b"code=CB1%3AAB%2500CD", FORM, False),
        (b"username=a%00b&password=x", FORM, True),
        (b"username=a\x00b", FORM, True),
        # multipart: values arrive raw; a part's header may percent-encode (any spelling).
        (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n%00\r\n--x--",
            b"multipart/form-data",
            True,
        ),
        (
            b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nok\r\n--x--",
            b"multipart/form-data",
            False,
        ),
        # Plain text (a CSV feed): only a raw NUL is one.
        (b"id,note\n1,100%00\n", b"text/csv", False),
        (b"id,note\n1,a\x00b\n", b"text/csv", True),
    ],
)
def test_a_nul_is_read_as_the_content_type_decodes_it(
    body: bytes, content_type: bytes, nul: bool
) -> None:
    assert body_has_nul(body, content_type) is nul


@pytest.mark.parametrize(
    ("url", "nul"),
    [
        (b"/api/v1/people/a%00b?", True),
        (b"/api/v1/people?q=a%00b", True),
        (b"/api/v1/people/a\x00b?", True),
        (b"/api/v1/people?q=100%2500", False),
        (b"/api/v1/people/ab?q=a%20b", False),
    ],
)
def test_a_url_is_percent_decoded(url: bytes, nul: bool) -> None:
    assert url_has_nul(url) is nul


def test_the_guard_in_front_of_the_app(client: TestClient) -> None:
    # A JSON body with "%00" in a string reaches the route (a wrong login, not a NUL).
    text = client.post("/api/v1/auth/token", json={"username": "a%00b", "password": "x"})
    assert text.status_code == 401, text.text
    # A form whose value holds a percent-encoded NUL, or a raw one, is refused up front.
    token = csrf_of(client)
    for body in (b"username=a%00b&password=x", b"username=a\x00b&password=x"):
        refused = client.post(
            "/login",
            content=body + b"&csrf_token=" + token.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "invalid_input"
    # The same form with "%" as text (encoded %25) is an ordinary wrong login.
    wrong = client.post(
        "/login",
        data={"username": "a%00b", "password": "x", "csrf_token": token},
    )
    assert wrong.status_code == 401
    # The URL: a percent-encoded NUL in the query is refused; "%" as text is not.
    assert client.get("/healthz?probe=%00").status_code == 422
    assert client.get("/healthz?probe=100%2500").status_code == 200
    # A raw NUL in a body of any other type is refused.
    raw = client.post(
        "/api/v1/auth/token", content=b"a\x00b", headers={"content-type": "text/plain"}
    )
    assert raw.status_code == 422 and raw.json()["error"]["code"] == "invalid_input"


def test_every_answer_carries_the_request_id_and_security_headers(client: TestClient) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": "gate-7-000123"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "gate-7-000123"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "same-origin"
    # Without one, the server makes an id; an unprintable one is replaced.
    made = client.get("/healthz").headers["x-request-id"]
    assert len(made) == 16 and int(made, 16) >= 0
    odd = client.get("/healthz", headers={"X-Request-ID": "a\tb"}).headers["x-request-id"]
    assert odd != "a\tb" and len(odd) == 16
    # Errors carry them too (the headers are added to whatever answer the app starts).
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.headers["x-frame-options"] == "DENY"


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    from citybrain.web.metrics import REQUESTS

    def count(route: str, status: str) -> float:
        return float(REQUESTS.labels("GET", route, status)._value.get())

    before = count("/api/v1/areas/{code}", "401")
    unmatched = count("unmatched", "404")
    assert client.get("/api/v1/areas/9999").status_code == 401  # no token
    assert client.get("/api/v1/nothing-here").status_code == 404
    # The template, never the path with its values (which may be personal).
    assert count("/api/v1/areas/{code}", "401") == before + 1
    assert count("unmatched", "404") == unmatched + 1
