//! The arbiter's decisions, as pure functions of what it knows, so they are
//! unit-tested without forking anything.
//!
//! - [`plan`]: given the workers and the target, what to spawn, retire, abort, kill.
//! - [`classify_exit`]: what a reaped worker's exit means.
//! - [`Backoff`]: the crash-loop brake.

use std::time::{Duration, Instant};

/// What the arbiter knows about one worker.
#[derive(Debug, Clone)]
pub struct View {
    pub seq: u64,
    pub generation: u64,
    pub ready: bool,
    pub spawned_at: Instant,
    pub last_seen: Instant,
    /// When we sent TERM (retiring or stopping).
    pub term_at: Option<Instant>,
    /// When we sent ABRT for silence.
    pub aborted_at: Option<Instant>,
    pub killed: bool,
    /// The worker asked to be recycled (`MAX_REQUESTS`).
    pub wants_retire: bool,
}

#[derive(Debug, Clone)]
pub struct Params {
    pub target: usize,
    pub generation: u64,
    pub timeout: Duration,
    /// Grace between ABRT and KILL.
    pub kill_after: Duration,
    /// How long a retiring worker may drain before KILL.
    pub graceful: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Spawn,
    Term(u64),
    Abort(u64),
    Kill(u64),
}

/// The actions that move the fleet toward `target` ready workers of the current
/// generation, never dropping below `target` ready ones while replacing.
pub fn plan(workers: &[View], p: &Params, now: Instant) -> Vec<Action> {
    let mut actions = Vec::new();

    // Liveness: silence → ABRT, then KILL; an overdue drain → KILL.
    for w in workers.iter().filter(|w| !w.killed) {
        match (w.aborted_at, w.term_at) {
            (Some(at), _) if now.duration_since(at) >= p.kill_after => {
                actions.push(Action::Kill(w.seq))
            }
            (Some(_), _) => {}
            (None, Some(at)) if now.duration_since(at) >= p.graceful + p.kill_after => {
                actions.push(Action::Kill(w.seq))
            }
            (None, _) if now.duration_since(w.last_seen) >= p.timeout => {
                actions.push(Action::Abort(w.seq))
            }
            _ => {}
        }
    }
    let gone = |w: &View| w.term_at.is_some() || w.aborted_at.is_some() || w.killed;
    let silent = |w: &View| actions.contains(&Action::Abort(w.seq));
    let active: Vec<&View> = workers.iter().filter(|w| !gone(w) && !silent(w)).collect();

    let (mut current, mut stale): (Vec<&View>, Vec<&View>) = active
        .iter()
        .partition(|w| w.generation == p.generation && !w.wants_retire);
    current.sort_by_key(|w| (w.spawned_at, w.seq));
    stale.sort_by_key(|w| (w.spawned_at, w.seq));

    // Grow.
    for _ in current.len()..p.target {
        actions.push(Action::Spawn);
    }
    // Replace stale workers (old generation, or asking to retire), oldest first,
    // only as fast as ready replacements make them redundant.
    let ready_current = current.iter().filter(|w| w.ready).count();
    let redundant = (ready_current + stale.len()).saturating_sub(p.target);
    for w in stale.iter().take(redundant) {
        actions.push(Action::Term(w.seq));
    }
    // Shrink: the oldest current workers go first.
    for w in current.iter().take(current.len().saturating_sub(p.target)) {
        actions.push(Action::Term(w.seq));
    }
    actions
}

/// What a reaped worker's exit means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitKind {
    /// We asked it to go (TERM, ABRT, KILL) or it left cleanly.
    Expected,
    /// It could not boot: halt the supervisor rather than respawn forever.
    BootError,
    /// It died on its own. `early` when it never became ready or died young.
    Crashed { early: bool },
}

pub const BOOT_ERROR_CODE: i32 = fleetgate_shared::contract::EXIT_BOOT_ERROR;

/// `code` is the exit code, or `None` when a signal killed it.
pub fn classify_exit(w: &View, code: Option<i32>, now: Instant) -> ExitKind {
    if w.term_at.is_some() || w.aborted_at.is_some() || w.killed {
        return ExitKind::Expected;
    }
    match code {
        Some(BOOT_ERROR_CODE) => ExitKind::BootError,
        Some(0) if w.wants_retire => ExitKind::Expected,
        _ => ExitKind::Crashed {
            early: !w.ready || now.duration_since(w.spawned_at) < Duration::from_secs(1),
        },
    }
}

