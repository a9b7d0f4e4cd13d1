//! Every export of the mailbox world, called through the host's actor
//! against the real guest-mailbox component, with a durable store.

mod common;

use common::{ask, id, mail, open};
use dem_node::mailbox::MailboxCallError;
use dem_proto::mail::{
    ByteRange, Contact, FlagState, GetParts, MailFlags, MailboxError, PluginEntry, SearchQuery,
    SenderList, SenderStatus,
};
use dem_proto::mailbox::verbs::{
    AddContact, AddSender, ClassifySender, CreateFolder, DeleteFolder, DeleteHistory, DeleteMail,
    Get, GetPreference, InstallPlugin, ListContacts, ListFolder, ListFolders, ListPlugins,
    ListPreferences, ListSenders, MoveMail, RemoveContact, RemovePlugin, RemovePreference,
    RemoveSender, RenameFolder, Search, SetFlags, SetPreference, Stats,
};

fn no_flags() -> FlagState {
    FlagState {
        flags: MailFlags::empty(),
        keywords: vec![],
    }
}

fn query() -> SearchQuery {
    SearchQuery {
        from: None,
        to: None,
        subject: None,
        body_terms: vec![],
        text_terms: vec![],
        folder: None,
        since_ms: None,
        before_ms: None,
        flags_set: MailFlags::empty(),
        flags_unset: MailFlags::empty(),
        keyword: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_works_against_the_real_component() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = open(dir.path());
    boxes.create(&id("alice"), None).await.unwrap();

    // deliver, and idempotency by id
    let d = boxes
        .deliver(
            &id("alice"),
            mail("m1", "Bob <bob@example.org>", "Hello", "first body"),
        )
        .await
        .unwrap();
    assert_eq!((d.folder.as_str(), d.uid, d.duplicate), ("INBOX", 1, false));
    let again = boxes
        .deliver(
            &id("alice"),
            mail("m1", "Bob <bob@example.org>", "Hello", "first body"),
        )
        .await
        .unwrap();
    assert!(again.duplicate);
    boxes
        .deliver(
            &id("alice"),
            mail("m22", "dan@example.net", "Invoice 7", "pay me"),
        )
        .await
        .unwrap();

    // list-folder: newest first, paged
    let page = ask(
        &boxes,
        "alice",
        ListFolder {
            folder: "INBOX".into(),
            offset: 0,
            limit: 10,
        },
    )
    .await;
    assert_eq!(page.total, 2);
    assert_eq!(page.items[0].id, "m22");
    let page = ask(
        &boxes,
        "alice",
        ListFolder {
            folder: "INBOX".into(),
            offset: 1,
            limit: 10,
        },
    )
    .await;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, "m1");

    // get: the index, and byte ranges of the stored message
    let exact = common::message("m1", "Bob <bob@example.org>", "Hello", "first body");
    let parts = GetParts {
        message: Some(ByteRange { start: 0, end: 5 }),
    };
    let read = ask(
        &boxes,
        "alice",
        Get {
            id: "m1".into(),
            parts,
        },
    )
    .await;
    assert_eq!(read.bytes.as_deref(), Some(&exact[..5]));
    assert_eq!(read.detail.message.size_bytes, exact.len() as u64);
    assert_eq!(read.detail.summary.size_bytes, exact.len() as u64);
    assert_eq!(read.detail.summary.subject, "Hello");
    assert_eq!(read.detail.attachments[0].name, "report.pdf");
    let whole = GetParts {
        message: Some(ByteRange {
            start: 0,
            end: u64::MAX,
        }),
    };
    let read = ask(
        &boxes,
        "alice",
        Get {
            id: "m1".into(),
            parts: whole,
        },
    )
    .await;
    assert_eq!(read.bytes.as_deref(), Some(&exact[..]));
    let headers_only = GetParts { message: None };
    let read = ask(
        &boxes,
        "alice",
        Get {
            id: "m1".into(),
            parts: headers_only,
        },
    )
    .await;
    assert!(read.bytes.is_none());

    // set-flags with keywords
    let add = FlagState {
        flags: MailFlags::SEEN | MailFlags::FLAGGED,
        keywords: vec!["work".into()],
    };
    let f = ask(
        &boxes,
        "alice",
        SetFlags {
            id: "m1".into(),
            add,
            remove: no_flags(),
        },
    )
    .await;
    assert_eq!(f.flags, MailFlags::SEEN | MailFlags::FLAGGED);
    let remove = FlagState {
        flags: MailFlags::FLAGGED,
        keywords: vec!["work".into()],
    };
    let f = ask(
        &boxes,
        "alice",
        SetFlags {
            id: "m1".into(),
            add: no_flags(),
            remove,
        },
    )
    .await;
    assert_eq!((f.flags, f.keywords.len()), (MailFlags::SEEN, 0));

    // folders: create, move into, rename, delete refusals
    let work = ask(
        &boxes,
        "alice",
        CreateFolder {
            name: "Work".into(),
        },
    )
    .await;
    assert_eq!(work.uid_next, 1);
    let uid = ask(
        &boxes,
        "alice",
        MoveMail {
            id: "m1".into(),
            folder: "Work".into(),
        },
    )
    .await;
    assert_eq!(uid, 1);
    let renamed = ask(
        &boxes,
        "alice",
        RenameFolder {
            name: "Work".into(),
            new_name: "Job".into(),
        },
    )
    .await;
    assert_eq!((renamed.name.as_str(), renamed.total), ("Job", 1));
    let refused = boxes
        .ask(&id("alice"), DeleteFolder { name: "Job".into() })
        .await;
    assert!(
        matches!(
            refused,
            Err(MailboxCallError::Refused(MailboxError::NotAllowed(_)))
        ),
        "{refused:?}"
    );
    let refused = boxes
        .ask(
            &id("alice"),
            DeleteFolder {
                name: "INBOX".into(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(MailboxCallError::Refused(_))),
        "{refused:?}"
    );
    ask(
        &boxes,
        "alice",
        CreateFolder {
            name: "Empty".into(),
        },
    )
    .await;
    ask(
        &boxes,
        "alice",
        DeleteFolder {
            name: "Empty".into(),
        },
    )
    .await;
    let folders = ask(&boxes, "alice", ListFolders).await;
    let names: Vec<_> = folders.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"INBOX") && names.contains(&"Job") && !names.contains(&"Empty"),
        "{names:?}"
    );

    // search
    let mut q = query();
    q.subject = Some("invoice".into());
    let hits = ask(
        &boxes,
        "alice",
        Search {
            query: q,
            limit: 10,
        },
    )
    .await;
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["m22"]
    );
    let mut q = query();
    q.flags_set = MailFlags::SEEN;
    q.text_terms = vec!["FIRST".into()];
    let hits = ask(
        &boxes,
        "alice",
        Search {
            query: q,
            limit: 10,
        },
    )
    .await;
    assert_eq!(hits.len(), 1);

    // delete and its history; a deleted mail never comes back
    ask(&boxes, "alice", DeleteMail { id: "m22".into() }).await;
    let t = ask(
        &boxes,
        "alice",
        DeleteHistory {
            offset: 0,
            limit: 10,
        },
    )
    .await;
    assert_eq!(t[0].id, "m22");
    let back = boxes
        .deliver(
            &id("alice"),
            mail("m22", "dan@example.net", "Invoice 7", "pay me"),
        )
        .await
        .unwrap();
    assert!(back.duplicate);
    let gone = boxes
        .ask(
            &id("alice"),
            Get {
                id: "m22".into(),
                parts: headers_only,
            },
        )
        .await;
    assert!(
        matches!(
            gone,
            Err(MailboxCallError::Refused(MailboxError::NotFound(_)))
        ),
        "{gone:?}"
    );

    // address book
    let contact = Contact {
        name: "Bob".into(),
        address: "bob@example.org".into(),
        note: "".into(),
    };
    ask(
        &boxes,
        "alice",
        AddContact {
            contact: contact.clone(),
        },
    )
    .await;
    let c = ask(&boxes, "alice", ListContacts).await;
    assert_eq!(c, vec![contact]);
    let s = ask(
        &boxes,
        "alice",
        ClassifySender {
            address: "Bob <BOB@example.org>".into(),
        },
    )
    .await;
    assert_eq!(s, SenderStatus::Contact);
    ask(
        &boxes,
        "alice",
        RemoveContact {
            address: "bob@example.org".into(),
        },
    )
    .await;

    // allow and block lists
    ask(
        &boxes,
        "alice",
        AddSender {
            which: SenderList::Allow,
            pattern: "@example.org".into(),
        },
    )
    .await;
    ask(
        &boxes,
        "alice",
        AddSender {
            which: SenderList::Block,
            pattern: "spam@example.org".into(),
        },
    )
    .await;
    let allow = ask(
        &boxes,
        "alice",
        ListSenders {
            which: SenderList::Allow,
        },
    )
    .await;
    assert_eq!(allow.len(), 1);
    let s = ask(
        &boxes,
        "alice",
        ClassifySender {
            address: "spam@example.org".into(),
        },
    )
    .await;
    assert_eq!(s, SenderStatus::Blocked);
    let s = ask(
        &boxes,
        "alice",
        ClassifySender {
            address: "x@example.org".into(),
        },
    )
    .await;
    assert_eq!(s, SenderStatus::Allowed);
    ask(
        &boxes,
        "alice",
        RemoveSender {
            which: SenderList::Block,
            pattern: "spam@example.org".into(),
        },
    )
    .await;

    // preferences
    ask(
        &boxes,
        "alice",
        SetPreference {
            key: "signature".into(),
            value: "-- A".into(),
        },
    )
    .await;
    let p = ask(
        &boxes,
        "alice",
        GetPreference {
            key: "signature".into(),
        },
    )
    .await;
    assert_eq!(p.as_deref(), Some("-- A"));
    let all = ask(&boxes, "alice", ListPreferences).await;
    assert_eq!(all.len(), 1);
    ask(
        &boxes,
        "alice",
        RemovePreference {
            key: "signature".into(),
        },
    )
    .await;

    // plugins
    let entry = PluginEntry {
        name: "x".into(),
        code_hash: "cd".repeat(32),
        config: "".into(),
        order: 5,
    };
    ask(
        &boxes,
        "alice",
        InstallPlugin {
            entry: entry.clone(),
        },
    )
    .await;
    let p = ask(&boxes, "alice", ListPlugins).await;
    assert_eq!(p, vec![entry]);
    ask(&boxes, "alice", RemovePlugin { name: "x".into() }).await;

    // stats
    let stats = ask(&boxes, "alice", Stats).await;
    assert_eq!((stats.mails, stats.tombstones, stats.plugins), (1, 1, 0));
    assert!(stats.state_bytes > 0);

    // All of it survives a restart of the host (snapshot + log replay).
    let digest = boxes.digest(&id("alice")).await.unwrap();
    boxes.shutdown().await;
    drop(boxes);
    let boxes = open(dir.path());
    assert_eq!(boxes.digest(&id("alice")).await.unwrap(), digest);
}
