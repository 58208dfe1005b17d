//! `hoard serve`: wires the stores, the service and the HTTP application, runs the
//! background work, and shuts down gracefully on SIGTERM/SIGINT.

use crate::config::Config;
use anyhow::{Context, Result};
use hoard_core::signing::UrlSigner;
use hoard_core::{CacheService, ServiceConfig};
use hoard_db::SqliteStore;
use hoard_server::{router, AppState};
use hoard_storage::LocalStore;
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The signing secret: configured, or generated once and kept in the data dir so
/// URLs survive a restart.
fn signing_secret(config: &Config) -> Result<Vec<u8>> {
    if !config.signing.secret.is_empty() {
        return Ok(config.signing.secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join("signing.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim()).context("the signing key file is not hex");
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    write_private(&path, hex::encode(key).as_bytes())?;
    Ok(key.to_vec())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

pub async fn run(config: Config) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {}", config.data_dir.display()))?;
    let meta = Arc::new(
        SqliteStore::open(&config.data_dir.join("hoard.db"))
            .await
            .context("opening the metadata database")?,
    );
    let blobs = Arc::new(
        LocalStore::open(&config.data_dir.join("blobs"))
            .await
            .context("opening the blob directory")?,
    );
    let signer = UrlSigner::new(&signing_secret(&config)?);
    let service = Arc::new(CacheService::new(
        meta.clone(),
        blobs,
        signer,
        ServiceConfig {
            upload_url_ttl_secs: config.uploads.url_ttl_secs,
            download_url_ttl_secs: config.downloads.url_ttl_secs,
            pending_timeout_secs: config.uploads.pending_timeout_secs,
            max_block_bytes: config.uploads.max_block_bytes,
            ..ServiceConfig::default()
        },
    ));

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let base = if config.public_url.is_empty() {
        format!("http://{addr}/")
    } else {
        format!("{}/", config.public_url.trim_end_matches('/'))
    };
    tracing::info!(
        "hoard listening on {addr}; runner environment: ACTIONS_RESULTS_URL={base} ACTIONS_CACHE_URL={base} ACTIONS_CACHE_SERVICE_V2=true"
    );

    let background = {
        let service = service.clone();
        let reclaim_every = Duration::from_secs(config.uploads.reclaim_interval_secs);
        tokio::spawn(async move {
            let mut flush = tokio::time::interval(Duration::from_secs(5));
            let mut reclaim = tokio::time::interval(reclaim_every);
            loop {
                tokio::select! {
                    _ = flush.tick() => {
                        if let Err(e) = service.flush_accesses().await {
                            tracing::warn!(error = %e, "could not record last-access times");
                        }
                    }
                    _ = reclaim.tick() => {
                        if let Err(e) = service.reclaim_stale_uploads().await {
                            tracing::warn!(error = %e, "could not reclaim abandoned uploads");
                        }
                    }
                }
            }
        })
    };

    let app = router(AppState {
        service: service.clone(),
        public_url: (!config.public_url.is_empty()).then(|| config.public_url.clone()),
    });
    // Small answers (201 to a block, a Twirp reply) must not wait for Nagle.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;

    background.abort();
    if let Err(e) = service.flush_accesses().await {
        tracing::warn!(error = %e, "could not record last-access times at shutdown");
    }
    meta.close().await;
    tracing::info!("stopped");
    Ok(())
}
