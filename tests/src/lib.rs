//! Harness for the end-to-end tests: they run the real `dem` binary as
//! separate processes on temporary data dirs, because the properties under
//! test (an acknowledged mutation survives SIGKILL, an export rebuilds the
//! same mailbox in another process, a refusal leaves nothing half-done) only
//! mean something across process boundaries.
//!
//! - [`dem_bin`] finds the binary (`DEM_BIN`, or next to the test executable).
//! - [`Dem`] runs one-shot `dem local --data DIR ...` commands, with a timeout.
//! - [`Serve`] drives a long-running `dem local --data DIR serve` over its
//!   JSON-line protocol, reads answers by tag with timeouts, and SIGKILLs the
//!   child when dropped, so a failing test never leaves a process behind.
//! - [`Rng`] is a tiny seeded xorshift; the seed is printed so a failure can
//!   be replayed with `DEM_TEST_SEED`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, BufWriter, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use serde_json::{Value, json};

pub use anyhow::Result;

/// Longest a one-shot `dem local` command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest the tests wait for one `serve` answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Stderr bytes of a `serve` process kept for error messages.
const STDERR_KEEP_BYTES: usize = 16 << 10;

/// Makes a daemon exit once the process that started it is gone (the
/// `dem` binary's `EXIT_WITH_PARENT_ENV`).
pub const EXIT_WITH_PARENT_ENV: &str = "DEM_EXIT_WITH_PARENT";

/// The `dem` binary under test: `$DEM_BIN` if set, else `dem` in the cargo
/// target dir the test executable lives in (`target/<profile>/deps/x` →
/// `target/<profile>/dem`).
pub fn dem_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("DEM_BIN") {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "DEM_BIN={} does not name a file", p.display());
            return p;
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut dir = exe.parent().expect("the test executable has a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps/ has a parent");
        }
        let bin = dir.join(format!("dem{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "the `dem` binary is missing at {}: run `cargo build -p dem --bin dem` first \
             (or point DEM_BIN at it)",
            bin.display()
        );
        bin
    })
}

