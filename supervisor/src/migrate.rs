//! Database migrations, run once by the supervisor before any worker starts, so
//! workers never race each other over the schema.

use std::time::Instant;

/// Connects to `DATABASE_URL` (default: SQLite in the working directory) and
/// migrates it. The runtime is dropped before any worker is forked.
pub fn run(database_url: Option<&str>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for migrations: {e}"))?;
    rt.block_on(async {
        let t0 = Instant::now();
        let store = fleetgate_store::connect(database_url)
            .await
            .map_err(|e| format!("database: {e}"))?;
        store
            .migrate()
            .await
            .map_err(|e| format!("database migration failed on {}: {e}", store.redacted_url()))?;
        tracing::info!(
            database = store.redacted_url(),
            ms = t0.elapsed().as_millis() as u64,
            "database ready"
        );
        let _ = store.close().await;
        Ok(())
    })
}
