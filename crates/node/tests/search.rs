//! Full-text search through the host's actor, the real guest-mailbox
//! component and a durable store: words and prefixes, every word needed,
//! deleted mail never returned, mail delivered since the last search
//! found, the same answers from an index rebuilt from scratch, and
//! hostile queries refused with a clear error.

mod common;

use common::{ask, id, mail, open};
use dem_node::mailbox::{MailboxCallError, Mailboxes};
use dem_proto::mail::{MailboxError, SearchQuery};
use dem_proto::mailbox::verbs::{DeleteMail, Search};

fn text(terms: &[&str]) -> SearchQuery {
    SearchQuery {
        text_terms: terms.iter().map(|t| t.to_string()).collect(),
        ..SearchQuery::default()
    }
}

async fn found(boxes: &Mailboxes, query: SearchQuery) -> Vec<String> {
    let mut ids: Vec<String> = ask(boxes, "alice", Search { query, limit: 100 })
        .await
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

async fn deliver(boxes: &Mailboxes, mail_id: &str, from: &str, subject: &str, body: &str) {
    boxes
        .deliver(&id("alice"), mail(mail_id, from, subject, body))
        .await
        .unwrap();
}

/// The answers of the queries the tests ask, for comparing indexes.
async fn answers(boxes: &Mailboxes) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for terms in [
        &["numb"][..],
        &["numbers"],
        &["quarterly numbers"],
        &["bob"],
        &["bob@example.org"],
        &["über"],
        &["zyzzyva"],
    ] {
        out.push(found(boxes, text(terms)).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_prefixes_deletes_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let boxes = open(dir.path());
    boxes.create(&id("alice"), None).await.unwrap();
    deliver(
        &boxes,
        "m1",
        "Bob <bob@example.org>",
        "Quarterly numbers",
        "see the table",
    )
    .await;
    deliver(
        &boxes,
        "m2",
        "dan@example.net",
        "Lunch",
        "NUMBERS are up, Über alles",
    )
    .await;
    deliver(&boxes, "m3", "eve@example.net", "Hello", "nothing to see").await;

    // Whole words and prefixes, case-insensitively; not infixes.
    assert_eq!(found(&boxes, text(&["numbers"])).await, ["m1", "m2"]);
    assert_eq!(found(&boxes, text(&["numb"])).await, ["m1", "m2"]);
    assert_eq!(found(&boxes, text(&["umbers"])).await, Vec::<String>::new());
    assert_eq!(found(&boxes, text(&["über"])).await, ["m2"]);
    assert_eq!(
        found(&boxes, text(&["zyzzyva"])).await,
        Vec::<String>::new()
    );
    // Every word of every term.
    assert_eq!(found(&boxes, text(&["numbers", "table"])).await, ["m1"]);
    assert_eq!(found(&boxes, text(&["quarterly numbers"])).await, ["m1"]);
    assert_eq!(found(&boxes, text(&["bob@example.org"])).await, ["m1"]);
    // Body terms look in the body only.
    let body = SearchQuery {
        body_terms: vec!["numbers".into()],
        ..SearchQuery::default()
    };
    assert_eq!(found(&boxes, body).await, ["m2"]);
    // The other criteria still apply.
    let mut from_dan = text(&["numbers"]);
    from_dan.from = Some("dan@".into());
    assert_eq!(found(&boxes, from_dan).await, ["m2"]);
    let mut unknown_folder = text(&["zyzzyva"]);
    unknown_folder.folder = Some("Nowhere".into());
    let err = boxes
        .ask(
            &id("alice"),
            Search {
                query: unknown_folder,
                limit: 10,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, MailboxCallError::Refused(MailboxError::NotFound(_))),
        "{err}"
    );

    // A deleted mail is not returned, though the index still names it.
    ask(&boxes, "alice", DeleteMail { id: "m1".into() }).await;
    assert_eq!(found(&boxes, text(&["numbers"])).await, ["m2"]);

    // Mail delivered since the last search is found.
    deliver(
        &boxes,
        "m4",
        "fay@example.net",
        "More numbers",
        "zyzzyva at last",
    )
    .await;
    assert_eq!(found(&boxes, text(&["zyzzyva"])).await, ["m4"]);
    assert_eq!(found(&boxes, text(&["numbers"])).await, ["m2", "m4"]);

    // Rebuilt from scratch, the index gives the same answers, also after
    // the mailbox slept (a fresh actor compares the index again).
    let before = answers(&boxes).await;
    boxes.hibernate(&id("alice")).await.unwrap();
    boxes.store().unwrap().search_drop("alice").unwrap();
    assert_eq!(answers(&boxes).await, before);
    boxes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_clearly() {
    use dem_message::search::{QUERY_TERM_BYTES_MAX, QUERY_TERMS_MAX};
    let dir = tempfile::tempdir().unwrap();
    let boxes = open(dir.path());
    boxes.create(&id("alice"), None).await.unwrap();
    deliver(&boxes, "m1", "bob@example.org", "Hi", "hello").await;
    let many: Vec<String> = (0..=QUERY_TERMS_MAX).map(|i| format!("w{i}")).collect();
    let huge = "a".repeat(QUERY_TERM_BYTES_MAX + 1);
    for query in [
        SearchQuery {
            text_terms: many,
            ..SearchQuery::default()
        },
        text(&[huge.as_str()]),
        text(&["!!!"]),
    ] {
        let err = boxes
            .ask(&id("alice"), Search { query, limit: 10 })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                MailboxCallError::Refused(MailboxError::InvalidArgument(_))
            ),
            "{err}"
        );
    }
    // A long word within the limits is looked up by its first bytes.
    let long = "hello".repeat(100);
    assert_eq!(
        found(&boxes, text(&[long.as_str()])).await,
        Vec::<String>::new()
    );
    assert_eq!(found(&boxes, text(&["hello"])).await, ["m1"]);
    boxes.shutdown().await;
}
