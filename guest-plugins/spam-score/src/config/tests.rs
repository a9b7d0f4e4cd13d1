//! Config parser tests, kept apart from `config.rs` to keep each file
//! readable.

use super::*;

fn parse(text: &str) -> Config {
    match parse_config(text) {
        Ok(config) => config,
        Err(error) => panic!("{text:?} should parse: {error}"),
    }
}

fn error(text: &str) -> ConfigError {
    match parse_config(text) {
        Err(error) => error,
        Ok(config) => panic!("{text:?} should not parse, got {config:?}"),
    }
}

#[test]
fn empty_config_is_default() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("\n  # only comments\n\t\n"), Config::default());
    let config = Config::default();
    assert_eq!(config.junk_threshold, 5.0);
    assert_eq!(config.reject_threshold, Some(15.0));
    assert_eq!(config.folder, "Junk");
    assert!(config.builtin_words);
    assert_eq!(config.weights[Structural::EmptySubject.index()], 1.0);
}

#[test]
fn example_from_the_docs() {
    let config = parse(
        r#"
junk_threshold = 5.0      # score at or above: file into `folder`
reject_threshold = 15.0   # score at or above: reject
folder = Junk
word "viagra" 4.0         # body or subject contains the word
subject "free money" 3.0
header "X-Mailer" contains "bulk" 2.0
"#,
    );
    assert_eq!(
        config.rules,
        vec![
            TextRule {
                target: Target::Word("viagra".to_string()),
                weight: 4.0,
                label: "word \"viagra\"".to_string(),
            },
            TextRule {
                target: Target::Subject("free money".to_string()),
                weight: 3.0,
                label: "subject \"free money\"".to_string(),
            },
            TextRule {
                target: Target::HeaderContains {
                    name: "x-mailer".to_string(),
                    text: "bulk".to_string(),
                },
                weight: 2.0,
                label: "header \"X-Mailer\" contains \"bulk\"".to_string(),
            },
        ]
    );
}

#[test]
fn settings() {
    let config = parse(
        "junk_threshold=3\nreject_threshold = 8.5\nfolder = \"Spam & Co # 1\"\nbuiltin_words = off",
    );
    assert_eq!(config.junk_threshold, 3.0);
    assert_eq!(config.reject_threshold, Some(8.5));
    assert_eq!(config.folder, "Spam & Co # 1");
    assert!(!config.builtin_words);
    assert_eq!(parse("reject_threshold = off").reject_threshold, None);
    assert_eq!(parse("reject_threshold = none").reject_threshold, None);
    // The last value wins.
    assert_eq!(parse("folder = A\nfolder = B").folder, "B");
}

#[test]
fn structural_weights() {
    let config = parse("rule empty_subject 0\nrule dangerous_attachment -1.5e0");
    assert_eq!(config.weights[Structural::EmptySubject.index()], 0.0);
    assert_eq!(
        config.weights[Structural::DangerousAttachment.index()],
        -1.5
    );
    assert_eq!(config.weights[Structural::MissingDate.index()], 1.0);
    for rule in Structural::ALL {
        parse(&format!("rule {} 2", rule.name()));
    }
}

#[test]
fn header_rules() {
    let config =
        parse("header \"X-Spam-Flag\" is \" YES \" 5\nheader \"List-Unsubscribe\" exists -0.5");
    assert_eq!(
        config.rules[0].target,
        Target::HeaderIs {
            name: "x-spam-flag".to_string(),
            text: "yes".to_string()
        }
    );
    assert_eq!(
        config.rules[1],
        TextRule {
            target: Target::HeaderExists("list-unsubscribe".to_string()),
            weight: -0.5,
            label: "header \"List-Unsubscribe\" exists".to_string(),
        }
    );
}

#[test]
fn words_are_normalised() {
    let config = parse("word \"  Free   MONEY \" 1");
    assert_eq!(
        config.rules[0].target,
        Target::Word("free money".to_string())
    );
}

#[test]
fn text_rules_include_builtins_unless_off() {
    let config = parse("word \"extra\" 1");
    let rules = config.text_rules();
    assert_eq!(rules.len(), BUILTIN_WORDS.len() + 1);
    assert_eq!(
        rules.last().map(|r| r.label.as_str()),
        Some("word \"extra\"")
    );
    let config = parse("builtin_words = off\nword \"extra\" 1");
    assert_eq!(config.text_rules().len(), 1);
}

#[test]
fn errors_name_line_and_column() {
    let e = error("folder = Junk\n\nword viagra 4");
    assert_eq!((e.line, e.column), (3, 6));
    assert!(e.message.contains("quoted word"), "{e}");
    assert_eq!(e.to_string(), format!("line 3, column 6: {}", e.message));

    let e = error("word \"x\"");
    assert_eq!((e.line, e.column), (1, 9));
    assert!(e.message.contains("end of the line"), "{e}");
}

#[test]
fn bad_lines() {
    let cases = [
        ("colour = red", 1, "unknown setting"),
        ("junk_threshold = lots", 18, "threshold"),
        ("junk_threshold = inf", 18, "threshold"),
        ("junk_threshold = NaN", 18, "threshold"),
        ("reject_threshold = 1e9", 20, "threshold"),
        ("junk_threshold =", 17, "a value"),
        ("folder = My Junk", 13, "quote"),
        ("folder = \"\"", 10, "folder"),
        ("builtin_words = maybe", 17, "on or off"),
        ("word \"x\" 1 2", 12, "after the weight"),
        ("word \"x\" heavy", 10, "weight"),
        ("word \"x\" 1001", 10, "weight"),
        ("word \"  \" 1", 6, "empty"),
        ("subject 3", 9, "quoted text"),
        (
            "header \"X\" has \"y\" 1",
            12,
            "`contains`, `is` or `exists`",
        ),
        ("header \"X\" contains 1", 21, "quoted text"),
        ("header \"X\" exists", 18, "weight"),
        ("rule nonsense 1", 6, "one of shouting_subject"),
        ("rule 1", 6, "one of"),
        ("body \"x\" 1", 1, "unknown rule"),
        ("\"word\" 1", 1, "a setting or a rule"),
        ("= 1", 1, "a setting or a rule"),
        ("word \"x\\y\" 1", 8, "escape"),
    ];
    for (text, column, needle) in cases {
        let e = error(text);
        assert_eq!(e.column, column, "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e}");
    }
}

#[test]
fn limits() {
    let long = "x".repeat(MAX_PATTERN_BYTES + 1);
    assert!(
        error(&format!("word \"{long}\" 1"))
            .message
            .contains("longer")
    );
    let ok = "x".repeat(MAX_PATTERN_BYTES);
    parse(&format!("word \"{ok}\" 1"));

    let folder = "f".repeat(MAX_FOLDER_BYTES + 1);
    assert!(
        error(&format!("folder = {folder}"))
            .message
            .contains("longer")
    );

    let rules = "word \"x\" 1\n".repeat(MAX_RULES);
    assert_eq!(parse(&rules).rules.len(), MAX_RULES);
    let e = error(&(rules + "word \"x\" 1\n"));
    assert_eq!(e.line, MAX_RULES + 1);

    let e = error(&"#".repeat(MAX_CONFIG_BYTES + 1));
    assert!(e.message.contains("limit"), "{e}");
}
