//! Refusals: input the host must turn away with a clear error and a
//! non-zero exit, without losing or changing anything already stored.
//!
//! Each case drives the real `dem` binary: an oversized mail, bad mailbox
//! names (path traversal, too long), one folder past the guest's limit, a
//! body that is not UTF-8, an unknown mailbox and a plugin file that is not a
//! component. After every refusal the test checks that the mailbox's earlier
//! content is intact (same mails, same digest), because a refusal that
//! damages state on its way out is worse than no check at all. The limits
//! come from `guest-mailbox/src/limits.rs`, so the tests follow them.

use anyhow::{Context as _, ensure};
use dem_tests::{Dem, Result, Serve, arg, call_op, deliver_op, guest_limit, temp_dir};
use serde_json::{Value, json};

const MAILBOX: &str = "alice";

/// A data dir with one mailbox holding two mails; returns its digest.
fn mailbox_with_two_mails(dem: &Dem) -> Result<String> {
    dem.create(MAILBOX)?;
    dem.deliver(MAILBOX, "first", "bob@dem.test", "First", "The first mail.")?;
    dem.deliver(
        MAILBOX,
        "second",
        "carol@dem.test",
        "Second",
        "The second mail.",
    )?;
    dem.digest(MAILBOX)
}

/// The two mails are still there, and nothing else changed.
fn check_intact(dem: &Dem, digest: &str) -> Result<()> {
    let ids = dem.inbox_ids(MAILBOX, "INBOX")?;
    ensure!(ids == ["second", "first"], "INBOX now holds {ids:?}");
    ensure!(
        dem.read_json(MAILBOX, "first")?["body"] == "The first mail.",
        "the first mail changed"
    );
    ensure!(
        dem.digest(MAILBOX)? == digest,
        "the mailbox changed although the call was refused"
    );
    Ok(())
}

fn ensure_mentions(err: &str, words: &[&str]) -> Result<()> {
    println!("refused: {}", err.trim());
    for w in words {
        ensure!(err.contains(w), "the error does not mention {w:?}: {err}");
    }
    Ok(())
}

#[test]
fn oversized_mail_is_refused_naming_the_limit() -> Result<()> {
    // A host keeps at most STORED_BYTES_MAX of a message (larger parts
    // travel apart); `dem local` splits nothing, so its whole message
    // must fit.
    let limit = dem_message::limits::STORED_BYTES_MAX as u64;
    let tmp = temp_dir();
    let dem = Dem::new(tmp.path().join("host"));
    let digest = mailbox_with_two_mails(&dem)?;

    let big = tmp.path().join("big.txt");
    let body = "x".repeat(limit as usize + 1);
    std::fs::write(&big, &body)?;
    let args = ["deliver", MAILBOX, "--from", "bob@dem.test", "--to"];
    let err = dem.fail(
        args.into_iter()
            .chain(["alice@dem.test", "--body-file", arg(&big)]),
    )?;
    ensure_mentions(&err, &["STORED_BYTES_MAX", &limit.to_string()])?;
    check_intact(&dem, &digest)?;

    // The same through a running host: refused, and the host keeps serving.
    let mut serve = Serve::start(dem.data())?;
    let tag = serve.send(deliver_op(MAILBOX, "huge", "bob@dem.test", "Huge", &body))?;
    drop(body);
    let err = serve
        .answer(tag)?
        .err()
        .context("serve accepted an oversized mail")?;
    ensure_mentions(&err, &["STORED_BYTES_MAX", &limit.to_string()])?;
    let ok = serve.request(deliver_op(
        MAILBOX,
        "small",
        "bob@dem.test",
        "Small",
        "fits",
    ))?;
    ensure!(
        ok["folder"] == "INBOX",
        "a normal mail after the refusal: {ok}"
    );
    serve.shutdown()?;
    let ids = dem.inbox_ids(MAILBOX, "INBOX")?;
    ensure!(ids == ["small", "second", "first"], "INBOX holds {ids:?}");

    // Under the limit still fits: text in lines, which the message keeps
    // as they are (each line break becomes CRLF, the header takes a few
    // hundred bytes).
    let under = tmp.path().join("under.txt");
    let line = format!("{}\n", "y".repeat(69));
    std::fs::write(&under, line.repeat(limit as usize / 72))?;
    let (folder, _) = dem
        .run([
            "deliver",
            MAILBOX,
            "--from",
            "bob@dem.test",
            "--body-file",
            arg(&under),
            "--id",
            "under",
        ])
        .map(|out| {
            (
                out.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string(),
                out,
            )
        })?;
    ensure!(
        folder == "INBOX",
        "a mail just under the limit was filed in {folder:?}"
    );
    Ok(())
}

