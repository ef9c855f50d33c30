//! Persistence of room snapshots behind the [`RoomStore`] trait; sled is
//! the backend today. Calls are blocking: the room actor runs them on the
//! blocking pool, never on an async worker.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use protocol::{Board, RoomName};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::admission::AddressKey;

/// Version written into every record; a record with another version (or
/// unreadable bytes) is reported as [`StoreError::Corrupt`].
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(#[from] sled::Error),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("record for room {room} is unreadable: {detail}")]
    Corrupt { room: String, detail: String },
}

/// A frame from a room's history, kept so dropped clients can catch up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFrame {
    pub seq: u64,
    /// Who caused it (not sent back to them on replay); 0 for the server.
    pub sender: u64,
    /// For a private message: its recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
    /// Milliseconds since the Unix epoch, for the resume window.
    pub at_ms: u64,
    pub text: String,
}

/// A session whose seat is held for resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    pub id: u64,
    pub name: String,
    pub color: String,
    /// The app's user and the seat's role (`auth::Access`); a snapshot
    /// written before tokens has none: an anonymous member.
    #[serde(default)]
    pub access: crate::auth::Access,
    /// Token generation: only the newest token of a session resumes it.
    pub generation: u64,
    /// Until when (ms since the Unix epoch) the seat is held.
    pub hold_until_ms: u64,
    /// The last `opId` applied from the session (`Seat::last_op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op: Option<u64>,
    /// The room's `seq` when the session joined (`Seat::joined`).
    #[serde(default)]
    pub joined_seq: u64,
}

/// What survives of a room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub board: Board,
    pub seq: u64,
    pub epoch: u64,
    /// Written by a graceful stop or a room's last leave: `seq` and
    /// `history` are complete. Periodic saves are not, so after a crash the
    /// room starts a new epoch.
    #[serde(default)]
    pub clean: bool,
    #[serde(default)]
    pub history: Vec<StoredFrame>,
    #[serde(default)]
    pub sessions: Vec<StoredSession>,
}

#[derive(Serialize, Deserialize)]
struct Record<S> {
    version: u32,
    #[serde(flatten)]
    snapshot: S,
}

/// How long a room an address created may go unstored before its
/// creation stops counting against the address: a room that closed
/// without a record (nobody changed its board) keeps nothing. The grace
/// covers the moment between the creation being counted and the room
/// opening.
pub const UNSTORED_CLAIM_GRACE_MS: u64 = 60_000;

/// Facts about this server instance that the store keeps across restarts.
pub struct Boot {
    /// Increments every start; client ids embed it so they are never reused.
    pub number: u64,
    /// Key that signs resume tokens, so tokens survive a restart.
    pub secret: [u8; 32],
    /// Whether the previous run ended with [`RoomStore::mark_clean_stop`].
    pub previous_run_clean: bool,
}

pub trait RoomStore: Send + Sync + 'static {
    fn load(&self, room: &RoomName) -> Result<Option<Snapshot>, StoreError>;
    /// Writes the snapshot durably (it survives `kill -9` once this returns).
    fn save(&self, room: &RoomName, snapshot: &Snapshot) -> Result<(), StoreError>;
    fn count(&self) -> Result<usize, StoreError>;
    /// Starts a run: the next boot sees it as unclean until
    /// [`RoomStore::mark_clean_stop`].
    fn boot(&self) -> Result<Boot, StoreError>;
    fn mark_clean_stop(&self) -> Result<(), StoreError>;
    /// Whether a record exists for `room` (without reading it).
    fn contains(&self, room: &RoomName) -> Result<bool, StoreError>;
    /// Deletes every room last loaded or saved before `before_ms` (ms since
    /// the Unix epoch) for which `keep` is false; returns how many went.
    /// A room touched while the sweep runs is kept.
    fn sweep(&self, before_ms: u64, keep: &dyn Fn(&str) -> bool) -> Result<usize, StoreError>;
    /// Bytes the store takes on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;
    /// Counts `room` as created by `creator`, unless `creator` already
    /// counts `max` rooms created and still stored (or open, or created
    /// within [`UNSTORED_CLAIM_GRACE_MS`]): returns whether it was counted.
    /// A room counts until the retention sweep deletes it, or a sweep finds
    /// it closed without a record. Per address, because each record is
    /// bounded (`--max-room-stored-bytes`) but the rooms are not: this
    /// bounds what one address makes the store keep to `max` ×
    /// `--max-room-stored-bytes` bytes (`--max-stored-rooms-per-ip`).
    fn claim(&self, room: &RoomName, creator: AddressKey, max: usize) -> Result<bool, StoreError>;
    /// Deletes the room's record (`DELETE /api/rooms/{room}`), durably:
    /// flushed before it returns, so a restart does not bring it back.
    fn remove(&self, room: &RoomName) -> Result<(), StoreError>;
    /// Rooms whose last record holds seats for a resume until after
    /// `now_ms`, so a restart can start them at once (a held seat counts
    /// for the cap and `roomFull`'s suggestions before anyone joins).
    fn rooms_holding_seats(&self, now_ms: u64) -> Result<Vec<String>, StoreError>;
}

