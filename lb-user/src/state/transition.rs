//! The rules of server state, as a pure function: given a server's configuration, its state
//! and one change, the new state and what happened (the events the writer then logs and acts
//! on). HAProxy's `srv_update_status` and friends, in one place: maintenance means DOWN with
//! a zero check counter and leaving it starts at `rise` with a check at once; checks and the
//! agent move UP/DOWN through the rise/fall counter; an operator can force either.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{By, Change, CheckMove, CheckReport, ForcedHealth, StateError};
use crate::config::{Backend, Server};
use crate::table::{
    fastinter, AddrOrigin, AdminState, Health, Origin, ServerState, TrackView, Transition,
    MAX_WEIGHT,
};

/// Why the operational state changed (HAProxy's `srv_op_st_chg_cause`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpCause {
    /// A regular check result.
    Check(CheckReport),
    /// The agent's answer.
    Agent(CheckReport),
    /// An operator, through the runtime API.
    Cli,
    /// An operator, through the stats page.
    StatsPage,
    /// The server-state file at start.
    StateFile,
    /// Nothing to say (slow start end, agent disabled).
    Quiet,
}

impl OpCause {
    fn of(by: &By) -> Self {
        match by {
            By::Cli => Self::Cli,
            By::StatsPage => Self::StatsPage,
            By::StateFile => Self::StateFile,
            _ => Self::Quiet,
        }
    }
}

/// What a change did, for the writer to log and act on (after publishing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// UP → DOWN.
    Down(OpCause),
    /// DOWN → UP.
    Up(OpCause),
    /// UP → NOLB (`health stopping`).
    Stopping(OpCause),
    /// Entered maintenance (forced, or `resolution` with its cause); `was_down`: it was DOWN
    /// already, so no session is affected.
    EnterMaint {
        was_down: bool,
        resolution: Option<&'static str>,
        /// Inherited from the tracked server.
        via: bool,
    },
    /// Left maintenance; `still`: it remains in another kind of maintenance.
    LeaveMaint {
        resolution: bool,
        still: bool,
        /// The tracked server's maintenance ended.
        via: bool,
    },
    /// Ready → Drain (`via`: inherited from the tracked server).
    EnterDrain {
        via: bool,
    },
    /// Drain → Ready (`via`: the tracked server's drain ended).
    LeaveDrain {
        via: bool,
    },
    /// A check's or the agent's result, whatever it changed (stats, `log-health-checks`).
    /// `moved`: the rise/fall counter moved.
    CheckResult {
        report: CheckReport,
        moved: bool,
    },
    AgentResult(CheckReport),
    /// The address for new connections changed.
    AddrChanged {
        old: SocketAddr,
        new: SocketAddr,
    },
    /// The checkers should check now (new address, leaving maintenance).
    CheckNow,
    /// A slow start began: the writer schedules its steps.
    StartRamp,
    /// `set server B/S agent-send`.
    AgentSend(Vec<u8>),
    /// `set server B/S check-addr|check-port|agent-addr|agent-port`.
    MoveCheck(CheckMove),
    /// `set server B/S fqdn NAME`: the server follows this name now (the writer keeps it).
    Fqdn(String),
}

