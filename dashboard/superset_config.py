"""Superset configuration for sqlscore's local, offline dashboard (`make dashboard`).

Loaded by Superset through SUPERSET_CONFIG_PATH, which scripts/dashboard.sh sets. Everything that
changes per machine lives in the state directory (SQLSCORE_DASHBOARD_HOME, default
<repo>/.cache/superset): the metadata database, the secret key, the admin password, the logs.
Nothing secret is in this file.

Environment:
  SQLSCORE_DASHBOARD_HOME      state directory (scripts/dashboard.sh exports it, absolute)
  SUPERSET_SECRET_KEY          Flask secret key; when unset it is read from $STATE/secret_key
                               (scripts/dashboard.sh generates that file, mode 0600)
  SQLSCORE_DASHBOARD_CACHE_S   seconds a chart's query result may be served from cache (default 10)
"""

import os
import re
from datetime import timedelta

from superset.key_value.types import JsonKeyValueCodec

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATE_DIR = os.path.abspath(
    os.environ.get("SQLSCORE_DASHBOARD_HOME")
    or os.environ.get("SUPERSET_HOME")
    or os.path.join(_REPO, ".cache", "superset")
)
os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
DATA_DIR = STATE_DIR


def _secret_key() -> str:
    key = os.environ.get("SUPERSET_SECRET_KEY", "").strip()
    if key:
        return key
    path = os.path.join(STATE_DIR, "secret_key")
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        raise RuntimeError(
            f"no Superset secret key: set SUPERSET_SECRET_KEY or run `scripts/dashboard.sh start`, "
            f"which writes {path}"
        )
    return key


SECRET_KEY = _secret_key()

# Metadata database: a SQLite file in the state directory (the scored data itself is read from
# DuckDB / PostgreSQL through the databases defined in the dashboard bundle).
SQLALCHEMY_DATABASE_URI = (
    f"sqlite:///{os.path.join(STATE_DIR, 'superset.db')}?check_same_thread=false"
)

# ---------------------------------------------------------------------------------------------
# Caching. Superset 6.1 caches chart query results in DATA_CACHE_CONFIG (default NullCache, but
# with a backend and no timeout it falls back to CACHE_DEFAULT_TIMEOUT, one day). The timeout a
# chart gets is: the chart's own cache_timeout, else its dataset's, else its database's, else
# DATA_CACHE_CONFIG["CACHE_DEFAULT_TIMEOUT"]. So leave cache_timeout unset (null) in the bundle's
# charts, datasets and databases, and new scores show within CACHE_S seconds.
# SimpleCache is per gunicorn worker (in memory): staleness is still bounded by CACHE_S.
# ---------------------------------------------------------------------------------------------
CACHE_S = int(os.environ.get("SQLSCORE_DASHBOARD_CACHE_S", "10"))

CACHE_DEFAULT_TIMEOUT = CACHE_S  # also the Expires header of the legacy explore_json endpoint
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}  # Superset objects: not cached
DATA_CACHE_CONFIG = {
    "CACHE_TYPE": "SimpleCache" if CACHE_S > 0 else "NullCache",
    "CACHE_DEFAULT_TIMEOUT": CACHE_S,
    "CACHE_KEY_PREFIX": "sqlscore_data_",
    "CACHE_THRESHOLD": 500,
}
# Dashboard filter state and explore form state hold UI state, not chart data; they must be shared
# by the gunicorn workers, so they stay in the metadata database (Superset's default backend),
# set explicitly so Superset does not warn about the fallback.
FILTER_STATE_CACHE_CONFIG = {
    "CACHE_TYPE": "SupersetMetastoreCache",
    "CACHE_DEFAULT_TIMEOUT": int(timedelta(days=1).total_seconds()),
    "REFRESH_TIMEOUT_ON_RETRIEVAL": True,
    "CODEC": JsonKeyValueCodec(),
}
EXPLORE_FORM_DATA_CACHE_CONFIG = {
    "CACHE_TYPE": "SupersetMetastoreCache",
    "CACHE_DEFAULT_TIMEOUT": int(timedelta(days=1).total_seconds()),
    "REFRESH_TIMEOUT_ON_RETRIEVAL": True,
    "CODEC": JsonKeyValueCodec(),
}
# No thumbnails / screenshots (they need Celery and a webdriver).
THUMBNAIL_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

