//! Who may open a socket and who may create a room: the limits that keep
//! one client (or one address) from exhausting the server or growing its
//! store. Checked at the edge, before anything is held for the client:
//! the accept loop takes a [`Admission::accept`] slot per TCP connection
//! and, once it knows the peer, an [`HttpPermit`] for the address's
//! connections not (yet) upgraded; the upgrade takes a
//! [`ConnectionPermit`] per WebSocket, and a join of a room that does not
//! exist yet a token from the address's room-creation bucket. So every
//! TCP connection is counted against its address, as a WebSocket or as
//! plain HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// TCP connections accepted beyond `--max-connections` for plain HTTP
/// (pages, assets, the API) and for upgrades that are about to be refused
/// with a 503: they are answered instead of waiting in the kernel's backlog.
pub const HTTP_HEADROOM: usize = 256;

/// Open files kept free for the store, logs and the runtime when
/// `--max-connections` is derived from the open-file limit.
pub const RESERVED_FILES: u64 = 256;

/// The address a limit is counted against: an IPv4 address, or the /64
/// an IPv6 host gets (a host can pick any address in it at will).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip {
            IpAddr::V4(v4) => AddressKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressKey(IpAddr::V6(prefix.into()))
                }
            },
        }
    }

    /// The address's bytes in hex, with its family (`v4-7f000001`): what
    /// it is known by in a store key, never a client's own spelling.
    pub fn hex(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => format!("v4-{:08x}", u32::from(v4)),
            IpAddr::V6(v6) => format!("v6-{:032x}", u128::from(v6)),
        }
    }

    /// The address as 16 bytes (an IPv4 address mapped into IPv6), so
    /// it has one fixed-size form.
    pub fn octets(&self) -> [u8; 16] {
        match self.0 {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Why a WebSocket upgrade (or, for [`Refusal::AddressFull`], a plain
/// HTTP connection) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` WebSockets are open: HTTP 503.
    ServerFull,
    /// This address has `--max-connections-per-ip` open: HTTP 429.
    AddressFull,
}

impl Refusal {
    /// The `Retry-After` a refused client is given, in seconds.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Refusal::ServerFull => 5,
            Refusal::AddressFull => 10,
        }
    }
}

pub struct Admission {
    max_connections: usize,
    max_per_address: usize,
    /// TCP connections one address may hold that are not WebSockets
    /// (`--max-http-connections-per-ip`).
    max_http_per_address: usize,
    /// Open WebSockets per address and in all, and connections not upgraded
    /// per address; an address leaves the map when its last connection
    /// closes, so the map holds at most as many entries as the accept slots.
    open: Mutex<Open>,
    /// Bounds the TCP connections held at once (WebSockets and HTTP), so
    /// the process never runs out of file descriptors: past it the accept
    /// loop waits and new connections queue in the kernel's backlog.
    sockets: Arc<Semaphore>,
    /// New rooms per address per minute (GCRA; burst = the per-minute
    /// number). Keys of addresses that have refilled are dropped by
    /// [`Admission::forget_idle`].
    new_rooms: DefaultKeyedRateLimiter<AddressKey>,
}

#[derive(Default)]
struct Open {
    /// WebSockets in all.
    total: usize,
    by_address: HashMap<AddressKey, PerAddress>,
}

/// What one address holds.
#[derive(Default)]
struct PerAddress {
    websockets: usize,
    /// TCP connections not upgraded: page and API requests, and upgrades
    /// not answered yet.
    http: usize,
}

/// One open WebSocket, counted until dropped.
pub struct ConnectionPermit {
    admission: Arc<Admission>,
    address: AddressKey,
}

/// One TCP connection not upgraded (yet), counted against its address
/// until dropped: its HTTP connection ends, or it became a WebSocket,
/// which a [`ConnectionPermit`] counts from then on.
pub struct HttpPermit {
    admission: Arc<Admission>,
    address: AddressKey,
}

/// One accepted TCP connection; dropping it frees the slot.
pub type SocketSlot = OwnedSemaphorePermit;

/// What an admitted WebSocket holds for its whole life (kept inside its
/// connection, 40 bytes): its counts are given back when it is dropped.
pub struct Admitted {
    permit: ConnectionPermit,
    _slot: SocketSlot,
}