/// Kills (SIGKILL on Unix) and reaps a child unless it was reaped already.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child present until reaped")
    }

    /// Waits up to `timeout` for the child to exit; kills it past that.
    fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait()? {
                self.0 = None;
                return Ok(status);
            }
            if start.elapsed() > timeout {
                self.kill();
                bail!("the process did not exit within {timeout:?} and was killed");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.0.take()?;
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a finished one-shot command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// One-shot `dem local --data DIR ...` commands on one data dir.
#[derive(Debug, Clone)]
pub struct Dem {
    data: PathBuf,
}

impl Dem {
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self { data: data.into() }
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    /// Runs `dem local --data DIR <args>` to completion, whatever its exit.
    pub fn output<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let child = Command::new(dem_bin())
            .arg("local")
            .arg("--data")
            .arg(&self.data)
            .args(&args)
            .env_remove("DEM_DATA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning dem local {shown}"))?;
        let mut guard = ChildGuard(Some(child));
        let out = read_all(guard.child().stdout.take().expect("piped stdout"));
        let err = read_all(guard.child().stderr.take().expect("piped stderr"));
        let status = guard
            .wait_timeout(COMMAND_TIMEOUT)
            .with_context(|| format!("dem local {shown}"))?;
        Ok(Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args)?;
        if !out.status.success() {
            bail!(
                "`dem local {}` failed ({}):\n{}",
                shown(&args),
                out.status,
                out.stderr.trim_end()
            );
        }
        Ok(out.stdout)
    }

    /// Runs a command that must fail with a non-zero exit and a message on
    /// stderr; returns the stderr.
    pub fn fail<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args)?;
        ensure!(
            !out.status.success(),
            "`dem local {}` should have failed but succeeded, printing:\n{}",
            shown(&args),
            out.stdout
        );
        ensure!(
            out.status.code().is_some_and(|c| c != 0),
            "`dem local {}` did not exit with an error code: {}",
            shown(&args),
            out.status
        );
        ensure!(
            !out.stderr.trim().is_empty(),
            "`dem local {}` failed without a message",
            shown(&args)
        );
        Ok(out.stderr)
    }

    pub fn create(&self, mailbox: &str) -> Result<()> {
        self.run(["create", mailbox]).map(drop)
    }

    /// Mailboxes in the data dir.
    pub fn list(&self) -> Result<Vec<String>> {
        Ok(self.run(["list"])?.lines().map(str::to_string).collect())
    }

    /// Delivers through the CLI; returns the folder and UID it was filed at.
    pub fn deliver(
        &self,
        mailbox: &str,
        id: &str,
        from: &str,
        subject: &str,
        body: &str,
    ) -> Result<(String, u32)> {
        let out = self.run([
            "deliver",
            mailbox,
            "--from",
            from,
            "--to",
            "user@dem.test",
            "--subject",
            subject,
            "--body",
            body,
            "--id",
            id,
        ])?;
        let fields: Vec<&str> = out.split_whitespace().collect();
        let [got_id, folder, uid] = fields[..] else {
            bail!("deliver printed {out:?}, expected `ID FOLDER UID`")
        };
        ensure!(got_id == id, "deliver printed id {got_id}, expected {id}");
        Ok((
            folder.to_string(),
            uid.parse().with_context(|| format!("uid in {out:?}"))?,
        ))
    }

    /// `inbox --json` of one folder, up to 1000 mails (the guest's page limit).
    pub fn inbox(&self, mailbox: &str, folder: &str) -> Result<Vec<Value>> {
        let out = self.run([
            "inbox", mailbox, "--folder", folder, "--limit", "1000", "--json",
        ])?;
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("inbox --json printed {out:?}"))?;
        match v {
            Value::Array(items) => Ok(items),
            other => bail!("inbox --json printed {other}, expected an array"),
        }
    }

    /// Ids of the mails `inbox --json` lists, in its order.
    pub fn inbox_ids(&self, mailbox: &str, folder: &str) -> Result<Vec<String>> {
        self.inbox(mailbox, folder)?.iter().map(mail_id).collect()
    }

    pub fn read_json(&self, mailbox: &str, id: &str) -> Result<Value> {
        let out = self.run(["read", mailbox, id, "--json"])?;
        serde_json::from_str(&out).with_context(|| format!("read --json printed {out:?}"))
    }

    pub fn digest(&self, mailbox: &str) -> Result<String> {
        let out = self.run(["digest", mailbox])?;
        let d = out.trim().to_string();
        ensure!(
            d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()),
            "digest printed {out:?}"
        );
        Ok(d)
    }
}

