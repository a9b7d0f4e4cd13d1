//! In-process tests of the service and of `DispatchClient` against real
//! units on loopback QUIC.

use super::*;
use crate::dispatch::client::{ClientError, DispatchClient};
use dem_identity::{KeyPair, Name, SignedNameClaim};
use dem_proto::DispatchResponse;

fn config(dir: &Path, peers: Vec<String>) -> ServiceConfig {
    let mut c = ServiceConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    c.peers = peers;
    c
}

/// A unit with no peers, serving from `dir`.
async fn lone_unit(dir: &Path) -> DispatchService {
    DispatchService::bind(config(dir, vec![])).await.unwrap()
}

/// A client endpoint with the identity of seed `b` (a host's or user's).
fn endpoint(b: u8) -> Endpoint {
    let identity = net::Identity::from_secret_bytes(&[b; 32]).unwrap();
    Endpoint::bind("127.0.0.1:0".parse().unwrap(), identity).unwrap()
}

fn client(b: u8, units: &[&DispatchService]) -> DispatchClient {
    let backbone = units.iter().map(|u| u.local_addr().to_string()).collect();
    DispatchClient::new(endpoint(b), backbone)
        .unwrap()
        .with_timeout(Duration::from_secs(3))
}

fn join(addr: &str) -> DispatchRequest {
    DispatchRequest::Join {
        addr: addr.into(),
        capacity: 10,
        load: 0,
        operator: None,
    }
}

fn register(key: &KeyPair, name: &str) -> DispatchRequest {
    let now = i64::try_from(now_ms()).unwrap();
    let claim = SignedNameClaim::sign(key, Name::new(name).unwrap(), None, now).unwrap();
    DispatchRequest::Register { claim }
}

async fn lookup(c: &DispatchClient, name: &str) -> Result<DispatchResponse, ClientError> {
    c.request(&DispatchRequest::LookupName { name: name.into() })
        .await
}

/// Polls `f` until it returns true, for at most 10 s.
async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn serves_restarts_with_its_tables_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let unit = lone_unit(dir.path()).await;
    let id = unit.id();
    let host = client(1, &[&unit]);
    let lease = host.request(&join("127.0.0.1:5001")).await.unwrap();
    assert!(matches!(lease, DispatchResponse::Lease { .. }));
    let (_, pinned) = host.units()[0];
    assert_eq!(pinned, Some(id), "the key is pinned on first contact");
    let user = client(2, &[&unit]);
    let alice = KeyPair::from_seed(&[7; 32]);
    let registered = user.request(&register(&alice, "alice")).await.unwrap();
    assert!(matches!(registered, DispatchResponse::Registered { .. }));
    // A refusal is a final answer with the unit's reason.
    let bob = KeyPair::from_seed(&[8; 32]);
    let err = user.request(&register(&bob, "alice")).await.unwrap_err();
    let wire = err.wire().expect("a refusal");
    assert!(wire.message.contains("is taken by"), "{wire}");

    unit.shutdown().await.unwrap();
    let unit = lone_unit(dir.path()).await;
    assert_eq!(unit.id(), id, "same key after a restart");
    let names = &unit.snapshot().names;
    assert_eq!(names["alice"].user, alice.user_id());
    unit.shutdown().await.unwrap();
}

#[tokio::test]
async fn two_units_replicate_and_the_client_falls_back() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = lone_unit(d1.path()).await;
    let b_peers = vec![a.local_addr().to_string()];
    // b joins a's network: it holds a copy of a's network key.
    let mut b_config = config(d2.path(), b_peers);
    b_config.network_key = Some(d1.path().join("network.key"));
    let b = DispatchService::bind(b_config).await.unwrap();
    let via_a = client(1, &[&a]);
    via_a.request(&join("127.0.0.1:5001")).await.unwrap();
    let via_b = client(2, &[&b]);
    let alice = KeyPair::from_seed(&[7; 32]);
    // The unit needs a live host to place on; b learns a's host by
    // replication before it can place.
    eventually("b to learn a's host", async || {
        b.snapshot().hosts.len() == 1
    })
    .await;
    via_b.request(&register(&alice, "alice")).await.unwrap();
    eventually("a to learn alice", async || {
        a.snapshot().names.contains_key("alice")
    })
    .await;
    assert_eq!(a.snapshot().units.len(), 2);
    // With both units in the backbone, losing one costs nothing.
    let both = client(3, &[&a, &b]);
    a.shutdown().await.unwrap();
    for _ in 0..4 {
        let r = lookup(&both, "alice").await;
        assert!(
            matches!(r, Err(ClientError::Refused { .. })),
            "b answers (not placed yet, so a refusal): {r:?}"
        );
    }
    b.shutdown().await.unwrap();
    let err = lookup(&both, "alice").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn lookups_share_a_pipeline_and_refusals_do_not_break_it() {
    let dir = tempfile::tempdir().unwrap();
    let unit = lone_unit(dir.path()).await;
    client(1, &[&unit])
        .request(&join("127.0.0.1:5001"))
        .await
        .unwrap();
    let alice = KeyPair::from_seed(&[7; 32]);
    let user = Arc::new(client(2, &[&unit]));
    user.request(&register(&alice, "alice")).await.unwrap();
    // Many lookups at once through one client: one pipeline, each answer
    // matched to its own lookup, a refusal among them answered in turn.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let user = user.clone();
        tasks.spawn(async move {
            let name = if i % 3 == 0 { "nobody" } else { "alice" };
            (i, lookup(&user, name).await)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (i, answer) = done.unwrap();
        // alice is registered but her mailbox not created yet: the two
        // refusals differ, so a mixed-up answer shows.
        let Err(ClientError::Refused { error, .. }) = answer else {
            panic!("lookup {i}: {answer:?}");
        };
        let placed_yet = error.message.contains("not placed yet");
        assert_eq!(placed_yet, i % 3 != 0, "lookup {i}: {error}");
    }
    // Only lookups may use a pipeline; anything else is refused in its
    // turn and the pipeline goes on.
    let (conn, _) = endpoint(3)
        .connect_unpinned(unit.local_addr())
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_stream().await.unwrap();
    for req in [
        DispatchRequest::Pipeline,
        DispatchRequest::Status,
        DispatchRequest::LookupName {
            name: "alice".into(),
        },
    ] {
        net::write_frame(&mut send, &req).await.unwrap();
    }
    send.finish().unwrap();
    let read = async |recv: &mut quinn::RecvStream| {
        net::read_frame::<dem_proto::dispatch::PipelineAnswer>(recv, MESSAGE_BYTES_MAX)
            .await
            .unwrap()
    };
    let refused = read(&mut recv).await.unwrap().unwrap_err();
    assert_eq!(refused.code, WireError::BAD_REQUEST, "{refused}");
    let answer = read(&mut recv).await.unwrap().unwrap_err();
    assert!(answer.message.contains("not placed yet"), "{answer}");
    assert!(read(&mut recv).await.is_none(), "the unit finishes");
    unit.shutdown().await.unwrap();
}
