//! `hoard-bench`: builds nothing, measures everything. Started by scripts/bench.sh
//! with a release build of hoard. For each deployment (SQLite + directory,
//! PostgreSQL + S3) and blob size it measures, in one run: PUT and GET MB/s
//! through the blob endpoints in the three upload shapes clients use, save and
//! restore MB/s through the real @actions/cache, the server's peak RSS, and a
//! same-run reference: `cp`/`dd` of the same file on the same disk, or a plain
//! object_store put/get of it to the same S3 server. Then lookups per second and
//! latency at 64 concurrent clients over 100,000 entries on each database. Then
//! eviction passes over a million entries (eviction.rs).
//!
//! Long because a benchmark is a script read top to bottom: setup, each step
//! next to its reference, the report.

mod compaction;
mod eviction;

use anyhow::{bail, Context, Result};
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use hoard_e2e::{Backend, Deployment, Server};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use rand::{RngCore, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const VERSION: &str = "bench-version";

struct Args {
    work: PathBuf,
    sizes_gib: Vec<u64>,
    lookup_entries: usize,
    lookup_secs: u64,
    node_dir: PathBuf,
    reps: usize,
    backends: Vec<Backend>,
    eviction_entries: usize,
}

fn args() -> Result<Args> {
    let mut a = Args {
        work: std::env::temp_dir().join("hoard-bench"),
        sizes_gib: vec![1, 5],
        lookup_entries: 100_000,
        lookup_secs: 10,
        node_dir: PathBuf::from("tests/node"),
        reps: 3,
        backends: vec![Backend::SqliteDir, Backend::PgS3],
        eviction_entries: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--work-dir" => a.work = value.into(),
            "--sizes-gib" if value == "none" => a.sizes_gib = vec![],
            "--sizes-gib" => {
                a.sizes_gib = value
                    .split(',')
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?
            }
            "--lookup-entries" => a.lookup_entries = value.parse()?,
            "--lookup-secs" => a.lookup_secs = value.parse()?,
            "--eviction-entries" => a.eviction_entries = value.parse()?,
            "--node-dir" => a.node_dir = value.into(),
            "--reps" => a.reps = value.parse::<usize>()?.max(1),
            "--backends" => {
                a.backends = value
                    .split(',')
                    .map(|b| match b {
                        "sqlite-dir" => Ok(Backend::SqliteDir),
                        "pg-dir" => Ok(Backend::PgDir),
                        "pg-s3" => Ok(Backend::PgS3),
                        other => Err(anyhow::anyhow!("unknown backend {other}")),
                    })
                    .collect::<Result<_>>()?
            }
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?)
}

fn make_random_file(path: &Path, size: u64) -> Result<()> {
    use std::io::Write;
    let mut rng = rand::rngs::StdRng::seed_from_u64(size);
    let mut f = std::io::BufWriter::with_capacity(8 * MIB as usize, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 8 * MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// Writes back dirty pages, so each timed step starts from the same state rather
/// than paying for the previous step's writes; with `cold`, also empties the page
/// cache (needs root) so reads come from the disk. Returns whether it could.
fn settle(cold: bool) -> Result<bool> {
    std::process::Command::new("sync").status()?;
    Ok(cold && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok())
}

/// Reading the file to nowhere: the reference for GET, whose client discards.
fn reference_read(file: &Path) -> Result<Duration> {
    let t = Instant::now();
    let status = std::process::Command::new("dd")
        .arg(format!("if={}", file.display()))
        .args(["of=/dev/null", "bs=1M", "status=none"])
        .status()?;
    if !status.success() {
        bail!("dd failed");
    }
    Ok(t.elapsed())
}

/// `cp` of the file on the same disk: the reference for PUT, which reads a file
/// and writes one.
fn reference_cp(src: &Path, work: &Path) -> Result<Duration> {
    let dst = work.join("cp-reference.bin");
    settle(false)?;
    let t = Instant::now();
    let status = std::process::Command::new("cp")
        .arg(src)
        .arg(&dst)
        .status()?;
    let d = t.elapsed();
    if !status.success() {
        bail!("cp failed");
    }
    std::fs::remove_file(dst)?;
    Ok(d)
}

/// What hoard's transfers are compared with, in the same run.
enum Reference {
    /// `cp` (PUT) and `dd` (GET) of the file on the same disk.
    Disk,
    /// object_store put (multipart, like hoard's) and get of the file to the same
    /// S3 server hoard stores into.
    ObjectStore(Arc<AmazonS3>),
}

/// Part size and parallelism of the object_store reference: hoard's defaults.
const REFERENCE_PART: usize = 8 << 20;

impl Reference {
    fn for_deployment(d: &Deployment) -> Result<Reference> {
        let Some(s3) = &d.s3 else {
            return Ok(Reference::Disk);
        };
        // Client options first: they include allow_http, set after them.
        let store = AmazonS3Builder::new()
            .with_client_options(hoard_storage::open::client_options())
            .with_endpoint(s3.endpoint())
            .with_allow_http(true)
            .with_bucket_name(hoard_e2e::s3::BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(hoard_e2e::s3::ACCESS_KEY)
            .with_secret_access_key(hoard_e2e::s3::SECRET_KEY)
            .build()?;
        Ok(Reference::ObjectStore(Arc::new(store)))
    }

    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Reference::Disk => ("cp", "dd"),
            Reference::ObjectStore(_) => ("object_store put", "object_store get"),
        }
    }

    async fn put(&self, file: &Path, work: &Path) -> Result<Duration> {
        let Reference::ObjectStore(store) = self else {
            return reference_cp(file, work);
        };
        settle(false)?;
        let t = Instant::now();
        let upload = store
            .put_multipart(&ObjectPath::from("reference/blob"))
            .await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, REFERENCE_PART);
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; MIB as usize];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(t.elapsed())
    }

    /// Reads the reference copy; the caller has settled the page cache.
    async fn get(&self, file: &Path, size: u64) -> Result<Duration> {
        let Reference::ObjectStore(store) = self else {
            return reference_read(file);
        };
        let t = Instant::now();
        let mut stream = store
            .get(&ObjectPath::from("reference/blob"))
            .await?
            .into_stream();
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            got += chunk?.len() as u64;
        }
        if got != size {
            bail!("object_store read {got} of {size} bytes");
        }
        Ok(t.elapsed())
    }

    /// MB/s of putting the first `len` bytes as 1 MiB objects in sequence, as
    /// BuildKit's blocks are stored: the per-object cost of the S3 server itself.
    async fn put_small_objects(&self, file: &Path, len: u64) -> Result<Option<f64>> {
        let Reference::ObjectStore(store) = self else {
            return Ok(None);
        };
        let mut f = tokio::fs::File::open(file).await?;
        let mut buf = vec![0u8; MIB as usize];
        let t = Instant::now();
        for i in 0..len / MIB {
            f.read_exact(&mut buf).await?;
            store
                .put(
                    &ObjectPath::from(format!("reference/small/{i}")),
                    buf.clone().into(),
                )
                .await?;
        }
        let d = t.elapsed();
        for i in 0..len / MIB {
            store
                .delete(&ObjectPath::from(format!("reference/small/{i}")))
                .await?;
        }
        Ok(Some(mbps(len / MIB * MIB, d)))
    }

    async fn clean(&self) -> Result<()> {
        if let Reference::ObjectStore(store) = self {
            store.delete(&ObjectPath::from("reference/blob")).await?;
        }
        Ok(())
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::SqliteDir => "SQLite + directory",
        Backend::PgDir => "PostgreSQL + directory",
        Backend::PgS3 => "PostgreSQL + S3 (SeaweedFS)",
    }
}

