"""Alembic environment: run the roster migrations online or offline.

Configured in code by ``service.roster.database.alembic_config`` / ``upgrade_database`` (there is no
alembic.ini). Online, the connection handed over in ``config.attributes["connection"]`` is used
when there is one; otherwise an engine is made from ``sqlalchemy.url``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from alembic import context
from sqlalchemy import Connection, TypeDecorator, event

from service.roster.database import Base, make_engine

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render application TypeDecorators as their plain SQLAlchemy type.

    Migrations then never import application code, which may change after they are written.
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        autogen_context.imports.add("import sqlalchemy as sa")
        return f"sa.{obj.impl!r}"
    return False


def _configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_item": render_item,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        "render_as_batch": dialect_name == "sqlite",
    }


def run_migrations_offline() -> None:
    """Write the migration SQL for ``sqlalchemy.url``'s dialect instead of running it."""
    url = config.get_main_option("sqlalchemy.url")
    dialect_name = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_configure_options(dialect_name)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the handed-over connection, or on a fresh one from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _run_on(connection)
    finally:
        engine.dispose()


def _run_on(connection: Connection) -> None:
    with (_one_migrator_at_a_time(connection), _sqlite_foreign_keys_off(connection),
          _sqlite_transactional_ddl(connection)):
        context.configure(connection=connection, **_configure_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()


MIGRATION_LOCK = 4_711_042  # any constant: the key of PostgreSQL's advisory lock for migrating


@contextmanager
def _one_migrator_at_a_time(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, replicas starting together take turns: the second waits, then finds nothing to do.

    (SQLite serialises writers itself.) A session-level advisory lock: migrations commit step by step.
    """
    if connection.dialect.name != "postgresql" or connection.in_transaction():
        yield
        return
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        connection.commit()


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Suspend SQLite foreign keys while migrating, then check them and switch them back on.

    A batch migration drops and re-creates a table; with foreign keys on, dropping ``people``
    would cascade and delete every face. The PRAGMA is ignored inside a transaction, so this
    only acts on a connection that is not in one (as ``upgrade_database`` hands over).
    """
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        yield
        if connection.in_transaction():
            connection.commit()
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows breaking foreign keys (table, rowid, parent, fk): {broken}")
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


@contextmanager
def _sqlite_transactional_ddl(connection: Connection) -> Iterator[None]:
    """Run the migrations in one real SQLite transaction, DDL included, taking the write lock at once.

    Python's sqlite3 driver opens a transaction only before INSERT/UPDATE/DELETE, so CREATE, DROP and
    ALTER each committed on their own: a process killed during the first migration left tables without
    a version row, and every later start failed on "table people already exists". Here the driver's
    own transaction handling is switched off and each transaction this connection begins is a
    BEGIN IMMEDIATE: all the steps commit together or not at all, and a second process starting at
    the same moment waits for the first (busy_timeout), then finds nothing to do.
    """
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    driver = connection.connection.dbapi_connection
    managed = driver.isolation_level

    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    driver.isolation_level = None  # the driver no longer opens (or skips) transactions by itself
    event.listen(connection, "begin", begin)
    try:
        yield
    finally:
        event.remove(connection, "begin", begin)
        if connection.in_transaction():
            connection.rollback()
        driver.isolation_level = managed


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