/// The crash-loop brake: after consecutive early crashes, spawning waits
/// 100 ms, 200 ms, 400 ms … up to 10 s. A worker becoming ready resets it.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    pub fn crashed(&mut self, early: bool, now: Instant) {
        if !early {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(100)
            .saturating_mul(1 << self.failures.saturating_sub(1).min(7))
            .min(Duration::from_secs(10));
        self.not_before = Some(now + delay);
    }

    pub fn ready(&mut self) {
        self.failures = 0;
        self.not_before = None;
    }

    pub fn may_spawn(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.not_before.map(|t| t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(target: usize) -> Params {
        Params {
            target,
            generation: 1,
            timeout: Duration::from_secs(30),
            kill_after: Duration::from_secs(1),
            graceful: Duration::from_secs(30),
        }
    }

    fn worker(seq: u64, t0: Instant, age_s: u64) -> View {
        let at = t0 - Duration::from_secs(age_s);
        View {
            seq,
            generation: 1,
            ready: true,
            spawned_at: at,
            last_seen: t0,
            term_at: None,
            aborted_at: None,
            killed: false,
            wants_retire: false,
        }
    }

    fn spawns(a: &[Action]) -> usize {
        a.iter().filter(|a| **a == Action::Spawn).count()
    }

    #[test]
    fn starts_the_target_number() {
        let now = Instant::now();
        assert_eq!(spawns(&plan(&[], &params(3), now)), 3);
        let fleet = [worker(1, now, 5), worker(2, now, 5), worker(3, now, 5)];
        assert!(plan(&fleet, &params(3), now).is_empty());
    }

    #[test]
    fn a_dead_worker_is_replaced() {
        let now = Instant::now();
        let fleet = [worker(1, now, 5), worker(2, now, 5)];
        assert_eq!(plan(&fleet, &params(3), now), vec![Action::Spawn]);
    }

    #[test]
    fn shrinking_retires_the_oldest_first() {
        let now = Instant::now();
        let fleet = [worker(1, now, 5), worker(2, now, 50), worker(3, now, 9)];
        assert_eq!(plan(&fleet, &params(2), now), vec![Action::Term(2)]);
        assert_eq!(
            plan(&fleet, &params(1), now),
            vec![Action::Term(2), Action::Term(3)]
        );
    }

    #[test]
    fn reload_spawns_first_and_retires_old_only_once_new_are_ready() {
        let now = Instant::now();
        let mut p = params(2);
        p.generation = 2;
        let old = [worker(1, now, 60), worker(2, now, 50)];
        // Nothing new yet: spawn two, retire nothing.
        assert_eq!(plan(&old, &p, now), vec![Action::Spawn, Action::Spawn]);
        // Two new, booting: still retire nothing.
        let mut fleet = old.to_vec();
        for seq in [3, 4] {
            let mut w = worker(seq, now, 0);
            w.generation = 2;
            w.ready = false;
            fleet.push(w);
        }
        assert!(plan(&fleet, &p, now).is_empty());
        // One new is ready: exactly the oldest old one goes.
        fleet[2].ready = true;
        assert_eq!(plan(&fleet, &p, now), vec![Action::Term(1)]);
        fleet[3].ready = true;
        assert_eq!(
            plan(&fleet, &p, now),
            vec![Action::Term(1), Action::Term(2)]
        );
    }

    #[test]
    fn a_worker_asking_to_retire_is_replaced_before_it_goes() {
        let now = Instant::now();
        let mut w = worker(1, now, 10);
        w.wants_retire = true;
        assert_eq!(plan(&[w.clone()], &params(1), now), vec![Action::Spawn]);
        let mut fresh = worker(2, now, 0);
        fresh.ready = false;
        assert!(plan(&[w.clone(), fresh.clone()], &params(1), now).is_empty());
        fresh.ready = true;
        assert_eq!(plan(&[w, fresh], &params(1), now), vec![Action::Term(1)]);
    }

    #[test]
    fn silence_escalates_abort_then_kill_and_is_replaced() {
        let now = Instant::now();
        let mut hung = worker(1, now, 100);
        hung.last_seen = now - Duration::from_secs(31);
        let ok = worker(2, now, 100);
        let a = plan(&[hung.clone(), ok.clone()], &params(2), now);
        assert_eq!(a, vec![Action::Abort(1), Action::Spawn]);
        hung.aborted_at = Some(now - Duration::from_millis(500));
        assert_eq!(
            plan(&[hung.clone(), ok.clone()], &params(2), now),
            vec![Action::Spawn]
        );
        hung.aborted_at = Some(now - Duration::from_secs(2));
        assert_eq!(
            plan(&[hung, ok], &params(2), now),
            vec![Action::Kill(1), Action::Spawn]
        );
    }

    #[test]
    fn an_overdue_drain_is_killed() {
        let now = Instant::now();
        let mut w = worker(1, now, 100);
        w.term_at = Some(now - Duration::from_secs(32));
        let a = plan(&[w], &params(1), now);
        assert_eq!(a, vec![Action::Kill(1), Action::Spawn]);
    }

    #[test]
    fn exits_are_classified() {
        let now = Instant::now();
        let w = worker(1, now, 100);
        assert_eq!(
            classify_exit(&w, Some(BOOT_ERROR_CODE), now),
            ExitKind::BootError
        );
        assert_eq!(
            classify_exit(&w, None, now),
            ExitKind::Crashed { early: false }
        );
        let young = worker(2, now, 0);
        assert_eq!(
            classify_exit(&young, Some(1), now),
            ExitKind::Crashed { early: true }
        );
        let mut retiring = worker(3, now, 100);
        retiring.term_at = Some(now);
        assert_eq!(classify_exit(&retiring, None, now), ExitKind::Expected);
    }

    #[test]
    fn backoff_grows_and_resets() {
        let now = Instant::now();
        let mut b = Backoff::default();
        assert!(b.may_spawn(now));
        b.crashed(false, now);
        assert!(
            b.may_spawn(now),
            "a long-lived worker's death is no crash loop"
        );
        b.crashed(true, now);
        assert!(!b.may_spawn(now));
        assert!(b.may_spawn(now + Duration::from_millis(100)));
        b.crashed(true, now);
        b.crashed(true, now);
        assert_eq!(b.wait(now), Some(Duration::from_millis(400)));
        for _ in 0..20 {
            b.crashed(true, now);
        }
        assert_eq!(b.wait(now), Some(Duration::from_secs(10)));
        b.ready();
        assert!(b.may_spawn(now));
    }
}
