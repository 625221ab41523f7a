"""Users, roles, jurisdiction scope, sessions and tokens (权限与辖区)."""
