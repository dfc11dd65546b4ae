"""The PostgreSQL role the dashboard reads as (scripts/dashboard.sh up postgres://...).

    SQLSCORE_DASHBOARD_PG_URL=postgres://... python dashboard/pg_viewer.py STATE_DIR VIEW...

Checks that the database has the BI views, then, when the URL's role may create roles, makes sure
a role `sqlscore_dashboard` exists that can log in, read those views (and call the two functions
the job views read through) and nothing else: no superuser, no other privileges (it can still
call functions granted to PUBLIC), and read-only sessions with a statement timeout. Its password is generated once into STATE_DIR (mode 0600).
Prints the SQLAlchemy URI Superset connects with. A URL whose role cannot create roles is used
as it is, unless that role is a superuser.

The URL comes through the environment, not the command line, where `ps` would show its password.
"""
from __future__ import annotations

import os
import secrets
import sys
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

ROLE = "sqlscore_dashboard"


def main() -> int:
    state, views = sys.argv[1], sys.argv[2:]
    url = os.environ["SQLSCORE_DASHBOARD_PG_URL"]
    con = psycopg2.connect(url, connect_timeout=10)
    con.autocommit = True
    cur = con.cursor()
    cur.execute(
        "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'v' AND c.relname = ANY(%s) AND n.nspname = ANY(current_schemas(false))",
        [views],
    )
    found = dict(cur.fetchall())
    missing = sorted(set(views) - set(found))
    if missing:
        print(f"dashboard: the database lacks the views {', '.join(missing)}", file=sys.stderr)
        return 1
    cur.execute("SELECT rolsuper, rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    superuser, can_create = cur.fetchone()
    info = con.info
    if not can_create:
        if superuser:
            print("dashboard: refusing to let Superset connect as a superuser", file=sys.stderr)
            return 1
        auth = quote(info.user) + (":" + quote(info.password) if info.password else "")
        print(f"postgresql+psycopg2://{auth}@{info.host}:{info.port}/{quote(info.dbname)}")
        return 0

    path = os.path.join(state, "pg_viewer_password")
    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
    role = sql.Identifier(ROLE)
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE])
    verb = sql.SQL("ALTER") if cur.fetchone() else sql.SQL("CREATE")
    cur.execute(sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
                        "NOBYPASSRLS PASSWORD {}").format(verb, role, sql.Literal(password)))
    cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role))
    cur.execute(sql.SQL("ALTER ROLE {} SET statement_timeout = '60s'").format(role))
    cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(info.dbname), role))
    for view, schema in sorted(found.items()):
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), role))
        cur.execute(sql.SQL("GRANT SELECT ON {}.{} TO {}").format(sql.Identifier(schema), sql.Identifier(view), role))
    # The job views call these (SECURITY DEFINER, the demo job's rows only: sql/bi_views_pg.sql);
    # a function in a view runs with the caller's EXECUTE privilege.
    cur.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.proname IN ('bi_job_runs', 'bi_jobs') AND n.nspname = ANY(current_schemas(false))"
    )
    for (function,) in cur.fetchall():
        cur.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {} TO {}").format(sql.SQL(function), role))
    uri = f"postgresql+psycopg2://{ROLE}:{quote(password)}@{info.host}:{info.port}/{quote(info.dbname)}"
    con.close()
    print(uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())
