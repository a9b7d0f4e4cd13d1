//! `MailboxRef`: a reference to a user's mailbox that stays valid while the
//! mailbox moves. It asks the dispatch unit where the mailbox is once,
//! caches the holder, and calls that host directly. A "moved to H at epoch
//! E" answer updates the cache and the call goes on to H; a connection
//! failure or a host that no longer knows the mailbox drops the cache and
//! looks it up afresh. Both are bounded by [`HOPS_MAX`].
//!
//! Over [`MailboxRef::call`], which sends any host request, sit the owner's
//! signed calls on the mailbox: [`MailboxRef::owner_call`] with an untyped
//! `Request`, and [`MailboxRef::ask`] with a verb of
//! `dem_proto::mailbox::verbs`, which answers that verb's type.

use tracing::Instrument as _;

use dem_identity::{Epoch, HostId, OWNER_CALL, SignError, Signed, UserId};
use dem_net::{NetError, WireError};
use dem_proto::mailbox::{Request, Response, UnexpectedAnswer, Verb};
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse, OwnerCall};

use super::{Session, SessionError, now_ms};

/// Most hosts one call visits (moves followed plus fresh lookups).
pub const HOPS_MAX: usize = 4;
/// Times a call is tried again when the holder answers "busy, retry"
/// (every instance slot stayed in use; nothing happened), with the wait
/// doubling from [`BUSY_BACKOFF_MS`]: about 6 s in all.
pub const BUSY_RETRIES: u32 = 5;
pub const BUSY_BACKOFF_MS: u64 = 200;

pub use dem_proto::host::NOT_HERE;

/// Whom a reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String),
    User(UserId),
}

impl Target {
    /// A 64-hex-digit user id, or else a name.
    pub fn parse(s: &str) -> Self {
        match s.parse::<UserId>() {
            Ok(id) if s.len() == 64 => Target::User(id),
            _ => Target::Name(s.to_string()),
        }
    }
}

/// Why a call through a reference failed.
#[derive(Debug, thiserror::Error)]
pub enum RefError {
    /// The dispatch unit does not know the user (or could not be reached).
    #[error("cannot find the mailbox of {who}: {source}")]
    Lookup { who: String, source: SessionError },
    /// The mailbox has no live holder right now.
    #[error("the mailbox of {0} is on no host that is online")]
    NoHolder(String),
    /// The host refused the call; its reason.
    #[error("{0}")]
    Refused(WireError),
    /// Too many moves or failures in a row.
    #[error("gave up reaching the mailbox of {who} after {hops} tries: {last}")]
    GaveUp {
        who: String,
        hops: usize,
        last: String,
    },
    /// Signing the call failed.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
    /// The host answered an owner call with something other than the
    /// mailbox's reply.
    #[error("unexpected answer from the host: {0:?}")]
    NotAReply(Box<HostResponse>),
    /// The mailbox's reply is not the answer of the verb asked.
    #[error(transparent)]
    Unexpected(#[from] UnexpectedAnswer),
}

/// Where a mailbox was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: HostId,
    pub addr: String,
    pub epoch: Epoch,
}

/// A mailbox reference; see the module doc.
#[derive(Debug, Clone)]
pub struct MailboxRef {
    target: Target,
    user: Option<UserId>,
    holder: Option<Holder>,
    /// Holders this reference could not reach. A dead host stays listed
    /// (and "online") until its lease runs out, and each attempt on it
    /// costs a whole connect timeout: the next lookup tries the others
    /// first. At most [`HOPS_MAX`] are kept.
    unreachable: Vec<HostId>,
}

impl MailboxRef {
    pub fn new(target: Target) -> Self {
        let user = match &target {
            Target::User(u) => Some(*u),
            Target::Name(_) => None,
        };
        Self {
            target,
            user,
            holder: None,
            unreachable: Vec::new(),
        }
    }

    fn who(&self) -> String {
        match &self.target {
            Target::Name(n) => n.clone(),
            Target::User(u) => u.short(),
        }
    }

    /// The user the reference names, looking it up if needed.
    pub async fn user(&mut self, session: &Session) -> Result<UserId, RefError> {
        if self.user.is_none() {
            self.lookup(session).await?;
        }
        self.user.ok_or_else(|| RefError::NoHolder(self.who()))
    }

    /// The cached holder, if any.
    pub fn holder(&self) -> Option<&Holder> {
        self.holder.as_ref()
    }

    /// Sends the next calls to another listed replica: the current holder's
    /// answer could not be used (its copy of a message is damaged, or it
    /// sent bytes that do not match their hash).
    pub fn avoid_holder(&mut self) {
        if let Some(holder) = self.holder.take()
            && self.unreachable.len() < HOPS_MAX
            && !self.unreachable.contains(&holder.host)
        {
            self.unreachable.push(holder.host);
        }
    }

