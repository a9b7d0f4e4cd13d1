//! Crash tests: an acknowledged mutation must survive SIGKILL.
//!
//! The host promises to answer a mutation only once it is fsynced. These
//! tests drive a real `dem local serve` process with many concurrent
//! deliveries, SIGKILL it (no shutdown, no final snapshot) at chosen
//! moments, and then reopen the same data dir in new processes to check
//! that every acknowledged mail is there exactly once, that unacknowledged
//! in-flight mails either made it whole or not at all, and that repeated
//! kill/restart cycles lose nothing. Kill points and bodies come from a
//! seeded generator; the seed is printed (replay with `DEM_TEST_SEED`).

use std::collections::{BTreeSet, HashMap};

use anyhow::{Context as _, bail, ensure};
use dem_tests::{
    Dem, Result, Rng, Serve, create_op, deliver_op, digest_op, flags, set_flags, temp_dir,
};
use serde_json::{Value, json};

const MAILBOX: &str = "alice";

/// One delivery this test sent: its id and the body it carried.
#[derive(Debug, Clone)]
struct Sent {
    id: String,
    body: String,
}

fn make_mails(rng: &mut Rng, prefix: &str, n: usize, body_max: u64) -> Vec<Sent> {
    (0..n)
        .map(|i| {
            let len = rng.below(body_max) as usize;
            Sent {
                id: format!("{prefix}-{i:04}"),
                body: rng.text(len),
            }
        })
        .collect()
}

/// Writes every delivery at once (so they run concurrently in the host);
/// returns the request tags in the order of `mails`.
fn send_all(serve: &mut Serve, mails: &[Sent]) -> Result<Vec<u64>> {
    mails
        .iter()
        .map(|m| {
            serve.send(deliver_op(
                MAILBOX,
                &m.id,
                "bob@dem.test",
                &format!("mail {}", m.id),
                &m.body,
            ))
        })
        .collect()
}

/// Checks a delivery answer: ok, filed in INBOX, `duplicate` as expected.
fn check_delivered(id: &str, answer: &Value, duplicate: bool) -> Result<()> {
    ensure!(answer["folder"] == "INBOX", "{id} was filed as {answer}");
    ensure!(
        answer["uid"].as_u64().is_some_and(|u| u > 0),
        "{id}: no uid in {answer}"
    );
    ensure!(
        answer["duplicate"] == duplicate,
        "{id}: expected duplicate={duplicate}, got {answer}"
    );
    Ok(())
}

/// Waits for every answer; all must be successful first deliveries.
fn expect_all_delivered(serve: &mut Serve, mails: &[Sent], tags: &[u64]) -> Result<()> {
    for (m, tag) in mails.iter().zip(tags) {
        let answer = serve
            .answer(*tag)?
            .map_err(|e| anyhow::anyhow!("delivery of {} refused: {e}", m.id))?;
        check_delivered(&m.id, &answer, false)?;
    }
    Ok(())
}

/// The ids in INBOX, read by a fresh process; fails on any id listed twice.
fn inbox_ids_once(dem: &Dem) -> Result<BTreeSet<String>> {
    let ids = dem.inbox_ids(MAILBOX, "INBOX")?;
    let mut seen = BTreeSet::new();
    for id in &ids {
        ensure!(
            seen.insert(id.clone()),
            "mail {id} is listed twice after the restart"
        );
    }
    ensure!(
        ids.len() < 1000,
        "the listing hit the page limit; the test would miss mails"
    );
    Ok(seen)
}

/// Reads a few mails back and compares their bodies with what was sent.
fn check_bodies(dem: &Dem, rng: &mut Rng, mails: &[&Sent], count: usize) -> Result<()> {
    for _ in 0..count.min(mails.len()) {
        let m = mails[rng.below(mails.len() as u64) as usize];
        let got = dem.read_json(MAILBOX, &m.id)?;
        ensure!(
            got["body"] == m.body.as_str(),
            "mail {} came back with a different body: {}",
            m.id,
            got["body"]
        );
    }
    Ok(())
}

