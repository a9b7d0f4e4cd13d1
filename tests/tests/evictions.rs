//! A host process with far more mailboxes than instance slots, SIGKILLed
//! in the middle of a burst of deliveries that keeps hibernating mailboxes
//! to make room: after a restart, every acknowledged delivery is there,
//! exactly once, and nothing nobody sent. Kill point and targets come from
//! a seeded generator; the seed is printed (replay with `DEM_TEST_SEED`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, ensure};
use dem_tests::{Result, Rng, Serve, create_op, deliver_op, temp_dir};
use serde_json::{Value, json};

const MAILBOXES: usize = 300;
const DELIVERIES: usize = 900;
/// Far fewer than the mailboxes, so the burst evicts all the time.
const SLOTS: &str = "8";

fn mailbox(n: u64) -> String {
    format!("user{n:03}")
}

/// The ids in a mailbox's INBOX, checked to appear once each.
fn inbox(serve: &mut Serve, who: &str) -> Result<BTreeSet<String>> {
    let page = serve.call(
        who,
        json!({ "ListFolder": { "folder": "INBOX", "offset": 0, "limit": 1000 } }),
    )?;
    let items = page["Page"]["items"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("not a page: {page}"))?;
    let mut ids = BTreeSet::new();
    for item in items {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        ensure!(ids.insert(id.clone()), "{who}: mail {id} listed twice");
    }
    Ok(ids)
}

#[test]
fn sigkill_during_an_evicting_burst_keeps_every_acknowledged_delivery() -> Result<()> {
    let mut rng = Rng::seeded("sigkill_during_an_evicting_burst_keeps_every_acknowledged_delivery");
    let tmp = temp_dir();
    let data = tmp.path().join("host");
    let options = ["--instance-slots", SLOTS, "--slot-wait-ms", "60000"];

    let mut serve = Serve::start_with(&data, &options)?;
    let creates: Vec<u64> = (0..MAILBOXES as u64)
        .map(|n| serve.send(create_op(&mailbox(n))))
        .collect::<Result<_>>()?;
    serve.wait_answered(&creates, creates.len())?;
    for tag in creates {
        if let Err(e) = serve.answer(tag)? {
            bail!("create refused: {e}");
        }
    }

    let burst: Vec<(String, String)> = (0..DELIVERIES)
        .map(|i| (mailbox(rng.below(MAILBOXES as u64)), format!("mail-{i:04}")))
        .collect();
    let tags: Vec<u64> = burst
        .iter()
        .map(|(who, id)| serve.send(deliver_op(who, id, "bob@dem.test", "burst", "body")))
        .collect::<Result<_>>()?;
    let kill_after = DELIVERIES / 4 + rng.below(DELIVERIES as u64 / 2) as usize;
    serve.wait_answered(&tags, kill_after)?;
    serve.kill();
    let answers = serve.take_answers();
    let mut acked: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for ((who, id), tag) in burst.iter().zip(&tags) {
        match answers.get(tag) {
            Some(Ok(_)) => {
                acked.entry(who).or_default().insert(id.clone());
            }
            Some(Err(e)) => bail!("delivery {id} to {who} refused: {e}"),
            None => {}
        }
    }
    let acked_count: usize = acked.values().map(BTreeSet::len).sum();
    println!("killed after {kill_after} answers: {acked_count} acknowledged");
    ensure!(acked_count >= kill_after, "fewer answers than waited for");

    let sent: BTreeMap<&str, &str> = burst
        .iter()
        .map(|(who, id)| (id.as_str(), who.as_str()))
        .collect();
    let mut serve = Serve::start_with(&data, &options)?;
    let mut found = 0;
    for n in 0..MAILBOXES as u64 {
        let who = mailbox(n);
        let ids = inbox(&mut serve, &who)?;
        found += ids.len();
        if let Some(want) = acked.get(who.as_str()) {
            let lost: Vec<_> = want.difference(&ids).collect();
            ensure!(lost.is_empty(), "{who} lost acknowledged mails {lost:?}");
        }
        for id in &ids {
            ensure!(
                sent.get(id.as_str()) == Some(&who.as_str()),
                "{who} holds {id}, which was not sent to it"
            );
        }
    }
    println!("{found} mails on disk after the restart, {acked_count} of them acknowledged");
    let stats: Value = serve.call(&mailbox(0), json!("Stats"))?;
    ensure!(stats.get("Stats").is_some(), "{stats}");
    serve.shutdown()?;
    Ok(())
}
