//! Identities and TLS: every node's certificate is self-signed with its
//! ed25519 identity key, and peers authenticate each other by that key, not
//! by a certificate authority (there is none), much as libp2p and iroh do.
//!
//! A certificate is acceptable when it is a single, currently valid X.509
//! certificate whose SubjectPublicKeyInfo is an ed25519 key and whose own
//! signature verifies with that key. A client additionally *pins* the key
//! it expects and refuses any other; the unpinned mode (trust on first use)
//! is a separate flag set only by [`Endpoint::connect_unpinned`]. Either way
//! the TLS 1.3 handshake signature is verified with the certificate's key,
//! through rustls' webpki helpers, so presenting someone else's certificate
//! without their secret key fails.
//!
//! [`Endpoint::connect_unpinned`]: super::Endpoint::connect_unpinned

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SignatureVerificationAlgorithm,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ParsedCertificate};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::{NetError, Result, TransportConfig, hex};

/// Bytes of an ed25519 public key, the name of every DEM node.
pub const ED25519_KEY_BYTES: usize = 32;

/// The DER an ed25519 SubjectPublicKeyInfo starts with (RFC 8410):
/// SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (0 unused bits) }.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The name a client asks for and the certificate carries. TLS wants one;
/// identity is the key, so it is the same for everybody.
pub(crate) const SERVER_NAME: &str = "dem";

/// A node's key pair, with the self-signed certificate made from it.
/// Cheap to clone.
#[derive(Clone)]
pub struct Identity(Arc<IdentityInner>);

struct IdentityInner {
    public_key: [u8; ED25519_KEY_BYTES],
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl fmt::Debug for Identity {
    // Never print the secret key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &hex(&self.0.public_key))
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// The identity of `key`: builds its self-signed certificate.
    pub fn from_signing_key(key: &SigningKey) -> Result<Self> {
        let public_key = key.verifying_key().to_bytes();
        let pkcs8 = key.to_pkcs8_der().map_err(NetError::KeyEncoding)?;
        let key_pair = rcgen::KeyPair::try_from(pkcs8.as_bytes()).map_err(NetError::Certificate)?;
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .map_err(NetError::Certificate)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("dem {}", hex(&public_key)),
        );
        let cert = params
            .self_signed(&key_pair)
            .map_err(NetError::Certificate)?;
        let identity = Self(Arc::new(IdentityInner {
            public_key,
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(pkcs8.as_bytes().to_vec()),
        }));
        // Our own certificate must pass the checks peers will apply.
        let seen = verify_self_signed(&identity.0.cert, UnixTime::now())
            .map_err(NetError::OwnCertificate)?;
        if seen != public_key {
            return Err(NetError::OwnCertificateKey);
        }
        Ok(identity)
    }

    /// The identity whose ed25519 secret key (seed) is `secret`.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self> {
        Self::from_signing_key(&SigningKey::from_bytes(secret))
    }

    /// The public key peers will see and pin.
    pub fn public_key(&self) -> [u8; ED25519_KEY_BYTES] {
        self.0.public_key
    }

    /// The self-signed certificate, DER-encoded.
    pub fn certificate_der(&self) -> &[u8] {
        self.0.cert.as_ref()
    }

    /// Test-only: an identity from any certificate and PKCS#8 key, to check
    /// that peers refuse non-ed25519 ones.
    #[cfg(test)]
    pub(crate) fn from_parts_unchecked(cert: Vec<u8>, key: Vec<u8>) -> Self {
        Self(Arc::new(IdentityInner {
            public_key: [0; ED25519_KEY_BYTES],
            cert: CertificateDer::from(cert),
            key: PrivatePkcs8KeyDer::from(key),
        }))
    }
}

/// Why the client-side verifier refused the server, kept so that the
/// connect error can say so plainly instead of "bad certificate".
#[derive(Debug, Clone)]
pub(crate) enum Rejection {
    /// A valid certificate, but for another key than the pinned one.
    KeyMismatch { presented: [u8; ED25519_KEY_BYTES] },
    /// Not a valid self-signed ed25519 certificate.
    BadCert(String),
}

/// Where a verifier leaves its [`Rejection`] for the connecting code.
pub(crate) type RejectionSlot = Arc<Mutex<Option<Rejection>>>;

/// The peer key of an established connection, from the certificate it
/// presented (which the verifiers have already checked).
pub(crate) fn peer_key_of(conn: &quinn::Connection) -> Option<[u8; ED25519_KEY_BYTES]> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    ed25519_key_of(certs.first()?).ok()
}

/// The QUIC server configuration: our certificate, mandatory client
/// certificates, the given ALPN id.
pub(crate) fn server_config(
    identity: &Identity,
    transport: &TransportConfig,
    alpn: &[u8],
) -> Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(SelfSignedClientVerifier))
        .with_single_cert(
            vec![identity.0.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.0.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    // No resumption: every handshake shows the peer's certificate, which is
    // where its key comes from.
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let quic = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport.quinn()?);
    Ok(config)
}

/// A QUIC client configuration for one connection, pinned to `expected`
/// (or unpinned when `None`), and the slot where its verifier explains a
/// refusal. Built per connection because the pin is per connection.
pub(crate) fn client_config(
    identity: &Identity,
    expected: Option<[u8; ED25519_KEY_BYTES]>,
    transport: &TransportConfig,
    alpn: &[u8],
) -> Result<(quinn::ClientConfig, RejectionSlot)> {
    let rejection = RejectionSlot::default();
    let verifier = PinnedServerVerifier {
        expected,
        rejection: rejection.clone(),
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            vec![identity.0.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.0.key.clone_key()),
        )?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let quic = QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport.quinn()?);
    Ok((config, rejection))
}

