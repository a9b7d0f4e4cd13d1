//! The monitor page in a real browser: a dispatch unit with `--http`,
//! three hosts and a user as real processes, and Debian's headless
//! chromium showing the page. The test reads the live page through the
//! DevTools protocol (over `--remote-debugging-pipe`, so no WebSocket
//! client is needed) without ever reloading it, and checks that
//! - a SIGKILLed host shows as offline within its lease plus 2 s;
//! - a mailbox moved with `dem admin move` shows on its new host within
//!   2 s;
//! - a log line a host shipped appears in the log panel, and the mailbox
//!   shows in sync (`/api/sync`);
//!
//! and keeps a screenshot in `target/test-artifacts/monitor.png`. Without
//! chromium the test fails and says so: `scripts/test.sh` installs it.
//! Loopback addresses 127.0.0.230–233.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use dem_tests::{
    Daemon, Result, admin_status, arg, dem_bin, free_udp_port, holders_in, register_user,
    start_dispatch, start_host, temp_dir, wait_for,
};
use serde_json::{Value, json};

const DISPATCH_IP: &str = "127.0.0.230";
const HOST_IPS: [&str; 3] = ["127.0.0.231", "127.0.0.232", "127.0.0.233"];
/// The hosts' lease, short so that a killed host expires soon.
const LEASE_MS: u64 = 1500;
/// Longest one DevTools call may take.
const CDP_TIMEOUT: Duration = Duration::from_secs(30);

/// The chromium binary: `$CHROMIUM`, else `chromium` on the path.
fn chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(path.into());
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    found.context(
        "the monitor's browser test needs Debian's chromium, and it is not installed: \
         run `bash scripts/test.sh` (which installs it) or `apt-get install chromium`, \
         or set CHROMIUM to a chromium binary",
    )
}

