//! The three standard filter plugins on the delivery path of a real
//! mailbox: rules file, the allowlist screens and rejects, spam is filed
//! into Junk.

mod common;

use common::{ask, id, mail, open};
use dem_builtin as builtin;
use dem_node::mailbox::MailboxCallError;
use dem_proto::mail::SenderList;
use dem_proto::mailbox::verbs::AddSender;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_plugins_file_flag_and_reject() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = open(dir.path());
    let alice = id("alice");
    boxes.create(&alice, None).await.unwrap();
    let rules = "if subject contains \"invoice\" then fileinto \"Finance\"\n";
    // Each standard plugin is exercised here (build.rs checks this file names them).
    let plugins = [
        ("spam-score", builtin::SPAM_SCORE),
        ("allowlist", builtin::ALLOWLIST),
        ("rules", builtin::RULES),
    ];
    assert_eq!(plugins.len(), builtin::PLUGINS.len());
    for (order, (name, bytes)) in plugins.iter().enumerate() {
        let config = if *name == "rules" { rules } else { "" };
        boxes
            .install_plugin(&alice, name, bytes, config, order as u32)
            .await
            .unwrap();
    }
    ask(
        &boxes,
        "alice",
        AddSender {
            which: SenderList::Allow,
            pattern: "@friends.org".into(),
        },
    )
    .await;
    ask(
        &boxes,
        "alice",
        AddSender {
            which: SenderList::Block,
            pattern: "@spam.biz".into(),
        },
    )
    .await;

    let d = boxes
        .deliver(
            &alice,
            mail("a", "ann@friends.org", "Invoice for May", "hi"),
        )
        .await
        .unwrap();
    assert_eq!(d.folder, "Finance");
    let d = boxes
        .deliver(&alice, mail("b", "who@unknown.net", "hello", "hi"))
        .await
        .unwrap();
    assert_eq!(d.folder, "Screened");
    let r = boxes
        .deliver(&alice, mail("c", "x@spam.biz", "hello", "hi"))
        .await;
    assert!(matches!(r, Err(MailboxCallError::Rejected { .. })), "{r:?}");
    let spam = "FREE MONEY!!! viagra viagra casino winner click here now!!!";
    let d = boxes
        .deliver(&alice, mail("d", "ann@friends.org", spam, spam))
        .await
        .unwrap();
    assert_eq!(d.folder, "Junk");
    boxes.shutdown().await;
}