#[test]
fn bad_mailbox_names_are_refused() -> Result<()> {
    let tmp = temp_dir();
    let data = tmp.path().join("host");
    let dem = Dem::new(&data);
    let digest = mailbox_with_two_mails(&dem)?;
    let long = "a".repeat(200);
    for name in [
        "../x",
        "../../escaped",
        "a/b",
        ".hidden",
        "al ice",
        "",
        long.as_str(),
    ] {
        let err = dem.fail(["create", name])?;
        ensure_mentions(&err, &["mailbox id"])?;
        if name == long {
            ensure_mentions(&err, &["200", "128"])?;
        }
        let err = dem.fail([
            "deliver",
            name,
            "--from",
            "bob@dem.test",
            "--to",
            "x@dem.test",
            "--body",
            "b",
        ])?;
        ensure_mentions(&err, &["mailbox id"])?;
        dem.fail(["inbox", name])?;
    }
    ensure!(dem.list()? == [MAILBOX], "mailboxes now: {:?}", dem.list()?);
    // Nothing was created beside or above the data dir.
    for escaped in [
        tmp.path().join("x"),
        tmp.path().join("escaped"),
        data.join("x"),
        data.join("a"),
    ] {
        ensure!(!escaped.exists(), "{} was created", escaped.display());
    }
    check_intact(&dem, &digest)?;

    // The same through serve.
    let mut serve = Serve::start(&data)?;
    for name in ["../x", long.as_str()] {
        let err = serve
            .request(json!({"op": "create", "mailbox": name}))
            .err()
            .context("serve created a bad mailbox")?;
        ensure_mentions(&format!("{err:#}"), &["mailbox id"])?;
    }
    serve.shutdown()?;
    ensure!(dem.list()? == [MAILBOX], "mailboxes now: {:?}", dem.list()?);
    Ok(())
}

#[test]
fn one_folder_too_many_is_refused() -> Result<()> {
    let max = guest_limit("FOLDERS_MAX") as usize;
    let tmp = temp_dir();
    let dem = Dem::new(tmp.path().join("host"));
    mailbox_with_two_mails(&dem)?;

    let mut serve = Serve::start(dem.data())?;
    let existing = serve.call(MAILBOX, json!("ListFolders"))?["Folders"]
        .as_array()
        .map_or(0, Vec::len);
    ensure!(existing >= 1, "a new mailbox should have INBOX");
    let names: Vec<String> = (0..max - existing)
        .map(|i| format!("Folder {i:04}"))
        .collect();
    let tags: Vec<u64> = names
        .iter()
        .map(|n| serve.send(call_op(MAILBOX, json!({"CreateFolder": {"name": n}}))))
        .collect::<Result<_>>()?;
    for (name, tag) in names.iter().zip(&tags) {
        let answer = serve
            .answer(*tag)?
            .map_err(|e| anyhow::anyhow!("creating {name} (below the limit) failed: {e}"))?;
        ensure!(
            answer["Folder"]["name"] == name.as_str(),
            "CreateFolder {name} answered {answer}"
        );
    }
    let before = serve.request(json!({"op": "digest", "mailbox": MAILBOX}))?;

    let err = serve
        .call(MAILBOX, json!({"CreateFolder": {"name": "One too many"}}))
        .err()
        .context("folder past the limit")?;
    let err = format!("{err:#}");
    ensure_mentions(&err, &["limit", &max.to_string()])?;
    let after = serve.request(json!({"op": "digest", "mailbox": MAILBOX}))?;
    ensure!(
        before == after,
        "the refused CreateFolder changed the mailbox"
    );
    // A mail filed into a new folder by a filter would need one more folder
    // too; a plain delivery to INBOX still works.
    let ok = serve.request(deliver_op(
        MAILBOX,
        "third",
        "bob@dem.test",
        "Third",
        "Still room for mail.",
    ))?;
    ensure!(
        ok["folder"] == "INBOX",
        "delivery at the folder limit: {ok}"
    );
    serve.kill();

    // After a crash and restart, every folder is there and nothing more.
    let mut serve = Serve::start(dem.data())?;
    let folders = serve.call(MAILBOX, json!("ListFolders"))?;
    let listed: Vec<&str> = folders["Folders"]
        .as_array()
        .context("folder list")?
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    ensure!(
        listed.len() == max,
        "{} folders after the restart, expected {max}",
        listed.len()
    );
    for n in &names {
        ensure!(listed.contains(&n.as_str()), "folder {n} lost");
    }
    ensure!(
        !listed.contains(&"One too many"),
        "the refused folder exists"
    );
    serve.shutdown()?;
    let ids = dem.inbox_ids(MAILBOX, "INBOX")?;
    ensure!(ids == ["third", "second", "first"], "INBOX holds {ids:?}");
    ensure!(
        dem.inbox(MAILBOX, &names[0])?.is_empty(),
        "a new folder is not empty"
    );
    Ok(())
}

