//! Every export of the mailbox world, called through the host's actor
//! against the real guest-mailbox component, with a durable store.

mod common;

use common::{call, id, mail, open};
use dem_node::mailbox::{MailboxCallError, Request, Response};
use dem_proto::mail::{
    ByteRange, Contact, FlagState, GetParts, MailFlags, MailboxError, PluginEntry, SearchQuery,
    SenderList, SenderStatus,
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
    let Response::Page(page) = call(
        &boxes,
        "alice",
        Request::ListFolder {
            folder: "INBOX".into(),
            offset: 0,
            limit: 10,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(page.total, 2);
    assert_eq!(page.items[0].id, "m22");
    let Response::Page(page) = call(
        &boxes,
        "alice",
        Request::ListFolder {
            folder: "INBOX".into(),
            offset: 1,
            limit: 10,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].id, "m1");

    // get: parts and byte ranges
    let parts = GetParts {
        headers: true,
        body: Some(ByteRange { start: 0, end: 5 }),
        attachments: true,
    };
    let Response::Detail(detail) = call(
        &boxes,
        "alice",
        Request::Get {
            id: "m1".into(),
            parts,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(detail.body.as_deref(), Some(&b"first"[..]));
    assert_eq!(detail.body_size_bytes, 10);
    assert_eq!(detail.attachments.unwrap()[0].name, "report.pdf");
    assert!(detail.headers.unwrap().iter().any(|h| h.name == "X-Test"));
    let headers_only = GetParts {
        headers: true,
        body: None,
        attachments: false,
    };
    let Response::Detail(detail) = call(
        &boxes,
        "alice",
        Request::Get {
            id: "m1".into(),
            parts: headers_only,
        },
    )
    .await
    else {
        panic!()
    };
    assert!(detail.body.is_none() && detail.attachments.is_none());

    // set-flags with keywords
    let add = FlagState {
        flags: MailFlags::SEEN | MailFlags::FLAGGED,
        keywords: vec!["work".into()],
    };
    let Response::Flags(f) = call(
        &boxes,
        "alice",
        Request::SetFlags {
            id: "m1".into(),
            add,
            remove: no_flags(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(f.flags, MailFlags::SEEN | MailFlags::FLAGGED);
    let remove = FlagState {
        flags: MailFlags::FLAGGED,
        keywords: vec!["work".into()],
    };
    let Response::Flags(f) = call(
        &boxes,
        "alice",
        Request::SetFlags {
            id: "m1".into(),
            add: no_flags(),
            remove,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!((f.flags, f.keywords.len()), (MailFlags::SEEN, 0));

    // folders: create, move into, rename, delete refusals
    let Response::Folder(work) = call(
        &boxes,
        "alice",
        Request::CreateFolder {
            name: "Work".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(work.uid_next, 1);
    let Response::Uid(uid) = call(
        &boxes,
        "alice",
        Request::MoveMail {
            id: "m1".into(),
            folder: "Work".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(uid, 1);
    let Response::Folder(renamed) = call(
        &boxes,
        "alice",
        Request::RenameFolder {
            name: "Work".into(),
            new_name: "Job".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!((renamed.name.as_str(), renamed.total), ("Job", 1));
    let refused = boxes
        .call(&id("alice"), Request::DeleteFolder { name: "Job".into() })
        .await;
    assert!(
        matches!(
            refused,
            Err(MailboxCallError::Refused(MailboxError::NotAllowed(_)))
        ),
        "{refused:?}"
    );
    let refused = boxes
        .call(
            &id("alice"),
            Request::DeleteFolder {
                name: "INBOX".into(),
            },
        )
        .await;
    assert!(
        matches!(refused, Err(MailboxCallError::Refused(_))),
        "{refused:?}"
    );
    call(
        &boxes,
        "alice",
        Request::CreateFolder {
            name: "Empty".into(),
        },
    )
    .await;
    call(
        &boxes,
        "alice",
        Request::DeleteFolder {
            name: "Empty".into(),
        },
    )
    .await;
    let Response::Folders(folders) = call(&boxes, "alice", Request::ListFolders).await else {
        panic!()
    };
    let names: Vec<_> = folders.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"INBOX") && names.contains(&"Job") && !names.contains(&"Empty"),
        "{names:?}"
    );

    // search
    let mut q = query();
    q.subject = Some("invoice".into());
    let Response::Summaries(hits) = call(
        &boxes,
        "alice",
        Request::Search {
            query: q,
            limit: 10,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["m22"]
    );
    let mut q = query();
    q.flags_set = MailFlags::SEEN;
    q.text_terms = vec!["FIRST".into()];
    let Response::Summaries(hits) = call(
        &boxes,
        "alice",
        Request::Search {
            query: q,
            limit: 10,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(hits.len(), 1);

    // delete and its history; a deleted mail never comes back
    call(&boxes, "alice", Request::DeleteMail { id: "m22".into() }).await;
    let Response::Tombstones(t) = call(
        &boxes,
        "alice",
        Request::DeleteHistory {
            offset: 0,
            limit: 10,
        },
    )
    .await
    else {
        panic!()
    };
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
        .call(
            &id("alice"),
            Request::Get {
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
    call(
        &boxes,
        "alice",
        Request::AddContact {
            contact: contact.clone(),
        },
    )
    .await;
    let Response::Contacts(c) = call(&boxes, "alice", Request::ListContacts).await else {
        panic!()
    };
    assert_eq!(c, vec![contact]);
    let Response::SenderStatus(s) = call(
        &boxes,
        "alice",
        Request::ClassifySender {
            address: "Bob <BOB@example.org>".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(s, SenderStatus::Contact);
    call(
        &boxes,
        "alice",
        Request::RemoveContact {
            address: "bob@example.org".into(),
        },
    )
    .await;

    // allow and block lists
    call(
        &boxes,
        "alice",
        Request::AddSender {
            which: SenderList::Allow,
            pattern: "@example.org".into(),
        },
    )
    .await;
    call(
        &boxes,
        "alice",
        Request::AddSender {
            which: SenderList::Block,
            pattern: "spam@example.org".into(),
        },
    )
    .await;
    let Response::Senders(allow) = call(
        &boxes,
        "alice",
        Request::ListSenders {
            which: SenderList::Allow,
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(allow.len(), 1);
    let Response::SenderStatus(s) = call(
        &boxes,
        "alice",
        Request::ClassifySender {
            address: "spam@example.org".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(s, SenderStatus::Blocked);
    let Response::SenderStatus(s) = call(
        &boxes,
        "alice",
        Request::ClassifySender {
            address: "x@example.org".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(s, SenderStatus::Allowed);
    call(
        &boxes,
        "alice",
        Request::RemoveSender {
            which: SenderList::Block,
            pattern: "spam@example.org".into(),
        },
    )
    .await;

    // preferences
    call(
        &boxes,
        "alice",
        Request::SetPreference {
            key: "signature".into(),
            value: "-- A".into(),
        },
    )
    .await;
    let Response::Preference(p) = call(
        &boxes,
        "alice",
        Request::GetPreference {
            key: "signature".into(),
        },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(p.as_deref(), Some("-- A"));
    let Response::Preferences(all) = call(&boxes, "alice", Request::ListPreferences).await else {
        panic!()
    };
    assert_eq!(all.len(), 1);
    call(
        &boxes,
        "alice",
        Request::RemovePreference {
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
    call(
        &boxes,
        "alice",
        Request::InstallPlugin {
            entry: entry.clone(),
        },
    )
    .await;
    let Response::Plugins(p) = call(&boxes, "alice", Request::ListPlugins).await else {
        panic!()
    };
    assert_eq!(p, vec![entry]);
    call(&boxes, "alice", Request::RemovePlugin { name: "x".into() }).await;

    // stats
    let Response::Stats(stats) = call(&boxes, "alice", Request::Stats).await else {
        panic!()
    };
    assert_eq!((stats.mails, stats.tombstones, stats.plugins), (1, 1, 0));
    assert!(stats.state_bytes > 0);

    // All of it survives a restart of the host (snapshot + log replay).
    let digest = boxes.digest(&id("alice")).await.unwrap();
    boxes.shutdown().await;
    drop(boxes);
    let boxes = open(dir.path());
    assert_eq!(boxes.digest(&id("alice")).await.unwrap(), digest);
}
