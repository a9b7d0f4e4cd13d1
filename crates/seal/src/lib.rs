//! End-to-end sealing of DEM mail, so that a host holding a mailbox sees
//! ciphertext and a sealed envelope, never the message.
//!
//! - [`keys`]: a user's X25519 encryption key pairs (used through HPKE,
//!   RFC 9180) beside the ed25519 signing key of `dem-identity`.
//! - [`keyring`]: every encryption key a user has had, kept in the home so
//!   mail sealed to an old key still opens after a rotation.
//! - [`export`]: the whole identity in one passphrase-protected file.
//! - [`content`]: a mail's whole message under a fresh [`ContentKey`]
//!   with XChaCha20-Poly1305.
//! - [`wrap`]: that content key wrapped with HPKE to each recipient and
//!   to the sender.
//! - [`attachment`]: floating attachments, each under its own key,
//!   sealed and opened as a stream (STREAM over XChaCha20-Poly1305) in
//!   bounded memory, and stored by the BLAKE3 of their ciphertext.
//! - [`mail`]: a whole mail sealed for its recipients (the signed envelope
//!   of `dem-identity` around the content) and opened by its owner.
//! - [`error`]: [`SealError`] and [`OpenError`].

pub mod attachment;
pub mod content;
pub mod error;
pub mod export;
pub mod keyring;
pub mod keys;
pub mod mail;
pub mod wrap;

pub use attachment::{
    ATTACHMENT_CHUNK_BYTES, AttachmentOpener, AttachmentSealed, AttachmentSealer, ciphertext_size,
    open_attachment, seal_attachment,
};
pub use content::{CONTENT_BYTES_MAX, ContentKey, open_content, seal_content};
pub use error::{OpenError, SealError};
pub use export::{ExportError, IdentityBundle, StretchCost, export_identity, import_identity};
pub use keyring::{KEYRING_FILE, Keyring, KeyringEntry, KeyringError};
pub use keys::{EncryptionKeyPair, EncryptionPublicKey};
pub use mail::{
    ContentAttachment, MailContents, OpenMailError, Recipient, SealMailError, open_mail, seal_mail,
};
pub use wrap::{WrappedKey, unwrap_key, unwrap_with_any, wrap_key};
