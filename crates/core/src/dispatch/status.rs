//! The monitoring view behind `dem admin status --json`: like the paper's
//! dispatch-unit monitor, it shows the known dispatch units, the hosts with
//! what they hold, on-line and off-line users and the mailbox spread. It is
//! computed from the tables at a given `now`, since liveness depends on it.

pub use dem_proto::dispatch::status::*;
use std::collections::BTreeMap;

use super::DispatchUnit;
use dem_identity::{HostId, UserId};

impl DispatchUnit {
    /// The status view at `now_ms`.
    pub fn status(&self, now_ms: u64) -> StatusView {
        let t = &self.tables;
        let mut names: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
        for (name, r) in &t.names {
            names.entry(r.user).or_default().push(name.clone());
        }
        let label = |user: &UserId| match names.get(user).and_then(|n| n.first()) {
            Some(name) => name.clone(),
            None => user.to_hex(),
        };
        let online = |h: &HostId| t.hosts.get(h).is_some_and(|r| r.is_online(now_ms));

        let mut held: BTreeMap<HostId, (Vec<String>, usize)> = BTreeMap::new();
        for (user, r) in &t.mailboxes {
            for h in &r.hosts {
                held.entry(*h).or_default().0.push(label(user));
            }
        }
        for r in t.attachments.values() {
            for h in &r.hosts {
                held.entry(*h).or_default().1 += 1;
            }
        }

        let units = t
            .units
            .iter()
            .map(|(id, r)| UnitStatus {
                id: *id,
                addr: r.addr.clone(),
                seen_ms: r.seen_ms,
                is_self: *id == self.id,
            })
            .collect::<Vec<_>>();
        let hosts = t
            .hosts
            .iter()
            .map(|(id, r)| {
                let (mailboxes, attachments) = held.remove(id).unwrap_or_default();
                HostStatus {
                    id: *id,
                    addr: r.addr.clone(),
                    online: r.is_online(now_ms),
                    state: r.state,
                    epoch: r.epoch,
                    capacity: r.capacity,
                    load: r.load,
                    lease_expires_ms: r.lease_expires_ms,
                    last_seen_ms: r.last_seen_ms,
                    mailboxes,
                    attachments,
                    operator: r.operator.clone(),
                }
            })
            .collect::<Vec<_>>();

        // Every user with a mailbox record or a name.
        let mut ids: Vec<UserId> = t.mailboxes.keys().chain(names.keys()).copied().collect();
        ids.sort();
        ids.dedup();
        let users = ids
            .into_iter()
            .map(|user| {
                let rec = t.mailboxes.get(&user);
                let user_names = names.get(&user).cloned().unwrap_or_default();
                let home = rec.and_then(|r| r.home);
                UserStatus {
                    user,
                    name: user_names.first().cloned(),
                    names: user_names,
                    online: home.as_ref().is_some_and(online),
                    home,
                    hosts: rec.map(|r| r.hosts.clone()).unwrap_or_default(),
                    epoch: rec.map(|r| r.epoch).unwrap_or_default(),
                }
            })
            .collect::<Vec<_>>();

        let users_online = users.iter().filter(|u| u.online).count();
        let summary = Summary {
            units: units.len(),
            hosts_online: hosts.iter().filter(|h| h.online).count(),
            hosts_known: hosts.len(),
            users_online,
            users_offline: users.len() - users_online,
            mailboxes: t.mailboxes.values().filter(|r| !r.hosts.is_empty()).count(),
            attachments: t
                .attachments
                .values()
                .filter(|r| !r.hosts.is_empty())
                .count(),
        };
        let attachments = t
            .attachments
            .iter()
            .filter(|(_, r)| !r.hosts.is_empty())
            .take(STATUS_ATTACHMENTS_MAX)
            .map(|(id, r)| AttachmentStatus {
                id: *id,
                hosts: r.hosts.clone(),
                epoch: r.epoch,
                size_bytes: r.size_bytes,
                referenced_until_ms: r.referenced_until_ms,
            })
            .collect();
        StatusView {
            now_ms,
            unit: self.id,
            summary,
            units,
            hosts,
            users,
            attachments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::limits::LEASE_MS;
    use super::super::tables::{AttachmentRecord, MailboxRecord};
    use super::super::testutil::*;
    use dem_identity::Epoch;
    use dem_proto::AttachmentId;

    #[test]
    fn status_shows_hosts_users_and_units() {
        let mut u = unit_with_hosts(0, 2);
        u.handle_heartbeat(LEASE_MS, host(2), 1).unwrap();
        u.register_name(0, "alice", user(1), 0).unwrap();
        let mb = |hosts, home| MailboxRecord {
            hosts,
            epoch: Epoch(1),
            home,
            ..Default::default()
        };
        u.tables
            .mailboxes
            .insert(user(1), mb(vec![host(1)], Some(host(2))));
        u.tables
            .mailboxes
            .insert(user(2), mb(vec![host(1), host(2)], Some(host(1))));
        let id: AttachmentId = "aa".repeat(32).parse().unwrap();
        let att = AttachmentRecord {
            hosts: vec![host(2)],
            size_bytes: 1,
            epoch: Epoch(1),
            ..Default::default()
        };
        u.tables.attachments.insert(id, att);

        let s = u.status(LEASE_MS);
        assert_eq!(s.summary.hosts_online, 1);
        assert_eq!((s.summary.users_online, s.summary.users_offline), (1, 1));
        assert_eq!(
            (s.summary.mailboxes, s.summary.attachments, s.summary.units),
            (2, 1, 1)
        );
        assert!(s.units[0].is_self);
        let h1 = &s.hosts[0];
        assert_eq!((h1.id, h1.online), (host(1), false));
        assert_eq!(h1.mailboxes, vec!["alice".to_string(), user(2).to_hex()]);
        let h2 = &s.hosts[1];
        assert_eq!(
            (h2.online, h2.attachments, h2.mailboxes.len()),
            (true, 1, 1)
        );
        let alice = s.users.iter().find(|x| x.user == user(1)).unwrap();
        assert_eq!((alice.name.as_deref(), alice.online), (Some("alice"), true));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["users"][0]["name"], "alice");
        assert_eq!(json["hosts"][0]["state"], "active");
        assert_eq!(s.attachments.len(), 1);
        assert_eq!(s.attachments[0].hosts, vec![host(2)]);
    }
}
