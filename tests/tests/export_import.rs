//! Export and import across processes: a mailbox written out by one `dem`
//! process and read back by another, into another data dir, must be the same
//! mailbox — same digest, same folders and mails, same plugins still at work
//! — and a damaged or repeated import must be refused with a clear error
//! without leaving a half-imported mailbox behind.
//!
//! This is the primitive that migration and replication build on, so the
//! source mailbox is made non-trivial first: the three built-in filter
//! plugins are installed and filing mail, and mails are flagged, moved and
//! deleted through `serve`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, ensure};
use dem_tests::{Dem, Result, Rng, Serve, arg, digest_op, flags, set_flags, temp_dir};
use serde_json::{Value, json};

const MAILBOX: &str = "alice";
const BOSS: &str = "boss@dem.test";
const FRIEND: &str = "friend@dem.test";
const STRANGER: &str = "stranger@elsewhere.test";

const RULES: &str = r#"# Money matters go to Finance.
if subject contains "invoice" then fileinto "Finance"
if from is "boss@dem.test" then addflag "\\Flagged" "work"
"#;

/// A source data dir holding a busy mailbox, already exported.
struct Source {
    dem: Dem,
    digest: String,
    folders: Vec<String>,
    plugins: Value,
    export: PathBuf,
}

/// Builds the source mailbox and exports it (each step its own process).
fn source(dir: &Path) -> Result<Source> {
    let dem = Dem::new(dir.join("source"));
    dem.create(MAILBOX)?;
    let rules = dir.join("rules.conf");
    std::fs::write(&rules, RULES)?;
    // Ascending order: the allowlist screens unknown senders, spam-score may
    // then move junk, and rules have the last word on filing.
    dem.run(["plugin-add", MAILBOX, "allowlist", "--order", "10"])?;
    dem.run(["plugin-add", MAILBOX, "spam-score", "--order", "20"])?;
    dem.run([
        "plugin-add",
        MAILBOX,
        "rules",
        "--config",
        arg(&rules),
        "--order",
        "30",
    ])?;

    let mut serve = Serve::start(dem.data())?;
    serve.call(
        MAILBOX,
        json!({"AddSender": {"which": "Allow", "pattern": BOSS}}),
    )?;
    serve.call(MAILBOX, json!({"AddContact": {"contact": {"name": "Friend", "address": FRIEND, "note": "from school"}}}))?;
    serve.call(
        MAILBOX,
        json!({"SetPreference": {"key": "signature", "value": "-- \nAlice"}}),
    )?;
    let mut deliver = |id: &str, from: &str, subject: &str, body: &str| -> Result<Value> {
        serve.request(dem_tests::deliver_op(MAILBOX, id, from, subject, body))
    };
    let expect_folder = |answer: Value, folder: &str| -> Result<()> {
        ensure!(
            answer["folder"] == folder,
            "expected folder {folder}, got {answer}"
        );
        Ok(())
    };
    expect_folder(
        deliver("plan", BOSS, "Weekly plan", "Let us meet on Monday.")?,
        "INBOX",
    )?;
    expect_folder(
        deliver("lunch", FRIEND, "Lunch?", "Noon at the usual place?")?,
        "INBOX",
    )?;
    expect_folder(
        deliver("hello", STRANGER, "Hello", "We have not met.")?,
        "Screened",
    )?;
    expect_folder(
        deliver("inv-1", STRANGER, "Your invoice 42", "Please pay.")?,
        "Finance",
    )?;
    expect_folder(
        deliver("inv-2", BOSS, "invoice for March", "Attached.")?,
        "Finance",
    )?;
    expect_folder(
        deliver(
            "spam",
            STRANGER,
            "Great offer",
            "viagra cialis casino, act now",
        )?,
        "Junk",
    )?;
    for i in 0..30 {
        let (from, folder) = if i % 3 == 0 {
            (FRIEND, "INBOX")
        } else {
            (BOSS, "INBOX")
        };
        let answer = deliver(
            &format!("m{i:02}"),
            from,
            &format!("Note {i}"),
            &format!("Body of note {i}.\n"),
        )?;
        expect_folder(answer, folder)?;
    }
    // One more through the one-shot CLI, in a process of its own, while
    // serve is stopped (one process owns a data dir at a time).
    serve.shutdown()?;
    ensure!(
        dem.deliver(
            MAILBOX,
            "cli-1",
            BOSS,
            "From the CLI",
            "Delivered by `dem local deliver`."
        )?
        .0 == "INBOX"
    );

    let mut serve = Serve::start(dem.data())?;
    serve.call(MAILBOX, json!({"CreateFolder": {"name": "Archive"}}))?;
    for i in 0..5 {
        serve.call(
            MAILBOX,
            json!({"MoveMail": {"id": format!("m{i:02}"), "folder": "Archive"}}),
        )?;
    }
    for i in 5..15 {
        serve.call(MAILBOX, set_flags(&format!("m{i:02}"), flags::SEEN, 0))?;
    }
    serve.call(
        MAILBOX,
        set_flags("m15", flags::ANSWERED | flags::SEEN, flags::FLAGGED),
    )?;
    for i in 20..23 {
        serve.call(MAILBOX, json!({"DeleteMail": {"id": format!("m{i:02}")}}))?;
    }
    let digest = serve
        .request(digest_op(MAILBOX))?
        .as_str()
        .context("digest is a string")?
        .to_string();
    let folders = folder_names(&serve.call(MAILBOX, json!("ListFolders"))?)?;
    let plugins = serve.call(MAILBOX, json!("ListPlugins"))?;
    serve.shutdown()?;

    for f in ["INBOX", "Archive", "Finance", "Screened", "Junk"] {
        ensure!(
            folders.iter().any(|x| x == f),
            "folder {f} missing from {folders:?}"
        );
    }
    let plan = dem.read_json(MAILBOX, "plan")?;
    ensure!(
        plan["flags"] == json!(["flagged"]),
        "rules did not flag the boss's mail: {plan}"
    );
    ensure!(
        dem.digest(MAILBOX)? == digest,
        "a new process sees another digest than serve did"
    );

    let export = dir.join("alice.dem");
    let out = dem.run(["export", MAILBOX, "-o", arg(&export)])?;
    ensure!(out.starts_with("exported alice"), "export printed {out:?}");
    Ok(Source {
        dem,
        digest,
        folders,
        plugins,
        export,
    })
}

