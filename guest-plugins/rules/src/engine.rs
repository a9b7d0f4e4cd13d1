//! Runs a rules config against one mail and turns the first matching rule
//! into the filter's verdict.
//!
//! The config is parsed afresh for every mail: the filter is a pure
//! function of mail and config with no state between calls, and the config
//! is small and bounded ([`crate::ast::MAX_CONFIG_BYTES`]). A config that
//! does not parse is logged at error level and the mail accepted, so a typo
//! never loses mail.

use crate::Verdict;
use crate::ast::{Action, Rule};
use crate::dem::mail::log::Level;
use crate::dem::mail::types::{FlagChange, MailView};
use crate::matcher::{Prepared, rule_matches};
use crate::parse::parse_config;

/// Runs `config` against `mail`; `log` receives what the host should log.
pub fn evaluate(mail: &MailView, config: &str, log: &mut dyn FnMut(Level, &str)) -> Verdict {
    let rules = match parse_config(config) {
        Ok(rules) => rules,
        Err(error) => {
            log(
                Level::Error,
                &format!("rules: bad config, accepting mail: {error}"),
            );
            return Verdict::Accept;
        }
    };
    match first_match(&rules, mail) {
        Some(rule) => {
            let verdict = to_verdict(&rule.action);
            log(
                Level::Debug,
                &format!("rules: rule on line {} matched: {verdict:?}", rule.line),
            );
            verdict
        }
        None => {
            log(Level::Debug, "rules: no rule matched");
            Verdict::Accept
        }
    }
}

/// The first rule, in config order, whose condition holds for `mail`.
pub fn first_match<'a>(rules: &'a [Rule], mail: &MailView) -> Option<&'a Rule> {
    if rules.is_empty() {
        return None;
    }
    let prepared = Prepared::new(mail);
    rules.iter().find(|rule| rule_matches(rule, &prepared))
}

/// The verdict an action stands for.
pub fn to_verdict(action: &Action) -> Verdict {
    match action {
        Action::Keep => Verdict::Accept,
        Action::FileInto(folder) => Verdict::FileInto(folder.clone()),
        Action::Reject(reason) => Verdict::Reject(reason.clone()),
        Action::AddFlags { flags, keywords } => Verdict::AddFlags(FlagChange {
            flags: *flags,
            keywords: keywords.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dem::mail::types::{AttachmentRef, Header, MailFlags};
    use crate::matcher::tests::mail;

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

    const EXAMPLE: &str = r#"
# Example from the docs.
if header "subject" contains "invoice" then fileinto "Finance"
if from is "boss@example.com" then addflag "\\Flagged"
if to contains "@lists.example.org" and not header "list-id" exists then fileinto "Lists"
if size over 1M then addflag "big"
if any then keep
"#;

    #[test]
    fn empty_config_accepts() {
        let (verdict, logs) = run(&mail(), "");
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(
            logs,
            vec![(Level::Debug, "rules: no rule matched".to_string())]
        );
    }

    #[test]
    fn first_matching_rule_wins() {
        // The test mail's subject mentions an invoice and it is from the
        // boss: the earlier rule decides.
        let (verdict, logs) = run(&mail(), EXAMPLE);
        assert_eq!(verdict, Verdict::FileInto("Finance".to_string()));
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, Level::Debug);
        assert!(logs[0].1.contains("line 3"), "{}", logs[0].1);
    }

    #[test]
    fn later_rules_apply_when_earlier_do_not() {
        let mut mail = mail();
        mail.subject = "Lunch?".to_string();
        assert_eq!(
            verdict(&mail, EXAMPLE),
            Verdict::AddFlags(FlagChange {
                flags: MailFlags::FLAGGED,
                keywords: vec![],
            })
        );

        mail.from = "someone@else.org".to_string();
        mail.to = vec!["Dev <dev@lists.example.org>".to_string()];
        assert_eq!(
            verdict(&mail, EXAMPLE),
            Verdict::FileInto("Lists".to_string())
        );

        // A List-Id header makes the list rule fail; next, the size rule.
        mail.headers.push(Header {
            name: "List-Id".to_string(),
            value: "<dev.lists.example.org>".to_string(),
        });
        mail.attachments.push(AttachmentRef {
            hash: "ab".to_string(),
            name: "big.iso".to_string(),
            media_type: "application/octet-stream".to_string(),
            size_bytes: 2 << 20,
            splice_at: None,
        });
        assert_eq!(
            verdict(&mail, EXAMPLE),
            Verdict::AddFlags(FlagChange {
                flags: MailFlags::empty(),
                keywords: vec!["big".to_string()],
            })
        );

        mail.attachments.clear();
        assert_eq!(verdict(&mail, EXAMPLE), Verdict::Accept);
    }

    #[test]
    fn no_match_accepts() {
        let config = r#"if subject is "nope" then reject "no""#;
        assert_eq!(verdict(&mail(), config), Verdict::Accept);
    }

    #[test]
    fn reject_action() {
        let config = r#"if header "x-mailer" matches "bulk*" then reject "no bulk mail, thanks""#;
        assert_eq!(
            verdict(&mail(), config),
            Verdict::Reject("no bulk mail, thanks".to_string())
        );
    }

    #[test]
    fn or_and_precedence_at_runtime() {
        // `any or attachment and not any` is `any or (attachment and not
        // any)`: true. Left to right it would be false.
        let config = r#"if any or attachment and not any then fileinto "Yes""#;
        assert_eq!(
            verdict(&mail(), config),
            Verdict::FileInto("Yes".to_string())
        );
    }

    #[test]
    fn keep_stops_evaluation() {
        let config = "if any then keep\nif any then reject \"never\"";
        assert_eq!(verdict(&mail(), config), Verdict::Accept);
    }

    #[test]
    fn bad_config_accepts_and_logs_location() {
        let config = "if any then keep\nif subject contains then keep";
        let (verdict, logs) = run(&mail(), config);
        assert_eq!(verdict, Verdict::Accept);
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].0, Level::Error);
        assert!(logs[0].1.contains("line 2, column 21"), "{}", logs[0].1);
    }

    #[test]
    fn hostile_configs_never_panic() {
        let configs = [
            "\"".to_string(),
            "if".to_string(),
            "\\".repeat(100),
            "if not".to_string(),
            "if header \"\u{0}\" exists then keep".to_string(),
            "if size over 99999999999999999999999 then keep".to_string(),
            "if subject matches \"*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?\" then keep".to_string(),
            "=".repeat(1000),
            "\u{feff}if any then keep".to_string(),
        ];
        for config in &configs {
            let _ = verdict(&mail(), config);
        }
    }

    #[test]
    fn wildcard_on_large_subject() {
        let mut mail = mail();
        mail.subject = "a".repeat(20_000);
        let pattern = "*a".repeat(60);
        let config = format!(r#"if subject matches "{pattern}b" then reject "x""#);
        assert_eq!(verdict(&mail, &config), Verdict::Accept);
    }
}
