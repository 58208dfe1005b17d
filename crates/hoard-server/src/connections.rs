//! Accepting and serving connections, with the timeouts a server facing many
//! clients needs: a deadline for request headers (slowloris), a deadline for a
//! write the client does not take (a reader that stopped reading), a bound on
//! HTTP/2 streams per connection, and a graceful shutdown that waits at most a
//! grace period for requests in flight.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// Timeouts and bounds of connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A request's headers must arrive within this (HTTP/1; also how long an
    /// idle keep-alive connection is kept).
    pub header_read_timeout: Duration,
    /// A write the client does not take for this long closes the connection.
    pub write_idle_timeout: Duration,
    /// Concurrent streams one HTTP/2 connection may open.
    pub http2_max_streams: u32,
    /// After SIGTERM, requests in flight get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read_timeout: Duration::from_secs(30),
            write_idle_timeout: Duration::from_secs(30),
            http2_max_streams: 64,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in
/// flight finish for at most the grace period. Returns how many connections
/// were still open when the grace ran out.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> usize {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.write_idle_timeout);
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(app);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // wait a moment instead of spinning, and keep serving.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Small answers (201 to a block, a Twirp reply) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(WriteDeadline::new(tcp, limits.write_idle_timeout));
        let conn = builder
            .serve_connection_with_upgrades(io, service.clone())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    if open > 0 {
        tracing::info!(
            connections = open,
            grace_secs = limits.shutdown_grace.as_secs(),
            "waiting for requests in flight"
        );
    }
    tokio::select! {
        _ = graceful.shutdown() => 0,
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("shutdown grace is over; closing the connections still open");
            open
        }
    }
}

/// A TCP stream whose writes fail once the peer has taken nothing for
/// `timeout`: hyper then closes the connection and drops what the request held.
struct WriteDeadline {
    inner: TcpStream,
    timeout: Duration,
    /// Armed while a write waits on the peer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    fn new(inner: TcpStream, timeout: Duration) -> WriteDeadline {
        WriteDeadline {
            inner,
            timeout,
            deadline: None,
        }
    }

    /// After the inner write returned `Pending`: arms the deadline, or fails if
    /// it passed.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.deadline = None;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took no bytes within the write timeout",
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.waiting(cx).map(Err),
            ready => {
                self.deadline = None;
                ready
            }
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.progress(cx, r)
    }
}
