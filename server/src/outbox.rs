//! The queue of frames from a room to one connection: bounded, never
//! waits, and costs nothing while empty.
//!
//! tokio's `mpsc` would do, but it allocates a block of slots per channel
//! up front and wakes the receiver per frame. Here the room pushes under a
//! short lock and wakes the connection only when the queue goes from empty
//! to non-empty; the connection takes everything queued in one go (the
//! queue's storage goes with it, so an idle connection holds none).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use crate::ws::Text;
use futures_util::task::AtomicWaker;

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
    capacity: usize,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Text>,
    /// No sender left (the room let go) or the receiver is gone.
    closed: bool,
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

/// A queue holding at most `capacity` frames.
pub fn channel(capacity: usize) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        waker: AtomicWaker::new(),
        senders: AtomicUsize::new(1),
        capacity: capacity.max(1),
    });
    (Outbox(shared.clone()), Inbox(shared))
}

impl Outbox {
    /// Queues `frame` unless the queue is full or closed. Never waits.
    pub fn try_send(&self, frame: Text) -> Result<(), SendError> {
        self.push(frame, self.0.capacity)
    }

    /// Like [`Outbox::try_send`] for frames that may be missed (`moving`):
    /// refused once the queue is half full, so a lagging reader skips them
    /// instead of filling up with them.
    pub fn try_send_volatile(&self, frame: Text) -> Result<(), SendError> {
        self.push(frame, self.0.capacity / 2)
    }

    fn push(&self, frame: Text, limit: usize) -> Result<(), SendError> {
        let was_empty = {
            let mut q = self.0.lock();
            if q.closed {
                return Err(SendError::Closed);
            }
            if q.frames.len() >= limit {
                return Err(SendError::Full);
            }
            q.frames.push_back(frame);
            q.frames.len() == 1
        };
        if was_empty {
            self.0.waker.wake();
        }
        Ok(())
    }
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
    /// once the room let go and nothing is left.
    pub async fn recv_all(&mut self) -> Option<VecDeque<Text>> {
        std::future::poll_fn(|cx| self.poll_recv_all(cx)).await
    }

    fn poll_recv_all(&mut self, cx: &mut Context<'_>) -> Poll<Option<VecDeque<Text>>> {
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

    fn take(&self) -> Option<Option<VecDeque<Text>>> {
        let mut q = self.0.lock();
        if !q.frames.is_empty() {
            return Some(Some(std::mem::take(&mut q.frames)));
        }
        q.closed.then_some(None)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.closed = true;
        q.frames.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Text {
        Text::from_static(s)
    }

    #[tokio::test]
    async fn frames_arrive_in_order_in_one_batch() {
        let (tx, mut rx) = channel(8);
        for s in ["a", "b", "c"] {
            tx.try_send(text(s)).unwrap();
        }
        let batch: Vec<_> = rx.recv_all().await.unwrap().into_iter().collect();
        assert_eq!(batch, [text("a"), text("b"), text("c")]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_keeps_what_it_has() {
        let (tx, mut rx) = channel(2);
        tx.try_send(text("a")).unwrap();
        tx.try_send(text("b")).unwrap();
        assert_eq!(tx.try_send(text("c")), Err(SendError::Full));
        assert_eq!(rx.recv_all().await.unwrap().len(), 2);
        tx.try_send(text("d")).unwrap();
    }

    #[tokio::test]
    async fn volatile_frames_stop_at_half_the_queue() {
        let (tx, mut rx) = channel(4);
        tx.try_send_volatile(text("a")).unwrap();
        tx.try_send_volatile(text("b")).unwrap();
        assert_eq!(tx.try_send_volatile(text("c")), Err(SendError::Full));
        // Reliable frames still have room.
        tx.try_send(text("d")).unwrap();
        assert_eq!(rx.recv_all().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn the_last_sender_dropped_ends_the_inbox_after_the_queued_frames() {
        let (tx, mut rx) = channel(4);
        let other = tx.clone();
        tx.try_send(text("a")).unwrap();
        drop(tx);
        other.try_send(text("b")).unwrap();
        drop(other);
        assert_eq!(rx.recv_all().await.unwrap().len(), 2);
        assert!(rx.recv_all().await.is_none());
    }

    #[tokio::test]
    async fn a_dropped_inbox_closes_the_queue() {
        let (tx, rx) = channel(4);
        drop(rx);
        assert_eq!(tx.try_send(text("a")), Err(SendError::Closed));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = channel(4);
        let waiter = tokio::spawn(async move { rx.recv_all().await.map(|b| b.len()) });
        tokio::task::yield_now().await;
        tokio::spawn(async move { tx.try_send(text("late")).unwrap() })
            .await
            .unwrap();
        assert_eq!(waiter.await.unwrap(), Some(1));
    }
}
