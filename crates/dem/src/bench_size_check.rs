//! The client side of `dem bench size` (`bench_size.rs`): listing the
//! whole mailbox as `dem inbox` pages it, reading a sample raw as `dem read
//! --raw` does and checking it against the bytes sent, ordering moves, and
//! asking hosts directly where the scenario must know which host answered
//! (a restarted holder, a replica catching up).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::bench_mail::{StoredMail, unique};
use super::bench_net::{User, ms};
use super::bench_size::{bounded, tag};
use dem_client::{MailboxRef, Target, now_ms};
use dem_identity::{HostId, MOVE_ORDER, OWNER_CALL, Signed};
use dem_message::corpus::Rng;
use dem_net::NetError;
use dem_node::replica::VersionVector;
use dem_proto::host::ReplicationTraffic;
use dem_proto::mail::MailboxStats;
use dem_proto::mailbox::Response;
use dem_proto::mailbox::verbs::{ListFolder, Stats};
use dem_proto::{
    DispatchRequest, DispatchResponse, HostRequest, HostResponse, MESSAGE_BYTES_MAX, MoveOrder,
    OwnerCall,
};

/// A listing page: the guest's `PAGE_LIMIT_MAX`.
const PAGE: u32 = 1000;
/// The folder deliveries land in.
const FOLDER: &str = "INBOX";
/// Longest a move may take: the hosts' own limit (`MIGRATE_TIMEOUT`) and
/// a margin. `dem admin move` waits only the usual 30 s for the answer,
/// which a move of gigabytes can outlast.
const MOVE_LIMIT: Duration = Duration::from_secs(150);
/// Longest one sample read may take, on average, before the check fails.
const READ_LIMIT_PER_MAIL: Duration = Duration::from_secs(2);

/// Mails drawn at random from a listing, and how to know what each was
/// sent as.
pub(super) struct Sample<'a> {
    ids: Vec<String>,
    pools: &'a [Vec<StoredMail>],
    run: &'a str,
}

/// One pass over the sample.
pub(super) struct Read {
    pub ms_per_mail: f64,
    /// The ids that did not read back as sent, with why.
    pub bad: Vec<String>,
}

