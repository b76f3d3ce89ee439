"""What went wrong with the PostgreSQL store, and what to do, in a sentence or two: the
PostgreSQL counterpart of ``flowhost.store.rows.describe`` (the same words where the cause
is the same, e.g. "locked", so a message reads alike on both backends)."""

from __future__ import annotations


def describe(exc: BaseException, where: str, busy_timeout: float) -> str:
    import psycopg
    from psycopg import errors

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
        return (f"{where}: another flowhost process kept the state database locked for more "
                f"than {busy_timeout:g}s. Wait for it to finish, or use another store "
                "(FLOWHOST_LOCK_TIMEOUT sets the wait in seconds)")
    if isinstance(exc, errors.DiskFull | errors.OutOfMemory):
        return (f"{where}: the PostgreSQL server is out of space (postgresql: {text}). "
                "Free some space on the server, or use another --store")
    if isinstance(exc, errors.InvalidCatalogName):
        return (f"{where}: {text}. Create it (createdb, or CREATE DATABASE), or name "
                "another database in --store")
    # (at connect time libpq's refusal comes as a plain OperationalError: read its text)
    if isinstance(exc, errors.InvalidAuthorizationSpecification | errors.InvalidPassword) \
            or "authentication failed" in text or "no password supplied" in text:
        return (f"{where}: the server refused the login ({text}). Check the user, and "
                "the password in $PGPASSWORD or ~/.pgpass (or in --store)")
    if isinstance(exc, errors.InsufficientPrivilege):
        return (f"{where}: the database user may not do this ({text}). Grant it the rights "
                "on the flowhost tables, or use another --store")
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return (f"{where}: the server is read-only (a standby?): {text}. Point --store at "
                "the primary")
    if isinstance(exc, psycopg.OperationalError):
        return (f"{where}: cannot reach the PostgreSQL server ({text}). Check the host and "
                "port in --store and that the server runs and accepts connections")
    return f"{where}: state database error: {text}"