#[test]
fn body_that_is_not_utf8_is_refused() -> Result<()> {
    let tmp = temp_dir();
    let dem = Dem::new(tmp.path().join("host"));
    let digest = mailbox_with_two_mails(&dem)?;
    let file = tmp.path().join("latin1.txt");
    std::fs::write(&file, b"Gr\xfc\xdfe aus K\xf6ln\n\xff\xfe")?;
    let err = dem.fail([
        "deliver",
        MAILBOX,
        "--from",
        "bob@dem.test",
        "--to",
        "a@dem.test",
        "--body-file",
        arg(&file),
    ])?;
    ensure_mentions(&err, &["UTF-8", "latin1.txt"])?;
    // A missing body file is refused clearly too.
    let missing = tmp.path().join("missing.txt");
    let err = dem.fail([
        "deliver",
        MAILBOX,
        "--from",
        "b@dem.test",
        "--body-file",
        arg(&missing),
    ])?;
    ensure_mentions(&err, &["missing.txt"])?;
    check_intact(&dem, &digest)
}

#[test]
fn unknown_mailbox_is_a_clear_error() -> Result<()> {
    let tmp = temp_dir();
    let dem = Dem::new(tmp.path().join("host"));
    let digest = mailbox_with_two_mails(&dem)?;
    let export = tmp.path().join("bob.dem");
    let export_arg = export.to_str().context("utf-8 temp path")?;
    let commands: [&[&str]; 6] = [
        &["inbox", "bob"],
        &["read", "bob", "first"],
        &["digest", "bob"],
        &[
            "deliver",
            "bob",
            "--from",
            "x@dem.test",
            "--to",
            "bob@dem.test",
            "--body",
            "hi",
        ],
        &["export", "bob", "-o", export_arg],
        &["plugin-add", "bob", "spam-score"],
    ];
    for args in commands {
        let out = dem.output(args)?;
        ensure!(
            out.status.code() == Some(1),
            "{args:?} exited with {}",
            out.status
        );
        ensure_mentions(&out.stderr, &["no mailbox `bob`"]).with_context(|| format!("{args:?}"))?;
    }
    ensure!(!export.exists(), "a failed export left a file behind");
    ensure!(dem.list()? == [MAILBOX], "mailboxes now: {:?}", dem.list()?);

    let mut serve = Serve::start(dem.data())?;
    let err = serve
        .call("bob", json!("Stats"))
        .err()
        .context("serve answered for an unknown mailbox")?;
    ensure_mentions(&format!("{err:#}"), &["no mailbox `bob`"])?;
    // Malformed lines get an error answer too, and serving goes on.
    serve.send_line("this is not JSON")?;
    let stats = serve.call(MAILBOX, json!("Stats"))?;
    ensure!(stats["Stats"]["mails"] == 2, "stats: {stats}");
    let bad = serve.untagged(1)?[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure_mentions(&bad, &["bad request"])?;
    serve.shutdown()?;
    check_intact(&dem, &digest)
}

#[test]
fn plugin_that_is_not_a_component_is_refused() -> Result<()> {
    let tmp = temp_dir();
    let dem = Dem::new(tmp.path().join("host"));
    let digest = mailbox_with_two_mails(&dem)?;
    let cases: [(&str, &[u8]); 3] = [
        ("notes.txt", b"this is not wasm\n"),
        ("empty.wasm", b""),
        // A valid core module, but not a component.
        ("core.wasm", b"\0asm\x01\0\0\0"),
    ];
    for (name, bytes) in cases {
        let file = tmp.path().join(name);
        std::fs::write(&file, bytes)?;
        let err = dem.fail(["plugin-add", MAILBOX, arg(&file)])?;
        ensure_mentions(&err, &["does not compile"]).with_context(|| name.to_string())?;
    }
    // A name that is neither a built-in nor a file.
    let err = dem.fail(["plugin-add", MAILBOX, "spam-scorer"])?;
    ensure_mentions(&err, &["spam-scorer"])?;
    check_intact(&dem, &digest)?;

    let mut serve = Serve::start(dem.data())?;
    let plugins = serve.call(MAILBOX, json!("ListPlugins"))?;
    ensure!(
        plugins == json!({"Plugins": []}),
        "plugins after refusals: {plugins}"
    );
    let d: Value = serve.request(deliver_op(
        MAILBOX,
        "third",
        "x@elsewhere.test",
        "Hi",
        "Hello",
    ))?;
    ensure!(
        d["folder"] == "INBOX",
        "delivery after refused plugins: {d}"
    );
    serve.shutdown()
}