/// Applies `change` to `st` (the state of `conf`, in backend `be`), pushing what happened to
/// `events`. On error `st` may be partly changed: the caller drops it.
pub fn step(
    conf: &Server,
    be: &Backend,
    st: &mut ServerState,
    change: Change,
    by: &By,
    now: Instant,
    events: &mut Vec<Event>,
) -> Result<(), StateError> {
    let mut t = Step {
        conf,
        be,
        st,
        by,
        now,
        events,
    };
    match change {
        Change::Admin(a) => t.admin(a),
        // HAProxy refuses it: a tracking server's health is its tracked server's.
        Change::ForceHealth(_) if conf.track.is_some() => return Err(StateError::Tracking),
        Change::ForceHealth(h) => t.force(h),
        Change::Check(r) => t.check(&r),
        Change::CheckError(action, r) => t.check_error(action, &r),
        Change::Agent(v) => {
            if let Some(a) = v.admin {
                t.admin(a);
            }
            if let Some(w) = v.weight {
                t.weight(w)?;
            }
            if let Some(m) = v.maxconn {
                t.st.set_maxconn(m);
            }
            t.events.push(Event::AgentResult(v.report.clone()));
            if let Some(up) = v.up {
                t.agent_health(up, OpCause::Agent(v.report));
            }
        }
        Change::AgentHealth(up) => {
            if !t.st.agent_enabled {
                return Err(StateError::AgentNotEnabled);
            }
            let cause = OpCause::of(by);
            t.agent_health(up, cause);
        }
        Change::Weight(w) => t.weight(w)?,
        Change::Maxconn(m) => t.st.set_maxconn(m),
        Change::Addr { ip, port } => t.addr(ip, port),
        Change::Resolution(cause) => t.resolution(cause),
        Change::Resolved(ip, port, weight) => {
            t.addr(Some(ip), port);
            t.resolution(None);
            if let Some(w) = weight.filter(|w| check_weight(conf, be, *w).is_ok()) {
                t.weight(w)?;
            }
        }
        Change::CheckEnabled(on) => {
            if !conf.health.check {
                return Err(StateError::CheckNotConfigured);
            }
            t.st.check_enabled = on;
        }
        Change::AgentEnabled(on) => t.agent_enabled(on)?,
        Change::AgentSend(bytes) => {
            if !t.st.agent_enabled {
                return Err(StateError::AgentNotEnabled);
            }
            t.events.push(Event::AgentSend(bytes));
        }
        // HAProxy's `srv_update_check_addr_port` / `srv_update_agent_addr_port`: only where
        // the check runs; applied by the writer's effects (the checkers read it each turn).
        Change::MoveCheck(m) => {
            super::checks_run(m.agent, conf, t.st)?;
            if !m.agent && m.port == Some(0) && conf.port_offset.is_some() {
                return Err(StateError::MapPortsNeedCheckPort);
            }
            t.events.push(Event::MoveCheck(m));
        }
        // HAProxy's `srv_set_fqdn`: the resolution restarts for the new name; the address,
        // the state and `MAINT (resolution)` stay as they are until it answers.
        Change::Fqdn(name) => {
            super::fqdn::may_follow(conf).map_err(StateError::Fqdn)?;
            super::fqdn::usable(&name).map_err(StateError::Fqdn)?;
            t.events.push(Event::Fqdn(name));
        }
        Change::RampStep => t.ramp_step(),
        Change::Tracked(view) => t.tracked(view),
    }
    // One rule for `downtime`: DOWN since when it went DOWN, nothing while UP.
    if t.st.up {
        t.st.down_since = None;
    } else if t.st.down_since.is_none() {
        t.st.down_since = Some(now);
    }
    Ok(())
}

/// A kind of maintenance: an operator's (or the configuration's `disabled`), DNS's (with its
/// cause), or inherited from the tracked server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Inherit {
    Forced,
    Resolution(&'static str),
    Via,
}

/// One application of a change.
struct Step<'a> {
    conf: &'a Server,
    be: &'a Backend,
    st: &'a mut ServerState,
    by: &'a By,
    now: Instant,
    events: &'a mut Vec<Event>,
}

