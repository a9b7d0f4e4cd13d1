use super::*;

const MAIL: &[u8] = b"From: Alice Example <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Quarterly NUMBERS\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Hello World, the \xc3\x9cber-report is ready.\r\n";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The documents of `words` matched against an index built from `mails`,
/// the way a driver evaluates it.
fn run(mails: &[&[u8]], body: &[&str], text: &[&str]) -> Result<Vec<u32>, QueryError> {
    let mut batch = Batch::new(0);
    for m in mails {
        batch
            .add(message_words(m))
            .expect("a test numbers few documents");
    }
    let docs = batch.next_doc();
    let rows: BTreeMap<String, Vec<u8>> = batch.encode().into_iter().collect();
    let query = Query::parse(&strings(body), &strings(text))?;
    let mut ev = Evaluation::new(docs);
    for w in &query.words {
        for (lo, hi) in w.ranges() {
            for (_, chunk) in rows.range(lo..hi) {
                ev.add_chunk(chunk).unwrap();
            }
        }
        ev.end_word();
    }
    Ok(ev.finish().iter().collect())
}

#[test]
fn words_are_cut_at_non_alphanumerics_and_lower_cased() {
    let w: Vec<String> = words("Hello, WORLD! alice@example.org Ünïcode 42x").collect();
    assert_eq!(
        w,
        strings(&[
            "hello",
            "world",
            "alice",
            "example",
            "org",
            "ünïcode",
            "42x"
        ])
    );
}

#[test]
fn long_words_are_cut_at_a_char_boundary() {
    let long = "é".repeat(100);
    let w: Vec<String> = words(&long).collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].len() <= WORD_BYTES_MAX);
    assert_eq!(w[0], "é".repeat(WORD_BYTES_MAX / 2));
}

#[test]
fn a_message_is_indexed_under_its_header_and_body_words() {
    let w = message_words(MAIL);
    assert!(w.contains(&format!("{HEADER_MARK}alice")));
    assert!(w.contains(&format!("{HEADER_MARK}numbers")));
    assert!(w.contains(&format!("{HEADER_MARK}bob")));
    assert!(w.contains("hello"));
    assert!(w.contains("über"));
    assert!(!w.contains("numbers"), "subject words are header words");
}

#[test]
fn non_utf8_and_garbage_bytes_index_without_panic() {
    let garbage: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let _ = message_words(&garbage);
    let latin1 = b"Subject: caf\xe9\r\n\r\nna\xefve text\r\n";
    let w = message_words(latin1);
    assert!(w.contains("text"));
}

#[test]
fn a_message_of_many_words_is_capped() {
    let mut raw = b"Subject: many\r\n\r\n".to_vec();
    for i in 0..(MESSAGE_WORDS_MAX + 500) {
        raw.extend_from_slice(format!("w{i} ").as_bytes());
    }
    assert_eq!(message_words(&raw).len(), MESSAGE_WORDS_MAX);
}

#[test]
fn postings_round_trip() {
    let docs = [0, 1, 2, 127, 128, 300, 16_384, 1 << 20, u32::MAX - 1];
    let bytes = encode_postings(&docs);
    let mut out = Vec::new();
    decode_postings(&bytes, u32::MAX, |d| out.push(d)).unwrap();
    assert_eq!(out, docs);
}

#[test]
fn damaged_postings_are_refused() {
    assert_eq!(
        decode_postings(&[0x80], 10, |_| {}),
        Err(PostingsError::Truncated)
    );
    assert_eq!(
        decode_postings(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01], u32::MAX, |_| {}),
        Err(PostingsError::Truncated)
    );
    // A repeated document (gap 0) and one past the index.
    assert!(matches!(
        decode_postings(&[3, 0], 10, |_| {}),
        Err(PostingsError::OutOfRange { .. })
    ));
    assert!(matches!(
        decode_postings(&[12], 10, |_| {}),
        Err(PostingsError::OutOfRange { .. })
    ));
}