fn shown(args: &[std::ffi::OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `id` field of a mail in `--json` output.
pub fn mail_id(mail: &Value) -> Result<String> {
    mail["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("mail without an id: {mail}"))
}

/// A `serve` answer: the `ok` value, or the host's error message.
pub type Answer = std::result::Result<Value, String>;

/// A running `dem local --data DIR serve`. Dropping it SIGKILLs the process.
pub struct Serve {
    child: ChildGuard,
    /// Lines for the stdin writer thread; `None` once stdin is closed.
    stdin: Option<mpsc::Sender<String>>,
    /// Parsed stdout lines from the reader thread; disconnected at EOF.
    lines: mpsc::Receiver<Value>,
    answers: HashMap<u64, Answer>,
    /// Answers without a tag (e.g. a line the host could not parse).
    untagged: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    next_tag: u64,
    eof: bool,
}

impl Serve {
    /// Spawns `serve` on `data`.
    pub fn start(data: &Path) -> Result<Self> {
        Self::start_with(data, &[])
    }

    /// Spawns `serve` on `data` with extra `dem local` options (limits
    /// such as `--instance-slots`).
    pub fn start_with(data: &Path, options: &[&str]) -> Result<Self> {
        let child = Command::new(dem_bin())
            .arg("local")
            .arg("--data")
            .arg(data)
            .args(options)
            .arg("serve")
            .env_remove("DEM_DATA")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning dem local serve")?;
        let mut child = ChildGuard(Some(child));
        let stdin = child.child().stdin.take().expect("piped stdin");
        let stdout = child.child().stdout.take().expect("piped stdout");
        let stderr_pipe = child.child().stderr.take().expect("piped stderr");

        let (in_tx, in_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut w = BufWriter::new(stdin);
            while let Ok(line) = in_rx.recv() {
                if w.write_all(line.as_bytes()).is_err() {
                    return;
                }
                // Batch what is already queued, flush before blocking again.
                let mut ok = true;
                while let Ok(more) = in_rx.try_recv() {
                    ok &= w.write_all(more.as_bytes()).is_ok();
                }
                if !ok || w.flush().is_err() {
                    return;
                }
            }
        });

        let (out_tx, out_rx) = mpsc::channel::<Value>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line).unwrap_or_else(
                    |e| json!({ "unparsable": line, "parse_error": e.to_string() }),
                );
                if out_tx.send(v).is_err() {
                    return;
                }
            }
        });

        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { return };
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
                if s.len() > 2 * STDERR_KEEP_BYTES {
                    let mut cut = s.len() - STDERR_KEEP_BYTES;
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    s.drain(..cut);
                }
            }
        });

        Ok(Self {
            child,
            stdin: Some(in_tx),
            lines: out_rx,
            answers: HashMap::new(),
            untagged: Vec::new(),
            stderr,
            next_tag: 1,
            eof: false,
        })
    }

    /// What the process wrote to stderr so far (its tail).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends one request object, adding a fresh `tag`; returns the tag.
    pub fn send(&mut self, mut request: Value) -> Result<u64> {
        let tag = self.next_tag;
        self.next_tag += 1;
        request
            .as_object_mut()
            .ok_or_else(|| anyhow!("a request must be a JSON object"))?
            .insert("tag".into(), json!(tag));
        self.send_line(&request.to_string())?;
        Ok(tag)
    }

    /// Sends one raw line (a newline is appended).
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_ref()
            .ok_or_else(|| anyhow!("serve's stdin is closed"))?;
        stdin
            .send(format!("{line}\n"))
            .map_err(|_| anyhow!("serve's stdin writer has stopped"))
    }

    /// Stashes one stdout line; waits at most `timeout`. False on timeout or EOF.
    fn pump(&mut self, timeout: Duration) -> bool {
        if self.eof {
            return false;
        }
        let v = match self.lines.recv_timeout(timeout) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => return false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.eof = true;
                return false;
            }
        };
        match v.get("tag").and_then(Value::as_u64) {
            Some(tag) => {
                let answer = match (v.get("ok"), v.get("error")) {
                    (Some(ok), None) => Ok(ok.clone()),
                    (None, Some(e)) => {
                        Err(e.as_str().map_or_else(|| e.to_string(), str::to_string))
                    }
                    _ => Err(format!("malformed answer {v}")),
                };
                self.answers.insert(tag, answer);
            }
            None => self.untagged.push(v),
        }
        true
    }

    /// Takes every answer that has already arrived, without waiting.
    pub fn poll(&mut self) {
        while self.pump(Duration::ZERO) {}
    }

    /// Whether the answer to `tag` has arrived (not yet taken).
    pub fn has_answer(&mut self, tag: u64) -> bool {
        self.poll();
        self.answers.contains_key(&tag)
    }

    /// Waits for the answer to `tag` and takes it.
    pub fn answer(&mut self, tag: u64) -> Result<Answer> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if let Some(a) = self.answers.remove(&tag) {
                return Ok(a);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no answer to request {tag} within {ANSWER_TIMEOUT:?}; serve stderr:\n{}",
                    self.stderr()
                );
            }
            if !self.pump(left) && self.eof {
                let status = self
                    .child
                    .0
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!(
                    "serve closed its stdout before answering request {tag} (exit: {status:?}); stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Waits until at least `n` of `tags` have been answered (answers stay
    /// stashed); returns how many have.
    pub fn wait_answered(&mut self, tags: &[u64], n: usize) -> Result<usize> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            self.poll();
            let have = tags.iter().filter(|t| self.answers.contains_key(t)).count();
            if have >= n {
                return Ok(have);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(
                !left.is_zero(),
                "only {have} of {n} answers within {ANSWER_TIMEOUT:?}:\n{}",
                self.stderr()
            );
            ensure!(
                self.pump(left.min(Duration::from_millis(50))) || !self.eof,
                "serve closed its stdout"
            );
        }
    }

    /// Sends a request and waits for its answer; a host error is an `Err`.
    pub fn request(&mut self, request: Value) -> Result<Value> {
        let shown = request.to_string();
        let tag = self.send(request)?;
        self.answer(tag)?
            .map_err(|e| anyhow!("serve refused {}: {e}", truncate(&shown, 300)))
    }

    /// Like [`Serve::request`] for a mailbox `call`.
    pub fn call(&mut self, mailbox: &str, request: Value) -> Result<Value> {
        self.request(call_op(mailbox, request))
    }

    /// SIGKILLs the process and reaps it, then collects every answer it
    /// wrote before dying. Answers stay available through [`Serve::answer`]
    /// and [`Serve::take_answers`].
    pub fn kill(&mut self) {
        self.child.kill();
        self.stdin = None;
        // The child is gone, so its stdout reaches EOF promptly.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.eof && Instant::now() < deadline {
            self.pump(Duration::from_millis(100));
        }
    }

    /// Every answer received and not yet taken, by tag.
    pub fn take_answers(&mut self) -> HashMap<u64, Answer> {
        self.poll();
        std::mem::take(&mut self.answers)
    }

    /// Waits until at least `n` lines without a tag (answers to requests
    /// the host could not parse) have arrived; returns them all.
    pub fn untagged(&mut self, n: usize) -> Result<&[Value]> {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while self.untagged.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(
                !left.is_zero(),
                "only {} untagged answers, expected {n}",
                self.untagged.len()
            );
            ensure!(self.pump(left) || !self.eof, "serve closed its stdout");
        }
        Ok(&self.untagged)
    }

    /// Closes stdin and waits for a clean exit (serve finishes its requests,
    /// snapshots and stops).
    pub fn shutdown(mut self) -> Result<()> {
        self.stdin = None;
        let status = self.child.wait_timeout(COMMAND_TIMEOUT)?;
        ensure!(
            status.success(),
            "serve exited with {status}; stderr:\n{}",
            self.stderr()
        );
        Ok(())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut cut = s.len().min(max);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// A `serve` request creating a mailbox.
pub fn create_op(mailbox: &str) -> Value {
    json!({ "op": "create", "mailbox": mailbox })
}

/// A `serve` request delivering a mail (through the filters).
pub fn deliver_op(mailbox: &str, id: &str, from: &str, subject: &str, body: &str) -> Value {
    json!({
        "op": "deliver", "mailbox": mailbox, "id": id, "from": from,
        "to": ["user@dem.test"], "subject": subject, "body": body,
    })
}

/// A `serve` request running one mailbox `Request` (serde JSON of
/// `host/src/mailbox/request.rs`).
pub fn call_op(mailbox: &str, request: Value) -> Value {
    json!({ "op": "call", "mailbox": mailbox, "request": request })
}

/// A `serve` request for the mailbox digest.
pub fn digest_op(mailbox: &str) -> Value {
    json!({ "op": "digest", "mailbox": mailbox })
}

/// Serde JSON of `MailFlags`: a bit set.
pub mod flags {
    pub const SEEN: u8 = 1;
    pub const ANSWERED: u8 = 2;
    pub const FLAGGED: u8 = 4;
    pub const DRAFT: u8 = 8;
    pub const DELETED: u8 = 16;
}

/// A `SetFlags` request.
pub fn set_flags(id: &str, add: u8, remove: u8) -> Value {
    json!({ "SetFlags": {
        "id": id,
        "add": { "flags": add, "keywords": [] },
        "remove": { "flags": remove, "keywords": [] },
    }})
}

/// A limit of the mailbox guest, read from `guest-mailbox/src/limits.rs` so
/// the tests follow it when it changes. Understands `N`, `N * KIB|MIB|GIB`
/// and such products.
pub fn guest_limit(name: &str) -> u64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-mailbox/src/limits.rs");
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let prefix = format!("pub const {name}:");
    let line = src
        .lines()
        .find(|l| l.trim_start().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {}", path.display()));
    let expr = line
        .split_once('=')
        .map(|(_, e)| e)
        .unwrap_or("")
        .trim()
        .trim_end_matches(';');
    let expr = expr
        .replace(" as usize", "")
        .replace(" as u32", "")
        .replace(" as u64", "");
    expr.split('*')
        .map(|factor| match factor.trim() {
            "KIB" => 1 << 10,
            "MIB" => 1 << 20,
            "GIB" => 1 << 30,
            n => n
                .replace('_', "")
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("cannot evaluate `{line}`")),
        })
        .product()
}

