"""The "Sensor anomalies" dashboard as code: datasets, charts and layout, written out as a Superset
assets bundle (scripts/dashboard.sh imports it with Superset's assets import, which overwrites
every object in it, so a changed definition replaces the old one).

The datasets are the demo's BI views (sql/bi_views.sql in DuckDB, sql/bi_views_pg.sql in
PostgreSQL: the same names, columns and types), so one definition serves both engines; only the
database connection differs:

    python dashboard/bundle.py --uri duckdb:///:memory: --out bundle.zip
    python dashboard/bundle.py --uri postgresql+psycopg2://viewer:pw@host:5432/db --out bundle.zip

DuckDB is read through the snapshot copy that job runs publish (`sqlscore snapshot`), attached
read-only by each connection (dashboard/superset_config.py), so the dashboard never holds the
file a job writes. PostgreSQL sessions are read-only (`default_transaction_read_only`), as a role
that can read the BI views only (scripts/dashboard.sh creates it). Every chart, dataset and the database leave `cache_timeout`
unset, so chart results are cached for SQLSCORE_DASHBOARD_CACHE_S seconds (dashboard/superset_config.py),
and the dashboard refreshes itself every REFRESH_S seconds.

Charts carry their `query_context` (what the chart asks the data API for), so
`GET /api/v1/chart/<id>/data/` answers for every chart, as it does for one saved in the UI.

Standard library only: it runs under any Python 3 (JSON is valid YAML for Superset's loader).
"""
from __future__ import annotations

import argparse
import json
import uuid
import zipfile
from pathlib import Path

SLUG = "sqlscore"
TITLE = "Sensor anomalies"
REFRESH_S = 10
# Stable ids: re-importing the bundle overwrites the same objects instead of adding copies.
NS = uuid.UUID("5c0e5c07-0000-4000-8000-000000000001")


def uid(name: str) -> str:
    return str(uuid.uuid5(NS, name))


# The BI views and their columns: (name, Superset type, temporal). tests/dashboard checks these
# against both engines' views.
DATASETS: dict[str, list[tuple[str, str, bool]]] = {
    "anomaly_readings": [
        ("id", "BIGINT", False), ("device_id", "VARCHAR", False), ("sensor_id", "VARCHAR", False),
        ("ts", "TIMESTAMP", True), ("value", "DOUBLE", False), ("score", "DOUBLE", False),
        ("is_anomaly", "BOOLEAN", False), ("injected", "BOOLEAN", False), ("model", "VARCHAR", False),
        ("model_version", "BIGINT", False), ("run_id", "BIGINT", False), ("scored_at", "TIMESTAMP WITH TIME ZONE", True),
        ("source_file", "VARCHAR", False),
    ],
    "anomalies_by_sensor": [
        ("device_id", "VARCHAR", False), ("sensor_id", "VARCHAR", False), ("readings", "BIGINT", False),
        ("anomalies", "BIGINT", False), ("anomaly_pct", "DOUBLE", False), ("worst_score", "DOUBLE", False),
    ],
    "anomalies_by_hour": [
        ("hour", "TIMESTAMP", True), ("device_id", "VARCHAR", False), ("readings", "BIGINT", False),
        ("anomalies", "BIGINT", False),
        ("injected", "BIGINT", False), ("injected_found", "BIGINT", False),
    ],
    "score_histogram": [("score_bin", "DOUBLE", False), ("readings", "BIGINT", False), ("anomalies", "BIGINT", False)],
    "detection_quality": [
        ("true_positives", "BIGINT", False), ("missed", "BIGINT", False), ("false_alarms", "BIGINT", False),
        ("true_negatives", "BIGINT", False),
    ],
    "job_history": [
        ("run_id", "BIGINT", False), ("job", "VARCHAR", False), ("status", "VARCHAR", False),
        ("started_at", "TIMESTAMP WITH TIME ZONE", True), ("finished_at", "TIMESTAMP WITH TIME ZONE", True),
        ("duration_s", "DOUBLE", False), ("rows_scored", "BIGINT", False), ("rows_rejected", "BIGINT", False),
        ("files_scored", "BIGINT", False), ("rows_per_s", "DOUBLE", False), ("error", "VARCHAR", False),
    ],
    "job_backlog": [
        ("job", "VARCHAR", False), ("last_run_id", "BIGINT", False), ("last_status", "VARCHAR", False),
        ("last_finished_at", "TIMESTAMP WITH TIME ZONE", True), ("backlog", "BIGINT", False),
        ("backlog_unit", "VARCHAR", False), ("lag_s", "DOUBLE", False),
    ],
    "score_drift": [
        ("run_id", "BIGINT", False), ("run_started_at", "TIMESTAMP WITH TIME ZONE", True), ("model", "VARCHAR", False),
        ("model_version", "BIGINT", False), ("readings", "BIGINT", False), ("score_mean", "DOUBLE", False),
        ("score_p95", "DOUBLE", False), ("anomalies", "BIGINT", False),
    ],
    "score_drift_by_run": [
        ("run_id", "BIGINT", False), ("run_started_at", "TIMESTAMP WITH TIME ZONE", True), ("readings", "BIGINT", False),
        ("score_mean", "DOUBLE", False), ("score_p95", "DOUBLE", False), ("anomalies", "BIGINT", False),
    ],
}