pub struct SledStore {
    db: sled::Db,
    rooms: sled::Tree,
    /// Room name → when it was last loaded or saved (ms since the Unix
    /// epoch, big-endian), for the retention sweep. Its own tree, so a
    /// sweep reads 8 bytes a room instead of every record.
    touched: sled::Tree,
    /// Room name → until when (ms since the Unix epoch, big-endian) its
    /// last record holds a seat; only rooms that hold one.
    holding: sled::Tree,
    /// Creator ++ room name → when the room was created (ms since the Unix
    /// epoch, big-endian), for `--max-stored-rooms-per-ip`: an address's
    /// rooms are a prefix scan, so the count cannot drift from the rooms.
    /// The creator is [`Self::creator`], never the address itself.
    created: sled::Tree,
    /// Keys [`Self::creator`]'s digest, so the disk holds no address.
    address_key: [u8; 32],
    /// Makes a claim's count and insert one step.
    claiming: Mutex<()>,
}

/// Bytes of an address's digest in the `created` tree.
const CREATOR_LEN: usize = 16;

impl SledStore {
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(500))
            .open()?;
        let rooms = db.open_tree("rooms")?;
        let touched = db.open_tree("touched")?;
        let holding = db.open_tree("holding")?;
        let created = db.open_tree("created")?;
        let address_key = match db.get("address-key")? {
            Some(k) if k.len() == 32 => k.as_ref().try_into().expect("length checked"),
            _ => {
                let key: [u8; 32] = rand::random();
                db.insert("address-key", &key[..])?;
                key
            }
        };
        Ok(SledStore {
            db,
            rooms,
            touched,
            holding,
            created,
            address_key,
            claiming: Mutex::new(()),
        })
    }

    /// A fixed-size keyed digest of the address (an IPv4 address or an
    /// IPv6 /64): the same address always gives the same key, and the
    /// store never holds the address itself.
    fn creator(&self, address: AddressKey) -> [u8; CREATOR_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.address_key)
            .expect("HMAC takes a key of any length");
        mac.update(&address.octets());
        let digest = mac.finalize().into_bytes();
        digest[..CREATOR_LEN]
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }
}

