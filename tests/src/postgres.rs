//! Throwaway PostgreSQL databases on the test server (127.0.0.1:5432, trust auth,
//! or `HOARD_TEST_POSTGRES_URL`): each is created for one test and dropped after.

use sqlx::{Connection, Executor, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's maintenance database, where databases are created and dropped.
pub fn admin_url() -> String {
    std::env::var("HOARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for as long as this value.
pub struct TempDatabase {
    pub name: String,
    /// Connection URL of the database.
    pub url: String,
}

/// Runs admin statements on a thread of its own, so callers inside or outside a
/// tokio runtime can use it.
fn admin(statement: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut conn = PgConnection::connect(&admin_url())
                .await
                .map_err(|e| format!("connecting to {}: {e}", admin_url()))?;
            conn.execute(statement.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "admin thread panicked".to_string())?
}

impl TempDatabase {
    pub fn create() -> TempDatabase {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hoard_test_{}_{}_{:08x}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        admin(format!("CREATE DATABASE {name}")).expect("creating a test database");
        let base = admin_url();
        let server = base.rsplit_once('/').map(|(s, _)| s).unwrap_or(&base);
        TempDatabase {
            url: format!("{server}/{name}"),
            name,
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Err(e) = admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )) {
            eprintln!("dropping test database {}: {e}", self.name);
        }
    }
}
