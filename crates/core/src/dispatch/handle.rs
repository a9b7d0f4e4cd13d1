//! One [`DispatchRequest`] in, one answer out: the checks the sans-IO unit
//! leaves to its driver (who the caller is, user signatures, replays, input
//! bounds) and the call into [`DispatchUnit`].
//!
//! No I/O and no clock here either: [`State::handle`] takes `now_ms` and
//! the caller's key (the QUIC connection's peer key), so it is unit-tested
//! without a network. [`super::service`] owns the lock around [`State`],
//! persists after changes and hands [`Outcome::updates`] to the replicator
//! ([`super::peers`]).

use dem_identity::{DispatchId, Freshness, HOME, HostId, MOVE_ORDER, ReplayGuard, Signed, UserId};
use dem_proto::WireError;
use dem_proto::dispatch::{CONFLICT, NOT_FOUND};
use dem_proto::dispatch::{DispatchRequest, DispatchResponse, MoveOrder};

use super::admission::Network;
use super::error::{HostError, LocationError, LookupError, NameError, PlacementError, UnitError};
use super::limits::{ATTACHMENT_REFS_MAX, MAX_HOSTS_PER_OBJECT};
use super::{Action, DispatchUnit, HostState, ObjectRef, Registration, Update};

/// Most hosts a `Place` request may exclude; placement scans every host per
/// excluded one, so an unbounded list would be a cheap way to burn CPU.
pub const PLACE_EXCLUDE_MAX: usize = 4 * MAX_HOSTS_PER_OBJECT;
/// Most updates one `Replicate` request may carry (peers send batches of
/// [`super::peers::REPLICATE_BATCH_MAX`]).
pub const REPLICATE_UPDATES_MAX: usize = 10_000;

/// What the service guards with one lock: the unit and what goes with it.
pub struct State {
    pub unit: DispatchUnit,
    /// Refuses a replayed signed `Home` (an old "away" replayed would take
    /// a user offline).
    pub replay: ReplayGuard,
    /// Which units may announce themselves and replicate here.
    pub network: Network,
}

/// The result of a request the unit accepted.
#[derive(Debug)]
pub struct Outcome {
    /// The answer, or the refusal, for the caller.
    pub response: Result<DispatchResponse, WireError>,
    /// Changes to push to peer units.
    pub updates: Vec<Update>,
    /// Whether the tables changed (and must be persisted).
    pub changed: bool,
}