#[test]
fn a_word_matches_as_a_prefix() {
    let other: &[u8] = b"Subject: hi\r\n\r\nnothing here\r\n";
    assert_eq!(run(&[MAIL, other], &[], &["numb"]).unwrap(), vec![0]);
    assert_eq!(run(&[MAIL, other], &[], &["NUMBERS"]).unwrap(), vec![0]);
    assert_eq!(run(&[MAIL, other], &[], &["noth"]).unwrap(), vec![1]);
    assert_eq!(
        run(&[MAIL, other], &[], &["zyzzyva"]).unwrap(),
        Vec::<u32>::new()
    );
    // A prefix is not an infix.
    assert_eq!(
        run(&[MAIL, other], &[], &["umbers"]).unwrap(),
        Vec::<u32>::new()
    );
}

#[test]
fn every_word_of_every_term_is_needed() {
    let other: &[u8] = b"From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    assert_eq!(run(&[MAIL, other], &[], &["hello"]).unwrap(), vec![0, 1]);
    assert_eq!(
        run(&[MAIL, other], &[], &["hello", "report"]).unwrap(),
        vec![0]
    );
    assert_eq!(
        run(&[MAIL, other], &[], &["hello report"]).unwrap(),
        vec![0]
    );
    assert_eq!(
        run(&[MAIL, other], &[], &["alice@example.org"]).unwrap(),
        vec![0, 1]
    );
    assert_eq!(
        run(&[MAIL, other], &[], &["alice@example.com"]).unwrap(),
        Vec::<u32>::new()
    );
}

#[test]
fn body_terms_look_in_the_body_only() {
    assert_eq!(run(&[MAIL], &["numbers"], &[]).unwrap(), Vec::<u32>::new());
    assert_eq!(run(&[MAIL], &["report"], &[]).unwrap(), vec![0]);
    // The same word as body and text term: the body one wins.
    assert_eq!(
        run(&[MAIL], &["numbers"], &["numbers"]).unwrap(),
        Vec::<u32>::new()
    );
}

#[test]
fn hostile_queries_are_refused_clearly() {
    let many: Vec<String> = (0..=QUERY_TERMS_MAX).map(|i| format!("t{i}")).collect();
    assert!(matches!(
        Query::parse(&[], &many),
        Err(QueryError::TooManyTerms { .. })
    ));
    let huge = "a".repeat(QUERY_TERM_BYTES_MAX + 1);
    assert!(matches!(
        Query::parse(&[], &[huge]),
        Err(QueryError::TermTooLong { .. })
    ));
    let wordy = (0..=QUERY_WORDS_MAX)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    assert!(matches!(
        Query::parse(&[], &[wordy]),
        Err(QueryError::TooManyWords { .. })
    ));
    assert_eq!(
        Query::parse(&[], &strings(&["!!!"])),
        Err(QueryError::NoWord("!!!".into()))
    );
    // A long word within the limits is looked up by its kept prefix.
    let long = "numbers".repeat(20);
    let q = Query::parse(&[], &[long]).unwrap();
    assert_eq!(q.words[0].word.len(), WORD_BYTES_MAX);
}

#[test]
fn doc_sets_intersect() {
    let mut a = DocSet::new(200);
    a.add_chunk(&encode_postings(&[1, 64, 130, 199])).unwrap();
    let mut b = DocSet::new(200);
    b.add_chunk(&encode_postings(&[64, 199])).unwrap();
    a.intersect(&b);
    assert_eq!(a.iter().collect::<Vec<_>>(), vec![64, 199]);
    assert_eq!(a.len(), 2);
}

#[test]
fn one_message_matches_as_the_index_would() {
    let raw = b"From: alice@dem\r\nTo: bob@dem\r\nSubject: Quarterly numbers\r\n\r\nThe canary sings.\r\n";
    let words = message_words(raw);
    let q = |body: &[&str], text: &[&str]| {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        Query::parse(&s(body), &s(text)).unwrap().matches(&words)
    };
    assert!(q(&[], &["numb"]));
    assert!(q(&[], &["canary", "alice"]));
    assert!(q(&["canary"], &[]));
    assert!(
        !q(&["numbers"], &[]),
        "a body term does not match the subject"
    );
    assert!(!q(&[], &["canary", "eagle"]));
}

#[test]
fn numbering_past_two_to_the_32_documents_is_an_error_not_a_wrap() {
    let mut batch = Batch::new(u32::MAX - 1);
    assert_eq!(batch.add(BTreeSet::new()), Ok(u32::MAX - 1));
    assert_eq!(batch.add(BTreeSet::new()), Err(DocumentsExhausted));
}