/// A small xorshift64* generator. Its seed comes from `DEM_TEST_SEED` or the
/// clock and is printed, so a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds from `DEM_TEST_SEED` or the clock, printing the seed.
    pub fn seeded(test: &str) -> Self {
        let seed = match std::env::var("DEM_TEST_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("DEM_TEST_SEED={s:?} is not a u64")),
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id())),
        };
        println!("{test}: seed {seed} (replay with DEM_TEST_SEED={seed})");
        Self::new(seed)
    }

    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` characters of printable ASCII text with spaces and newlines.
    pub fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 .,;\n";
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// The seed of a randomised multi-host test: `DEM_SEED` to replay a run,
/// else one from the clock. The test prints it.
pub fn seed() -> u64 {
    match std::env::var("DEM_SEED") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            println!("DEM_SEED={s:?} is not a u64; using 1");
            1
        }),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id())),
    }
}

/// A fresh temporary directory for one test's data dirs and files.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dem-e2e-")
        .tempdir()
        .expect("creating a temp dir")
}

/// A path as a command-line argument (the tests' temp paths are UTF-8).
pub fn arg(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

// ===========================================================================
// Network processes (host daemon and user commands; tests/tests/network.rs).
// Append-only section: long-running `dem host` / `dem dispatch` processes
// and one-shot user commands under a `--home`.
// ===========================================================================

/// A long-running `dem` daemon (`dispatch` or `host`) that printed
/// `<kind> <id-hex> listening on <addr>`; SIGKILLed when dropped.
pub struct Daemon {
    guard: ChildGuard,
    /// Its key, hex.
    pub id: String,
    /// Its address, `IP:PORT`.
    pub addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `dem <args>` and waits (up to [`ANSWER_TIMEOUT`]) for its
    /// `listening on` line.
    pub fn start<I, S>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_env(args, &[])
    }

    /// As [`Daemon::start`], with `envs` added to its environment (e.g.
    /// `RUST_LOG`).
    pub fn start_env<I, S>(args: I, envs: &[(&str, &str)]) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut child = Command::new(dem_bin())
            .args(&args)
            .envs(envs.iter().copied())
            .env_remove("DEM_HOME")
            .env_remove("DEM_DATA")
            // A test binary that is killed cannot drop its daemons.
            .env(EXIT_WITH_PARENT_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning dem {}", shown(&args)))?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let stderr_pipe = child.stderr.take().context("piped stderr")?;
        // With `DEM_TEST_LOG_DIR` set, every line also goes to
        // `<dir>/<kind>-<pid>.log` (whole, unlike the kept head), so a
        // failing multi-process test can be read afterwards.
        let mut log_file = std::env::var_os("DEM_TEST_LOG_DIR").and_then(|dir| {
            let kind = args.first()?.to_string_lossy().into_owned();
            let path = Path::new(&dir).join(format!("{kind}-{}.log", child.id()));
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::File::create(path).ok()
        });
        let guard = ChildGuard(Some(child));
        let stderr = Arc::new(Mutex::new(String::new()));
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(|l| l.ok()) {
                if let Some(f) = log_file.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
                let mut s = keep.lock().unwrap_or_else(|p| p.into_inner());
                if s.len() < STDERR_KEEP_BYTES {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx.recv_timeout(ANSWER_TIMEOUT).map_err(|_| {
            anyhow!(
                "dem {} printed no `listening on` line; stderr:\n{}",
                shown(&args),
                stderr.lock().unwrap_or_else(|p| p.into_inner())
            )
        })?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, id, "listening", "on", addr] = words[..] else {
            bail!("unexpected first line {line:?}");
        };
        Ok(Self {
            guard,
            id: id.to_string(),
            addr: addr.to_string(),
            stderr,
        })
    }

    /// What it wrote to stderr so far (up to a limit).
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Kills it now (an abrupt stop, as a crash).
    pub fn kill(&mut self) {
        self.guard.kill();
    }
}

/// A free TCP port on `ip` (for `--http` listeners).
pub fn free_tcp_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// A free UDP port on `ip` (bound and released; good enough for tests on
/// their own loopback addresses).
pub fn free_udp_port(ip: &str) -> Result<u16> {
    let sock = std::net::UdpSocket::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(sock.local_addr()?.port())
}

/// One user's one-shot commands: `dem <args> --home HOME`.
#[derive(Debug, Clone)]
pub struct User {
    pub home: PathBuf,
}

impl User {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self { home: home.into() }
    }

    /// Runs `dem <args> --home HOME` to completion, whatever its exit.
    pub fn output<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (status, stdout, stderr) = self.output_bytes(args)?;
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        })
    }

    /// As [`User::output`], with stdout as the bytes written (`read --raw`).
    pub fn output_bytes<I, S>(&self, args: I) -> Result<(ExitStatus, Vec<u8>, String)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        // `--home` goes right after the first word (it is global below
        // it), before any positional that takes hyphen values (`flag ID
        // -seen`).
        let at = args.len().min(1);
        args.splice(
            at..at,
            ["--home".into(), self.home.clone().into_os_string()],
        );
        let child = Command::new(dem_bin())
            .args(&args)
            .env_remove("DEM_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning dem {}", shown(&args)))?;
        let mut guard = ChildGuard(Some(child));
        let mut stdout = guard.child().stdout.take().context("piped stdout")?;
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err = read_all(guard.child().stderr.take().context("piped stderr")?);
        let status = guard
            .wait_timeout(COMMAND_TIMEOUT)
            .with_context(|| format!("dem {}", shown(&args)))?;
        Ok((
            status,
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        ))
    }

    /// A command that must succeed; its stdout as bytes.
    pub fn run_bytes<I, S>(&self, args: I) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let (status, stdout, stderr) = self.output_bytes(&args)?;
        ensure!(
            status.success(),
            "`dem {}` failed ({status}):\n{}",
            shown(&args),
            stderr.trim_end()
        );
        Ok(stdout)
    }

    /// A command that must succeed; its stdout.
    pub fn run<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args)?;
        ensure!(
            out.status.success(),
            "`dem {}` failed ({}):\n{}",
            shown(&args),
            out.status,
            out.stderr.trim_end()
        );
        Ok(out.stdout)
    }

    /// A command that must fail with a message; its stderr.
    pub fn fail<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.output(&args)?;
        ensure!(
            !out.status.success() && !out.stderr.trim().is_empty(),
            "`dem {}` should have failed with a message; it printed:\n{}",
            shown(&args),
            out.stdout
        );
        Ok(out.stderr)
    }
}

