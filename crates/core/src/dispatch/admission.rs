//! Which dispatch units belong to the network. A unit's tables decide
//! where every mailbox lives, so a unit accepts another's announcement and
//! replicated changes only if that unit proves it was admitted: an
//! ed25519 signature by the network key over the unit's id. Whoever holds
//! the network key (`DIR/network.key` of the first unit, or the file given
//! with `--network-key`) runs units of this network; a key that never saw
//! it cannot announce itself, push updates or appear in a lease.
//!
//! The signature names the unit's key, which the QUIC handshake proved, so
//! an admission copied off the wire is useless to anyone else.

use dem_identity::{DispatchId, KeyPair, SignatureError, verify_signature};

/// Domain tag of a unit admission, so no other signature can pass for one.
const UNIT_ADMISSION: &[u8] = b"dem/1 unit-admission\0";
/// Length of an admission: one ed25519 signature.
pub const ADMISSION_BYTES: usize = 64;

/// The network a unit belongs to, and its own proof of membership.
#[derive(Clone)]
pub struct Network {
    /// The network's public key: what admissions are checked against.
    public: [u8; 32],
    /// This unit's admission, sent with every announcement.
    own: Vec<u8>,
}

/// Why a unit's admission was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdmissionError {
    /// It is not one signature long.
    #[error("a unit admission is {ADMISSION_BYTES} bytes, not {0}")]
    Length(usize),
    /// The network key did not sign this unit's id.
    #[error("unit {unit} is not admitted to this network: {reason}")]
    NotAdmitted {
        unit: DispatchId,
        reason: SignatureError,
    },
}

impl Network {
    /// The network of `network_key`, seen by the unit `me`.
    pub fn new(network_key: &KeyPair, me: DispatchId) -> Self {
        Network {
            public: network_key.public_bytes(),
            own: admit(network_key, me).to_vec(),
        }
    }

    /// The network's public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// This unit's admission, to announce itself with.
    pub fn own_admission(&self) -> Vec<u8> {
        self.own.clone()
    }

    /// Checks that `admission` admits `unit` to this network.
    pub fn check(&self, unit: DispatchId, admission: &[u8]) -> Result<(), AdmissionError> {
        let signature: &[u8; ADMISSION_BYTES] = admission
            .try_into()
            .map_err(|_| AdmissionError::Length(admission.len()))?;
        verify_signature(&self.public, &message(unit), signature)
            .map_err(|reason| AdmissionError::NotAdmitted { unit, reason })
    }
}

/// Signs `unit`'s admission with the network key.
pub fn admit(network_key: &KeyPair, unit: DispatchId) -> [u8; ADMISSION_BYTES] {
    network_key.sign(&message(unit))
}

fn message(unit: DispatchId) -> Vec<u8> {
    let mut m = Vec::with_capacity(UNIT_ADMISSION.len() + 32);
    m.extend_from_slice(UNIT_ADMISSION);
    m.extend_from_slice(&unit.0);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_signed_unit_of_this_network() {
        let network_key = KeyPair::from_seed(&[7; 32]);
        let other_network = KeyPair::from_seed(&[8; 32]);
        let a = DispatchId(KeyPair::from_seed(&[1; 32]).public_bytes());
        let b = DispatchId(KeyPair::from_seed(&[2; 32]).public_bytes());
        let net = Network::new(&network_key, a);
        assert_eq!(net.check(a, &net.own_admission()), Ok(()));
        assert!(net.check(b, &admit(&network_key, b)).is_ok());
        // A's admission does not admit B, nor does another network's.
        assert!(net.check(b, &net.own_admission()).is_err());
        assert!(net.check(b, &admit(&other_network, b)).is_err());
        assert_eq!(net.check(a, &[0; 10]), Err(AdmissionError::Length(10)));
        assert!(net.check(a, &[0; 64]).is_err());
    }
}
