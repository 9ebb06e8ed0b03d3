//! One scope's view of the quota its server advertises, and the rule that follows it.
//!
//! # Counting what is in flight without tracking it
//!
//! Every attempt (and hedge) let out under the scope takes a *ticket*, the next number of a
//! counter (`sent`), and carries it to its answer; a count of the tickets out (taken, not
//! yet answered nor dropped) goes up and down with them. An answer saying that `r`
//! requests are left was counted by the server; the other requests in flight may not have
//! been (they may reach it in any order, each on its connection), so the entry is set to
//! `r` less the other tickets out, counting from the ticket after the last taken. What is
//! left at admission is that less the tickets taken since: 8 calls in flight cannot
//! overshoot a quota that has 2 left (the answer to any of them says at most 9, less the 7
//! others), and the next answer corrects the count (a request the server did count, or one
//! that never reached it). The count takes no lock: a ticket is a number and a reference to
//! the scope's counter (whose reference count is the count of tickets out), given back
//! when its attempt is answered or dropped.
//!
//! An answer to a ticket older than the one whose answer was applied is ignored, unless it
//! starts a later window: its reset is a second or more later than the entry's (resets in
//! whole seconds, rounded, differ by less than that within one window).
//!
//! # After the reset
//!
//! With the window's quota known (`q`, or a `Limit` field), the entry refills to it at its
//! reset, counted from the first ticket after the reset; its next reset is guessed one
//! window later (the longest time to reset an answer of it gave), until an answer says.
//! With no quota known, the entry no longer constrains until the next answer.
//!
//! # One view per scope
//!
//! Entries are kept by IETF policy name and partition key (`pk`), at most
//! [`MAX_ENTRIES`] (a new one evicts the entry whose reset is soonest), and **the tightest
//! wins**: an attempt waits for the longest wait any entry asks. A scope is one view:
//! requests of several partitions under one scope are all paced by the tightest of them;
//! scopes ([`Scope`](crate::policy::Scope)) separate them.
//!
//! # Cost
//!
//! Until an answer advertises a quota, letting an attempt out is a load and its ticket (two
//! atomic adds, one given back with the ticket), no lock. With a quota known, a short
//! uncontended lock around the entries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tokio::time::Instant;

use super::{Follow, Quota, ServerQuotaConfig, read};
use crate::overload::hold::release_window_for;

/// At most this many entries (policy name, partition key) per scope.
pub(crate) const MAX_ENTRIES: usize = 8;

/// Answers whose resets differ by less than this are of one window: resets are written in
/// whole seconds, rounded.
const SAME_WINDOW: Duration = Duration::from_secs(1);

/// One scope's view of the quota its server advertises.
pub(crate) struct ServerQuota {
    config: ServerQuotaConfig,
    /// Tickets handed out: the number of the next one.
    sent: AtomicU64,
    /// Each ticket holds a reference to this: the tickets out (taken, and neither answered
    /// nor dropped) are its references but this one, counted by the reference count itself.
    out: Arc<Out>,
    /// Calls waiting for a spent quota's reset, with their [`Place`]s.
    queued: Arc<AtomicU64>,
    /// Whether any entry is kept: until then admission takes no lock.
    known: AtomicBool,
    entries: Mutex<Vec<QuotaEntry>>,
}

impl std::fmt::Debug for ServerQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerQuota")
            .field("config", &self.config)
            .field("sent", &self.sent.load(Relaxed))
            .finish()
    }
}

/// What an attempt let out under a followed quota carries to its answer: its number, and
/// its place in the count of tickets out, given back when it is dropped (answered, or the
/// attempt ended without an answer, or never went).
#[derive(Debug)]
pub(crate) struct Ticket {
    number: u64,
    _out: Arc<Out>,
}

/// What tickets hold a reference to, to be counted (see [`ServerQuota::out`]).
#[derive(Debug)]
struct Out;

/// What a scope knows of its server's quota, for `OverloadHandle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuotaSnapshot {
    /// Requests the client may still send before the reset (what the server said, less
    /// what was sent since).
    pub(crate) remaining: u64,
    /// Time left to the reset.
    pub(crate) reset: Duration,
}

