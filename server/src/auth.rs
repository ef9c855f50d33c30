//! Who may join which room. The app's own backend says who a user is and
//! which rooms they may enter, in a token (a JWT) the client presents in
//! `newClient`; this module verifies it with the operator's keys
//! (`--auth-secret`, `--auth-public-key`, `--auth-jwks`) through the
//! `jsonwebtoken` crate, and decides a join: the room's grant (a full
//! member or a viewer), or `forbidden`, or `unauthorized`. With no key
//! configured every room is public (the board as it always was); with one,
//! only the `--public-rooms` are.
//!
//! Each key verifies only its own algorithm family, chosen by the key, never
//! by the token: a token whose header names another algorithm (`none`,
//! HS256 signed with an RSA public key as the secret) finds no key.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use protocol::{ErrorCode, Role, RoomName};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// The longest `sub` (the app's user id) a token may carry: it is shown
/// to every member of a room, and travels in every seat.
pub const MAX_USER: usize = 64;
/// The longest `name` a token may give a member.
pub const MAX_NAME: usize = 64;
/// The shortest HMAC secret that is not warned about: HS256's hash size.
const MIN_SECRET: usize = 32;
/// How often the JWKS file is looked at for a change (SIGHUP: at once).
const JWKS_POLL: Duration = Duration::from_secs(1);

/// Who a member is to the app and what it may do in its room: part of its
/// seat, carried in the join across nodes and kept in snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The token's `sub`; `None` for a member of a public room that came
    /// without a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Role::is_member")]
    pub role: Role,
}

/// A join the keys let in.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub access: Access,
    /// The name and colour the token gives, if any (else random).
    pub name: Option<String>,
    pub color: Option<String>,
    /// When the token expires (`exp`, seconds since the epoch); `None`
    /// for a join without a token.
    pub expires: Option<u64>,
}

/// Why a join or a refresh was refused; becomes an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The token did not verify (or has expired).
    #[error("{0}")]
    Unauthorized(String),
    /// The token (or its absence) does not grant the room.
    #[error("{0}")]
    Forbidden(String),
}

impl Refusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Unauthorized(_) => ErrorCode::Unauthorized,
            Refusal::Forbidden(_) => ErrorCode::Forbidden,
        }
    }
}

/// A room name, or a prefix of names (`team-42-*`; `*` alone is every
/// room): the form of `--public-rooms` and of a token's grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        Pattern(text.to_ascii_lowercase())
    }

    /// How well this names `room`: `None` if not at all; an exact name
    /// outranks any prefix, and a longer prefix a shorter one.
    fn rank(&self, room: &RoomName) -> Option<usize> {
        match self.0.strip_suffix('*') {
            Some(prefix) => room.as_str().starts_with(prefix).then_some(prefix.len()),
            None => (self.0 == room.as_str()).then_some(usize::MAX),
        }
    }
}

impl std::str::FromStr for Pattern {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Pattern, Self::Err> {
        Ok(Pattern::new(s))
    }
}

/// A grant in the token's `rooms`: `"name"` (a full member), or
/// `{"room": "name", "role": "viewer"}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum GrantClaim {
    Room(String),
    WithRole {
        room: String,
        #[serde(default)]
        role: Role,
    },
}

/// The claims attractio reads; `exp` and `sub` are required (checked by
/// the crate too), `nbf` is checked by the crate, `iat` here.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    color: Option<String>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    rooms: Vec<GrantClaim>,
}

/// A verified token.
struct Verified {
    claims: Claims,
}

impl Verified {
    /// The role the token grants in `room`: by its best-ranked grant (an
    /// exact name before any prefix, a longer prefix before a shorter;
    /// at equal rank, a member before a viewer).
    fn grant(&self, room: &RoomName) -> Option<Role> {
        self.claims
            .rooms
            .iter()
            .filter_map(|g| {
                let (pattern, role) = match g {
                    GrantClaim::Room(r) => (r, Role::Member),
                    GrantClaim::WithRole { room, role } => (room, *role),
                };
                Some((Pattern::new(pattern).rank(room)?, role.is_member(), role))
            })
            .max_by_key(|(rank, member, _)| (*rank, *member))
            .map(|(_, _, role)| role)
    }
}

/// One verification key and the algorithms it may verify (one family).
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

/// The keys of the JWKS file, by `kid`, and the file's bytes they were
/// read from (to see a change).
#[derive(Default)]
struct Jwks {
    keys: HashMap<String, Arc<Key>>,
    read: Vec<u8>,
}

/// The operator's keys and rules; shared by every connection.
pub struct Auth {
    /// `--auth-secret` and `--auth-public-key`: tried by the token's
    /// algorithm when it names no key of the JWKS.
    fixed: Vec<Arc<Key>>,
    jwks_path: Option<PathBuf>,
    jwks: RwLock<Jwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    public_rooms: Vec<Pattern>,
}

