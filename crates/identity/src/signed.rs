//! `Signed<T, K>`: a body signed by a host, dispatch unit or user key, with a
//! timestamp and nonce so it can be checked for freshness and replay.
//!
//! Used for owner calls on a mailbox (signed by the user), location updates
//! (signed by the host holding the object) and name claims. Each use has its
//! own [`DomainTag`], bound into the signature, so a signature made for one
//! purpose can never be replayed as another.
//!
//! The envelope carries the body as its rmp-serde bytes rather than as `T`:
//! the signature is checked over exactly the bytes that travelled, so the
//! verifier never depends on re-encoding producing the same bytes.
//!
//! Signed bytes (all integers big-endian, each variable part length-prefixed
//! so no two different envelopes can sign the same byte string):
//! `u32 len ‖ tag ‖ u32 len ‖ role ‖ signer[32] ‖ issued_ms i64 ‖ nonce[16] ‖
//! u64 len ‖ body`.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::id::UserId;
use super::keys::{KeyId, KeyPair, SignatureError, verify_signature};

/// A domain-separation tag: which protocol use a signature is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainTag(&'static [u8]);

impl DomainTag {
    /// A tag; by convention `b"dem/1 <use>\0"`.
    pub const fn new(tag: &'static [u8]) -> Self {
        Self(tag)
    }

    /// The tag bytes.
    pub fn as_bytes(&self) -> &'static [u8] {
        self.0
    }
}

/// A call on a mailbox by its owner.
pub const OWNER_CALL: DomainTag = DomainTag::new(b"dem/1 owner-call\0");
/// A host announcing where an object (a mailbox) now lives.
pub const LOCATION_UPDATE: DomainTag = DomainTag::new(b"dem/1 location-update\0");
/// A user binding a human-readable name to their key.
pub const NAME_CLAIM: DomainTag = DomainTag::new(b"dem/1 name-claim\0");
/// A user saying which host is their home now, or that they went away
/// (dispatch `Home`).
pub const HOME: DomainTag = DomainTag::new(b"dem/1 home\0");
/// A mailbox owner ordering their mailbox moved to a host (dispatch
/// `AuthorizeMove`, host `Pull`).
pub const MOVE_ORDER: DomainTag = DomainTag::new(b"dem/1 move-order\0");

/// How far an envelope's `issued_ms` may be from the verifier's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Oldest accepted age, in milliseconds.
    pub max_age_ms: i64,
    /// Largest accepted lead of the signer's clock, in milliseconds.
    pub max_future_ms: i64,
}

impl Freshness {
    /// The same tolerance both ways.
    pub const fn symmetric(skew_ms: i64) -> Self {
        Self {
            max_age_ms: skew_ms,
            max_future_ms: skew_ms,
        }
    }
}

impl Default for Freshness {
    /// ±5 minutes, matching the replay guard's default window.
    fn default() -> Self {
        Self::symmetric(super::replay::DEFAULT_WINDOW_MS)
    }
}

/// Errors from signing an envelope.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The body could not be encoded with rmp-serde.
    #[error("could not encode the body: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// The operating system's random source failed while making the nonce.
    #[error("the system random source failed: {0}")]
    Random(getrandom::Error),
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The signer bytes are not a valid Ed25519 public key.
    #[error("the signer is not a valid Ed25519 public key")]
    MalformedKey,
    /// The signature does not match (tampered, wrong signer, wrong tag).
    #[error("bad signature")]
    BadSignature,
    /// `issued_ms` is older than the freshness window allows.
    #[error("signed at {issued_ms} ms, too old at {now_ms} ms")]
    Expired {
        /// When it claims to have been signed.
        issued_ms: i64,
        /// The verifier's clock.
        now_ms: i64,
    },
    /// `issued_ms` is further ahead of the verifier's clock than allowed.
    #[error("signed at {issued_ms} ms, in the future at {now_ms} ms")]
    FromTheFuture {
        /// When it claims to have been signed.
        issued_ms: i64,
        /// The verifier's clock.
        now_ms: i64,
    },
    /// The signature is good but the body does not decode as the expected type.
    #[error("the signed body does not decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
}

impl From<SignatureError> for VerifyError {
    fn from(e: SignatureError) -> Self {
        match e {
            SignatureError::MalformedKey => Self::MalformedKey,
            SignatureError::BadSignature => Self::BadSignature,
        }
    }
}

/// A body signed by key `K` (a [`UserId`] unless said otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Signed<T, K: KeyId = UserId> {
    /// Who signed.
    pub signer: K,
    /// When, by the signer's clock, in milliseconds since the Unix epoch.
    pub issued_ms: i64,
    /// Random; with `signer` it names this envelope for replay checks.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 16],
    /// The body, rmp-serde encoded (`to_vec_named`).
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 over the signed bytes described in the module doc.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
    #[serde(skip)]
    _body: PhantomData<fn() -> T>,
}

