//! Property test of replica convergence: three replicas make random
//! operations while seeing random, causally closed parts of each other's
//! work; then the whole operation set is applied at further simulated
//! replicas in different random causal orders, with duplicates and
//! snapshot round trips, and every replica must end with the same
//! `state-digest`.
//!
//! Seeded and dependency-free (a splitmix64 generator): a failure prints
//! its seed, and `DEM_SEED=<seed> cargo test -p guest-mailbox converge`
//! replays exactly that scenario (`DEM_DUMP=1` also prints its operations).
//!
//! Operations from elsewhere are applied as the host applies them, with
//! `replaying` set; only the origin checks an operation against its view.

use crate::lww::LwwMap;
use crate::state::Mailbox;
use crate::testutil::{Rng, mail, seeds};
use crate::wit::{Contact, FlagState, MailFlags, OpContext, Placement, PluginEntry, SenderList};

const REPLICAS: usize = 3;
const SCENARIOS: u64 = 500;
const STEPS: usize = 120;
/// Extra replicas that apply the finished operation set from scratch.
const REPLAYS: usize = 4;

const FOLDERS: [&str; 5] = ["INBOX", "Work", "Lists/rust", "Archive", "Work/2024"];
const KEYWORDS: [&str; 4] = ["a", "b", "$Junk", "todo"];
const ADDRESSES: [&str; 3] = ["bob@example.org", "Carol@Example.com", "dan@x.test"];
const PATTERNS: [&str; 3] = ["example.com", "bob@example.org", "@spam.test"];
const PREF_KEYS: [&str; 2] = ["theme", "lang"];
const PLUGINS: [&str; 2] = ["spam", "rules"];

#[derive(Clone, Debug)]
enum Op {
    Deliver(String, Placement),
    SetFlags(String, MailFlags, Vec<String>, MailFlags, Vec<String>),
    Move(String, String),
    DeleteMail(String),
    CreateFolder(String),
    AddContact(String, String),
    RemoveContact(String),
    AddSender(SenderList, String),
    RemoveSender(SenderList, String),
    SetPreference(String, String),
    RemovePreference(String),
    InstallPlugin(String, u32),
    RemovePlugin(String),
    Rename(String, String),
    DeleteFolder(String),
}

/// An operation as the replication layer carries it.
#[derive(Clone, Debug)]
struct Logged {
    ctx: OpContext,
    op: Op,
    origin: usize,
    /// How many operations of each origin its origin had applied before
    /// it (its own earlier ones included): its causal past.
    deps: [usize; REPLICAS],
}

fn apply(mb: &mut Mailbox, ctx: &OpContext, op: &Op) -> bool {
    let r = match op.clone() {
        Op::Deliver(id, p) => mb.deliver(ctx, mail(&id, 1000), p).map(drop),
        Op::SetFlags(id, af, ak, rf, rk) => {
            let add = FlagState {
                flags: af,
                keywords: ak,
            };
            let remove = FlagState {
                flags: rf,
                keywords: rk,
            };
            mb.set_flags(ctx, &id, &add, &remove).map(drop)
        }
        Op::Move(id, f) => mb.move_mail(ctx, &id, &f).map(drop),
        Op::DeleteMail(id) => mb.delete_mail(ctx, &id),
        Op::CreateFolder(f) => mb.create_folder(ctx, &f).map(drop),
        Op::AddContact(address, name) => mb.add_contact(
            ctx,
            Contact {
                name,
                address,
                note: String::new(),
            },
        ),
        Op::RemoveContact(a) => mb.remove_contact(ctx, &a),
        Op::AddSender(w, p) => mb.add_sender(ctx, w, &p),
        Op::RemoveSender(w, p) => mb.remove_sender(ctx, w, &p),
        Op::SetPreference(k, v) => mb.set_preference(ctx, k, v),
        Op::RemovePreference(k) => mb.remove_preference(ctx, &k),
        Op::InstallPlugin(name, order) => mb.install_plugin(
            ctx,
            PluginEntry {
                name,
                code_hash: format!("{:064x}", order % 2),
                config: format!("order {order}"),
                order,
            },
        ),
        Op::RemovePlugin(name) => mb.remove_plugin(ctx, &name),
        Op::Rename(a, b) => mb.rename_folder(ctx, &a, &b).map(drop),
        Op::DeleteFolder(a) => mb.delete_folder(ctx, &a),
    };
    r.is_ok()
}

