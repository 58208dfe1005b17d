//! A real S3-protocol server for tests: `s3s-fs`, which serves a directory over
//! S3 (installed by scripts/test.sh; `HOARD_S3_SERVER` names the binary).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "hoard-test-access";
pub const SECRET_KEY: &str = "hoard-test-secret-key";
pub const BUCKET: &str = "hoard-test";

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("HOARD_S3_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(home).join(".cache/hoard/tools/bin/s3s-fs");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("s3s-fs")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An S3 server on 127.0.0.1 with one bucket, stopped on drop.
pub struct S3Server {
    root: tempfile::TempDir,
    pub port: u16,
    child: Mutex<Option<Child>>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let s = S3Server {
            root,
            port: free_port(),
            child: Mutex::new(None),
        };
        s.resume();
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory holding the bucket's objects.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }

    /// Starts the server (again) on its port and directory.
    pub fn resume(&self) {
        let mut slot = self.child.lock().unwrap();
        assert!(slot.is_none(), "the S3 server is already running");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} (scripts/test.sh installs it): {e}",
                    binary().display()
                )
            });
        *slot = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the S3 server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server: the port refuses connections until `resume`.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// hoard's environment for this server, through the usual AWS_* variables.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("HOARD_STORAGE_URL", format!("s3://{BUCKET}/cache")),
            ("HOARD_STORAGE_ENDPOINT", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