impl Admitted {
    pub fn new(permit: ConnectionPermit, slot: SocketSlot) -> Admitted {
        Admitted {
            permit,
            _slot: slot,
        }
    }

    /// The address the connection is counted against.
    pub fn address(&self) -> AddressKey {
        self.permit.address
    }

    /// One admitted connection of its own small server, for unit tests.
    #[cfg(test)]
    pub async fn for_tests() -> Admitted {
        let admission = Admission::new(1, 1, 1, 100);
        let slot = admission.accept().await;
        let address = AddressKey::of(std::net::Ipv4Addr::LOCALHOST.into());
        Admitted::new(admission.connect(address).expect("one is free"), slot)
    }
}

impl Admission {
    pub fn new(
        max_connections: usize,
        max_per_address: usize,
        max_http_per_address: usize,
        new_rooms_per_minute: u32,
    ) -> Arc<Admission> {
        let per_minute = NonZeroU32::new(new_rooms_per_minute).unwrap_or(NonZeroU32::MIN);
        Arc::new(Admission {
            max_connections,
            max_per_address,
            max_http_per_address,
            open: Mutex::new(Open::default()),
            sockets: Arc::new(Semaphore::new(
                max_connections.saturating_add(HTTP_HEADROOM),
            )),
            new_rooms: RateLimiter::keyed(Quota::per_minute(per_minute)),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // Each use is one consistent update: poison is moot.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free slot for one more TCP connection.
    pub async fn accept(&self) -> SocketSlot {
        self.sockets
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Counts one more WebSocket for `address`, or says why not.
    pub fn connect(self: &Arc<Self>, address: AddressKey) -> Result<ConnectionPermit, Refusal> {
        let mut open = self.open();
        if open.total >= self.max_connections {
            return Err(Refusal::ServerFull);
        }
        let mine = open.by_address.entry(address).or_default();
        if mine.websockets >= self.max_per_address {
            return Err(Refusal::AddressFull);
        }
        mine.websockets += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            admission: self.clone(),
            address,
        })
    }

    /// Counts one more TCP connection that is not a WebSocket for
    /// `address`, or `None` when the address holds
    /// `--max-http-connections-per-ip` of them already.
    pub fn open_http(self: &Arc<Self>, address: AddressKey) -> Option<HttpPermit> {
        let mut open = self.open();
        let mine = open.by_address.entry(address).or_default();
        if mine.http >= self.max_http_per_address {
            if mine.websockets == 0 && mine.http == 0 {
                open.by_address.remove(&address);
            }
            return None;
        }
        mine.http += 1;
        Some(HttpPermit {
            admission: self.clone(),
            address,
        })
    }

    /// Takes one off `address`'s count with `which`, and forgets an
    /// address that holds nothing any more.
    fn release(&self, address: AddressKey, which: fn(&mut PerAddress) -> &mut usize) {
        let mut open = self.open();
        if let Some(mine) = open.by_address.get_mut(&address) {
            *which(mine) -= 1;
            if mine.websockets == 0 && mine.http == 0 {
                open.by_address.remove(&address);
            }
        }
    }

    /// Takes one room creation from `address`'s bucket, or says how long
    /// until the next one is allowed.
    pub fn create_room(&self, address: AddressKey) -> Result<(), Duration> {
        self.new_rooms.check_key(&address).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Drops the room-creation state of addresses whose bucket is full again
    /// (they are as if never seen), so the map stays as small as the set of
    /// recently creating addresses.
    pub fn forget_idle(&self) {
        self.new_rooms.retain_recent();
        self.new_rooms.shrink_to_fit();
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.admission.open().total -= 1;
        self.admission.release(self.address, |a| &mut a.websockets);
    }
}

impl Drop for HttpPermit {
    fn drop(&mut self) {
        self.admission.release(self.address, |a| &mut a.http);
    }
}

/// `--max-connections` when not given: the open-file limit (raised to its
/// hard maximum first) less [`HTTP_HEADROOM`] and [`RESERVED_FILES`], so
/// that connections are refused with a 503 before the process could run
/// out of file descriptors.
pub fn default_max_connections() -> usize {
    let files = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    files
        .saturating_sub(HTTP_HEADROOM as u64 + RESERVED_FILES)
        .max(16) as usize
}

/// `--max-connections-per-ip` when not given: a sixteenth of the
/// connections, so at least sixteen addresses are needed to fill the
/// server, while an office or a school behind one NAT still fits hundreds.
pub fn default_max_per_address(max_connections: usize) -> usize {
    (max_connections / 16).max(8)
}

/// `--max-http-connections-per-ip` when not given: as many as the address
/// may hold WebSockets (each of which starts as one; a browser loading the
/// page opens about six), but never more than a quarter of all accept
/// slots, so one address, upgraded or not, can never take them all, even
/// when `--max-connections-per-ip` was raised for a load generator or a
/// reverse proxy.
pub fn default_max_http_per_address(max_connections: usize, max_per_address: usize) -> usize {
    let slots = max_connections.saturating_add(HTTP_HEADROOM);
    max_per_address.min(slots / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> AddressKey {
        AddressKey::of(s.parse().unwrap())
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        assert_eq!(v4("2001:db8:1:2::1"), v4("2001:db8:1:2:ffff::9"));
        assert_ne!(v4("2001:db8:1:2::1"), v4("2001:db8:1:3::1"));
        assert_eq!(v4("::ffff:10.0.0.1"), v4("10.0.0.1"));
    }

    #[test]
    fn an_address_is_keyed_by_its_bytes_whatever_its_spelling() {
        assert_eq!(v4("127.0.0.1").hex(), "v4-7f000001");
        assert_eq!(v4("::ffff:127.0.0.1").hex(), "v4-7f000001");
        assert_eq!(
            v4("2001:db8:1:2::1").hex(),
            v4("2001:0db8:0001:0002:ffff::9").hex()
        );
        assert_eq!(
            v4("2001:db8::1").hex(),
            "v6-20010db8000000000000000000000000"
        );
    }

    #[test]
    fn permits_count_per_address_and_in_all_and_are_given_back_on_drop() {
        let admission = Admission::new(3, 2, 2, 10);
        let a1 = admission.connect(v4("10.0.0.1")).unwrap();
        let _a2 = admission.connect(v4("10.0.0.1")).unwrap();
        assert_eq!(
            admission.connect(v4("10.0.0.1")).err(),
            Some(Refusal::AddressFull)
        );
        let _b1 = admission.connect(v4("10.0.0.2")).unwrap();
        assert_eq!(
            admission.connect(v4("10.0.0.3")).err(),
            Some(Refusal::ServerFull)
        );
        drop(a1);
        assert!(admission.connect(v4("10.0.0.3")).is_ok());
        assert_eq!(admission.open().by_address.len(), 2);
    }

    #[test]
    fn connections_not_upgraded_are_capped_per_address_apart_from_websockets() {
        let admission = Admission::new(10, 1, 2, 10);
        let _ws = admission.connect(v4("10.0.0.1")).unwrap();
        let h1 = admission.open_http(v4("10.0.0.1")).unwrap();
        let _h2 = admission.open_http(v4("10.0.0.1")).unwrap();
        assert!(admission.open_http(v4("10.0.0.1")).is_none());
        assert!(admission.open_http(v4("10.0.0.2")).is_some());
        drop(h1);
        let _h3 = admission.open_http(v4("10.0.0.1")).unwrap();
        drop((_ws, _h2, _h3));
        assert!(admission.open().by_address.is_empty());
    }

    #[test]
    fn one_address_never_holds_every_accept_slot_by_default() {
        let http = default_max_http_per_address(16, default_max_per_address(16));
        assert_eq!(http, 8);
        let opened_up = default_max_http_per_address(1000, 1_000_000);
        assert_eq!(opened_up, (1000 + HTTP_HEADROOM) / 4);
    }

    #[test]
    fn room_creation_is_limited_per_address() {
        let admission = Admission::new(10, 10, 10, 2);
        assert!(admission.create_room(v4("10.0.0.1")).is_ok());
        assert!(admission.create_room(v4("10.0.0.1")).is_ok());
        let wait = admission.create_room(v4("10.0.0.1")).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(admission.create_room(v4("10.0.0.2")).is_ok());
    }
}