fn strings(rng: &mut Rng, pool: &[&str]) -> Vec<String> {
    pool.iter()
        .filter(|_| rng.chance(30))
        .map(|s| s.to_string())
        .collect()
}

fn some_flags(rng: &mut Rng) -> MailFlags {
    MailFlags::from_bits_truncate(rng.next() as u8 & rng.next() as u8)
}

fn placement(rng: &mut Rng) -> Placement {
    Placement {
        folder: rng.pick(&FOLDERS).to_string(),
        flags: some_flags(rng),
        keywords: strings(rng, &KEYWORDS),
        spam_score: rng.chance(50).then(|| rng.below(10) as f32),
    }
}

/// One replica while the scenario is generated.
struct Replica {
    mb: Mailbox,
    /// Operations applied, per origin (a version vector).
    seen: [usize; REPLICAS],
    hlc: u64,
}

struct Scenario {
    rng: Rng,
    replicas: Vec<Replica>,
    /// Each origin's operations, in the order it made them.
    logs: Vec<Vec<Logged>>,
    /// Every mail id delivered anywhere, for concurrent re-deliveries and
    /// blind deletes.
    ids: Vec<String>,
    /// Renames made, for fresh target names.
    renames: usize,
}

impl Scenario {
    /// A random operation that makes sense on replica `r`'s current view.
    fn make_op(&mut self, r: usize) -> Op {
        let rng = &mut self.rng;
        let mb = &self.replicas[r].mb;
        let local: Vec<String> = mb.state.mails.keys().cloned().collect();
        let folders: Vec<String> = mb.state.folders.keys().cloned().collect();
        let some_local = |rng: &mut Rng| (!local.is_empty()).then(|| rng.pick(&local).clone());
        let unseen: Vec<&String> = self
            .ids
            .iter()
            .filter(|id| !mb.state.mails.contains_key(id) && !mb.state.tombstones.contains_key(*id))
            .collect();
        let list = |rng: &mut Rng| {
            if rng.chance(50) {
                SenderList::Allow
            } else {
                SenderList::Block
            }
        };
        if rng.chance(8) {
            let f = rng.pick(&folders).clone();
            self.renames += 1;
            // Half onto a fresh name, half onto a common one, which another
            // replica may be creating or renaming onto concurrently.
            let to = if rng.chance(50) {
                format!("{}/R{}", rng.pick(&FOLDERS), self.renames)
            } else {
                rng.pick(&FOLDERS).to_string()
            };
            return if rng.chance(50) {
                Op::Rename(f, to)
            } else {
                Op::DeleteFolder(f)
            };
        }
        match rng.below(20) {
            0..=2 => {
                let id = format!("m{}", self.ids.len());
                self.ids.push(id.clone());
                Op::Deliver(id, placement(rng))
            }
            // The same id delivered concurrently on another replica.
            3 if !unseen.is_empty() => Op::Deliver(rng.pick(&unseen).to_string(), placement(rng)),
            4..=6 => match some_local(rng) {
                Some(id) => Op::SetFlags(
                    id,
                    some_flags(rng),
                    strings(rng, &KEYWORDS),
                    some_flags(rng),
                    strings(rng, &KEYWORDS),
                ),
                None => Op::CreateFolder(rng.pick(&FOLDERS).to_string()),
            },
            7 | 8 => match some_local(rng) {
                Some(id) => Op::Move(id, rng.pick(&folders).clone()),
                None => Op::CreateFolder(rng.pick(&FOLDERS).to_string()),
            },
            9 => match some_local(rng) {
                Some(id) => Op::DeleteMail(id),
                None => Op::CreateFolder(rng.pick(&FOLDERS).to_string()),
            },
            // A client that saw the mail on another replica deletes it
            // here, before this replica got it.
            10 if !unseen.is_empty() => Op::DeleteMail(rng.pick(&unseen).to_string()),
            11 => Op::CreateFolder(rng.pick(&FOLDERS).to_string()),
            12 => Op::AddContact(
                rng.pick(&ADDRESSES).to_string(),
                format!("n{}", rng.below(3)),
            ),
            13 => Op::RemoveContact(rng.pick(&ADDRESSES).to_lowercase()),
            14 => Op::AddSender(list(rng), rng.pick(&PATTERNS).to_string()),
            15 => Op::RemoveSender(list(rng), rng.pick(&PATTERNS).to_string()),
            16 => Op::SetPreference(
                rng.pick(&PREF_KEYS).to_string(),
                format!("v{}", rng.below(3)),
            ),
            17 => Op::RemovePreference(rng.pick(&PREF_KEYS).to_string()),
            18 => Op::InstallPlugin(rng.pick(&PLUGINS).to_string(), rng.below(3) as u32),
            _ => Op::RemovePlugin(rng.pick(&PLUGINS).to_string()),
        }
    }

