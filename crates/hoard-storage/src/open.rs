//! Choosing the blob store from a storage URL.

use crate::{LocalStore, ObjectStorage};
use hoard_core::store::{BlobError, BlobStore};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::signer::{Signer, Url};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of object storage beyond its URL. Unset values fall back to the
/// provider's usual environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// S3 endpoint of a non-AWS server (MinIO, Ceph, R2...), e.g. `http://minio:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), the default: every
    /// S3-compatible server and AWS accept them; some servers accept nothing else.
    pub path_style: Option<bool>,
    /// Bytes per uploaded part (S3: at least 5 MiB).
    pub part_size: usize,
    /// Upload bytes held in memory at once, per replica.
    pub buffer_bytes: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: None,
            part_size: 8 << 20,
            buffer_bytes: 32 << 20,
        }
    }
}

/// S3's smallest part but the last.
const MIN_PART: usize = 5 << 20;

/// Requests to object storage are retried a few times, then fail: a client is
/// better served by a prompt 5xx it retries than by a request hanging for minutes.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// No limit on a whole request: a multi-GiB object streams for minutes. A
/// connection that stops moving is cut instead (and a connect that does not
/// happen), so nothing hangs. Builders take these before `with_allow_http`,
/// which these options would otherwise reset.
pub fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(5))
        .with_read_timeout(Duration::from_secs(120))
}

fn config(e: object_store::Error) -> BlobError {
    BlobError::Backend(format!("storage configuration: {e}"))
}

/// Opens the store a URL names: `file:///path` (or a plain path) for a local
/// directory; `s3://bucket/prefix`, `gs://bucket/prefix` or `az://container/prefix`
/// for object storage.
pub async fn open(url: &str, options: &StorageOptions) -> Result<Arc<dyn BlobStore>, BlobError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(Arc::new(LocalStore::open(&PathBuf::from(url)).await?));
    };
    if scheme == "file" {
        let parsed = Url::parse(url).map_err(|e| BlobError::Backend(format!("{url}: {e}")))?;
        let path = parsed
            .to_file_path()
            .map_err(|()| BlobError::Backend(format!("{url}: not a local path")))?;
        return Ok(Arc::new(LocalStore::open(&path).await?));
    }
    if options.part_size < MIN_PART {
        return Err(BlobError::Backend(format!(
            "storage part size must be at least {MIN_PART} bytes"
        )));
    }
    let parsed = Url::parse(url).map_err(|e| BlobError::Backend(format!("storage URL: {e}")))?;
    let prefix = parsed.path().trim_matches('/').to_string();
    let (store, signer): (Arc<dyn ObjectStore>, Arc<dyn Signer>) = match scheme {
        "s3" | "s3a" => {
            let mut b = AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retry())
                .with_client_options(client_options());
            b = b.with_virtual_hosted_style_request(!options.path_style.unwrap_or(true));
            if let Some(endpoint) = &options.endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(region) = &options.region {
                b = b.with_region(region);
            }
            if let Some(key) = &options.access_key_id {
                b = b.with_access_key_id(key);
            }
            if let Some(secret) = &options.secret_access_key {
                b = b.with_secret_access_key(secret);
            }
            let s3 = Arc::new(b.build().map_err(config)?);
            (s3.clone(), s3)
        }
        "gs" => {
            let gcs = Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .with_client_options(client_options())
                    .build()
                    .map_err(config)?,
            );
            (gcs.clone(), gcs)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let azure = Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry())
                    .with_client_options(client_options())
                    .build()
                    .map_err(config)?,
            );
            (azure.clone(), azure)
        }
        other => {
            return Err(BlobError::Backend(format!(
                "unsupported storage URL scheme {other:?} (use file, s3, gs or az)"
            )))
        }
    };
    Ok(Arc::new(ObjectStorage::new(
        store,
        Some(signer),
        &prefix,
        options.part_size,
        options.buffer_bytes,
    )))
}
