//! The real-client results: per variant, workload and target, one value per round; medians,
//! ratios to HAProxy per round (their median and their worst: a collapse shows as a low
//! worst), the goal "lb auto ≥ 1.0 × HAProxy in every round", and beside it the control
//! `haproxy-again` (a second, identical HAProxy: HAProxy against itself, how far a per-round
//! ratio moves with nothing changed), as markdown and JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{all_labels, Figure, Unit, Variant};
use crate::report::fmt_num;
use crate::stats;
use crate::targets::Kind;

/// A failed client run: (variant, workload, target, round from 0, message).
pub type Failure = (Variant, &'static str, &'static str, usize, String);

/// Each target's values of one (variant, workload): (round, value).
pub type ByTarget = BTreeMap<&'static str, Vec<(usize, f64)>>;

/// Everything the real-client part measured.
#[derive(Debug, Default)]
pub struct Results {
    pub rounds: usize,
    pub secs: u64,
    /// The targets that ran, in the plan's order.
    pub targets: Vec<Kind>,
    /// (variant, workload) → target → (round, value).
    pub values: BTreeMap<(Variant, &'static str), ByTarget>,
    pub units: BTreeMap<&'static str, Unit>,
    /// Tools, servers or targets that could not be used, and why.
    pub missing: BTreeMap<String, String>,
    pub errors: Vec<Failure>,
}

/// Per-round ratios `lb / reference` over the rounds both have.
pub fn round_ratios(lb: &[(usize, f64)], reference: &[(usize, f64)]) -> Vec<f64> {
    lb.iter()
        .filter_map(|&(r, v)| {
            let (_, h) = reference.iter().find(|(rr, _)| *rr == r)?;
            stats::ratio(Some(v), Some(*h))
        })
        .collect()
}

/// (median, worst) of per-round ratios: the worst is the lowest when higher is better.
pub fn median_and_worst(ratios: &[f64], higher_is_better: bool) -> Option<(f64, f64)> {
    let med = stats::median(ratios)?;
    let (lo, hi) = stats::range(ratios)?;
    Some((med, if higher_is_better { lo } else { hi }))
}

/// A target's per-round ratios to HAProxy over every rate workload of every variant, pooled:
/// how many are below 1.0, of how many, their median and their lowest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tally {
    pub below: usize,
    pub of: usize,
    pub median: f64,
    pub worst: f64,
}

impl Tally {
    pub fn of_ratios(ratios: &[f64]) -> Option<Tally> {
        let (median, worst) = median_and_worst(ratios, true)?;
        Some(Tally {
            below: ratios.iter().filter(|r| **r < 1.0).count(),
            of: ratios.len(),
            median,
            worst,
        })
    }

    fn json(self) -> serde_json::Value {
        serde_json::json!({
            "below_1": self.below,
            "ratios": self.of,
            "median": self.median,
            "worst": self.worst,
        })
    }
}

/// The A/A control: a second HAProxy, whose ratio to HAProxy is the noise floor.
const CONTROL: Kind = Kind::HaproxyAgain;

impl Results {
    pub fn push(
        &mut self,
        variant: Variant,
        label: &'static str,
        k: Kind,
        round: usize,
        f: Figure,
    ) {
        self.units.insert(label, f.unit);
        self.values
            .entry((variant, label))
            .or_default()
            .entry(k.name())
            .or_default()
            .push((round, f.value));
    }

    fn series(&self, v: Variant, label: &str, k: Kind) -> &[(usize, f64)] {
        self.values
            .iter()
            .find(|((vv, l), _)| *vv == v && *l == label)
            .and_then(|(_, m)| m.get(k.name()))
            .map_or(&[], Vec::as_slice)
    }

    fn median(&self, v: Variant, label: &str, k: Kind) -> Option<f64> {
        let xs: Vec<f64> = self.series(v, label, k).iter().map(|&(_, x)| x).collect();
        stats::median(&xs)
    }

    /// (median, worst) of `k`'s per-round ratio to HAProxy.
    pub fn ratio_to_haproxy(&self, v: Variant, label: &str, k: Kind) -> Option<(f64, f64)> {
        let r = round_ratios(
            self.series(v, label, k),
            self.series(v, label, Kind::Haproxy),
        );
        median_and_worst(
            &r,
            self.units.get(label).is_none_or(|u| u.higher_is_better()),
        )
    }

