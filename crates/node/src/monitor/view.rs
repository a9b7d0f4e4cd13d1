//! What the monitor's JSON says: one page of each list of the status view,
//! filtered by a search, and the inspect answers read from the tables.
//!
//! At 1,000 hosts and 100,000 users the whole view is megabytes, too much
//! to push to a browser twice a second, so the page asks for one page of
//! each list and a search; the counts at the top are always of everything.
//! Inspect answers say what the tables know (holders, epochs, leases,
//! load, capacity, move grants); the unit never holds mail content.

use serde::Serialize;
use serde_json::{Value, json};

use crate::dispatch::{DispatchUnit, StatusView};
use dem_identity::{DispatchId, HostId, UserId};
use dem_proto::AttachmentId;
use dem_proto::dispatch::status::{HostStatus, UserStatus};
use dem_proto::dispatch::tables::MoveGrant;
use std::collections::BTreeMap;

/// Rows per page unless asked otherwise.
pub const PAGE_SIZE: usize = 50;
/// Most rows a page may ask for.
pub const PAGE_SIZE_MAX: usize = 500;
/// Longest search string.
pub const SEARCH_MAX: usize = 200;
/// Longest query string accepted at all.
pub const QUERY_MAX: usize = 2048;
/// Most mailbox names listed with one host row (the count says the rest).
pub const HOST_ROW_NAMES: usize = 20;
/// Most objects an inspect answer lists (the count says the rest).
pub const INSPECT_LIST_MAX: usize = 1000;

/// Why a request's parameters were refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string is {0} bytes; at most {QUERY_MAX}")]
    TooLong(usize),
    #[error("`{key}` must be a number, not {value:?}")]
    NotANumber { key: String, value: String },
    #[error("the search is {0} characters; at most {SEARCH_MAX}")]
    SearchTooLong(usize),
    #[error("`{key}` is not valid percent-encoded UTF-8")]
    Encoding { key: String },
}

/// The parameters of a page: `q` (search, case-insensitive), `size`, and
/// `hosts_page`, `users_page`, `attachments_page` (from 0), or `page` for
/// all three.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub q: String,
    pub size: usize,
    pub hosts_page: usize,
    pub users_page: usize,
    pub attachments_page: usize,
    /// The `token` parameter, for the auth check.
    pub token: Option<String>,
}

impl PageQuery {
    /// Parses a raw query string (`a=1&b=x%20y`).
    pub fn parse(raw: Option<&str>) -> Result<Self, QueryError> {
        let raw = raw.unwrap_or("");
        if raw.len() > QUERY_MAX {
            return Err(QueryError::TooLong(raw.len()));
        }
        let mut out = PageQuery {
            size: PAGE_SIZE,
            ..Default::default()
        };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| QueryError::Encoding {
                key: key.to_owned(),
            })?;
            let number = || {
                value.parse::<usize>().map_err(|_| QueryError::NotANumber {
                    key: key.to_owned(),
                    value: value.chars().take(40).collect(),
                })
            };
            match key {
                "q" => {
                    let n = value.chars().count();
                    if n > SEARCH_MAX {
                        return Err(QueryError::SearchTooLong(n));
                    }
                    out.q = value.trim().to_lowercase();
                }
                "size" => out.size = number()?.clamp(1, PAGE_SIZE_MAX),
                "page" => {
                    let p = number()?;
                    (out.hosts_page, out.users_page, out.attachments_page) = (p, p, p);
                }
                "hosts_page" => out.hosts_page = number()?,
                "users_page" => out.users_page = number()?,
                "attachments_page" => out.attachments_page = number()?,
                "token" => out.token = Some(value),
                // Unknown keys are ignored, as browsers add their own.
                _ => {}
            }
        }
        Ok(out)
    }
}

/// Decodes `%XX` and `+` (a space); `None` if that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// One page of a list.
#[derive(Serialize)]
struct Page<T> {
    /// Rows that match the search.
    total: usize,
    page: usize,
    pages: usize,
    items: Vec<T>,
}