fn unauthorized(message: impl Into<String>) -> Refusal {
    Refusal::Unauthorized(message.into())
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Auth {
    /// Reads the keys the flags name. A key that cannot be read stops the
    /// server: running open by mistake would be worse.
    pub fn from_config(config: &Config) -> anyhow::Result<Auth> {
        use anyhow::Context;
        let mut fixed = Vec::new();
        if let Some(secret) = config.auth_secret.as_deref() {
            // An empty variable would otherwise leave every room open.
            anyhow::ensure!(!secret.is_empty(), "--auth-secret is empty");
            if secret.len() < MIN_SECRET {
                tracing::warn!(
                    "--auth-secret is {} bytes; HS256 wants at least {MIN_SECRET} (RFC 7518 §3.2)",
                    secret.len()
                );
            }
            fixed.push(Arc::new(Key {
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                algorithms: family(Algorithm::HS256),
            }));
        }
        if let Some(path) = &config.auth_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --auth-public-key {}", path.display()))?;
            fixed.push(Arc::new(public_key(&pem).with_context(|| {
                format!(
                    "--auth-public-key {}: not an RSA, EC or Ed25519 public key in PEM",
                    path.display()
                )
            })?));
        }
        let auth = Auth {
            fixed,
            jwks_path: config.auth_jwks.clone(),
            jwks: RwLock::new(Jwks::default()),
            issuer: config.auth_issuer.clone(),
            audience: config.auth_audience.clone(),
            leeway: config.auth_leeway,
            public_rooms: config.public_rooms.clone(),
        };
        if let Some(path) = &auth.jwks_path {
            let text = std::fs::read(path)
                .with_context(|| format!("reading --auth-jwks {}", path.display()))?;
            auth.load_jwks(text)
                .with_context(|| format!("--auth-jwks {}", path.display()))?;
        }
        Ok(auth)
    }

    /// Whether tokens are checked at all (any key configured).
    pub fn enabled(&self) -> bool {
        !self.fixed.is_empty() || self.jwks_path.is_some()
    }

    /// Decides a join of `room` with `token`: the seat's access, or why not.
    /// Without keys a token is ignored and every room is public.
    pub fn admit(&self, room: &RoomName, token: Option<&str>) -> Result<Pass, Refusal> {
        if !self.enabled() {
            return Ok(Pass::default());
        }
        let public = self.public_rooms.iter().any(|p| p.rank(room).is_some());
        let Some(token) = token else {
            return match public {
                true => Ok(Pass::default()),
                false => Err(Refusal::Forbidden(format!(
                    "room {room} needs a token that grants it (you are still where you were)"
                ))),
            };
        };
        let verified = self.verify(token)?;
        let role = match verified.grant(room) {
            Some(role) => role,
            None if public => Role::Member,
            None => {
                return Err(Refusal::Forbidden(format!(
                    "your token does not grant room {room} (you are still where you were)"
                )))
            }
        };
        let claims = verified.claims;
        Ok(Pass {
            access: Access {
                user: Some(claims.sub),
                role,
            },
            name: claims.name,
            color: claims.color,
            expires: Some(claims.exp),
        })
    }

    /// Checks a token's signature, times, issuer and audience, and the
    /// claims attractio reads.
    fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("not a token attractio accepts: {e}")))?;
        let key = self.key_for(header.kid.as_deref(), header.alg)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| unauthorized(format!("token refused: {e}")))?;
        let claims = data.claims;
        if claims
            .iat
            .is_some_and(|iat| iat > now_secs() + self.leeway.as_secs())
        {
            return Err(unauthorized("token refused: issued in the future (iat)"));
        }
        if claims.sub.is_empty() || claims.sub.chars().count() > MAX_USER {
            return Err(unauthorized(format!(
                "token refused: sub must be 1 to {MAX_USER} characters"
            )));
        }
        if claims.name.as_ref().is_some_and(|n| {
            n.is_empty() || n.chars().count() > MAX_NAME || n.chars().any(char::is_control)
        }) {
            return Err(unauthorized(format!(
                "token refused: name must be 1 to {MAX_NAME} characters, none a control character"
            )));
        }
        if claims.color.as_deref().is_some_and(|c| !is_css_hex(c)) {
            return Err(unauthorized("token refused: color must be #rrggbb"));
        }
        Ok(Verified { claims })
    }

    /// The key for a token: the JWKS key its `kid` names, else the fixed
    /// key of its algorithm's family.
    fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, Refusal> {
        if let Some(kid) = kid {
            let jwks = self.jwks.read().unwrap_or_else(|e| e.into_inner());
            if let Some(key) = jwks.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        self.fixed
            .iter()
            .find(|k| k.algorithms.contains(&alg))
            .cloned()
            .ok_or_else(|| match kid {
                Some(kid) => unauthorized(format!("token refused: unknown key {kid:?}")),
                None => unauthorized(format!("token refused: no key verifies {alg:?}")),
            })
    }

    /// Checks a `refreshToken`: a valid token of the same user that grants
    /// `room` in the same role. Returns its expiry.
    pub fn refresh(&self, token: &str, room: &RoomName, access: &Access) -> Result<u64, Refusal> {
        let verified = self.verify(token)?;
        if access.user.as_deref() != Some(verified.claims.sub.as_str()) {
            return Err(Refusal::Forbidden(
                "a refresh must be for the user that joined".into(),
            ));
        }
        match verified.grant(room) {
            Some(role) if role == access.role => Ok(verified.claims.exp),
            Some(_) => Err(Refusal::Forbidden(format!(
                "the new token grants room {room} in another role: join again with it"
            ))),
            None if access.role.is_member()
                && self.public_rooms.iter().any(|p| p.rank(room).is_some()) =>
            {
                Ok(verified.claims.exp)
            }
            None => Err(Refusal::Forbidden(format!(
                "the new token does not grant room {room}"
            ))),
        }
    }

    /// Replaces the JWKS keys with those of `text`, if it changed and
    /// reads; a file that does not read keeps the keys before it.
    fn load_jwks(&self, text: Vec<u8>) -> anyhow::Result<bool> {
        if self.jwks.read().unwrap_or_else(|e| e.into_inner()).read == text {
            return Ok(false);
        }
        let set: JwkSet = serde_json::from_slice(&text)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                anyhow::bail!("every key needs a kid");
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let decoding = DecodingKey::from_jwk(jwk)?;
            let algorithms = match &jwk.common.key_algorithm {
                // A key that names its algorithm verifies only that one.
                Some(alg) => match alg.to_string().parse::<Algorithm>() {
                    Ok(alg) => vec![alg],
                    // An encryption algorithm (RSA-OAEP…): not for tokens.
                    Err(_) => continue,
                },
                None => match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => family(Algorithm::RS256),
                    AlgorithmParameters::EllipticCurve(p) => match p.curve {
                        EllipticCurve::P256 => vec![Algorithm::ES256],
                        EllipticCurve::P384 => vec![Algorithm::ES384],
                        _ => anyhow::bail!("key {kid}: unsupported curve"),
                    },
                    AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                    AlgorithmParameters::OctetKey(_) => family(Algorithm::HS256),
                },
            };
            keys.insert(
                kid.clone(),
                Arc::new(Key {
                    decoding,
                    algorithms,
                }),
            );
        }
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = Jwks { keys, read: text };
        Ok(true)
    }

    /// Reads the JWKS file again: now and then, and at once on SIGHUP,
    /// so keys rotate without a restart. Runs until `shutdown`.
    pub async fn watch_jwks(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let Some(path) = self.jwks_path.clone() else {
            return;
        };
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(JWKS_POLL) => {}
                Some(()) = async { hangup.as_mut()?.recv().await } => {}
                _ = shutdown.cancelled() => return,
            }
            match tokio::fs::read(&path).await {
                Ok(text) => match self.load_jwks(text) {
                    Ok(true) => tracing::info!(path = %path.display(), "JWKS read again"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(path = %path.display(), "JWKS kept as it was: {e}"),
                },
                Err(e) => tracing::error!(path = %path.display(), "JWKS kept as it was: {e}"),
            }
        }
    }
}