fn folder_names(answer: &Value) -> Result<Vec<String>> {
    let list = answer["Folders"]
        .as_array()
        .with_context(|| format!("not a folder list: {answer}"))?;
    list.iter()
        .map(|f| {
            f["name"]
                .as_str()
                .map(str::to_string)
                .context("folder without a name")
        })
        .collect()
}

fn import(dem: &Dem, file: &Path, replace: bool) -> Result<String> {
    let mut args = vec!["import", arg(file)];
    if replace {
        args.push("--replace");
    }
    dem.run(args)
}

/// Checks that `copy` holds the same mailbox as `src`, as seen by separate
/// processes: digest, every folder's listing, some mails in full, plugins.
fn check_same(src: &Source, copy: &Dem) -> Result<()> {
    ensure!(
        copy.digest(MAILBOX)? == src.digest,
        "digest differs after import"
    );
    for folder in &src.folders {
        let a = src.dem.inbox(MAILBOX, folder)?;
        let b = copy.inbox(MAILBOX, folder)?;
        ensure!(
            a == b,
            "folder {folder} differs after import:\n{a:?}\n{b:?}"
        );
    }
    for id in ["plan", "inv-1", "m15", "cli-1"] {
        ensure!(
            src.dem.read_json(MAILBOX, id)? == copy.read_json(MAILBOX, id)?,
            "mail {id} differs after import"
        );
    }
    let mut serve = Serve::start(copy.data())?;
    let plugins = serve.call(MAILBOX, json!("ListPlugins"))?;
    ensure!(
        plugins == src.plugins,
        "plugins differ after import: {plugins} vs {}",
        src.plugins
    );
    let prefs = serve.call(MAILBOX, json!("ListPreferences"))?;
    ensure!(
        prefs.to_string().contains("signature"),
        "preferences lost: {prefs}"
    );
    serve.shutdown()
}