impl State {
    /// Answers `req` from the caller with key `peer` at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, peer: [u8; 32], req: DispatchRequest) -> Outcome {
        self.try_handle(now_ms, peer, req)
            .unwrap_or_else(|e| Outcome {
                response: Err(e),
                updates: Vec::new(),
                changed: false,
            })
    }

    fn try_handle(
        &mut self,
        now_ms: u64,
        peer: [u8; 32],
        req: DispatchRequest,
    ) -> Result<Outcome, WireError> {
        let host = HostId(peer);
        let unit = &mut self.unit;
        let read = |response| Ok(Outcome::read(response));
        match req {
            DispatchRequest::Join {
                addr,
                capacity,
                load,
                operator,
            } => {
                let actions = unit
                    .handle_join_as(now_ms, host, &addr, capacity, load, operator.as_deref())
                    .map_err(host_err)?;
                Ok(Outcome::write(lease(unit, &host), actions))
            }
            DispatchRequest::Heartbeat { load } => {
                let actions = unit
                    .handle_heartbeat(now_ms, host, load)
                    .map_err(host_err)?;
                Ok(Outcome::write(lease(unit, &host), actions))
            }
            DispatchRequest::Leave => {
                let mut actions = unit.handle_leave(now_ms, host).map_err(host_err)?;
                let (plan, more) = unit.plan_departure(now_ms, host).map_err(place_err)?;
                actions.extend(more);
                Ok(Outcome::write(DispatchResponse::Plan(plan), actions))
            }
            DispatchRequest::Left => {
                let actions = unit.handle_left(now_ms, host).map_err(host_err)?;
                Ok(Outcome::write(DispatchResponse::Done, actions))
            }
            DispatchRequest::Register { claim: signed } => {
                let claim = signed
                    .verify()
                    .map_err(|e| WireError::new(WireError::FORBIDDEN, e.to_string()))?;
                let user = claim.user;
                let (registration, mut actions) = unit
                    .register_claim(now_ms, &claim, signed)
                    .map_err(name_err)?;
                let placement = match unit.place_new_mailbox(now_ms, user) {
                    Ok((placement, more)) => {
                        actions.extend(more);
                        placement
                    }
                    // Registering again once the mailbox exists: say where.
                    Err(PlacementError::AlreadyPlaced { object, hosts })
                        if registration != Registration::New && !hosts.is_empty() =>
                    {
                        unit.placement(object, hosts[0])
                    }
                    // The name stays registered (and must be persisted and
                    // replicated); registering again retries the placement.
                    Err(e) => {
                        let mut out = Outcome::write(DispatchResponse::Done, actions);
                        out.response = Err(place_err(e));
                        return Ok(out);
                    }
                };
                Ok(Outcome::write(
                    DispatchResponse::Registered { user, placement },
                    actions,
                ))
            }
            DispatchRequest::LookupName { name } => read(DispatchResponse::Mailbox(
                unit.lookup_name(now_ms, &name).map_err(lookup_err)?,
            )),
            DispatchRequest::LookupUser { user } => read(DispatchResponse::Mailbox(
                unit.lookup_user(now_ms, user).map_err(lookup_err)?,
            )),
            DispatchRequest::LookupAttachment { id } => read(DispatchResponse::Attachment(
                unit.lookup_attachment(now_ms, &id).map_err(lookup_err)?,
            )),
            DispatchRequest::PlaceAttachment { id, size_bytes } => {
                let (placement, actions) = unit
                    .place_new_attachment(now_ms, &id, size_bytes)
                    .map_err(place_err)?;
                Ok(Outcome::write(
                    DispatchResponse::Placement(placement),
                    actions,
                ))
            }
            DispatchRequest::AttachmentRefs { ids } => {
                if ids.len() > ATTACHMENT_REFS_MAX {
                    return Err(WireError::new(
                        WireError::TOO_LARGE,
                        format!(
                            "{} attachment ids, at most {ATTACHMENT_REFS_MAX}",
                            ids.len()
                        ),
                    ));
                }
                let actions = unit.handle_attachment_refs(now_ms, &ids);
                Ok(Outcome::write(DispatchResponse::Done, actions))
            }
            DispatchRequest::Place { object, exclude } => {
                if exclude.len() > PLACE_EXCLUDE_MAX {
                    return Err(WireError::new(
                        WireError::TOO_LARGE,
                        format!(
                            "{} excluded hosts, at most {PLACE_EXCLUDE_MAX}",
                            exclude.len()
                        ),
                    ));
                }
                // Only a present host may ask: the grant goes to a host the
                // unit chooses, but asking costs a pending slot.
                joined(unit, host)?;
                let (placement, actions) =
                    unit.place(now_ms, &object, &exclude).map_err(place_err)?;
                Ok(Outcome::write(
                    DispatchResponse::Placement(placement),
                    actions,
                ))
            }
            DispatchRequest::Rebalance => {
                // The unit only proposes moves within sets the asking host
                // leads, and a grant still needs the target's copy and the
                // leader's epoch-checked location update to land.
                joined(unit, host)?;
                match unit.rebalance(now_ms, host).map_err(place_err)? {
                    Some((mv, actions)) => Ok(Outcome::write(
                        DispatchResponse::Rebalance(Some(mv)),
                        actions,
                    )),
                    None => Ok(Outcome::read(DispatchResponse::Rebalance(None))),
                }
            }
            DispatchRequest::LocationUpdate {
                object,
                hosts,
                epoch,
            } => {
                let actions = unit
                    .handle_location_update(now_ms, host, &object, hosts, epoch)
                    .map_err(location_err)?;
                Ok(Outcome::write(DispatchResponse::Done, actions))
            }
            DispatchRequest::Home { user, home } => {
                let v = verify_user(&home, HOME, now_ms, user)?;
                self.replay
                    .check_verified(&v, clock(now_ms))
                    .map_err(|e| WireError::new(CONFLICT, format!("home update: {e}")))?;
                let actions = self
                    .unit
                    .handle_home(now_ms, user, v.body)
                    .map_err(location_err)?;
                Ok(Outcome::write(DispatchResponse::Done, actions))
            }
            DispatchRequest::AuthorizeMove { order } => {
                let signer = order.signer;
                let v = verify_user(&order, MOVE_ORDER, now_ms, signer)?;
                let MoveOrder { user, to } = v.body;
                if user != signer {
                    return Err(forbidden_signer(user, signer));
                }
                let (placement, actions) = unit
                    .authorize_move(now_ms, &ObjectRef::Mailbox(user), to)
                    .map_err(place_err)?;
                Ok(Outcome::write(
                    DispatchResponse::Placement(placement),
                    actions,
                ))
            }
            DispatchRequest::Status => {
                read(DispatchResponse::Status(Box::new(unit.status(now_ms))))
            }
            DispatchRequest::Announce { addr, admission } => {
                self.network
                    .check(DispatchId(peer), &admission)
                    .map_err(|e| WireError::new(WireError::FORBIDDEN, e.to_string()))?;
                let actions = unit
                    .handle_unit_announce(now_ms, DispatchId(peer), &addr)
                    .map_err(unit_err)?;
                Ok(Outcome::write(DispatchResponse::Done, actions))
            }
            DispatchRequest::Snapshot => read(DispatchResponse::Tables(Box::new(unit.snapshot()))),
            DispatchRequest::Replicate { updates } => self.handle_replicate(now_ms, peer, updates),
            // The service serves pipelines itself (`dispatch::pipeline`);
            // one can only get here nested inside another.
            DispatchRequest::Pipeline => Err(WireError::new(
                WireError::BAD_REQUEST,
                "a pipeline carries only lookups",
            )),
            // The log ring is not part of the tables: the service keeps it
            // and answers these itself (`dem_node::logs`).
            DispatchRequest::Logs { .. } | DispatchRequest::LogsQuery { .. } => {
                Err(WireError::new(
                    WireError::BAD_REQUEST,
                    "logs are served by the unit's driver",
                ))
            }
        }
    }

    /// Applies a peer unit's changes. The sender must be a unit this one
    /// knows: admitted through its own `Announce` (sent first on every
    /// replication connection) or listed by a unit that admitted it.
    fn handle_replicate(
        &mut self,
        now_ms: u64,
        peer: [u8; 32],
        updates: Vec<Update>,
    ) -> Result<Outcome, WireError> {
        if updates.len() > REPLICATE_UPDATES_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                format!("{} updates, at most {REPLICATE_UPDATES_MAX}", updates.len()),
            ));
        }
        let sender = DispatchId(peer);
        if !self.unit.tables().units.contains_key(&sender) {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                format!("unit {sender} has not announced itself"),
            ));
        }
        let mut changed = false;
        for update in updates {
            match self.unit.apply_update(now_ms, update) {
                Ok(c) => changed |= c,
                Err(e) => {
                    tracing::warn!(from = %sender.short(), error = %e, "replicated update refused")
                }
            }
        }
        Ok(Outcome {
            response: Ok(DispatchResponse::Done),
            updates: Vec::new(),
            changed,
        })
    }
}

