//! A room's recent frames, numbered, so a client that dropped can be sent
//! exactly what it missed. Bounded by count and by age.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ws::Text;
use protocol::ClientId;

use crate::store::StoredFrame;

struct Entry {
    seq: u64,
    /// Who caused it: they did not receive it live, so it is not replayed
    /// to them. `None` for the server's own frames.
    sender: Option<ClientId>,
    /// A private message: only its recipient gets it.
    to: Option<ClientId>,
    at_ms: u64,
    text: Text,
}

pub struct History {
    entries: VecDeque<Entry>,
    max_len: usize,
    max_age: Duration,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl History {
    pub fn new(max_len: usize, max_age: Duration) -> History {
        History {
            entries: VecDeque::new(),
            max_len,
            max_age,
        }
    }

    pub fn push(&mut self, seq: u64, sender: Option<ClientId>, to: Option<ClientId>, text: Text) {
        if self.max_len == 0 {
            return;
        }
        let at_ms = now_ms();
        self.entries.push_back(Entry {
            seq,
            sender,
            to,
            at_ms,
            text,
        });
        while self.entries.len() > self.max_len {
            self.entries.pop_front();
        }
        let oldest = at_ms.saturating_sub(self.max_age.as_millis() as u64);
        while self.entries.front().is_some_and(|e| e.at_ms < oldest) {
            self.entries.pop_front();
        }
    }

    /// Every frame after `last_seq` meant for `id`, in order, if history
    /// still reaches back that far (`current` is the room's latest seq).
    pub fn after(&self, last_seq: u64, current: u64, id: ClientId) -> Option<Vec<Text>> {
        if last_seq > current {
            return None;
        }
        if last_seq < current {
            let first = self.entries.front()?.seq;
            if first > last_seq + 1 {
                return None;
            }
        }
        Some(
            self.entries
                .iter()
                .filter(|e| e.seq > last_seq)
                .filter(|e| match e.to {
                    Some(to) => to == id,
                    None => e.sender != Some(id),
                })
                .map(|e| e.text.clone())
                .collect(),
        )
    }

    pub fn to_stored(&self) -> Vec<StoredFrame> {
        self.entries
            .iter()
            .map(|e| StoredFrame {
                seq: e.seq,
                sender: e.sender.map_or(0, |c| c.0),
                to: e.to.map(|c| c.0),
                at_ms: e.at_ms,
                text: e.text.to_string(),
            })
            .collect()
    }

    pub fn restore(&mut self, frames: Vec<StoredFrame>) {
        self.entries = frames
            .into_iter()
            .map(|f| Entry {
                seq: f.seq,
                sender: (f.sender != 0).then_some(ClientId(f.sender)),
                to: f.to.map(ClientId),
                at_ms: f.at_ms,
                text: Text::from(f.text),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> History {
        let mut h = History::new(3, Duration::from_secs(60));
        for seq in 1..=5 {
            let sender = if seq == 4 { Some(ClientId(9)) } else { None };
            h.push(seq, sender, None, Text::from(format!("f{seq}")));
        }
        h
    }

    #[test]
    fn replays_what_a_client_missed_but_not_its_own_frames() {
        let h = filled();
        let got = h.after(2, 5, ClientId(9)).unwrap();
        assert_eq!(got, vec![Text::from("f3"), Text::from("f5")]);
        assert_eq!(h.after(5, 5, ClientId(9)).unwrap(), Vec::<Text>::new());
    }

    #[test]
    fn says_so_when_history_no_longer_reaches_back() {
        let h = filled();
        assert!(h.after(1, 5, ClientId(1)).is_none(), "frame 2 is gone");
        assert!(
            h.after(6, 5, ClientId(1)).is_none(),
            "a future seq is another epoch"
        );
    }

    #[test]
    fn private_frames_go_only_to_their_recipient() {
        let mut h = History::new(10, Duration::from_secs(60));
        h.push(1, Some(ClientId(1)), Some(ClientId(2)), Text::from("pm"));
        assert_eq!(h.after(0, 1, ClientId(2)).unwrap().len(), 1);
        assert_eq!(h.after(0, 1, ClientId(3)).unwrap().len(), 0);
    }
}