#[test]
fn export_then_import_in_another_process_rebuilds_the_same_mailbox() -> Result<()> {
    let tmp = temp_dir();
    let src = source(tmp.path())?;
    let copy = Dem::new(tmp.path().join("copy"));
    let out = import(&copy, &src.export, false)?;
    ensure!(out.starts_with("imported alice"), "import printed {out:?}");
    ensure!(copy.list()? == [MAILBOX], "copy holds {:?}", copy.list()?);
    check_same(&src, &copy)?;
    // Deleted mails stay deleted.
    ensure!(
        !copy
            .inbox_ids(MAILBOX, "INBOX")?
            .contains(&"m21".to_string()),
        "a deleted mail came back"
    );

    // The plugins travelled with their code and config, and still file mail.
    ensure!(
        copy.deliver(MAILBOX, "inv-3", STRANGER, "invoice 43", "Pay again.")?
            .0
            == "Finance"
    );
    ensure!(
        copy.deliver(MAILBOX, "who", STRANGER, "Hi", "Remember me?")?
            .0
            == "Screened"
    );
    ensure!(
        copy.deliver(MAILBOX, "junk", STRANGER, "Offer", "viagra cialis casino")?
            .0
            == "Junk"
    );
    ensure!(
        copy.deliver(MAILBOX, "boss", BOSS, "Hi", "Hello from the boss")?
            .0
            == "INBOX"
    );
    // The source is untouched by all this.
    ensure!(src.dem.digest(MAILBOX)? == src.digest, "the source changed");
    Ok(())
}

#[test]
fn importing_twice_needs_replace() -> Result<()> {
    let tmp = temp_dir();
    let src = source(tmp.path())?;
    let copy = Dem::new(tmp.path().join("copy"));
    import(&copy, &src.export, false)?;

    let err = copy.fail(["import", arg(&src.export)])?;
    ensure!(
        err.contains("already exists"),
        "unclear error for a second import: {err}"
    );
    ensure!(
        copy.digest(MAILBOX)? == src.digest,
        "a refused import changed the mailbox"
    );

    // Diverge, then --replace brings back the exported state.
    copy.deliver(MAILBOX, "later", BOSS, "Later", "After the import.")?;
    ensure!(
        copy.digest(MAILBOX)? != src.digest,
        "a delivery did not change the digest"
    );
    import(&copy, &src.export, true)?;
    check_same(&src, &copy)?;
    ensure!(
        !copy
            .inbox_ids(MAILBOX, "INBOX")?
            .contains(&"later".to_string()),
        "--replace kept a newer mail"
    );
    Ok(())
}

/// Frames of an export file: (offset, total length with prefix, kind).
fn frames(bytes: &[u8]) -> Result<Vec<(usize, usize, String)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into()?) as usize;
        let payload = &bytes[at + 4..at + 4 + len];
        // rmp-serde writes a variant with data as a one-entry map keyed by
        // its name, and a unit variant (End) as just its name.
        let name = match payload {
            [0x81, b, rest @ ..] if b & 0xe0 == 0xa0 => &rest[..(b & 0x1f) as usize],
            [b, rest @ ..] if b & 0xe0 == 0xa0 => &rest[..(b & 0x1f) as usize],
            _ => anyhow::bail!(
                "unexpected frame encoding at {at}: {:?}",
                &payload[..payload.len().min(16)]
            ),
        };
        out.push((at, 4 + len, String::from_utf8_lossy(name).into_owned()));
        at += 4 + len;
    }
    Ok(out)
}

/// Imports a damaged copy of `bytes`; it must fail clearly and change
/// nothing: an empty host stays empty, a host holding the mailbox (imported
/// with `--replace`) keeps it as it was.
fn expect_refused(
    tmp: &Path,
    bytes: &[u8],
    what: &str,
    empty: &Dem,
    holder: &Dem,
    digest: &str,
) -> Result<()> {
    let file = tmp.join("damaged.dem");
    std::fs::write(&file, bytes)?;
    let err = empty
        .fail(["import", arg(&file)])
        .with_context(|| what.to_string())?;
    println!("{what}: {}", err.trim());
    let clear = ["export", "damaged", "hash", "frame"];
    ensure!(
        clear.iter().any(|w| err.contains(w)),
        "{what}: unclear error {err:?}"
    );
    ensure!(
        empty.list()?.is_empty(),
        "{what}: a refused import left {:?} behind",
        empty.list()?
    );
    holder
        .fail(["import", arg(&file), "--replace"])
        .with_context(|| what.to_string())?;
    ensure!(
        holder.digest(MAILBOX)? == digest,
        "{what}: a refused --replace import changed the mailbox"
    );
    Ok(())
}

