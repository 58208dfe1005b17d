//! Stored objects reached behind hoard's back, as a crash or a fault would
//! leave them: files under the local store's directory, or
//! SeaweedFS's filer HTTP API, which serves a bucket's objects as files
//! (`/buckets/<bucket>/<key>`). Plain HTTP/1.0 over a socket: these helpers are
//! called from inside async tests and must not start a runtime of their own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

/// Where a store's objects are, for a test.
pub enum Objects {
    /// Object `name` is the file `<dir>/<name>`.
    Dir(PathBuf),
    /// Object `name` is `<prefix>/<name>` on the filer at `127.0.0.1:<port>`.
    Filer { port: u16, prefix: String },
}

/// One HTTP/1.0 exchange: the status and the body.
fn http(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, Vec<u8>) {
    try_http(port, method, path, headers, body).expect("the filer answers")
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body)?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let status = std::str::from_utf8(out.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status"))?;
    Ok((status, out[split + 4..].to_vec()))
}

/// A multipart form body of one file, as the filer takes uploads: the body and
/// its Content-Type header line.
fn form(bytes: &[u8]) -> (Vec<u8>, String) {
    let boundary = "hoard-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let headers = format!("Content-Type: multipart/form-data; boundary={boundary}\r\n");
    (body, headers)
}

/// Whether the filer at `port` stores and serves a small file at `path` now:
/// SeaweedFS answers S3 requests before its volume server is back after a
/// restart, so a server is ready only once this works.
pub fn filer_round_trips(port: u16, path: &str) -> bool {
    let (body, headers) = form(b"ready");
    let stored = try_http(port, "POST", path, &headers, &body).is_ok_and(|(s, _)| s < 300);
    stored && try_http(port, "GET", path, "", b"").is_ok_and(|(s, b)| s == 200 && b == b"ready")
}

/// The filer's "this entry is a directory" bit of `Mode`.
const DIR_MODE: u64 = 1 << 31;

impl Objects {
    pub fn write(&self, name: &str, bytes: &[u8]) {
        match self {
            Objects::Dir(dir) => {
                let path = dir.join(name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            Objects::Filer { port, prefix } => {
                let (body, headers) = form(bytes);
                let (status, answer) =
                    http(*port, "POST", &format!("{prefix}/{name}"), &headers, &body);
                assert!(
                    status < 300,
                    "{status}: {}",
                    String::from_utf8_lossy(&answer)
                );
            }
        }
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        match self {
            Objects::Dir(dir) => std::fs::read(dir.join(name)).unwrap(),
            Objects::Filer { port, prefix } => {
                let (status, body) = http(*port, "GET", &format!("{prefix}/{name}"), "", b"");
                assert_eq!(status, 200, "reading {name}");
                body
            }
        }
    }

    pub fn remove(&self, name: &str) {
        match self {
            Objects::Dir(dir) => std::fs::remove_file(dir.join(name)).unwrap(),
            Objects::Filer { port, prefix } => {
                let (status, _) = http(*port, "DELETE", &format!("{prefix}/{name}"), "", b"");
                assert!(status < 300, "deleting {name}: {status}");
            }
        }
    }

    /// The names of the objects under `dir` (an S3 server may leave empty
    /// directories behind; they hold nothing).
    pub fn list(&self, dir: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut stack = vec![dir.trim_end_matches('/').to_string()];
        while let Some(d) = stack.pop() {
            match self {
                Objects::Dir(root) => {
                    for e in std::fs::read_dir(root.join(&d))
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let name = format!("{d}/{}", e.file_name().to_string_lossy());
                        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                            stack.push(name);
                        } else {
                            names.push(name);
                        }
                    }
                }
                Objects::Filer { port, prefix } => {
                    let (status, body) = http(
                        *port,
                        "GET",
                        &format!("{prefix}/{d}/?limit=100000"),
                        "Accept: application/json\r\n",
                        b"",
                    );
                    if status == 404 {
                        continue;
                    }
                    let listing: serde_json::Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
                    for e in listing["Entries"].as_array().into_iter().flatten() {
                        let full = e["FullPath"].as_str().unwrap();
                        let name = full
                            .strip_prefix(prefix.as_str())
                            .unwrap()
                            .trim_start_matches('/')
                            .to_string();
                        if e["Mode"].as_u64().unwrap_or(0) & DIR_MODE != 0 {
                            stack.push(name);
                        } else {
                            names.push(name);
                        }
                    }
                }
            }
        }
        names
    }
}
