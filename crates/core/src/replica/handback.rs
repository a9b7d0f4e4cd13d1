//! What a host does with a copy no listing names any more, sans-IO.
//!
//! An unlisted copy (a replica the keeper dropped while its host was
//! paused or down, a move's source, an extra replica trimmed) may hold ops
//! no listed replica has: a mail acknowledged by W replicas that were then
//! all killed before anti-entropy spread it, while the keeper rebuilt the
//! listing from a fresher but incomplete copy. Deleting such a copy would
//! lose an acknowledged mail that is still on disk. So before a copy goes,
//! its host asks the listed replicas for their vectors and
//! [`hand_back`] decides:
//! - a listed replica holds everything the copy holds: the copy may go;
//! - a reachable listed replica lacks some of it: offer it the ops it
//!   lacks (it verifies and merges them as anti-entropy would), then ask
//!   again;
//! - no listed replica answered: keep the copy, *held back*, and try
//!   again next round.
//!
//! [`super::unlisted`] still decides *when* an unlisted copy is looked at
//! (after a grace period); this decides *whether* it may go. The driver is
//! `node/handback.rs`.

use dem_identity::HostId;
use dem_proto::VersionVector;

/// What to do with an unlisted copy this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandBack {
    /// A listed replica (`holder`) holds everything this copy holds.
    Discard { holder: HostId },
    /// Send `to` the ops this copy holds beyond `its` vector, then ask
    /// again.
    Offer { to: HostId, its: VersionVector },
    /// No listed replica answered: keep the copy and report it held back.
    HoldBack,
}

/// Decides for a copy at vector `ours`, given what each listed replica
/// answered (`None`: it did not answer, or holds no copy).
///
/// Of the replicas that answered, the one missing the fewest ops is
/// offered them: it is the cheapest to complete, and anti-entropy spreads
/// them from there. Ties go to the listing order (the lookup preference).
pub fn hand_back(ours: &VersionVector, listed: &[(HostId, Option<VersionVector>)]) -> HandBack {
    let answered = listed
        .iter()
        .filter_map(|(host, vv)| vv.as_ref().map(|vv| (*host, vv)));
    let mut best: Option<(HostId, &VersionVector, u64)> = None;
    for (host, vv) in answered {
        if vv.covers(ours) {
            return HandBack::Discard { holder: host };
        }
        let missing = missing_ops(ours, vv);
        if best.is_none_or(|(_, _, m)| missing < m) {
            best = Some((host, vv, missing));
        }
    }
    match best {
        Some((to, its, _)) => HandBack::Offer {
            to,
            its: its.clone(),
        },
        None => HandBack::HoldBack,
    }
}

/// How many ops `ours` holds that `theirs` lacks.
pub fn missing_ops(ours: &VersionVector, theirs: &VersionVector) -> u64 {
    ours.iter()
        .map(|(origin, n)| n.saturating_sub(theirs.get(origin)))
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::OpId;

    fn h(b: u8) -> HostId {
        HostId([b; 32])
    }

    fn vv(entries: &[(u64, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (origin, n) in entries {
            for seq in 1..=*n {
                v.record(OpId {
                    origin: *origin,
                    seq,
                });
            }
        }
        v
    }

    #[test]
    fn a_copy_goes_once_one_listed_replica_holds_all_of_it() {
        let ours = vv(&[(1, 5), (2, 3)]);
        let listed = [
            (h(1), Some(vv(&[(1, 4)]))),
            (h(2), Some(vv(&[(1, 6), (2, 3)]))),
        ];
        assert_eq!(
            hand_back(&ours, &listed),
            HandBack::Discard { holder: h(2) }
        );
    }

    #[test]
    fn ops_spread_over_several_replicas_are_not_enough() {
        // Each op is somewhere, but no one replica covers the copy: offer
        // the one missing least (3 ops, not 5), rather than trust
        // anti-entropy to finish.
        let ours = vv(&[(1, 5), (2, 3)]);
        let listed = [(h(1), Some(vv(&[(2, 3)]))), (h(2), Some(vv(&[(1, 5)])))];
        assert_eq!(
            hand_back(&ours, &listed),
            HandBack::Offer {
                to: h(2),
                its: vv(&[(1, 5)])
            }
        );
    }

    #[test]
    fn the_acknowledged_mail_a_fresh_listing_lacks_is_offered() {
        // The sequence: the listing was rebuilt from a copy one op
        // short; the returning host offers that op.
        let ours = vv(&[(1, 7)]);
        let listed = [(h(4), Some(vv(&[(1, 6)]))), (h(5), None), (h(6), None)];
        assert_eq!(
            hand_back(&ours, &listed),
            HandBack::Offer {
                to: h(4),
                its: vv(&[(1, 6)])
            }
        );
        assert_eq!(missing_ops(&ours, &vv(&[(1, 6)])), 1);
    }

    #[test]
    fn with_no_listed_replica_answering_the_copy_is_held_back() {
        let ours = vv(&[(1, 1)]);
        assert_eq!(hand_back(&ours, &[(h(1), None)]), HandBack::HoldBack);
        assert_eq!(hand_back(&ours, &[]), HandBack::HoldBack);
        // An empty copy is covered by anyone who answers.
        assert_eq!(
            hand_back(&VersionVector::new(), &[(h(1), Some(VersionVector::new()))]),
            HandBack::Discard { holder: h(1) }
        );
    }
}
