//! Scoring tests, kept apart from `score.rs` to keep each file readable.

use super::*;
use crate::config::parse_config;
use crate::dem::mail::types::Header;
use crate::test_support::{attachment, clean_mail};

fn fires(rule: Structural, mail: &MailView) -> bool {
    rule.fires(mail)
}

fn labels(mail: &MailView, config: &str) -> Vec<String> {
    let config = parse_config(config).unwrap_or_default();
    hits(mail, &config).into_iter().map(|h| h.label).collect()
}

#[test]
fn clean_mail_fires_nothing() {
    let mail = clean_mail();
    for rule in Structural::ALL {
        assert!(!fires(rule, &mail), "{}", rule.name());
    }
    assert!(labels(&mail, "").is_empty());
}

#[test]
fn indices_and_names_round_trip() {
    for (i, rule) in Structural::ALL.into_iter().enumerate() {
        assert_eq!(rule.index(), i);
        assert_eq!(Structural::from_name(rule.name()), Some(rule));
    }
    assert_eq!(Structural::from_name("nope"), None);
}

#[test]
fn shouting_subject() {
    let mut mail = clean_mail();
    for (subject, expected) in [
        ("BUY NOW CHEAP PILLS", true),
        ("FREE CASH NOW 4 u", true),
        ("FREE CASH NOW for you", false),
        ("Buy now cheap pills", false),
        ("RE: OK", false),
        ("URGENT!!", false),
        ("ÜBERGRÖßE JETZT", true),
        ("12345678 ABCDEFGH", true),
    ] {
        mail.subject = subject.to_string();
        assert_eq!(
            fires(Structural::ShoutingSubject, &mail),
            expected,
            "{subject}"
        );
    }
}

#[test]
fn exclamations() {
    let mut mail = clean_mail();
    mail.subject = "Wow!!".to_string();
    assert!(!fires(Structural::Exclamations, &mail));
    mail.subject = "Wow!!!".to_string();
    assert!(fires(Structural::Exclamations, &mail));
    mail.subject = "Hi".to_string();
    mail.body_preview = "!".repeat(BODY_EXCLAMATIONS - 1);
    assert!(!fires(Structural::Exclamations, &mail));
    mail.body_preview.push('!');
    assert!(fires(Structural::Exclamations, &mail));
}

#[test]
fn missing_message_id_and_date() {
    let mut mail = clean_mail();
    mail.message_id = "  ".to_string();
    assert!(fires(Structural::MissingMessageId, &mail));
    mail.date_ms = 0;
    assert!(fires(Structural::MissingDate, &mail));
    mail.date_ms = -5;
    assert!(fires(Structural::MissingDate, &mail));
    mail.date_ms = 1;
    assert!(!fires(Structural::MissingDate, &mail));
}

#[test]
fn empty_subject() {
    let mut mail = clean_mail();
    mail.subject = " \t".to_string();
    assert!(fires(Structural::EmptySubject, &mail));
}

#[test]
fn display_name_mismatch_cases() {
    for (from, expected) in [
        ("\"service@paypal.com\" <crook@evil.example>", true),
        ("PayPal (service@paypal.com) <crook@evil.example>", true),
        ("service@paypal.com: <crook@evil.example>", true),
        ("\"alice@example.org\" <Alice@Example.org>", false),
        ("Alice <alice@example.org>", false),
        ("alice@example.org", false),
        ("Alice at home <alice@example.org>", false),
        ("user@localhost <crook@evil.example>", false),
        ("\"a@b.c\" <>", false),
        ("\"a@b.c\" <unterminated", false),
        ("", false),
    ] {
        assert_eq!(display_name_mismatch(from), expected, "{from}");
    }
}

#[test]
fn many_recipients() {
    let mut mail = clean_mail();
    mail.to = vec!["a@example.org".to_string(); MANY_RECIPIENTS - 2];
    mail.cc = vec!["b@example.org".to_string()];
    assert!(!fires(Structural::ManyRecipients, &mail));
    mail.cc.push("c@example.org".to_string());
    assert!(fires(Structural::ManyRecipients, &mail));
}

#[test]
fn dangerous_attachments() {
    for (name, media, expected) in [
        ("invoice.exe", "application/octet-stream", true),
        ("INVOICE.PDF.SCR", "application/octet-stream", true),
        ("evil.exe .", "application/octet-stream", true),
        ("script.js", "text/javascript", true),
        ("report.pdf", "application/pdf", false),
        ("noextension", "application/x-msdownload; name=x", true),
        ("setup", "Application/X-MSDOS-Program", true),
        ("photo.jpg", "image/jpeg", false),
        ("exe", "text/plain", false),
        ("", "", false),
    ] {
        assert_eq!(is_dangerous(name, media), expected, "{name} {media}");
    }
    let mut mail = clean_mail();
    mail.attachments = vec![attachment("a.pdf", "application/pdf")];
    assert!(!fires(Structural::DangerousAttachment, &mail));
    mail.attachments
        .push(attachment("b.exe", "application/octet-stream"));
    assert!(fires(Structural::DangerousAttachment, &mail));
}

#[test]
fn words_in_subject_or_body() {
    let mut mail = clean_mail();
    mail.subject = "Cheap VIAGRA".to_string();
    assert_eq!(labels(&mail, ""), vec!["word \"viagra\""]);
    mail.subject = "Hello".to_string();
    mail.body_preview = "Get free\nmoney now. Click here!".to_string();
    assert_eq!(
        labels(&mail, ""),
        vec!["word \"free money\"", "word \"click here\""]
    );
    // A word counts once even if it is in both.
    mail.subject = "viagra".to_string();
    mail.body_preview = "viagra viagra".to_string();
    assert_eq!(
        labels(&mail, "builtin_words = off\nword \"viagra\" 1"),
        vec!["word \"viagra\""]
    );
    assert!(labels(&mail, "builtin_words = off").is_empty());
}

#[test]
fn subject_and_header_rules() {
    let mut mail = clean_mail();
    mail.subject = "Your FREE Money awaits".to_string();
    mail.headers = vec![
        Header {
            name: "x-mailer".to_string(),
            value: "Mass BULK sender".to_string(),
        },
        Header {
            name: "X-Spam-Flag".to_string(),
            value: " Yes ".to_string(),
        },
    ];
    let config = r#"
builtin_words = off
subject "free money" 3
subject "invoice" 3
header "X-Mailer" contains "bulk" 2
header "X-Mailer" contains "thunderbird" -2
header "x-spam-flag" is "yes" 5
header "X-Spam-Flag" is "y" 5
header "List-Id" exists 1
header "X-SPAM-FLAG" exists 0.5
"#;
    assert_eq!(
        labels(&mail, config),
        vec![
            "subject \"free money\"",
            "header \"X-Mailer\" contains \"bulk\"",
            "header \"x-spam-flag\" is \"yes\"",
            "header \"X-SPAM-FLAG\" exists",
        ]
    );
}

#[test]
fn zero_weight_disables_and_total_sums() {
    let mut mail = clean_mail();
    mail.subject = String::new();
    mail.message_id = String::new();
    let config =
        parse_config("rule empty_subject 0\nrule missing_message_id 2.5").unwrap_or_default();
    let hits = hits(&mail, &config);
    assert_eq!(
        hits,
        vec![Hit {
            label: "missing_message_id".to_string(),
            weight: 2.5
        }]
    );
    assert_eq!(total(&hits), 2.5);
    assert_eq!(total(&[]), 0.0);
}
