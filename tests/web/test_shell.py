from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from citybrain.core.audit.models import AuditEntry
from citybrain.core.authz.deps import GUARD_ATTRIBUTE
from citybrain.web.routers import ROUTERS
from tests.factories import STREET_A, make_user
from tests.web.conftest import csrf_of, log_in


def _guards(route: APIRoute) -> set[str]:
    found: set[str] = set()
    marker = getattr(route.endpoint, GUARD_ATTRIBUTE, None)
    if marker:
        found.add(str(marker))
    stack = list(route.dependant.dependencies)
    while stack:
        dependency = stack.pop()
        marker = getattr(dependency.call, GUARD_ATTRIBUTE, None)
        if marker:
            found.add(str(marker))
        stack.extend(dependency.dependencies)
    return found


def _all_routes(app: FastAPI) -> list[APIRoute]:
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    for router in ROUTERS:
        routes.extend(r for r in router.routes if isinstance(r, APIRoute))
    return routes


def test_every_route_is_guarded_or_deliberately_public(app: FastAPI) -> None:
    routes = _all_routes(app)
    assert len(routes) > 15
    unguarded = [route.path for route in routes if not _guards(route)]
    assert unguarded == []
    public = sorted(route.path for route in routes if _guards(route) == {"public"})
    assert public == [
        "/api/v1/auth/token",
        # Gates download the trust list to verify codes offline.
        "/api/v1/healthcode/trust-list",
        # A resident's own valid health code identifies them.
        "/api/v1/scans/place",
        "/docs",
        # The gate page's service worker: a script that keeps the page, no data of anyone.
        "/healthcode/gate-sw.js",
        "/healthz",
        "/login",
        "/login",
        "/metrics",
        "/readyz",
        # Residents register and log in before they have a session.
        "/residents/login",
        # ... and take their new phone when the one on record is not theirs (any more).
        "/residents/phone",
        "/residents/phone",
        "/residents/picker",
        "/residents/picker/compounds",
        "/residents/register",
        "/residents/register",
    ]


def test_health_and_metrics(client: TestClient, session: Session) -> None:
    from citybrain.core.events.service import publish

    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/login")
    metrics = client.get("/metrics").text
    assert "citybrain_http_requests_total" in metrics
    assert 'route="/login"' in metrics
    before = _gauge(metrics, "citybrain_outbox_pending_events")
    publish(session, "test.metrics", {"n": 1})
    session.flush()
    after = _gauge(client.get("/metrics").text, "citybrain_outbox_pending_events")
    assert after == before + 1


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


def test_docs_are_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "citybrain 城市大脑"


