//! Test harness: starts the real `hoard` binary on a free port with its own data
//! directory, and captures what it logs.
//!
//! `HOARD_TEST_BACKEND` picks the stores every server of a test run uses:
//! `sqlite-dir` (default: SQLite + a directory), `pg-dir` (a throwaway PostgreSQL
//! database + a directory) or `pg-s3` (PostgreSQL + a real S3 server).

pub mod objects;
pub mod postgres;
pub mod proxy;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test: `HOARD_BIN`, else the one built next to this test.
pub fn hoard_bin() -> PathBuf {
    if let Ok(p) = std::env::var("HOARD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/hoard
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("hoard");
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build -p hoard) or set HOARD_BIN",
        bin.display()
    );
    bin
}

/// Which metadata and blob stores a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SqliteDir,
    PgDir,
    PgS3,
}

impl Backend {
    pub fn from_env() -> Backend {
        match std::env::var("HOARD_TEST_BACKEND").as_deref() {
            Ok("pg-dir") => Backend::PgDir,
            Ok("pg-s3") => Backend::PgS3,
            Ok("sqlite-dir") | Ok("") | Err(_) => Backend::SqliteDir,
            Ok(other) => panic!("unknown HOARD_TEST_BACKEND {other:?}"),
        }
    }
}

/// The shared parts of a deployment: the database and the bucket that every
/// replica of it uses (none for SQLite + directory, which live in the data dir).
pub struct Deployment {
    pub database: Option<postgres::TempDatabase>,
    pub s3: Option<s3::S3Server>,
}

impl Deployment {
    pub fn new(backend: Backend) -> Arc<Deployment> {
        let database = match backend {
            Backend::SqliteDir => None,
            Backend::PgDir | Backend::PgS3 => Some(postgres::TempDatabase::create()),
        };
        let s3 = (backend == Backend::PgS3).then(s3::S3Server::start);
        Arc::new(Deployment { database, s3 })
    }

    /// hoard's environment for these stores.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(db) = &self.database {
            env.push(("HOARD_DATABASE_URL".to_string(), db.url.clone()));
        }
        if let Some(s3) = &self.s3 {
            env.extend(s3.env());
        }
        env
    }
}

/// A running hoard.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
    _owned_dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    pub deployment: Arc<Deployment>,
}

/// `hoard auth new-token`: a tenant token and the hash to configure for it.
pub fn new_tenant() -> (String, String) {
    let out = Command::new(hoard_bin())
        .args(["auth", "new-token"])
        .output()
        .expect("running hoard auth new-token");
    assert!(out.status.success(), "hoard auth new-token failed");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim_matches('"')
            .to_string()
    };
    (field("token"), field("token_hash"))
}

impl Server {
    /// Starts hoard in the tenant-token mode with tenants `a` and `b` (and more
    /// environment); returns it and their tokens.
    pub fn start_with_tenants(env: &[(&str, &str)]) -> (Server, String, String) {
        let (token_a, hash_a) = new_tenant();
        let (token_b, hash_b) = new_tenant();
        let tenants = format!("a={hash_a},b={hash_b}");
        let mut all = vec![
            ("HOARD_AUTH_MODE", "tenant-token"),
            ("HOARD_AUTH_TENANTS", tenants.as_str()),
        ];
        all.extend_from_slice(env);
        (Server::start_with(&all), token_a, token_b)
    }

