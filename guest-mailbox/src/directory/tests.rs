use super::*;
use crate::testutil::*;
use crate::wit::MailboxError;

fn contact(addr: &str) -> Contact {
    Contact {
        name: "Bob".into(),
        address: addr.into(),
        note: "met at RustConf".into(),
    }
}

fn plugin(name: &str, order: u32) -> PluginEntry {
    PluginEntry {
        name: name.into(),
        code_hash: "0123456789abcdef".repeat(4),
        config: "{}".into(),
        order,
    }
}

#[test]
fn bare_address_forms() {
    assert_eq!(bare_address("\"Bob\" <Bob@Example.com>"), "bob@example.com");
    assert_eq!(bare_address("<bob@example.com>"), "bob@example.com");
    assert_eq!(bare_address(" BOB@example.com "), "bob@example.com");
    assert_eq!(bare_address("Bob <bob@x.org"), "bob <bob@x.org");
}

#[test]
fn contacts_add_list_remove() {
    let mut mb = Mailbox::default();
    mb.add_contact(&ctx(1), contact("Bob@Example.com")).unwrap();
    mb.add_contact(&ctx(1), contact("al@example.com")).unwrap();
    // Adding a known address replaces the entry (last writer wins).
    mb.add_contact(&ctx(2), contact("bob@example.COM")).unwrap();
    let l = mb.list_contacts();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].address, "al@example.com");
    assert_eq!(l[1], contact("bob@example.COM"));
    for bad in ["", "bob", "@x.org", "bob@", "a b@x.org", "<a@x.org>"] {
        assert!(
            matches!(
                mb.add_contact(&ctx(3), contact(bad)),
                Err(MailboxError::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    let mut big = contact("n@x.org");
    big.note = "x".repeat(CONTACT_NOTE_BYTES_MAX + 1);
    assert!(matches!(
        mb.add_contact(&ctx(3), big),
        Err(MailboxError::TooLarge(_))
    ));
    mb.remove_contact(&ctx(4), "BOB@example.com").unwrap();
    // Removing it again is a no-op; an address never known is not found.
    mb.remove_contact(&ctx(5), "bob@example.com").unwrap();
    assert!(matches!(
        mb.remove_contact(&ctx(5), "nobody@example.com"),
        Err(MailboxError::NotFound(_))
    ));
    assert_eq!(mb.list_contacts().len(), 1);
    assert_eq!(mb.stats().contacts, 1);
}

#[test]
fn contact_limit() {
    let mut mb = Mailbox::default();
    for i in 0..CONTACTS_MAX {
        mb.add_contact(&ctx(1), contact(&format!("c{i}@x.org")))
            .unwrap();
    }
    assert!(matches!(
        mb.add_contact(&ctx(2), contact("one@more.org")),
        Err(MailboxError::LimitReached(_))
    ));
}

#[test]
fn sender_patterns_normalise() {
    let mut mb = Mailbox::default();
    let a = SenderList::Allow;
    mb.add_sender(&ctx(1), a, "Example.com").unwrap();
    mb.add_sender(&ctx(1), a, "Bob@Example.org").unwrap();
    mb.add_sender(&ctx(2), a, "@EXAMPLE.COM").unwrap();
    assert_eq!(mb.list_senders(a), ["@example.com", "bob@example.org"]);
    assert!(mb.list_senders(SenderList::Block).is_empty());
    for bad in ["", "@", "a@b@c", "bo b@x.org", "@.x", "bob@"] {
        assert!(
            matches!(
                mb.add_sender(&ctx(3), a, bad),
                Err(MailboxError::InvalidArgument(_))
            ),
            "{bad:?}"
        );
    }
    mb.remove_sender(&ctx(4), a, "@example.com").unwrap();
    mb.remove_sender(&ctx(5), a, "example.com").unwrap();
    assert!(matches!(
        mb.remove_sender(&ctx(5), a, "other.org"),
        Err(MailboxError::NotFound(_))
    ));
    assert_eq!(mb.list_senders(a), ["bob@example.org"]);
}

#[test]
fn classify_sender_precedence() {
    let mut mb = Mailbox::default();
    mb.add_contact(&ctx(1), contact("friend@pals.org")).unwrap();
    mb.add_contact(&ctx(1), contact("spammer@pals.org"))
        .unwrap();
    mb.add_sender(&ctx(1), SenderList::Allow, "@corp.com")
        .unwrap();
    mb.add_sender(&ctx(1), SenderList::Allow, "vip@spam.net")
        .unwrap();
    mb.add_sender(&ctx(1), SenderList::Block, "spam.net")
        .unwrap();
    mb.add_sender(&ctx(1), SenderList::Block, "spammer@pals.org")
        .unwrap();
    let c = |s: &str| mb.classify_sender(s);
    assert_eq!(c("\"Friend\" <Friend@Pals.org>"), SenderStatus::Contact);
    assert_eq!(c("boss@corp.com"), SenderStatus::Allowed);
    assert_eq!(c("Boss <BOSS@CORP.COM>"), SenderStatus::Allowed);
    // Domain patterns match that exact domain only.
    assert_eq!(c("x@sub.corp.com"), SenderStatus::Unknown);
    // Block wins over allow and over being a contact.
    assert_eq!(c("vip@spam.net"), SenderStatus::Blocked);
    assert_eq!(c("spammer@pals.org"), SenderStatus::Blocked);
    assert_eq!(c("someone@else.org"), SenderStatus::Unknown);
    assert_eq!(c("not an address"), SenderStatus::Unknown);
}

#[test]
fn preferences() {
    let mut mb = Mailbox::default();
    mb.set_preference(&ctx(1), "theme".into(), "dark".into())
        .unwrap();
    mb.set_preference(&ctx(1), "lang".into(), "fr".into())
        .unwrap();
    mb.set_preference(&ctx(2), "theme".into(), "light".into())
        .unwrap();
    assert_eq!(mb.get_preference("theme").as_deref(), Some("light"));
    assert_eq!(mb.get_preference("nope"), None);
    assert_eq!(
        mb.list_preferences(),
        [
            ("lang".into(), "fr".into()),
            ("theme".into(), "light".into())
        ]
    );
    assert!(matches!(
        mb.set_preference(&ctx(3), "".into(), "v".into()),
        Err(MailboxError::InvalidName(_))
    ));
    assert!(matches!(
        mb.set_preference(&ctx(3), "k\n".into(), "v".into()),
        Err(MailboxError::InvalidName(_))
    ));
    assert!(matches!(
        mb.set_preference(
            &ctx(3),
            "k".into(),
            "v".repeat(PREFERENCE_VALUE_BYTES_MAX + 1)
        ),
        Err(MailboxError::TooLarge(_))
    ));
    mb.remove_preference(&ctx(4), "lang").unwrap();
    mb.remove_preference(&ctx(5), "lang").unwrap();
    assert_eq!(mb.get_preference("lang"), None);
    assert!(matches!(
        mb.remove_preference(&ctx(5), "never"),
        Err(MailboxError::NotFound(_))
    ));
}

#[test]
fn preference_limit_counts_new_keys_only() {
    let mut mb = Mailbox::default();
    for i in 0..PREFERENCES_MAX {
        mb.set_preference(&ctx(1), format!("k{i}"), "v".into())
            .unwrap();
    }
    assert!(matches!(
        mb.set_preference(&ctx(2), "new".into(), "v".into()),
        Err(MailboxError::LimitReached(_))
    ));
    mb.set_preference(&ctx(2), "k0".into(), "w".into()).unwrap();
}

#[test]
fn plugins_sorted_and_validated() {
    let mut mb = Mailbox::default();
    mb.install_plugin(&ctx(1), plugin("spam", 20)).unwrap();
    mb.install_plugin(&ctx(1), plugin("rules", 10)).unwrap();
    mb.install_plugin(&ctx(1), plugin("allow", 20)).unwrap();
    let names: Vec<String> = mb.list_plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["rules", "allow", "spam"]);
    // Installing a known name replaces the entry.
    mb.install_plugin(&ctx(2), plugin("spam", 1)).unwrap();
    let names: Vec<String> = mb.list_plugins().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["spam", "rules", "allow"]);
    let mut p = plugin("x", 1);
    p.code_hash = p.code_hash.to_uppercase();
    assert!(matches!(
        mb.install_plugin(&ctx(2), p),
        Err(MailboxError::InvalidArgument(_))
    ));
    let mut p = plugin("x", 1);
    p.code_hash.pop();
    assert!(matches!(
        mb.install_plugin(&ctx(2), p),
        Err(MailboxError::InvalidArgument(_))
    ));
    let mut p = plugin("x", 1);
    p.config = "c".repeat(PLUGIN_CONFIG_BYTES_MAX + 1);
    assert!(matches!(
        mb.install_plugin(&ctx(2), p),
        Err(MailboxError::TooLarge(_))
    ));
    assert!(matches!(
        mb.install_plugin(&ctx(2), plugin("", 1)),
        Err(MailboxError::InvalidName(_))
    ));
    mb.remove_plugin(&ctx(3), "spam").unwrap();
    mb.remove_plugin(&ctx(4), "spam").unwrap();
    assert!(matches!(
        mb.remove_plugin(&ctx(4), "never"),
        Err(MailboxError::NotFound(_))
    ));
    for i in mb.state.plugins.len()..PLUGINS_MAX {
        mb.install_plugin(&ctx(4), plugin(&format!("p{i}"), 0))
            .unwrap();
    }
    assert!(matches!(
        mb.install_plugin(&ctx(5), plugin("over", 0)),
        Err(MailboxError::LimitReached(_))
    ));
}
