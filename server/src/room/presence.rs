//! Telling a room who is in it. A member gets the whole list once, when it
//! joins or resumes (`presence`), then only what changed (`presenceDiff`).
//! Changes are gathered during the room's turn and told once at its end, so
//! a hundred members dropping at once make one small diff, not a hundred
//! lists. Neither frame is numbered or kept in history: a resumer is not
//! replayed lists it missed, it gets the current one.

use protocol::{ClientId, PresenceDiff, PresenceEntry, ServerMessage};

use super::Room;

/// What the room's present members have been told about its members.
///
/// Every present member's view is `told`, except those in `owed_list`,
/// which get the whole list when the turn ends: each diff goes on the
/// same reliable queue as everything else, so applying them in order keeps
/// a view exact (a member whose queue is full is let go and resumes).
#[derive(Default)]
pub(super) struct Told {
    /// The list as the present members know it, most recently active first.
    told: Vec<PresenceEntry>,
    /// Members changed since `told` (or a list is owed): tell at turn end.
    changed: bool,
    /// Joined or resumed this turn: the whole list, not a diff.
    owed_list: Vec<ClientId>,
}

impl Told {
    /// Whether the turn has presence to tell when it ends.
    pub(super) fn pending(&self) -> bool {
        self.changed
    }
}

impl Room {
    /// Membership or activity order changed: the room is told when this
    /// turn ends.
    pub(super) fn presence(&mut self) {
        self.presence_due = None;
        self.presence_told.changed = true;
    }

    /// `id` joined or resumed: it gets the whole list when this turn ends,
    /// and the others a diff.
    pub(super) fn presence_for(&mut self, id: ClientId) {
        self.presence_told.owed_list.push(id);
        self.presence();
    }

    /// Tells what changed this turn: one diff to the members who knew the
    /// list, the whole list to those who just came. Letting a slow member go
    /// is itself a change, told in the next round.
    pub(super) fn tell_presence(&mut self) {
        while self.presence_told.changed {
            self.presence_told.changed = false;
            let now: Vec<PresenceEntry> = self
                .seats
                .iter()
                .map(|s| PresenceEntry {
                    member: s.member.clone(),
                    away: s.outbox.is_none(),
                })
                .collect();
            let owed = std::mem::take(&mut self.presence_told.owed_list);
            if let Some(data) = PresenceDiff::between(&self.presence_told.told, &now) {
                self.broadcast_unnumbered(&owed, ServerMessage::PresenceDiff { data });
            }
            for id in owed {
                let data = now.clone();
                self.send_to(id, ServerMessage::Presence { data }, false);
            }
            self.presence_told.told = now;
        }
    }
}
