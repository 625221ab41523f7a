"""The principal: who is asking, with which role, over which area."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from citybrain.core.audit.service import Actor
from citybrain.core.authz.roles import Permission, role_label
from citybrain.kit.errors import PermissionDenied


@dataclass(frozen=True)
class Principal:
    """An authenticated user, device or agency (an agency's system pushing its feeds)."""

    kind: Literal["user", "device", "agency"]
    id: int
    name: str
    display_name: str
    role: str
    area_code: str
    permissions: frozenset[Permission]
    # For an agency token: the source categories it may push (empty for everyone else).
    categories: frozenset[str] = frozenset()

    @property
    def actor(self) -> Actor:
        """This principal as an audit actor."""
        return Actor(f"{self.kind}:{self.id}", self.role, self.area_code)

    def can(self, permission: Permission) -> bool:
        """Whether the principal holds ``permission``."""
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        """Raise PermissionDenied unless the principal holds ``permission``."""
        if permission not in self.permissions:
            raise PermissionDenied(
                f"当前角色（{role_label(self.role)}）无权执行此操作",
                f"your role ({role_label(self.role, 'en')}) may not do this ({permission})",
                code="permission_denied",
            )