impl RoomStore for SledStore {
    fn load(&self, room: &RoomName) -> Result<Option<Snapshot>, StoreError> {
        if !self.rooms.contains_key(room.as_str())? {
            return Ok(None);
        }
        // Touched before it is read: a sweep that saw the old time finds
        // it changed and keeps the room.
        self.touch(room)?;
        let Some(bytes) = self.rooms.get(room.as_str())? else {
            return Ok(None);
        };
        let corrupt = |detail: String| StoreError::Corrupt {
            room: room.to_string(),
            detail,
        };
        let record: Record<Snapshot> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if record.version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "unknown format version {}",
                record.version
            )));
        }
        Ok(Some(record.snapshot))
    }

    fn save(&self, room: &RoomName, snapshot: &Snapshot) -> Result<(), StoreError> {
        // Borrowed: a copy of the snapshot (its history) would only add to
        // the memory a save takes.
        let record = Record {
            version: FORMAT_VERSION,
            snapshot,
        };
        let bytes = serde_json::to_vec(&record).expect("a snapshot always serialises");
        self.touch(room)?;
        match snapshot.sessions.iter().map(|s| s.hold_until_ms).max() {
            Some(until) => self
                .holding
                .insert(room.as_str(), &until.to_be_bytes()[..])
                .map(drop)?,
            None => self.holding.remove(room.as_str()).map(drop)?,
        }
        self.rooms.insert(room.as_str(), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    fn count(&self) -> Result<usize, StoreError> {
        Ok(self.rooms.len())
    }

    fn boot(&self) -> Result<Boot, StoreError> {
        let number = self
            .db
            .update_and_fetch("boot", |old| {
                let n = old
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Some((n + 1).to_be_bytes().to_vec())
            })?
            .and_then(|b| b.as_ref().try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1);
        let secret = match self.db.get("secret")? {
            Some(s) if s.len() == 32 => s.as_ref().try_into().expect("length checked"),
            _ => {
                let secret: [u8; 32] = rand::random();
                self.db.insert("secret", &secret[..])?;
                secret
            }
        };
        let previous_run_clean = self.db.remove("clean-stop")?.is_some();
        self.db.flush()?;
        Ok(Boot {
            number,
            secret,
            previous_run_clean,
        })
    }

    fn mark_clean_stop(&self) -> Result<(), StoreError> {
        self.db.insert("clean-stop", &[1u8][..])?;
        self.db.flush()?;
        Ok(())
    }

    fn contains(&self, room: &RoomName) -> Result<bool, StoreError> {
        Ok(self.rooms.contains_key(room.as_str())?)
    }

    fn sweep(&self, before_ms: u64, keep: &dyn Fn(&str) -> bool) -> Result<usize, StoreError> {
        let mut deleted = HashSet::new();
        // A time whose room is gone (a load raced a sweep) goes too.
        for entry in self.touched.iter().keys() {
            let name = entry?;
            if !self.rooms.contains_key(&name)? {
                self.touched.remove(&name)?;
            }
        }
        for entry in self.rooms.iter().keys() {
            let name = entry?;
            let last = match self.touched.get(&name)? {
                Some(t) => t,
                // Stored before rooms were timed: its clock starts now.
                None => {
                    self.touched
                        .insert(&name, &crate::history::now_ms().to_be_bytes()[..])?;
                    continue;
                }
            };
            let at = last
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if at >= before_ms || keep(&String::from_utf8_lossy(&name)) {
                continue;
            }
            // Only if nobody touched it since we looked: a load or save in
            // between changes the time and the swap fails.
            if self
                .touched
                .compare_and_swap(&name, Some(last), None as Option<&[u8]>)?
                .is_ok()
            {
                self.rooms.remove(&name)?;
                deleted.insert(name);
            }
        }
        // A creation stops counting once its room is deleted, or closed
        // without a record and older than the grace.
        let unstored_before = crate::history::now_ms().saturating_sub(UNSTORED_CLAIM_GRACE_MS);
        for entry in self.created.iter() {
            let (key, at) = entry?;
            let Some(name) = key.get(CREATOR_LEN..) else {
                self.created.remove(&key)?;
                continue;
            };
            let at = at.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            let gone = deleted.contains(name) || at < unstored_before;
            if gone && !self.rooms.contains_key(name)? && !keep(&String::from_utf8_lossy(name)) {
                self.created.remove(&key)?;
            }
        }
        if !deleted.is_empty() {
            self.db.flush()?;
        }
        Ok(deleted.len())
    }

    fn claim(&self, room: &RoomName, creator: AddressKey, max: usize) -> Result<bool, StoreError> {
        let creator = self.creator(creator);
        let mut key = creator.to_vec();
        key.extend_from_slice(room.as_str().as_bytes());
        let _one_at_a_time = self.claiming.lock().unwrap_or_else(|p| p.into_inner());
        if !self.created.contains_key(&key)? {
            let counted = self.created.scan_prefix(creator).keys().take(max).count();
            if counted >= max {
                return Ok(false);
            }
        }
        let now = crate::history::now_ms().to_be_bytes();
        self.created.insert(key, &now[..])?;
        Ok(true)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    fn remove(&self, room: &RoomName) -> Result<(), StoreError> {
        self.rooms.remove(room.as_str())?;
        self.touched.remove(room.as_str())?;
        self.holding.remove(room.as_str())?;
        self.db.flush()?;
        Ok(())
    }

    fn rooms_holding_seats(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let mut rooms = Vec::new();
        for entry in self.holding.iter() {
            let (name, until) = entry?;
            let until = until
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if until > now_ms && self.rooms.contains_key(&name)? {
                rooms.push(String::from_utf8_lossy(&name).into_owned());
            } else {
                self.holding.remove(&name)?;
            }
        }
        Ok(rooms)
    }
}

impl SledStore {
    fn touch(&self, room: &RoomName) -> Result<(), StoreError> {
        let now = crate::history::now_ms().to_be_bytes();
        self.touched.insert(room.as_str(), &now[..])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> RoomName {
        RoomName::new(s).unwrap()
    }

    #[test]
    fn a_saved_snapshot_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let snap = Snapshot {
            seq: 7,
            epoch: 3,
            ..Snapshot::default()
        };
        store.save(&room("a"), &snap).unwrap();
        assert_eq!(store.load(&room("a")).unwrap(), Some(snap));
        assert_eq!(store.load(&room("b")).unwrap(), None);
        assert_eq!(store.count().unwrap(), 1);
    }

    #[test]
    fn unreadable_records_are_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.rooms.insert("bad", &b"\xff garbage"[..]).unwrap();
        store
            .rooms
            .insert(
                "future",
                &br#"{"version":99,"board":[],"seq":0,"epoch":0}"#[..],
            )
            .unwrap();
        assert!(matches!(
            store.load(&room("bad")),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            store.load(&room("future")),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_sweep_deletes_rooms_untouched_since_the_cutoff_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for name in ["old", "open", "fresh"] {
            store.save(&room(name), &Snapshot::default()).unwrap();
        }
        let cutoff = crate::history::now_ms() + 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Loading touches: "fresh" was opened after the cutoff.
        store.load(&room("fresh")).unwrap();
        let deleted = store.sweep(cutoff, &|name| name == "open").unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(store.load(&room("old")).unwrap(), None);
        assert!(store.contains(&room("open")).unwrap());
        assert!(store.contains(&room("fresh")).unwrap());
        // A record from before rooms were timed starts its clock at the
        // first sweep instead of going at once.
        store
            .rooms
            .insert(
                "legacy",
                serde_json::to_vec(&Record {
                    version: FORMAT_VERSION,
                    snapshot: Snapshot::default(),
                })
                .unwrap(),
            )
            .unwrap();
        assert_eq!(
            store
                .sweep(crate::history::now_ms() + 1, &|_| false)
                .unwrap(),
            2
        );
        assert!(store.contains(&room("legacy")).unwrap());
        assert!(!store.contains(&room("fresh")).unwrap());
    }

    #[test]
    fn an_address_counts_the_rooms_it_created_until_they_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let address = |s: &str| AddressKey::of(s.parse().unwrap());
        let a = address("10.0.0.1");
        for name in ["a1", "a2"] {
            assert!(store.claim(&room(name), a, 2).unwrap());
            store.save(&room(name), &Snapshot::default()).unwrap();
        }
        // Counting a room again is free; a third is not.
        assert!(store.claim(&room("a1"), a, 2).unwrap());
        assert!(!store.claim(&room("a3"), a, 2).unwrap());
        assert!(store.claim(&room("b1"), address("10.0.0.2"), 2).unwrap());
        // Keyed by a digest, never by the address.
        let raw = a.octets();
        assert!(store
            .created
            .iter()
            .keys()
            .all(|k| !k.unwrap().windows(raw.len()).any(|w| w == raw)));
        // Within the grace a room with no record still counts ("b1" has
        // none yet); a deleted room stops counting.
        let cutoff = crate::history::now_ms() + 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(store.sweep(cutoff, &|name| name == "a2").unwrap(), 1);
        assert!(store.claim(&room("a3"), a, 2).unwrap());
        assert!(!store.claim(&room("a4"), a, 2).unwrap());
        assert!(store.claim(&room("b2"), address("10.0.0.2"), 2).unwrap());
    }

    #[test]
    fn boot_numbers_increase_and_the_secret_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let store = SledStore::open(dir.path()).unwrap();
            (store.boot().unwrap(), store.boot().unwrap())
        };
        // sled's flusher thread may hold the lock a moment after the drop.
        let store = (0..50)
            .find_map(|_| {
                SledStore::open(dir.path())
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(100)))
                    .ok()
            })
            .expect("store reopens");
        let c = store.boot().unwrap();
        assert!(a.number < b.number && b.number < c.number);
        assert_eq!(a.secret, c.secret);
    }
}