impl Step<'_> {
    fn rise_fall(&self) -> (u32, u32) {
        (self.conf.health.rise.max(1), self.conf.health.fall.max(1))
    }

    /// The regular check lets the server be UP: not checked, or its counter at `rise` or more.
    fn check_ok(&self) -> bool {
        !self.st.check_enabled || self.st.check_h >= self.rise_fall().0
    }

    /// The agent lets the server be UP.
    fn agent_ok(&self) -> bool {
        !self.st.agent_enabled || self.st.agent_up
    }

    /// Its own check, its agent and the server it tracks let it be UP.
    fn may_be_up(&self) -> bool {
        self.check_ok() && self.agent_ok() && self.st.track_up
    }

    fn go_down(&mut self, cause: OpCause) {
        if !self.st.up || self.st.in_maint() {
            return;
        }
        self.st.up = false;
        self.st.stopping = false;
        self.st.ramp_start = None;
        self.st.ramp_pct = 100;
        self.st.weight = self.st.user_weight;
        self.events.push(Event::Down(cause));
    }

    fn go_up(&mut self, cause: OpCause) {
        if self.st.up || self.st.in_maint() {
            return;
        }
        self.st.up = true;
        self.st.stopping = false;
        self.start_ramp();
        self.events.push(Event::Up(cause));
    }

    /// Slow start after coming UP, as HAProxy's STARTING state: the server's limit (its
    /// `maxconn`, dynamic or not) ramps from 1 % in every balance algorithm, its weight only
    /// with a dynamic one (not `static-rr` nor map-based hashing) and not from weight 0.
    fn start_ramp(&mut self) {
        let Some(ss) = self.conf.health.slowstart else {
            return;
        };
        self.st.ramp_start = Some(self.now);
        self.st.ramp_pct = ramp_pct(Duration::ZERO, ss);
        self.st.weight = self.ramped_weight(self.st.user_weight);
        self.events.push(Event::StartRamp);
    }

    fn ramp_step(&mut self) {
        let (Some(start), Some(ss)) = (self.st.ramp_start, self.conf.health.slowstart) else {
            return;
        };
        let elapsed = self.now.saturating_duration_since(start);
        self.st.ramp_pct = ramp_pct(elapsed, ss);
        self.st.weight = self.ramped_weight(self.st.user_weight);
        if elapsed >= ss {
            self.st.ramp_start = None;
        }
    }

    /// Weight `w` as the ramp in progress lets it be now (all of it outside a ramp, with a
    /// static algorithm, or for weight 0).
    fn ramped_weight(&self, w: u32) -> u32 {
        if self.st.ramp_start.is_none()
            || crate::balance::static_weights(self.be)
            || w == 0
            || self.st.ramp_pct >= 100
        {
            return w;
        }
        (w * self.st.ramp_pct / 100).max(1)
    }

    fn admin(&mut self, to: AdminState) {
        if !matches!(self.by, By::Config) {
            self.st.admin_origin = Origin::Runtime;
        }
        let from = self.st.admin;
        if from == to {
            return;
        }
        self.st.admin = to;
        match (from, to) {
            (_, AdminState::Maint) => self.enter_maint(Inherit::Forced),
            (AdminState::Maint, _) => self.leave_maint(Inherit::Forced),
            // An inherited drain goes on: nothing changes for new connections.
            (AdminState::Ready, AdminState::Drain) if !self.st.via_drain => {
                self.events.push(Event::EnterDrain { via: false });
            }
            (AdminState::Drain, AdminState::Ready) if !self.st.via_drain => {
                self.events.push(Event::LeaveDrain { via: false });
            }
            _ => {}
        }
    }

    /// One kind of maintenance (`kind`) was just set: the server enters maintenance unless it
    /// was in another kind already.
    fn enter_maint(&mut self, kind: Inherit) {
        let already = (kind != Inherit::Forced && self.st.admin == AdminState::Maint)
            || (!matches!(kind, Inherit::Resolution(_)) && self.st.resolution_maint)
            || (kind != Inherit::Via && self.st.via_maint);
        if already {
            return;
        }
        let was_down = !self.st.up;
        self.st.check_h = 0;
        if self.st.up {
            self.st.up = false;
            self.st.stopping = false;
            self.st.ramp_start = None;
            self.st.ramp_pct = 100;
            self.st.weight = self.st.user_weight;
        }
        self.events.push(Event::EnterMaint {
            was_down,
            resolution: match kind {
                Inherit::Resolution(c) => Some(c),
                _ => None,
            },
            via: kind == Inherit::Via,
        });
    }

    /// One kind of maintenance (`kind`) was just cleared: HAProxy starts the check counter at
    /// `rise` (UP, checked at once) and the server is UP unless the agent or the tracked
    /// server holds it (NOLB when the tracked server is).
    fn leave_maint(&mut self, kind: Inherit) {
        let still = self.st.in_maint();
        self.events.push(Event::LeaveMaint {
            resolution: matches!(kind, Inherit::Resolution(_)),
            still,
            via: kind == Inherit::Via,
        });
        if still {
            return;
        }
        self.st.check_h = self.rise_fall().0;
        self.events.push(Event::CheckNow);
        if self.agent_ok() && self.st.track_up {
            self.st.up = true;
            self.st.stopping = self.st.tracked_stopping;
            self.start_ramp();
        }
    }

    fn resolution(&mut self, cause: Option<&'static str>) {
        match cause {
            Some(c) if !self.st.resolution_maint => {
                self.st.resolution_maint = true;
                self.enter_maint(Inherit::Resolution(c));
            }
            None if self.st.resolution_maint => {
                self.st.resolution_maint = false;
                self.leave_maint(Inherit::Resolution(""));
            }
            _ => {}
        }
    }

    /// The tracked server is now as `view` says: its maintenance and drain are inherited,
    /// its DOWN takes this one DOWN, its UP lets it come UP (when its own check and agent
    /// do), its NOLB makes it NOLB (HAProxy's `srv_set_stopped`/`running`/`stopping` and
    /// `srv_set_admin_flag` on the trackers).
    fn tracked(&mut self, view: TrackView) {
        self.st.track_up = view.up;
        self.st.tracked_stopping = view.stopping;
        if view.maint != self.st.via_maint {
            self.st.via_maint = view.maint;
            if view.maint {
                self.enter_maint(Inherit::Via);
            } else {
                self.leave_maint(Inherit::Via);
            }
        }
        if view.drain != self.st.via_drain {
            self.st.via_drain = view.drain;
            // A forced drain goes on either way: nothing changes for new connections.
            if self.st.admin != AdminState::Drain && !self.st.in_maint() {
                self.events.push(if view.drain {
                    Event::EnterDrain { via: true }
                } else {
                    Event::LeaveDrain { via: true }
                });
            }
        }
        if self.st.in_maint() {
            return;
        }
        if !view.up {
            self.go_down(OpCause::Quiet);
        } else if !self.st.up {
            if self.may_be_up() {
                self.go_up(OpCause::Quiet);
                if view.stopping {
                    self.st.stopping = true;
                }
            }
        } else if view.stopping != self.st.stopping {
            self.st.stopping = view.stopping;
            self.events.push(if view.stopping {
                Event::Stopping(OpCause::Quiet)
            } else {
                Event::Up(OpCause::Quiet)
            });
        }
    }

    fn force(&mut self, h: ForcedHealth) {
        // HAProxy ignores forced health on a server in maintenance (srv_set_running/stopped).
        if self.st.in_maint() {
            return;
        }
        let (rise, fall) = self.rise_fall();
        let cause = OpCause::of(self.by);
        match h {
            ForcedHealth::Up => {
                self.st.check_h = rise + fall - 1;
                if self.st.up && self.st.stopping {
                    self.st.stopping = false;
                    self.events.push(Event::Up(cause));
                } else {
                    self.go_up(cause);
                }
            }
            ForcedHealth::Stopping => {
                self.st.up = true;
                if !self.st.stopping {
                    self.st.stopping = true;
                    self.events.push(Event::Stopping(cause));
                }
            }
            ForcedHealth::Down => {
                self.st.check_h = 0;
                self.go_down(cause);
            }
        }
    }

    fn check(&mut self, r: &CheckReport) {
        if !self.st.check_enabled || self.st.in_maint() {
            // A result that raced with maintenance or `disable health`: HAProxy pauses checks.
            return;
        }
        let (rise, fall) = self.rise_fall();
        let mut h = Health::at(rise, fall, self.st.check_h);
        let (t, moved) = h.record(r.passed);
        self.apply_counter(h, t, moved, r);
        if r.passed {
            self.nolb_from_check(r);
        }
    }

    /// `http-check disable-on-404`: a conditional pass (L7OKC) sets a server that the checks
    /// let be UP into NOLB; a full pass takes it out (HAProxy's `check_notify_stopping` and
    /// `check_notify_success`).
    fn nolb_from_check(&mut self, r: &CheckReport) {
        if !self.st.up || !self.check_ok() || !self.agent_ok() {
            return;
        }
        let conditional = r.result == crate::table::CheckResult::L7OkC;
        if conditional && !self.st.stopping {
            self.st.stopping = true;
            self.events.push(Event::Stopping(OpCause::Check(r.clone())));
        } else if !conditional && self.st.stopping {
            self.st.stopping = false;
            self.events.push(Event::Up(OpCause::Check(r.clone())));
        }
    }

    fn check_error(&mut self, action: crate::config::OnError, r: &CheckReport) {
        if !self.st.check_enabled || self.st.in_maint() {
            return;
        }
        let (rise, fall) = self.rise_fall();
        let mut h = Health::at(rise, fall, self.st.check_h);
        let (t, moved) = h.on_error(action);
        self.apply_counter(h, t, moved, r);
    }

    fn apply_counter(&mut self, h: Health, t: Transition, moved: bool, r: &CheckReport) {
        self.st.check_h = h.counter();
        self.events.push(Event::CheckResult {
            report: r.clone(),
            moved,
        });
        match t {
            Transition::WentDown => self.go_down(OpCause::Check(r.clone())),
            Transition::WentUp if self.agent_ok() && self.st.track_up => {
                self.go_up(OpCause::Check(r.clone()));
            }
            _ => {}
        }
    }

    fn agent_health(&mut self, up: bool, cause: OpCause) {
        self.st.agent_up = up;
        if !up {
            self.go_down(cause);
        } else if self.check_ok() && self.st.track_up {
            self.go_up(cause);
        }
    }

    fn agent_enabled(&mut self, on: bool) -> Result<(), StateError> {
        if !self.conf.health.agent.enabled {
            // HAProxy refuses to enable an agent it has no configuration for; disabling is a
            // no-op.
            return if on {
                Err(StateError::AgentNotConfigured)
            } else {
                Ok(())
            };
        }
        self.st.agent_enabled = on;
        if !on {
            // From now on only the regular check decides: lift a DOWN the agent held.
            self.st.agent_up = true;
            if self.may_be_up() {
                self.go_up(OpCause::Quiet);
            }
        }
        Ok(())
    }

    fn weight(&mut self, w: u32) -> Result<(), StateError> {
        check_weight(self.conf, self.be, w)?;
        self.st.user_weight = w;
        self.st.weight_origin = Origin::Runtime;
        self.st.weight = self.ramped_weight(w);
        Ok(())
    }

    fn addr(&mut self, ip: Option<std::net::IpAddr>, port: Option<u16>) {
        let old = self.st.addr;
        let new = SocketAddr::new(ip.unwrap_or(old.ip()), port.unwrap_or(old.port()));
        if new == old {
            return;
        }
        self.st.addr = new;
        self.st.addr_origin = match self.by {
            By::Dns { .. } | By::DnsCache => AddrOrigin::Dns,
            By::StateFile => AddrOrigin::StateFile,
            _ => AddrOrigin::Cli,
        };
        self.events.push(Event::AddrChanged { old, new });
        self.events.push(Event::CheckNow);
    }
}

