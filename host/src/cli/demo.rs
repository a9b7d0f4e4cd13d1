//! `dem demo`: a guided tour of the mobile mailbox on this machine.
//!
//! It creates a mailbox in one host data dir, installs the standard
//! filters, delivers mail that they file, hibernates and wakes it, then
//! moves it to a second host data dir by export and import through a
//! separate `dem` process, and shows that the state digest is unchanged.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::builtin;
use crate::cli::bench::sample_mail;
use crate::ids::{CodeHash, MailboxId};
use crate::mailbox::{Mailboxes, MailboxesConfig, Request, Response};
use crate::runtime::RuntimeConfig;

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let (host_a, host_b) = (dir.path().join("host-a"), dir.path().join("host-b"));
    println!("== 1. a host with alice's mailbox ({})", host_a.display());
    let boxes = Mailboxes::open(
        &host_a,
        RuntimeConfig::default(),
        MailboxesConfig::default(),
    )?;
    let alice = MailboxId::new("alice")?;
    boxes.create(&alice, None).await?;
    let rules = "if subject contains \"invoice\" then fileinto \"Finance\"\n";
    for (order, (name, bytes)) in builtin::PLUGINS.iter().enumerate() {
        let config = if *name == "rules" { rules } else { "" };
        let code = boxes
            .install_plugin(&alice, name, bytes, config, order as u32)
            .await?;
        println!("   installed plugin {name:<10} code {}", code.short());
    }
    boxes
        .call(
            &alice,
            Request::AddSender {
                which: crate::runtime::bindings::SenderList::Allow,
                pattern: "@example.org".into(),
            },
        )
        .await?;

    println!("== 2. mail arrives and the filters file it");
    let mut mails = vec![sample_mail(1), sample_mail(2), sample_mail(3)];
    mails[0].subject = "Invoice 2026-11".into();
    mails[1].from = "stranger@elsewhere.net".into();
    mails[2].subject = "FREE MONEY!!! WINNER!!!".into();
    mails[2].body = "viagra casino lottery winner, click here now!!!".into();
    for mail in mails {
        let subject = mail.subject.clone();
        match boxes.deliver(&alice, mail).await {
            Ok(d) => println!("   {subject:<40} -> {} (uid {})", d.folder, d.uid),
            Err(e) => println!("   {subject:<40} -> refused: {e}"),
        }
    }

    println!("== 3. hibernate and wake");
    boxes.hibernate(&alice).await?;
    let Response::Stats(stats) = boxes.call(&alice, Request::Stats).await? else {
        bail!("no stats")
    };
    println!(
        "   woke with {} mails in {} folders",
        stats.mails, stats.folders
    );
    let digest = CodeHash(boxes.digest(&alice).await?);
    println!("   state digest {}", digest.short());
    boxes.shutdown().await;
    drop(boxes);

    println!("== 4. move the mailbox to another host by export and import");
    let file = dir.path().join("alice.dem");
    let exe = std::env::current_exe().context("finding the dem binary")?;
    for args in [
        vec![
            "local",
            "--data",
            path(&host_a)?,
            "export",
            "alice",
            "-o",
            path(&file)?,
        ],
        vec!["local", "--data", path(&host_b)?, "import", path(&file)?],
    ] {
        let out = Command::new(&exe)
            .args(&args)
            .output()
            .context("running dem")?;
        if !out.status.success() {
            bail!(
                "dem {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        print!("   {}", String::from_utf8_lossy(&out.stdout));
    }
    let out = Command::new(&exe)
        .args(["local", "--data", path(&host_b)?, "digest", "alice"])
        .output()?;
    let moved = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!(
        "   digest on the new host {}",
        &moved[..moved.len().min(12)]
    );
    if moved != digest.to_hex() {
        bail!("the moved mailbox differs from the original");
    }
    println!("== done: the mailbox moved with its state intact");
    Ok(())
}

fn path(p: &std::path::Path) -> anyhow::Result<&str> {
    p.to_str().context("temp paths are UTF-8")
}
