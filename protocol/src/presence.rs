//! Presence as changes. A member gets its room's whole list once, on join
//! or resume (`presence`), and from then on only what changed
//! (`presenceDiff`), as Phoenix Presence and Centrifugo do: an away or a
//! return in a room of 100 is a few dozen bytes to each member, not 7 KB.
//!
//! [`PresenceDiff::between`] is how the server finds what changed since it
//! last told the room; [`PresenceDiff::apply`] is how a client brings its
//! list up to date. Applying `between(old, new)` to `old` gives `new`
//! exactly, order and `away` flags included.

use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::ClientId;
use crate::server::PresenceEntry;

/// The `data` of `presenceDiff`: how the room's member list changed since
/// the last `presence` or `presenceDiff` this client got. Applied in field
/// order: leaves, joins, away, back, order. Empty fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceDiff {
    /// Members who gave their seat up (left, or their resume window ended).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaves: Vec<ClientId>,
    /// New members, appended to the end of the list in this order (an id
    /// already listed is replaced where it stands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joins: Vec<PresenceEntry>,
    /// Members whose connection dropped; their seats are held for a resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub away: Vec<ClientId>,
    /// Away members who are back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub back: Vec<ClientId>,
    /// Every member's id, most recently active first: sent only when the
    /// order is not the old one with leaves taken out and joins appended
    /// (someone became the most recently active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<ClientId>>,
}

impl PresenceDiff {
    /// What turns the list `told` into `now`; `None` if they are equal. A
    /// member whose name, colour, user or role changed under the same id is
    /// a leave and a join. Both lists are most recently active first, ids unique.
    pub fn between(told: &[PresenceEntry], now: &[PresenceEntry]) -> Option<PresenceDiff> {
        let old: HashMap<ClientId, &PresenceEntry> =
            told.iter().map(|e| (e.member.id, e)).collect();
        let new: HashMap<ClientId, &PresenceEntry> = now.iter().map(|e| (e.member.id, e)).collect();
        let stays = |e: &PresenceEntry, other: &HashMap<ClientId, &PresenceEntry>| {
            other
                .get(&e.member.id)
                .is_some_and(|o| o.member == e.member && o.user == e.user && o.role == e.role)
        };
        let mut diff = PresenceDiff {
            leaves: told
                .iter()
                .filter(|e| !stays(e, &new))
                .map(|e| e.member.id)
                .collect(),
            joins: now.iter().filter(|e| !stays(e, &old)).cloned().collect(),
            ..PresenceDiff::default()
        };
        for e in now.iter().filter(|e| stays(e, &old)) {
            match (old[&e.member.id].away, e.away) {
                (false, true) => diff.away.push(e.member.id),
                (true, false) => diff.back.push(e.member.id),
                _ => {}
            }
        }
        let left: HashSet<ClientId> = diff.leaves.iter().copied().collect();
        let expected = told
            .iter()
            .map(|e| e.member.id)
            .filter(|id| !left.contains(id))
            .chain(diff.joins.iter().map(|e| e.member.id));
        if !expected.eq(now.iter().map(|e| e.member.id)) {
            diff.order = Some(now.iter().map(|e| e.member.id).collect());
        }
        (!diff.is_empty()).then_some(diff)
    }