fn paginate<'a, T: 'a, R>(
    items: impl Iterator<Item = &'a T>,
    page: usize,
    size: usize,
    row: impl Fn(&'a T) -> R,
) -> Page<R> {
    let matching: Vec<&T> = items.collect();
    let total = matching.len();
    let pages = total.div_ceil(size).max(1);
    let page = page.min(pages - 1);
    let items = matching
        .into_iter()
        .skip(page * size)
        .take(size)
        .map(row)
        .collect();
    Page {
        total,
        page,
        pages,
        items,
    }
}

/// A host row: the host with at most [`HOST_ROW_NAMES`] mailbox names.
#[derive(Serialize)]
struct HostRow<'a> {
    id: HostId,
    addr: &'a str,
    online: bool,
    state: dem_proto::dispatch::tables::HostState,
    epoch: u64,
    capacity: u64,
    load: u64,
    lease_expires_ms: u64,
    last_seen_ms: u64,
    mailbox_count: usize,
    mailboxes: &'a [String],
    attachments: usize,
}

fn host_row(h: &HostStatus) -> HostRow<'_> {
    HostRow {
        id: h.id,
        addr: &h.addr,
        online: h.online,
        state: h.state,
        epoch: h.epoch.0,
        capacity: h.capacity,
        load: h.load,
        lease_expires_ms: h.lease_expires_ms,
        last_seen_ms: h.last_seen_ms,
        mailbox_count: h.mailboxes.len(),
        mailboxes: &h.mailboxes[..h.mailboxes.len().min(HOST_ROW_NAMES)],
        attachments: h.attachments,
    }
}

fn host_matches(h: &HostStatus, q: &str) -> bool {
    q.is_empty()
        || h.id.to_hex().contains(q)
        || h.addr.contains(q)
        || (q == "online" && h.online)
        || (q == "offline" && !h.online)
        || h.mailboxes.iter().any(|m| m.to_lowercase() == q)
}

fn user_matches(u: &UserStatus, q: &str) -> bool {
    q.is_empty()
        || u.user.to_hex().contains(q)
        || u.names.iter().any(|n| n.to_lowercase().contains(q))
        || (q == "online" && u.online)
        || (q == "offline" && !u.online)
        || u.hosts.iter().any(|h| h.to_hex().starts_with(q))
}

/// One page of the status view for `query`, as JSON.
pub fn page(view: &StatusView, query: &PageQuery) -> Value {
    let q = query.q.as_str();
    let hosts = paginate(
        view.hosts.iter().filter(|h| host_matches(h, q)),
        query.hosts_page,
        query.size,
        host_row,
    );
    let users = paginate(
        view.users.iter().filter(|u| user_matches(u, q)),
        query.users_page,
        query.size,
        |u| u,
    );
    let attachments = paginate(
        view.attachments.iter().filter(|a| {
            q.is_empty()
                || a.id.to_hex().contains(q)
                || a.hosts.iter().any(|h| h.to_hex().starts_with(q))
        }),
        query.attachments_page,
        query.size,
        |a| a,
    );
    let units: Vec<_> = view.units.iter().take(PAGE_SIZE_MAX).collect();
    json!({
        "now_ms": view.now_ms,
        "unit": view.unit,
        "summary": view.summary,
        "q": q,
        "units": units,
        "hosts": hosts,
        "users": users,
        "attachments": attachments,
    })
}

/// What to inspect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Host,
    Mailbox,
    Attachment,
    Unit,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "host" => Kind::Host,
            "mailbox" => Kind::Mailbox,
            "attachment" => Kind::Attachment,
            "unit" => Kind::Unit,
            _ => return None,
        })
    }
}

/// Why an inspect found nothing to answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    BadId(String),
    #[error("{0} is not known to this unit")]
    NotFound(String),
}

fn grants(pending: &BTreeMap<HostId, MoveGrant>, now_ms: u64, epoch: dem_identity::Epoch) -> Value {
    pending
        .iter()
        .map(|(target, g)| {
            json!({
                "target": target,
                "base_epoch": g.base_epoch.0,
                "expires_ms": g.expires_ms,
                "live": g.is_live(now_ms, epoch),
            })
        })
        .collect()
}

