use super::*;
use crate::testutil::*;
use crate::wit::{MailFlags, MailboxError, NewMail};

fn q() -> SearchQuery {
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

fn custom(id: &str, date: i64, from: &str, to: &str, subject: &str) -> NewMail {
    let mut m = mail(id, date);
    m.from = from.into();
    m.to = vec![to.into()];
    m.cc = vec![];
    m.subject = subject.into();
    m
}

fn sample() -> Mailbox {
    let mut mb = Mailbox::default();
    let mails = [
        custom("a", 100, "Alice <alice@example.com>", "me@x.org", "Lunch?"),
        custom("b", 200, "Bob <bob@example.com>", "me@x.org", "Report"),
        custom(
            "c",
            300,
            "Cécile <cecile@exemple.fr>",
            "team@x.org",
            "Réunion",
        ),
        custom("d", 400, "alice@example.com", "me@x.org", "Re: Lunch?"),
    ];
    for (i, m) in mails.into_iter().enumerate() {
        let folder = if i == 2 { "Work" } else { "INBOX" };
        mb.deliver(&ctx(i as u64 + 1), m, place(folder)).unwrap();
    }
    let mut cc = mail("e", 50);
    cc.cc = vec!["Boss <boss@corp.com>".into()];
    mb.deliver(&ctx(9), cc, place("INBOX")).unwrap();
    mb.set_flags(&ctx(10), "a", &flags(MailFlags::SEEN, &["food"]), &none())
        .unwrap();
    mb.set_flags(
        &ctx(11),
        "d",
        &flags(MailFlags::SEEN | MailFlags::FLAGGED, &[]),
        &none(),
    )
    .unwrap();
    mb
}

fn run(mb: &Mailbox, q: &SearchQuery) -> Vec<String> {
    mb.search(q, 0, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

#[test]
fn empty_query_lists_everything_newest_first() {
    let mb = sample();
    assert_eq!(run(&mb, &q()), ["d", "c", "b", "a", "e"]);
    assert_eq!(mb.search(&q(), 0, 2).unwrap().len(), 2);
    assert_eq!(ids(&mb.search(&q(), 0, 2).unwrap()), ["d", "c"]);
    assert!(mb.search(&q(), 0, 0).unwrap().is_empty());
}

#[test]
fn field_criteria_are_case_insensitive_substrings() {
    let mb = sample();
    let mut s = q();
    s.from = Some("ALICE".into());
    assert_eq!(run(&mb, &s), ["d", "a", "e"]);
    let mut s = q();
    s.to = Some("boss@CORP".into());
    assert_eq!(run(&mb, &s), ["e"]);
    let mut s = q();
    s.subject = Some("lunch".into());
    assert_eq!(run(&mb, &s), ["d", "a"]);
    // Non-ASCII terms fold case too.
    let mut s = q();
    s.from = Some("CÉCILE".into());
    assert_eq!(run(&mb, &s), ["c"]);
}

/// The mailbox holds no message bytes: body and text terms are the
/// host's to match, so they select nothing out here.
#[test]
fn body_and_text_terms_are_left_to_the_host() -> crate::error::Result<()> {
    let mb = sample();
    let mut s = q();
    s.body_terms = vec!["nowhere".into()];
    s.text_terms = vec!["nothing".into(), "alice".into()];
    assert_eq!(run(&mb, &s), ["d", "c", "b", "a", "e"]);
    s.from = Some("bob".into());
    assert_eq!(ids(&mb.search(&s, 0, 10)?), ["b"]);
    Ok(())
}

#[test]
fn offset_pages_through_the_hits() -> crate::error::Result<()> {
    let mb = sample();
    let all = run(&mb, &q());
    let mut paged = Vec::new();
    for offset in (0..6).step_by(2) {
        paged.extend(
            ids(&mb.search(&q(), offset, 2)?)
                .into_iter()
                .map(String::from),
        );
    }
    assert_eq!(paged, all);
    assert!(mb.search(&q(), 5, 10)?.is_empty());
    assert!(mb.search(&q(), u32::MAX, u32::MAX)?.is_empty());
    // Pages of a filtered query across folders: INBOX and Work.
    let mut s = q();
    s.to = Some("x.org".into());
    assert_eq!(ids(&mb.search(&s, 1, 2)?), ["c", "b"]);
    assert_eq!(ids(&mb.search(&s, 3, 2)?), ["a"]);
    Ok(())
}

#[test]
fn folder_dates_flags_keyword() {
    let mb = sample();
    let mut s = q();
    s.folder = Some("work".into());
    assert!(matches!(
        mb.search(&s, 0, 10),
        Err(MailboxError::NotFound(_))
    ));
    s.folder = Some("Work".into());
    assert_eq!(run(&mb, &s), ["c"]);
    s.folder = Some("inbox".into());
    assert_eq!(run(&mb, &s), ["d", "b", "a", "e"]);

    let mut s = q();
    s.since_ms = Some(200);
    s.before_ms = Some(400);
    assert_eq!(run(&mb, &s), ["c", "b"]);
    s.before_ms = Some(200);
    assert!(run(&mb, &s).is_empty());
    s.before_ms = Some(100);
    assert!(run(&mb, &s).is_empty());

    let mut s = q();
    s.flags_set = MailFlags::SEEN;
    assert_eq!(run(&mb, &s), ["d", "a"]);
    s.flags_unset = MailFlags::FLAGGED;
    assert_eq!(run(&mb, &s), ["a"]);
    let mut s = q();
    s.flags_unset = MailFlags::SEEN;
    assert_eq!(run(&mb, &s), ["c", "b", "e"]);
    let mut s = q();
    s.keyword = Some("food".into());
    assert_eq!(run(&mb, &s), ["a"]);
}

#[test]
fn limit_is_capped_and_merged_across_folders() {
    let mut mb = Mailbox::default();
    for i in 0..(PAGE_LIMIT_MAX as i64 + 10) {
        let folder = if i % 2 == 0 { "INBOX" } else { "Other" };
        put(&mut mb, 1, &format!("m{i}"), i, folder);
    }
    let hits = mb.search(&q(), 0, u32::MAX).unwrap();
    assert_eq!(hits.len(), PAGE_LIMIT_MAX as usize);
    let dates: Vec<i64> = hits.iter().map(|h| h.date_ms).collect();
    let want: Vec<i64> = (10..PAGE_LIMIT_MAX as i64 + 10).rev().collect();
    assert_eq!(dates, want);
}

#[test]
fn offset_pages_merge_across_folders() -> crate::error::Result<()> {
    let mut mb = Mailbox::default();
    for i in 0..50 {
        let folder = ["INBOX", "A", "B"][i % 3];
        put(&mut mb, 1, &format!("m{i}"), i as i64, folder);
    }
    let mut dates = Vec::new();
    for offset in (0..50).step_by(7) {
        dates.extend(mb.search(&q(), offset, 7)?.iter().map(|h| h.date_ms));
    }
    assert_eq!(dates, (0..50).rev().collect::<Vec<i64>>());
    Ok(())
}

fn hashes(ids: &[&str]) -> Vec<u8> {
    let mut hashes: Vec<[u8; 32]> = ids
        .iter()
        .map(|id| *blake3::hash(id.as_bytes()).as_bytes())
        .collect();
    hashes.sort();
    hashes.concat()
}

fn among(mb: &Mailbox, q: &SearchQuery, ids: &[&str]) -> Result<Vec<String>> {
    Ok(mb
        .search_among(q, &hashes(ids), 0, 100)?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

#[test]
fn search_among_keeps_the_named_mails_that_match_newest_first() {
    let mb = sample();
    assert_eq!(among(&mb, &q(), &["a", "c", "e"]).unwrap(), ["c", "a", "e"]);
    let mut inbox = q();
    inbox.folder = Some("INBOX".into());
    assert_eq!(among(&mb, &inbox, &["a", "c", "e"]).unwrap(), ["a", "e"]);
    // A message no mail names (a deleted one the index still has) is
    // skipped; none at all finds nothing.
    assert_eq!(among(&mb, &q(), &["gone", "b"]).unwrap(), ["b"]);
    assert!(among(&mb, &q(), &[]).unwrap().is_empty());
}

#[test]
fn search_among_refuses_bad_hashes_and_too_many() {
    let mb = sample();
    let refused = |messages: &[u8]| mb.search_among(&q(), messages, 0, 10);
    assert!(matches!(
        refused(&[0; 31]),
        Err(MailboxError::InvalidArgument(_))
    ));
    // Not ascending, or repeated.
    let mut two = hashes(&["a", "b"]);
    two.rotate_left(32);
    assert!(matches!(
        refused(&two),
        Err(MailboxError::InvalidArgument(_))
    ));
    assert!(matches!(
        refused(&[hashes(&["a"]), hashes(&["a"])].concat()),
        Err(MailboxError::InvalidArgument(_))
    ));
    let many: Vec<u8> = (0..=SEARCH_AMONG_MAX as u32)
        .flat_map(|i| {
            let mut h = [0u8; 32];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h
        })
        .collect();
    assert!(matches!(refused(&many), Err(MailboxError::LimitReached(_))));
}