def metric(sql: str, label: str) -> dict:
    return {"expressionType": "SQL", "sqlExpression": sql, "label": label, "optionName": f"metric_{label}"}


def order(column: str, ascending: bool) -> str:
    return json.dumps([column, ascending])


# Each chart: (key, title, dataset, viz_type, params, query) where `query` is what the chart asks
# the data API for (its query_context's single query), and also what the tests run directly in SQL.
def charts() -> list[dict]:
    out = []

    def add(key, title, dataset, viz, params, query, width, height=50):
        out.append({"key": key, "title": title, "dataset": dataset, "viz": viz, "params": params, "query": query,
                    "width": width, "height": height})

    for key, title, dataset, m in [
        ("readings", "Readings scored", "anomalies_by_sensor", metric("SUM(readings)", "readings")),
        ("anomalies", "Anomalies", "anomalies_by_sensor", metric("SUM(anomalies)", "anomalies")),
        ("backlog", "Backlog (not yet scored)", "job_backlog", metric("SUM(backlog)", "backlog")),
        ("lag", "Lag (s, oldest unscored input)", "job_backlog", metric("MAX(lag_s)", "lag_s")),
    ]:
        add(key, title, dataset, "big_number_total",
            {"metric": m, "header_font_size": 0.4, "subheader_font_size": 0.15, "y_axis_format": ",d",
             "time_format": "smart_date"},
            {"metrics": [m], "columns": [], "orderby": [], "row_limit": 1},
            width=3, height=30)

    flagged = metric("SUM(anomalies)", "flagged by the models")
    injected = metric("SUM(injected)", "injected (ground truth)")
    add("per_hour", "Anomalies per hour", "anomalies_by_hour", "echarts_timeseries_line",
        {"x_axis": "hour", "time_grain_sqla": "PT1H", "metrics": [flagged, injected], "groupby": [],
         "row_limit": 10000, "show_legend": True, "legendOrientation": "top", "markerEnabled": True, "markerSize": 4,
         "rich_tooltip": True, "x_axis_time_format": "smart_date", "y_axis_format": "SMART_NUMBER",
         "truncateXAxis": True, "y_axis_bounds": [None, None], "color_scheme": "supersetColors"},
        {"columns": [{"columnType": "BASE_AXIS", "sqlExpression": "hour", "label": "hour", "expressionType": "SQL",
                      "timeGrain": "PT1H"}],
         "metrics": [flagged, injected], "orderby": [[flagged, True]], "row_limit": 10000,
         "series_columns": [], "post_processing": [
             {"operation": "pivot", "options": {"index": ["hour"], "columns": [], "aggregates": {
                 flagged["label"]: {"operator": "mean"}, injected["label"]: {"operator": "mean"}}, "drop_missing_columns": False}},
             {"operation": "flatten"}]},
        width=8, height=50)

    per_sensor = metric("SUM(anomalies)", "anomalies")
    add("per_sensor", "Anomalies per sensor (most first)", "anomalies_by_sensor", "echarts_timeseries_bar",
        {"x_axis": "sensor_id", "metrics": [per_sensor], "groupby": [], "row_limit": 10000, "orientation": "vertical",
         "x_axis_sort": per_sensor["label"], "x_axis_sort_asc": False, "show_legend": False, "rich_tooltip": True,
         "y_axis_format": "SMART_NUMBER", "truncateXAxis": True, "y_axis_bounds": [None, None],
         "color_scheme": "supersetColors", "show_value": False},
        {"columns": [{"columnType": "BASE_AXIS", "sqlExpression": "sensor_id", "label": "sensor_id",
                      "expressionType": "SQL"}],
         "metrics": [per_sensor], "orderby": [[per_sensor, False]], "row_limit": 10000, "series_columns": []},
        width=4, height=50)

    bins = metric("SUM(readings)", "readings")
    add("histogram", "Score distribution (log scale; below 0 = anomaly)", "score_histogram", "echarts_timeseries_bar",
        {"x_axis": "score_bin", "metrics": [bins], "groupby": [], "row_limit": 10000, "orientation": "vertical",
         "x_axis_sort": "score_bin", "x_axis_sort_asc": True, "logAxis": True, "show_legend": False,
         "rich_tooltip": True, "y_axis_format": "SMART_NUMBER", "y_axis_bounds": [None, None],
         "color_scheme": "supersetColors"},
        {"columns": [{"columnType": "BASE_AXIS", "sqlExpression": "score_bin", "label": "score_bin",
                      "expressionType": "SQL"}],
         "metrics": [bins], "orderby": [["score_bin", True]], "row_limit": 10000, "series_columns": []},
        width=6, height=50)

    mean = metric("MAX(score_mean)", "score mean")
    p95 = metric("MAX(score_p95)", "score p95")
    add("drift", "Score drift per run (mean, p95)", "score_drift_by_run", "echarts_timeseries_line",
        {"x_axis": "run_id", "metrics": [mean, p95], "groupby": [], "row_limit": 10000, "show_legend": True,
         "legendOrientation": "top", "markerEnabled": True, "markerSize": 6, "rich_tooltip": True,
         "x_axis_sort": "run_id", "x_axis_sort_asc": True, "xAxisForceCategorical": True,
         "y_axis_format": ".4f", "y_axis_bounds": [None, None], "color_scheme": "supersetColors"},
        {"columns": [{"columnType": "BASE_AXIS", "sqlExpression": "run_id", "label": "run_id",
                      "expressionType": "SQL"}],
         "metrics": [mean, p95], "orderby": [["run_id", True]], "row_limit": 10000, "series_columns": []},
        width=6, height=50)

    def table(key, title, dataset, columns, order_by, limit, width, height=50):
        add(key, title, dataset, "table",
            {"query_mode": "raw", "all_columns": columns, "order_by_cols": [order(c, a) for c, a in order_by],
             "row_limit": limit, "server_page_length": 10, "table_timestamp_format": "%Y-%m-%d %H:%M:%S",
             "show_cell_bars": False, "include_search": False, "groupby": [], "percent_metrics": []},
            {"columns": columns, "orderby": [[c, a] for c, a in order_by], "row_limit": limit},
            width=width, height=height)

    table("worst", "Most anomalous readings", "anomaly_readings",
          ["ts", "device_id", "sensor_id", "value", "score", "model", "model_version", "injected", "run_id"],
          [("score", True), ("id", True)], 50, 12, 60)
    table("runs", "Job runs", "job_history",
          ["run_id", "job", "status", "started_at", "duration_s", "rows_scored", "rows_rejected", "rows_per_s", "error"],
          [("run_id", False)], 100, 12, 40)
    table("jobs", "Jobs: backlog and lag", "job_backlog",
          ["job", "last_run_id", "last_status", "last_finished_at", "backlog", "backlog_unit", "lag_s"],
          [("job", True)], 100, 7, 25)
    table("drift_models", "Score drift per run and model", "score_drift",
          ["run_id", "model", "model_version", "readings", "score_mean", "score_p95", "anomalies"],
          [("run_id", False), ("model", True)], 500, 12)
    table("quality", "Detection quality (injected anomalies)", "detection_quality",
          ["true_positives", "missed", "false_alarms", "true_negatives"], [("true_positives", True)], 10, 5, 25)
    return out