/// The holders of an object, each with whether its lease holds now.
fn holders(unit: &DispatchUnit, hosts: &[HostId], now_ms: u64) -> Value {
    let t = unit.tables();
    hosts
        .iter()
        .map(|h| {
            let rec = t.hosts.get(h);
            json!({
                "host": h,
                "addr": rec.map(|r| r.addr.as_str()),
                "online": rec.is_some_and(|r| r.is_online(now_ms)),
            })
        })
        .collect()
}

/// What the tables know about one object, as JSON.
pub fn inspect(
    unit: &DispatchUnit,
    now_ms: u64,
    kind: Kind,
    id: &str,
) -> Result<Value, InspectError> {
    let t = unit.tables();
    let bad = |e: &dyn std::fmt::Display| InspectError::BadId(e.to_string());
    match kind {
        Kind::Host => {
            let host: HostId = id.parse().map_err(|e| bad(&e))?;
            let r = t
                .hosts
                .get(&host)
                .ok_or_else(|| InspectError::NotFound(format!("host {id}")))?;
            let held: Vec<(&UserId, u64)> = t
                .mailboxes
                .iter()
                .filter(|(_, m)| m.hosts.contains(&host))
                .map(|(u, m)| (u, m.epoch.0))
                .collect();
            let names = names_by_user(unit);
            let mailboxes: Vec<Value> = held
                .iter()
                .take(INSPECT_LIST_MAX)
                .map(|(u, epoch)| json!({"user": u, "name": names.get(*u), "epoch": epoch}))
                .collect();
            let attachments: Vec<&AttachmentId> = t
                .attachments
                .iter()
                .filter(|(_, a)| a.hosts.contains(&host))
                .map(|(id, _)| id)
                .collect();
            let homes = t
                .mailboxes
                .values()
                .filter(|m| m.home == Some(host))
                .count();
            let incoming = t
                .mailboxes
                .values()
                .filter(|m| m.pending.contains_key(&host))
                .count()
                + t.attachments
                    .values()
                    .filter(|a| a.pending.contains_key(&host))
                    .count();
            Ok(json!({
                "kind": "host",
                "id": host,
                "addr": r.addr,
                "online": r.is_online(now_ms),
                "accepts_objects": r.accepts_objects(now_ms),
                "state": r.state,
                "epoch": r.epoch.0,
                "capacity": r.capacity,
                "load": r.load,
                "lease_expires_ms": r.lease_expires_ms,
                "lease_left_ms": r.lease_expires_ms.saturating_sub(now_ms),
                "last_seen_ms": r.last_seen_ms,
                "mailbox_count": held.len(),
                "mailboxes": mailboxes,
                "attachment_count": attachments.len(),
                "attachments": attachments.iter().take(INSPECT_LIST_MAX).collect::<Vec<_>>(),
                "home_of": homes,
                "incoming_move_grants": incoming,
                "now_ms": now_ms,
            }))
        }
        Kind::Mailbox => {
            // A name, or the owner's user id in hex.
            let user = match t.names.get(id) {
                Some(r) => r.user,
                None => id
                    .parse::<UserId>()
                    .map_err(|_| InspectError::NotFound(format!("mailbox {id}")))?,
            };
            let r = t.mailboxes.get(&user);
            let names = t.names_of(user);
            if r.is_none() && names.is_empty() {
                return Err(InspectError::NotFound(format!("mailbox {id}")));
            }
            let claims: Vec<Value> = names
                .iter()
                .filter_map(|n| {
                    t.names
                        .get(n)
                        .map(|c| json!({"name": n, "issued_ms": c.issued_ms}))
                })
                .collect();
            let home_online = r
                .and_then(|r| r.home)
                .and_then(|h| t.hosts.get(&h))
                .is_some_and(|h| h.is_online(now_ms));
            Ok(json!({
                "kind": "mailbox",
                "user": user,
                "names": claims,
                "hosts": r.map(|r| holders(unit, &r.hosts, now_ms)).unwrap_or(Value::Array(Vec::new())),
                "replicas_wanted": unit.limits().replicas,
                "epoch": r.map(|r| r.epoch.0),
                "home": r.and_then(|r| r.home),
                "home_set_ms": r.map(|r| r.home_set_ms),
                "online": home_online,
                "move_grants": r.map(|r| grants(&r.pending, now_ms, r.epoch)),
                "now_ms": now_ms,
            }))
        }
        Kind::Attachment => {
            let att = AttachmentId::parse(id).map_err(|e| bad(&e))?;
            let r = t
                .attachments
                .get(&att)
                .ok_or_else(|| InspectError::NotFound(format!("attachment {id}")))?;
            Ok(json!({
                "kind": "attachment",
                "id": att,
                "hosts": holders(unit, &r.hosts, now_ms),
                "removed": r.hosts.is_empty(),
                "size_bytes": r.size_bytes,
                "epoch": r.epoch.0,
                "referenced_until_ms": r.referenced_until_ms,
                "referenced": r.is_referenced(now_ms),
                "move_grants": grants(&r.pending, now_ms, r.epoch),
                "now_ms": now_ms,
            }))
        }
        Kind::Unit => {
            let wanted: DispatchId = id.parse().map_err(|e| bad(&e))?;
            let r = t
                .units
                .get(&wanted)
                .ok_or_else(|| InspectError::NotFound(format!("unit {id}")))?;
            let is_self = wanted == unit.id();
            // Only the answering unit knows its own limits and table sizes.
            let own = is_self.then(|| {
                let l = unit.limits();
                json!({
                    "lease_ms": l.lease_ms,
                    "replicas": l.replicas,
                    "write_quorum": l.write_quorum,
                    "attachment_grace_ms": l.attachment_grace_ms,
                    "hosts": t.hosts.len(),
                    "names": t.names.len(),
                    "mailboxes": t.mailboxes.len(),
                    "attachments": t.attachments.len(),
                    "units": t.units.len(),
                })
            });
            Ok(json!({
                "kind": "unit",
                "id": wanted,
                "addr": r.addr,
                "seen_ms": r.seen_ms,
                "is_self": is_self,
                "tables": own,
                "now_ms": now_ms,
            }))
        }
    }
}

