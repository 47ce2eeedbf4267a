//! Gathers what a connection's HTTP layer writes between flushes into one send.
//!
//! The TLS stream sends each write at once, and hyper's HTTP/2 connection flushes after every
//! turn of its loop, so responses finished one after another left one by one: a TLS record, a
//! `writev` and a wake-up of the client each. Here writes are held until a flush, and a flush
//! first lets the other ready tasks run once (as `yield_now` does), so the responses they finish
//! meanwhile join the same send.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much is held before it is sent without waiting for a flush.
const HOLD: usize = 64 * 1024;
/// The most room kept once a flush is done: a connection that once sent a large response (a
/// list, a watch's first events) and then idles does not keep `HOLD` bytes.
const KEEP: usize = 16 * 1024;

/// A stream whose writes wait for a flush.
pub struct Coalesce<T> {
    inner: T,
    held: Vec<u8>,
    /// How much of `held` the stream has taken.
    sent: usize,
    /// Whether the pending flush has let other tasks run once.
    yielded: bool,
}

impl<T> Coalesce<T> {
    pub fn new(inner: T) -> Self {
        Coalesce {
            inner,
            held: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Hands everything held to the stream.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.held.len() >= HOLD {
            ready!(self.poll_send(cx))?;
        }
        let mut taken = 0;
        for buf in bufs {
            let take = buf.len().min(HOLD - self.held.len());
            self.held.extend_from_slice(&buf[..take]);
            taken += take;
            if take < buf.len() {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.held.is_empty() && !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_send(cx))?;
        self.yielded = false;
        if self.held.capacity() > KEEP {
            self.held = Vec::new();
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;

    /// A stream that records each write it takes, taking at most `take` bytes a write, and
    /// refusing (Pending) the first `stall` writes it is offered.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        take: Option<usize>,
        stall: usize,
        flushes: usize,
        shut: bool,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stall > 0 {
                self.stall -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.take.unwrap_or(usize::MAX));
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    struct CountWakes(AtomicUsize);

    impl futures::task::ArcWake for CountWakes {
        fn wake_by_ref(arc_self: &Arc<Self>) {
            arc_self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn writes_wait_for_a_flush_and_leave_in_one_send() {
        let mut stream = Coalesce::new(Recorder::default());
        stream.write_all(b"HEADERS").await.unwrap();
        let taken = stream
            .write_vectored(&[io::IoSlice::new(b" DATA"), io::IoSlice::new(b" END")])
            .await
            .unwrap();
        assert_eq!(taken, 9, "both slices are taken");
        assert!(
            stream.inner.writes.is_empty(),
            "nothing is sent before a flush"
        );
        stream.flush().await.unwrap();
        assert_eq!(stream.inner.writes, vec![b"HEADERS DATA END".to_vec()]);
        assert_eq!(stream.inner.flushes, 1);
        stream.write_all(b"next").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(
            stream.inner.writes.len(),
            2,
            "each flush sends what came since"
        );
        assert_eq!(stream.inner.writes[1], b"next");
        assert!(
            stream.held.capacity() >= 4,
            "a small send keeps its room for the next"
        );
    }

    #[test]
    fn a_flush_lets_other_tasks_run_once_before_it_sends() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut stream = Coalesce::new(Recorder::default());
        assert!(matches!(
            Pin::new(&mut stream).poll_write(&mut cx, b"response"),
            Poll::Ready(Ok(8))
        ));
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_pending());
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the flush asks to be polled again"
        );
        assert!(stream.inner.writes.is_empty());
        // What other tasks wrote in the meantime goes with it.
        let _ = Pin::new(&mut stream).poll_write(&mut cx, b" and another");
        assert!(matches!(
            Pin::new(&mut stream).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(stream.inner.writes, vec![b"response and another".to_vec()]);
        // With nothing held, a flush goes straight through.
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
        assert_eq!(stream.inner.flushes, 2);
    }

    #[tokio::test]
    async fn a_full_hold_is_sent_without_waiting_for_a_flush() {
        let mut stream = Coalesce::new(Recorder::default());
        let big = vec![7u8; HOLD + 10];
        stream.write_all(&big).await.unwrap();
        assert_eq!(stream.inner.writes.len(), 1);
        assert_eq!(stream.inner.writes[0].len(), HOLD);
        stream.flush().await.unwrap();
        assert_eq!(stream.inner.writes.concat(), big);
        assert!(
            stream.held.capacity() <= KEEP,
            "an idle connection does not keep a large send's room"
        );
    }

    #[tokio::test]
    async fn a_slow_stream_gets_every_byte_in_order() {
        let mut stream = Coalesce::new(Recorder {
            take: Some(3),
            stall: 2,
            ..Default::default()
        });
        stream.write_all(b"0123456789").await.unwrap();
        stream.flush().await.unwrap();
        assert_eq!(stream.inner.writes.concat(), b"0123456789");
        assert_eq!(stream.inner.writes.len(), 4, "sent three bytes at a time");
    }

    #[tokio::test]
    async fn shutting_down_sends_what_is_held() {
        let mut stream = Coalesce::new(Recorder::default());
        stream.write_all(b"last words").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(stream.inner.writes, vec![b"last words".to_vec()]);
        assert!(stream.inner.shut);
    }
}