FEATURE_FLAGS = {
    "THUMBNAILS": False,
    "ALERT_REPORTS": False,
    "ENABLE_DASHBOARD_SCREENSHOT_ENDPOINTS": False,
    "ENABLE_DASHBOARD_DOWNLOAD_WEBDRIVER_SCREENSHOT": False,
    "PLAYWRIGHT_REPORTS_AND_THUMBNAILS": False,
    "GLOBAL_ASYNC_QUERIES": False,
    "DYNAMIC_PLUGINS": False,
    "ENABLE_TEMPLATE_PROCESSING": False,
    "SSH_TUNNELING": False,
    # Render every chart, not only those in the viewport: headless screenshots see them all.
    "DASHBOARD_VIRTUALIZATION": False,
}

# ---------------------------------------------------------------------------------------------
# Anonymous, read-only viewing. PUBLIC_ROLE_LIKE = "Public" (new in Superset 6) makes `superset
# init` give the Public role Superset's built-in minimal set for viewing dashboards: read
# dashboards, charts and chart data, dashboard filter state; no SQL Lab, no databases, no chart or
# dashboard editing, no explore/list pages. ("Gamma" would also let anonymous users open explore
# and the chart list, and would give them can_write on Chart and Dashboard.) It holds no data
# access: scripts/dashboard.sh grants all_datasource_access after `superset init` (which resets
# the role).
# ---------------------------------------------------------------------------------------------
AUTH_ROLE_PUBLIC = "Public"
PUBLIC_ROLE_LIKE = "Public"
AUTH_USER_REGISTRATION = False
ENABLE_PROXY_FIX = False
SHOW_STACKTRACE = False
PREVENT_UNSAFE_DB_CONNECTIONS = True

# CSRF stays on: REST clients log in through the form at /login/ (session cookie) and send the
# token as X-CSRFToken (GET /api/v1/security/csrf_token/).
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None
SESSION_COOKIE_SECURE = False  # served over plain http on 127.0.0.1
SESSION_COOKIE_SAMESITE = "Lax"

# ---------------------------------------------------------------------------------------------
# Offline: nothing is fetched from outside. The Content-Security-Policy allows only this server,
# which also keeps the browser from loading the navbar's analytics pixel, map tiles or web fonts.
# ---------------------------------------------------------------------------------------------
MAPBOX_API_KEY = ""
TALISMAN_ENABLED = True
CONTENT_SECURITY_POLICY_WARNING = False
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
TALISMAN_DEV_CONFIG = TALISMAN_CONFIG

# ---------------------------------------------------------------------------------------------
# Logs: into the state directory (the web server's own log is $STATE/server.log).
# ---------------------------------------------------------------------------------------------
LOG_LEVEL = "INFO"
ENABLE_TIME_ROTATE = True
TIME_ROTATE_LOG_LEVEL = "INFO"
FILENAME = os.path.join(STATE_DIR, "superset.log")
ROLLOVER = "midnight"
INTERVAL = 1
BACKUP_COUNT = 7

SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 50000

# ---------------------------------------------------------------------------------------------
# Viewers run the saved charts' queries and nothing else. A chart's data API accepts a whole query
# context: whoever may read charts may also send metrics, columns and filters of their own, as SQL
# expressions that Superset checks only for subqueries, so an anonymous visitor could call any
# function of the database (read files through DuckDB's read_text, or PostgreSQL's pg_read_file
# as a superuser). Superset compares the request with the saved chart for embedded guests only;
# here anonymous requests must name a saved chart, and every SQL-bearing string they carry
# (metrics, columns, order, filters, where/having) must be one the chart itself holds.
# ---------------------------------------------------------------------------------------------
from superset.security import SupersetSecurityManager  # noqa: E402

