//! Parser tests, kept apart from `parse.rs` to keep each file readable.

use super::*;

fn parse_one(line: &str) -> Rule {
    match parse_config(line) {
        Ok(mut rules) if rules.len() == 1 => rules.remove(0),
        other => panic!("expected one rule from {line:?}, got {other:?}"),
    }
}

fn error(config: &str) -> ParseError {
    match parse_config(config) {
        Err(error) => error,
        Ok(rules) => panic!("expected an error from {config:?}, got {rules:?}"),
    }
}

fn plain(test: Test) -> Condition {
    Condition {
        negated: false,
        test,
    }
}

fn negated(test: Test) -> Condition {
    Condition {
        negated: true,
        test,
    }
}

fn header(name: &str, comparison: Comparison) -> Test {
    Test::Compare {
        field: Field::Header(name.to_string()),
        comparison,
    }
}

#[test]
fn example_config() {
    let config = r#"
# comment
if header "subject" contains "invoice" then fileinto "Finance"
if from is "boss@example.com" then addflag "\\Flagged"
if to contains "@lists.example.org" and not header "list-id" exists then fileinto "Lists"
if size over 1M then addflag "big"
if any then keep
"#;
    let rules = parse_config(config).unwrap_or_default();
    assert_eq!(rules.len(), 5);
    assert_eq!(
        rules[0],
        Rule {
            line: 3,
            any_of: vec![vec![plain(header(
                "subject",
                Comparison::Contains("invoice".to_string())
            ))]],
            action: Action::FileInto("Finance".to_string()),
        }
    );
    assert_eq!(
        rules[1].any_of,
        vec![vec![plain(Test::Compare {
            field: Field::From,
            comparison: Comparison::Is("boss@example.com".to_string()),
        })]]
    );
    assert_eq!(
        rules[1].action,
        Action::AddFlags {
            flags: MailFlags::FLAGGED,
            keywords: vec![]
        }
    );
    assert_eq!(
        rules[2].any_of,
        vec![vec![
            plain(Test::Compare {
                field: Field::To,
                comparison: Comparison::Contains("@lists.example.org".to_string()),
            }),
            negated(Test::Exists("list-id".to_string())),
        ]]
    );
    assert_eq!(rules[3].line, 6);
    assert_eq!(rules[3].any_of, vec![vec![plain(Test::SizeOver(1 << 20))]]);
    assert_eq!(
        rules[3].action,
        Action::AddFlags {
            flags: MailFlags::empty(),
            keywords: vec!["big".to_string()]
        }
    );
    assert_eq!(
        rules[4],
        Rule {
            line: 7,
            any_of: vec![vec![plain(Test::Any)]],
            action: Action::Keep
        }
    );
}

#[test]
fn empty_and_comment_only_configs() {
    assert_eq!(parse_config(""), Ok(vec![]));
    assert_eq!(parse_config("  \n# x\n\t# y \"z\n"), Ok(vec![]));
}

#[test]
fn and_binds_tighter_than_or() {
    let rule = parse_one("if any or attachment and size under 10 or not any then keep");
    assert_eq!(
        rule.any_of,
        vec![
            vec![plain(Test::Any)],
            vec![plain(Test::Attachment), plain(Test::SizeUnder(10))],
            vec![negated(Test::Any)],
        ]
    );
}

#[test]
fn repeated_not_toggles() {
    let rule = parse_one("if not not any and not not not attachment then keep");
    assert_eq!(
        rule.any_of,
        vec![vec![plain(Test::Any), negated(Test::Attachment)]]
    );
}

