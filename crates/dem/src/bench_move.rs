//! The move of `dem bench net`: the big mailbox is moved on to each host
//! that never held it, one `Pull` each (what `dem admin move` sends), and
//! the moves are timed from the order to the holder's answer. Several
//! moves, not one: a move is one sample on a noisy machine, and the raw
//! baseline it is compared with is the median of three transfers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::bench_net::{Proc, User, ms};
use dem_client::now_ms;
use dem_identity::{HostId, MOVE_ORDER, Signed};
use dem_proto::{HostRequest, HostResponse, MoveOrder};

/// Moves timed, each to another host; `move_ms` is their median.
const MOVE_RUNS: usize = 3;

/// Pause after each timed move, for the new holder's restore and the old
/// holder's delete.
const MOVE_SETTLE: Duration = Duration::from_millis(500);

/// The timed moves and where the mailbox ended up.
pub(super) struct Moves {
    pub runs_ms: Vec<f64>,
    /// Why a move was not measured, if one failed (the later ones were
    /// then not tried).
    pub note: Option<String>,
    pub holder: HostId,
}

impl Moves {
    /// The median move, if every move was measured.
    pub fn median_ms(&self) -> Option<f64> {
        if self.note.is_some() {
            return None;
        }
        let mut sorted = self.runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }
}

/// Moves `big`'s mailbox from `from` on to up to [`MOVE_RUNS`] of `hosts`
/// that do not hold it, each move to a host that never held it (so each
/// sends the whole state).
pub(super) async fn move_along(
    big: &User,
    from_addr: &str,
    from: HostId,
    hosts: &[Option<Proc>],
) -> anyhow::Result<Moves> {
    let mut moves = Moves {
        runs_ms: Vec::new(),
        note: None,
        holder: from,
    };
    let mut holder_addr = from_addr.to_string();
    for target in hosts
        .iter()
        .flatten()
        .filter(|h| h.id != from.to_hex())
        .take(MOVE_RUNS)
    {
        let to: HostId = target.id.parse().context("host id from the child")?;
        match move_mailbox(big, (&holder_addr, moves.holder), (&target.addr, to)).await {
            Ok(t) => moves.runs_ms.push(ms(t)),
            Err(e) => {
                moves.note = Some(format!("not measured: {e:#}"));
                break;
            }
        }
        (holder_addr, moves.holder) = (target.addr.clone(), to);
        // The new holder restores the mailbox and the old one deletes its
        // copy: let that pass before the next move is timed.
        tokio::time::sleep(MOVE_SETTLE).await;
    }
    Ok(moves)
}

/// Orders `owner`'s mailbox moved from `from` to `to`, as `dem admin move`
/// does, and times it until the host answers that the move is done.
async fn move_mailbox(
    owner: &User,
    (from_addr, from): (&str, HostId),
    (to_addr, to): (&str, HostId),
) -> anyhow::Result<Duration> {
    let order = MoveOrder {
        user: owner.id(),
        to,
    };
    let signed = Signed::sign(&owner.key, MOVE_ORDER, now_ms(), &order)?;
    // The raw baseline times a connection set up beforehand; so does the
    // move: the client's handshake with the source is not part of moving.
    owner
        .session
        .host_request(
            from_addr,
            from,
            &HostRequest::Holds {
                mailbox: owner.id(),
            },
        )
        .await?;
    let t = Instant::now();
    let answer = owner
        .session
        .host_request(
            from_addr,
            from,
            &HostRequest::Pull {
                order: signed,
                to_addr: Some(to_addr.to_string()),
            },
        )
        .await?;
    let took = t.elapsed();
    match answer {
        HostResponse::Done | HostResponse::Imported { .. } => Ok(took),
        other => bail!("unexpected answer to Pull: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moves(runs_ms: &[f64], note: Option<&str>) -> Moves {
        Moves {
            runs_ms: runs_ms.to_vec(),
            note: note.map(str::to_string),
            holder: HostId([1; 32]),
        }
    }

    #[test]
    fn the_median_needs_every_move() {
        assert_eq!(moves(&[70.0, 50.0, 60.0], None).median_ms(), Some(60.0));
        assert_eq!(moves(&[50.0], None).median_ms(), Some(50.0));
        assert_eq!(moves(&[], None).median_ms(), None);
        assert_eq!(moves(&[50.0], Some("refused")).median_ms(), None);
    }
}