/// Why an attempt may not go yet: the tightest entry's wait, and what it knows (for the
/// message and the events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spent {
    /// How long until the attempt may go (to the reset, or to its paced turn), not counting
    /// the release spread.
    pub(crate) wait: Duration,
    /// Requests left (0 when spent; more when pacing).
    pub(crate) left: u64,
    pub(crate) limit: Option<u64>,
    pub(crate) policy: Option<Box<str>>,
    /// Time to the reset.
    pub(crate) reset: Duration,
    /// Spent (not pacing): waiters go spread over the release window after the reset.
    pub(crate) spent: bool,
    /// The release window of this waiter: zero for the first to wait on this reset (it
    /// goes at the reset), which is also when the scope becomes held.
    pub(crate) release: Duration,
}

impl Spent {
    /// Whether this is the first wait on the entry's reset (the scope just became held).
    pub(crate) fn first(&self) -> bool {
        self.spent && self.release.is_zero()
    }
}

impl std::fmt::Display for Spent {
    /// `the server's quota is spent (0 of 10 left, policy "default"), resets in 1.2s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = crate::error::Short;
        if self.spent {
            f.write_str("the server's quota is spent (0")?;
        } else {
            write!(f, "pacing the server's quota ({}", self.left)?;
        }
        if let Some(limit) = self.limit {
            write!(f, " of {limit}")?;
        }
        f.write_str(" left")?;
        if let Some(policy) = &self.policy {
            write!(f, ", policy {policy:?}")?;
        }
        write!(f, "), resets in {}", short(self.reset))?;
        if !self.spent {
            write!(f, ", next request in {}", short(self.wait))?;
        }
        Ok(())
    }
}

/// What [`ServerQuota::admit`] says.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Go, with this ticket.
    Go(Ticket),
    /// Not yet; with a place in line if the quota is spent (to pass back when asking again).
    Wait(Spent, Option<Place>),
}

/// A call's place among those waiting for a spent quota's reset: they go before calls that
/// come after the reset, which take only what the waiters leave (else the calls that come
/// just after the reset, before the waiters' release spread lets them out, would take the
/// refill, and a waiter could wait window after window). Given back when dropped: a
/// waiting call cancelled leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Place {
    queued: Arc<AtomicU64>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Relaxed);
    }
}

/// One quota (policy name, partition key) as far as the client knows it.
#[derive(Debug)]
struct QuotaEntry {
    policy: Option<Box<str>>,
    partition: Option<Box<[u8]>>,
    limit: Option<u64>,
    /// What the applied answer said was left, less the other tickets out then...
    remaining: u64,
    /// ...counting none of the tickets from this one on.
    from: u64,
    /// The ticket whose answer was applied: older ones tell less.
    at: u64,
    reset: Instant,
    /// The longest time to reset an answer of this entry gave: its window, as far as known.
    window: Duration,
    /// `remaining` and `reset` are the client's own guess after a reset (a refill): any
    /// answer replaces them.
    guessed: bool,
    /// Pacing: when the next request may go.
    next: Option<Instant>,
    /// The reset whose first waiter was told to go at it, and the hold's length then.
    first_out: Option<(Instant, Duration)>,
}

impl QuotaEntry {
    fn new(quota: &Quota, answer: Answer, now: Instant) -> Self {
        QuotaEntry {
            policy: quota.policy.clone(),
            partition: quota.partition.clone(),
            limit: quota.limit,
            remaining: quota.remaining.saturating_sub(answer.others),
            from: answer.sent,
            at: answer.ticket,
            reset: after(now, quota.reset),
            window: quota.reset,
            guessed: false,
            next: None,
            first_out: None,
        }
    }

    fn is(&self, quota: &Quota) -> bool {
        self.policy == quota.policy && self.partition == quota.partition
    }

    /// Requests left when `sent` tickets were handed out.
    fn left(&self, sent: u64) -> u64 {
        self.remaining
            .saturating_sub(sent.saturating_sub(self.from))
    }

