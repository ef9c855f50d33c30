//! The hub maps room names to running rooms: a join creates the room, the
//! room removes itself when empty, or when it could not start (cluster
//! mode: Redis unreachable) or stopped on a fault, so that the next join
//! starts it again. It is touched on join and leave, never per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::{Member, RoomName};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::room::{
    self, Answer, Call, Command, JoinReply, Outbox, Resume, RoomContext, RoomHandle,
};

pub struct Hub {
    rooms: Mutex<HashMap<RoomName, RoomHandle>>,
    ctx: Arc<RoomContext>,
    /// Every room task, so shutdown can wait for their final flush.
    pub tracker: TaskTracker,
}

/// What joining got.
pub enum Joined {
    /// In, as this identity (a resumed session's, or the connection's own).
    Yes(RoomHandle, Member),
    Full(Vec<String>),
}

impl Hub {
    pub fn new(ctx: Arc<RoomContext>) -> Arc<Hub> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            ctx,
            tracker: TaskTracker::new(),
        })
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<RoomName, RoomHandle>> {
        // A panic while holding this lock cannot leave the map half-changed
        // (each use is a single insert, get or remove), so poison is moot.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins `room`, starting it if needed. Admission is decided by the room
    /// actor alone, one join at a time, so two racers cannot both take the
    /// last seat.
    pub async fn join(
        self: &Arc<Self>,
        name: &RoomName,
        (member, access): (Member, crate::auth::Access),
        conn: u64,
        outbox: Outbox,
        resume: Option<Resume>,
    ) -> Option<Joined> {
        for _ in 0..16 {
            let handle = {
                let mut rooms = self.rooms();
                // A room whose task ended without leaving the map (it
                // failed to start, or stopped on a fault) is started again:
                // no past fault refuses a join for good.
                if rooms.get(name).is_some_and(|h| h.tx.is_closed()) {
                    rooms.remove(name);
                }
                rooms
                    .entry(name.clone())
                    .or_insert_with(|| room::spawn(name.clone(), self.ctx.clone(), self.clone()))
                    .clone()
            };
            let (reply, answer) = oneshot::channel();
            let command = Command::Join {
                member: member.clone(),
                access: access.clone(),
                conn,
                outbox: outbox.clone(),
                resume: resume.clone(),
                reply,
            };
            if handle.tx.send(command).await.is_err() {
                continue; // the room just ended; start a fresh one
            }
            match answer.await {
                Ok(JoinReply::Joined(member)) => return Some(Joined::Yes(handle, member)),
                Ok(JoinReply::Full) => return Some(Joined::Full(self.suggestions_now(name).await)),
                // The room could not start (it is gone from the map, the
                // next join starts it again): this one is told to retry
                // rather than wait for Redis here.
                Err(_) if handle.tx.is_closed() => return None,
                Err(_) => continue,
            }
        }
        None
    }

    /// Hands a call of the app's backend (`api/`) to `name`, starting the
    /// room if needed (it loads its record first), and waits for the
    /// answer. `None`: the room did not answer (in cluster mode, its log did
    /// not take the call; the outcome is unknown).
    pub async fn call(self: &Arc<Self>, name: &RoomName, call: Call) -> Option<Answer> {
        for _ in 0..16 {
            let handle = {
                let mut rooms = self.rooms();
                rooms
                    .entry(name.clone())
                    .or_insert_with(|| room::spawn(name.clone(), self.ctx.clone(), self.clone()))
                    .clone()
            };
            let (reply, answer) = oneshot::channel();
            let command = Command::Api {
                call: call.clone(),
                reply,
            };
            if handle.tx.send(command).await.is_err() {
                continue; // the room just ended; start a fresh one
            }
            return answer.await.ok();
        }
        None
    }

    /// Called by a room with no members: removes it unless a command is
    /// already waiting for it (then the room carries on).
    pub fn dispose_if_idle(&self, name: &RoomName, rx: &mpsc::Receiver<Command>) -> bool {
        let mut rooms = self.rooms();
        if !rx.is_empty() {
            return false;
        }
        rooms.remove(name);
        true
    }

    /// Called by a room whose task ends without serving (it could not
    /// start: Redis unreachable, its snapshot unreadable): removes its
    /// handle if the room behind it is gone (not a newer one started
    /// meanwhile), so it is neither counted nor kept, and the next join
    /// starts it anew.
    pub fn forget_closed(&self, name: &RoomName) {
        let mut rooms = self.rooms();
        if rooms.get(name).is_some_and(|h| h.tx.is_closed()) {
            rooms.remove(name);
        }
    }

    /// `roomFull`'s suggestions: in cluster mode (hook) rooms with no seat
    /// taken anywhere in the cluster (present or held; the cluster's list
    /// of rooms, `cluster/rooms.rs`), else [`Hub::suggestions`].
    async fn suggestions_now(&self, name: &RoomName) -> Vec<String> {
        let Some(cluster) = self.cluster() else {
            return self.suggestions(name);
        };
        match cluster.rooms().await {
            Ok(rooms) => {
                let taken: std::collections::HashSet<String> = rooms
                    .into_iter()
                    .filter(|r| r.seats > 0)
                    .map(|r| r.room)
                    .collect();
                crate::rules::suggestions(name, |r| taken.contains(r.as_str()))
            }
            Err(e) => {
                tracing::warn!("listing the cluster's rooms for suggestions: {e}");
                self.suggestions(name)
            }
        }
    }

    /// `roomFull`'s suggestions for `name`: rooms with no seat taken,
    /// present or held (see [`crate::rules::suggestions`]).
    pub fn suggestions(&self, name: &RoomName) -> Vec<String> {
        let rooms = self.rooms();
        crate::rules::suggestions(name, |r| {
            rooms
                .get(r)
                .is_some_and(|h| h.seats_taken.load(std::sync::atomic::Ordering::Relaxed) > 0)
        })
    }

    /// Active rooms with their member counts, busiest first.
    pub fn list(&self) -> Vec<(String, usize)> {
        let mut list: Vec<(String, usize)> = self
            .rooms()
            .iter()
            .map(|(name, h)| {
                (
                    name.to_string(),
                    h.members.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        list
    }

    /// The cluster this server is a node of (`--redis-url`).
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.ctx.cluster.as_ref()
    }

    /// Starts `name` if it is not running, with no one joining: for rooms
    /// that hold seats from before a restart (see `main`).
    pub fn open(self: &Arc<Self>, name: &RoomName) {
        self.rooms()
            .entry(name.clone())
            .or_insert_with(|| room::spawn(name.clone(), self.ctx.clone(), self.clone()));
    }

    /// Whether the previous run stopped cleanly (its held seats carry on).
    pub fn previous_run_clean(&self) -> bool {
        self.ctx.previous_run_clean
    }

    /// Whether `name` is running in memory (its record must not be swept).
    pub fn is_open(&self, name: &RoomName) -> bool {
        self.rooms().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.rooms().len()
    }
}