    fn variants(&self) -> Vec<Variant> {
        let mut v: Vec<Variant> = self.values.keys().map(|(v, _)| *v).collect();
        v.dedup();
        v
    }

    fn labels(&self, v: Variant) -> Vec<&'static str> {
        all_labels()
            .into_iter()
            .filter(|l| self.values.contains_key(&(v, *l)))
            .collect()
    }

    fn is_rate(&self, label: &str) -> bool {
        self.units.get(label).is_some_and(|u| u.higher_is_better())
    }

    /// `k`'s per-round ratios to HAProxy over every rate workload of every variant, pooled (what
    /// the goal checks, one ratio per round and workload).
    pub fn rounds_below(&self, k: Kind) -> Option<Tally> {
        let mut all = Vec::new();
        for v in self.variants() {
            for l in self.labels(v) {
                if self.is_rate(l) {
                    all.extend(round_ratios(
                        self.series(v, l, k),
                        self.series(v, l, Kind::Haproxy),
                    ));
                }
            }
        }
        Tally::of_ratios(&all)
    }

    /// Whether the control ran (with HAProxy, which it is compared to).
    fn has_control(&self) -> bool {
        self.targets.contains(&CONTROL) && self.targets.contains(&Kind::Haproxy)
    }

    /// The goal per workload: lb auto ≥ 1.0 × HAProxy in every round (rates only).
    /// (variant, workload, worst ratio) of each miss, and how many were checked.
    pub fn auto_misses(&self) -> (Vec<(Variant, &'static str, f64)>, usize) {
        let mut misses = Vec::new();
        let mut checked = 0;
        for v in self.variants() {
            for l in self.labels(v) {
                if !self.is_rate(l) {
                    continue;
                }
                if let Some((_, worst)) = self.ratio_to_haproxy(v, l, Kind::LbAuto) {
                    checked += 1;
                    if worst < 1.0 {
                        misses.push((v, l, worst));
                    }
                }
            }
        }
        (misses, checked)
    }

    fn lbs(&self) -> Vec<Kind> {
        self.targets
            .iter()
            .copied()
            .filter(|k| !matches!(*k, Kind::Haproxy | Kind::Direct | CONTROL))
            .collect()
    }

    /// The markdown section: one table per variant, then the goal, then what failed.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### Real clients ({} round(s) of {} s runs per variant, target order rotated each round)\n",
            self.rounds, self.secs
        );
        let has_haproxy = self.targets.contains(&Kind::Haproxy);
        let control = self.has_control();
        for v in self.variants() {
            let _ = writeln!(
                s,
                "**{}** (medians; ratio to HAProxy: median (worst round){})\n",
                v.name(),
                if control {
                    "; haproxy-again is a second, identical HAProxy: its ratio is HAProxy \
                     against itself, the noise floor of a per-round ratio"
                } else {
                    ""
                }
            );
            let mut head = String::from("| workload |");
            let mut rule = String::from("|---|");
            for k in &self.targets {
                let _ = write!(head, " {} |", k.name());
                rule.push_str("---:|");
            }
            if has_haproxy {
                for k in self.lbs() {
                    let _ = write!(head, " {} ÷ HAProxy |", k.name());
                    rule.push_str("---:|");
                }
            }
            if control {
                let _ = write!(head, " {} ÷ HAProxy (noise floor) |", CONTROL.name());
                rule.push_str("---:|");
            }
            let _ = writeln!(s, "{head}\n{rule}");
            for l in self.labels(v) {
                let _ = write!(s, "| {l} |");
                for &k in &self.targets {
                    let _ = write!(s, " {} |", fmt_num(self.median(v, l, k)));
                }
                let ratio_cell = |k| {
                    self.ratio_to_haproxy(v, l, k)
                        .map_or("–".into(), |(m, w)| format!("{m:.2} ({w:.2})"))
                };
                if has_haproxy {
                    for k in self.lbs() {
                        let _ = write!(s, " {} |", ratio_cell(k));
                    }
                }
                if control {
                    let _ = write!(s, " {} |", ratio_cell(CONTROL));
                }
                s.push('\n');
            }
            s.push('\n');
        }
        self.goal_and_failures(&mut s);
        s
    }

    fn goal_and_failures(&self, s: &mut String) {
        let (misses, checked) = self.auto_misses();
        let control = self.has_control();
        if checked > 0 {
            let tally = |t: Option<Tally>| {
                t.map_or("–".into(), |t| {
                    format!(
                        "{} of {} rounds below 1.0, worst {:.2}, median {:.2}",
                        t.below, t.of, t.worst, t.median
                    )
                })
            };
            let _ = write!(
                s,
                "Goal, lb-auto ≥ 1.0 × HAProxy in every round of every workload: {} ({} of {} \
                 workload/variant pairs below in some round; {})",
                if misses.is_empty() {
                    "met"
                } else {
                    "**not met**"
                },
                misses.len(),
                checked,
                tally(self.rounds_below(Kind::LbAuto)),
            );
            if control {
                let _ = write!(
                    s,
                    "; control {}, HAProxy against itself (the noise floor): {}",
                    CONTROL.name(),
                    tally(self.rounds_below(CONTROL)),
                );
            }
            s.push('\n');
            for (v, l, w) in &misses {
                let _ = write!(s, "- {}, {l}: worst round {w:.2} ×", v.name());
                if let Some((_, cw)) = self.ratio_to_haproxy(*v, l, CONTROL).filter(|_| control) {
                    let _ = write!(s, " (control {cw:.2} ×)");
                }
                s.push('\n');
            }
            s.push('\n');
        }
        for (what, why) in &self.missing {
            let _ = writeln!(s, "- MISSING {what}: {}", why.lines().next().unwrap_or(""));
        }
        for (v, l, k, r, e) in &self.errors {
            let _ = writeln!(
                s,
                "- FAILED {k}, {}, round {}, {l}: {}",
                v.name(),
                r + 1,
                e.lines().next().unwrap_or("")
            );
        }
    }

    /// Every value by round, the ratios, the misses and the failures.
    pub fn json(&self) -> serde_json::Value {
        let mut rows = Vec::new();
        for ((v, l), m) in &self.values {
            for (k, xs) in m {
                let ratio = Kind::from_name(k).and_then(|kk| self.ratio_to_haproxy(*v, l, kk));
                rows.push(serde_json::json!({
                    "variant": v.name(),
                    "workload": l,
                    "target": k,
                    "by_round": xs.iter().map(|(r, x)| serde_json::json!([r + 1, x])).collect::<Vec<_>>(),
                    "ratio_to_haproxy_median": ratio.map(|r| r.0),
                    "ratio_to_haproxy_worst": ratio.map(|r| r.1),
                }));
            }
        }
        let (misses, _) = self.auto_misses();
        // Per target but HAProxy: its rate ratios to HAProxy per round, pooled.
        let pooled: serde_json::Map<String, serde_json::Value> = self
            .targets
            .iter()
            .filter(|k| **k != Kind::Haproxy)
            .filter_map(|k| Some((k.name().to_string(), self.rounds_below(*k)?.json())))
            .collect();
        serde_json::json!({
            "rounds": self.rounds,
            "seconds_per_run": self.secs,
            "values": rows,
            "auto_below_haproxy": misses.iter().map(|(v, l, w)| serde_json::json!({"variant": v.name(), "workload": l, "worst_ratio": w})).collect::<Vec<_>>(),
            "rate_ratios_to_haproxy_by_round": pooled,
            "control": self.has_control().then_some(CONTROL.name()),
            "missing": self.missing,
            "errors": self.errors.iter().map(|(v, l, k, r, e)| serde_json::json!({"variant": v.name(), "workload": l, "target": k, "round": r + 1, "message": e})).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = "redis PING -k 0: req/s";
    const CPU: &str = "iperf3, 1 stream: CPU s/GiB";

    fn sample() -> Results {
        let mut r = Results {
            rounds: 3,
            secs: 2,
            targets: vec![Kind::LbAuto, Kind::Haproxy, Kind::Direct],
            ..Results::default()
        };
        let rate = |x| Figure::new(x, Unit::PerSecond);
        for (round, (lb, h)) in [(110.0, 100.0), (40.0, 100.0), (120.0, 100.0)]
            .into_iter()
            .enumerate()
        {
            r.push(Variant::BusyCore, PING, Kind::LbAuto, round, rate(lb));
            r.push(Variant::BusyCore, PING, Kind::Haproxy, round, rate(h));
            r.push(Variant::BusyCore, PING, Kind::Direct, round, rate(300.0));
        }
        for (round, (lb, h)) in [(0.5, 1.0), (0.7, 1.0)].into_iter().enumerate() {
            r.push(
                Variant::Quiet,
                CPU,
                Kind::LbAuto,
                round,
                Figure::new(lb, Unit::CpuPerGib),
            );
            r.push(
                Variant::Quiet,
                CPU,
                Kind::Haproxy,
                round,
                Figure::new(h, Unit::CpuPerGib),
            );
        }
        r
    }

    const SET: &str = "redis SET -k 0: req/s";

    /// [`sample`] with a second rate workload and the control, whose per-round ratios to
    /// HAProxy are 0.875, 1.125, 0.75 (PING) and 1.25, 0.75, 1.0 (SET).
    fn with_control() -> Results {
        let mut r = sample();
        r.targets = vec![
            Kind::LbAuto,
            Kind::Haproxy,
            Kind::HaproxyAgain,
            Kind::Direct,
        ];
        let rate = |x| Figure::new(x, Unit::PerSecond);
        for (round, again) in [87.5, 112.5, 75.0].into_iter().enumerate() {
            r.push(
                Variant::BusyCore,
                PING,
                Kind::HaproxyAgain,
                round,
                rate(again),
            );
        }
        for (round, (lb, h, again)) in [
            (250.0, 200.0, 250.0),
            (150.0, 200.0, 150.0),
            (225.0, 200.0, 200.0),
        ]
        .into_iter()
        .enumerate()
        {
            r.push(Variant::BusyCore, SET, Kind::LbAuto, round, rate(lb));
            r.push(Variant::BusyCore, SET, Kind::Haproxy, round, rate(h));
            r.push(
                Variant::BusyCore,
                SET,
                Kind::HaproxyAgain,
                round,
                rate(again),
            );
        }
        // A CPU figure: shown, but not in the rounds the goal counts.
        for (round, again) in [1.5, 0.5].into_iter().enumerate() {
            let f = Figure::new(again, Unit::CpuPerGib);
            r.push(Variant::Quiet, CPU, Kind::HaproxyAgain, round, f);
        }
        r
    }

    #[test]
    fn the_control_is_haproxy_against_itself() {
        let r = with_control();
        assert_eq!(
            r.ratio_to_haproxy(Variant::BusyCore, PING, Kind::HaproxyAgain),
            Some((0.875, 0.75))
        );
        assert_eq!(
            r.ratio_to_haproxy(Variant::BusyCore, SET, Kind::HaproxyAgain),
            Some((1.0, 0.75))
        );
        // Pooled over the rate workloads only: six ratios, three below 1.0.
        assert_eq!(
            r.rounds_below(Kind::HaproxyAgain),
            Some(Tally {
                below: 3,
                of: 6,
                median: 0.9375,
                worst: 0.75
            })
        );
        // lb-auto: 1.1, 0.4, 1.2 (PING) and 1.25, 0.75, 1.125 (SET).
        let auto = r.rounds_below(Kind::LbAuto).unwrap();
        assert_eq!((auto.below, auto.of, auto.worst), (2, 6, 0.4));
        assert!((auto.median - 1.1125).abs() < 1e-12, "{auto:?}");
        assert_eq!(r.rounds_below(Kind::Nginx), None);
        // The control is not counted as an lb target, nor in the goal.
        assert_eq!(r.lbs(), [Kind::LbAuto]);
        let (misses, checked) = r.auto_misses();
        assert_eq!(checked, 2);
        assert_eq!(
            misses,
            [
                (Variant::BusyCore, PING, 0.4),
                (Variant::BusyCore, SET, 0.75)
            ]
        );
    }

    #[test]
    fn markdown_and_json_show_the_control_as_the_noise_floor() {
        let r = with_control();
        let md = r.markdown();
        assert!(
            md.contains(
                "| workload | lb-auto | haproxy | haproxy-again | direct | lb-auto ÷ HAProxy \
                 | haproxy-again ÷ HAProxy (noise floor) |\n|---|---:|---:|---:|---:|---:|---:|\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("| redis PING -k 0: req/s | 110.0 | 100.0 | 87.50 | 300.0 | 1.10 (0.40) | 0.88 (0.75) |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| iperf3, 1 stream: CPU s/GiB | 0.60 | 1 | 1 | – | 0.60 (0.70) | 1.00 (1.50) |"
            ),
            "{md}"
        );
        assert!(md.contains("HAProxy against itself, the noise floor of a per-round ratio"));
        assert!(
            md.contains(
                "Goal, lb-auto ≥ 1.0 × HAProxy in every round of every workload: **not met** \
                 (2 of 2 workload/variant pairs below in some round; 2 of 6 rounds below 1.0, \
                 worst 0.40, median 1.11); control haproxy-again, HAProxy against itself (the \
                 noise floor): 3 of 6 rounds below 1.0, worst 0.75, median 0.94\n"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "- one busy core, redis SET -k 0: req/s: worst round 0.75 × (control 0.75 ×)\n"
            ),
            "{md}"
        );
        let j = r.json();
        let pooled = &j["rate_ratios_to_haproxy_by_round"];
        assert_eq!(pooled["haproxy-again"]["below_1"], 3);
        assert_eq!(pooled["haproxy-again"]["ratios"], 6);
        assert_eq!(pooled["haproxy-again"]["worst"], 0.75);
        assert_eq!(pooled["haproxy-again"]["median"], 0.9375);
        assert_eq!(pooled["lb-auto"]["below_1"], 2);
        assert_eq!(j["control"], "haproxy-again");
        let row = j["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["target"] == "haproxy-again" && x["workload"] == PING)
            .unwrap();
        assert_eq!(row["by_round"][2], serde_json::json!([3, 75.0]));
        assert_eq!(row["ratio_to_haproxy_median"], 0.875);
        assert_eq!(row["ratio_to_haproxy_worst"], 0.75);
    }

    #[test]
    fn without_the_control_nothing_is_said_of_it() {
        let md = sample().markdown();
        assert!(!md.contains("noise floor"), "{md}");
        assert!(
            md.contains("1 of 3 rounds below 1.0, worst 0.40, median 1.10)\n"),
            "{md}"
        );
        assert_eq!(sample().json()["control"], serde_json::Value::Null);
    }

    #[test]
    fn ratios_pair_rounds_and_the_worst_shows_a_collapse() {
        assert_eq!(
            round_ratios(&[(0, 2.0), (1, 3.0), (2, 5.0)], &[(0, 1.0), (2, 10.0)]),
            [2.0, 0.5]
        );
        let r = sample();
        assert_eq!(
            r.ratio_to_haproxy(Variant::BusyCore, PING, Kind::LbAuto),
            Some((1.1, 0.4))
        );
        // Lower is better for CPU: the worst round is the highest ratio.
        assert_eq!(
            r.ratio_to_haproxy(Variant::Quiet, CPU, Kind::LbAuto),
            Some((0.6, 0.7))
        );
        assert_eq!(r.ratio_to_haproxy(Variant::Quiet, PING, Kind::LbAuto), None);
    }

    #[test]
    fn the_goal_counts_rates_only() {
        let (misses, checked) = sample().auto_misses();
        assert_eq!(checked, 1);
        assert_eq!(misses, [(Variant::BusyCore, PING, 0.4)]);
    }

    #[test]
    fn markdown_shows_medians_ratios_misses_and_failures() {
        let mut r = sample();
        r.missing.insert(
            "sysbench".into(),
            "sysbench is not installed (looked for x)".into(),
        );
        r.errors.push((
            Variant::Quiet,
            PING,
            "lb-auto",
            1,
            "redis-benchmark: still running after 40 s\nmore".into(),
        ));
        let md = r.markdown();
        assert!(
            md.contains("| workload | lb-auto | haproxy | direct | lb-auto ÷ HAProxy |"),
            "{md}"
        );
        assert!(
            md.contains("| redis PING -k 0: req/s | 110.0 | 100.0 | 300.0 | 1.10 (0.40) |"),
            "{md}"
        );
        assert!(
            md.contains("| iperf3, 1 stream: CPU s/GiB | 0.60 | 1 | – | 0.60 (0.70) |"),
            "{md}"
        );
        assert!(md.contains("**not met** (1 of 1"), "{md}");
        assert!(
            md.contains("- one busy core, redis PING -k 0: req/s: worst round 0.40 ×"),
            "{md}"
        );
        assert!(
            md.contains("- MISSING sysbench: sysbench is not installed (looked for x)"),
            "{md}"
        );
        assert!(md.contains("- FAILED lb-auto, quiet, round 2, redis PING -k 0: req/s: redis-benchmark: still running after 40 s\n"), "{md}");
        let j = r.json();
        assert_eq!(j["errors"][0]["round"], 2);
        assert_eq!(j["auto_below_haproxy"][0]["worst_ratio"], 0.4);
    }
}