    /// Starts hoard with a fresh data directory.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts hoard with a fresh data directory and extra environment, on the
    /// stores `HOARD_TEST_BACKEND` names.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_on(Deployment::new(Backend::from_env()), env)
    }

    /// Starts hoard with a fresh data directory on a deployment's stores: call it
    /// again with the same deployment for another replica.
    pub fn start_on(deployment: Arc<Deployment>, env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut s = Self::launch(deployment, &path, env, "127.0.0.1:0");
        s._owned_dir = Some(dir);
        s
    }

    /// Starts hoard on a deployment's stores with a given data directory.
    pub fn start_at(deployment: Arc<Deployment>, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::launch(deployment, data_dir, env, "127.0.0.1:0")
    }

    fn launch(
        deployment: Arc<Deployment>,
        data_dir: &Path,
        env: &[(&str, &str)],
        listen: &str,
    ) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = Command::new(hoard_bin());
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .env_remove("HOARD_CONFIG")
            .env("HOARD_LOG", "info")
            // Tests reach nothing outside the machine; passthrough tests name
            // their own upstream.
            .env("HOARD_PASSTHROUGH_UPSTREAM", "")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The test's own variables come last, so they win.
        for (k, v) in deployment.env().iter().chain(&env) {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hoard");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    {
                        // Logged before anyone is told the server is up.
                        let mut l = log.lock().unwrap();
                        l.push_str(&line);
                        l.push('\n');
                    }
                    if let Some(rest) = line.split("hoard listening on ").nth(1) {
                        let addr = rest.split(';').next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                    }
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("hoard did not start:\n{}", log.lock().unwrap());
            }
        };
        Server {
            child: Some(child),
            url: format!("http://{addr}"),
            data_dir: data_dir.to_path_buf(),
            log,
            _owned_dir: None,
            env,
            deployment,
        }
    }

    /// Runs another `hoard` command (`gc`, `config check`...) on this server's
    /// stores and environment; returns its output.
    pub fn run_cli(&self, args: &[&str]) -> std::process::Output {
        self.cli(args).output().expect("run hoard")
    }

    /// `hoard <args>` on this server's data dir, database, storage and
    /// environment, not yet started.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(hoard_bin());
        cmd.args(args)
            .env_remove("HOARD_CONFIG")
            .env("HOARD_DATA_DIR", &self.data_dir)
            .env("HOARD_LOG", "warn");
        for (k, v) in self.deployment.env().iter().chain(&self.env) {
            cmd.env(k, v);
        }
        cmd
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("hoard did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops this server and starts another on the same data directory, address
    /// and environment, so URLs handed out before still point at it.
    pub fn restart(mut self) -> Server {
        self.stop();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let listen = self.url.trim_start_matches("http://").to_string();
        let mut next = Server::launch(self.deployment.clone(), &self.data_dir, &env, &listen);
        next._owned_dir = self._owned_dir.take();
        next
    }

    /// The store's objects, reached behind hoard's back.
    pub fn objects(&self) -> objects::Objects {
        match &self.deployment.s3 {
            Some(s3) => s3.objects("cache"),
            None => objects::Objects::Dir(self.data_dir.join("blobs/objects")),
        }
    }

    /// Writes an object behind hoard's back, as a crash would leave one.
    pub fn plant_object(&self, name: &str, bytes: &[u8]) {
        self.objects().write(name, bytes);
    }

    /// The names of entry `id`'s objects.
    pub fn entry_objects(&self, id: &str) -> Vec<String> {
        self.objects().list(&format!("entries/{id}"))
    }

    /// `ACTIONS_RESULTS_URL` as a runner would set it.
    pub fn results_url(&self) -> String {
        format!("{}/", self.url)
    }

    pub fn twirp_url(&self, method: &str) -> String {
        format!(
            "{}/twirp/github.actions.results.api.v1.CacheService/{method}",
            self.url
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Plain-HTTP calls of the protocol, for tests that need exact control.
pub mod client {
    use serde_json::{json, Value};

    /// A Twirp JSON call; returns status and parsed body.
    pub async fn twirp(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
        let r = http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("twirp request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("twirp body");
        let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text}"));
        (status, v)
    }

    /// Reserves, uploads with Put Blob and finalizes; returns the entry id.
    /// CreateCacheEntry; returns the signed upload URL.
    pub async fn create(server: &super::Server, key: &str, version: &str) -> String {
        let (s, v) = twirp(
            &reqwest::Client::new(),
            &server.twirp_url("CreateCacheEntry"),
            json!({"key": key, "version": version}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["signed_upload_url"].as_str().unwrap().to_string()
    }

    /// The entry id a signed blob URL names.
    pub fn entry_id_of(url: &str) -> String {
        let rest = url.split("/blob/cache/").nth(1).expect("a blob URL");
        rest.split('?').next().unwrap_or(rest).to_string()
    }

    /// DeleteCacheEntry; panics unless it succeeds.
    pub async fn delete(server: &super::Server, key: &str) {
        let (s, v) = twirp(
            &reqwest::Client::new(),
            &server.twirp_url("DeleteCacheEntry"),
            json!({"key": key}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }

    /// Put Block; returns the HTTP status.
    pub async fn put_block(upload_url: &str, block_id: &str, body: Vec<u8>) -> u16 {
        reqwest::Client::new()
            .put(format!("{upload_url}&comp=block&blockid={block_id}"))
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub async fn save(server: &super::Server, key: &str, version: &str, data: &[u8]) -> String {
        let http = reqwest::Client::new();
        let url = create(server, key, version).await;
        let r = http
            .put(&url)
            .header("x-ms-blob-type", "BlockBlob")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        finalize(server, key, version, data.len() as u64).await
    }

    /// Finalizes an upload of `size` bytes; panics if refused. Returns the entry id.
    pub async fn finalize(server: &super::Server, key: &str, version: &str, size: u64) -> String {
        let (s, v) = twirp(
            &reqwest::Client::new(),
            &server.twirp_url("FinalizeCacheEntryUpload"),
            json!({"key": key, "version": version, "size_bytes": size.to_string()}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["entry_id"].as_str().unwrap().to_string()
    }

    /// Commits staged blocks (base64 ids, in order) with Put Block List, then
    /// finalizes the entry with `size` bytes; panics if either is refused.
    pub async fn commit_blocks(
        server: &super::Server,
        upload_url: &str,
        key: &str,
        version: &str,
        block_ids: &[String],
        size: u64,
    ) {
        let http = reqwest::Client::new();
        let list: String = block_ids
            .iter()
            .map(|id| format!("<Latest>{id}</Latest>"))
            .collect();
        let r = http
            .put(format!("{upload_url}&comp=blocklist"))
            .body(format!("<BlockList>{list}</BlockList>"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        finalize(server, key, version, size).await;
    }

    /// A blob response's status, `x-ms-error-code` and body.
    pub async fn azure(r: reqwest::Response) -> (u16, String, String) {
        let status = r.status().as_u16();
        let code = r
            .headers()
            .get("x-ms-error-code")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        (status, code, body)
    }

    /// Looks a key up; returns the download URL on a hit.
    pub async fn lookup(server: &super::Server, key: &str, version: &str) -> Option<String> {
        let http = reqwest::Client::new();
        let (s, v) = twirp(
            &http,
            &server.twirp_url("GetCacheEntryDownloadURL"),
            json!({"key": key, "version": version}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        if v["ok"] == json!(true) {
            Some(v["signed_download_url"].as_str().unwrap().to_string())
        } else {
            None
        }
    }

    /// Downloads a whole entry by key.
    pub async fn restore(server: &super::Server, key: &str, version: &str) -> Option<Vec<u8>> {
        let url = lookup(server, key, version).await?;
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        Some(r.bytes().await.unwrap().to_vec())
    }
}