impl Daemon {
    /// Sends SIGTERM (a graceful stop: a host leaves and moves everything
    /// off) and waits up to `timeout` for it to exit; SIGKILLs it past that.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let pid = self.guard.child().id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("running kill -TERM")?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        self.guard.wait_timeout(timeout)
    }
}

/// Files below `dir`, counted recursively (0 if it does not exist): how
/// tests see how many attachment copies a host stores.
pub fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

impl Daemon {
    /// Waits up to `timeout` for it to exit by itself (a drained host
    /// leaves); SIGKILLs it past that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.guard.wait_timeout(timeout)
    }

    /// Its process id, to pause it with SIGSTOP or kill it with SIGKILL.
    pub fn pid(&self) -> Option<u32> {
        self.guard.0.as_ref().map(Child::id)
    }

    /// Sends `signal` (`"STOP"`, `"CONT"`, `"KILL"`) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("the process was already reaped")?;
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .context("running kill")?;
        ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }
}

/// Starts `dem dispatch` on a free port of `ip` with its data in `data`,
/// plus `extra` flags (`--replicas`, `--lease-ms`, ...).
pub fn start_dispatch(ip: &str, data: &Path, extra: &[&str]) -> Result<Daemon> {
    start_dispatch_at(&format!("{ip}:{}", free_udp_port(ip)?), data, extra)
}

