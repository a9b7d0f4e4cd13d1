//! The keeper's decision for one mailbox's replica set, sans-IO.
//!
//! Every replica looks at the set the dispatch unit lists for its mailbox,
//! with the hosts' liveness (their leases), and decides the same way:
//! - a host not listed is no member: it syncs once more and then discards
//!   its copy (after a grace period, as a fresh copy is listed only once it
//!   is complete);
//! - the **leader** is the listed host with the smallest id among those
//!   online; only it changes the set, so survivors of one failure do not
//!   all regenerate the same lost copy;
//! - the leader drops members whose lease expired, adds copies until R are
//!   live, and — if several leaders acted on an old picture and the set
//!   grew past R — removes extras deterministically: the owner's home host
//!   stays, then the leader, then members in listed order. This is the
//!   paper's "synchronized termination", decided by one host and committed
//!   by the unit's epoch check, so concurrent attempts cannot both land.
//!
//! A lapsed lease is not a lost disk: a replica that is only paused may
//! hold ops no other copy has yet. So the leader drops offline members
//! only once R live replicas are listed and every one of them holds what
//! the leader holds ([`Freshness::peers_caught_up`]); until then the
//! paused replica stays listed beside its replacement. And the leader
//! copies a new replica from itself only while no live peer holds ops it
//! lacks ([`Freshness::leader_behind`]): otherwise it waits a round for
//! anti-entropy to bring them, so the copy starts from the most complete
//! state instead of whichever replica happens to lead.

use crate::dispatch::limits::MAX_HOSTS_PER_OBJECT;
use dem_identity::HostId;

/// A listed replica and whether its host holds a live lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub host: HostId,
    pub online: bool,
}

/// What this host should do about one mailbox's replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeeperPlan {
    /// This host is not listed: its copy is stale.
    NotMember,
    /// Another host leads; keep in sync with the other online members.
    Follow { peers: Vec<HostId> },
    /// This host leads. `keep` is the new listing before additions (in
    /// preference order), `add` how many new copies to place. `changed`
    /// says whether the dispatch listing must be updated at all.
    Lead {
        peers: Vec<HostId>,
        keep: Vec<HostId>,
        add: usize,
        changed: bool,
    },
}

/// What the leader knows about its live peers' copies this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Every live listed peer answered a vector covering the leader's
    /// own: dropping an offline member then costs nothing the live ones
    /// lack (as far as the leader knows).
    pub peers_caught_up: bool,
    /// A live listed peer holds ops the leader lacks: a copy made now
    /// would miss them, so new copies wait for anti-entropy.
    pub leader_behind: bool,
}

impl Freshness {
    /// Every live peer holds what the leader holds, and no more.
    pub const SETTLED: Freshness = Freshness {
        peers_caught_up: true,
        leader_behind: false,
    };
}

/// Decides for host `me`, wanting `r` replicas, given the listing and the
/// owner's home host (if it is online), for immutable objects
/// (attachments): any live copy is complete, so offline members are
/// dropped at once.
pub fn plan(me: HostId, r: usize, listed: &[Member], home: Option<HostId>) -> KeeperPlan {
    decide(me, r, listed, home, None)
}

/// [`plan`], given what the leader knows of its peers' copies: offline
/// members stay listed until R live replicas hold what the leader holds,
/// and no copy is placed while the leader lacks ops a live peer has. The
/// listing never grows past `hosts_max` ([`MAX_HOSTS_PER_OBJECT`]):
/// offline members are dropped first, the oldest listed last.
pub fn plan_fresh(
    me: HostId,
    r: usize,
    listed: &[Member],
    home: Option<HostId>,
    fresh: Freshness,
) -> KeeperPlan {
    decide(me, r, listed, home, Some(fresh))
}

