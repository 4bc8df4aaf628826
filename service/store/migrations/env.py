"""Alembic environment.

Two ways in, one upgrade:

- ``Database.migrate`` (every start-up) hands over an open connection in
  ``config.attributes["connection"]``, inside its own transaction, so the whole upgrade commits or
  rolls back as one (on PostgreSQL under an advisory lock shared by every server; on SQLite with
  foreign keys off while a table is rebuilt: ``store.database.migration_connection``);
- the ``alembic`` command (``alembic upgrade head``, ``alembic history``, ``alembic revision -m …``
  from the checkout, with ``alembic.ini``) gets here without one: the database is the service's own
  (``COVERAGE_CRITERIA_DATABASE_URL``, else the default SQLite file of the data folder), opened
  through :class:`~service.store.database.Database` so that SQLite gets the same settings as in
  service, and migrated by the same ``migrate``.

The ``alembic`` command also compares the database with every model, the faces' own tables
included (``alembic revision --autogenerate``, ``alembic check``: docs/operations.md, "Writing a
migration"): it imports the whole service, which start-up's ``migrate`` has no need to wait for.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
else:
    import service.app  # noqa: F401 - every face, and so every table, joins the models' metadata
    from service.settings import Settings
    from service.store.database import Database, migration_connection
    from service.store.tables import Base

    database = Database(Settings.from_env().database_url)
    try:
        with migration_connection(database.engine) as connection:
            context.configure(connection=connection, target_metadata=Base.metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        database.dispose()
