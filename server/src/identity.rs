//! Who a connection is: a unique id, a random readable name and colour, and
//! the signed resume token that lets another connection become it again:
//! after a drop, or taking over from a connection still open (the newest
//! connection with a valid token wins; see `room::Room::resume`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use protocol::{ClientId, Member};
use rand::seq::IndexedRandom;
use sha2::Sha256;

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "merry", "nimble", "proud", "quick", "quiet", "rapid", "shy", "silly", "sunny", "swift",
    "tidy", "witty", "zany", "bold", "cosy", "daring", "fuzzy", "lucky", "mellow", "noble",
];
const ANIMALS: &[&str] = &[
    "otter", "heron", "badger", "falcon", "lynx", "marten", "newt", "owl", "panda", "quail",
    "raven", "seal", "tiger", "walrus", "yak", "zebra", "bison", "crane", "dingo", "egret",
    "ferret", "gecko", "hare", "ibis", "koala", "lemur", "moose", "narwhal", "orca", "puffin",
];

/// Readable on white and distinct from each other (Sasha Trubetskoy's list).
const COLORS: &[&str] = &[
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
    "#800000", "#469990", "#000075", "#808000", "#bfa500", "#dc143c", "#008080", "#6a5acd",
];

/// A fresh identity. The colour cycles through [`COLORS`] by id, so members
/// who arrive together get distinct colours.
pub fn new_member(id: ClientId) -> Member {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).expect("non-empty");
    let animal = ANIMALS.choose(&mut rng).expect("non-empty");
    Member {
        id,
        name: format!("{adjective}-{animal}"),
        color: COLORS[(id.0 % COLORS.len() as u64) as usize].to_owned(),
    }
}

/// Signs and checks resume tokens: `base64(body ‖ mac)`, where the body is
/// `id ‖ generation ‖ boot` (big-endian u64s) then the name and the colour
/// (each a length byte and UTF-8) and `mac` is 16 bytes of HMAC-SHA256. The
/// key is kept in the store, so tokens stay valid across restarts; carrying
/// the identity lets a session outlive a crash that lost its seat.
pub struct TokenKey {
    secret: [u8; 32],
    /// The run signing now (the store's boot number), written into tokens.
    boot: u64,
}

/// What a valid token claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaim {
    pub member: Member,
    /// How many times the session had been resumed when the token was
    /// signed. It does not limit the token: any token of a session takes
    /// it, however often it was used.
    pub generation: u64,
    /// The run that signed it.
    pub boot: u64,
}

const MAC_LEN: usize = 16;
/// `id`, `generation` and `boot`.
const FIXED_LEN: usize = 24;
/// Longest name or colour a token carries, in bytes (one length byte).
const MAX_FIELD: usize = u8::MAX as usize;

impl TokenKey {
    pub fn new(secret: [u8; 32], boot: u64) -> TokenKey {
        TokenKey { secret, boot }
    }

    fn mac(&self, body: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length works");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        full[..MAC_LEN].try_into().expect("32 > 16")
    }

