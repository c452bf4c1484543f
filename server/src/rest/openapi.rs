//! The OpenAPI 3 description of the REST API, served at `/openapi.json`.

use serde_json::{json, Value};

fn query(name: &str, description: &str, required: bool) -> Value {
    json!({
        "name": name, "in": "query", "required": required,
        "description": description, "schema": { "type": "string" }
    })
}

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// The document.
pub fn spec() -> Value {
    let view = query(
        "view",
        "A materialized view by name (instead of window=).",
        false,
    );
    let window = query(
        "window",
        "Window size such as 1m or 10s: the view grouped by a window of that size (tumbling before hopping, then by name).",
        false,
    );
    let key = query(
        "source",
        "Any column of the view filters by equality (source=…, region=…); unknown parameters are 400s.",
        false,
    );
    let closed = query("closed", "true: closed windows only.", false);
    let object = json!({
        "description": "The row as a JSON object",
        "content": { "application/json": { "schema": { "type": "object" } } }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Weir REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Hot aggregates, time series, health and SQL over HTTP. See docs/api.md."
        },
        "paths": {
            "/kpi": { "get": {
                "summary": "The most recent window of one key",
                "description": "The newest window the view shows for the key: for an EMIT ON UPDATE view the open window. Read from the view's key index, without SQL planning.",
                "parameters": [key, window, view, closed],
                "responses": {
                    "200": object,
                    "400": error("A bad parameter, named in the body"),
                    "404": error("No such view, or no window for the key")
                }
            }},
            "/series": { "get": {
                "summary": "Windows of a key in a time range",
                "description": "Rows ordered by window_start, in pages of `limit`; pass next_cursor back as cursor.",
                "parameters": [
                    key, window, view, closed,
                    query("from", "Inclusive lower bound of window_start: RFC 3339 or epoch ms.", false),
                    query("to", "Exclusive upper bound of window_start: RFC 3339 or epoch ms.", false),
                    query("limit", "Rows per page, 1 to 10000 (default 1000).", false),
                    query("cursor", "next_cursor of the previous page.", false)
                ],
                "responses": {
                    "200": { "description": "{view, rows, next_cursor}", "content": { "application/json": { "schema": { "type": "object" } } } },
                    "400": error("A bad parameter, named in the body"),
                    "404": error("No such view")
                }
            }},
            "/alerts": { "get": {
                "summary": "Alerts since a time",
                "description": "Alerts of every rule (CREATE ALERT) whose event time is at or after `since`, oldest first, the newest `limit`. Items: {alert_id, name, severity, key, status, event_time, detected_at, resolved_at, repeats, last_event_time, payload}.",
                "parameters": [
                    query("since", "RFC 3339 or epoch ms: the earliest event time.", false),
                    query("name", "Alert rule name.", false),
                    query("severity", "Severity (case-insensitive).", false),
                    query("limit", "At most this many (1 to 10000, default 1000), the newest.", false)
                ],
                "responses": { "200": { "description": "A JSON array" }, "400": error("A bad parameter"), "404": error("No alert rule of that name") }
            }},
            "/subscribe": { "get": {
                "summary": "A view's rows as server-sent events",
                "description": "text/event-stream: with snapshot=true first `event: snapshot` per row the view holds now, then `event: row` per row it emits (closed windows, rows, alert messages), each a JSON object like /kpi's. `event: lagged` (the client fell behind) and `event: end` (the view was dropped) end the stream.",
                "parameters": [
                    key, window, view,
                    query("snapshot", "true: start with the rows the view holds now.", false),
                    query("limit", "End the stream after this many rows (1 to 10000; default: never).", false)
                ],
                "responses": {
                    "200": { "description": "An event stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
                    "400": error("A bad parameter, named in the body"),
                    "404": error("No such view")
                }
            }},
            "/sql": { "post": {
                "summary": "Run statements",
                "description": "The body is SQL text, or {\"sql\": \"…\"}. Returns the last statement's {columns, rows} or {command}.",
                "requestBody": { "content": { "text/plain": { "schema": { "type": "string" } } } },
                "responses": { "200": { "description": "Rows or a command tag" }, "400": error("The statement failed; the body has the SQLSTATE") }
            }},
            "/ingest/{source}": { "post": {
                "summary": "Push events to a source declared with connector = 'http'",
                "description": "JSON lines, or a JSON array of events. Answered once they are durable (fsynced to the source's log). Malformed lines become dead letters.",
                "parameters": [{ "name": "source", "in": "path", "required": true, "schema": { "type": "string" } }],
                "requestBody": { "content": { "application/x-ndjson": { "schema": { "type": "string" } }, "application/json": { "schema": { "type": "array", "items": { "type": "object" } } } } },
                "responses": {
                    "202": { "description": "{accepted: n}" },
                    "400": error("Not a JSON array, or not an http source"),
                    "404": error("No such source")
                }
            }},
            "/health": { "get": { "summary": "The process is alive", "responses": { "200": { "description": "{status: ok}" } } } },
            "/ready": { "get": {
                "summary": "Sources reachable and views caught up",
                "responses": { "200": { "description": "{ready: true}" }, "503": { "description": "{ready: false, reasons: [...]}" } }
            }},
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "Text exposition format 0.0.4" } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3" } } } },
            "/docs": { "get": { "summary": "Interactive documentation (no internet needed)", "responses": { "200": { "description": "HTML" } } } }
        },
        "components": { "schemas": { "Error": {
            "type": "object",
            "properties": {
                "error": { "type": "string" },
                "parameter": { "type": "string" },
                "sqlstate": { "type": "string" }
            },
            "required": ["error"]
        }}}
    })
}
