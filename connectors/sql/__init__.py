"""The SQL store: entities and event records. SQLite file by default, PostgreSQL when configured.

``open_sql(settings)`` gives a migrated ``AsyncEngine``; repositories in ``connectors.sql.repositories``
take that engine. Migrations are numbered ``.sql`` files in ``connectors/sql/migrations/``.
"""
