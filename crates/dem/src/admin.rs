//! `dem admin`: the network's monitor and explicit migrations.
//!
//! - `status [--json]`: the dispatch unit's `Status` view (units, hosts and
//!   what each holds, users and where their mailboxes are), as JSON or a
//!   table, with the unlisted copies hosts hold back (`held_back`: they
//!   hold ops no listed replica was seen to hold).
//! - `move NAME --to HOSTID`: the owner (`--home`) signs a `MoveOrder`,
//!   dispatch authorizes it (`AuthorizeMove`, which grants the target) and
//!   the current holder is told to `Pull` it there (`node::migrate`).
//! - `token --data DIR` and `inspect host|mailbox|attachment|unit ID --http
//!   URL`: a unit's admin token, and its JSON inspect API ([`inspect`]).
//! - `logs [--follow] [--component ID] [--level L] [--mailbox NAME]
//!   [--since T]`: the log events a unit collected ([`logs`]).

mod act;
mod inspect;
mod logs;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::user::{HomeArg, UserCtx};
use dem_client::now_ms;
use dem_node::dispatch::StatusView;
use std::collections::HashMap;

use dem_identity::{HostId, MOVE_ORDER, Signed, UserId};
use dem_node::replica::VersionVector;
use dem_proto::host::ReplicaState;
use dem_proto::ids::CodeHash;
use dem_proto::{
    AttachmentId, DispatchRequest, DispatchResponse, HostRequest, HostResponse, MoveOrder,
};

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub cmd: AdminCommand,
    #[command(flatten)]
    pub home: HomeArg,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Dispatch units, hosts (online or not, what each holds), users.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Move your mailbox to another host (an explicit migration).
    Move {
        /// The mailbox's owner name (must be the `--home` user).
        name: String,
        /// The target host's id (hex).
        #[arg(long)]
        to: String,
    },
    /// The log events a dispatch unit collected from the hosts and itself
    /// (info and above, the most recent first kept).
    Logs(logs::LogsArgs),
    /// Print the admin token of a dispatch unit (`admin.token` in its data
    /// dir), which peers off loopback must present to its HTTP listener.
    Token {
        /// The unit's data dir.
        #[arg(long)]
        data: std::path::PathBuf,
    },
    /// What a dispatch unit's tables know about a host, mailbox,
    /// attachment or unit (holders, epochs, leases, load), as JSON, from
    /// its HTTP listener (`dem dispatch --http`). Never mail content.
    Inspect {
        #[arg(value_parser = ["host", "mailbox", "attachment", "unit"])]
        kind: String,
        /// A host, attachment or unit id (hex), or a mailbox's name or
        /// user id.
        id: String,
        /// The unit's listener, `http://IP:PORT`.
        #[arg(long, value_name = "URL")]
        http: String,
        /// The admin token (`dem admin token`); needed off loopback.
        #[arg(long, env = "DEM_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Order a host drained: it moves everything away and leaves, as on
    /// SIGTERM. Needs the admin token; the unit logs who ordered it.
    Drain {
        /// The host's id (hex).
        host: String,
        /// Follow the drain until the host has left, for at most this many
        /// seconds (a progress bar on a terminal).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        #[command(flatten)]
        act: ActArgs,
    },
    /// Set R (replicas) and W (write quorum) for the whole network; hosts
    /// add or trim replicas to match. Needs the admin token.
    Replication {
        #[arg(long)]
        replicas: usize,
        #[arg(long)]
        write_quorum: usize,
        #[command(flatten)]
        act: ActArgs,
    },
    /// Whether every mailbox has R replicas in sync (the unit asks every
    /// host for its replicas' vectors); `--wait SECS` polls until it does.
    Sync {
        /// Keep asking until all are in sync, for at most this many seconds.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
        /// The unit's report as JSON.
        #[arg(long)]
        json: bool,
        /// The unit's listener, `http://IP:PORT`.
        #[arg(long, value_name = "URL")]
        http: String,
        /// The admin token (`dem admin token`); needed off loopback.
        #[arg(long, env = "DEM_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

/// Where and as whom an action is ordered.
#[derive(Debug, Args)]
pub struct ActArgs {
    /// The unit's listener, `http://IP:PORT`.
    #[arg(long, value_name = "URL")]
    http: String,
    /// The admin token (`dem admin token`); every action needs it.
    #[arg(long, env = "DEM_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who orders this, for the unit's log (default: the login name).
    #[arg(long)]
    by: Option<String>,
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    // These speak to a unit's HTTP listener or read its data dir: no user.
    match &args.cmd {
        AdminCommand::Token { data } => return inspect::token(data),
        AdminCommand::Inspect {
            kind,
            id,
            http,
            token,
        } => return inspect::inspect(kind, id, http, token.as_deref()).await,
        AdminCommand::Drain { host, wait, act } => {
            let by = act::who(act.by.clone());
            let wait = wait.map(std::time::Duration::from_secs);
            return act::drain(&act.http, act.token.as_deref(), host, &by, wait).await;
        }
        AdminCommand::Replication {
            replicas,
            write_quorum,
            act,
        } => {
            let by = act::who(act.by.clone());
            return act::replication(
                &act.http,
                act.token.as_deref(),
                *replicas,
                *write_quorum,
                &by,
            )
            .await;
        }
        AdminCommand::Sync {
            wait,
            json,
            http,
            token,
        } => {
            let wait = wait.map(std::time::Duration::from_secs);
            return act::sync(http, token.as_deref(), wait, *json).await;
        }
        _ => {}
    }
    let ctx = UserCtx::open(&args.home)?;
    let result = match args.cmd {
        AdminCommand::Status { json } => status(&ctx, json).await,
        AdminCommand::Move { name, to } => move_mailbox(&ctx, &name, &to).await,
        AdminCommand::Logs(logs) => logs::run(&ctx, logs).await,
        AdminCommand::Token { .. }
        | AdminCommand::Inspect { .. }
        | AdminCommand::Drain { .. }
        | AdminCommand::Replication { .. }
        | AdminCommand::Sync { .. } => Ok(()),
    };
    ctx.close().await;
    result
}

async fn status(ctx: &UserCtx, as_json: bool) -> anyhow::Result<()> {
    let view = match ctx
        .session
        .dispatch(&DispatchRequest::Status)
        .await
        .context("asking the dispatch unit for its status")?
    {
        DispatchResponse::Status(v) => *v,
        other => bail!("unexpected answer from the dispatch unit: {other:?}"),
    };
    let (replicas, held_attachments) = tokio::join!(
        replica_states(ctx, &view),
        held_back_attachments(ctx, &view)
    );
    let mut value = status_json(&view);
    if let Some(users) = value["users"].as_array_mut() {
        for (u, view_user) in users.iter_mut().zip(&view.users) {
            let states: Vec<Value> = view_user
                .hosts
                .iter()
                .map(|h| {
                    let r = replicas.get(&(*h, view_user.user));
                    json!({
                        "host": h.to_hex(),
                        "ops": r.map(|r| r.vv.total()),
                        "vv": r.map(|r| r.vv.to_string()),
                        "state_digest": r.and_then(|r| r.state_digest).map(|d| CodeHash(d).to_hex()),
                    })
                })
                .collect();
            // In sync: every listed replica answered, with the same vector
            // and the same order-free state digest.
            let seen: Vec<Option<(&VersionVector, [u8; 32])>> = view_user
                .hosts
                .iter()
                .map(|h| {
                    let r = replicas.get(&(*h, view_user.user))?;
                    Some((&r.vv, r.state_digest?))
                })
                .collect();
            let in_sync = !seen.is_empty() && seen.iter().all(|s| s.is_some() && *s == seen[0]);
            u["replicas"] = Value::Array(states);
            u["in_sync"] = Value::Bool(in_sync);
        }
    }
    // Unlisted copies kept because they hold ops no listed replica was
    // seen to hold: they go once they have handed them back.
    let mut held: Vec<(&HostId, &ReplicaState)> = replicas
        .iter()
        .filter(|(_, r)| r.held_back)
        .map(|((h, _), r)| (h, r))
        .collect();
    held.sort_by_key(|(h, r)| (**h, r.user));
    let name_of = |user: &UserId| {
        view.users
            .iter()
            .find(|u| u.user == *user)
            .and_then(|u| u.name.clone())
            .unwrap_or_else(|| user.to_hex())
    };
    value["held_back"] = Value::Array(
        held.iter()
            .map(|(h, r)| {
                json!({
                    "host": h.to_hex(),
                    "user": r.user.to_hex(),
                    "name": name_of(&r.user),
                    "ops": r.vv.total(),
                    "vv": r.vv.to_string(),
                })
            })
            .collect(),
    );
    if let Some(list) = value["held_back"].as_array_mut() {
        for (h, id) in &held_attachments {
            list.push(json!({"host": h.to_hex(), "attachment": id.to_hex()}));
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_table(&view);
        if !held.is_empty() || !held_attachments.is_empty() {
            println!("held back (unlisted copies no listed replica was seen to hold)");
            for (h, r) in &held {
                println!(
                    "  {:<16} on {}  {} ops",
                    name_of(&r.user),
                    h.short(),
                    r.vv.total()
                );
            }
            for (h, id) in &held_attachments {
                println!("  attachment {} on {}", &id.to_hex()[..12], h.short());
            }
        }
    }
    Ok(())
}

/// Each online host's replicas and their version vectors, asked of the
/// hosts themselves (the dispatch unit does not track sync state). A host
/// that does not answer simply contributes nothing.
async fn replica_states(
    ctx: &UserCtx,
    view: &StatusView,
) -> HashMap<(HostId, UserId), ReplicaState> {
    let asks = view.hosts.iter().filter(|h| h.online).map(|h| async move {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            ctx.session
                .host_request(&h.addr, h.id, &HostRequest::Replicas),
        )
        .await;
        match answer {
            Ok(Ok(HostResponse::Replicas(list))) => list
                .into_iter()
                .map(|r| ((h.id, r.user), r))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        }
    });
    futures_join_all(asks).await.into_iter().flatten().collect()
}

/// Each online host's held-back attachment copies; a host that does not
/// answer contributes nothing.
async fn held_back_attachments(ctx: &UserCtx, view: &StatusView) -> Vec<(HostId, AttachmentId)> {
    let asks = view.hosts.iter().filter(|h| h.online).map(|h| async move {
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            ctx.session
                .host_request(&h.addr, h.id, &HostRequest::HeldBack),
        )
        .await;
        match answer {
            Ok(Ok(HostResponse::HeldBack { attachments })) => {
                attachments.into_iter().map(|a| (h.id, a)).collect()
            }
            _ => Vec::new(),
        }
    });
    futures_join_all(asks).await.into_iter().flatten().collect()
}

/// Awaits the futures all at once (each bounded by its own timeout), so
/// hosts that do not answer cost one timeout in all, not one each.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.map(|f| Some(Box::pin(f))).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut waiting = false;
        for (slot, done) in pending.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *done = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => waiting = true,
                }
            }
        }
        if waiting {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// The `--json` shape the issue fixes (`dispatch_units`, `hosts`, `users`),
/// with the rest of the view alongside.
fn status_json(view: &StatusView) -> Value {
    let units: Vec<Value> = view
        .units
        .iter()
        .map(|u| json!({"id": u.id.to_hex(), "addr": u.addr, "self": u.is_self}))
        .collect();
    let hosts: Vec<Value> = view
        .hosts
        .iter()
        .map(|h| {
            json!({
                "id": h.id.to_hex(),
                "addr": h.addr,
                "online": h.online,
                "state": format!("{:?}", h.state),
                "mailboxes": h.mailboxes,
                "attachments": h.attachments,
                "load": h.load,
                "capacity": h.capacity,
                "operator": h.operator,
            })
        })
        .collect();
    let users: Vec<Value> = view
        .users
        .iter()
        .map(|u| {
            json!({
                "id": u.user.to_hex(),
                "name": u.name.clone().unwrap_or_else(|| u.user.to_hex()),
                "online": u.online,
                "home": u.home.map(|h| h.to_hex()),
                "hosts": u.hosts.iter().map(HostId::to_hex).collect::<Vec<_>>(),
                "epoch": u.epoch.0,
            })
        })
        .collect();
    let attachments: Vec<Value> = view
        .attachments
        .iter()
        .map(|a| {
            json!({
                "id": a.id.to_hex(),
                "hosts": a.hosts.iter().map(HostId::to_hex).collect::<Vec<_>>(),
                "epoch": a.epoch.0,
                "size_bytes": a.size_bytes,
                "referenced_until_ms": a.referenced_until_ms,
            })
        })
        .collect();
    json!({
        "dispatch_units": units,
        "hosts": hosts,
        "users": users,
        "attachments": attachments,
        "summary": {
            "hosts_online": view.summary.hosts_online,
            "hosts_known": view.summary.hosts_known,
            "users_online": view.summary.users_online,
            "users_offline": view.summary.users_offline,
            "mailboxes": view.summary.mailboxes,
            "attachments": view.summary.attachments,
        },
    })
}

fn print_table(view: &StatusView) {
    println!("dispatch units");
    for u in &view.units {
        let me = if u.is_self { " (answering)" } else { "" };
        println!("  {}  {}{me}", u.id.short(), u.addr);
    }
    println!("hosts");
    println!(
        "  {:<10} {:<22} {:<8} {:>11}  mailboxes",
        "id", "addr", "online", "attachments"
    );
    for h in &view.hosts {
        println!(
            "  {:<10} {:<22} {:<8} {:>11}  {}",
            h.id.short(),
            h.addr,
            if h.online { "yes" } else { "no" },
            h.attachments,
            h.mailboxes.join(", ")
        );
    }
    println!("users");
    println!("  {:<16} {:<8} hosts", "name", "online");
    for u in &view.users {
        let hosts: Vec<String> = u.hosts.iter().map(HostId::short).collect();
        println!(
            "  {:<16} {:<8} {}",
            u.name.clone().unwrap_or_else(|| u.user.short()),
            if u.online { "yes" } else { "no" },
            hosts.join(", ")
        );
    }
}

async fn move_mailbox(ctx: &UserCtx, name: &str, to: &str) -> anyhow::Result<()> {
    let to: HostId = to
        .parse()
        .map_err(|_| anyhow::anyhow!("--to {to:?} is not a host id (64 hex digits)"))?;
    let user = ctx.key.user_id();
    let found = match ctx
        .session
        .dispatch(&DispatchRequest::LookupName {
            name: name.to_string(),
        })
        .await
        .with_context(|| format!("looking up {name:?}"))?
    {
        DispatchResponse::Mailbox(m) => m,
        other => bail!("unexpected answer from the dispatch unit: {other:?}"),
    };
    if found.user != user {
        bail!("only {name}'s owner may move their mailbox; this home is another user");
    }
    let order = MoveOrder { user, to };
    let signed = Signed::sign(&ctx.key, MOVE_ORDER, now_ms(), &order)?;
    let placement = match ctx
        .session
        .dispatch(&DispatchRequest::AuthorizeMove {
            order: signed.clone(),
        })
        .await
        .context("authorizing the move at the dispatch unit")?
    {
        DispatchResponse::Placement(p) => p,
        other => bail!("unexpected answer from the dispatch unit: {other:?}"),
    };
    let Some(holder) = found.hosts.iter().find(|h| h.addr.is_some()) else {
        bail!("no host holding {name}'s mailbox is known");
    };
    let addr = holder.addr.clone().unwrap_or_default();
    match ctx
        .session
        .host_request(
            &addr,
            holder.host,
            &HostRequest::Pull {
                order: signed,
                to_addr: Some(placement.addr.clone()),
            },
        )
        .await
        .with_context(|| format!("moving the mailbox off host {addr}"))?
    {
        HostResponse::Done | HostResponse::Imported { .. } => {}
        HostResponse::Moved(m) => {
            bail!("the mailbox had already moved to {} at {}", m.host, m.addr)
        }
        other => bail!("unexpected answer from the host: {other:?}"),
    }
    println!(
        "moved {name} from host {} to host {} at {}",
        holder.host.to_hex(),
        placement.host.to_hex(),
        placement.addr
    );
    Ok(())
}
