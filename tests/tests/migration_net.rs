//! Mailboxes moving between real `dem host` processes:
//! an explicit `dem admin move` while a sender keeps delivering (nothing
//! lost or duplicated), the owner's host pulling the mailbox home, a
//! graceful leave moving everything off (also when at first there is
//! nowhere to go), a failed move leaving the mailbox intact at the
//! source, and a mailbox whose snapshot is a file arriving whole through
//! the target's staged file. Each test has its own loopback addresses,
//! temp dirs and ports.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, ensure};
use dem_tests::{
    Daemon, Result, User, admin_status, arg, decode_base64, free_udp_port, holders_in, host_in,
    inbox_ids, register_user, send_mail, temp_dir, user_in,
};
use serde_json::Value;

/// One dispatch unit and some hosts on `ips[0]` and `ips[1..]`.
struct Net {
    dispatch: Daemon,
    hosts: Vec<Daemon>,
}

fn start_dispatch(tmp: &std::path::Path, ip: &str) -> Result<Daemon> {
    // One copy per mailbox: these tests are about where *the* mailbox is;
    // replicas have their own tests (replication.rs).
    let extra = [
        "--replicas",
        "1",
        "--write-quorum",
        "1",
        "--lease-ms",
        "3000",
    ];
    dem_tests::start_dispatch(ip, &tmp.join("dispatch"), &extra)
}

fn start_host(
    tmp: &std::path::Path,
    ip: &str,
    name: &str,
    dispatch: &str,
    home: Option<&std::path::Path>,
) -> Result<Daemon> {
    let listen = format!("{ip}:{}", free_udp_port(ip)?);
    let mut extra = vec!["--heartbeat-ms", "500"];
    if let Some(h) = home {
        extra.extend(["--home", arg(h)]);
    }
    dem_tests::start_host(&listen, dispatch, &tmp.join(name), &extra)
}

impl Net {
    fn start(tmp: &std::path::Path, ips: &[&str]) -> Result<Self> {
        let dispatch = start_dispatch(tmp, ips[0])?;
        let mut hosts = Vec::new();
        for (i, ip) in ips[1..].iter().enumerate() {
            hosts.push(start_host(
                tmp,
                ip,
                &format!("host{i}"),
                &dispatch.addr,
                None,
            )?);
        }
        Ok(Self { dispatch, hosts })
    }
}

/// A network on `ips` with alice and bob registered, and the one host
/// holding bob's mailbox.
fn alice_and_bob(tmp: &std::path::Path, ips: &[&str]) -> Result<(Net, User, User, String)> {
    let net = Net::start(tmp, ips)?;
    let alice = register_user(tmp, "alice", &net.dispatch.addr)?;
    let bob = register_user(tmp, "bob", &net.dispatch.addr)?;
    let source = holders(&bob, "bob")?;
    ensure!(source.len() == 1, "bob's mailbox on {source:?}");
    Ok((net, alice, bob, source[0].clone()))
}

/// The host ids holding `name`'s mailbox, per `admin status`.
fn holders(user: &User, name: &str) -> Result<Vec<String>> {
    holders_in(&admin_status(user)?, name)
}

fn wait_for(what: &str, cond: impl FnMut() -> Result<bool>) -> Result<()> {
    dem_tests::wait_for(what, Duration::from_secs(30), cond).map(drop)
}

/// The other host of two.
fn other<'a>(hosts: &'a [Daemon], id: &str) -> Result<&'a Daemon> {
    Ok(&hosts[other_index(hosts, id)?])
}

/// Where in `hosts` the first host other than `id` is.
fn other_index(hosts: &[Daemon], id: &str) -> Result<usize> {
    hosts
        .iter()
        .position(|h| h.id != id)
        .context("a second host")
}