/// A free TCP port on `ip`.
fn free_tcp_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// One headless chromium with one page, driven over the DevTools
/// protocol: JSON messages ending in a NUL byte, on the browser's fds 3
/// (in) and 4 (out), which the shell points at our pipes.
struct Browser {
    child: Child,
    input: ChildStdin,
    output: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str) -> Result<Self> {
        let chromium = chromium()?;
        let profile = temp_dir();
        let script = "exec \"$0\" --headless --no-sandbox --disable-gpu --no-first-run \
             --remote-debugging-pipe --user-data-dir=\"$1\" about:blank \
             3<&0 4>&1 0</dev/null 1>/dev/null 2>/dev/null";
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&chromium)
            .arg(profile.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromium.display()))?;
        let input = child.stdin.take().context("piped stdin")?;
        let mut stdout = child.stdout.take().context("piped stdout")?;
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 64 << 10];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            input,
            output,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": url }))?;
        let target_id = target["targetId"]
            .as_str()
            .context("no targetId")?
            .to_owned();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        Ok(browser)
    }

    /// Sends one command (to the page once attached) and waits for its
    /// answer, skipping events.
    fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.input
            .write_all(&bytes)
            .and_then(|()| self.input.flush())
            .context("writing to chromium")?;
        let deadline = Instant::now() + CDP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .output
                .recv_timeout(left)
                .with_context(|| format!("chromium did not answer {method}"))?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Evaluates `expression` in the page; its value (JSON).
    fn eval(&mut self, expression: &str) -> Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        )?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expression}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// `data-NAME` of the element with id `id`, or null.
    fn data(&mut self, id: &str, name: &str) -> Result<Option<String>> {
        let expression = format!(
            "(document.getElementById({}) || {{ dataset: {{}} }}).dataset[{}] ?? null",
            json!(id),
            json!(name)
        );
        Ok(self.eval(&expression)?.as_str().map(str::to_owned))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the browser lets it take its helper processes along.
        let _ = self.call("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `target/test-artifacts/monitor.png`, next to the `dem` binary's
/// target dir.
fn screenshot_path() -> Result<PathBuf> {
    let target = dem_bin()
        .parent()
        .and_then(Path::parent)
        .context("no target dir above the dem binary")?;
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join("monitor.png"))
}

/// A screenshot of `url` by a second, one-shot chromium.
fn screenshot(url: &str, path: &Path) -> Result<()> {
    let profile = temp_dir();
    let out = Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
            // Time for the first server-sent snapshot to arrive and render.
            "--timeout=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("running chromium --screenshot")?;
    ensure!(
        path.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn the_monitor_page_shows_a_killed_host_and_a_moved_mailbox_live() -> Result<()> {
    // Fail first, and clearly, if there is no browser.
    chromium()?;
    let tmp = temp_dir();
    let http = format!("{DISPATCH_IP}:{}", free_tcp_port(DISPATCH_IP)?);
    let lease = LEASE_MS.to_string();
    let dispatch = start_dispatch(
        DISPATCH_IP,
        &tmp.path().join("dispatch"),
        &[
            "--lease-ms",
            &lease,
            "--replicas",
            "1",
            "--write-quorum",
            "1",
            "--http",
            &http,
        ],
    )?;
    let mut hosts: Vec<Daemon> = Vec::new();
    for (i, ip) in HOST_IPS.iter().enumerate() {
        let listen = format!("{ip}:{}", free_udp_port(ip)?);
        hosts.push(start_host(
            &listen,
            &dispatch.addr,
            &tmp.path().join(format!("host{i}")),
            &["--heartbeat-ms", "300"],
        )?);
    }
    let bob = register_user(tmp.path(), "bob", &dispatch.addr)?;
    let holders = holders_in(&admin_status(&bob)?, "bob")?;
    ensure!(holders.len() == 1, "bob's mailbox on {holders:?}");
    let source = holders[0].clone();
    let others: Vec<usize> = (0..hosts.len())
        .filter(|i| hosts[*i].id != source)
        .collect();
    ensure!(others.len() == 2, "two hosts besides bob's: {others:?}");
    let target = hosts[others[0]].id.clone();
    let victim = others[1];
    let victim_id = hosts[victim].id.clone();

    let url = format!("http://{http}/");
    let mut page = Browser::open(&url)?;
    wait_for(
        "the page to show every host online and bob's mailbox",
        Duration::from_secs(30),
        || {
            for h in &hosts {
                if page.data(&format!("host-{}", h.id), "online")?.as_deref() != Some("true") {
                    return Ok(false);
                }
            }
            Ok(page.data("user-bob", "hosts")?.as_deref() == Some(source.as_str()))
        },
    )?;

    // A mark in the page's JS state: a reload would wipe it.
    page.eval("window.demTestMark = 'no reload'")?;

    // A SIGKILLed host: offline on the page within its lease plus 2 s.
    hosts[victim].kill();
    let limit = Duration::from_millis(LEASE_MS + 2000);
    let took = wait_for("the killed host to show offline", limit, || {
        Ok(page
            .data(&format!("host-{victim_id}"), "online")?
            .as_deref()
            == Some("false"))
    })?;
    println!("killed host offline on the page after {took:?} (limit {limit:?})");

    // A move: on the page within 2 s of `dem admin move` returning.
    let out = bob.run(["admin", "move", "bob", "--to", &target])?;
    println!("{}", out.trim());
    let took = wait_for(
        "bob's mailbox to show on its new host",
        Duration::from_secs(2),
        || Ok(page.data("user-bob", "hosts")?.as_deref() == Some(target.as_str())),
    )?;
    println!("move on the page after {took:?}");
    let held = page.data(&format!("host-{target}"), "mailboxes")?;
    ensure!(
        held.as_deref() == Some("bob"),
        "the new host's row should list bob, not {held:?}"
    );
    // The page never reloaded: its event stream carried all of it.
    let mark = page.eval("window.demTestMark ?? null")?;
    ensure!(mark == "no reload", "the page reloaded: mark {mark}");
    let state = page.eval("document.getElementById('conn').dataset.state")?;
    ensure!(state == "live", "the event stream is {state}");

    // A log line a host shipped shows in the log panel (the move's own
    // events, from the hosts that made it).
    let took = wait_for(
        "a log line from a host in the page's log panel",
        Duration::from_secs(10),
        || {
            let expression = format!(
                "[...document.querySelectorAll('#log tbody tr')].some(r => r.dataset.component === {} || r.dataset.component === {})",
                json!(source),
                json!(target)
            );
            Ok(page.eval(&expression)? == true)
        },
    )?;
    println!("a host's log line on the page after {took:?}");
    // Every mailbox in sync, on the page, from /api/sync.
    wait_for(
        "bob's mailbox shown in sync",
        Duration::from_secs(15),
        || {
            Ok(page.eval(
            "(document.querySelector('#user-bob [data-in-sync]') || { dataset: {} }).dataset.inSync ?? null",
        )? == "true")
        },
    )?;

    // The same tables behind the JSON inspect API, through `dem admin`.
    let base = format!("http://{http}");
    let inspected: Value =
        serde_json::from_str(&bob.run(["admin", "inspect", "mailbox", "bob", "--http", &base])?)?;
    ensure!(
        inspected["hosts"][0]["host"] == target.as_str(),
        "{inspected}"
    );
    let host: Value =
        serde_json::from_str(&bob.run(["admin", "inspect", "host", &victim_id, "--http", &base])?)?;
    ensure!(host["online"] == false, "{host}");
    let token = bob.run([
        "admin",
        "token",
        "--data",
        arg(&tmp.path().join("dispatch")),
    ])?;
    ensure!(token.trim().len() == 64, "token {token:?}");

    let shot = screenshot_path()?;
    screenshot(&url, &shot)?;
    println!("screenshot: {}", shot.display());
    drop(page);
    drop(dispatch);
    Ok(())
}
