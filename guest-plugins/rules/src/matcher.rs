//! Evaluates rule tests against a mail.
//!
//! Every comparison is case-insensitive (Sieve's default `i;ascii-casemap`,
//! extended to Unicode), so the mail's fields are lower-cased once into a
//! [`Prepared`] view and the rule operands at parse time.
//!
//! What each field means:
//!
//! - `from`, `to`, `cc`: each address as written (e.g. `Boss <b@x.org>`)
//!   and, if it has one, the bare address inside `<...>`; a comparison holds
//!   if it holds for either, so `from is "b@x.org"` and
//!   `from contains "boss"` both match that example. `to` and `cc` hold if
//!   any recipient matches.
//! - `subject`: the subject.
//! - `header "NAME"`: every header called NAME (case-insensitive); for
//!   `from`, `to`, `cc`, `subject` and `message-id` the mail's structured
//!   field counts too, because the host may not repeat those in the header
//!   list. `exists` holds if there is at least one non-empty such value or
//!   a header of that name at all.
//! - `size`: the body size plus the sizes of all attachments (attachments
//!   float, but they are part of what the sender sent).

use crate::ast::{Comparison, Condition, Field, Rule, Test};
use crate::dem::mail::types::MailView;

/// The parts of a mail that rules look at, lower-cased once per mail.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    from: Vec<String>,
    to: Vec<String>,
    cc: Vec<String>,
    subject: String,
    message_id: String,
    /// (lower-cased name, lower-cased value).
    headers: Vec<(String, String)>,
    size: u64,
    has_attachments: bool,
}

impl Prepared {
    pub fn new(mail: &MailView) -> Prepared {
        let size = mail
            .attachments
            .iter()
            .fold(mail.body_size_bytes, |total, attachment| {
                total.saturating_add(attachment.size_bytes)
            });
        Prepared {
            from: address_forms(&mail.from),
            to: mail.to.iter().flat_map(|a| address_forms(a)).collect(),
            cc: mail.cc.iter().flat_map(|a| address_forms(a)).collect(),
            subject: mail.subject.to_lowercase(),
            message_id: mail.message_id.to_lowercase(),
            headers: mail
                .headers
                .iter()
                .map(|h| (h.name.trim().to_lowercase(), h.value.to_lowercase()))
                .collect(),
            size,
            has_attachments: !mail.attachments.is_empty(),
        }
    }

    /// The structured field a header name stands for, if any.
    fn structured(&self, name: &str) -> &[String] {
        match name {
            "from" => &self.from,
            "to" => &self.to,
            "cc" => &self.cc,
            "subject" => std::slice::from_ref(&self.subject),
            "message-id" => std::slice::from_ref(&self.message_id),
            _ => &[],
        }
    }

