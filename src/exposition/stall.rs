//! A bound on how long the sidecar waits for a client to read: a connection whose socket
//! takes less than `MIN_PROGRESS` bytes within `timeout` of a write starting to wait is cut.
//!
//! Without it a client that asks for `/metrics` and never reads holds its scrape (a place, a
//! writer's buffers, the segments it sends) for as long as it keeps the connection open. A
//! client that reads, however slowly the network goes, keeps it: a write that waits is fine
//! as long as the bytes keep going out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a waiting client must take within the timeout to keep its connection: 64 KiB in
/// 5 s is 13 KB/s, far below any scraper that is reading at all.
pub const MIN_PROGRESS: usize = 64 * 1024;

/// A connection's stream, cut (its writes fail with `TimedOut`) when the client stops
/// reading.
pub struct StallGuard<IO> {
    io: IO,
    timeout: Duration,
    /// Bytes written since writes started waiting; None while the client keeps up.
    waiting: Option<usize>,
    deadline: Pin<Box<Sleep>>,
}

impl<IO> StallGuard<IO> {
    pub fn new(io: IO, timeout: Duration) -> StallGuard<IO> {
        StallGuard {
            io,
            timeout,
            waiting: None,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// After a write of `offered` bytes that gave `result`.
    fn after(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<usize>>,
        offered: usize,
    ) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Ok(n)) => {
                if n >= offered {
                    // The socket took all of it: the client keeps up.
                    self.waiting = None;
                } else if let Some(sent) = &mut self.waiting {
                    *sent += n;
                    if *sent >= MIN_PROGRESS {
                        self.waiting = None;
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                if self.waiting.is_none() {
                    self.waiting = Some(0);
                    let at = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                }
                match self.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the client took less than {MIN_PROGRESS} bytes in {:?}; connection cut",
                            self.timeout
                        ),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for StallGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for StallGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after(cx, result, buf.len())
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let offered = bufs.iter().map(|b| b.len()).sum();
        let result = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after(cx, result, offered)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A client that never reads is cut after the timeout; one that reads slowly but keeps
    /// taking bytes is not.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_one_that_reads_is_not() {
        let timeout = Duration::from_secs(5);
        // A pipe with a small buffer stands for the socket.
        let (server, _client) = tokio::io::duplex(4096);
        let mut guarded = StallGuard::new(server, timeout);
        let started = Instant::now();
        let err = guarded
            .write_all(&vec![7u8; 1 << 20])
            .await
            .expect_err("cut");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), timeout);

        let (server, mut client) = tokio::io::duplex(4096);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut total = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let mut guarded = StallGuard::new(server, timeout);
        // 4 KB every half second: 40 KB in 5 s, less than MIN_PROGRESS: cut.
        let err = guarded.write_all(&vec![7u8; 1 << 20]).await;
        assert!(err.is_err());
        drop(guarded);
        reader.await.unwrap();

        let (server, mut client) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        let mut guarded = StallGuard::new(server, timeout);
        // 64 KB every half second: slow, never cut.
        guarded.write_all(&vec![7u8; 1 << 20]).await.expect("sent");
        guarded.shutdown().await.unwrap();
        drop(guarded);
        assert_eq!(reader.await.unwrap(), 1 << 20);
    }
}