/// The algorithms of `alg`'s family.
fn family(alg: Algorithm) -> Vec<Algorithm> {
    use jsonwebtoken::Algorithm::*;
    let all = [
        HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    let key_family = |a: Algorithm| match a {
        HS256 | HS384 | HS512 => 0,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => 1,
        ES256 | ES384 => 2,
        EdDSA => 3,
    };
    all.into_iter()
        .filter(|a| key_family(*a) == key_family(alg))
        .collect()
}

/// A PEM public key, its family inferred from the key itself.
fn public_key(pem: &[u8]) -> anyhow::Result<Key> {
    if let Ok(decoding) = DecodingKey::from_rsa_pem(pem) {
        return Ok(Key {
            decoding,
            algorithms: family(Algorithm::RS256),
        });
    }
    if let Ok(decoding) = DecodingKey::from_ec_pem(pem) {
        return Ok(Key {
            decoding,
            algorithms: family(Algorithm::ES256),
        });
    }
    let decoding = DecodingKey::from_ed_pem(pem)?;
    Ok(Key {
        decoding,
        algorithms: vec![Algorithm::EdDSA],
    })
}

fn is_css_hex(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    #[test]
    fn an_exact_grant_outranks_a_prefix_and_a_longer_prefix_a_shorter() {
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "sub": "u", "exp": 1,
            "rooms": ["team-*", {"room": "team-42-*", "role": "viewer"}, "team-42-notes"]
        }))
        .unwrap();
        let v = Verified { claims };
        assert_eq!(v.grant(&room("team-1")), Some(Role::Member));
        assert_eq!(v.grant(&room("team-42-board")), Some(Role::Viewer));
        assert_eq!(v.grant(&room("team-42-notes")), Some(Role::Member));
        assert_eq!(v.grant(&room("other")), None);
    }

    #[test]
    fn a_pem_key_verifies_only_its_own_family() {
        assert!(family(Algorithm::ES256).contains(&Algorithm::ES384));
        assert!(!family(Algorithm::RS256).contains(&Algorithm::HS256));
        assert_eq!(family(Algorithm::EdDSA), vec![Algorithm::EdDSA]);
        assert!(public_key(b"not a key").is_err());
    }
}