    /// Every value of `field`.
    fn values<'a>(&'a self, field: &'a Field) -> Box<dyn Iterator<Item = &'a str> + 'a> {
        match field {
            Field::From => Box::new(self.from.iter().map(String::as_str)),
            Field::To => Box::new(self.to.iter().map(String::as_str)),
            Field::Cc => Box::new(self.cc.iter().map(String::as_str)),
            Field::Subject => Box::new(std::iter::once(self.subject.as_str())),
            Field::Header(name) => Box::new(
                self.headers
                    .iter()
                    .filter(move |(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
                    .chain(self.structured(name).iter().map(String::as_str)),
            ),
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n == name)
            || self.structured(name).iter().any(|v| !v.is_empty())
    }
}

/// The lower-cased address as written, plus the bare address inside the
/// last `<...>` when there is one and it differs.
fn address_forms(address: &str) -> Vec<String> {
    let full = address.trim().to_lowercase();
    let bare = full
        .rfind('<')
        .and_then(|start| {
            let rest = &full[start + 1..];
            rest.find('>').map(|end| rest[..end].trim().to_string())
        })
        .filter(|bare| !bare.is_empty() && *bare != full);
    match bare {
        Some(bare) => vec![full, bare],
        None => vec![full],
    }
}

fn compare(comparison: &Comparison, value: &str) -> bool {
    match comparison {
        Comparison::Contains(text) => value.contains(text.as_str()),
        Comparison::Is(text) => value == text,
        Comparison::Matches(pattern) => pattern.matches(value),
    }
}

/// Whether `test` holds for the mail.
pub fn test_holds(test: &Test, mail: &Prepared) -> bool {
    match test {
        Test::Any => true,
        Test::Attachment => mail.has_attachments,
        Test::Exists(name) => mail.exists(name),
        Test::Compare { field, comparison } => {
            mail.values(field).any(|value| compare(comparison, value))
        }
        Test::SizeOver(limit) => mail.size > *limit,
        Test::SizeUnder(limit) => mail.size < *limit,
    }
}

fn condition_holds(condition: &Condition, mail: &Prepared) -> bool {
    test_holds(&condition.test, mail) != condition.negated
}

/// Whether `rule`'s condition holds: all tests of any one `and` group.
pub fn rule_matches(rule: &Rule, mail: &Prepared) -> bool {
    rule.any_of
        .iter()
        .any(|group| group.iter().all(|c| condition_holds(c, mail)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dem::mail::types::{AttachmentRef, Header, SenderStatus};
    use crate::wildcard::Pattern;

    /// A plain mail for tests to adjust.
    pub(crate) fn mail() -> MailView {
        MailView {
            id: "m1".to_string(),
            from: "Boss Person <Boss@Example.com>".to_string(),
            to: vec!["me@example.org".to_string()],
            cc: vec![],
            subject: "Your Invoice 42".to_string(),
            date_ms: 1_700_000_000_000,
            message_id: "<abc@example.com>".to_string(),
            headers: vec![
                Header {
                    name: "X-Mailer".to_string(),
                    value: "BulkMail 3".to_string(),
                },
                Header {
                    name: "Received".to_string(),
                    value: "from a".to_string(),
                },
                Header {
                    name: "received".to_string(),
                    value: "from b".to_string(),
                },
            ],
            body_preview: "hello".to_string(),
            body_size_bytes: 1000,
            attachments: vec![],
            sender: SenderStatus::Unknown,
        }
    }

    fn attachment(size: u64) -> AttachmentRef {
        AttachmentRef {
            hash: "00".to_string(),
            name: "a.pdf".to_string(),
            media_type: "application/pdf".to_string(),
            size_bytes: size,
            splice_at: None,
        }
    }

    fn cmp(field: Field, comparison: Comparison) -> Test {
        Test::Compare { field, comparison }
    }

    fn holds(test: Test, mail: &MailView) -> bool {
        test_holds(&test, &Prepared::new(mail))
    }

    fn contains(text: &str) -> Comparison {
        Comparison::Contains(text.to_string())
    }

    fn is(text: &str) -> Comparison {
        Comparison::Is(text.to_string())
    }

    fn matches(text: &str) -> Comparison {
        Comparison::Matches(Pattern::new(text))
    }

    #[test]
    fn from_matches_full_and_bare_address() {
        let mail = mail();
        assert!(holds(cmp(Field::From, is("boss@example.com")), &mail));
        assert!(holds(
            cmp(Field::From, is("boss person <boss@example.com>")),
            &mail
        ));
        assert!(holds(cmp(Field::From, contains("person")), &mail));
        assert!(holds(cmp(Field::From, matches("*@example.com")), &mail));
        assert!(holds(cmp(Field::From, matches("boss person *")), &mail));
        assert!(!holds(cmp(Field::From, is("boss")), &mail));
    }

    #[test]
    fn to_and_cc_match_any_recipient() {
        let mut mail = mail();
        mail.to.push("List <dev@lists.example.org>".to_string());
        mail.cc = vec!["Carol@Example.net".to_string()];
        assert!(holds(cmp(Field::To, contains("@lists.example.org")), &mail));
        assert!(holds(cmp(Field::To, is("me@example.org")), &mail));
        assert!(holds(cmp(Field::Cc, is("carol@example.net")), &mail));
        assert!(!holds(cmp(Field::Cc, is("me@example.org")), &mail));
        mail.cc.clear();
        assert!(!holds(cmp(Field::Cc, matches("*")), &mail));
    }

    #[test]
    fn subject_comparisons_ignore_case() {
        let mail = mail();
        assert!(holds(cmp(Field::Subject, contains("invoice")), &mail));
        assert!(holds(cmp(Field::Subject, is("your invoice 42")), &mail));
        assert!(holds(cmp(Field::Subject, matches("your ??voice *")), &mail));
        assert!(!holds(cmp(Field::Subject, is("invoice")), &mail));
    }

    #[test]
    fn headers_by_name_any_value() {
        let mail = mail();
        let header = |name: &str| Field::Header(name.to_string());
        assert!(holds(cmp(header("x-mailer"), contains("bulk")), &mail));
        // Two Received headers: either one may match.
        assert!(holds(cmp(header("received"), is("from a")), &mail));
        assert!(holds(cmp(header("received"), is("from b")), &mail));
        assert!(!holds(cmp(header("received"), is("from c")), &mail));
        assert!(!holds(cmp(header("list-id"), matches("*")), &mail));
    }

    #[test]
    fn structured_fields_count_as_headers() {
        let mail = mail();
        let header = |name: &str| Field::Header(name.to_string());
        assert!(holds(cmp(header("subject"), contains("invoice")), &mail));
        assert!(holds(cmp(header("from"), is("boss@example.com")), &mail));
        assert!(holds(cmp(header("message-id"), contains("abc@")), &mail));
        assert!(holds(Test::Exists("subject".to_string()), &mail));
        assert!(holds(Test::Exists("to".to_string()), &mail));
        assert!(!holds(Test::Exists("cc".to_string()), &mail));
    }

    #[test]
    fn exists() {
        let mut mail = mail();
        assert!(holds(Test::Exists("x-mailer".to_string()), &mail));
        assert!(!holds(Test::Exists("list-id".to_string()), &mail));
        mail.headers.push(Header {
            name: " List-ID ".to_string(),
            value: String::new(),
        });
        // An empty header still exists.
        assert!(holds(Test::Exists("list-id".to_string()), &mail));
        mail.subject.clear();
        assert!(!holds(Test::Exists("subject".to_string()), &mail));
    }

    #[test]
    fn size_counts_body_and_attachments() {
        let mut mail = mail();
        assert!(holds(Test::SizeOver(999), &mail));
        assert!(!holds(Test::SizeOver(1000), &mail));
        assert!(holds(Test::SizeUnder(1001), &mail));
        assert!(!holds(Test::SizeUnder(1000), &mail));
        mail.attachments.push(attachment(5000));
        assert!(holds(Test::SizeOver(5999), &mail));
        assert!(!holds(Test::SizeOver(6000), &mail));
        // Sizes saturate rather than wrap.
        mail.attachments.push(attachment(u64::MAX));
        assert!(holds(Test::SizeOver(u64::MAX - 1), &mail));
    }

    #[test]
    fn attachment_and_any() {
        let mut mail = mail();
        assert!(holds(Test::Any, &mail));
        assert!(!holds(Test::Attachment, &mail));
        mail.attachments.push(attachment(1));
        assert!(holds(Test::Attachment, &mail));
    }

    #[test]
    fn and_or_not() {
        let mail = Prepared::new(&mail());
        let yes = || Condition {
            negated: false,
            test: Test::Any,
        };
        let no = || Condition {
            negated: true,
            test: Test::Any,
        };
        let rule = |any_of| Rule {
            line: 1,
            any_of,
            action: crate::ast::Action::Keep,
        };
        assert!(rule_matches(&rule(vec![vec![yes(), yes()]]), &mail));
        assert!(!rule_matches(&rule(vec![vec![yes(), no()]]), &mail));
        assert!(rule_matches(&rule(vec![vec![no()], vec![yes()]]), &mail));
        assert!(!rule_matches(
            &rule(vec![vec![no()], vec![no(), yes()]]),
            &mail
        ));
    }

    #[test]
    fn address_forms_cases() {
        assert_eq!(address_forms("a@b.c"), vec!["a@b.c"]);
        assert_eq!(address_forms("<a@b.c>"), vec!["<a@b.c>", "a@b.c"]);
        assert_eq!(address_forms("X <A@B.C>"), vec!["x <a@b.c>", "a@b.c"]);
        assert_eq!(address_forms("broken <"), vec!["broken <"]);
        assert_eq!(address_forms("empty <>"), vec!["empty <>"]);
    }
}
