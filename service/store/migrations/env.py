"""Alembic environment, driven by ``service.store.database.Database.migrate``.

``migrate`` hands over an open connection (in ``config.attributes["connection"]``) inside its own
transaction, so the whole upgrade commits or rolls back as one.
"""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