impl Outcome {
    fn read(response: DispatchResponse) -> Self {
        Outcome {
            response: Ok(response),
            updates: Vec::new(),
            changed: false,
        }
    }

    fn write(response: DispatchResponse, actions: Vec<Action>) -> Self {
        let updates: Vec<Update> = actions.into_iter().map(|Action::Replicate(u)| u).collect();
        Outcome {
            response: Ok(response),
            changed: !updates.is_empty(),
            updates,
        }
    }
}

/// Refuses a host that never joined or has left.
fn joined(unit: &DispatchUnit, host: HostId) -> Result<(), WireError> {
    let present = unit
        .tables()
        .hosts
        .get(&host)
        .is_some_and(|r| r.state != HostState::Left);
    if present {
        Ok(())
    } else {
        Err(WireError::new(
            WireError::FORBIDDEN,
            format!("host {host} is not joined"),
        ))
    }
}

/// The lease answer to a join or heartbeat, listing the backbone.
fn lease(unit: &DispatchUnit, host: &HostId) -> DispatchResponse {
    DispatchResponse::Lease {
        draining: unit.is_draining(host),
        lease_ms: unit.limits().lease_ms,
        replicas: unit.replicas(),
        write_quorum: unit.write_quorum(),
        attachment_grace_ms: unit.limits().attachment_grace_ms,
        units: unit
            .tables()
            .units
            .iter()
            .map(|(id, r)| (*id, r.addr.clone()))
            .collect(),
    }
}

