"""web: the app factory, the one list of routers, base templates and static files."""
