//! Verdict tests: the whole plugin from mail and config text to verdict and
//! log lines.

use super::*;
use crate::test_support::{attachment, clean_mail};

fn run(mail: &MailView, config: &str) -> (Verdict, Vec<(Level, String)>) {
    let mut logs = Vec::new();
    let verdict = evaluate(mail, config, &mut |level, message| {
        logs.push((level, message.to_string()))
    });
    (verdict, logs)
}

fn verdict(mail: &MailView, config: &str) -> Verdict {
    run(mail, config).0
}

/// A mail that trips a lot of rules: 1.5 shouting + 1.0 exclamations +
/// 1.5 no message-id + 1.0 no date + 3.0 display name + 3.0 attachment +
/// 4.0 viagra + 3.0 free money = 18.0 under the defaults.
fn spam_mail() -> MailView {
    let mut mail = clean_mail();
    mail.from = "\"support@bank.example\" <x@evil.example>".to_string();
    mail.subject = "VIAGRA AND FREE MONEY!!!".to_string();
    mail.message_id = String::new();
    mail.date_ms = 0;
    mail.attachments = vec![attachment("prize.exe", "application/octet-stream")];
    mail
}

#[test]
fn clean_mail_gets_a_zero_score() {
    let (verdict, logs) = run(&clean_mail(), "");
    assert_eq!(verdict, Verdict::SpamScore(0.0));
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].0, Level::Debug);
    assert!(logs[0].1.contains("no rules matched"), "{}", logs[0].1);
}

#[test]
fn low_score_is_reported() {
    let mut mail = clean_mail();
    mail.subject = "Click here".to_string();
    assert_eq!(verdict(&mail, ""), Verdict::SpamScore(1.5));
}

#[test]
fn junk_threshold_files_into_folder() {
    let mut mail = clean_mail();
    mail.subject = "viagra".to_string();
    mail.message_id = String::new();
    // 4.0 + 1.5 = 5.5 ≥ 5.0.
    assert_eq!(verdict(&mail, ""), Verdict::FileInto("Junk".to_string()));
    assert_eq!(
        verdict(&mail, "folder = \"Spam box\""),
        Verdict::FileInto("Spam box".to_string())
    );
    // Exactly at the threshold counts.
    assert_eq!(
        verdict(&mail, "junk_threshold = 5.5"),
        Verdict::FileInto("Junk".to_string())
    );
    assert_eq!(
        verdict(&mail, "junk_threshold = 5.6"),
        Verdict::SpamScore(5.5)
    );
}

#[test]
fn reject_threshold_rejects_with_reasons() {
    let (verdict, logs) = run(&spam_mail(), "");
    let Verdict::Reject(reason) = verdict else {
        panic!("expected a reject, got {verdict:?}");
    };
    assert!(reason.starts_with("spam score 18.0 ≥ 15.0: "), "{reason}");
    for label in [
        "shouting_subject (+1.5)",
        "exclamations (+1.0)",
        "missing_message_id (+1.5)",
        "missing_date (+1.0)",
        "display_name_mismatch (+3.0)",
        "dangerous_attachment (+3.0)",
        "word \"viagra\" (+4.0)",
        "word \"free money\" (+3.0)",
    ] {
        assert!(reason.contains(label), "{label} missing from {reason}");
    }
    assert_eq!(logs.len(), 1);
    assert!(logs[0].1.contains("scored 18.0"), "{}", logs[0].1);
}

#[test]
fn reject_can_be_switched_off() {
    assert_eq!(
        verdict(&spam_mail(), "reject_threshold = off"),
        Verdict::FileInto("Junk".to_string())
    );
}

#[test]
fn reject_below_junk_wins() {
    let mut mail = clean_mail();
    mail.subject = String::new();
    assert_eq!(
        verdict(&mail, "reject_threshold = 1\njunk_threshold = 2"),
        Verdict::Reject("spam score 1.0 ≥ 1.0: empty_subject (+1.0)".to_string())
    );
}

#[test]
fn negative_weights_lower_the_score() {
    let config = r#"header "X-Mailer" is "thunderbird" -20"#;
    // The clean mail's Thunderbird header: 18.0 - 20.0.
    assert_eq!(verdict(&spam_mail(), config), Verdict::SpamScore(-2.0));
    let mut mail = spam_mail();
    mail.headers.clear();
    assert!(matches!(verdict(&mail, config), Verdict::Reject(_)));
}

#[test]
fn builtin_words_off() {
    // 18.0 - 4.0 - 3.0 = 11.0: junk, not reject.
    assert_eq!(
        verdict(&spam_mail(), "builtin_words = off"),
        Verdict::FileInto("Junk".to_string())
    );
}

#[test]
fn bad_config_accepts_and_logs_error() {
    for config in [
        "junk_threshold = soon",
        "word \"unterminated",
        "word \"x\"",
        "nonsense",
        "header \"X\" exists",
    ] {
        let (verdict, logs) = run(&spam_mail(), config);
        assert_eq!(verdict, Verdict::Accept, "{config}");
        assert_eq!(logs.len(), 1, "{config}");
        assert_eq!(logs[0].0, Level::Error, "{config}");
        assert!(logs[0].1.contains("line 1, column"), "{}", logs[0].1);
    }
}

#[test]
fn long_reasons_are_truncated() {
    let mut config = String::from("builtin_words = off\n");
    for i in 0..200 {
        config.push_str(&format!("subject \"{}\" 0.1\n", "a".repeat(i % 5 + 1)));
    }
    let mut mail = clean_mail();
    mail.subject = "aaaaaé".repeat(50);
    let Verdict::Reject(reason) = verdict(&mail, &(config + "reject_threshold = 1")) else {
        panic!("expected a reject");
    };
    assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
    assert!(reason.ends_with('…'));
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("short".to_string(), 10), "short");
    assert_eq!(truncate("ééééé".to_string(), 6), "é…");
    // No room for the ellipsis: a plain cut.
    assert_eq!(truncate("abcdef".to_string(), 2), "ab");
}

#[test]
fn deterministic() {
    let mail = spam_mail();
    assert_eq!(verdict(&mail, ""), verdict(&mail, ""));
}
