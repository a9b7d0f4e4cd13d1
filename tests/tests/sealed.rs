//! Sealed end to end (issue 17), with real processes: a dispatch unit,
//! hosts, and users whose mail is encrypted by the sender's `dem send` and
//! opened only by the recipient's `dem` commands.
//!
//! - **Canary:** a unique word goes in a subject, a body, an attachment's
//!   name and its content (a part large enough to float). The mail goes to
//!   a 3-replica mailbox, which is then moved and copied again by the
//!   keeper. No file under any host's or the unit's data directory, and no
//!   line any of them logged, holds the word; the owner reads, lists and
//!   searches the mail normally, byte for byte.
//! - **Replay:** a sealed mail captured on the way is refused by another
//!   mailbox ("sealed for"), and an hour-old one is refused by its own.
//! - **Forgery:** a mail sealed by one user under another's name is refused.
//! - **Keys:** after `dem id rotate`, old mail still opens and new mail
//!   opens too; after `dem id export` and `import` into an empty home, the
//!   mail opens there.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};

use dem_client::Session;
use dem_identity::{KeyPair, Name, SealedMail, UserId};
use dem_proto::{HostRequest, HostResponse};
use dem_tests::{
    Daemon, Result, User, admin_status, arg, free_udp_port, holders_in, register_user, seed,
    start_dispatch, start_host, temp_dir, wait_for,
};

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            files_under(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A message with `word` in its subject, its text, an attachment's name
/// and that attachment's content (8-bit text over 64 KiB, so it is cut out
/// and travels as a floating attachment).
fn canary_message(word: &str) -> Vec<u8> {
    let mut content = String::new();
    while content.len() < 100 * 1024 {
        content.push_str(&format!("line with {word} in it\r\n"));
    }
    format!(
        "From: alice@dem\r\nTo: bob@dem\r\nSubject: report {word}\r\n\
         Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{word}@dem>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe body says {word}.\r\n\
         --b1\r\nContent-Type: text/plain; name=\"{word}.txt\"\r\n\
         Content-Disposition: attachment; filename=\"{word}.txt\"\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{content}\r\n--b1--\r\n"
    )
    .into_bytes()
}

struct Net {
    dispatch: Daemon,
    hosts: Vec<Daemon>,
    alice: User,
    bob: User,
    carol: User,
}

impl Net {
    fn start(root: &Path, ips: &[&str], flags: &[&str]) -> Result<Self> {
        let dispatch = start_dispatch(ips[0], &root.join("dispatch"), flags)?;
        let mut hosts = Vec::new();
        for (i, ip) in ips[1..].iter().enumerate() {
            let listen = format!("{ip}:{}", free_udp_port(ip)?);
            hosts.push(start_host(
                &listen,
                &dispatch.addr,
                &root.join(format!("host{i}")),
                &[],
            )?);
        }
        let alice = register_user(root, "alice", &dispatch.addr)?;
        let bob = register_user(root, "bob", &dispatch.addr)?;
        let carol = register_user(root, "carol", &dispatch.addr)?;
        Ok(Self {
            dispatch,
            hosts,
            alice,
            bob,
            carol,
        })
    }
}

#[test]
fn no_host_or_unit_keeps_anything_of_a_sealed_mail() -> Result<()> {
    let seed = seed();
    let word = format!("canary{seed:016x}");
    println!("canary word {word}");
    let tmp = temp_dir();
    let ips = [
        "127.0.0.120",
        "127.0.0.121",
        "127.0.0.122",
        "127.0.0.123",
        "127.0.0.124",
    ];
    let net = Net::start(
        tmp.path(),
        &ips,
        &["--replicas", "3", "--write-quorum", "2"],
    )?;
    let raw = canary_message(&word);
    let file = tmp.path().join("canary.eml");
    std::fs::write(&file, &raw)?;
    let id = net
        .alice
        .run(["send", "--raw", arg(&file), "--to", "bob"])?
        .trim()
        .to_string();
    ensure!(id.len() == 32, "send printed {id:?}");
    // Three copies, then a move to the host that has none, then the keeper
    // makes three copies again.
    wait_for("three copies", Duration::from_secs(30), || {
        Ok(holders_in(&admin_status(&net.bob)?, "bob")?.len() == 3)
    })?;
    let holders = holders_in(&admin_status(&net.bob)?, "bob")?;
    let target = net
        .hosts
        .iter()
        .find(|h| !holders.contains(&h.id))
        .context("a host without bob's mailbox")?;
    net.bob.run(["admin", "move", "bob", "--to", &target.id])?;
    wait_for("the move and three copies", Duration::from_secs(40), || {
        let now = holders_in(&admin_status(&net.bob)?, "bob")?;
        Ok(now.len() == 3 && now.contains(&target.id))
    })?;
    // The owner reads, lists and searches it as any mail.
    let back = net.bob.run_bytes(["read", &id, "--raw"])?;
    ensure!(back == raw, "the mail came back different");
    let inbox = net.bob.run(["inbox"])?;
    ensure!(
        inbox.contains(&word),
        "the inbox does not show the subject: {inbox}"
    );
    let hits = net.bob.run(["search", &word])?;
    ensure!(hits.contains(&id), "the owner's search missed it: {hits}");
    let shown = net.bob.run(["read", &id])?;
    ensure!(shown.contains(&format!("report {word}")), "{shown}");
    // Nothing on the hosts or the unit: files (redb, packs, snapshots,
    // attachments, logs) and what they logged.
    let mut files = Vec::new();
    files_under(&tmp.path().join("dispatch"), &mut files)?;
    for i in 0..net.hosts.len() {
        files_under(&tmp.path().join(format!("host{i}")), &mut files)?;
    }
    ensure!(files.len() > 10, "only {} files to look in", files.len());
    for f in &files {
        let bytes = std::fs::read(f)?;
        ensure!(
            !contains(&bytes, word.as_bytes()),
            "{} holds the canary (seed {seed})",
            f.display()
        );
    }
    for d in net.hosts.iter().chain([&net.dispatch]) {
        ensure!(
            !d.stderr().contains(&word),
            "a daemon logged the canary (seed {seed})"
        );
    }
    // Carol's mailbox never took it, and carol cannot read bob's.
    let err = net.carol.fail(["read", &id, "--mailbox", "bob"])?;
    ensure!(err.contains("only the owner"), "{err}");
    Ok(())
}

/// Alice's key and a session with it, from her home.
fn session_of(user: &User, dispatch: &str) -> Result<(Arc<KeyPair>, Session)> {
    let key = Arc::new(KeyPair::load(&user.home.join("user.key"))?);
    let session = Session::new(key.clone(), vec![(dispatch.to_string(), None)])?;
    Ok((key, session))
}

fn user_id(user: &User) -> Result<UserId> {
    Ok(KeyPair::load(&user.home.join("user.key"))?.user_id())
}

/// Delivers `mail` straight to the first listed holder of `to`'s mailbox.
async fn deliver(session: &Session, net: &Net, to: &str, mail: &SealedMail) -> Result<String> {
    let status = admin_status(&net.alice)?;
    let holders = holders_in(&status, to)?;
    let host = net
        .hosts
        .iter()
        .find(|h| holders.contains(&h.id))
        .context("a holder")?;
    let answer = session
        .host_request(
            &host.addr,
            host.id.parse().context("host id")?,
            &HostRequest::DeliverSealed {
                mail: Box::new(mail.clone()),
            },
        )
        .await;
    match answer {
        Ok(HostResponse::Delivered(_)) => Ok("delivered".into()),
        Ok(other) => bail!("unexpected answer {other:?}"),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn captured_mail_cannot_be_replayed_or_forged() -> Result<()> {
    let tmp = temp_dir();
    let ips = ["127.0.0.125", "127.0.0.126", "127.0.0.127"];
    let net = Net::start(tmp.path(), &ips, &[])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (alice, session) = session_of(&net.alice, &net.dispatch.addr)?;
        let bob = dem_seal::Recipient {
            user: user_id(&net.bob)?,
            key: dem_client::sealed::recipient(&session, "bob")
                .await
                .map_err(anyhow::Error::msg)?
                .key,
        };
        let contents = dem_seal::MailContents {
            message: b"From: alice@dem\r\nTo: bob@dem\r\nSubject: once\r\n\r\nonly once\r\n"
                .to_vec(),
            attachments: vec![],
        };
        let name = Name::new("alice")?;
        let now = dem_client::now_ms();
        let mail = dem_seal::seal_mail(&alice, &name, &contents, &[bob], now)?.remove(0);
        ensure!(deliver(&session, &net, "bob", &mail).await? == "delivered");
        // Again: taken, and filed once (the same id).
        ensure!(deliver(&session, &net, "bob", &mail).await? == "delivered");
        // Readdressed to carol: the envelope's signature no longer holds.
        let mut readdressed = mail.clone();
        let mut env = mail.verify_stored()?;
        env.recipient = user_id(&net.carol)?;
        readdressed.envelope.body = rmp_serde::to_vec_named(&env)?;
        let err = deliver(&session, &net, "carol", &readdressed).await?;
        ensure!(err.contains("signature"), "carol's host said {err:?}");
        // Sealed for bob, sent to carol's host: refused as not for a
        // mailbox it holds, or, if it holds bob's too, filed to bob only.
        let err = deliver(&session, &net, "carol", &mail).await?;
        ensure!(
            err == "delivered" || err.contains("not"),
            "carol's host said {err:?}"
        );
        // Captured an hour ago: refused, though bob's own.
        let old = dem_seal::seal_mail(&alice, &name, &contents, &[bob], now - 3_600_000)?.remove(0);
        let err = deliver(&session, &net, "bob", &old).await?;
        ensure!(err.contains("seal it again"), "bob's host said {err:?}");
        // Carol seals in alice's name: refused as forged.
        let (carol, carol_session) = session_of(&net.carol, &net.dispatch.addr)?;
        let forged = dem_seal::seal_mail(&carol, &name, &contents, &[bob], now)?.remove(0);
        let err = deliver(&carol_session, &net, "bob", &forged).await?;
        ensure!(err.contains("forged"), "bob's host said {err:?}");
        session.close().await;
        carol_session.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    // Bob has the one mail, once; carol has none.
    let inbox = net.bob.run(["inbox"])?;
    ensure!(inbox.matches("once").count() == 1, "{inbox}");
    let inbox = net.carol.run(["inbox"])?;
    ensure!(inbox.contains("(0 of 0)"), "{inbox}");
    Ok(())
}

#[test]
fn old_mail_opens_after_a_rotation_and_in_an_imported_home() -> Result<()> {
    let tmp = temp_dir();
    let ips = ["127.0.0.100", "127.0.0.101"];
    let net = Net::start(tmp.path(), &ips, &[])?;
    let old = net
        .alice
        .run([
            "send",
            "--to",
            "bob",
            "--subject",
            "before",
            "--body",
            "first",
        ])?
        .trim()
        .to_string();
    let out = net.bob.run(["id", "rotate"])?;
    ensure!(out.contains("older key(s) kept"), "{out}");
    let new = net
        .alice
        .run([
            "send",
            "--to",
            "bob",
            "--subject",
            "after",
            "--body",
            "second",
        ])?
        .trim()
        .to_string();
    for (id, text) in [(&old, "first"), (&new, "second")] {
        let shown = net.bob.run(["read", id])?;
        ensure!(shown.contains(text), "mail {id}: {shown}");
    }
    let keys = net.bob.run(["id", "show"])?;
    ensure!(keys.matches("encryption key").count() == 2, "{keys}");
    // Export, then import into an empty home: the mail opens there.
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "a long enough passphrase\n")?;
    let export = tmp.path().join("bob.dem-id");
    net.bob.run([
        "id",
        "export",
        arg(&export),
        "--passphrase-file",
        arg(&pass),
    ])?;
    let again = User::new(tmp.path().join("bob-again"));
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n")?;
    let err = again.fail([
        "id",
        "import",
        arg(&export),
        "--passphrase-file",
        arg(&wrong),
    ])?;
    ensure!(err.contains("wrong passphrase"), "{err}");
    let out = again.run([
        "id",
        "import",
        arg(&export),
        "--passphrase-file",
        arg(&pass),
        "--dispatch",
        &net.dispatch.addr,
    ])?;
    ensure!(out.contains("imported bob"), "{out}");
    let shown = again.run(["read", &old])?;
    ensure!(shown.contains("first"), "{shown}");
    Ok(())
}