/// [`plan`] (`fresh` is `None`) or [`plan_fresh`].
fn decide(
    me: HostId,
    r: usize,
    listed: &[Member],
    home: Option<HostId>,
    fresh: Option<Freshness>,
) -> KeeperPlan {
    if !listed.iter().any(|m| m.host == me) {
        return KeeperPlan::NotMember;
    }
    let online: Vec<HostId> = listed
        .iter()
        .filter(|m| m.online || m.host == me)
        .map(|m| m.host)
        .collect();
    let peers: Vec<HostId> = online.iter().copied().filter(|h| *h != me).collect();
    let leader = online.iter().min().copied();
    if leader != Some(me) {
        return KeeperPlan::Follow { peers };
    }
    let r = r.max(1);
    let mut keep: Vec<HostId> = Vec::with_capacity(online.len());
    if let Some(home) = home.filter(|h| online.contains(h)) {
        keep.push(home);
    }
    if !keep.contains(&me) {
        keep.push(me);
    }
    for h in &online {
        if !keep.contains(h) {
            keep.push(*h);
        }
    }
    keep.truncate(r);
    let mut add = r - keep.len();
    if let Some(fresh) = fresh
        && fresh.leader_behind
    {
        add = 0;
    }
    // Offline members stay while their replacements are not (yet) live
    // and complete: a paused host may hold what nobody else has.
    if let Some(fresh) = fresh
        && (add > 0 || keep.len() < r || !fresh.peers_caught_up)
    {
        let room = MAX_HOSTS_PER_OBJECT.saturating_sub(keep.len() + add);
        let offline = listed
            .iter()
            .filter(|m| !m.online && m.host != me)
            .map(|m| m.host)
            .take(room);
        keep.extend(offline.collect::<Vec<_>>());
    }
    // The listing order is the lookup preference: keep it where nothing
    // forces a change, so clients' cached answers stay good.
    let listed_hosts: Vec<HostId> = listed.iter().map(|m| m.host).collect();
    let same_set =
        keep.len() == listed_hosts.len() && keep.iter().all(|h| listed_hosts.contains(h));
    let home_first_ok = home
        .filter(|h| keep.contains(h))
        .is_none_or(|h| listed_hosts.first() == Some(&h));
    if same_set && home_first_ok {
        keep = listed_hosts;
    }
    let changed = add > 0 || !(same_set && home_first_ok);
    KeeperPlan::Lead {
        peers,
        keep,
        add,
        changed,
    }
}

/// What a replica link does after a push to its peer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRetry {
    /// The peer is a listed replica with a live lease: try again soon.
    Retry,
    /// The peer is listed but its lease expired: wait until the keeper or
    /// a call kicks the link again (the keeper kicks only live replicas),
    /// rather than dialling a dead host over and over.
    Idle,
    /// The peer is no longer listed: end the link. If it is listed again
    /// later, a fresh link learns its vector anew.
    End,
}

/// Decides whether a link towards `peer` keeps trying, given the latest
/// listing of the mailbox's replicas.
///
/// A host keeps one link per (mailbox, peer), and links used to retry a
/// failed push forever. A crashed peer then got dialled every few hundred
/// milliseconds long after the keeper had replaced it, and every dial
/// waited for the full connect timeout on the host's shared connection
/// table — starving the links to the live replicas, so that no call could
/// gather W acknowledgements any more.
pub fn link_after_failure(peer: HostId, listed: &[Member]) -> LinkRetry {
    match listed.iter().find(|m| m.host == peer) {
        None => LinkRetry::End,
        Some(m) if m.online => LinkRetry::Retry,
        Some(_) => LinkRetry::Idle,
    }
}

