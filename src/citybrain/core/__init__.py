"""core: the shared base of every application — geo, people, authz, audit, events, jobs."""