    /// Applies `answer` at `now`; whether it starts a new window.
    fn apply(&mut self, quota: &Quota, answer: Answer, now: Instant) -> bool {
        let reset = after(now, quota.reset);
        let later = reset >= after(self.reset, SAME_WINDOW);
        // After a refill, the first answer is the server's word on the window guessed.
        let new_window = later || now >= self.reset || self.guessed;
        // An answer older than the one applied tells less, unless of a later window.
        if answer.ticket < self.at && !later && !self.guessed {
            return false;
        }
        self.remaining = quota.remaining.saturating_sub(answer.others);
        self.from = answer.sent;
        self.at = answer.ticket;
        self.reset = reset;
        self.limit = quota.limit.or(self.limit);
        self.window = if new_window {
            quota.reset
        } else {
            self.window.max(quota.reset)
        };
        self.guessed = false;
        if new_window {
            self.next = None;
        }
        new_window
    }

    /// The entry at `now`, `sent` tickets taken: past its reset, refilled (quota known) or
    /// `false` (no longer constraining: to be dropped).
    fn roll(&mut self, now: Instant, sent: u64) -> bool {
        if now < self.reset {
            return true;
        }
        let Some(limit) = self.limit.filter(|_| !self.window.is_zero()) else {
            return false;
        };
        self.remaining = limit;
        self.from = sent;
        self.at = sent;
        // The next reset: whole windows after the last one, the first past `now`.
        let behind = now.duration_since(self.reset).as_nanos();
        let windows = behind / self.window.as_nanos().max(1) + 1;
        let ahead = u32::try_from(windows)
            .ok()
            .and_then(|windows| self.window.checked_mul(windows));
        let Some(reset) = ahead.and_then(|ahead| self.reset.checked_add(ahead)) else {
            return false;
        };
        self.reset = reset;
        self.guessed = true;
        self.next = None;
        self.first_out = None;
        true
    }