/// Starts `dem dispatch` listening on `listen` (`IP:PORT`), else as
/// [`start_dispatch`].
pub fn start_dispatch_at(listen: &str, data: &Path, extra: &[&str]) -> Result<Daemon> {
    let key = network_key_for(data)?;
    let mut args = vec![
        "dispatch",
        "--listen",
        listen,
        "--data",
        arg(data),
        "--network-key",
        arg(&key),
    ];
    args.extend_from_slice(extra);
    Daemon::start(args)
}

/// The network key of the unit whose data dir is `data`: units whose data
/// dirs share a parent (one test's) are one network.
pub fn network_key_for(data: &Path) -> Result<PathBuf> {
    let parent = data.parent().context("a unit's data dir has a parent")?;
    Ok(parent.join("network.key"))
}

/// Starts `dem host` listening on `listen` (`IP:PORT`), joined to
/// `dispatch`, with its data in `data`, plus `extra` flags.
pub fn start_host(listen: &str, dispatch: &str, data: &Path, extra: &[&str]) -> Result<Daemon> {
    let mut args = vec![
        "host",
        "--listen",
        listen,
        "--dispatch",
        dispatch,
        "--data",
        arg(data),
    ];
    args.extend_from_slice(extra);
    Daemon::start(args)
}

/// `dem send` of a one-line mail; the printed mail id.
pub fn send_mail(from: &User, to: &str, subject: &str) -> Result<String> {
    let out = from.run(["send", "--to", to, "--subject", subject, "--body", "hello"])?;
    let id = out.trim().to_string();
    ensure!(id.len() == 32, "send printed {out:?}");
    Ok(id)
}

