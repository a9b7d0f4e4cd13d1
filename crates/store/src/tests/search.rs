//! The search index's rows: written in batches that must follow one
//! another, compared with the references to find what is not indexed,
//! read by word range, and dropped whole.

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn hash(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

fn batch(first_doc: u32, hashes: &[[u8; 32]], words: &[(&str, &[u8])]) -> SearchBatch {
    SearchBatch {
        first_doc,
        hashes: hashes.to_vec(),
        chunks: words
            .iter()
            .map(|(w, c)| (w.to_string(), c.to_vec()))
            .collect(),
    }
}

fn chunks(store: &MailboxStore, id: &str, from: &str, to: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    store
        .search_chunks::<LoadError>(id, from, to, |c| {
            out.push(c.to_vec());
            Ok(())
        })
        .unwrap();
    out
}

#[test]
fn batches_are_indexed_in_order_and_read_back_by_word_range() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking()?;
    store.create("b", meta(2)).wait_blocking()?;
    let (m1, m2, m3) = (b"one".to_vec(), b"two".to_vec(), b"three".to_vec());
    store
        .append_with_messages("a", 1, b"op".to_vec(), vec![m1.clone(), m2.clone()])
        .wait_blocking()?;
    let mut both = vec![hash(&m1), hash(&m2)];
    both.sort();
    assert_eq!(store.search_state("a")?, SearchState::default());
    assert_eq!(store.search_unindexed("a")?, both);

    store.search_write(
        "a",
        batch(0, &[hash(&m1)], &[("numbers", &[0]), ("nope", &[0])]),
        None,
    )?;
    assert_eq!(store.search_unindexed("a")?, vec![hash(&m2)]);
    // A batch that does not follow the last is refused.
    let err = store
        .search_write("a", batch(0, &[hash(&m2)], &[]), None)
        .unwrap_err();
    assert!(matches!(
        err,
        SearchWriteError::OutOfOrder {
            first_doc: 0,
            docs: 1
        }
    ));
    store.search_write("a", batch(1, &[hash(&m2)], &[("number", &[1])]), Some(7))?;
    assert_eq!(
        store.search_state("a")?,
        SearchState {
            docs: 2,
            seen_seq: 7
        }
    );
    assert_eq!(store.search_unindexed("a")?, Vec::<[u8; 32]>::new());
    // Mailbox b's rows are its own.
    store.search_write("b", batch(0, &[hash(&m3)], &[("numbers", &[0])]), None)?;

    assert_eq!(
        chunks(&store, "a", "numb", "numb\u{10ffff}"),
        vec![vec![1], vec![0]]
    );
    assert_eq!(
        chunks(&store, "a", "numbers", "numbers\u{10ffff}"),
        vec![vec![0]]
    );
    assert_eq!(
        chunks(&store, "a", "zyzzyva", "zyzzyva\u{10ffff}"),
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        store.search_hashes("a", &[0, 1])?,
        vec![hash(&m1), hash(&m2)]
    );
    assert!(store.search_hashes("a", &[5]).is_err());

    store.search_drop("a")?;
    assert_eq!(store.search_state("a")?, SearchState::default());
    assert_eq!(store.search_unindexed("a")?, both);
    assert!(chunks(&store, "a", "", "\u{10ffff}").is_empty());
    assert_eq!(chunks(&store, "b", "", "\u{10ffff}"), vec![vec![0]]);
    Ok(())
}

#[test]
fn removing_a_mailbox_drops_its_index() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    store.create("a", meta(1)).wait_blocking()?;
    let m = b"one".to_vec();
    store
        .append_with_messages("a", 1, b"op".to_vec(), vec![m.clone()])
        .wait_blocking()?;
    store.search_write("a", batch(0, &[hash(&m)], &[("word", &[0])]), Some(1))?;
    store.remove("a").wait_blocking()?;
    assert_eq!(store.search_state("a")?, SearchState::default());
    assert!(chunks(&store, "a", "", "\u{10ffff}").is_empty());
    assert!(store.search_hashes("a", &[0]).is_err());
    Ok(())
}

#[test]
fn many_documents_are_read_in_one_pass() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    let hashes: Vec<[u8; 32]> = (0..1000u32).map(|i| hash(&i.to_le_bytes())).collect();
    store.search_write("a", batch(0, &hashes, &[]), None)?;
    let docs: Vec<u32> = (0..1000).filter(|d| d % 3 == 0).collect();
    let want: Vec<[u8; 32]> = docs.iter().map(|&d| hashes[d as usize]).collect();
    assert_eq!(store.search_hashes("a", &docs)?, want);
    let mut past = docs.clone();
    past.push(1000);
    assert!(store.search_hashes("a", &past).is_err());
    Ok(())
}
