"""Roles and what each may do. Deny by default: a permission not listed is not held."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The roles of citybrain's users, each bound to an area of the hierarchy."""

    CITY_COMMANDER = "city_commander"  # 市指挥部
    DISTRICT_OFFICER = "district_officer"  # 区县防控办
    STREET_OFFICER = "street_officer"  # 街道/乡镇
    GRID_WORKER = "grid_worker"  # 社区网格员
    CLINIC_STAFF = "clinic_staff"  # 发热门诊
    CHECKPOINT_STAFF = "checkpoint_staff"  # 卡口
    ENTERPRISE_ADMIN = "enterprise_admin"  # 企业
    SCHOOL_ADMIN = "school_admin"  # 学校
    AUDITOR = "auditor"  # 审计
    SYSTEM_ADMIN = "system_admin"  # 系统管理员
    DATA_OFFICER = "data_officer"  # 数据中心专员


class Permission(StrEnum):
    """Fine-grained permissions checked by routes and services."""

    PERSON_SEARCH = "person.search"
    PERSON_VIEW = "person.view"
    PERSON_UNMASK = "person.unmask"
    PERSON_CREATE = "person.create"
    GEO_VIEW = "geo.view"
    AUDIT_VIEW = "audit.view"
    USER_MANAGE = "user.manage"
    DEVICE_SCAN = "device.scan"
    DATAHUB_VIEW = "datahub.view"  # the data centre's status board and file ledger
    # The quarantine holds rows exactly as the agency sent them: raw personal data.
    DATAHUB_QUARANTINE = "datahub.quarantine"
    DATAHUB_PUSH = "datahub.push"  # agency tokens only: push feed batches
    # A person's whole trajectory across every source (流调): city-level investigation only.
    TRAJECTORY_READ = "trajectory.read"
    # Compound resident registration (小区居民健康登记): a compound's residents (masked), their
    # daily reports, entries and exits; and issuing passes (出入证) to households.
    RESIDENTS_VIEW = "residents.view"
    RESIDENTS_PASS = "residents.pass"  # noqa: S105 — a permission name
    # Withdrawing a registration that should not stand (撤销登记), after checking in person.
    RESIDENTS_CORRECT = "residents.correct"
    # Health-code risk (赋码): colours with their facts; asserting facts (clinic staff only a
    # fever visit or a negative test); rule versions, manual colours (two people each) and
    # appeals.
    RISK_VIEW = "risk.view"
    RISK_ASSERT = "risk.assert"
    RISK_ASSERT_CLINICAL = "risk.assert_clinical"
    # The list of people showing red or yellow in a jurisdiction (红黄码人员名单): those who
    # find them and put them under control, not a clinic, which looks up its own patients.
    RISK_PEOPLE = "risk.people"
    RULES_PROPOSE = "risk.rules_propose"
    RULES_APPROVE = "risk.rules_approve"
    OVERRIDE_REQUEST = "risk.override_request"
    OVERRIDE_APPROVE = "risk.override_approve"
    APPEAL_DECIDE = "risk.appeal_decide"
    # The leadership cockpit (领导驾驶舱): aggregate figures and alerts of a jurisdiction, no
    # personal data.
    COCKPIT_VIEW = "cockpit.view"
    # Printing a place's code (场所码) for the places of one's area: compound staff, and the
    # enterprises and schools that run venues.
    PLACE_CODE_ISSUE = "place_code.issue"
    # Enrolling, renewing and withdrawing the scanning devices (场所设备) of the places of one's
    # area — gates, checkpoints, venue scanners: the staff who run compounds and those above
    # them withdraw a lost device at once.
    DEVICE_MANAGE = "device.manage"


ROLE_LABELS: dict[Role, tuple[str, str]] = {
    Role.CITY_COMMANDER: ("市指挥部指挥长", "City commander"),
    Role.DISTRICT_OFFICER: ("区县防控专员", "District officer"),
    Role.STREET_OFFICER: ("街道防控专员", "Street officer"),
    Role.GRID_WORKER: ("社区网格员", "Community grid worker"),
    Role.CLINIC_STAFF: ("发热门诊医护", "Clinic staff"),
    Role.CHECKPOINT_STAFF: ("卡口执勤人员", "Checkpoint staff"),
    Role.ENTERPRISE_ADMIN: ("企业管理员", "Enterprise admin"),
    Role.SCHOOL_ADMIN: ("学校管理员", "School admin"),
    Role.AUDITOR: ("审计员", "Auditor"),
    Role.SYSTEM_ADMIN: ("系统管理员", "System admin"),
    Role.DATA_OFFICER: ("数据中心专员", "Data-centre officer"),
}