/// The mail ids of a user's inbox, newest first.
pub fn inbox_ids(user: &User) -> Result<Vec<String>> {
    let inbox: Value = serde_json::from_str(&user.run(["inbox", "--json", "--limit", "1000"])?)?;
    Ok(inbox
        .as_array()
        .context("inbox is an array")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect())
}

/// Polls `ok` every 200 ms for up to `limit`; how long it took.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut ok: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if ok()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates `name`'s key under `root/name` and registers it through
/// `dispatch`.
pub fn register_user(root: &Path, name: &str, dispatch: &str) -> Result<User> {
    let user = User::new(root.join(name));
    user.run(["id", "new", name])?;
    let out = user.run(["register", "--dispatch", dispatch])?;
    ensure!(out.contains(&format!("registered {name}")), "{out}");
    Ok(user)
}

/// `dem admin status --json`, asked as `user`.
pub fn admin_status(user: &User) -> Result<Value> {
    Ok(serde_json::from_str(
        &user.run(["admin", "status", "--json"])?,
    )?)
}

/// The entry of `status[list]` whose `key` is `value`.
fn entry_in(status: &Value, list: &str, key: &str, value: &str) -> Result<Value> {
    status[list]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e[key] == value)
        .cloned()
        .with_context(|| format!("{list}: no {key} {value} in the status: {status}"))
}

/// Host `id`'s entry in an `admin status` answer.
pub fn host_in(status: &Value, id: &str) -> Result<Value> {
    entry_in(status, "hosts", "id", id)
}

/// User `name`'s entry in an `admin status` answer.
pub fn user_in(status: &Value, name: &str) -> Result<Value> {
    entry_in(status, "users", "name", name)
}

/// The hosts listed for `name`'s mailbox in an `admin status` answer.
pub fn holders_in(status: &Value, name: &str) -> Result<Vec<String>> {
    let u = user_in(status, name)?;
    Ok(u["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(String::from))
        .collect())
}

/// The content a file attached with `dem send --attach` had, from what
/// `dem attachment get` returns for its floating part: a large MIME part
/// travels cut verbatim out of the message, so the part is the file in
/// base64 lines. Line breaks and other white space are skipped; anything
/// else outside the base64 alphabet is an error.
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in text {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = value(c).with_context(|| format!("byte {c:#04x} is not base64"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_across_lines() -> Result<()> {
        assert_eq!(decode_base64(b"aGVs\r\nbG8=")?, b"hello");
        assert_eq!(decode_base64(b"aGVsbG8h")?, b"hello!");
        assert_eq!(decode_base64(b"")?, b"");
        assert!(decode_base64(b"a*b").is_err());
        Ok(())
    }
}