impl<'a> Sample<'a> {
    /// `n` of `ids`, drawn with a fixed seed so runs are comparable.
    pub fn draw(ids: &[String], n: usize, pools: &'a [Vec<StoredMail>], run: &'a str) -> Self {
        let mut r = Rng::new(16);
        let mut picked: Vec<String> = Vec::new();
        while picked.len() < n.min(ids.len()) {
            let id = &ids[r.below(ids.len() as u64) as usize];
            if !picked.contains(id) {
                picked.push(id.clone());
            }
        }
        Sample {
            ids: picked,
            pools,
            run,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Reads every sampled mail raw through a fresh reference (so from
    /// whoever holds the mailbox now) and compares it with what was sent:
    /// the tag in front names the sender and delivery, which give the
    /// bytes.
    pub async fn check(&self, user: &User) -> anyhow::Result<Read> {
        let limit = READ_LIMIT_PER_MAIL * self.ids.len().max(1) as u32;
        match bounded("reading the sample", limit, self.read_all(user)).await {
            Ok(read) => read,
            // A failed check, not a failed bench: the other steps still
            // run and report.
            Err(e) => Ok(Read {
                ms_per_mail: f64::NAN,
                bad: vec![e.to_string()],
            }),
        }
    }

    async fn read_all(&self, user: &User) -> anyhow::Result<Read> {
        let mut r = MailboxRef::new(Target::User(user.id()));
        let mut bad = Vec::new();
        let t = Instant::now();
        for id in &self.ids {
            let got =
                dem_client::message::read_message(&user.session, &mut r, id, false, &user.keyring)
                    .await;
            match got {
                Ok(m) => {
                    if let Err(e) = self.matches_sent(&m.bytes) {
                        bad.push(format!("{id}: {e}"));
                    }
                }
                Err(e) => bad.push(format!("{id}: {e}")),
            }
        }
        Ok(Read {
            ms_per_mail: ms(t.elapsed()) / self.ids.len().max(1) as f64,
            bad,
        })
    }

    fn matches_sent(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let line = bytes
            .split(|b| *b == b'\n')
            .next()
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.strip_prefix("X-Bench-Delivery: "))
            .map(|l| l.trim_end_matches('\r'))
            .context("no delivery tag in front")?;
        let mut parts = line.rsplitn(3, '-');
        let (Some(i), Some(s), Some(run)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("a malformed tag {line:?}");
        };
        let (i, s): (u64, usize) = (i.parse()?, s.parse()?);
        if run != self.run {
            bail!("a tag {line:?} of another run");
        }
        let pool = self.pools.get(s).context("a tag naming no sender")?;
        let sent = unique(pool, i, &tag(run, s, i)).stored;
        if sent != bytes {
            bail!("{} bytes read, not the {} sent", bytes.len(), sent.len());
        }
        Ok(())
    }
}

/// Every mail id in the folder, paged newest first as `dem inbox` asks.
pub(super) async fn list_all(user: &User) -> anyhow::Result<Vec<String>> {
    bounded("listing the mailbox", Duration::from_secs(600), async {
        let mut r = MailboxRef::new(Target::User(user.id()));
        let mut ids = Vec::new();
        loop {
            let page = r
                .ask(
                    &user.session,
                    ListFolder {
                        folder: FOLDER.to_string(),
                        offset: ids.len() as u32,
                        limit: PAGE,
                    },
                )
                .await?;
            let done = page.items.is_empty();
            ids.extend(page.items.into_iter().map(|m| m.id));
            if done || ids.len() >= page.total as usize {
                return anyhow::Ok(ids);
            }
        }
    })
    .await?
}

/// The mailbox's own account of itself.
pub(super) async fn stats(user: &User) -> anyhow::Result<MailboxStats> {
    let mut r = MailboxRef::new(Target::User(user.id()));
    Ok(r.ask(&user.session, Stats {}).await?)
}

/// The hosts the units list for `user`'s mailbox, in their order.
pub(super) async fn holders(user: &User) -> anyhow::Result<Vec<HostId>> {
    match user
        .session
        .dispatch(&DispatchRequest::LookupUser { user: user.id() })
        .await?
    {
        DispatchResponse::Mailbox(found) => Ok(found.hosts.iter().map(|h| h.host).collect()),
        other => bail!("unexpected answer to LookupUser: {other:?}"),
    }
}

/// Orders `owner`'s mailbox moved from `from` to `to`, as `dem admin move`
/// does, on a connection set up first (its handshake is not the move's);
/// the time to the source's answer, or the refusal.
pub(super) async fn pull(
    owner: &User,
    (from_addr, from): &(String, HostId),
    (to_addr, to): &(String, HostId),
) -> anyhow::Result<Result<Duration, String>> {
    let order = MoveOrder {
        user: owner.id(),
        to: *to,
    };
    let signed = Signed::sign(&owner.key, MOVE_ORDER, now_ms(), &order)?;
    let conn = owner.session.connect(from_addr, *from).await?;
    let req = HostRequest::Pull {
        order: signed,
        to_addr: Some(to_addr.clone()),
    };
    let t = Instant::now();
    let answer = conn
        .request::<_, HostResponse>(&req, MESSAGE_BYTES_MAX, MOVE_LIMIT)
        .await;
    let took = t.elapsed();
    match answer {
        Ok(HostResponse::Done | HostResponse::Imported { .. }) => Ok(Ok(took)),
        Ok(other) => Ok(Err(format!("unexpected answer to Pull: {other:?}"))),
        Err(NetError::Remote(wire)) => Ok(Err(format!("refused: {wire}"))),
        Err(e) => bail!("ordering the move: {e}"),
    }
}

/// The replication counters of the host at `at`.
pub(super) async fn traffic(
    user: &User,
    (addr, host): &(String, HostId),
) -> anyhow::Result<ReplicationTraffic> {
    match user
        .session
        .host_request(addr, *host, &HostRequest::Traffic)
        .await?
    {
        HostResponse::Traffic(t) => Ok(t),
        other => bail!("unexpected answer to Traffic: {other:?}"),
    }
}

/// Waits until every host of `at` reports the same version vector for
/// `user`'s mailbox.
pub(super) async fn wait_in_sync(
    user: &User,
    at: &[(String, HostId)],
    limit: Duration,
) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let mut seen: Vec<Option<VersionVector>> = Vec::new();
        for (addr, host) in at {
            let req = HostRequest::Holds { mailbox: user.id() };
            seen.push(match user.session.host_request(addr, *host, &req).await {
                Ok(HostResponse::Holds { vv }) => vv,
                _ => None,
            });
        }
        if seen.iter().all(|v| v.is_some() && *v == seen[0]) {
            return Ok(());
        }
        if t.elapsed() > limit {
            bail!("the replicas did not agree within {limit:?}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asks the host at `at` itself (not whichever holder a lookup names) for
/// a page of the mailbox until it answers one.
pub(super) async fn first_list_at(
    user: &User,
    (addr, host): &(String, HostId),
    limit: Duration,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        let call = OwnerCall {
            mailbox: user.id(),
            request: ListFolder {
                folder: FOLDER.to_string(),
                offset: 0,
                limit: 1,
            }
            .into(),
        };
        let req = HostRequest::Owner(Signed::sign(&user.key, OWNER_CALL, now_ms(), &call)?);
        match user.session.host_request(addr, *host, &req).await {
            Ok(HostResponse::Reply(r)) if matches!(*r, Response::Page(_)) => return Ok(()),
            Ok(other) => last = format!("{other:?}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the restarted host did not answer a listing within {limit:?}: {last}")
}

/// Sets R=1 for the network as `dem admin replication` does (through the
/// unit's HTTP listener at `http`) and waits until `user`'s mailbox is
/// listed on one host; that host.
pub(super) async fn trim_to_one(
    user: &User,
    http: &str,
    token: &str,
    limit: Duration,
) -> anyhow::Result<HostId> {
    let exe = std::env::current_exe().context("finding the dem binary")?;
    let out = tokio::process::Command::new(exe)
        .args([
            "admin",
            "replication",
            "--replicas",
            "1",
            "--write-quorum",
            "1",
        ])
        .args(["--http", http, "--token", token, "--by", "bench"])
        .env_remove("DEM_HOME")
        .output();
    let out = bounded("dem admin replication", Duration::from_secs(60), out).await??;
    if !out.status.success() {
        bail!(
            "dem admin replication failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let t = Instant::now();
    loop {
        let listed = holders(user).await?;
        if let [one] = listed[..] {
            return Ok(one);
        }
        if t.elapsed() > limit {
            bail!("the mailbox is still listed on {listed:?} after {limit:?} at R=1");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