/// Checks a user's signed envelope under `tag`, signed by `user`.
fn verify_user<T>(
    signed: &Signed<T>,
    tag: dem_identity::DomainTag,
    now_ms: u64,
    user: UserId,
) -> Result<dem_identity::Verified<T, UserId>, WireError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let v = signed
        .verify(tag, clock(now_ms), Freshness::default())
        .map_err(|e| WireError::new(WireError::FORBIDDEN, e.to_string()))?;
    if v.signer != user {
        return Err(forbidden_signer(user, v.signer));
    }
    Ok(v)
}

fn forbidden_signer(user: UserId, signer: UserId) -> WireError {
    WireError::new(
        WireError::FORBIDDEN,
        format!("signed by {signer}, not by the user {user}"),
    )
}

fn clock(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

fn host_err(e: HostError) -> WireError {
    let code = match &e {
        HostError::Addr(_) | HostError::Operator(_) | HostError::BadCapacity { .. } => {
            WireError::BAD_REQUEST
        }
        HostError::UnknownHost(_) => NOT_FOUND,
        HostError::HostLeft(_) | HostError::StillHolding { .. } => CONFLICT,
        HostError::Limit(_) => WireError::BUSY,
    };
    WireError::new(code, e.to_string())
}

fn name_err(e: NameError) -> WireError {
    let code = match &e {
        NameError::Format(_)
        | NameError::ClaimClock { .. }
        | NameError::BeforeEpoch { .. }
        | NameError::ClaimTooLarge { .. } => WireError::BAD_REQUEST,
        NameError::Taken { .. } => CONFLICT,
        NameError::Limit(_) => WireError::BUSY,
    };
    WireError::new(code, e.to_string())
}

fn place_err(e: PlacementError) -> WireError {
    let code = match &e {
        PlacementError::NoLiveHost(_) | PlacementError::Limit(_) => WireError::BUSY,
        PlacementError::UnknownHost(_)
        | PlacementError::UnknownUser(_)
        | PlacementError::UnknownObject(_) => NOT_FOUND,
        PlacementError::HostNotLive(_)
        | PlacementError::AlreadyHolder { .. }
        | PlacementError::AlreadyPlaced { .. } => CONFLICT,
    };
    WireError::new(code, e.to_string())
}

fn location_err(e: LocationError) -> WireError {
    let code = match &e {
        LocationError::UnknownObject(_) | LocationError::UnknownHost(_) => NOT_FOUND,
        LocationError::NotAuthorized { .. } | LocationError::NotPlaced { .. } => {
            WireError::FORBIDDEN
        }
        LocationError::StaleEpoch { .. }
        | LocationError::EpochJump { .. }
        | LocationError::StillReferenced(_) => CONFLICT,
        LocationError::HostList(_) | LocationError::TargetNotListed { .. } => {
            WireError::BAD_REQUEST
        }
        LocationError::Limit(_) => WireError::BUSY,
    };
    WireError::new(code, e.to_string())
}

fn lookup_err(e: LookupError) -> WireError {
    WireError::new(NOT_FOUND, e.to_string())
}

fn unit_err(e: UnitError) -> WireError {
    let code = match &e {
        UnitError::Addr(_) => WireError::BAD_REQUEST,
        UnitError::Limit(_) => WireError::BUSY,
    };
    WireError::new(code, e.to_string())
}

#[cfg(test)]
mod tests;