    /// Asks the dispatch unit afresh.
    pub async fn lookup(&mut self, session: &Session) -> Result<(), RefError> {
        let req = match &self.target {
            Target::Name(name) => DispatchRequest::LookupName { name: name.clone() },
            Target::User(user) => DispatchRequest::LookupUser { user: *user },
        };
        let who = self.who();
        let found = match session.dispatch(&req).await {
            Ok(DispatchResponse::Mailbox(found)) => found,
            Ok(other) => {
                return Err(RefError::Lookup {
                    who,
                    source: SessionError::Unexpected(Box::new(other)),
                });
            }
            Err(source) => return Err(RefError::Lookup { who, source }),
        };
        self.user = Some(found.user);
        let holder = |h: &dem_proto::dispatch::HostAddr| -> Option<Holder> {
            Some(Holder {
                host: h.host,
                addr: h.addr.clone()?,
                epoch: found.epoch,
            })
        };
        let online = || found.hosts.iter().filter(|h| h.online);
        self.holder = online()
            .filter(|h| !self.unreachable.contains(&h.host))
            .find_map(holder)
            .or_else(|| online().find_map(holder));
        if self.holder.is_none() {
            return Err(RefError::NoHolder(who));
        }
        Ok(())
    }

    /// Sends the request `build(user)` to the mailbox's holder. `build` is
    /// called once per attempt, so signed requests get a fresh nonce.
    pub async fn call(
        &mut self,
        session: &Session,
        mut build: impl FnMut(UserId) -> Result<HostRequest, RefError>,
    ) -> Result<HostResponse, RefError> {
        let mut last = String::from("no attempt");
        let mut busy = 0;
        let mut hops = 0;
        while hops < HOPS_MAX {
            hops += 1;
            if self.holder.is_none() {
                self.lookup(session).await?;
            }
            let (Some(holder), Some(user)) = (self.holder.clone(), self.user) else {
                return Err(RefError::NoHolder(self.who()));
            };
            let req = build(user)?;
            let span =
                tracing::debug_span!("call", mailbox = %user.short(), host = %holder.host.short());
            let answer = session
                .host_request(&holder.addr, holder.host, &req)
                .instrument(span.clone())
                .await;
            // Only synchronous handling below: the guard never spans an await.
            let _e = span.enter();
            match answer {
                Ok(HostResponse::Moved(to)) => {
                    tracing::debug!(to = %to.host, epoch = to.epoch, "mailbox moved");
                    last = format!("moved to {}", to.addr);
                    self.holder = to.host.parse::<HostId>().ok().map(|host| Holder {
                        host,
                        addr: to.addr,
                        epoch: Epoch(to.epoch),
                    });
                }
                Ok(answer) => return Ok(answer),
                Err(SessionError::Net(NetError::Remote(wire))) if wire.code == NOT_HERE => {
                    last = wire.to_string();
                    self.holder = None;
                }
                Err(SessionError::Net(NetError::Remote(wire)))
                    if wire.code == WireError::BUSY && busy < BUSY_RETRIES =>
                {
                    // The same host, later: a busy answer is no hop.
                    let wait_ms = BUSY_BACKOFF_MS << busy;
                    tracing::debug!(wait_ms, "host busy; retrying");
                    busy += 1;
                    hops -= 1;
                    drop(_e);
                    tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                }
                Err(SessionError::Net(NetError::Remote(wire))) => {
                    return Err(RefError::Refused(wire));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "host unreachable; looking up again");
                    last = e.to_string();
                    if self.unreachable.len() < HOPS_MAX && !self.unreachable.contains(&holder.host)
                    {
                        self.unreachable.push(holder.host);
                    }
                    self.holder = None;
                }
            }
        }
        Err(RefError::GaveUp {
            who: self.who(),
            hops: HOPS_MAX,
            last,
        })
    }

    /// The owner's call `request` on the mailbox, signed with the
    /// session's key (afresh for each attempt, so each has its own nonce).
    pub async fn owner_call(
        &mut self,
        session: &Session,
        request: Request,
    ) -> Result<Response, RefError> {
        let key = session.key();
        let answer = self
            .call(session, |user| {
                let call = OwnerCall {
                    mailbox: user,
                    request: request.clone(),
                };
                Signed::sign(key, OWNER_CALL, now_ms(), &call)
                    .map(HostRequest::Owner)
                    .map_err(RefError::Sign)
            })
            .await?;
        match answer {
            HostResponse::Reply(r) => Ok(*r),
            other => Err(RefError::NotAReply(Box::new(other))),
        }
    }

    /// The owner's call `verb` on the mailbox, answered with the verb's
    /// own answer type.
    pub async fn ask<V: Verb>(
        &mut self,
        session: &Session,
        verb: V,
    ) -> Result<V::Answer, RefError> {
        let response = self.owner_call(session, verb.into()).await?;
        Ok(V::answer(response)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_ids_and_names() {
        let hex = "ab".repeat(32);
        assert_eq!(Target::parse(&hex), Target::User(UserId([0xab; 32])));
        assert_eq!(Target::parse("alice"), Target::Name("alice".into()));
    }

    #[test]
    fn a_wrong_answer_keeps_what_was_asked_and_what_came() {
        let wrong = UnexpectedAnswer {
            verb: "list-folder",
            answer: "Stats",
        };
        let e = RefError::from(wrong);
        assert_eq!(e.to_string(), wrong.to_string());
        assert!(matches!(e, RefError::Unexpected(w) if w == wrong));
    }
}
