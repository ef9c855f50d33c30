//! Who a connection is: a unique id, a random readable name and colour, and
//! the signed resume token that lets another connection become it again:
//! after a drop, or taking over from a connection still open (the newest
//! connection with a valid token wins; see `room::Room::resume`).

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

/// Signs and checks resume tokens: `base64(id ‖ generation ‖ mac)`. The key
/// is kept in the store, so tokens stay valid across restarts.
pub struct TokenKey {
    secret: [u8; 32],
}

/// What a valid token claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaim {
    pub id: ClientId,
    /// How many times the session had been resumed when the token was
    /// signed. It does not limit the token: any token of a session takes
    /// it, however often it was used.
    pub generation: u64,
}

impl TokenKey {
    pub fn new(secret: [u8; 32]) -> TokenKey {
        TokenKey { secret }
    }

    fn mac(&self, body: &[u8]) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length works");
        mac.update(body);
        let full = mac.finalize().into_bytes();
        full[..16].try_into().expect("32 > 16")
    }

    pub fn sign(&self, claim: TokenClaim) -> String {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(&claim.id.0.to_be_bytes());
        bytes.extend_from_slice(&claim.generation.to_be_bytes());
        let mac = self.mac(&bytes);
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The claim of a token this key signed; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<TokenClaim> {
        let bytes = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        let (body, mac) = bytes.split_at(16);
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
        Some(TokenClaim {
            id: ClientId(u64::from_be_bytes(body[..8].try_into().ok()?)),
            generation: u64::from_be_bytes(body[8..].try_into().ok()?),
        })
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

    #[test]
    fn tokens_verify_only_with_their_key_and_unchanged() {
        let key = TokenKey::new([7; 32]);
        let claim = TokenClaim {
            id: ClientId(42),
            generation: 3,
        };
        let token = key.sign(claim);
        assert_eq!(key.verify(&token), Some(claim));
        assert_eq!(TokenKey::new([8; 32]).verify(&token), None);
        let mut forged = token.into_bytes();
        forged[3] = if forged[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(key.verify(std::str::from_utf8(&forged).unwrap()), None);
        assert_eq!(key.verify("not a token"), None);
    }
}
