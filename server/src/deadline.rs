//! The TCP stream hyper serves plain HTTP on: a write the client does not
//! take in time fails, so a client that sends requests and never reads the
//! answers (pipelining `GET /metrics` by the thousand fills our send
//! buffer in one go) cannot hold its connection, its accept slot and
//! megabytes of kernel buffer forever. The stream is handed back whole
//! when a request becomes a WebSocket, which keeps its own write timeouts
//! (`connection.rs`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// A [`TcpStream`] whose writes must make progress: one that stays
/// pending for `limit` fails with [`io::ErrorKind::TimedOut`], which ends
/// the connection (hyper drops it: the unread rest is reset, and the kernel
/// frees its buffers at once).
pub struct WriteDeadline {
    tcp: TcpStream,
    limit: Duration,
    /// Runs while a write is pending, from when it first could not go on;
    /// any progress disarms it. Boxed: only a stalled connection has one.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteDeadline {
    pub fn new(tcp: TcpStream, limit: Duration) -> WriteDeadline {
        WriteDeadline {
            tcp,
            limit,
            stalled: None,
        }
    }

    /// The stream itself, for a WebSocket.
    pub fn into_inner(self) -> TcpStream {
        self.tcp
    }

    /// `written` as it came, or a timeout if the write has been pending
    /// for `limit`.
    fn in_time<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took nothing of the response for --http-timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write(cx, buf);
        self.in_time(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.in_time(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.tcp).poll_flush(cx);
        self.in_time(cx, flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = WriteDeadline::new(server, Duration::from_millis(200));
        // Far more than the socket buffers hold, and nobody reads.
        let response = vec![b'x'; 64 << 20];
        let err = tokio::time::timeout(Duration::from_secs(30), stream.write_all(&response))
            .await
            .expect("the write ends by itself")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn a_write_that_makes_progress_is_not_cut() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = WriteDeadline::new(server, Duration::from_secs(2));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = vec![0; 64 * 1024];
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n,
                }
            }
        });
        stream.write_all(&vec![b'x'; 8 << 20]).await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 8 << 20);
    }
}
