//! Identity layer of DEM's network: who a host, dispatch unit or user is
//! (an Ed25519 public key), where their keys and profile live, and the
//! signatures that make owner calls, location updates, name claims and
//! delivered mail trustworthy.
//!
//! Everything here is sans-IO (callers pass the clock in) except reading and
//! writing key and profile files, which is confined to `keys`, `home` and
//! `profile`.

pub mod envelope;
pub mod home;
pub mod id;
pub mod keys;
pub mod mail;
pub mod name;
pub mod profile;
pub mod replay;
pub mod signed;

pub use envelope::{
    DELIVERY_WINDOW_MS, EnvelopeAttachment, EnvelopeError, MAIL_ENVELOPE, MailEnvelope, SealedMail,
};
pub use home::{Home, HomeEnv, HomeError, KeyRole, PROFILE_FILE};
pub use id::{DispatchId, Epoch, HostId, KeyIdError, UserId};
pub use keys::{KeyError, KeyId, KeyPair, SignatureError, verify_signature};
pub use mail::{AttachmentRef, MailContent, MailDigest, MailSeal, SealError, mail_digest, mail_id};
pub use name::{MAX_NAME_LEN, Name, NameClaim, NameClaimError, NameError, SignedNameClaim};
pub use profile::{DispatchAddr, ProfileError, UserProfile};
pub use replay::{DEFAULT_WINDOW_MS, MAX_REMEMBERED_NONCES, ReplayError, ReplayGuard};
pub use signed::{
    DomainTag, Freshness, HOME, LOCATION_UPDATE, MOVE_ORDER, NAME_CLAIM, OWNER_CALL, SignError,
    Signed, Verified, VerifyError,
};