async fn twirp(
    http: &reqwest::Client,
    server: &Server,
    method: &str,
    body: Value,
) -> Result<Value> {
    let r = http
        .post(server.twirp_url(method))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{method}: {status} {v}");
    }
    Ok(v)
}

async fn file_range_body(path: &Path, start: u64, len: u64) -> Result<reqwest::Body> {
    let mut f = tokio::fs::File::open(path).await?;
    f.seek(std::io::SeekFrom::Start(start)).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f.take(len), MIB as usize);
    Ok(reqwest::Body::wrap_stream(stream))
}

#[derive(Clone, Copy)]
enum Shape {
    PutBlob,
    Blocks64x8,
    Blocks1Seq,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::PutBlob => "Put Blob (one body)",
            Shape::Blocks64x8 => "64 MiB blocks, 8 in flight",
            Shape::Blocks1Seq => "1 MiB blocks, sequential",
        }
    }
}

fn block_id(i: u64) -> String {
    let mut raw = [b'b'; 64];
    raw[56..].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn q(id: &str) -> String {
    id.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// Uploads the file in one shape and finalizes; returns the elapsed time.
async fn upload(
    http: &reqwest::Client,
    server: &Server,
    file: &Path,
    size: u64,
    key: &str,
    shape: Shape,
) -> Result<Duration> {
    let t = Instant::now();
    let created = twirp(
        http,
        server,
        "CreateCacheEntry",
        json!({"key": key, "version": VERSION}),
    )
    .await?;
    let url = created["signed_upload_url"]
        .as_str()
        .context("upload url")?
        .to_string();
    let put_ok = |r: reqwest::Response| -> Result<()> {
        if r.status().as_u16() != 201 {
            bail!("PUT answered {}", r.status());
        }
        Ok(())
    };
    match shape {
        Shape::PutBlob => {
            let r = http
                .put(&url)
                .header("x-ms-blob-type", "BlockBlob")
                .header("content-length", size)
                .body(file_range_body(file, 0, size).await?)
                .send()
                .await?;
            put_ok(r)?;
        }
        Shape::Blocks64x8 | Shape::Blocks1Seq => {
            let (block, inflight) = match shape {
                Shape::Blocks64x8 => (64 * MIB, 8),
                _ => (MIB, 1),
            };
            let count = size.div_ceil(block);
            futures::stream::iter(0..count)
                .map(|i| {
                    let url = url.clone();
                    async move {
                        let start = i * block;
                        let len = block.min(size - start);
                        let body = if inflight == 1 {
                            // BuildKit sends each 1 MiB block from memory.
                            let mut f = tokio::fs::File::open(file).await?;
                            f.seek(std::io::SeekFrom::Start(start)).await?;
                            let mut buf = vec![0u8; len as usize];
                            f.read_exact(&mut buf).await?;
                            reqwest::Body::from(buf)
                        } else {
                            file_range_body(file, start, len).await?
                        };
                        let r = http
                            .put(format!("{url}&comp=block&blockid={}", q(&block_id(i))))
                            .header("content-length", len)
                            .body(body)
                            .send()
                            .await?;
                        put_ok(r)
                    }
                })
                .buffer_unordered(inflight)
                .try_collect::<Vec<()>>()
                .await?;
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
            for i in 0..count {
                xml.push_str(&format!("<Latest>{}</Latest>", block_id(i)));
            }
            xml.push_str("</BlockList>");
            put_ok(
                http.put(format!("{url}&comp=blocklist"))
                    .body(xml)
                    .send()
                    .await?,
            )?;
        }
    }
    twirp(
        http,
        server,
        "FinalizeCacheEntryUpload",
        json!({"key": key, "version": VERSION, "size_bytes": size.to_string()}),
    )
    .await?;
    Ok(t.elapsed())
}

/// Looks the key up and downloads it, discarding the bytes as `dd of=/dev/null`
/// does: what is measured is hoard reading its disk and sending.
async fn download(
    http: &reqwest::Client,
    server: &Server,
    key: &str,
    size: u64,
) -> Result<Duration> {
    let t = Instant::now();
    let url = download_url(http, server, key).await?;
    get_discarding(http, &url, size).await?;
    Ok(t.elapsed())
}

/// The signed download URL a lookup of `key` answers.
async fn download_url(http: &reqwest::Client, server: &Server, key: &str) -> Result<String> {
    let v = twirp(
        http,
        server,
        "GetCacheEntryDownloadURL",
        json!({"key": key, "version": VERSION}),
    )
    .await?;
    Ok(v["signed_download_url"]
        .as_str()
        .context("download url")?
        .to_string())
}

/// GETs `url` whole, discarding the bytes; fails unless `size` arrive.
async fn get_discarding(http: &reqwest::Client, url: &str, size: u64) -> Result<()> {
    let r = http.get(url).send().await?;
    if !r.status().is_success() {
        bail!("GET answered {}", r.status());
    }
    let mut stream = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk?.len() as u64;
    }
    if got != size {
        bail!("downloaded {got} of {size} bytes");
    }
    Ok(())
}

/// Save and restore through the real @actions/cache (tar + zstd included).
/// `api` is `v2` (github.com), `v2-blob-host` (github.com, hoard reached under
/// a `.blob.core.windows.net` name: the toolkit's parallel restore) or `v1` (as
/// on a GHES runner).
fn actions_cache(
    node_dir: &Path,
    server: &Server,
    file: &Path,
    work: &Path,
    api: &str,
) -> Result<Value> {
    let out = std::process::Command::new("node")
        .arg(node_dir.join("bench-actions-cache.mjs"))
        .arg(file)
        .arg(server.results_url())
        .arg(work)
        .arg(api)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("BENCH:"))
        .with_context(|| {
            format!(
                "no result from the @actions/cache benchmark:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(&line["BENCH:".len()..])?)
}

/// A release hoard on `deployment` with a fresh data directory `dir` under the
/// work directory (returned, to remove after), blocks of any size, quiet logs
/// and `env` besides.
fn start_server(
    args: &Args,
    deployment: &Arc<Deployment>,
    dir: &str,
    env: &[(&str, &str)],
) -> Result<(Server, PathBuf)> {
    let data = args.work.join(dir);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let max = (8 * GIB).to_string();
    let mut all = vec![
        ("HOARD_UPLOADS_MAX_BLOCK_BYTES", max.as_str()),
        ("HOARD_LOG", "warn,hoard=info"),
    ];
    all.extend_from_slice(env);
    Ok((Server::start_at(deployment.clone(), &data, &all), data))
}

/// The benchmark's random file of `size_gib` GiB, made once per run.
fn random_file(args: &Args, size_gib: u64) -> Result<PathBuf> {
    let file = args.work.join(format!("random-{size_gib}g.bin"));
    if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(size_gib * GIB) {
        make_random_file(&file, size_gib * GIB)?;
    }
    Ok(file)
}

async fn throughput(args: &Args, size_gib: u64, backend: Backend) -> Result<()> {
    let size = size_gib * GIB;
    let file = random_file(args, size_gib)?;
    let deployment = Deployment::new(backend);
    let reference = Reference::for_deployment(&deployment)?;
    let (put_ref, get_ref) = reference.names();
    println!(
        "\n## {size_gib} GiB random blob, {}\n",
        backend_name(backend)
    );
    println!("Each step is timed right after its reference, after `sync`: PUT against");
    println!("{put_ref} of the same file; GET (client discards) against {get_ref},");
    println!("from a cold page cache where the machine allows it.");
    println!("Medians of {} repetitions.\n", args.reps);
    println!(
        "| path | PUT MB/s | {put_ref} MB/s | PUT / ref | GET MB/s | {get_ref} MB/s | GET / ref | peak RSS so far, MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");

    let (server, data) = start_server(args, &deployment, "server-data", &[])?;
    let pid = server.pid().context("pid")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()?;
    let mut cold = false;
    for (i, shape) in [Shape::PutBlob, Shape::Blocks64x8, Shape::Blocks1Seq]
        .into_iter()
        .enumerate()
    {
        // Each repetition times a reference right before its step; the medians
        // are reported, since a VM disk's speed drifts from minute to minute.
        let (mut cps, mut puts, mut dds, mut gets) = (vec![], vec![], vec![], vec![]);
        for rep in 0..args.reps {
            let key = format!("bench-{size_gib}g-{i}-{rep}");
            cps.push(mbps(size, reference.put(&file, &args.work).await?));
            settle(false)?;
            puts.push(mbps(
                size,
                upload(&http, &server, &file, size, &key, shape).await?,
            ));
            cold = settle(true)?;
            dds.push(mbps(size, reference.get(&file, size).await?));
            reference.clean().await?;
            settle(true)?;
            gets.push(mbps(size, download(&http, &server, &key, size).await?));
            // Keep the disk from filling at large sizes: drop the stored copy.
            twirp(&http, &server, "DeleteCacheEntry", json!({"key": key})).await?;
        }
        let (cp, put, dd, get) = (median(cps), median(puts), median(dds), median(gets));
        println!(
            "| {} | {put:.0} | {cp:.0} | {:.2}x | {get:.0} | {dd:.0} | {:.2}x | {:.1} |",
            shape.name(),
            put / cp,
            get / dd,
            vm_hwm_kib(pid)? as f64 / 1024.0
        );
    }
    if !cold {
        println!("\n(page cache could not be dropped here: reads were served from memory)");
    }
    if let Some(small) = reference.put_small_objects(&file, size.min(GIB)).await? {
        println!(
            "\nobject_store put of 1 MiB objects one after another (the 1 MiB blocks' own shape, first GiB): {:.0} MB/s",
            small
        );
    }
    for (api, what) in [
        ("v2", "v2 API"),
        (
            "v2-blob-host",
            "v2 API, hoard reached as hoard.blob.core.windows.net: parallel ranged restore",
        ),
        ("v1", "v1 API, as on GHES"),
    ] {
        settle(false)?;
        let ac = actions_cache(&args.node_dir, &server, &file, &args.work, api)?;
        let save = ac["save_secs"].as_f64().unwrap_or(f64::NAN);
        let restore = ac["restore_secs"].as_f64().unwrap_or(f64::NAN);
        println!(
            "\n@actions/cache ({what}), whole saveCache / restoreCache including tar and zstd (archive {:.0} MiB): save {:.0} MB/s, restore {:.0} MB/s",
            ac["archive_bytes"].as_f64().unwrap_or(0.0) / MIB as f64,
            mbps(size, Duration::from_secs_f64(save)),
            mbps(size, Duration::from_secs_f64(restore)),
        );
        println!(
            "  server peak RSS so far: {:.1} MiB",
            vm_hwm_kib(pid)? as f64 / 1024.0
        );
        if let (Some(tar), Some(untar)) = (
            ac["floor"]["save_secs"].as_f64(),
            ac["floor"]["restore_secs"].as_f64(),
        ) {
            println!(
                "  the client's local-disk floor (its tar + zstd to a local archive, and back): save {:.0} MB/s, restore {:.0} MB/s",
                mbps(size, Duration::from_secs_f64(tar)),
                mbps(size, Duration::from_secs_f64(untar)),
            );
        }
    }
    let hwm = vm_hwm_kib(pid)?;
    println!(
        "\nserver peak RSS (VmHWM) over all of the above: {:.1} MiB",
        hwm as f64 / 1024.0
    );
    drop(server);
    drop(deployment);
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// One GetCacheEntryDownloadURL: how long it took and whether it hit.
async fn timed_lookup(http: &reqwest::Client, url: &str, key: &str) -> Result<(Duration, bool)> {
    let body = json!({"key": key, "version": VERSION}).to_string();
    let s = Instant::now();
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let v: Value = r.json().await?;
    Ok((s.elapsed(), v["ok"] == json!(true)))
}

/// 64 clients looking up random seeded keys for `lookup_secs`: the rate.
async fn timed_lookups(args: &Args, backend: Backend, server: &Server, label: &str) -> Result<f64> {
    let n = args.lookup_entries;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let url = server.twirp_url("GetCacheEntryDownloadURL");
    let deadline = Instant::now() + Duration::from_secs(args.lookup_secs);
    let t = Instant::now();
    let tasks: Vec<_> = (0..64u64)
        .map(|w| {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let i = (rng.next_u64() % n as u64) as usize;
                    let key = format!("lookup-key-{i:07}");
                    let (took, hit) = timed_lookup(&http, &url, &key).await?;
                    lat.push(took);
                    if !hit {
                        bail!("lookup of {key} missed");
                    }
                }
                Ok::<_, anyhow::Error>(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = t.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "GetCacheEntryDownloadURL hits, 64 concurrent clients, {n} entries, {}, {label}, {}s: {rate:.0}/s, p50 {:.2} ms, p99 {:.2} ms ({} requests)",
        backend_name(backend),
        args.lookup_secs,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        all.len()
    );
    Ok(rate)
}

async fn lookups(args: &Args, backend: Backend) -> Result<()> {
    let data = args.work.join("lookup-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let n = args.lookup_entries;
    let deployment = Deployment::new(backend);
    {
        let url = match &deployment.database {
            Some(db) => db.url.clone(),
            None => hoard_db::sqlite_url(&data.join("hoard.db")),
        };
        let store = hoard_db::open(&url, &Default::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Recently used, so no eviction rule touches them during the run.
        let now = hoard_core::now_millis();
        let seeds: Vec<hoard_db::SeedEntry> = (0..n)
            .map(|i| hoard_db::SeedEntry {
                namespace: "default".into(),
                scope: "default".into(),
                key: format!("lookup-key-{i:07}"),
                version: VERSION.into(),
                size: 0,
                last_accessed_at: now - i as i64,
            })
            .collect();
        store
            .insert_committed_bulk(&seeds)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        store.close().await;
    }
    println!("\n## Lookups\n");
    // The same entries served without metrics and access log (the reference,
    // first and last so warming up favours neither), with metrics, and with
    // both as shipped: what observing costs.
    let off: &[(&str, &str)] = &[
        ("HOARD_LOG", "warn,hoard=info"),
        ("HOARD_METRICS_ENABLED", "false"),
        ("HOARD_LOG_ACCESS", "false"),
    ];
    let configurations: [(&str, &[(&str, &str)]); 4] = [
        ("metrics and access log off", off),
        (
            "metrics on, access log off",
            &[("HOARD_LOG", "info"), ("HOARD_LOG_ACCESS", "false")],
        ),
        (
            "metrics and access log on (the defaults)",
            &[("HOARD_LOG", "info")],
        ),
        ("metrics and access log off, again", off),
    ];
    let mut rates = Vec::new();
    for (label, env) in configurations {
        let server = Server::start_at(deployment.clone(), &data, env);
        rates.push(timed_lookups(args, backend, &server, label).await?);
        drop(server);
    }
    let reference = (rates[0] + rates[3]) / 2.0;
    println!(
        "Metrics cost {:.1}% of lookups per second, metrics and the access log {:.1}% ({:.0}/s and {:.0}/s against {reference:.0}/s).",
        (1.0 - rates[1] / reference) * 100.0,
        (1.0 - rates[2] / reference) * 100.0,
        rates[1],
        rates[2],
    );
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.work)?;
    println!(
        "# hoard benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for backend in &args.backends {
        for s in &args.sizes_gib {
            throughput(&args, *s, *backend).await?;
            if *backend == Backend::PgS3 {
                compaction::run(&args, *s).await?;
            }
        }
    }
    for backend in &args.backends {
        if args.lookup_secs > 0 {
            lookups(&args, *backend).await?;
        }
    }
    for backend in &args.backends {
        if args.eviction_entries > 0 {
            eviction::run(
                &args.work,
                args.eviction_entries,
                *backend,
                backend_name(*backend),
            )
            .await?;
        }
    }
    for s in &args.sizes_gib {
        let _ = std::fs::remove_file(args.work.join(format!("random-{s}g.bin")));
    }
    Ok(())
}