    /// Replica `r` makes an operation; kept only if its mailbox accepts
    /// it, as the host logs only accepted operations.
    fn step_make(&mut self, r: usize) {
        let op = self.make_op(r);
        let rep = &mut self.replicas[r];
        rep.hlc += 1 + self.rng.below(3) as u64;
        let ctx = OpContext {
            now_ms: 1_700_000_000_000 + rep.hlc as i64 * 10 + r as i64,
            hlc: rep.hlc,
            replica: r as u64 + 1,
        };
        let before = rep.mb.state_digest();
        if apply(&mut rep.mb, &ctx, &op) {
            self.logs[r].push(Logged {
                ctx,
                op,
                origin: r,
                deps: rep.seen,
            });
            rep.seen[r] += 1;
        } else {
            assert_eq!(
                rep.mb.state_digest(),
                before,
                "refused {op:?} changed state"
            );
        }
    }

    /// Replica `r` catches up with a random prefix of `q`'s operations and
    /// everything they depend on.
    fn step_sync(&mut self, r: usize, q: usize) {
        let have = self.replicas[r].seen[q];
        let len = self.logs[q].len();
        if have >= len {
            return;
        }
        let upto = have + 1 + self.rng.below(len - have);
        let mut want = self.logs[q][upto - 1].deps;
        want[q] = upto;
        for (w, s) in want.iter_mut().zip(self.replicas[r].seen) {
            *w = (*w).max(s);
        }
        let order = causal_order(&self.logs, self.replicas[r].seen, want, &mut self.rng);
        let rep = &mut self.replicas[r];
        for l in order {
            replay_op(&mut rep.mb, &l.ctx, &l.op);
            rep.hlc = rep.hlc.max(l.ctx.hlc);
            rep.seen[l.origin] += 1;
        }
    }
}

/// Applies an operation made elsewhere, as the host does.
fn replay_op(mb: &mut Mailbox, ctx: &OpContext, op: &Op) {
    mb.replaying = true;
    apply(mb, ctx, op);
    mb.replaying = false;
}

/// A random order of the operations between version vectors `from` and
/// `to` in which each comes after its causal past.
fn causal_order(
    logs: &[Vec<Logged>],
    mut from: [usize; REPLICAS],
    to: [usize; REPLICAS],
    rng: &mut Rng,
) -> Vec<Logged> {
    let mut out = Vec::new();
    loop {
        let ready: Vec<usize> = (0..REPLICAS)
            .filter(|&o| from[o] < to[o])
            .filter(|&o| {
                let deps = logs[o][from[o]].deps;
                (0..REPLICAS).all(|i| deps[i] <= from[i])
            })
            .collect();
        if ready.is_empty() {
            assert_eq!(from, to, "operation set is not causally closed");
            return out;
        }
        let o = *rng.pick(&ready);
        out.push(logs[o][from[o]].clone());
        from[o] += 1;
    }
}

/// Applies every operation at a fresh replica in a random causal order,
/// re-applying random earlier ones (duplicates) and sometimes passing the
/// state through a snapshot and restore.
fn replay(logs: &[Vec<Logged>], rng: &mut Rng) -> Mailbox {
    let all: [usize; REPLICAS] = std::array::from_fn(|o| logs[o].len());
    let order = causal_order(logs, [0; REPLICAS], all, rng);
    let mut mb = Mailbox::default();
    for (i, l) in order.iter().enumerate() {
        replay_op(&mut mb, &l.ctx, &l.op);
        if rng.chance(10) {
            let dup = &order[rng.below(i + 1)];
            replay_op(&mut mb, &dup.ctx, &dup.op);
        }
        if rng.chance(3) {
            let bytes = crate::snapshot::encode(&mb.state, 0);
            let state = crate::snapshot::decode_state(crate::snapshot::SCHEMA_VERSION, &bytes)
                .expect("own snapshot decodes");
            mb = Mailbox::from_state(state).expect("own snapshot is consistent");
        }
    }
    mb
}