/// Whether a link towards `peer` is still wanted once it has caught up:
/// only while the peer is listed (anti-entropy and calls kick the links
/// of listed replicas only).
pub fn link_wanted(peer: HostId, listed: &[Member]) -> bool {
    listed.iter().any(|m| m.host == peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> HostId {
        HostId([b; 32])
    }

    fn m(b: u8, online: bool) -> Member {
        Member { host: h(b), online }
    }

    #[test]
    fn unlisted_host_is_no_member() {
        assert_eq!(plan(h(9), 3, &[m(1, true)], None), KeeperPlan::NotMember);
    }

    #[test]
    fn smallest_online_host_leads() {
        let listed = [m(1, false), m(2, true), m(3, true)];
        assert_eq!(
            plan(h(3), 3, &listed, None),
            KeeperPlan::Follow { peers: vec![h(2)] }
        );
        match plan(h(2), 3, &listed, None) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(2), h(3)]);
                assert_eq!(add, 1);
                assert!(changed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_healthy_set_is_left_alone() {
        let listed = [m(3, true), m(1, true), m(2, true)];
        assert_eq!(
            plan(h(1), 3, &listed, None),
            KeeperPlan::Lead {
                peers: vec![h(3), h(2)],
                keep: vec![h(3), h(1), h(2)],
                add: 0,
                changed: false
            }
        );
    }

    #[test]
    fn extras_are_trimmed_deterministically_keeping_home_and_leader() {
        let listed = [m(5, true), m(4, true), m(1, true), m(2, true), m(3, true)];
        match plan(h(1), 3, &listed, Some(h(3))) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(3), h(1), h(5)]);
                assert_eq!(add, 0);
                assert!(changed);
            }
            other => panic!("{other:?}"),
        }
        // Every member computes the same leader, so only h(1) acts.
        for b in [2, 3, 4, 5] {
            assert!(matches!(
                plan(h(b), 3, &listed, Some(h(3))),
                KeeperPlan::Follow { .. }
            ));
        }
    }

    #[test]
    fn home_moves_to_the_front() {
        let listed = [m(1, true), m(2, true), m(3, true)];
        match plan(h(1), 3, &listed, Some(h(2))) {
            KeeperPlan::Lead { keep, changed, .. } => {
                assert_eq!(keep, vec![h(2), h(1), h(3)]);
                assert!(changed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fewer_hosts_than_r_is_not_an_error() {
        match plan(h(1), 3, &[m(1, true)], None) {
            KeeperPlan::Lead { keep, add, .. } => {
                assert_eq!(keep, vec![h(1)]);
                assert_eq!(add, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    const BEHIND: Freshness = Freshness {
        peers_caught_up: false,
        leader_behind: true,
    };
    const COPYING: Freshness = Freshness {
        peers_caught_up: false,
        leader_behind: false,
    };

    #[test]
    fn a_paused_replica_stays_listed_until_its_replacement_is_complete() {
        // h(3) paused: its lease lapsed. The leader places a new copy but
        // keeps h(3) listed beside it.
        let listed = [m(1, true), m(2, true), m(3, false)];
        match plan_fresh(h(1), 3, &listed, None, COPYING) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(1), h(2), h(3)]);
                assert_eq!(add, 1);
                assert!(changed);
            }
            other => panic!("{other:?}"),
        }
        // Next round: h(4) is listed and live but not caught up yet.
        let listed = [m(1, true), m(2, true), m(3, false), m(4, true)];
        match plan_fresh(h(1), 3, &listed, None, COPYING) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(1), h(2), h(3), h(4)], "as listed");
                assert_eq!(add, 0);
                assert!(!changed, "nothing to do but wait");
            }
            other => panic!("{other:?}"),
        }
        // Once every live peer holds what the leader holds, h(3) goes.
        match plan_fresh(h(1), 3, &listed, None, Freshness::SETTLED) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(1), h(2), h(4)]);
                assert_eq!(add, 0);
                assert!(changed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leader_behind_a_live_peer_waits_before_copying() {
        let listed = [m(1, true), m(2, true), m(3, false)];
        match plan_fresh(h(1), 3, &listed, None, BEHIND) {
            KeeperPlan::Lead {
                keep, add, changed, ..
            } => {
                assert_eq!(keep, vec![h(1), h(2), h(3)]);
                assert_eq!(add, 0);
                assert!(!changed);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_listing_never_grows_past_its_limit() {
        // R = 8 with 4 offline: room for 8 only, the new copies first.
        let listed: Vec<Member> = (1..=8).map(|b| m(b, b <= 4)).collect();
        match plan_fresh(h(1), 8, &listed, None, COPYING) {
            KeeperPlan::Lead { keep, add, .. } => {
                assert_eq!(add, 4);
                assert_eq!(keep.len() + add, MAX_HOSTS_PER_OBJECT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_failed_link_retries_only_towards_a_live_listed_peer() {
        let listed = [m(1, true), m(2, false), m(3, true)];
        assert_eq!(link_after_failure(h(3), &listed), LinkRetry::Retry);
        // Lease expired: wait for a kick instead of dialling a dead host.
        assert_eq!(link_after_failure(h(2), &listed), LinkRetry::Idle);
        // Replaced by the keeper: the link ends.
        assert_eq!(link_after_failure(h(4), &listed), LinkRetry::End);
        assert!(link_wanted(h(2), &listed));
        assert!(!link_wanted(h(4), &listed));
    }

    #[test]
    fn a_peer_dropped_and_listed_again_is_retried() {
        // Lease flapping: dropped at one epoch, placed again at the next.
        let dropped = [m(1, true), m(3, true), m(4, true)];
        assert_eq!(link_after_failure(h(2), &dropped), LinkRetry::End);
        let again = [m(1, true), m(3, true), m(2, true)];
        assert_eq!(link_after_failure(h(2), &again), LinkRetry::Retry);
    }
}