def test_pages_need_a_login_and_the_api_says_401(client: TestClient) -> None:
    response = client.get("/people?q=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/people%3Fq%3Dx"
    api = client.get("/api/v1/people")
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "not_authenticated"


def test_login_page_is_chinese_first_with_an_english_switch(client: TestClient) -> None:
    page = client.get("/login")
    assert 'lang="zh-CN"' in page.text and "登录" in page.text
    english = client.get("/login?lang=en")
    assert 'lang="en"' in english.text and "Log in" in english.text
    # The choice sticks through the cookie.
    assert 'lang="en"' in client.get("/login").text


def test_login_then_home_shows_role_and_jurisdiction(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "homeuser")
    log_in(client, "homeuser")
    home = client.get("/")
    assert home.status_code == 200
    assert "街道防控专员" in home.text and "经八路街道" in home.text
    assert 'href="/people"' in home.text and 'href="/audit"' not in home.text
    # The health-code work a street officer does, each a card that opens.
    for card, title in (
        ("/risk/appeals", "申诉处理"),
        ("/risk/overrides", "人工赋码台账"),
        ("/residents/staff", "小区居民管理"),
        ("/healthcode/place-codes", "场所码打印"),
    ):
        assert f'<a class="card" href="{card}">{title}</a>' in home.text
        assert client.get(card).status_code == 200, card
    assert 'href="/healthcode/gate"' not in home.text  # gate scanning is checkpoint work


def test_enterprises_and_schools_print_their_venues_codes(
    client: TestClient, session: Session
) -> None:
    make_user(session, "enterprise_admin", STREET_A, "firmadmin")
    log_in(client, "firmadmin")
    home = client.get("/").text
    assert '<a class="card" href="/healthcode/place-codes">场所码打印</a>' in home
    assert client.get("/healthcode/place-codes").status_code == 200
    assert 'href="/people"' not in home and client.get("/risk/appeals").status_code == 403


def test_auditor_home_offers_the_audit_log_not_people(client: TestClient, session: Session) -> None:
    make_user(session, "auditor", "4101", "audithome")
    log_in(client, "audithome")
    home = client.get("/").text
    assert 'href="/audit"' in home and 'href="/people"' not in home
    assert client.get("/people").status_code == 403
    audit = client.get("/audit?verify=1")
    assert audit.status_code == 200 and 'data-testid="chain-ok"' in audit.text


def test_form_posts_need_the_csrf_token(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "csrfuser")
    response = client.post(
        "/login", data={"username": "csrfuser", "password": "x", "csrf_token": "forged"}
    )
    assert response.status_code == 403
    log_in(client, "csrfuser")
    forged = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    good = client.post("/logout", data={"csrf_token": csrf_of(client, "/")}, follow_redirects=False)
    assert good.status_code == 303


def test_failed_logins_show_an_error_then_lock_out(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "lockme")
    token = csrf_of(client)
    statuses = []
    for _ in range(6):
        response = client.post(
            "/login", data={"username": "lockme", "password": "wrong-pass-1", "csrf_token": token}
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    assert (
        "用户名或密码错误"
        in client.post(
            "/login", data={"username": "other", "password": "wrong-pass-1", "csrf_token": token}
        ).text
    )
    denials = session.scalars(
        select(AuditEntry).where(AuditEntry.action == "auth.login", AuditEntry.outcome == "denied")
    ).all()
    assert len(denials) >= 6


def test_login_redirect_stays_on_this_site(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "nextuser")
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={
            "username": "nextuser",
            "password": "test-password-1",
            "csrf_token": token,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_validation_errors_name_the_field_in_one_shape(
    client: TestClient, session: Session
) -> None:
    from citybrain.core.authz import repository
    from citybrain.core.authz.service import issue_token
    from tests.factories import TEST_ACTOR

    who = make_user(session, "street_officer", STREET_A)
    _token, secret = issue_token(
        session, TEST_ACTOR, name="t", user=repository.user_by_id(session, who.id)
    )
    response = client.post(
        "/api/v1/people",
        headers={"authorization": f"Bearer {secret}"},
        json={"name": "", "id_number": "410105198503141234"},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == "name"
    assert "name" in error["message"]
    limit = client.get(
        "/api/v1/people", params={"limit": 0}, headers={"authorization": f"Bearer {secret}"}
    )
    assert limit.json()["error"]["field"] == "limit"


def test_a_copied_session_cookie_dies_with_the_logout(client: TestClient, session: Session) -> None:
    make_user(session, "street_officer", STREET_A, "cookieuser")
    log_in(client, "cookieuser")
    stolen = client.cookies.get("citybrain_session")
    assert stolen and client.get("/").status_code == 200
    token = csrf_of(client, "/")
    assert (
        client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )
    client.cookies.set("citybrain_session", stolen)
    replay = client.get("/", follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    # Logging in again works and gives a fresh session.
    client.cookies.clear()
    log_in(client, "cookieuser")
    assert client.get("/").status_code == 200


def test_auditors_export_the_filtered_trail(client: TestClient, session: Session) -> None:
    make_user(session, "auditor", "4101", "exporter")
    log_in(client, "exporter")
    export = client.get("/audit/export.csv", params={"action": "auth.login"})
    assert export.status_code == 200 and export.headers["cache-control"] == "no-store"
    lines = export.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("seq,at,actor")
    assert len(lines) >= 2 and all(",auth.login," in line for line in lines[1:])
    assert "audit.export" in client.get("/audit").text


def test_admin_creates_and_disables_accounts_in_their_jurisdiction(
    client: TestClient, session: Session
) -> None:
    make_user(session, "system_admin", "410105", "jinshuiadmin")
    log_in(client, "jinshuiadmin")
    token = csrf_of(client, "/admin/users")
    outside = client.post(
        "/admin/users",
        data={
            "username": "faraway",
            "role": "street_officer",
            "area_code": "410102001",
            "password": "good-password-1",
            "csrf_token": token,
        },
    )
    assert outside.status_code == 422 and "辖区" in outside.text
    created = client.post(
        "/admin/users",
        data={
            "username": "newstreet",
            "display_name": "新专员",
            "role": "street_officer",
            "area_code": STREET_A,
            "password": "good-password-1",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    page = client.get("/admin/users")
    assert "newstreet" in page.text
    from citybrain.core.authz import repository

    user = repository.user_by_username(session, "newstreet")
    assert user is not None and user.is_active
    disabled = client.post(
        f"/admin/users/{user.id}/active",
        data={"active": "false", "csrf_token": token},
        follow_redirects=False,
    )
    assert disabled.status_code == 303
    session.refresh(user)
    assert not user.is_active and user.sessions_revoked_at is not None
    # The disabled account can no longer log in.
    other = TestClient(client.app)
    other_token = csrf_of(other)
    refused = other.post(
        "/login",
        data={"username": "newstreet", "password": "good-password-1", "csrf_token": other_token},
    )
    assert refused.status_code == 401


def test_nul_characters_and_oversized_bodies_are_refused_up_front(
    client: TestClient, session: Session
) -> None:
    token = csrf_of(client)
    for response in (
        client.get("/api/v1/people/a%00b"),
        client.post("/login", data={"username": "a\x00b", "password": "x", "csrf_token": token}),
        client.post("/api/v1/auth/token", json={"username": "a\u0000b", "password": "x"}),
    ):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_input"
    big = client.post(
        "/api/v1/auth/token",
        content=b"{" + b" " * (17 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413


def test_framework_errors_answer_in_our_shape(client: TestClient) -> None:
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.delete("/api/v1/auth/token")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    garbled = client.post(
        "/api/v1/auth/token", content=b"\xfb", headers={"content-type": "application/json"}
    )
    assert garbled.status_code == 422 and garbled.json()["error"]["code"] == "invalid_input"
    page = client.get("/no-such-page")
    assert page.status_code == 404 and "<html" in page.text


def test_errors_show_in_the_shell_of_the_site_they_belong_to(client: TestClient) -> None:
    """A resident who follows a dead link stays in the residents' pages, with the way back to
    their start; staff see the staff shell."""
    resident = client.get("/residents/no-such-page")
    assert resident.status_code == 404
    assert 'href="/residents" data-testid="error-back"' in resident.text
    assert "页面或接口不存在" in resident.text
    assert 'class="brand" href="/residents"' in resident.text
    staff = client.get("/no-such-page")
    assert staff.status_code == 404 and "页面或接口不存在" in staff.text
    assert 'data-testid="error-back"' not in staff.text
