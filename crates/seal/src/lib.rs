//! End-to-end sealing of DEM mail, so that a host holding a mailbox sees
//! ciphertext and a sealed envelope, never the message.
//!
//! - [`keys`]: a user's X25519 encryption key pairs (used through HPKE,
//!   RFC 9180) beside the ed25519 signing key of `dem-identity`.
//! - [`keyring`]: every encryption key a user has had, kept in the home so
//!   mail sealed to an old key still opens after a rotation.
//! - [`export`]: the whole identity in one passphrase-protected file.

pub mod export;
pub mod keyring;
pub mod keys;

pub use export::{ExportError, IdentityBundle, StretchCost, export_identity, import_identity};
pub use keyring::{KEYRING_FILE, Keyring, KeyringEntry, KeyringError};
pub use keys::{EncryptionKeyPair, EncryptionPublicKey};
