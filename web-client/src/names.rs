//! Fresh room names like `sleepy-walrus-4821`, and the small random source
//! the pure code takes so tests can pin it.

use protocol::RoomName;

/// A tiny deterministic generator (xorshift64*), seeded from the browser's
/// `Math.random` in the app and from constants in tests. Not for secrets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // xorshift is stuck at zero; any other seed works.
        Rng(seed.max(1))
    }

    /// Seeds from a float in [0, 1), e.g. `Math.random()`.
    pub fn from_unit(f: f64) -> Rng {
        Rng::new((f * u64::MAX as f64) as u64 ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const ADJECTIVES: [&str; 24] = [
    "amber", "brave", "calm", "dizzy", "eager", "fuzzy", "gentle", "happy", "icy", "jolly", "kind",
    "lucky", "merry", "nimble", "odd", "proud", "quiet", "rosy", "sleepy", "tidy", "velvet",
    "witty", "young", "zesty",
];
const NOUNS: [&str; 24] = [
    "otter", "badger", "comet", "dune", "ember", "fjord", "gecko", "heron", "iris", "jackal",
    "koala", "lemur", "magpie", "newt", "owl", "panda", "quail", "raven", "sparrow", "tulip",
    "urchin", "walrus", "yak", "zebra",
];

/// A random room name: adjective-noun-NNNN.
pub fn random_room_name(rng: &mut Rng) -> RoomName {
    let name = format!(
        "{}-{}-{:04}",
        ADJECTIVES[rng.below(ADJECTIVES.len())],
        NOUNS[rng.below(NOUNS.len())],
        rng.below(10_000)
    );
    RoomName::new(&name).expect("generated names use only [a-z0-9-]")
}

/// A short random token of `[a-z0-9]`, for word ids that do not collide
/// with other members' words.
pub fn random_token(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_valid_and_vary() {
        let mut rng = Rng::new(42);
        let a = random_room_name(&mut rng);
        let b = random_room_name(&mut rng);
        assert_ne!(a, b);
        for name in [&a, &b] {
            let parts: Vec<_> = name.as_str().split('-').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert_eq!(parts[2].len(), 4);
        }
    }

    #[test]
    fn unit_floats_stay_in_range() {
        let mut rng = Rng::from_unit(0.0);
        for _ in 0..1000 {
            let f = rng.unit();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