#[test]
fn keywords_ignore_case() {
    let rule = parse_one(r#"IF Subject MATCHES "A*" Then FileInto "X""#);
    assert_eq!(
        rule.any_of,
        vec![vec![plain(Test::Compare {
            field: Field::Subject,
            comparison: Comparison::Matches(Pattern::new("a*")),
        })]]
    );
}

#[test]
fn all_fields_and_comparisons() {
    for field in ["from", "to", "cc", "subject"] {
        for op in ["contains", "is", "matches"] {
            let rule = parse_one(&format!(r#"if {field} {op} "X" then keep"#));
            assert_eq!(rule.any_of.len(), 1);
        }
    }
    let rule = parse_one(r#"if header "X-Spam" is "YES" then keep"#);
    assert_eq!(
        rule.any_of,
        vec![vec![plain(header(
            "x-spam",
            Comparison::Is("yes".to_string())
        ))]]
    );
    let rule = parse_one(r#"if header "Received" matches "*Evil*" then keep"#);
    assert_eq!(
        rule.any_of,
        vec![vec![plain(header(
            "received",
            Comparison::Matches(Pattern::new("*evil*"))
        ))]]
    );
}

#[test]
fn sizes() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("123"), Some(123));
    assert_eq!(parse_size("500K"), Some(500 * 1024));
    assert_eq!(parse_size("500k"), Some(500 * 1024));
    assert_eq!(parse_size("1M"), Some(1 << 20));
    assert_eq!(parse_size("2G"), Some(2 << 30));
    assert_eq!(parse_size("18446744073709551615"), Some(u64::MAX));
    assert_eq!(parse_size("18446744073709551616"), None);
    assert_eq!(parse_size("17179869184G"), None);
    for bad in ["", "K", "1.5M", "-1", "1T", "1MB", "+1", "1 M", "١"] {
        assert_eq!(parse_size(bad), None, "{bad:?}");
    }
    assert_eq!(
        parse_one("if size under 10K then keep").any_of,
        vec![vec![plain(Test::SizeUnder(10 * 1024))]]
    );
}

#[test]
fn actions() {
    assert_eq!(
        parse_one(r#"if any then reject "go away""#).action,
        Action::Reject("go away".to_string())
    );
    assert_eq!(
        parse_one(r#"if any then fileinto "Lists/dev \"x\"""#).action,
        Action::FileInto(r#"Lists/dev "x""#.to_string())
    );
    assert_eq!(
        parse_one(
            r#"if any then addflag "\\Seen" "\\answered" "\\FLAGGED" "\\Draft" "\\Deleted" "$Label1" "todo" "todo""#
        )
        .action,
        Action::AddFlags {
            flags: MailFlags::all(),
            keywords: vec!["$Label1".to_string(), "todo".to_string()],
        }
    );
}

#[test]
fn errors_name_line_and_column() {
    let e = error("\n\nif subject contains \"x\" fileinto \"F\"");
    assert_eq!((e.line, e.column), (3, 25));
    assert!(e.message.contains("expected `and`, `or` or `then`"), "{e}");
    assert!(e.message.contains("`fileinto`"), "{e}");
    assert_eq!(e.to_string(), format!("line 3, column 25: {}", e.message));

    let e = error("when any then keep");
    assert_eq!((e.line, e.column), (1, 1));

    let e = error("if any then");
    assert_eq!((e.line, e.column), (1, 12));
    assert!(e.message.contains("end of the line"), "{e}");

    let e = error("if any then keep now");
    assert_eq!(e.column, 18);
    assert!(e.message.contains("after the action"), "{e}");

    let e = error("if body contains \"x\" then keep");
    assert_eq!(e.column, 4);
    assert!(e.message.contains("expected a test"), "{e}");
}

#[test]
fn lexer_errors_are_located() {
    let e = error("if any then keep\nif subject is \"abc then keep");
    assert_eq!((e.line, e.column), (2, 15));
    assert!(e.message.contains("unterminated"), "{e}");
    let e = error(r#"if any then addflag "\Seen""#);
    assert_eq!((e.line, e.column), (1, 22));
    assert!(e.message.contains("escape"), "{e}");
}

#[test]
fn malformed_tests() {
    let cases = [
        (r#"if header then keep"#, 11),
        (r#"if header "" exists then keep"#, 11),
        (r#"if header "a:b" exists then keep"#, 11),
        (r#"if header "x" has "y" then keep"#, 15),
        (r#"if subject exists then keep"#, 12),
        (r#"if subject is x then keep"#, 15),
        (r#"if size over then keep"#, 14),
        (r#"if size over "1M" then keep"#, 14),
        (r#"if size above 1 then keep"#, 9),
        (r#"if size over 1X then keep"#, 14),
        (r#"if any and then keep"#, 12),
        (r#"if not then keep"#, 8),
    ];
    for (config, column) in cases {
        assert_eq!(error(config).column, column, "{config}");
    }
}

#[test]
fn malformed_actions() {
    let cases = [
        (r#"if any then fileinto"#, 21),
        (r#"if any then fileinto """#, 22),
        (r#"if any then fileinto Inbox"#, 22),
        (r#"if any then reject "  ""#, 20),
        (r#"if any then addflag"#, 20),
        (r#"if any then addflag "\\Recent""#, 21),
        (r#"if any then addflag "two words""#, 21),
        (r#"if any then addflag "ok" "bad]""#, 26),
        (r#"if any then discard"#, 13),
    ];
    for (config, column) in cases {
        assert_eq!(error(config).column, column, "{config}");
    }
}

#[test]
fn limits() {
    let long = "x".repeat(MAX_PATTERN_BYTES + 1);
    let e = error(&format!(r#"if subject contains "{long}" then keep"#));
    assert!(e.message.contains("longer than"), "{e}");
    let ok = "x".repeat(MAX_PATTERN_BYTES);
    parse_one(&format!(r#"if subject contains "{ok}" then keep"#));

    let folder = "f".repeat(MAX_FOLDER_BYTES + 1);
    assert!(parse_config(&format!(r#"if any then fileinto "{folder}""#)).is_err());
    let keyword = "k".repeat(MAX_KEYWORD_BYTES + 1);
    assert!(parse_config(&format!(r#"if any then addflag "{keyword}""#)).is_err());
    let reason = "r".repeat(MAX_REASON_BYTES + 1);
    assert!(parse_config(&format!(r#"if any then reject "{reason}""#)).is_err());

    let tests = vec!["any"; MAX_TESTS_PER_RULE].join(" and ");
    parse_one(&format!("if {tests} then keep"));
    let tests = vec!["any"; MAX_TESTS_PER_RULE + 1].join(" or ");
    assert!(
        error(&format!("if {tests} then keep"))
            .message
            .contains("tests")
    );

    let flags = vec!["\"k\""; MAX_FLAGS_PER_ACTION + 1].join(" ");
    assert!(
        error(&format!("if any then addflag {flags}"))
            .message
            .contains("flags")
    );

    let rules = "if any then keep\n".repeat(MAX_RULES);
    assert_eq!(parse_config(&rules).map(|r| r.len()), Ok(MAX_RULES));
    let e = error(&(rules + "if any then keep\n"));
    assert_eq!(e.line, MAX_RULES + 1);

    let e = error(&"#".repeat(MAX_CONFIG_BYTES + 1));
    assert!(e.message.contains("limit"), "{e}");
}

#[test]
fn many_nots_are_fine() {
    let nots = "not ".repeat(10_001);
    let rule = parse_one(&format!("if {nots}any then keep"));
    assert_eq!(rule.any_of, vec![vec![negated(Test::Any)]]);
}