#[test]
fn truncated_or_flipped_exports_are_refused() -> Result<()> {
    let mut rng = Rng::seeded("truncated_or_flipped_exports_are_refused");
    let tmp = temp_dir();
    let src = source(tmp.path())?;
    let empty = Dem::new(tmp.path().join("empty"));
    let holder = Dem::new(tmp.path().join("holder"));
    import(&holder, &src.export, false)?;
    let bytes = std::fs::read(&src.export)?;
    let frames = frames(&bytes)?;
    let kinds: Vec<&str> = frames.iter().map(|f| f.2.as_str()).collect();
    ensure!(
        kinds.first() == Some(&"Header") && kinds.last() == Some(&"End"),
        "frames: {kinds:?}"
    );
    ensure!(
        kinds.contains(&"Snapshot") && kinds.contains(&"Code"),
        "frames: {kinds:?}"
    );

    // Truncations: inside the length prefix, inside the header, inside the
    // first code frame, just before End, and the End frame missing.
    let end = frames.last().expect("End").0;
    let code = frames.iter().find(|f| f.2 == "Code").expect("a Code frame");
    for cut in [
        0,
        2,
        frames[0].1 / 2,
        code.0 + code.1 / 2,
        end - 1,
        end,
        bytes.len() - 1,
    ] {
        expect_refused(
            tmp.path(),
            &bytes[..cut],
            &format!("cut at {cut} of {}", bytes.len()),
            &empty,
            &holder,
            &src.digest,
        )?;
    }

    // Flipped bytes in the middle of every non-header frame's payload, in a
    // few frame length prefixes, and at seeded random non-header places.
    let mut spots: Vec<(usize, String)> = Vec::new();
    for (at, len, kind) in &frames[1..] {
        spots.push((
            at + 4 + (len - 4) / 2,
            format!("middle of {kind} frame at {at}"),
        ));
        spots.push((at + 2, format!("length prefix of {kind} frame at {at}")));
    }
    for _ in 0..6 {
        let at = frames[0].1 + rng.below((bytes.len() - frames[0].1) as u64) as usize;
        spots.push((at, format!("random byte {at}")));
    }
    for (at, what) in spots {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << rng.below(8);
        expect_refused(
            tmp.path(),
            &damaged,
            &format!("flip at {what}"),
            &empty,
            &holder,
            &src.digest,
        )?;
    }
    Ok(())
}

#[test]
fn flipped_header_bytes_are_refused() -> Result<()> {
    let tmp = temp_dir();
    let src = source(tmp.path())?;
    let empty = Dem::new(tmp.path().join("empty"));
    let holder = Dem::new(tmp.path().join("holder"));
    import(&holder, &src.export, false)?;
    let bytes = std::fs::read(&src.export)?;
    let header_len = frames(&bytes)?[0].1;
    let find = |needle: &[u8]| -> Result<usize> {
        bytes[..header_len]
            .windows(needle.len())
            .position(|w| w == needle)
            .context("needle not in the header")
    };
    // The mailbox id ("alice" → "alicd"), a byte of a plugin's config
    // ("invoice" → "invoicd"), and the last byte of the header (log position).
    let spots = [
        (find(MAILBOX.as_bytes())? + 4, "mailbox id"),
        (find(b"invoice")? + 6, "rules config"),
        (header_len - 1, "log position"),
    ];
    let mut accepted = Vec::new();
    for (at, what) in spots {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1;
        let what = format!("flip in the header's {what}");
        if let Err(e) = expect_refused(tmp.path(), &damaged, &what, &empty, &holder, &src.digest) {
            accepted.push(format!("{e:#}"));
            // Start the next case from clean hosts again.
            for dem in [&empty, &holder] {
                std::fs::remove_dir_all(dem.data())?;
            }
            import(&holder, &src.export, false)?;
        }
    }
    ensure!(
        accepted.is_empty(),
        "damaged headers were not refused:\n{}",
        accepted.join("\n")
    );
    Ok(())
}
