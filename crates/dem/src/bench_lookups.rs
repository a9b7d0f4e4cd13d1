//! The lookup part of `dem bench net`: lookups fired at one dispatch unit
//! from several client connections with many in flight, either the way
//! every client sends them (`DispatchClient`, a pipeline per connection)
//! or with one QUIC stream per lookup, the baseline measured in the same
//! run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

use dem_client::{DispatchClient, identity_of};
use dem_identity::{KeyPair, UserId};
use dem_net::{Connection, Endpoint};
use dem_proto::{DispatchRequest, DispatchResponse, MESSAGE_BYTES_MAX};

/// Sizes of one lookup run.
pub(super) struct Lookups {
    pub total: u64,
    pub connections: usize,
    pub in_flight: usize,
}

/// How each lookup travels.
#[derive(Debug, Clone, Copy)]
pub(super) enum Path {
    /// Through `DispatchClient`: lookups share a pipeline stream.
    Pipeline,
    /// A stream of its own per lookup.
    StreamEach,
}

enum Asker {
    Client(DispatchClient),
    Conn(Connection),
}

impl Asker {
    async fn ask(&self, req: &DispatchRequest) -> anyhow::Result<DispatchResponse> {
        Ok(match self {
            Asker::Client(c) => c.request(req).await?,
            Asker::Conn(c) => {
                c.request(req, MESSAGE_BYTES_MAX, Duration::from_secs(10))
                    .await?
            }
        })
    }
}

/// Fires `n.total` lookups at the unit from `n.connections` clients, each
/// on its own endpoint (so its own connection) with `n.in_flight` lookups
/// in flight; returns answers per second.
pub(super) async fn lookups(
    unit: &str,
    targets: &[(UserId, String)],
    n: &Lookups,
    path: Path,
) -> anyhow::Result<f64> {
    let targets = Arc::new(targets.to_vec());
    let mut askers = Vec::new();
    for _ in 0..n.connections.max(1) {
        let key = KeyPair::generate()?;
        let endpoint = Endpoint::bind(([127, 0, 0, 1], 0).into(), identity_of(&key)?)?;
        let asker = match path {
            Path::Pipeline => Asker::Client(DispatchClient::new(endpoint, vec![unit.to_string()])?),
            Path::StreamEach => {
                let (conn, _) = endpoint.connect_unpinned(unit.parse()?).await?;
                Asker::Conn(conn)
            }
        };
        // Connect (and pin) before the clock starts.
        lookup_one(&asker, &targets, 0).await?;
        askers.push(Arc::new(asker));
    }
    let next = Arc::new(AtomicU64::new(0));
    let total = n.total;
    let mut tasks = tokio::task::JoinSet::new();
    let t = Instant::now();
    for asker in &askers {
        for _ in 0..n.in_flight.max(1) {
            let (asker, targets, next) = (asker.clone(), targets.clone(), next.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(());
                    }
                    lookup_one(&asker, &targets, i).await?;
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// Lookup `i`: by id on even, by name on odd numbers; checks the answer.
async fn lookup_one(asker: &Asker, targets: &[(UserId, String)], i: u64) -> anyhow::Result<()> {
    let (user, name) = &targets[(i as usize / 2) % targets.len()];
    let req = if i.is_multiple_of(2) {
        DispatchRequest::LookupUser { user: *user }
    } else {
        DispatchRequest::LookupName { name: name.clone() }
    };
    match asker.ask(&req).await? {
        DispatchResponse::Mailbox(found) if found.user == *user => Ok(()),
        other => bail!("unexpected lookup answer: {other:?}"),
    }
}
