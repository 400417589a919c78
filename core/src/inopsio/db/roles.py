"""The application role: logs in, owns nothing, cannot bypass row-level security.

Migrations run as the owner; ``inopsio migrate`` then creates or corrects the application role
and grants it exactly the privileges each table declares.
"""

from __future__ import annotations

from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection, make_url

from inopsio.db.base import APP_PRIVILEGES

DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


class UnsafeAppRole(RuntimeError):
    """The configured application role could bypass row-level security."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_app_role(connection: Connection, role: str, password: str | None, metadata: MetaData) -> None:
    """Create the role if missing, strip any power it must not have, and grant table privileges."""
    powers = connection.execute(
        text(
            "SELECT rolcanlogin, rolsuper, rolbypassrls, rolcreatedb, rolcreaterole, rolreplication "
            "FROM pg_roles WHERE rolname = :r"
        ),
        {"r": role},
    ).first()
    r = _ident(role)
    if powers is None:
        connection.execute(text(f"CREATE ROLE {r} LOGIN"))
    # The role is shared by every database on the server: rewrite it only when it is wrong, or two
    # databases migrating at once collide on its row ("tuple concurrently updated").
    if powers is None or tuple(powers) != (True, False, False, False, False, False):
        connection.execute(text(f"ALTER ROLE {r} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION"))
    if password:
        connection.execute(text(f"ALTER ROLE {r} PASSWORD " + _literal(connection, password)))
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    connection.execute(text(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {r}"))
    connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {r}"))
    existing = set(
        connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).scalars()
    )
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        privileges = table.info.get(APP_PRIVILEGES, DEFAULT_PRIVILEGES)
        connection.execute(text(f"REVOKE ALL ON TABLE {_ident(table.name)} FROM {r}"))
        connection.execute(text(f"GRANT {privileges} ON TABLE {_ident(table.name)} TO {r}"))
    connection.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"))


def _literal(connection: Connection, value: str) -> str:
    return str(connection.execute(text("SELECT quote_literal(:v)"), {"v": value}).scalar_one())


def check_app_role(connection: Connection) -> None:
    """Refuse to serve requests as a role that could read across tenants."""
    row = connection.execute(
        text(
            """
            SELECT r.rolname, r.rolsuper, r.rolbypassrls,
                   (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p'))
            FROM pg_roles r WHERE r.rolname = current_user
            """
        )
    ).one()
    name, superuser, bypass, owned = row
    if superuser or bypass or owned:
        problems = [p for p, bad in (("is a superuser", superuser), ("has BYPASSRLS", bypass)) if bad]
        if owned:
            problems.append(f"owns {owned} table(s)")
        raise UnsafeAppRole(
            f"the application database role {name!r} {' and '.join(problems)}; it must own nothing and "
            "be subject to row-level security (set INOPSIO_DATABASE_APP_URL to another role)"
        )


def app_url_from_owner_url(owner_url: str, role: str) -> str:
    """The owner URL with the user replaced by the application role (no password: trust or peer)."""
    url = make_url(owner_url).set(username=role, password=None)
    return url.render_as_string(hide_password=False)
