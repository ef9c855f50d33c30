//! The way from a room to one member's socket: frames queue here during
//! a room's turn, and when the turn ends the room writes each member's
//! queue to its socket itself, all of it in one call, without waiting.
//! Bounded, and costs nothing while empty.
//!
//! Writing from the member's own task would cost a wake-up and a poll of
//! that task per member per turn; at a fan-out of ten that was a sixth of
//! the server's CPU and a sixth of the latency. What the socket does not
//! take (its buffer is full, or it took part of a frame) stays queued, and
//! the connection is woken to write it once the socket has room. Under
//! load a turn covers several commands (see `room::run`), so each member's
//! frames of the turn go out together: one system call for many frames.
//!
//! One writer at a time: the room writes only under the queue's lock, and
//! only while the connection has not taken "the pen". The connection takes
//! it before writing anything: the frames it was woken for
//! ([`Inbox::recv_all`]) or one of its own ([`Inbox::claim`]), which also
//! hands over what the room queued, a half-written frame first. It gives
//! the pen back when it finds the queue empty. Leaving a room
//! ([`Inbox::close`]) hands over the rest of a half-written frame, which
//! must go out before anything else.
//!
//! A member whose queue is full is evicted ([`Outbox::evict`]): nothing more
//! is queued for it, and its connection, even one blocked writing to a
//! reader that stopped, learns of it at once ([`Inbox::evicted`]), finishes
//! the frame on the wire and says why with a close frame.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::ws::{self, Text};
use futures_util::task::AtomicWaker;

/// A frame was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The queue was empty: this outbox is owed a flush.
    pub first: bool,
    /// The queue now holds half its capacity or more (a member's way in
    /// not counted): the room's turn ends, so the turn itself never
    /// fills a queue that its member reads promptly.
    pub half_full: bool,
}

/// Why a frame could not be queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The queue holds its capacity: the reader is not keeping up.
    Full,
    /// The connection is gone.
    Closed,
}

struct Shared {
    queue: Mutex<Queue>,
    waker: AtomicWaker,
    /// Live [`Outbox`] handles; the last one dropped closes the queue.
    senders: AtomicUsize,
    /// The room let go of this member for a full queue: the connection
    /// stops writing at the end of the frame on the wire.
    evicted: AtomicBool,
    capacity: usize,
}

struct Queue {
    frames: VecDeque<Text>,
    /// How many of the first `frames` are the member's way in (board,
    /// locks, replay, presence; [`Outbox::try_send_entry`]): not counted
    /// against the capacity, so what a joiner is owed cannot make it a
    /// slow consumer on arrival. Bounded by bytes where they come from.
    entry: usize,
    /// Bytes of the first queued frame already on the wire: the room wrote
    /// part of it.
    written: usize,
    /// The socket, while the room may write to it.
    socket: Option<ws::Sender>,
    /// The connection holds the pen: the room only queues.
    connection_writes: bool,
    /// No sender left (the room let go) or the receiver is gone.
    closed: bool,
    /// The room let go because a newer connection took the session over.
    replaced: bool,
    /// The room let go for the app's backend (kicked, room closed).
    let_go: Option<LetGo>,
}

/// Frames for the connection to write, less the `written` bytes of the
/// first that are already on the wire.
#[derive(Debug, Default)]
pub struct Batch {
    pub frames: VecDeque<Text>,
    pub written: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still sound.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The room's end.
pub struct Outbox(Arc<Shared>);

/// The connection's end.
pub struct Inbox(Arc<Shared>);

/// A way to `socket` holding at most `capacity` queued frames.
pub fn channel(capacity: usize, socket: ws::Sender) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            frames: VecDeque::new(),
            entry: 0,
            written: 0,
            socket: Some(socket),
            connection_writes: false,
            closed: false,
            replaced: false,
            let_go: None,
        }),
        waker: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        evicted: AtomicBool::new(false),
        capacity: capacity.max(1),
    });
    (Outbox(shared.clone()), Inbox(shared))
}

