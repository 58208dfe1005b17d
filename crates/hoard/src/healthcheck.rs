//! `hoard healthcheck`: asks a running server for `/healthz`, with no tool but the
//! binary itself (the container image has no curl).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `http://host:port` of the server: the given URL, else the listen address with
/// an unspecified host (0.0.0.0, [::]) read as this machine.
fn target(url: Option<&str>, listen: &str) -> String {
    match url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let local = listen
                .replace("0.0.0.0", "127.0.0.1")
                .replace("[::]", "[::1]");
            format!("http://{local}")
        }
    }
}

pub fn run(url: Option<&str>, listen: &str) -> Result<()> {
    let base = target(url, listen);
    let Some(authority) = base.strip_prefix("http://") else {
        bail!("healthcheck speaks plain http only: {base}");
    };
    let authority = authority.split('/').next().unwrap_or(authority);
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("no address for {authority}"))?;
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {authority}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or("");
    if status.split(' ').nth(1) != Some("200") {
        bail!("{base}/healthz answered {status:?}");
    }
    println!("ok");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn listen_addresses_become_local_urls() {
        assert_eq!(target(None, "0.0.0.0:8080"), "http://127.0.0.1:8080");
        assert_eq!(target(None, "[::]:80"), "http://[::1]:80");
        assert_eq!(target(Some("http://h:1/"), "x"), "http://h:1");
    }
}
