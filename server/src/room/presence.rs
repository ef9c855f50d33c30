//! Telling a room who is in it. A member gets the whole list once, when it
//! joins or resumes (`presence`), then only what changed (`presenceDiff`).
//! Changes are gathered and told at the end of a turn, at most once per
//! [`PRESENCE_TICK`], so a hundred members dropping or coming back at once
//! make a few small diffs, not a hundred lists. Neither frame is numbered or
//! kept in history: a resumer is not replayed lists it missed, it gets the
//! current one.

use std::time::{Duration, Instant};

use protocol::{ClientId, PresenceDiff, PresenceEntry, ServerMessage};

use super::{Room, Seat};

/// A room tells presence at most this often. A change in a quiet room is
/// told at the end of its turn; one that follows within the tick waits for
/// it, together with whatever else changed meanwhile. In a storm of resumes
/// (5,000 members in rooms of 100 back within a second) this turns about a
/// hundred diffs per room and second into ten.
const PRESENCE_TICK: Duration = Duration::from_millis(100);

/// What the room's present members have been told about its members.
///
/// Every present member's view is `told`, except those in `owed_list`,
/// which get the whole list when presence is next told: each diff goes on the
/// same reliable queue as everything else, so applying them in order keeps
/// a view exact (a member whose queue is full is let go and resumes).
#[derive(Default)]
pub(super) struct Told {
    /// The list as the present members know it, most recently active first.
    told: Vec<PresenceEntry>,
    /// Members changed since `told` (or a list is owed): tell when due.
    changed: bool,
    /// Joined or resumed since: the whole list, not a diff.
    owed_list: Vec<ClientId>,
    /// When the room last told presence.
    last_told: Option<Instant>,
}

impl Told {
    /// When the changes not told yet are due, if there are any.
    pub(super) fn due(&self) -> Option<Instant> {
        self.changed.then(|| {
            self.last_told
                .map_or_else(Instant::now, |t| t + PRESENCE_TICK)
        })
    }

    /// Whether there is presence to tell at the end of this turn.
    pub(super) fn pending(&self) -> bool {
        self.due().is_some_and(|at| at <= Instant::now())
    }
}

impl Room {
    /// Membership or activity order changed: the room is told when this
    /// turn ends, or at the next tick.
    pub(super) fn presence(&mut self) {
        self.presence_due = None;
        self.presence_told.changed = true;
    }

    /// `id` joined or resumed: it gets the whole list when presence is next
    /// told, and the others a diff.
    pub(super) fn presence_for(&mut self, id: ClientId) {
        if !self.presence_told.owed_list.contains(&id) {
            self.presence_told.owed_list.push(id);
        }
        self.presence();
    }

    /// Tells what changed, if it is due: one diff to the members who knew
    /// the list, the whole list to those who just came. Letting a slow
    /// member go is itself a change, told in the next round.
    pub(super) fn tell_presence(&mut self) {
        if !self.presence_told.pending() {
            return;
        }
        self.presence_told.last_told = Some(Instant::now());
        while self.presence_told.changed {
            self.presence_told.changed = false;
            let now: Vec<PresenceEntry> = self.seats.iter().map(Seat::presence_entry).collect();
            let owed = std::mem::take(&mut self.presence_told.owed_list);
            if let Some(data) = PresenceDiff::between(&self.presence_told.told, &now) {
                self.broadcast_unnumbered(&owed, ServerMessage::PresenceDiff { data });
            }
            if !owed.is_empty() {
                // Serialised once for all who came this turn (a storm of
                // resumes brings a hundred to a room at once).
                let data = now.clone();
                let text = self.encode(ServerMessage::Presence { data }, false);
                for id in owed {
                    // Part of its way in: not counted against its queue.
                    if self.queue_for(id, text.clone(), true) {
                        self.ctx.metrics.messages_out("presence", 1);
                    }
                }
            }
            self.presence_told.told = now;
        }
    }
}