impl Outbox {
    /// The outbox of a member whose socket is on another node of the
    /// cluster (`room/replica/`): the member is present, and frames for
    /// it are that node's to deliver, so this one takes none (`Closed`).
    pub fn elsewhere() -> Outbox {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                entry: 0,
                written: 0,
                socket: None,
                connection_writes: false,
                closed: true,
                replaced: false,
                let_go: None,
            }),
            waker: AtomicWaker::new(),
            senders: AtomicUsize::new(1),
            evicted: AtomicBool::new(false),
            capacity: 1,
        });
        Outbox(shared)
    }

    /// Queues `frame` for the end of the room's turn ([`Outbox::flush`]),
    /// unless the queue is full or closed. Never waits.
    pub fn try_send(&self, frame: Text) -> Result<Queued, SendError> {
        self.push(frame, self.0.capacity)
    }

    /// Queues one frame of what a joiner or resumer is sent to get in,
    /// beyond the capacity (see `Queue::entry`). Only before any other
    /// frame was queued for it: the room sends these first.
    pub fn try_send_entry(&self, frame: Text) -> Result<Queued, SendError> {
        let mut q = self.0.lock();
        if q.closed {
            return Err(SendError::Closed);
        }
        q.frames.push_back(frame);
        q.entry += 1;
        Ok(self.queued(&q))
    }

    /// Like [`Outbox::try_send`] for frames that may be missed (`moving`):
    /// refused once the queue is half full, so a lagging reader skips them
    /// instead of filling up with them.
    pub fn try_send_volatile(&self, frame: Text) -> Result<Queued, SendError> {
        self.push(frame, self.0.capacity / 2)
    }

    fn push(&self, frame: Text, limit: usize) -> Result<Queued, SendError> {
        let mut q = self.0.lock();
        if q.closed {
            return Err(SendError::Closed);
        }
        if q.frames.len() - q.entry >= limit {
            return Err(SendError::Full);
        }
        q.frames.push_back(frame);
        Ok(self.queued(&q))
    }

    fn queued(&self, q: &Queue) -> Queued {
        Queued {
            first: q.frames.len() == 1,
            half_full: (q.frames.len() - q.entry) * 2 >= self.0.capacity,
        }
    }

    /// Ends the room's turn for this member: writes everything queued to
    /// the socket if the connection is not writing, and wakes the
    /// connection for whatever the socket did not take.
    pub fn flush(&self) {
        let wake = {
            let mut q = self.0.lock();
            let q = &mut *q;
            if let (Some(socket), false, false) =
                (&q.socket, q.frames.is_empty(), q.connection_writes)
            {
                // A full socket buffer: the connection waits for room. Any
                // other error, it meets on its own write.
                if let Ok(n) = socket.try_send_texts(q.frames.make_contiguous(), q.written) {
                    written(q, n);
                }
            }
            !q.frames.is_empty()
        };
        if wake {
            self.0.waker.wake();
        }
    }

    /// Lets go of a slow consumer: nothing more is queued for it and the
    /// room no longer writes to its socket. Whole frames still queued are
    /// dropped (history keeps them for a resume); a frame half on the wire
    /// stays for the connection to finish. Wakes the connection, also one
    /// blocked writing ([`Inbox::evicted`]), to close.
    pub fn evict(&self) {
        {
            let mut q = self.0.lock();
            q.closed = true;
            q.socket = None;
            let half_written = usize::from(q.written > 0);
            q.frames.truncate(half_written);
            q.entry = q.entry.min(half_written);
        }
        self.0.evicted.store(true, Ordering::Release);
        self.0.waker.wake();
    }

    /// Lets go of a connection whose session a newer connection took over;
    /// it learns why from [`Inbox::replaced`] once the queue closes.
    pub fn close_replaced(self) {
        self.0.lock().replaced = true;
        // Dropping `self` closes the queue, unless the turn still holds a
        // clone to flush: then it closes once that is written.
    }
}

/// Why the app's backend had the room let go of a member: the close code
/// and reason its connection closes with, and for how long its rejoin of
/// the room is refused (`banSeconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LetGo {
    pub code: u16,
    pub reason: &'static str,
    pub ban: Option<std::time::Duration>,
}

impl Outbox {
    /// Lets go of a member the app's backend removed: what is queued is
    /// still written, then the connection closes as `why` says (see
    /// [`Inbox::let_go`]).
    pub fn close_with(self, why: LetGo) {
        self.0.lock().let_go = Some(why);
    }
}

/// Takes `n` more bytes off the front of the queue as written.
fn written(q: &mut Queue, n: usize) {
    let (whole, rest) = ws::advance(q.frames.iter(), q.written + n);
    q.frames.drain(..whole);
    q.entry = q.entry.saturating_sub(whole);
    q.written = rest;
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Outbox(self.0.clone())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.lock().closed = true;
            self.0.waker.wake();
        }
    }
}