#[test]
fn acknowledged_deliveries_survive_sigkill() -> Result<()> {
    let mut rng = Rng::seeded("acknowledged_deliveries_survive_sigkill");
    let tmp = temp_dir();
    let data = tmp.path().join("host");
    let mails = make_mails(&mut rng, "ack", 300, 2000);

    let mut serve = Serve::start(&data)?;
    serve.request(create_op(MAILBOX))?;
    let tags = send_all(&mut serve, &mails)?;
    expect_all_delivered(&mut serve, &mails, &tags)?;
    // SIGKILL right after the last acknowledgement: no shutdown, no snapshot.
    serve.kill();

    let dem = Dem::new(&data);
    let ids = inbox_ids_once(&dem)?;
    let sent: BTreeSet<String> = mails.iter().map(|m| m.id.clone()).collect();
    let missing: Vec<_> = sent.difference(&ids).collect();
    ensure!(
        missing.is_empty(),
        "{} acknowledged mails lost after SIGKILL: {missing:?}",
        missing.len()
    );
    ensure!(
        ids == sent,
        "unexpected mails after the restart: {:?}",
        ids.difference(&sent).collect::<Vec<_>>()
    );
    let all: Vec<&Sent> = mails.iter().collect();
    check_bodies(&dem, &mut rng, &all, 5)?;
    // Recovery is deterministic: another process, another recovery, the
    // same state (`repeated_kill_and_restart_loses_nothing` also compares it
    // with the digest taken before the kill).
    let digest = dem.digest(MAILBOX)?;
    let mut serve = Serve::start(&data)?;
    ensure!(
        serve.request(digest_op(MAILBOX))? == digest.as_str(),
        "two recoveries disagree"
    );
    serve.kill();
    Ok(())
}

#[test]
fn sigkill_mid_stream_keeps_every_acknowledged_mail() -> Result<()> {
    let mut rng = Rng::seeded("sigkill_mid_stream_keeps_every_acknowledged_mail");
    let tmp = temp_dir();
    let data = tmp.path().join("host");
    let first = make_mails(&mut rng, "first", 150, 2000);
    // Larger bodies keep more deliveries in flight when the kill lands.
    let second = make_mails(&mut rng, "second", 400, 20_000);

    let mut serve = Serve::start(&data)?;
    serve.request(create_op(MAILBOX))?;
    let tags = send_all(&mut serve, &first)?;
    expect_all_delivered(&mut serve, &first, &tags)?;

    let tags = send_all(&mut serve, &second)?;
    let kill_after = rng.below(second.len() as u64 / 2) as usize;
    serve.wait_answered(&tags, kill_after)?;
    serve.kill();
    // Every answer written before the kill is an acknowledgement.
    let answers = serve.take_answers();
    let mut acked: Vec<&Sent> = first.iter().collect();
    for (m, tag) in second.iter().zip(&tags) {
        match answers.get(tag) {
            Some(Ok(answer)) => {
                check_delivered(&m.id, answer, false)?;
                acked.push(m);
            }
            Some(Err(e)) => bail!("delivery of {} refused: {e}", m.id),
            None => {}
        }
    }
    let in_flight = second.len() + first.len() - acked.len();
    println!(
        "killed after {kill_after} answers: {} acknowledged, {in_flight} unacknowledged",
        acked.len()
    );

    let dem = Dem::new(&data);
    let ids = inbox_ids_once(&dem)?;
    let lost: Vec<_> = acked
        .iter()
        .filter(|m| !ids.contains(&m.id))
        .map(|m| &m.id)
        .collect();
    ensure!(
        lost.is_empty(),
        "{} acknowledged mails lost after SIGKILL: {lost:?}",
        lost.len()
    );
    let sent: HashMap<&str, &Sent> = first
        .iter()
        .chain(&second)
        .map(|m| (m.id.as_str(), m))
        .collect();
    let strangers: Vec<_> = ids
        .iter()
        .filter(|id| !sent.contains_key(id.as_str()))
        .collect();
    ensure!(
        strangers.is_empty(),
        "mails nobody sent appeared: {strangers:?}"
    );
    println!(
        "{} unacknowledged mails made it to disk",
        ids.len() - acked.len()
    );
    // Whatever made it to disk made it whole, acknowledged or not.
    let on_disk: Vec<&Sent> = ids.iter().map(|id| sent[id.as_str()]).collect();
    check_bodies(&dem, &mut rng, &on_disk, 8)?;
    let digest = dem.digest(MAILBOX)?;
    ensure!(
        dem.digest(MAILBOX)? == digest,
        "two recoveries of the same data dir disagree"
    );

    // Redelivering everything is idempotent: what made it is a duplicate,
    // the rest arrives now, and in the end each mail is there once.
    let mut serve = Serve::start(&data)?;
    let tags = send_all(&mut serve, &second)?;
    for (m, tag) in second.iter().zip(&tags) {
        let answer = serve
            .answer(*tag)?
            .map_err(|e| anyhow::anyhow!("redelivery of {} refused: {e}", m.id))?;
        check_delivered(&m.id, &answer, ids.contains(&m.id))?;
    }
    serve.kill();
    let ids = inbox_ids_once(&dem)?;
    ensure!(
        ids.len() == sent.len(),
        "after redelivery {} mails, expected {}",
        ids.len(),
        sent.len()
    );
    Ok(())
}