/// A checked envelope's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<T, K> {
    /// Who signed; their signature was good.
    pub signer: K,
    /// When, by the signer's clock.
    pub issued_ms: i64,
    /// The envelope's nonce, for the replay guard.
    pub nonce: [u8; 16],
    /// The decoded body.
    pub body: T,
}

impl<T: Serialize + DeserializeOwned, K: KeyId> Signed<T, K> {
    /// Signs `body` with a fresh random nonce.
    pub fn sign(
        key: &KeyPair,
        tag: DomainTag,
        issued_ms: i64,
        body: &T,
    ) -> Result<Self, SignError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(SignError::Random)?;
        Self::sign_with_nonce(key, tag, issued_ms, nonce, body)
    }

    /// Signs `body` with a given nonce (deterministic; the caller must never
    /// reuse a nonce with the same key).
    pub fn sign_with_nonce(
        key: &KeyPair,
        tag: DomainTag,
        issued_ms: i64,
        nonce: [u8; 16],
        body: &T,
    ) -> Result<Self, SignError> {
        let signer: K = key.id();
        let body = rmp_serde::to_vec_named(body)?;
        let signature = key.sign(&signed_bytes::<K>(tag, &signer, issued_ms, &nonce, &body));
        Ok(Self {
            signer,
            issued_ms,
            nonce,
            body,
            signature,
            _body: PhantomData,
        })
    }

    /// Checks the signature under `tag` and that `issued_ms` is within
    /// `freshness` of `now_ms`, then decodes the body. Replay is the
    /// caller's next step: feed the result to a `ReplayGuard`.
    pub fn verify(
        &self,
        tag: DomainTag,
        now_ms: i64,
        freshness: Freshness,
    ) -> Result<Verified<T, K>, VerifyError> {
        let (issued_ms, now) = (self.issued_ms, now_ms);
        if issued_ms < now.saturating_sub(freshness.max_age_ms) {
            return Err(VerifyError::Expired { issued_ms, now_ms });
        }
        if issued_ms > now.saturating_add(freshness.max_future_ms) {
            return Err(VerifyError::FromTheFuture { issued_ms, now_ms });
        }
        self.verify_ignoring_time(tag)
    }

    /// Checks the signature under `tag` and decodes the body, without looking
    /// at the clock: for long-lived statements such as name claims.
    pub fn verify_ignoring_time(&self, tag: DomainTag) -> Result<Verified<T, K>, VerifyError> {
        let message = signed_bytes::<K>(tag, &self.signer, self.issued_ms, &self.nonce, &self.body);
        verify_signature(&self.signer.key_bytes(), &message, &self.signature)?;
        Ok(Verified {
            signer: self.signer,
            issued_ms: self.issued_ms,
            nonce: self.nonce,
            body: rmp_serde::from_slice(&self.body)?,
        })
    }
}

