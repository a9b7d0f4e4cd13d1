//! End-to-end sealing of DEM mail, so that a host holding a mailbox sees
//! ciphertext and a sealed envelope, never the message.
//!
//! - [`keys`]: a user's X25519 encryption key pairs (used through HPKE,
//!   RFC 9180) beside the ed25519 signing key of `dem-identity`.

pub mod keys;

pub use keys::{EncryptionKeyPair, EncryptionPublicKey};
