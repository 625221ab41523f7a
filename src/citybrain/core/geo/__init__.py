"""The city's geography (地理): the real administrative hierarchy of Zhengzhou — city, 15
county-level units, 208 streets (街道/乡镇), 3,306 communities (社区/村) — with deterministic
synthetic compounds (小区) and places (场所: gates, checkpoints, stations, the airport, venues).

``models`` holds the tables, ``repository`` the queries and packaged source data, ``service``
the idempotent loader, ``compounds`` and ``places`` the seeded generators.
"""