impl Inbox {
    /// Everything queued, oldest first, once there is something; `None`
    /// once the room let go and nothing is left. The connection holds the
    /// pen from the moment frames are handed over until a call finds none.
    pub async fn recv_all(&mut self) -> Option<Batch> {
        std::future::poll_fn(|cx| self.poll_recv_all(cx)).await
    }

    fn poll_recv_all(&mut self, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        if let Some(ready) = self.take() {
            return Poll::Ready(ready);
        }
        self.0.waker.register(cx.waker());
        // A frame queued between the first look and the registration woke
        // nobody: look again.
        match self.take() {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    fn take(&self) -> Option<Option<Batch>> {
        let mut q = self.0.lock();
        if !q.frames.is_empty() {
            q.connection_writes = true;
            return Some(Some(take_batch(&mut q)));
        }
        q.connection_writes = false;
        q.closed.then_some(None)
    }

    /// Takes the pen to write something of the connection's own: from now
    /// on the room queues. Returns what the room had queued, to be written
    /// first.
    pub fn claim(&self) -> Batch {
        let mut q = self.0.lock();
        q.connection_writes = true;
        take_batch(&mut q)
    }

    /// Resolves once the room evicted this member ([`Outbox::evict`]). For
    /// the connection to watch while it writes: it shares the waker with
    /// [`Inbox::recv_all`], which the same task polls.
    pub async fn evicted(&self) {
        std::future::poll_fn(|cx| {
            if self.0.evicted.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.0.waker.register(cx.waker());
            if self.0.evicted.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the room let go because a newer connection took the
    /// session over (see [`Outbox::close_replaced`]).
    pub fn replaced(&self) -> bool {
        self.0.lock().replaced
    }

    /// Why the room let go, if it was for the app's backend (see
    /// [`Outbox::close_with`]).
    pub fn let_go(&self) -> Option<LetGo> {
        self.0.lock().let_go
    }

    /// Whether the room's last write took only part of a frame.
    #[cfg(test)]
    pub fn half_written(&self) -> bool {
        self.0.lock().written > 0
    }

    /// Closes the queue on leaving the room. Returns the rest of a frame the
    /// room left half-written, which must be written before anything else;
    /// whole frames still queued are dropped with the membership.
    pub fn close(self) -> Option<Batch> {
        let batch = take_batch(&mut self.0.lock());
        batch.rest_on_the_wire()
        // Dropping `self` closes the queue.
    }
}

impl Batch {
    /// The rest of the first frame if part of it is on the wire (nothing
    /// else may be written before it), without the frames after it.
    pub fn rest_on_the_wire(self) -> Option<Batch> {
        let half_written = self.frames.into_iter().next().filter(|_| self.written > 0);
        half_written.map(|frame| Batch {
            frames: VecDeque::from([frame]),
            written: self.written,
        })
    }
}

fn take_batch(q: &mut Queue) -> Batch {
    q.entry = 0;
    Batch {
        frames: std::mem::take(&mut q.frames),
        written: std::mem::take(&mut q.written),
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.closed = true;
        q.frames.clear();
        q.entry = 0;
        // The room's handle must not keep the socket open.
        q.socket = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    fn text(s: &'static str) -> Text {
        Text::from_static(s)
    }

    /// A queue to a real socket, and the client's end of that socket.
    async fn channel_to_client(capacity: usize) -> (Outbox, Inbox, ws::Socket, TcpStream) {
        let (socket, client) = ws::tcp_pair().await;
        let (tx, rx) = channel(capacity, socket.sender());
        (tx, rx, socket, client)
    }

    /// Reads exactly `want.len()` bytes and checks they are `want`.
    async fn expect_bytes(client: &mut TcpStream, want: &[u8]) {
        let mut got = vec![0; want.len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the bytes never came")
            .unwrap();
        assert!(got == want, "unexpected bytes on the wire");
    }

    fn names(batch: &Batch) -> Vec<String> {
        batch.frames.iter().map(|t| t.to_string()).collect()
    }

    #[tokio::test]
    async fn a_flush_writes_the_turns_frames_itself_and_wakes_nobody() {
        let (tx, mut rx, _socket, mut client) = channel_to_client(8).await;
        assert!(tx.try_send(text("a")).unwrap().first, "first of the turn");
        assert!(!tx.try_send(text("b")).unwrap().first);
        tx.flush();
        let mut want = ws::framed("a");
        want.extend(ws::framed("b"));
        expect_bytes(&mut client, &want).await;
        // Nothing was left for the connection.
        assert!(rx.recv_all().now_or_never().is_none());
        // A flush with nothing queued writes nothing.
        tx.flush();
        tx.try_send(text("c")).unwrap();
        tx.flush();
        expect_bytes(&mut client, &ws::framed("c")).await;
    }

    #[tokio::test]
    async fn while_the_connection_holds_the_pen_frames_stay_queued_in_order() {
        let (tx, mut rx, _socket, mut client) = channel_to_client(8).await;
        assert!(rx.claim().frames.is_empty());
        for s in ["a", "b", "c"] {
            tx.try_send(text(s)).unwrap();
        }
        tx.flush();
        let batch = rx.recv_all().await.unwrap();
        assert_eq!(names(&batch), ["a", "b", "c"]);
        assert_eq!(batch.written, 0);
        // Nothing reached the socket behind the connection's back.
        let mut byte = [0];
        let read = tokio::time::timeout(Duration::from_millis(100), client.read(&mut byte));
        assert!(
            read.await.is_err(),
            "the room wrote while the pen was taken"
        );
    }

    #[tokio::test]
    async fn the_pen_goes_back_once_the_connection_finds_the_queue_empty() {
        let (tx, mut rx, _socket, mut client) = channel_to_client(8).await;
        rx.claim();
        tx.try_send(text("queued")).unwrap();
        tx.flush();
        assert_eq!(names(&rx.recv_all().await.unwrap()), ["queued"]);
        // Still the connection's: it has not yet looked again.
        tx.try_send(text("queued too")).unwrap();
        tx.flush();
        assert_eq!(names(&rx.recv_all().await.unwrap()), ["queued too"]);
        assert!(rx.recv_all().now_or_never().is_none());
        tx.try_send(text("direct")).unwrap();
        tx.flush();
        expect_bytes(&mut client, &ws::framed("direct")).await;
    }

    #[tokio::test]
    async fn a_frame_the_socket_takes_part_of_is_finished_by_the_connection_before_anything_else() {
        let (tx, mut rx, mut socket, mut client) = channel_to_client(8).await;
        // Far more than the socket buffers hold while the client reads
        // nothing: the room's write goes out in part.
        let big: &'static str = "x".repeat(8 << 20).leak();
        for frame in ["before", big, "after"] {
            tx.try_send(text(frame)).unwrap();
        }
        tx.flush();
        let batch = rx.recv_all().await.unwrap();
        // "before" went out whole, "big" in part.
        assert_eq!(batch.frames.len(), 2);
        assert!(batch.written > 0 && batch.written < ws::frame_len(&text(big)));
        let mut want = ws::framed("before");
        want.extend(ws::framed(big));
        want.extend(ws::framed("after"));
        want.extend(ws::framed("own"));
        let reading = tokio::spawn(async move {
            expect_bytes(&mut client, &want).await;
            client
        });
        let (mut frames, mut written) = (batch.frames, batch.written);
        socket.send_rest(&mut frames, &mut written).await.unwrap();
        // The connection's own frame: after the claim, nothing is pending.
        assert!(rx.claim().frames.is_empty());
        socket.send_texts(&[text("own")]).await.unwrap();
        reading.await.unwrap();
    }

    #[tokio::test]
    async fn leaving_hands_over_only_the_rest_of_a_half_written_frame() {
        let (tx, rx, _socket, _client) = channel_to_client(8).await;
        let big: &'static str = "y".repeat(8 << 20).leak();
        tx.try_send(text(big)).unwrap();
        tx.try_send(text("dropped with the membership")).unwrap();
        tx.flush();
        let rest = rx.close().expect("the big frame went out in part");
        assert_eq!(rest.frames.len(), 1);
        assert!(rest.written > 0);
        assert_eq!(tx.try_send(text("late")), Err(SendError::Closed));

        let (tx, rx, _socket, _client) = channel_to_client(8).await;
        tx.try_send(text("whole")).unwrap();
        tx.flush();
        assert!(rx.close().is_none(), "a frame written whole leaves no rest");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_keeps_what_it_has() {
        let (tx, mut rx, _socket, _client) = channel_to_client(2).await;
        rx.claim();
        tx.try_send(text("a")).unwrap();
        tx.try_send(text("b")).unwrap();
        assert_eq!(tx.try_send(text("c")), Err(SendError::Full));
        assert_eq!(rx.recv_all().await.unwrap().frames.len(), 2);
        tx.try_send(text("d")).unwrap();
    }

    #[tokio::test]
    async fn a_members_way_in_is_not_counted_against_its_queue() {
        let (tx, mut rx, _socket, _client) = channel_to_client(2).await;
        rx.claim();
        for _ in 0..10 {
            tx.try_send_entry(text("board, lock or replay")).unwrap();
        }
        let queued = tx.try_send(text("a")).unwrap();
        assert!(queued.half_full && !queued.first);
        tx.try_send(text("b")).unwrap();
        assert_eq!(tx.try_send(text("c")), Err(SendError::Full));
        assert_eq!(rx.recv_all().await.unwrap().frames.len(), 12);
        // Handed over: the queue counts from nothing again.
        tx.try_send(text("d")).unwrap();
        tx.try_send(text("e")).unwrap();
        assert_eq!(tx.try_send(text("f")), Err(SendError::Full));
    }

    #[tokio::test]
    async fn volatile_frames_stop_at_half_the_queue() {
        let (tx, mut rx, _socket, _client) = channel_to_client(4).await;
        rx.claim();
        tx.try_send_volatile(text("a")).unwrap();
        tx.try_send_volatile(text("b")).unwrap();
        assert_eq!(tx.try_send_volatile(text("c")), Err(SendError::Full));
        // Reliable frames still have room.
        tx.try_send(text("d")).unwrap();
        assert_eq!(rx.recv_all().await.unwrap().frames.len(), 3);
    }

    #[tokio::test]
    async fn the_last_sender_dropped_ends_the_inbox_after_the_queued_frames() {
        let (tx, mut rx, _socket, _client) = channel_to_client(4).await;
        rx.claim();
        let other = tx.clone();
        tx.try_send(text("a")).unwrap();
        drop(tx);
        other.try_send(text("b")).unwrap();
        drop(other);
        assert_eq!(rx.recv_all().await.unwrap().frames.len(), 2);
        assert!(rx.recv_all().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_inbox_closes_the_queue() {
        let (tx, rx, _socket, _client) = channel_to_client(4).await;
        drop(rx);
        assert_eq!(tx.try_send(text("a")), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn eviction_keeps_only_the_rest_of_the_frame_on_the_wire_and_wakes_the_connection() {
        let (tx, mut rx, _socket, _client) = channel_to_client(8).await;
        let big: &'static str = "e".repeat(8 << 20).leak();
        tx.try_send(text(big)).unwrap();
        tx.try_send(text("queued behind it")).unwrap();
        tx.flush();
        // The connection, busy writing, watches for the eviction.
        assert!(rx.evicted().now_or_never().is_none());
        let (evicted, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(10), rx.evicted()),
            async { tx.evict() }
        );
        evicted.expect("the connection was never told");
        assert_eq!(tx.try_send(text("late")), Err(SendError::Closed));
        let rest = rx.recv_all().await.unwrap();
        assert_eq!(names(&rest).len(), 1, "only the frame on the wire is left");
        assert!(rest.written > 0);
        assert!(rx.recv_all().await.is_none());

        // With no frame half on the wire, nothing at all is left.
        let (tx, mut rx, _socket, _client) = channel_to_client(8).await;
        rx.claim();
        tx.try_send(text("queued")).unwrap();
        tx.evict();
        assert!(rx.recv_all().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_connection_is_woken_when_the_socket_leaves_part_of_a_frame() {
        let (tx, mut rx, _socket, _client) = channel_to_client(4).await;
        let waiter = tokio::spawn(async move { rx.recv_all().await.map(|b| b.written) });
        tokio::task::yield_now().await;
        let big: &'static str = "z".repeat(8 << 20).leak();
        tokio::spawn(async move {
            tx.try_send(text(big)).unwrap();
            tx.flush();
        })
        .await
        .unwrap();
        let written = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the connection was never woken")
            .unwrap();
        assert!(written.is_some_and(|n| n > 0));
    }
}