/// Whether `conf` may take weight `w` at run time: 0..=256, and with a static algorithm
/// (`static-rr`, map-based hashing) only 0 or the configured weight (HAProxy's rule).
pub fn check_weight(conf: &Server, be: &Backend, w: u32) -> Result<(), StateError> {
    if w > MAX_WEIGHT {
        return Err(StateError::WeightOutOfRange {
            server: conf.name.clone(),
            weight: w,
        });
    }
    if crate::balance::static_weights(be) && w != 0 && w != conf.weight {
        return Err(StateError::StaticWeight {
            backend: be.name.clone(),
            server: conf.name.clone(),
            weight: w,
            configured: conf.weight,
        });
    }
    Ok(())
}

/// Effective weight `elapsed` into a slow start of `total`: linear from 1 % to 100 % of
/// `weight`, never 0 for a non-zero weight.
pub fn ramp_weight(weight: u32, elapsed: Duration, total: Duration) -> u32 {
    (weight * ramp_pct(elapsed, total) / 100).max(1).min(weight)
}

/// How far a slow start of `total` is after `elapsed`, in percent: 1 at first, 100 at the end.
pub fn ramp_pct(elapsed: Duration, total: Duration) -> u32 {
    if elapsed >= total || total.is_zero() {
        return 100;
    }
    u32::try_from(elapsed.as_millis() * 100 / total.as_millis())
        .unwrap_or(100)
        .max(1)
}

/// How often a slow start's weight is recomputed: 20 steps over the ramp, at least every
/// 100 ms apart and at most 1 s apart.
pub fn ramp_interval(total: Duration) -> Duration {
    (total / 20).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// The interval the server's regular check should wait next: HAProxy's `inter`/`fastinter`/
/// `downinter` from the published counter.
pub fn check_interval(conf: &Server, st: &ServerState) -> Duration {
    let (rise, fall) = (conf.health.rise.max(1), conf.health.fall.max(1));
    Health::at(rise, fall, st.check_h).interval(&conf.health)
}

/// `fastinter` (or `inter`): the next check after a passive-check error.
pub fn fast_interval(conf: &Server) -> Duration {
    fastinter(&conf.health)
}