/// The ring crypto provider, built once.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn sig_algs() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// The ed25519 verification algorithm(s) only: certificates signed any
/// other way are refused.
fn ed25519_algs() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    sig_algs()
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == SignatureScheme::ED25519)
        .map_or(&[], |(_, algs)| *algs)
}

/// The ed25519 key in `cert`'s SubjectPublicKeyInfo, or why there is none.
fn ed25519_key_of(cert: &CertificateDer<'_>) -> Result<[u8; ED25519_KEY_BYTES], rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    spki.as_ref()
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .and_then(|key| <[u8; ED25519_KEY_BYTES]>::try_from(key).ok())
        .ok_or_else(|| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(NotEd25519),
            )))
        })
}

/// The certificate's key is not ed25519.
#[derive(Debug, thiserror::Error)]
#[error("certificate key is not ed25519")]
struct NotEd25519;

/// Checks that `cert` is a currently valid certificate self-signed with an
/// ed25519 key, and returns that key. The certificate is used as its own
/// trust anchor, so webpki checks the signature, the validity period and
/// the extensions exactly as it would for a CA-issued one. (webpki applies
/// server-auth key usage: our certificates carry no extended key usage,
/// which allows any use.)
fn verify_self_signed(
    cert: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<[u8; ED25519_KEY_BYTES], rustls::Error> {
    let key = ed25519_key_of(cert)?;
    let parsed = ParsedCertificate::try_from(cert)?;
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone().into_owned())?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        &roots,
        &[],
        now,
        ed25519_algs(),
    )?;
    Ok(key)
}

/// Checks the TLS 1.3 handshake signature against `cert`'s key, accepting
/// only ed25519 signatures (the only scheme we advertise).
fn verify_handshake(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ));
    }
    ed25519_key_of(cert)?;
    rustls::crypto::verify_tls13_signature(message, cert, dss, &sig_algs())
}

/// One certificate, no chain: anything else is not ours.
fn only_one(intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    if intermediates.is_empty() {
        Ok(())
    } else {
        Err(rustls::Error::General(
            "expected a single self-signed certificate, got a chain".into(),
        ))
    }
}

/// The client's view of a server: self-signed ed25519, and (when pinned)
/// exactly the expected key.
#[derive(Debug)]
struct PinnedServerVerifier {
    expected: Option<[u8; ED25519_KEY_BYTES]>,
    rejection: RejectionSlot,
}

impl PinnedServerVerifier {
    fn reject(&self, rejection: Rejection) {
        // A poisoned lock only loses the explanation, not the refusal.
        if let Ok(mut slot) = self.rejection.lock() {
            *slot = Some(rejection);
        }
    }

    fn check(
        &self,
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        only_one(intermediates)?;
        let key = verify_self_signed(cert, now)?;
        match self.expected {
            Some(expected) if expected != key => {
                self.reject(Rejection::KeyMismatch { presented: key });
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(()),
        }
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                if let Ok(mut slot) = self.rejection.lock() {
                    slot.get_or_insert(Rejection::BadCert(e.to_string()));
                }
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // QUIC is TLS 1.3 only; rustls never gets here.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

/// The server's view of a client: any valid self-signed ed25519
/// certificate. Which keys may do what is decided by the application.
#[derive(Debug)]
struct SelfSignedClientVerifier;

impl ClientCertVerifier for SelfSignedClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        only_one(intermediates)?;
        verify_self_signed(end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_cert_is_self_signed_over_the_key() {
        let id = Identity::from_secret_bytes(&[7; 32]).expect("identity");
        let cert = CertificateDer::from(id.certificate_der().to_vec());
        let key = verify_self_signed(&cert, UnixTime::now()).expect("valid");
        assert_eq!(key, id.public_key());
        assert_eq!(
            key,
            SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes()
        );
    }

    #[test]
    fn ecdsa_cert_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        assert!(verify_self_signed(cert.der(), UnixTime::now()).is_err());
    }

    #[test]
    fn cert_signed_by_another_key_is_refused() {
        // An ed25519 certificate for key A signed by key B: the SPKI is
        // ed25519, but it is not self-signed.
        let a = Identity::from_secret_bytes(&[1; 32]).expect("a");
        let b_pkcs8 = SigningKey::from_bytes(&[2; 32])
            .to_pkcs8_der()
            .expect("pkcs8");
        let b = rcgen::KeyPair::try_from(b_pkcs8.as_bytes()).expect("b");
        let a_pkcs8 = SigningKey::from_bytes(&[1; 32])
            .to_pkcs8_der()
            .expect("pkcs8");
        let a_key = rcgen::KeyPair::try_from(a_pkcs8.as_bytes()).expect("a key");
        let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("p");
        let issuer = rcgen::Issuer::new(params.clone(), &b);
        let forged = params.signed_by(&a_key, &issuer).expect("forged");
        assert_eq!(
            ed25519_key_of(forged.der()).expect("ed25519"),
            a.public_key()
        );
        assert!(verify_self_signed(forged.der(), UnixTime::now()).is_err());
    }
}