# Rows of the grid, by chart key; widths add up to 12.
LAYOUT = [["readings", "anomalies", "backlog", "lag"], ["per_hour", "per_sensor"], ["histogram", "drift"],
          ["worst"], ["runs"], ["jobs", "quality"], ["drift_models"]]


def database_yaml(uri: str) -> dict:
    if uri.startswith("duckdb:"):
        # duckdb:///:memory: with the snapshot attached read-only per connection, and file access
        # locked down (dashboard/superset_config.py).
        connect_args = {}
    else:
        connect_args = {"options": "-c default_transaction_read_only=on -c statement_timeout=60s"}
    return {
        "database_name": "sqlscore", "sqlalchemy_uri": uri, "cache_timeout": None, "expose_in_sqllab": False,
        "allow_run_async": False, "allow_ctas": False, "allow_cvas": False, "allow_dml": False,
        "allow_file_upload": False,
        "extra": {"engine_params": {"connect_args": connect_args}, "allows_virtual_table_explore": False},
        "uuid": uid("database"), "version": "1.0.0",
    }


def dataset_yaml(name: str) -> dict:
    return {
        "table_name": name, "main_dttm_col": None, "description": None, "default_endpoint": None, "offset": 0,
        "cache_timeout": None, "schema": None, "sql": None, "params": None, "template_params": None,
        "filter_select_enabled": True, "fetch_values_predicate": None, "extra": None, "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": uid(f"dataset:{name}"), "metrics": [],
        "columns": [
            {"column_name": c, "verbose_name": None, "is_dttm": dttm, "is_active": True, "type": t, "groupby": True,
             "filterable": True, "expression": None, "description": None, "python_date_format": None, "extra": None}
            for c, t, dttm in DATASETS[name]
        ],
        "version": "1.0.0", "database_uuid": uid("database"),
    }