_PEOPLE_WORK = {
    Permission.PERSON_SEARCH,
    Permission.PERSON_VIEW,
    Permission.PERSON_UNMASK,
    Permission.PERSON_CREATE,
    Permission.GEO_VIEW,
}

# Compound work (小区): the staff who run compounds, and those above them, look after registered
# residents and issue passes.
_COMPOUND_WORK = {
    Permission.RESIDENTS_VIEW,
    Permission.RESIDENTS_PASS,
    Permission.RESIDENTS_CORRECT,
    Permission.PLACE_CODE_ISSUE,
    Permission.DEVICE_MANAGE,
}
# Risk (赋码) in a jurisdiction: see colours, assert facts, request manual colours (a second
# person approves) and decide appeals.
_RISK_WORK = {
    Permission.RISK_VIEW,
    Permission.RISK_PEOPLE,
    Permission.RISK_ASSERT,
    Permission.OVERRIDE_REQUEST,
    Permission.APPEAL_DECIDE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    # The commander also proposes and approves rule versions and approves manual colours.
    Role.CITY_COMMANDER: frozenset(
        {
            *_PEOPLE_WORK,
            *_COMPOUND_WORK,
            *_RISK_WORK,
            Permission.DATAHUB_VIEW,
            Permission.TRAJECTORY_READ,
            Permission.RULES_PROPOSE,
            Permission.RULES_APPROVE,
            Permission.OVERRIDE_APPROVE,
            Permission.COCKPIT_VIEW,
        }
    ),
    Role.DISTRICT_OFFICER: frozenset(
        {*_PEOPLE_WORK, *_COMPOUND_WORK, *_RISK_WORK, Permission.COCKPIT_VIEW}
    ),
    Role.STREET_OFFICER: frozenset(
        {*_PEOPLE_WORK, *_COMPOUND_WORK, *_RISK_WORK, Permission.COCKPIT_VIEW}
    ),
    # Grid workers see colours and who shows red or yellow (they knock on the doors); facts
    # are asserted above them.
    Role.GRID_WORKER: frozenset(
        {*_PEOPLE_WORK, *_COMPOUND_WORK, Permission.RISK_VIEW, Permission.RISK_PEOPLE}
    ),
    # Clinic staff record fever visits and test results, nothing else of risk.
    Role.CLINIC_STAFF: frozenset(
        {
            Permission.PERSON_SEARCH,
            Permission.PERSON_VIEW,
            Permission.PERSON_CREATE,
            Permission.RISK_VIEW,
            Permission.RISK_ASSERT_CLINICAL,
        }
    ),
    Role.CHECKPOINT_STAFF: frozenset({Permission.DEVICE_SCAN, Permission.GEO_VIEW}),
    # Not the devices: their jurisdiction is an area, not their own venue, and a device
    # enrolled or withdrawn at a compound's gate decides who goes in and out of it.
    Role.ENTERPRISE_ADMIN: frozenset({Permission.GEO_VIEW, Permission.PLACE_CODE_ISSUE}),
    Role.SCHOOL_ADMIN: frozenset({Permission.GEO_VIEW, Permission.PLACE_CODE_ISSUE}),
    # The auditor reads the trail, never people's data.
    Role.AUDITOR: frozenset({Permission.AUDIT_VIEW, Permission.GEO_VIEW}),
    # The system admin manages accounts and devices, not people's data.
    Role.SYSTEM_ADMIN: frozenset(
        {Permission.USER_MANAGE, Permission.DEVICE_MANAGE, Permission.GEO_VIEW}
    ),
    # The data-centre officer watches the feeds and sends bad rows back to the agencies;
    # people's records in the registry are not theirs to search.
    Role.DATA_OFFICER: frozenset(
        {
            Permission.DATAHUB_VIEW,
            Permission.DATAHUB_QUARANTINE,
            Permission.GEO_VIEW,
            Permission.COCKPIT_VIEW,
        }
    ),
}

# Device tokens (gates, checkpoints, venues) act as a place, with scanning rights only.
DEVICE_PERMISSIONS = frozenset({Permission.DEVICE_SCAN})

# Agency tokens (railway, civil aviation, telecom…) act for one agency and may only push
# batches of that agency's categories; no role of a user holds datahub.push.
AGENCY_PERMISSIONS = frozenset({Permission.DATAHUB_PUSH})


def permissions_of(role: str) -> frozenset[Permission]:
    """Permissions of ``role``; an unknown role has none."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def role_label(role: str, lang: str = "zh-CN") -> str:
    """Human name of ``role`` in ``lang``."""
    try:
        zh, en = ROLE_LABELS[Role(role)]
    except ValueError:
        return role
    return en if lang == "en" else zh
