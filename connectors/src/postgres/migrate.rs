//! Weir's PostgreSQL schema (`migrations/` at the top of the repository), applied in order,
//! each once, recorded in `weir_migrations`.

use sqlx::postgres::PgConnection;
use sqlx::Connection;

/// `(version, name, SQL)`, oldest first.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "events_raw",
    include_str!("../../../migrations/0001_events_raw.sql"),
)];

/// Applies the migrations `conn`'s database has not seen; returns their versions. Safe to
/// run from several processes at once (an advisory lock serializes them).
pub async fn migrate(conn: &mut PgConnection) -> Result<Vec<i32>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7357001)")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS weir_migrations (version INTEGER PRIMARY KEY, \
         name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM weir_migrations")
        .fetch_all(&mut *tx)
        .await?;
    let mut done = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO weir_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, name, "applied migration");
        done.push(*version);
    }
    tx.commit().await?;
    Ok(done)
}

/// `weir migrate URL`: connects and applies the migrations.
pub async fn migrate_url(url: &str) -> Result<Vec<i32>, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let done = migrate(&mut conn).await?;
    conn.close().await?;
    Ok(done)
}