def chart_yaml(c: dict) -> dict:
    params = {"viz_type": c["viz"], "adhoc_filters": [], "extra_form_data": {}, "annotation_layers": [], **c["params"]}
    query = {"filters": [], "extras": {"having": "", "where": ""}, "applied_time_extras": {}, **c["query"]}
    # The importer sets the datasource (id and type) from dataset_uuid, here and in params.
    query_context = {"datasource": {"type": "table"}, "force": False, "queries": [query], "form_data": params,
                     "result_format": "json", "result_type": "full"}
    return {
        "slice_name": c["title"], "description": None, "certified_by": None, "certification_details": None,
        "viz_type": c["viz"], "params": params, "query_context": json.dumps(query_context), "cache_timeout": None,
        "uuid": uid(f"chart:{c['key']}"), "version": "1.0.0", "dataset_uuid": uid(f"dataset:{c['dataset']}"),
    }


def dashboard_yaml(all_charts: list[dict]) -> dict:
    by_key = {c["key"]: c for c in all_charts}
    position: dict = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": TITLE}},
    }
    for i, row in enumerate(LAYOUT):
        row_id = f"ROW-{i}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"type": "ROW", "id": row_id, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                            "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        for key in row:
            c = by_key[key]
            chart_id = f"CHART-{key}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {"type": "CHART", "id": chart_id, "children": [],
                                  "parents": ["ROOT_ID", "GRID_ID", row_id],
                                  "meta": {"width": c["width"], "height": c["height"], "chartId": 0,
                                           "uuid": uid(f"chart:{key}"), "sliceName": c["title"]}}
    return {
        "dashboard_title": TITLE, "description": None, "css": "", "slug": SLUG, "certified_by": None,
        "certification_details": None, "published": True, "uuid": uid("dashboard"), "version": "1.0.0",
        "position": position,
        "metadata": {"color_scheme": "supersetColors", "refresh_frequency": REFRESH_S,
                     "timed_refresh_immune_slices": [], "expanded_slices": {}, "label_colors": {},
                     "shared_label_colors": [], "color_scheme_domain": [], "cross_filters_enabled": False,
                     "native_filter_configuration": [], "default_filters": "{}", "chart_configuration": {},
                     "global_chart_configuration": {}},
    }


def write_bundle(uri: str, out: Path) -> None:
    all_charts = charts()
    root = "sqlscore_dashboard"
    files = {f"{root}/metadata.yaml": {"version": "1.0.0", "type": "assets", "timestamp": "2026-11-27T00:00:00+00:00"},
             f"{root}/databases/sqlscore.yaml": database_yaml(uri)}
    for name in DATASETS:
        files[f"{root}/datasets/sqlscore/{name}.yaml"] = dataset_yaml(name)
    for c in all_charts:
        files[f"{root}/charts/{c['key']}.yaml"] = chart_yaml(c)
    files[f"{root}/dashboards/{SLUG}.yaml"] = dashboard_yaml(all_charts)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as z:
        for path, content in files.items():
            # A fixed date: the same definitions give the same zip, which the start script
            # imports only when it changed.
            info = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            z.writestr(info, json.dumps(content, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True, help="SQLAlchemy URI: duckdb:////abs/file.duckdb or postgresql://...")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    write_bundle(a.uri, a.out)
    print(a.out)


if __name__ == "__main__":
    main()
