"""The SQL store: entities and event records. SQLite file by default, PostgreSQL when configured.

``open_sql(settings)`` (``engine.py``, called by the composition root only) gives a migrated ``AsyncEngine``.
Every table is declared once in ``tables.py``; migrations are numbered ``.sql`` files in ``migrations/``
(a test checks they create exactly the declared schema). One repository module per entity: ``users``,
``entities`` (camera groups, cameras, watch lists), ``dossiers``, ``events``, ``videos``, ``episodes``,
``counters``, ``webhooks``, ``telegram``; they share ``base`` (errors, ids, keyset pages, CRUD) and return
typed models.
"""