/// The exact bytes a `Signed` signature covers (see the module doc).
fn signed_bytes<K: KeyId>(
    tag: DomainTag,
    signer: &K,
    issued_ms: i64,
    nonce: &[u8; 16],
    body: &[u8],
) -> Vec<u8> {
    let tag = tag.as_bytes();
    let role = K::ROLE.as_bytes();
    let mut out = Vec::with_capacity(4 + tag.len() + 4 + role.len() + 32 + 8 + 16 + 8 + body.len());
    // Tags and roles are short constants; u32 lengths cannot truncate them.
    out.extend_from_slice(&(tag.len() as u32).to_be_bytes());
    out.extend_from_slice(tag);
    out.extend_from_slice(&(role.len() as u32).to_be_bytes());
    out.extend_from_slice(role);
    out.extend_from_slice(&signer.key_bytes());
    out.extend_from_slice(&issued_ms.to_be_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::HostId;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Call {
        op: String,
        n: u32,
    }

    const NOW: i64 = 1_700_000_000_000;

    fn call() -> Call {
        Call {
            op: "list".into(),
            n: 3,
        }
    }

    fn signed(key: &KeyPair) -> Signed<Call> {
        Signed::sign(key, OWNER_CALL, NOW, &call()).unwrap()
    }

    fn verify(s: &Signed<Call>) -> Result<Verified<Call, UserId>, VerifyError> {
        s.verify(OWNER_CALL, NOW, Freshness::default())
    }

    #[test]
    fn round_trip_through_the_wire() {
        let key = KeyPair::generate().unwrap();
        let s = signed(&key);
        let wire = rmp_serde::to_vec_named(&s).unwrap();
        let back: Signed<Call> = rmp_serde::from_slice(&wire).unwrap();
        assert_eq!(back, s);
        let v = verify(&back).unwrap();
        assert_eq!(
            (v.signer, v.issued_ms, v.nonce, v.body),
            (key.user_id(), NOW, s.nonce, call())
        );
        let json: Signed<Call> = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(verify(&json).is_ok());
    }

    #[test]
    fn nonces_differ() {
        let key = KeyPair::generate().unwrap();
        assert_ne!(signed(&key).nonce, signed(&key).nonce);
    }

    #[test]
    fn tampering_with_any_field_is_refused() {
        let key = KeyPair::generate().unwrap();
        let good = signed(&key);
        let other = KeyPair::generate().unwrap();
        let mut cases: Vec<Signed<Call>> = Vec::new();
        let mut s = good.clone();
        s.body = rmp_serde::to_vec_named(&Call {
            op: "delete".into(),
            n: 3,
        })
        .unwrap();
        cases.push(s);
        let mut s = good.clone();
        s.nonce[0] ^= 1;
        cases.push(s);
        let mut s = good.clone();
        s.issued_ms += 1;
        cases.push(s);
        let mut s = good.clone();
        s.signer = other.user_id();
        cases.push(s);
        let mut s = good.clone();
        s.signature[10] ^= 1;
        cases.push(s);
        for s in cases {
            assert!(
                matches!(verify(&s), Err(VerifyError::BadSignature)),
                "{s:?}"
            );
        }
        assert!(verify(&good).is_ok());
    }

    #[test]
    fn wrong_domain_tag_is_refused() {
        let key = KeyPair::generate().unwrap();
        let s = signed(&key);
        for tag in [
            LOCATION_UPDATE,
            NAME_CLAIM,
            DomainTag::new(b"dem/1 owner-call"),
        ] {
            assert!(matches!(
                s.verify(tag, NOW, Freshness::default()),
                Err(VerifyError::BadSignature)
            ));
        }
    }

    #[test]
    fn role_is_bound_into_the_signature() {
        // The same key signing as a host cannot pass as the user, and back.
        let key = KeyPair::generate().unwrap();
        let as_host: Signed<Call, HostId> = Signed::sign(&key, OWNER_CALL, NOW, &call()).unwrap();
        let as_user = Signed::<Call, UserId> {
            signer: UserId(as_host.signer.0),
            issued_ms: as_host.issued_ms,
            nonce: as_host.nonce,
            body: as_host.body.clone(),
            signature: as_host.signature,
            _body: PhantomData,
        };
        assert!(
            as_host
                .verify(OWNER_CALL, NOW, Freshness::default())
                .is_ok()
        );
        assert!(matches!(verify(&as_user), Err(VerifyError::BadSignature)));
    }

    #[test]
    fn malformed_signer_is_refused() {
        let key = KeyPair::generate().unwrap();
        let mut s = signed(&key);
        s.signer = UserId([0; 32]); // y = 0 decodes to a small-order point
        let mut bad = [0u8; 32];
        bad[0] = 2; // not on the curve
        let mut t = signed(&key);
        t.signer = UserId(bad);
        for s in [s, t] {
            assert!(
                matches!(verify(&s), Err(VerifyError::MalformedKey)),
                "{:?}",
                verify(&s)
            );
        }
    }

    #[test]
    fn freshness_window_edges() {
        let key = KeyPair::generate().unwrap();
        let f = Freshness {
            max_age_ms: 1000,
            max_future_ms: 500,
        };
        let at = |issued| Signed::<Call>::sign(&key, OWNER_CALL, issued, &call()).unwrap();
        assert!(at(NOW - 1000).verify(OWNER_CALL, NOW, f).is_ok());
        assert!(at(NOW + 500).verify(OWNER_CALL, NOW, f).is_ok());
        assert!(matches!(
            at(NOW - 1001).verify(OWNER_CALL, NOW, f),
            Err(VerifyError::Expired { .. })
        ));
        assert!(matches!(
            at(NOW + 501).verify(OWNER_CALL, NOW, f),
            Err(VerifyError::FromTheFuture { .. })
        ));
        // Extreme clocks saturate instead of overflowing.
        assert!(matches!(
            at(i64::MIN).verify(OWNER_CALL, NOW, f),
            Err(VerifyError::Expired { .. })
        ));
        assert!(at(i64::MAX).verify(OWNER_CALL, i64::MAX, f).is_ok());
        assert!(
            at(NOW - 10_000_000)
                .verify_ignoring_time(OWNER_CALL)
                .is_ok()
        );
    }

    #[test]
    fn wrong_body_type_is_a_decode_error() {
        let key = KeyPair::generate().unwrap();
        let s = Signed::<String>::sign(&key, OWNER_CALL, NOW, &"hi".to_string()).unwrap();
        let as_call = Signed::<Call> {
            signer: s.signer,
            issued_ms: s.issued_ms,
            nonce: s.nonce,
            body: s.body.clone(),
            signature: s.signature,
            _body: PhantomData,
        };
        assert!(matches!(verify(&as_call), Err(VerifyError::Decode(_))));
    }
}