/// Each user's first name.
fn names_by_user(unit: &DispatchUnit) -> BTreeMap<UserId, &str> {
    let mut out = BTreeMap::new();
    for (name, r) in &unit.tables().names {
        out.entry(r.user).or_insert(name.as_str());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_core::dispatch::testutil::{host, unit_with_hosts, user};

    #[test]
    fn queries_parse_and_are_bounded() {
        let q = PageQuery::parse(Some("q=Al%20ice+x&size=9999&users_page=3&token=t&x=1")).unwrap();
        assert_eq!(q.q, "al ice x");
        assert_eq!(q.size, PAGE_SIZE_MAX);
        assert_eq!(q.users_page, 3);
        assert_eq!(q.token.as_deref(), Some("t"));
        assert_eq!(PageQuery::parse(None).unwrap().size, PAGE_SIZE);
        assert!(matches!(
            PageQuery::parse(Some("page=x")),
            Err(QueryError::NotANumber { .. })
        ));
        let long = format!("q={}", "a".repeat(SEARCH_MAX + 1));
        assert!(matches!(
            PageQuery::parse(Some(&long)),
            Err(QueryError::SearchTooLong(_))
        ));
        let huge = "a".repeat(QUERY_MAX + 1);
        assert!(matches!(
            PageQuery::parse(Some(&huge)),
            Err(QueryError::TooLong(_))
        ));
        assert!(PageQuery::parse(Some("q=%ff")).is_err());
        assert!(PageQuery::parse(Some("q=%4")).is_err());
    }

    #[test]
    fn pages_count_everything_and_show_one_slice() {
        let mut u = unit_with_hosts(0, 7);
        for i in 0..5u8 {
            u.register_name(0, &format!("user{i}"), user(i), 0).unwrap();
        }
        let view = u.status(1);
        let q = PageQuery {
            size: 3,
            hosts_page: 2,
            users_page: 99,
            ..PageQuery::parse(None).unwrap()
        };
        let p = page(&view, &q);
        assert_eq!(p["hosts"]["total"], 7);
        assert_eq!(p["hosts"]["pages"], 3);
        assert_eq!(p["hosts"]["items"].as_array().unwrap().len(), 1);
        // A page past the end shows the last one.
        assert_eq!(p["users"]["page"], 1);
        assert_eq!(p["users"]["items"].as_array().unwrap().len(), 2);
        let q = PageQuery::parse(Some("q=USER3")).unwrap();
        let p = page(&view, &q);
        assert_eq!(p["users"]["total"], 1);
        assert_eq!(p["users"]["items"][0]["name"], "user3");
    }

    #[test]
    fn a_page_stays_small_at_a_thousand_hosts_and_100k_users() {
        use dem_identity::Epoch;
        use dem_proto::dispatch::status::Summary;
        let hosts: Vec<HostStatus> = (0..1000u32)
            .map(|i| HostStatus {
                id: HostId(blake3::hash(&i.to_le_bytes()).into()),
                addr: format!("10.0.{}.{}:4433", i / 256, i % 256),
                online: i % 3 != 0,
                state: dem_proto::dispatch::tables::HostState::Active,
                epoch: Epoch(1),
                capacity: 1000,
                load: 300,
                lease_expires_ms: 0,
                last_seen_ms: 0,
                mailboxes: (0..300).map(|m| format!("user{}", i * 100 + m)).collect(),
                attachments: 0,
                operator: None,
            })
            .collect();
        let users: Vec<UserStatus> = (0..100_000u32)
            .map(|i| UserStatus {
                user: UserId(blake3::hash(&i.to_be_bytes()).into()),
                name: Some(format!("user{i}")),
                names: vec![format!("user{i}")],
                online: i % 2 == 0,
                home: None,
                hosts: vec![hosts[(i % 1000) as usize].id; 3],
                epoch: Epoch(1),
            })
            .collect();
        let view = StatusView {
            now_ms: 0,
            unit: DispatchId([1; 32]),
            summary: Summary::default(),
            units: Vec::new(),
            hosts,
            users,
            attachments: Vec::new(),
        };
        let p = page(&view, &PageQuery::parse(Some("users_page=1500")).unwrap());
        assert_eq!(p["users"]["total"], 100_000);
        assert_eq!(p["users"]["items"][0]["name"], "user75000");
        let p = page(&view, &PageQuery::parse(Some("q=user99999")).unwrap());
        assert_eq!(p["users"]["total"], 1);
        // Every host lists at most a few of its 300 mailboxes.
        let bytes = page(&view, &PageQuery::parse(None).unwrap())
            .to_string()
            .len();
        assert!(bytes < 200_000, "a page of {bytes} bytes");
    }

    #[test]
    fn inspect_answers_what_the_tables_know_and_refuses_bad_ids() {
        let mut u = unit_with_hosts(0, 2);
        u.register_name(0, "alice", user(1), 0).unwrap();
        let h = host(1).to_hex();
        let a = inspect(&u, 1, Kind::Host, &h).unwrap();
        assert_eq!(a["id"], h);
        assert_eq!(a["online"], true);
        let m = inspect(&u, 1, Kind::Mailbox, "alice").unwrap();
        assert_eq!(m["user"], user(1).to_hex());
        assert_eq!(m["names"][0]["name"], "alice");
        let me = u.id().to_hex();
        let unit = inspect(&u, 1, Kind::Unit, &me).unwrap();
        assert_eq!(unit["is_self"], true);
        assert!(unit["tables"]["lease_ms"].is_u64());
        assert!(matches!(
            inspect(&u, 1, Kind::Host, "zz"),
            Err(InspectError::BadId(_))
        ));
        assert!(matches!(
            inspect(&u, 1, Kind::Host, &host(9).to_hex()),
            Err(InspectError::NotFound(_))
        ));
        assert!(matches!(
            inspect(&u, 1, Kind::Mailbox, "bob"),
            Err(InspectError::NotFound(_))
        ));
        assert!(matches!(
            inspect(&u, 1, Kind::Attachment, "00"),
            Err(InspectError::BadId(_))
        ));
        assert_eq!(Kind::parse("host"), Some(Kind::Host));
        assert_eq!(Kind::parse("mail"), None);
    }
}