    /// How long an attempt at `now` waits for this entry (zero: it may go), `sent` tickets
    /// taken and `ahead` calls waiting before it, following `follow`; a spent entry whose
    /// reset is more than `cap` away holds nothing.
    fn wait(
        &self,
        now: Instant,
        (sent, ahead): (u64, u64),
        follow: Follow,
        cap: Duration,
    ) -> Duration {
        if self.left(sent) <= ahead {
            let wait = self.reset.saturating_duration_since(now);
            return if wait > cap { Duration::ZERO } else { wait };
        }
        match (follow, self.next) {
            (Follow::Pace, Some(next)) => next.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// What a waiter told to wait `wait` at `now` is told.
    fn spent(&mut self, now: Instant, (sent, ahead): (u64, u64), wait: Duration) -> Spent {
        let left = self.left(sent).saturating_sub(ahead);
        let spent = left == 0;
        let release = match self.first_out {
            _ if !spent => Duration::ZERO,
            Some((reset, span)) if reset == self.reset => release_window_for(span).max(NONZERO),
            _ => {
                self.first_out = Some((self.reset, self.reset.saturating_duration_since(now)));
                Duration::ZERO
            }
        };
        Spent {
            wait,
            left,
            limit: self.limit,
            policy: self.policy.clone(),
            reset: self.reset.saturating_duration_since(now),
            spent,
            release,
        }
    }
}

/// What an answer tells beside its quotas: the ticket it answers, the other tickets out when
/// it came, and the tickets taken by then.
#[derive(Clone, Copy, Debug)]
struct Answer {
    ticket: u64,
    others: u64,
    sent: u64,
}

/// The release window of a waiter after the first: never zero, which says "the first".
const NONZERO: Duration = Duration::from_nanos(1);

impl ServerQuota {
    pub(crate) fn new(config: ServerQuotaConfig) -> Self {
        ServerQuota {
            config,
            sent: AtomicU64::new(0),
            out: Arc::new(Out),
            queued: Arc::new(AtomicU64::new(0)),
            known: AtomicBool::new(false),
            entries: Mutex::new(Vec::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Vec<QuotaEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May an attempt go at `now`? With a ticket if so; else how long it waits, for the
    /// tightest entry (the caller decides whether that fits its deadline: nothing is taken).
    /// A spent quota whose reset is more than `cap` away (the policy's `retry_after_cap`)
    /// holds nothing, as a `Retry-After` beyond it: the attempt goes, and the server answers.
    /// `place`: the call's place in line, if it waited for a reset (see [`Place`]).
    pub(crate) fn admit(&self, now: Instant, cap: Duration, place: Option<Place>) -> Admit {
        if !self.known.load(Relaxed) {
            return Admit::Go(self.ticket());
        }
        let mut entries = self.entries();
        let sent = self.sent.load(Relaxed);
        entries.retain_mut(|entry| entry.roll(now, sent));
        self.known.store(!entries.is_empty(), Relaxed);
        let follow = self.config.follow;
        // Those waiting go first; among them, whoever asks first.
        let ahead = match place {
            Some(_) => 0,
            None => self.queued.load(Relaxed),
        };
        let tightest = (entries.iter().enumerate())
            .map(|(index, entry)| (entry.wait(now, (sent, ahead), follow, cap), index))
            .max();
        if let Some((wait, index)) = tightest.filter(|(wait, _)| !wait.is_zero())
            && let Some(entry) = entries.get_mut(index)
        {
            let spent = entry.spent(now, (sent, ahead), wait);
            let place = match place {
                Some(place) => Some(place),
                None if spent.spent => {
                    self.queued.fetch_add(1, Relaxed);
                    let queued = self.queued.clone();
                    Some(Place { queued })
                }
                None => None,
            };
            return Admit::Wait(spent, place);
        }
        let ticket = self.ticket();
        if follow == Follow::Pace {
            // Each one sent moves the next turn on by the time to the reset over what was
            // left: a rate the server set, with a burst of one.
            for entry in entries.iter_mut() {
                let left = entry.left(sent).max(1);
                let step = entry.reset.saturating_duration_since(now) / saturate(left);
                entry.next = Some(entry.next.map_or(now, |next| next.max(now)) + step);
            }
        }
        Admit::Go(ticket)
    }

    /// Tickets out: taken, and neither answered nor dropped.
    fn tickets_out(&self) -> u64 {
        (Arc::strong_count(&self.out) as u64).saturating_sub(1)
    }

    /// The next ticket, out until dropped.
    fn ticket(&self) -> Ticket {
        Ticket {
            number: self.sent.fetch_add(1, Relaxed),
            _out: self.out.clone(),
        }
    }

    /// Learns from the answer to `ticket`, arrived now, whose fields are `headers`.
    /// `started` hears of each quota first learned or whose new window started. Returns at
    /// once when the answer advertises none (reading no clock: the wall clock is read only
    /// for an answer that has quota fields).
    pub(crate) fn learn(&self, ticket: Ticket, headers: &HeaderMap, started: impl FnMut(&Quota)) {
        let Some(quotas) = read(headers, &self.config.headers, SystemTime::now) else {
            return;
        };
        self.apply(ticket, &quotas, Instant::now(), started);
    }

    /// [`learn`](Self::learn), with the quotas read; the ticket is given back after.
    pub(crate) fn apply(
        &self,
        ticket: Ticket,
        quotas: &[Quota],
        now: Instant,
        mut started: impl FnMut(&Quota),
    ) {
        let mut entries = self.entries();
        // Read under the lock: a ticket taken with a quota known is taken under it too.
        let answer = Answer {
            ticket: ticket.number,
            others: self.tickets_out().saturating_sub(1),
            sent: self.sent.load(Relaxed),
        };
        for quota in quotas {
            if let Some(entry) = entries.iter_mut().find(|entry| entry.is(quota)) {
                if entry.apply(quota, answer, now) {
                    started(quota);
                }
                continue;
            }
            if entries.len() >= MAX_ENTRIES {
                let soonest = (entries.iter().enumerate())
                    .min_by_key(|(_, entry)| entry.reset)
                    .map(|(index, _)| index);
                if let Some(index) = soonest {
                    entries.swap_remove(index);
                }
            }
            entries.push(QuotaEntry::new(quota, answer, now));
            started(quota);
        }
        self.known.store(!entries.is_empty(), Relaxed);
    }

    /// What is known at `now` of the tightest entry (the fewest left); `None` before any
    /// answer advertised a quota (or after its reset, with no quota known to refill).
    pub(crate) fn snapshot(&self, now: Instant) -> Option<QuotaSnapshot> {
        if !self.known.load(Relaxed) {
            return None;
        }
        let mut entries = self.entries();
        let sent = self.sent.load(Relaxed);
        entries.retain_mut(|entry| entry.roll(now, sent));
        entries
            .iter()
            .map(|entry| QuotaSnapshot {
                remaining: entry.left(sent),
                reset: entry.reset.saturating_duration_since(now),
            })
            .min_by_key(|snapshot| (snapshot.remaining, std::cmp::Reverse(snapshot.reset)))
    }

    /// Whether it constrains an attempt at `now`: spent with its reset ahead, or pacing's
    /// next turn ahead (its scope's guards are then not evicted).
    pub(crate) fn busy(&self, now: Instant) -> bool {
        if !self.known.load(Relaxed) {
            return false;
        }
        let entries = self.entries();
        let sent = self.sent.load(Relaxed);
        let follow = self.config.follow;
        entries
            .iter()
            .any(|entry| now < entry.reset && !entry.wait(now, (sent, 0), follow, MAX).is_zero())
    }
}

/// `duration` after `instant`, or `instant` if the clock cannot say that (never for a reset
/// the parser read: at most a day away).
fn after(instant: Instant, duration: Duration) -> Instant {
    instant.checked_add(duration).unwrap_or(instant)
}

/// No cap: every wait counts.
const MAX: Duration = Duration::MAX;

/// `n` as a divisor of a duration.
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    fn quota(remaining: u64, reset: Duration, limit: Option<u64>) -> Quota {
        Quota::plain(remaining, reset, limit)
    }

    fn named(policy: &str, partition: Option<&[u8]>, remaining: u64, reset: Duration) -> Quota {
        Quota {
            policy: Some(policy.into()),
            partition: partition.map(Into::into),
            ..quota(remaining, reset, None)
        }
    }

    fn held() -> ServerQuota {
        ServerQuota::new(ServerQuotaConfig::hold())
    }

    /// Admits `n` attempts at `now`: the tickets of those let out (in flight while kept),
    /// the waits of the others.
    fn admit_n(quota: &ServerQuota, n: usize, now: Instant) -> (Vec<Ticket>, Vec<Duration>) {
        let (mut tickets, mut waits) = (Vec::new(), Vec::new());
        for _ in 0..n {
            match quota.admit(now, MAX, None) {
                Admit::Go(ticket) => tickets.push(ticket),
                Admit::Wait(spent, _) => waits.push(spent.wait),
            }
        }
        (tickets, waits)
    }

    /// One attempt let out at `now`, its ticket.
    fn one(quota: &ServerQuota, now: Instant) -> Result<Ticket, String> {
        match quota.admit(now, MAX, None) {
            Admit::Go(ticket) => Ok(ticket),
            Admit::Wait(spent, _) => Err(format!("told to wait: {spent}")),
        }
    }

    /// The wait `admit` says, or why not.
    fn waiting(admit: Admit) -> Result<Spent, String> {
        match admit {
            Admit::Wait(spent, _) => Ok(spent),
            Admit::Go(ticket) => Err(format!("let out with {ticket:?}")),
        }
    }

    /// The answer to `ticket` advertises `quotas`: how many started (an entry or a window).
    fn learn(state: &ServerQuota, ticket: Ticket, quotas: &[Quota], now: Instant) -> usize {
        let mut started = 0;
        state.apply(ticket, quotas, now, |_| started += 1);
        started
    }

    fn left(state: &ServerQuota, now: Instant) -> Option<u64> {
        state.snapshot(now).map(|snapshot| snapshot.remaining)
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_learned_lets_every_attempt_out_with_a_ticket_each() {
        let state = held();
        let now = Instant::now();
        let (tickets, waits) = admit_n(&state, 3, now);
        let numbers: Vec<u64> = tickets.iter().map(|ticket| ticket.number).collect();
        assert_eq!(numbers, vec![0, 1, 2]);
        assert!(waits.is_empty());
        assert_eq!(state.tickets_out(), 3);
        drop(tickets);
        assert_eq!(state.tickets_out(), 0, "given back when dropped");
        assert_eq!(state.snapshot(now), None);
        assert!(!state.busy(now));
    }

    #[tokio::test(start_paused = true)]
    async fn eight_in_flight_cannot_overshoot_two_left() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        // 8 out before anything is known; one's answer says 9 left: the server may not have
        // counted the 7 others yet (whichever reached it first), so 2 are left.
        let (mut tickets, _) = admit_n(&state, 8, now);
        let answered = tickets.swap_remove(3);
        assert_eq!(
            learn(&state, answered, &[quota(9, 2 * SECOND, None)], now),
            1
        );
        assert_eq!(
            state.snapshot(now),
            Some(QuotaSnapshot {
                remaining: 2,
                reset: 2 * SECOND
            })
        );
        let (more, waits) = admit_n(&state, 8, now);
        assert_eq!(more.len(), 2);
        assert_eq!(waits, vec![2 * SECOND; 6]);
        assert!(state.busy(now));
        // The same with the answer first: 2 left, 8 callers.
        let state = held();
        learn(
            &state,
            one(&state, now)?,
            &[quota(2, 2 * SECOND, None)],
            now,
        );
        let (tickets, waits) = admit_n(&state, 8, now);
        assert_eq!((tickets.len(), waits.len()), (2, 6));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_message_names_the_servers_quota() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        let spent = Quota {
            limit: Some(10),
            ..named("default", None, 0, 1_200 * MS)
        };
        learn(&state, one(&state, now)?, &[spent], now);
        let spent = waiting(state.admit(now, MAX, None))?;
        assert_eq!(
            spent.to_string(),
            "the server's quota is spent (0 of 10 left, policy \"default\"), resets in 1.20s"
        );
        // The first waiter goes at the reset; the others spread after it.
        assert!(spent.first());
        let second = waiting(state.admit(now, MAX, None))?;
        assert!(!second.first() && second.release == 300 * MS);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_beyond_the_cap_holds_nothing() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        learn(
            &state,
            one(&state, now)?,
            &[quota(0, 90 * SECOND, None)],
            now,
        );
        assert!(matches!(state.admit(now, 60 * SECOND, None), Admit::Go(_)));
        assert!(matches!(
            state.admit(now, 90 * SECOND, None),
            Admit::Wait(..)
        ));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_answer_is_ignored_unless_it_starts_a_later_window() {
        let state = held();
        let now = Instant::now();
        let (tickets, _) = admit_n(&state, 6, now);
        let mut tickets = tickets.into_iter().map(Some).collect::<Vec<_>>();
        let mut answer = |number: usize, remaining, reset| {
            let ticket = tickets[number].take();
            ticket.map(|ticket| learn(&state, ticket, &[quota(remaining, reset, None)], now))
        };
        // Ticket 3's answer: 8 left, less the 5 others out.
        assert_eq!(answer(3, 8, 2 * SECOND), Some(1));
        assert_eq!(left(&state, now), Some(3));
        // Ticket 1 went before ticket 3: its answer (9 left) is older news.
        assert_eq!(answer(1, 9, 2 * SECOND), Some(0));
        assert_eq!(left(&state, now), Some(3));
        // Within rounding of the reset: the same window.
        assert_eq!(answer(0, 9, 2 * SECOND + 900 * MS), Some(0));
        assert_eq!(left(&state, now), Some(3));
        // A reset a window later: a new window, applied (less the 2 others still out).
        assert_eq!(answer(2, 9, 4 * SECOND), Some(1));
        assert_eq!(left(&state, now), Some(7));
        // A newer answer is applied whatever it says.
        assert_eq!(answer(4, 2, 4 * SECOND), Some(0));
        assert_eq!(left(&state, now), Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_limit_refills_at_the_reset_counted_from_the_next_ticket() -> Result<(), String>
    {
        let state = held();
        let start = Instant::now();
        let spent = quota(0, 2 * SECOND, Some(3));
        learn(&state, one(&state, start)?, &[spent], start);
        assert_eq!(admit_n(&state, 1, start).1, vec![2 * SECOND]);
        tokio::time::advance(2 * SECOND).await;
        let now = Instant::now();
        // Refilled, the next reset a window on.
        assert_eq!(
            state.snapshot(now),
            Some(QuotaSnapshot {
                remaining: 3,
                reset: 2 * SECOND
            })
        );
        let (mut tickets, waits) = admit_n(&state, 5, now);
        assert_eq!((tickets.len(), waits), (3, vec![2 * SECOND; 2]));
        // An answer to a ticket of the guessed window replaces the guess (less the 2
        // others out).
        let answered = tickets.remove(0);
        learn(&state, answered, &[quota(5, SECOND, Some(3))], now);
        assert_eq!(
            state.snapshot(now),
            Some(QuotaSnapshot {
                remaining: 3,
                reset: SECOND
            })
        );
        // Long past: refilled in the window of the moment.
        tokio::time::advance(10 * SECOND + 500 * MS).await;
        let snapshot = state.snapshot(Instant::now());
        assert_eq!(snapshot.map(|s| s.reset), Some(500 * MS));
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_limit_known_the_reset_ends_the_constraint() -> Result<(), String> {
        let state = held();
        let start = Instant::now();
        learn(
            &state,
            one(&state, start)?,
            &[quota(0, 2 * SECOND, None)],
            start,
        );
        assert!(state.busy(start));
        tokio::time::advance(2 * SECOND).await;
        let now = Instant::now();
        assert!(!state.busy(now));
        let (tickets, waits) = admit_n(&state, 20, now);
        assert_eq!((tickets.len(), waits.len()), (20, 0));
        assert_eq!(state.snapshot(now), None);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_tightest_of_two_policies_wins() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        let minute = named("minute", None, 50, 60 * SECOND);
        let second = named("second", None, 2, SECOND);
        assert_eq!(learn(&state, one(&state, now)?, &[minute, second], now), 2);
        assert_eq!(
            state.snapshot(now),
            Some(QuotaSnapshot {
                remaining: 2,
                reset: SECOND
            })
        );
        let (mut tickets, waits) = admit_n(&state, 3, now);
        assert_eq!((tickets.len(), waits), (2, vec![SECOND]));
        // The minute's spent too: its reset is the longer wait.
        let spent = named("minute", None, 1, 59 * SECOND);
        learn(&state, tickets.remove(1), &[spent], now);
        assert_eq!(admit_n(&state, 1, now).1, vec![59 * SECOND]);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn partition_keys_are_kept_apart() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        let a = named("p", Some(b"a"), 0, SECOND);
        let b = named("p", Some(b"b"), 5, 3 * SECOND);
        assert_eq!(learn(&state, one(&state, now)?, &[a, b], now), 2);
        // `a` spent, `b` not: one view, the tightest.
        assert_eq!(admit_n(&state, 1, now).1, vec![SECOND]);
        tokio::time::advance(SECOND).await;
        let now = Instant::now();
        // `a` (no limit) is over; `b` still has its 5.
        assert_eq!(left(&state, now), Some(5));
        assert_eq!(admit_n(&state, 5, now).0.len(), 5);
        assert_eq!(admit_n(&state, 1, now).1, vec![2 * SECOND]);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spreads_what_is_left_over_the_time_to_the_reset() -> Result<(), String> {
        let state = ServerQuota::new(ServerQuotaConfig::pace());
        let start = Instant::now();
        let four = quota(4, 2 * SECOND, Some(4));
        learn(&state, one(&state, start)?, &[four], start);
        let mut sent_at = Vec::new();
        while sent_at.len() < 4 {
            let now = Instant::now();
            match state.admit(now, MAX, None) {
                Admit::Go(_) => sent_at.push(now.duration_since(start)),
                Admit::Wait(spent, _) => {
                    assert!(!spent.spent, "not spent: {spent}");
                    assert!(spent.to_string().starts_with("pacing the server's quota"));
                    tokio::time::advance(spent.wait).await;
                }
            }
        }
        // 4 left over 2 s: one every 500 ms at first, then what is left over what remains.
        assert_eq!(
            sent_at,
            vec![Duration::ZERO, 500 * MS, 1_000 * MS, 1_500 * MS]
        );
        // Spent: held to the reset.
        let spent = waiting(state.admit(Instant::now(), MAX, None))?;
        assert!(spent.spent && spent.wait == 500 * MS);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_bound_evicts_the_entry_whose_reset_is_soonest() -> Result<(), String> {
        let state = held();
        let now = Instant::now();
        let entries: Vec<Quota> = (0..MAX_ENTRIES as u32)
            .map(|i| named(&format!("p{i}"), None, 5, (i + 2) * SECOND))
            .collect();
        let (mut tickets, _) = admit_n(&state, 3, now);
        learn(&state, tickets.remove(0), &entries, now);
        // `soon`, spent, resets first: the bound evicts it for the next one.
        let soon = named("soon", None, 0, SECOND);
        learn(&state, tickets.remove(0), &[soon], now);
        assert_eq!(state.entries().len(), MAX_ENTRIES);
        assert_eq!(admit_n(&state, 1, now).1, vec![SECOND]);
        let new = named("new", None, 5, 30 * SECOND);
        learn(&state, tickets.remove(0), &[new], now);
        assert_eq!(state.entries().len(), MAX_ENTRIES);
        let names: Vec<_> = (state.entries().iter())
            .filter_map(|entry| entry.policy.clone())
            .collect();
        assert!(!names.iter().any(|name| &**name == "soon"), "{names:?}");
        assert!(!names.iter().any(|name| &**name == "p0"), "{names:?}");
        assert_eq!(admit_n(&state, 1, now).1, Vec::<Duration>::new());
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn those_waiting_for_the_reset_go_before_those_who_come_after() -> Result<(), String> {
        let state = held();
        let start = Instant::now();
        learn(
            &state,
            one(&state, start)?,
            &[quota(0, SECOND, Some(3))],
            start,
        );
        // Two wait for the reset, each with its place in line.
        let mut places = Vec::new();
        for _ in 0..2 {
            match state.admit(start, MAX, None) {
                Admit::Wait(_, Some(place)) => places.push(place),
                other => return Err(format!("{other:?}")),
            }
        }
        tokio::time::advance(SECOND).await;
        let now = Instant::now();
        // Refilled to 3: a call that comes now takes what the two waiting leave.
        assert!(matches!(state.admit(now, MAX, None), Admit::Go(_)));
        assert!(matches!(state.admit(now, MAX, None), Admit::Wait(..)));
        // The two waiting go, whenever they ask.
        for place in places {
            assert!(matches!(state.admit(now, MAX, Some(place)), Admit::Go(_)));
        }
        assert_eq!(state.queued.load(Relaxed), 0);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_dropped_leaves_nothing_that_blocks_others() -> Result<(), String> {
        let state = ServerQuota::new(ServerQuotaConfig::pace());
        let now = Instant::now();
        learn(
            &state,
            one(&state, now)?,
            &[quota(2, 2 * SECOND, None)],
            now,
        );
        assert_eq!(admit_n(&state, 1, now).0.len(), 1);
        // A call told to wait takes nothing: dropped (or not), the next turn is the same.
        let (_, waits) = admit_n(&state, 3, now);
        assert_eq!(waits, vec![SECOND; 3]);
        tokio::time::advance(SECOND).await;
        assert_eq!(admit_n(&state, 1, Instant::now()).0.len(), 1);
        // Nor does a call dropped while it waited for a spent quota's reset: its place in
        // line goes with it.
        let (state, now) = (held(), Instant::now());
        learn(&state, one(&state, now)?, &[quota(0, SECOND, Some(1))], now);
        let waiting = state.admit(now, MAX, None);
        assert!(matches!(waiting, Admit::Wait(_, Some(_))));
        assert_eq!(state.queued.load(Relaxed), 1);
        drop(waiting);
        tokio::time::advance(SECOND).await;
        assert_eq!(admit_n(&state, 1, Instant::now()).0.len(), 1);
        Ok(())
    }
}