#[test]
fn repeated_kill_and_restart_loses_nothing() -> Result<()> {
    let mut rng = Rng::seeded("repeated_kill_and_restart_loses_nothing");
    let tmp = temp_dir();
    let data = tmp.path().join("host");
    let dem = Dem::new(&data);
    let round1 = make_mails(&mut rng, "r1", 200, 3000);
    let round2 = make_mails(&mut rng, "r2", 200, 3000);

    // Round 1: deliver, kill.
    let mut serve = Serve::start(&data)?;
    serve.request(create_op(MAILBOX))?;
    let tags = send_all(&mut serve, &round1)?;
    expect_all_delivered(&mut serve, &round1, &tags)?;
    serve.kill();

    // Round 2 on the recovered dir: new mails, redelivered old ones, and
    // other mutations mixed in, all concurrent; then kill again.
    let mut serve = Serve::start(&data)?;
    let tags = send_all(&mut serve, &round2)?;
    let again = &round1[..20];
    let again_tags = send_all(&mut serve, again)?;
    let flagged: Vec<&Sent> = round1[20..40].iter().collect();
    let flag_tags: Vec<u64> = flagged
        .iter()
        .map(|m| serve.send(json!({"op": "call", "mailbox": MAILBOX, "request": set_flags(&m.id, flags::SEEN | flags::FLAGGED, 0)})))
        .collect::<Result<_>>()?;
    serve.call(MAILBOX, json!({"CreateFolder": {"name": "Kept"}}))?;
    let moved: Vec<&Sent> = round1[40..50].iter().collect();
    let move_tags: Vec<u64> = moved
        .iter()
        .map(|m| serve.send(json!({"op": "call", "mailbox": MAILBOX, "request": {"MoveMail": {"id": m.id, "folder": "Kept"}}})))
        .collect::<Result<_>>()?;
    expect_all_delivered(&mut serve, &round2, &tags)?;
    for (m, tag) in again.iter().zip(&again_tags) {
        let answer = serve
            .answer(*tag)?
            .map_err(|e| anyhow::anyhow!("redelivery of {} refused: {e}", m.id))?;
        ensure!(
            answer["duplicate"] == true,
            "redelivered {} not seen as a duplicate: {answer}",
            m.id
        );
    }
    for tag in flag_tags.iter().chain(&move_tags) {
        serve
            .answer(*tag)?
            .map_err(|e| anyhow::anyhow!("request {tag} refused: {e}"))?;
    }
    let before = serve.request(digest_op(MAILBOX))?;
    serve.kill();

    // Round 3: a restart that only reads must not change anything.
    ensure!(
        Value::String(dem.digest(MAILBOX)?) == before,
        "state after the second SIGKILL differs"
    );
    let inbox = dem.inbox(MAILBOX, "INBOX")?;
    let kept = dem.inbox_ids(MAILBOX, "Kept")?;
    let mut expected: BTreeSet<String> =
        round1.iter().chain(&round2).map(|m| m.id.clone()).collect();
    for m in &moved {
        expected.remove(&m.id);
    }
    let ids = inbox_ids_once(&dem)?;
    ensure!(
        ids == expected,
        "INBOX differs: missing {:?}, extra {:?}",
        expected.difference(&ids).collect::<Vec<_>>(),
        ids.difference(&expected).collect::<Vec<_>>()
    );
    let kept: BTreeSet<String> = kept.into_iter().collect();
    let moved_ids: BTreeSet<String> = moved.iter().map(|m| m.id.clone()).collect();
    ensure!(
        kept == moved_ids,
        "folder Kept holds {kept:?}, expected {moved_ids:?}"
    );
    for m in &flagged {
        let mail = inbox
            .iter()
            .find(|v| v["id"] == m.id.as_str())
            .with_context(|| format!("{} missing", m.id))?;
        ensure!(
            mail["flags"] == json!(["seen", "flagged"]),
            "{} has flags {}",
            m.id,
            mail["flags"]
        );
    }

    // And one more cycle with the kill landing while mails are in flight.
    let round3 = make_mails(&mut rng, "r3", 100, 3000);
    let mut serve = Serve::start(&data)?;
    let tags = send_all(&mut serve, &round3)?;
    serve.wait_answered(&tags, rng.below(round3.len() as u64) as usize)?;
    serve.kill();
    let answers = serve.take_answers();
    let ids = inbox_ids_once(&dem)?;
    for (m, tag) in round3.iter().zip(&tags) {
        if let Some(answer) = answers.get(tag) {
            answer
                .as_ref()
                .map_err(|e| anyhow::anyhow!("delivery of {} refused: {e}", m.id))?;
            ensure!(
                ids.contains(&m.id),
                "acknowledged {} lost in the third crash",
                m.id
            );
        }
    }
    ensure!(
        expected.is_subset(&ids),
        "mails of earlier rounds lost in the third crash"
    );
    Ok(())
}