    /// Whether this changes nothing.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
            && self.joins.is_empty()
            && self.away.is_empty()
            && self.back.is_empty()
            && self.order.is_none()
    }

    /// Brings `list` up to date. Ids it does not know are ignored (they
    /// cannot happen between a server and a client that got every frame),
    /// and so are ids `order` leaves out: they keep their place at the end.
    pub fn apply(&self, list: &mut Vec<PresenceEntry>) {
        let left: HashSet<ClientId> = self.leaves.iter().copied().collect();
        list.retain(|e| !left.contains(&e.member.id));
        for join in &self.joins {
            match list.iter_mut().find(|e| e.member.id == join.member.id) {
                Some(e) => *e = join.clone(),
                None => list.push(join.clone()),
            }
        }
        for (ids, away) in [(&self.away, true), (&self.back, false)] {
            for id in ids {
                if let Some(e) = list.iter_mut().find(|e| e.member.id == *id) {
                    e.away = away;
                }
            }
        }
        if let Some(order) = &self.order {
            let rank: HashMap<ClientId, usize> =
                order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
            list.sort_by_key(|e| rank.get(&e.member.id).copied().unwrap_or(usize::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Member;

    fn entry(id: u64, away: bool) -> PresenceEntry {
        PresenceEntry {
            member: Member {
                id: ClientId(id),
                name: format!("m{id}"),
                color: "#aabbcc".into(),
            },
            away,
            user: None,
            role: crate::Role::Member,
        }
    }

    fn list(spec: &[(u64, bool)]) -> Vec<PresenceEntry> {
        spec.iter().map(|&(id, away)| entry(id, away)).collect()
    }

    fn ids(v: &[u64]) -> Vec<ClientId> {
        v.iter().copied().map(ClientId).collect()
    }

    /// `between` then `apply` must land exactly on `now`.
    fn round_trip(told: &[PresenceEntry], now: &[PresenceEntry]) -> Option<PresenceDiff> {
        let diff = PresenceDiff::between(told, now);
        let mut view = told.to_vec();
        if let Some(d) = &diff {
            d.apply(&mut view);
        }
        assert_eq!(view, now, "applying {diff:?}");
        diff
    }

    #[test]
    fn an_unchanged_list_needs_no_diff() {
        let l = list(&[(1, false), (2, true)]);
        assert_eq!(round_trip(&l, &l), None);
    }

    #[test]
    fn an_away_and_a_return_name_only_the_member() {
        let told = list(&[(1, false), (2, false), (3, true)]);
        let now = list(&[(1, false), (2, true), (3, false)]);
        let diff = round_trip(&told, &now).unwrap();
        assert_eq!(
            diff,
            PresenceDiff {
                away: ids(&[2]),
                back: ids(&[3]),
                ..PresenceDiff::default()
            }
        );
    }

    #[test]
    fn joins_are_appended_and_leaves_removed_without_an_order() {
        let told = list(&[(1, false), (2, false), (3, false)]);
        let now = list(&[(1, false), (3, false), (4, false)]);
        let diff = round_trip(&told, &now).unwrap();
        assert_eq!(diff.leaves, ids(&[2]));
        assert_eq!(diff.joins, list(&[(4, false)]));
        assert_eq!(diff.order, None);
    }

    #[test]
    fn a_new_most_recently_active_member_sends_the_order() {
        let told = list(&[(1, false), (2, false), (3, false)]);
        let now = list(&[(3, false), (1, false), (2, false)]);
        let diff = round_trip(&told, &now).unwrap();
        assert_eq!(diff.order, Some(ids(&[3, 1, 2])));
        assert!(diff.joins.is_empty() && diff.leaves.is_empty());
    }

    #[test]
    fn the_same_id_with_another_name_is_a_leave_and_a_join() {
        let told = list(&[(1, false), (2, false)]);
        let mut now = told.clone();
        now[1].member.name = "renamed".into();
        let diff = round_trip(&told, &now).unwrap();
        assert_eq!(diff.leaves, ids(&[2]));
        assert_eq!(diff.joins, vec![now[1].clone()]);
    }

    #[test]
    fn a_storm_of_changes_at_once_still_lands_exactly() {
        let told = list(&[(1, false), (2, true), (3, false), (4, false), (5, true)]);
        let now = list(&[(6, false), (4, true), (1, false), (2, false), (7, true)]);
        round_trip(&told, &now).unwrap();
        round_trip(&now, &told).unwrap();
        round_trip(&[], &now).unwrap();
        round_trip(&now, &[]).unwrap();
    }

    #[test]
    fn a_diff_has_compact_json() {
        let diff = PresenceDiff {
            away: ids(&[2]),
            ..PresenceDiff::default()
        };
        assert_eq!(serde_json::to_string(&diff).unwrap(), r#"{"away":[2]}"#);
        let back: PresenceDiff = serde_json::from_str(r#"{"away":[2]}"#).unwrap();
        assert_eq!(back, diff);
    }
}