    /// A token for `member` at seat `generation`, signed by this run.
    /// The run signing now: a token with another `boot` is a previous
    /// run's.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    pub fn sign(&self, member: &Member, generation: u64) -> String {
        let mut bytes = Vec::with_capacity(FIXED_LEN + 32 + MAC_LEN);
        bytes.extend_from_slice(&member.id.0.to_be_bytes());
        bytes.extend_from_slice(&generation.to_be_bytes());
        bytes.extend_from_slice(&self.boot.to_be_bytes());
        for field in [&member.name, &member.color] {
            let field = cut(field, MAX_FIELD);
            bytes.push(field.len() as u8);
            bytes.extend_from_slice(field.as_bytes());
        }
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claim of a token this key signed; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<TokenClaim> {
        if token.len() > (FIXED_LEN + 2 * (1 + MAX_FIELD) + MAC_LEN).div_ceil(3) * 4 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        let (body, mac) = bytes.split_at_checked(bytes.len().checked_sub(MAC_LEN)?)?;
        let expected = self.mac(body);
        // Constant-time comparison.
        if mac
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            != 0
        {
            return None;
        }
        let (fixed, mut rest) = body.split_at_checked(FIXED_LEN)?;
        let number = |i: usize| u64::from_be_bytes(fixed[i..i + 8].try_into().expect("8 bytes"));
        let mut field = || {
            let (&len, tail) = rest.split_first()?;
            let (text, tail) = tail.split_at_checked(len as usize)?;
            rest = tail;
            String::from_utf8(text.to_vec()).ok()
        };
        let (name, color) = (field()?, field()?);
        if !rest.is_empty() {
            return None;
        }
        Some(TokenClaim {
            member: Member {
                id: ClientId(number(0)),
                name,
                color,
            },
            generation: number(8),
            boot: number(16),
        })
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The sessions of a run that crashed. Their seats went with it (only a
/// clean stop writes seats), but a token that run signed still proves who
/// its bearer was: for one resume window from this start (as long as the
/// seat would have been held), the first resume presenting it takes that
/// identity back, once, so ids stay unique within this process.
pub struct CrashedRun {
    boot: u64,
    until: Instant,
    /// Ids taken back so far: at most one per session of the crashed run.
    taken: Mutex<HashSet<ClientId>>,
}

impl CrashedRun {
    /// The run before this one (`boot` is this run's number), which did
    /// not stop cleanly; its sessions may come back for `resume_window`.
    pub fn new(boot: u64, resume_window: Duration) -> CrashedRun {
        CrashedRun {
            boot: boot.wrapping_sub(1),
            until: Instant::now() + resume_window,
            taken: Mutex::new(HashSet::new()),
        }
    }

    /// The identity `claim` carries, if the crashed run signed it, the
    /// window is open and no one has taken it back yet.
    pub fn take_back(&self, claim: &TokenClaim) -> Option<Member> {
        if claim.boot != self.boot {
            return None;
        }
        // Each use is a single insert or clear, so poison is moot.
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if Instant::now() >= self.until {
            // Nothing can be taken back any more: let the set go.
            *taken = HashSet::new();
            return None;
        }
        taken.insert(claim.member.id).then(|| claim.member.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_have_no_spaces() {
        let m = new_member(ClientId(3));
        assert!(!m.name.contains(' '));
        assert!(m.color.starts_with('#'));
    }

    fn member(id: u64) -> Member {
        Member {
            id: ClientId(id),
            name: "brave-otter".into(),
            color: "#e6194b".into(),
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_unchanged() {
        let key = TokenKey::new([7; 32], 5);
        let token = key.sign(&member(42), 3);
        let claim = TokenClaim {
            member: member(42),
            generation: 3,
            boot: 5,
        };
        assert_eq!(key.verify(&token), Some(claim));
        assert_eq!(TokenKey::new([8; 32], 5).verify(&token), None);
        let mut forged = token.clone().into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.verify(std::str::from_utf8(&forged).unwrap()), None);
        assert_eq!(key.verify(&token[..token.len() - 4]), None);
        assert_eq!(key.verify("not a token"), None);
        assert_eq!(key.verify(""), None);
        assert_eq!(key.verify(&"A".repeat(100_000)), None);
    }

    #[test]
    fn a_crashed_runs_identity_is_taken_back_once_and_only_from_that_run() {
        let crashed = CrashedRun::new(6, Duration::from_secs(60));
        let of_run = |boot| TokenKey::new([7; 32], boot);
        let claim = |boot| {
            of_run(boot)
                .verify(&of_run(boot).sign(&member(42), 0))
                .unwrap()
        };
        assert_eq!(crashed.take_back(&claim(4)), None, "an older run's");
        assert_eq!(crashed.take_back(&claim(6)), None, "this run's own");
        assert_eq!(crashed.take_back(&claim(5)), Some(member(42)));
        assert_eq!(crashed.take_back(&claim(5)), None, "taken already");
        let closed = CrashedRun::new(6, Duration::ZERO);
        assert_eq!(closed.take_back(&claim(5)), None, "the window is over");
    }
}