/// The replicated content, readably, to show where two replicas differ.
pub(crate) fn describe(mb: &Mailbox) -> Vec<String> {
    let s = &mb.state;
    let mut out: Vec<String> = s
        .mails
        .iter()
        .map(|(id, m)| {
            format!(
                "mail {id} in {} flags {:#x} {:?} delivered {:?} moved {:?} rx {}",
                mb.folder_name_of(m.folder),
                m.flags,
                m.keywords,
                m.delivered,
                m.moved(),
                m.received_ms,
            )
        })
        .collect();
    out.extend(
        s.tombstones
            .iter()
            .map(|(id, t)| format!("tomb {id} {t:?}")),
    );
    out.extend(s.folders.keys().map(|f| format!("folder {f}")));
    regs(&mut out, "contact", &s.contacts);
    regs(&mut out, "allow", &s.allow);
    regs(&mut out, "block", &s.block);
    regs(&mut out, "pref", &s.preferences);
    regs(&mut out, "plugin", &s.plugins);
    out
}

fn regs<V: Default + std::fmt::Debug>(out: &mut Vec<String>, tag: &str, map: &LwwMap<V>) {
    out.extend(
        map.registers()
            .iter()
            .map(|(k, r)| format!("{tag} {k} {r:?}")),
    );
}

pub(crate) fn assert_same(a: &Mailbox, b: &Mailbox, what: &str) {
    if a.state_digest() == b.state_digest() {
        return;
    }
    let (da, db) = (describe(a), describe(b));
    let only_a: Vec<&String> = da.iter().filter(|l| !db.contains(l)).collect();
    let only_b: Vec<&String> = db.iter().filter(|l| !da.contains(l)).collect();
    panic!("{what}: digests differ\n  only in first: {only_a:#?}\n  only in second: {only_b:#?}");
}

fn run(seed: u64) {
    let mut sc = Scenario {
        rng: Rng::new(seed),
        replicas: (0..REPLICAS)
            .map(|_| Replica {
                mb: Mailbox::default(),
                seen: [0; REPLICAS],
                hlc: 0,
            })
            .collect(),
        logs: vec![Vec::new(); REPLICAS],
        ids: Vec::new(),
        renames: 0,
    };
    for _ in 0..STEPS {
        let r = sc.rng.below(REPLICAS);
        if sc.rng.chance(25) {
            let q = (r + 1 + sc.rng.below(REPLICAS - 1)) % REPLICAS;
            sc.step_sync(r, q);
        } else {
            sc.step_make(r);
        }
    }
    // Every generating replica catches up on everything.
    for r in 0..REPLICAS {
        for q in 0..REPLICAS {
            while sc.replicas[r].seen[q] < sc.logs[q].len() {
                sc.step_sync(r, q);
            }
        }
    }
    if std::env::var("DEM_DUMP").is_ok() {
        for (o, log) in sc.logs.iter().enumerate() {
            for (i, l) in log.iter().enumerate() {
                eprintln!("r{o}#{i} hlc {} deps {:?} {:?}", l.ctx.hlc, l.deps, l.op);
            }
        }
    }
    let reference = &sc.replicas[0].mb;
    for (r, rep) in sc.replicas.iter().enumerate().skip(1) {
        assert_same(
            reference,
            &rep.mb,
            &format!("DEM_SEED={seed:#x}: replica {r}"),
        );
    }
    for i in 0..REPLAYS {
        let mb = replay(&sc.logs, &mut sc.rng);
        assert_same(reference, &mb, &format!("DEM_SEED={seed:#x}: replay {i}"));
    }
}

#[test]
fn replicas_converge_in_any_causal_order() {
    for seed in seeds(0xdead_0000, SCENARIOS) {
        eprintln!("converge seed DEM_SEED={seed:#x}");
        run(seed);
    }
}
