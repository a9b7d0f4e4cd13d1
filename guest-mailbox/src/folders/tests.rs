use super::*;
use crate::testutil::*;
use crate::wit::MailboxError;

fn names(mb: &Mailbox) -> Vec<String> {
    mb.list_folders().into_iter().map(|f| f.name).collect()
}

#[test]
fn create_folder_gives_fresh_uid_validity_and_parents() {
    let mut mb = Mailbox::default();
    let f = mb.create_folder(&ctx(1), "Work").unwrap();
    assert_eq!((f.uid_validity, f.uid_next, f.total), (2, 1, 0));
    let f = mb.create_folder(&ctx(2), "a/b/c").unwrap();
    assert_eq!(f.uid_validity, 5);
    assert_eq!(names(&mb), ["INBOX", "Work", "a", "a/b", "a/b/c"]);
    assert!(matches!(
        mb.create_folder(&ctx(3), "Work"),
        Err(MailboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        mb.create_folder(&ctx(3), "iNbOx"),
        Err(MailboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        mb.create_folder(&ctx(3), "a/../b"),
        Err(MailboxError::InvalidName(_))
    ));
    // INBOX children are ordinary folders.
    assert_eq!(
        mb.create_folder(&ctx(4), "inbox/x").unwrap().name,
        "INBOX/x"
    );
}

#[test]
fn recreated_folder_gets_new_uid_validity() {
    let mut mb = Mailbox::default();
    let v1 = mb.create_folder(&ctx(1), "X").unwrap().uid_validity;
    mb.delete_folder(&ctx(2), "X").unwrap();
    let v2 = mb.create_folder(&ctx(3), "X").unwrap().uid_validity;
    assert!(v2 > v1);
}

#[test]
fn folder_limit_is_all_or_nothing() {
    let mut mb = Mailbox::default();
    for i in 1..FOLDERS_MAX - 1 {
        mb.create_folder(&ctx(1), &format!("f{i}")).unwrap();
    }
    // Needs two new folders, only one fits.
    let e = mb.create_folder(&ctx(2), "p/q").unwrap_err();
    assert!(matches!(e, MailboxError::LimitReached(_)));
    assert!(!mb.state.folders.contains_key("p"));
    mb.create_folder(&ctx(3), "last").unwrap();
    assert_eq!(mb.state.folders.len(), FOLDERS_MAX);
}

#[test]
fn rename_moves_children_and_keeps_mails() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "m1", 1, "a/b");
    put(&mut mb, 2, "m2", 2, "a");
    mb.create_folder(&ctx(3), "ab").unwrap(); // not a child of "a"
    let va = mb.state.folders["a"].uid_validity;
    let vab = mb.state.folders["a/b"].uid_validity;
    let f = mb.rename_folder(&ctx(4), "a", "x/y").unwrap();
    assert_eq!(
        (f.name.as_str(), f.uid_validity, f.total, f.uid_next),
        ("x/y", va, 1, 2)
    );
    assert_eq!(names(&mb), ["INBOX", "ab", "x", "x/y", "x/y/b"]);
    assert_eq!(mb.state.folders["x/y/b"].uid_validity, vab);
    let page = mb.list_folder("x/y/b", 0, 10).unwrap();
    assert_eq!(page.items[0].id, "m1");
    assert_eq!(page.items[0].folder, "x/y/b");
    assert_eq!(page.items[0].uid, 1);
    // New deliveries to the old name create a fresh folder.
    assert_eq!(put(&mut mb, 5, "m3", 3, "a").folder, "a");
}

#[test]
fn rename_refusals() {
    let mut mb = Mailbox::default();
    mb.create_folder(&ctx(1), "a/b").unwrap();
    mb.create_folder(&ctx(1), "c").unwrap();
    let r = |mb: &mut Mailbox, from: &str, to: &str| mb.rename_folder(&ctx(2), from, to);
    assert!(matches!(
        r(&mut mb, "INBOX", "x"),
        Err(MailboxError::NotAllowed(_))
    ));
    assert!(matches!(
        r(&mut mb, "inbox", "x"),
        Err(MailboxError::NotAllowed(_))
    ));
    assert!(matches!(
        r(&mut mb, "a", "c"),
        Err(MailboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        r(&mut mb, "c", "INBOX"),
        Err(MailboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        r(&mut mb, "a", "a"),
        Err(MailboxError::AlreadyExists(_))
    ));
    assert!(matches!(
        r(&mut mb, "a", "a/b/z"),
        Err(MailboxError::InvalidArgument(_))
    ));
    assert!(matches!(
        r(&mut mb, "nope", "z"),
        Err(MailboxError::NotFound(_))
    ));
    assert!(matches!(
        r(&mut mb, "c", "bad/"),
        Err(MailboxError::InvalidName(_))
    ));
    // A child name that would get too long fails the whole rename.
    let long = "z".repeat(crate::limits::NAME_BYTES_MAX - 1);
    assert!(matches!(
        r(&mut mb, "a", &long),
        Err(MailboxError::TooLarge(_))
    ));
    assert_eq!(names(&mb), ["INBOX", "a", "a/b", "c"]);
    // Children of INBOX can be renamed.
    mb.create_folder(&ctx(3), "INBOX/k").unwrap();
    assert_eq!(r(&mut mb, "inbox/k", "k").unwrap().name, "k");
}

#[test]
fn delete_folder_rules() {
    let mut mb = Mailbox::default();
    put(&mut mb, 1, "m", 1, "full");
    mb.create_folder(&ctx(2), "p/c").unwrap();
    let mut hlc = 2;
    let mut d = |mb: &mut Mailbox, n: &str| {
        hlc += 1;
        mb.delete_folder(&ctx(hlc), n)
    };
    assert!(matches!(
        d(&mut mb, "INBOX"),
        Err(MailboxError::NotAllowed(_))
    ));
    assert!(matches!(
        d(&mut mb, "Inbox"),
        Err(MailboxError::NotAllowed(_))
    ));
    assert!(matches!(
        d(&mut mb, "full"),
        Err(MailboxError::NotAllowed(_))
    ));
    assert!(matches!(d(&mut mb, "p"), Err(MailboxError::NotAllowed(_))));
    assert!(matches!(d(&mut mb, "zz"), Err(MailboxError::NotFound(_))));
    d(&mut mb, "p/c").unwrap();
    d(&mut mb, "p").unwrap();
    mb.delete_mail(&ctx(50), "m").unwrap();
    d(&mut mb, "full").unwrap();
    assert_eq!(names(&mb), ["INBOX"]);
}

#[test]
fn list_folders_counts() {
    let mut mb = Mailbox::default();
    mb.create_folder(&ctx(1), "Archive").unwrap();
    put(&mut mb, 2, "a", 1, "INBOX");
    put(&mut mb, 3, "b", 2, "INBOX");
    mb.set_flags(
        &ctx(4),
        "a",
        &flags(crate::wit::MailFlags::SEEN, &[]),
        &none(),
    )
    .unwrap();
    let l = mb.list_folders();
    assert_eq!(l[0].name, "INBOX");
    assert_eq!((l[0].total, l[0].unseen, l[0].uid_next), (2, 1, 3));
    let bytes = mb.state.mails["a"].size_bytes + mb.state.mails["b"].size_bytes;
    assert_eq!(l[0].size_bytes, bytes);
    assert_eq!((l[1].name.as_str(), l[1].total), ("Archive", 0));
}