_SQL_KEYS = ("metrics", "columns", "groupby", "orderby", "series_columns", "filters", "filter", "extras",
             "annotation_layers", "having", "where")


def _strings(value, into: set) -> set:
    if isinstance(value, str):
        if value:
            into.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, into)
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            _strings(v, into)
    return into


def _unsaved_sql(query_context) -> str | None:
    """What in an anonymous request is not the saved chart's, or None."""
    import json

    chart = query_context.slice_
    form_data = query_context.form_data or {}
    if chart is None or form_data.get("slice_id") != chart.id:
        return "the request names no saved chart"
    allowed = _strings(chart.params_dict, set())
    if chart.query_context:
        _strings(json.loads(chart.query_context), allowed)
    for query in query_context.queries:
        q = query.to_dict()
        for key in _SQL_KEYS:
            extra = _strings(q.get(key), set()) - allowed
            if extra:
                return f"{key}: {sorted(extra)[:3]}"
    return None


class ReadOnlyViewers(SupersetSecurityManager):
    def raise_for_access(self, *args, **kwargs):
        super().raise_for_access(*args, **kwargs)
        query_context = kwargs.get("query_context")
        from flask import g

        user = getattr(g, "user", None)
        if query_context is not None and (user is None or getattr(user, "is_anonymous", False)):
            why = _unsaved_sql(query_context)
            if why:
                from superset.errors import ErrorLevel, SupersetError, SupersetErrorType
                from superset.exceptions import SupersetSecurityException

                raise SupersetSecurityException(
                    SupersetError(
                        error_type=SupersetErrorType.DASHBOARD_SECURITY_ACCESS_ERROR,
                        message=f"viewers can only load the dashboard's saved charts ({why})",
                        level=ErrorLevel.WARNING,
                    )
                )


CUSTOM_SECURITY_MANAGER = ReadOnlyViewers

# ---------------------------------------------------------------------------------------------
# DuckDB: the bundle's connection is `duckdb:///:memory:`, and each new connection attaches the
# snapshot copy named in $STATE/duckdb_snapshot (written by `scripts/dashboard.sh up`) read-only
# and makes it the default catalog. Opening the copy per connection matters: DuckDB's Python
# client shares one database instance per file path for as long as any connection to it is open,
# so with overlapping requests a connection to the path itself could keep serving a copy that
# was long replaced. Then the connection locks itself down: no file access except the folders of
# the jobs' source globs (the backlog view lists the lake), and no configuration changes.
# ---------------------------------------------------------------------------------------------
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

DUCKDB_SNAPSHOT_FILE = os.path.join(STATE_DIR, "duckdb_snapshot")


@event.listens_for(Engine, "connect")
def _attach_duckdb_snapshot(dbapi_connection, _record):
    if "duckdb" not in type(dbapi_connection).__module__:
        return
    try:
        with open(DUCKDB_SNAPSHOT_FILE, encoding="utf-8") as f:
            snapshot = f.read().strip()
    except FileNotFoundError:
        return
    quoted = snapshot.replace("'", "''")
    dbapi_connection.execute(f"ATTACH '{quoted}' AS sqlscore (READ_ONLY)")
    dbapi_connection.execute("USE sqlscore")
    sources = [r[0] for r in dbapi_connection.execute(
        "SELECT source FROM sqlscore.main.sqlscore_jobs").fetchall()] if dbapi_connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'sqlscore' AND table_name = 'sqlscore_jobs'"
    ).fetchone()[0] else []
    # The folder above the first wildcard of each (absolute) glob.
    folders = sorted({os.path.dirname(re.split(r"[*?\[{]", s, maxsplit=1)[0]) + "/" for s in sources
                      if s.startswith("/")})
    dbapi_connection.execute("SET allowed_directories = ?", [folders])
    dbapi_connection.execute("SET enable_external_access = false")
    dbapi_connection.execute("SET lock_configuration = true")