#[test]
fn admin_move_while_a_sender_delivers_loses_and_duplicates_nothing() -> Result<()> {
    let tmp = temp_dir();
    let (net, alice, bob, source) =
        alice_and_bob(tmp.path(), &["127.0.0.51", "127.0.0.52", "127.0.0.53"])?;
    let target = other(&net.hosts, &source)?.id.clone();

    let sender = {
        let alice = alice.clone();
        std::thread::spawn(move || -> Result<Vec<String>> {
            let mut ids = Vec::new();
            for i in 0..24 {
                ids.push(send_mail(&alice, "bob", &format!("m{i}"))?);
            }
            Ok(ids)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let out = bob.run(["admin", "move", "bob", "--to", &target])?;
    println!("{}", out.trim());
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;

    ensure!(
        holders(&bob, "bob")? == vec![target.clone()],
        "bob's mailbox should be on {target}"
    );
    let got = inbox_ids(&bob)?;
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    ensure!(unique.len() == got.len(), "duplicates in {got:?}");
    let sent: BTreeSet<_> = sent.into_iter().collect();
    ensure!(
        unique == sent,
        "lost {:?}, unexpected {:?}",
        sent.difference(&unique).collect::<Vec<_>>(),
        unique.difference(&sent).collect::<Vec<_>>()
    );
    // New mail reaches the new holder.
    let late = send_mail(&alice, "bob", "after the move")?;
    ensure!(inbox_ids(&bob)?.contains(&late), "late mail missing");
    Ok(())
}

fn user_entry(user: &User, name: &str) -> Result<Value> {
    user_in(&admin_status(user)?, name)
}

#[test]
fn the_mailbox_moves_home_when_the_owners_host_starts() -> Result<()> {
    let tmp = temp_dir();
    let net = Net::start(tmp.path(), &["127.0.0.54", "127.0.0.55"])?;
    let alice = register_user(tmp.path(), "alice", &net.dispatch.addr)?;
    let bob = register_user(tmp.path(), "bob", &net.dispatch.addr)?;
    ensure!(holders(&bob, "bob")? == vec![net.hosts[0].id.clone()]);
    // Bob is offline: the mail waits on the shared host.
    let early = send_mail(&alice, "bob", "while you were out")?;
    ensure!(user_entry(&bob, "bob")?["online"] == false);

    let bob_host = start_host(
        tmp.path(),
        "127.0.0.56",
        "bob-host",
        &net.dispatch.addr,
        Some(&bob.home),
    )?;
    wait_for("bob's mailbox to move home", || {
        Ok(holders(&bob, "bob")? == vec![bob_host.id.clone()])
    })?;
    ensure!(user_entry(&bob, "bob")?["online"] == true, "bob is online");
    ensure!(
        inbox_ids(&bob)? == vec![early.clone()],
        "the early mail came along"
    );
    let late = send_mail(&alice, "bob", "welcome home")?;
    let ids = inbox_ids(&bob)?;
    ensure!(ids.len() == 2 && ids.contains(&late), "{ids:?}");
    // Nothing of bob's is left on the shared host.
    let s = admin_status(&bob)?;
    let shared = s["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| h["id"] == net.hosts[0].id.as_str())
        .context("the shared host")?;
    ensure!(
        !shared["mailboxes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m == "bob"),
        "{shared}"
    );
    Ok(())
}

#[test]
fn a_graceful_leave_moves_mailboxes_and_attachments_off() -> Result<()> {
    let tmp = temp_dir();
    let mut net = Net::start(tmp.path(), &["127.0.0.57", "127.0.0.58"])?;
    let alice = register_user(tmp.path(), "alice", &net.dispatch.addr)?;
    let bob = register_user(tmp.path(), "bob", &net.dispatch.addr)?;
    let file = tmp.path().join("plan.bin");
    let content: Vec<u8> = (0..2_200_000u32)
        .map(|i| (i * 13 + i / 777) as u8)
        .collect();
    std::fs::write(&file, &content)?;
    let out = alice.run([
        "send",
        "--to",
        "bob",
        "--subject",
        "plan",
        "--body",
        "attached",
        "--attach",
        arg(&file),
    ])?;
    let mail = out.trim().to_string();
    let leaving_id = net.hosts[0].id.clone();
    let staying = start_host(tmp.path(), "127.0.0.59", "host-b", &net.dispatch.addr, None)?;

    let status_code = net.hosts[0].terminate(Duration::from_secs(60))?;
    ensure!(
        status_code.success(),
        "the leaving host exited with {status_code}"
    );
    let s = admin_status(&bob)?;
    println!("{s}");
    let host = |id: &str| host_in(&s, id);
    let left = host(&leaving_id)?;
    ensure!(left["online"] == false, "{left}");
    ensure!(
        left["mailboxes"].as_array().is_some_and(|m| m.is_empty()),
        "{left}"
    );
    ensure!(left["attachments"] == 0, "{left}");
    let kept = host(&staying.id)?;
    let names: BTreeSet<&str> = kept["mailboxes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    ensure!(names == BTreeSet::from(["alice", "bob"]), "{kept}");
    ensure!(kept["attachments"] == 1, "{kept}");

    // Bob still has his mail, and the attachment comes back whole.
    ensure!(inbox_ids(&bob)? == vec![mail.clone()]);
    let detail: Value = serde_json::from_str(&bob.run(["read", &mail, "--json"])?)?;
    let att = detail["attachments"][0]["id"]
        .as_str()
        .or(detail["attachments"][0]["hash"].as_str())
        .with_context(|| format!("attachment id in {detail}"))?
        .to_string();
    let back = tmp.path().join("back.bin");
    bob.run(["attachment", "get", &att, "-o", arg(&back), "--mail", &mail])?;
    ensure!(
        decode_base64(&std::fs::read(&back)?)? == content,
        "the attachment came back different"
    );
    Ok(())
}

#[test]
fn a_failed_move_leaves_the_mailbox_intact_at_the_source() -> Result<()> {
    let tmp = temp_dir();
    let (mut net, alice, bob, source) =
        alice_and_bob(tmp.path(), &["127.0.0.74", "127.0.0.75", "127.0.0.76"])?;
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(send_mail(&alice, "bob", &format!("m{i}"))?);
    }
    // The target dies (its lease has not expired yet, so dispatch still
    // authorizes the move): the transfer cannot complete.
    let at = other_index(&net.hosts, &source)?;
    let target = net.hosts[at].id.clone();
    net.hosts[at].kill();
    let err = bob.fail(["admin", "move", "bob", "--to", &target])?;
    println!("refused: {}", err.trim());
    ensure!(
        holders(&bob, "bob")? == vec![source],
        "bob's mailbox stays put"
    );
    let got: BTreeSet<_> = inbox_ids(&bob)?.into_iter().collect();
    ensure!(got == sent.iter().cloned().collect(), "{got:?}");
    // It is live: new mail arrives.
    let late = send_mail(&alice, "bob", "still here")?;
    ensure!(inbox_ids(&bob)?.contains(&late));
    Ok(())
}

/// Files in a host's snapshot folder: (content-named, anything else).
fn snapshot_files(data_dir: &std::path::Path) -> Result<(usize, Vec<String>)> {
    let mut named = 0;
    let mut other = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("store").join("snapshots"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            named += 1;
        } else {
            other.push(name);
        }
    }
    Ok((named, other))
}

#[test]
fn a_large_mailbox_moves_through_a_staged_snapshot_file() -> Result<()> {
    let tmp = temp_dir();
    let (net, alice, bob, source) =
        alice_and_bob(tmp.path(), &["127.0.0.225", "127.0.0.226", "127.0.0.227"])?;
    let target_index = other_index(&net.hosts, &source)?;
    let target = net.hosts[target_index].id.clone();

    // A mailbox keeps an index of each mail, not its bytes, and a sealed
    // mail's index holds only its envelope: the state passes 1 MiB with
    // 80 contacts of 15 KB notes, so the source snapshots into a file;
    // five mails with 230 KiB subjects (folded under the header limit,
    // sent raw since no argument can be that long) follow, the last in
    // its log tail.
    for i in 0..80 {
        let note = format!("{i:03}").repeat(5000);
        bob.run([
            "contacts",
            "add",
            &format!("friend{i}@dem"),
            "--note",
            &note,
        ])?;
    }
    let mut sent = Vec::new();
    for i in 0..5u8 {
        let words: Vec<String> = (0..230 * 1024 / 10)
            .map(|n| {
                let c = char::from(b'a' + ((n / 7 + usize::from(i)) % 26) as u8);
                c.to_string().repeat(9)
            })
            .collect();
        let subject = words.join(" ");
        let folded = words
            .chunks(7)
            .map(|line| line.join(" "))
            .collect::<Vec<_>>()
            .join("\r\n ");
        let message = format!(
            "From: alice@dem\r\nTo: bob@dem\r\nSubject: {folded}\r\n\
             Date: Mon, 7 Dec 2026 13:00:00 +0000\r\nMessage-ID: <big{i}@dem>\r\n\r\n\
             Big subject {i}.\r\n"
        );
        let file = tmp.path().join(format!("big{i}.eml"));
        std::fs::write(&file, &message)?;
        let out = alice.run(["send", "--raw", arg(&file)])?;
        sent.push((out.trim().to_string(), subject, message.into_bytes()));
    }
    let source_index = 1 - target_index;
    let (named, _) = snapshot_files(&tmp.path().join(format!("host{source_index}")))?;
    ensure!(named == 1, "the source should keep its snapshot as a file");
    let out = bob.run(["admin", "move", "bob", "--to", &target])?;
    println!("{}", out.trim());
    ensure!(
        holders(&bob, "bob")? == vec![target.clone()],
        "bob's mailbox should be on {target}"
    );

    // Every mail arrived whole, and the target keeps the snapshot as a
    // content-named file with no staged file left over.
    for (id, subject, message) in &sent {
        let mail: Value = serde_json::from_str(&bob.run(["read", id, "--json"])?)?;
        ensure!(
            mail["subject"].as_str() == Some(subject.as_str()),
            "mail {id} changed in the move"
        );
        ensure!(
            bob.run_bytes(["read", id, "--raw"])? == *message,
            "mail {id} came back different after the move"
        );
    }
    let (named, other) = snapshot_files(&tmp.path().join(format!("host{target_index}")))?;
    ensure!(named == 1, "{named} snapshot files at the target");
    ensure!(other.is_empty(), "left over at the target: {other:?}");
    Ok(())
}

/// Whether `admin status` lists host `id` as online.
fn online(user: &User, id: &str) -> Result<bool> {
    Ok(host_in(&admin_status(user)?, id)?["online"] == true)
}

#[test]
fn a_leave_with_nowhere_to_go_asks_again_until_a_host_is_back() -> Result<()> {
    let tmp = temp_dir();
    let mut net = Net::start(tmp.path(), &["127.0.0.231", "127.0.0.232"])?;
    let alice = register_user(tmp.path(), "alice", &net.dispatch.addr)?;
    let mail = send_mail(&alice, "alice", "before the leave")?;
    let leaving_id = net.hosts[0].id.clone();
    // The only other host is paused until its lease lapses: the first
    // departure plans have nowhere to put alice's mailbox.
    let other = start_host(
        tmp.path(),
        "127.0.0.233",
        "host-b",
        &net.dispatch.addr,
        None,
    )?;
    other.signal("STOP")?;
    wait_for("the paused host to go offline", || {
        Ok(!online(&alice, &other.id)?)
    })?;
    net.hosts[0].signal("TERM")?;
    // A few planning rounds pass (500 ms apart) before the host is back;
    // the leaving host must keep asking instead of leaving alice behind.
    std::thread::sleep(Duration::from_millis(1200));
    other.signal("CONT")?;
    // (`terminate` signals again, which a host already leaving ignores.)
    let status = net.hosts[0]
        .terminate(Duration::from_secs(60))
        .context("waiting for the leaving host")?;
    ensure!(status.success(), "the leaving host exited with {status}");
    ensure!(
        holders(&alice, "alice")? == vec![other.id.clone()],
        "alice's mailbox went to the host that came back"
    );
    ensure!(!online(&alice, &leaving_id)?, "the leaving host is offline");
    ensure!(
        inbox_ids(&alice)? == vec![mail],
        "alice's mail moved with her"
    );
    Ok(())
}
