//! The results of a run and the three ways they are shown: a markdown table (stdout), JSON and an
//! SVG chart (in `target/bench/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats;
use crate::targets::Kind;

/// What is measured, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Bulk1Gbit,
    Bulk1Cpu,
    Bulk8Gbit,
    Bulk8Cpu,
    ConnRate,
    ConnProxyUser,
    ConnProxySys,
    ConnMachineCpu,
    ConnFailures,
    LatP50,
    LatP99,
    LatP999,
    RssPerConn,
    ConcExchangeMs,
    ConcFailures,
    SyscallsPerConn,
    InstrPerConn,
}

/// How repetitions of a metric are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    Median,
    /// Failure counts: every failure in any repetition shows.
    Sum,
}

impl Metric {
    /// Every metric, in report order.
    pub const ALL: [Metric; 17] = [
        Metric::Bulk1Gbit,
        Metric::Bulk1Cpu,
        Metric::Bulk8Gbit,
        Metric::Bulk8Cpu,
        Metric::ConnRate,
        Metric::ConnProxyUser,
        Metric::ConnProxySys,
        Metric::ConnMachineCpu,
        Metric::ConnFailures,
        Metric::LatP50,
        Metric::LatP99,
        Metric::LatP999,
        Metric::RssPerConn,
        Metric::ConcExchangeMs,
        Metric::ConcFailures,
        Metric::SyscallsPerConn,
        Metric::InstrPerConn,
    ];

    /// (JSON key, table label, whether higher is better, how repetitions combine).
    pub fn info(self) -> (&'static str, &'static str, bool, Combine) {
        use Combine::{Median, Sum};
        match self {
            Metric::Bulk1Gbit => (
                "bulk_1_stream_gbit_s",
                "bulk, 1 stream: Gbit/s",
                true,
                Median,
            ),
            Metric::Bulk1Cpu => (
                "bulk_1_stream_cpu_s_per_gib",
                "bulk, 1 stream: machine CPU s/GiB",
                false,
                Median,
            ),
            Metric::Bulk8Gbit => (
                "bulk_8_streams_gbit_s",
                "bulk, 8 streams: Gbit/s",
                true,
                Median,
            ),
            Metric::Bulk8Cpu => (
                "bulk_8_streams_cpu_s_per_gib",
                "bulk, 8 streams: machine CPU s/GiB",
                false,
                Median,
            ),
            Metric::ConnRate => ("conn_per_s", "connections/s", true, Median),
            Metric::ConnProxyUser => (
                "conn_proxy_user_cpu_us",
                "short connections: proxy user CPU µs each",
                false,
                Median,
            ),
            Metric::ConnProxySys => (
                "conn_proxy_system_cpu_us",
                "short connections: proxy system CPU µs each",
                false,
                Median,
            ),
            Metric::ConnMachineCpu => (
                "conn_machine_cpu_us",
                "short connections: machine CPU µs each",
                false,
                Median,
            ),
            Metric::ConnFailures => ("conn_failures", "connection failures (sum)", false, Sum),
            Metric::LatP50 => ("latency_p50_us", "round trip p50 µs", false, Median),
            Metric::LatP99 => ("latency_p99_us", "round trip p99 µs", false, Median),
            Metric::LatP999 => ("latency_p999_us", "round trip p99.9 µs", false, Median),
            Metric::RssPerConn => (
                "rss_per_idle_conn_bytes",
                "RSS per idle connection, bytes",
                false,
                Median,
            ),
            Metric::ConcExchangeMs => (
                "concurrency_exchange_ms",
                "idle conns: all exchange once, ms",
                false,
                Median,
            ),
            Metric::ConcFailures => (
                "concurrency_failures",
                "idle conns: failures (sum)",
                false,
                Sum,
            ),
            Metric::SyscallsPerConn => (
                "syscalls_per_short_conn",
                "syscalls per short connection",
                false,
                Median,
            ),
            Metric::InstrPerConn => (
                "instructions_per_short_conn",
                "user-space instructions per short connection",
                false,
                Median,
            ),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Results {
    /// Each metric's values per target, one per repetition.
    pub values: BTreeMap<Metric, BTreeMap<&'static str, Vec<f64>>>,
    /// Targets that could not be run at all, and why.
    pub missing: BTreeMap<&'static str, String>,
    /// Failed runs: (target, workload, message).
    pub errors: Vec<(&'static str, String, String)>,
    /// The targets in the run, in report order.
    pub targets: Vec<Kind>,
    /// Machine and run description lines.
    pub about: Vec<(String, String)>,
}

impl Results {
    pub fn push(&mut self, m: Metric, k: Kind, v: f64) {
        self.values
            .entry(m)
            .or_default()
            .entry(k.name())
            .or_default()
            .push(v);
    }

    /// `m` of `a` over `m` of `b`: the median of their per-repetition ratios where each has
    /// the same repetitions ([`stats::paired_ratio`]: targets alternate, so repetition `i` of
    /// each ran back to back), else the ratio of their combined values.
    pub fn ratio(&self, m: Metric, a: Kind, b: Kind) -> Option<f64> {
        let runs = |k: Kind| self.values.get(&m).and_then(|v| v.get(k.name()));
        let paired = match (m.info().3, runs(a), runs(b)) {
            (Combine::Median, Some(num), Some(den)) => stats::paired_ratio(num, den),
            _ => None,
        };
        paired.or_else(|| stats::ratio(self.value(m, a), self.value(m, b)))
    }

    /// The combined value of `m` for `k`.
    pub fn value(&self, m: Metric, k: Kind) -> Option<f64> {
        let v = self.values.get(&m)?.get(k.name())?;
        match m.info().3 {
            Combine::Median => stats::median(v),
            Combine::Sum if v.is_empty() => None,
            Combine::Sum => Some(v.iter().sum()),
        }
    }
}

/// The ratio columns: (numerator, denominator).
pub const RATIOS: [(Kind, Kind); 6] = [
    (Kind::LbSockmap, Kind::Haproxy),
    (Kind::LbSockmap, Kind::Nginx),
    (Kind::LbSockmap, Kind::Direct),
    (Kind::LbSplice, Kind::Haproxy),
    (Kind::LbSplice, Kind::Nginx),
    (Kind::LbSplice, Kind::Direct),
];

fn short(k: Kind) -> &'static str {
    match k {
        Kind::LbAuto => "auto",
        Kind::LbSockmap => "sockmap",
        Kind::LbSplice => "splice",
        Kind::Haproxy => "HAProxy",
        Kind::HaproxyAgain => "HAProxy again",
        Kind::Nginx => "nginx",
        Kind::Direct => "direct",
    }
}

/// A number with sensible precision for a table.
pub fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.is_nan() => "–".into(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.fract().abs() < 1e-9 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// One of the goals: lb's value against a reference, times a factor.
struct Goal {
    text: &'static str,
    metric: Metric,
    lb: Kind,
    reference: Kind,
    /// The ratio lb/reference must be >= this (higher is better) or <= (lower is better).
    bound: f64,
}

const GOALS: [Goal; 11] = [
    Goal {
        text: "bulk 1 stream, sockmap ≥ 1.5 × HAProxy",
        metric: Metric::Bulk1Gbit,
        lb: Kind::LbSockmap,
        reference: Kind::Haproxy,
        bound: 1.5,
    },
    Goal {
        text: "bulk 1 stream, sockmap ≥ 0.5 × direct",
        metric: Metric::Bulk1Gbit,
        lb: Kind::LbSockmap,
        reference: Kind::Direct,
        bound: 0.5,
    },
    Goal {
        text: "CPU/GiB 1 stream, sockmap ≤ 0.7 × HAProxy",
        metric: Metric::Bulk1Cpu,
        lb: Kind::LbSockmap,
        reference: Kind::Haproxy,
        bound: 0.7,
    },
    Goal {
        text: "connections/s, sockmap ≥ 1.2 × HAProxy",
        metric: Metric::ConnRate,
        lb: Kind::LbSockmap,
        reference: Kind::Haproxy,
        bound: 1.2,
    },
    Goal {
        text: "p50 round trip, sockmap ≤ 0.9 × HAProxy",
        metric: Metric::LatP50,
        lb: Kind::LbSockmap,
        reference: Kind::Haproxy,
        bound: 0.9,
    },
    Goal {
        text: "bulk 1 stream, splice ≥ 1.2 × HAProxy",
        metric: Metric::Bulk1Gbit,
        lb: Kind::LbSplice,
        reference: Kind::Haproxy,
        bound: 1.2,
    },
    Goal {
        text: "connections/s, splice ≥ 1.2 × HAProxy",
        metric: Metric::ConnRate,
        lb: Kind::LbSplice,
        reference: Kind::Haproxy,
        bound: 1.2,
    },
    Goal {
        text: "connections/s, splice ≥ 1.05 × HAProxy (the least, #10)",
        metric: Metric::ConnRate,
        lb: Kind::LbSplice,
        reference: Kind::Haproxy,
        bound: 1.05,
    },
    Goal {
        text: "p50 round trip, splice ≤ 0.9 × HAProxy",
        metric: Metric::LatP50,
        lb: Kind::LbSplice,
        reference: Kind::Haproxy,
        bound: 0.9,
    },
    Goal {
        text: "syscalls per short connection, sockmap ≤ 0.7 × HAProxy",
        metric: Metric::SyscallsPerConn,
        lb: Kind::LbSockmap,
        reference: Kind::Haproxy,
        bound: 0.7,
    },
    Goal {
        text: "syscalls per short connection, splice ≤ 0.7 × HAProxy",
        metric: Metric::SyscallsPerConn,
        lb: Kind::LbSplice,
        reference: Kind::Haproxy,
        bound: 0.7,
    },
];

/// Goals on lb's own value, lower is better: (text, metric, bound, unit).
const ABSOLUTE: [(&str, Metric, f64, &str); 2] = [
    ("RSS per idle connection", Metric::RssPerConn, 1024.0, "B"),
    (
        "syscalls per short connection",
        Metric::SyscallsPerConn,
        16.0,
        "",
    ),
];

/// The goals as (text, measured ratio or absolute value, met?) rows, including the absolute
/// ones ([`ABSOLUTE`]: ≤ 1 KiB per idle connection, ≤ 16 syscalls per short connection).
pub fn goals(r: &Results) -> Vec<(String, String, Option<bool>)> {
    let mut out: Vec<_> = GOALS
        .iter()
        .map(|g| {
            let ratio = r.ratio(g.metric, g.lb, g.reference);
            let higher = g.metric.info().2;
            let met = ratio.map(|x| if higher { x >= g.bound } else { x <= g.bound });
            (
                g.text.to_string(),
                ratio.map_or("–".into(), |x| format!("{x:.2} ×")),
                met,
            )
        })
        .collect();
    for (text, metric, bound, unit) in ABSOLUTE {
        for k in [Kind::LbSockmap, Kind::LbSplice] {
            let v = r.value(metric, k);
            let with_unit = |x: f64, digits: usize| {
                format!(
                    "{x:.digits$}{}{unit}",
                    if unit.is_empty() { "" } else { " " }
                )
            };
            out.push((
                format!("{text}, {} ≤ {}", short(k), with_unit(bound, 0)),
                v.map_or("–".into(), |x| {
                    with_unit(x, if unit.is_empty() { 2 } else { 0 })
                }),
                v.map(|x| x <= bound),
            ));
        }
    }
    out
}

/// The markdown report: values, ratios, goals, missing targets and errors.
pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let present: Vec<Kind> = r.targets.clone();
    let _ = write!(s, "| metric |");
    for k in &present {
        let _ = write!(s, " {} |", k.name());
    }
    s.push_str("\n|---|");
    for _ in &present {
        s.push_str("---:|");
    }
    s.push('\n');
    for m in Metric::ALL {
        let _ = write!(s, "| {} |", m.info().1);
        for &k in &present {
            let cell = if r.missing.contains_key(k.name()) {
                "missing".to_string()
            } else {
                fmt_num(r.value(m, k))
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s.push_str(
        "\nRatios (lb ÷ other, the median of the repetitions' ratios; for CPU, latency, RSS and \
         time lower is better):\n\n| metric |",
    );
    for (a, b) in RATIOS {
        let _ = write!(s, " {}/{} |", short(a), short(b));
    }
    s.push_str("\n|---|");
    for _ in RATIOS {
        s.push_str("---:|");
    }
    s.push('\n');
    for m in Metric::ALL {
        if m.info().3 == Combine::Sum {
            continue;
        }
        let _ = write!(s, "| {} |", m.info().1);
        for (a, b) in RATIOS {
            let x = r.ratio(m, a, b);
            let _ = write!(s, " {} |", x.map_or("–".into(), |x| format!("{x:.2}")));
        }
        s.push('\n');
    }
    s.push_str("\nGoals (same run):\n\n| goal | measured | met |\n|---|---:|---|\n");
    for (text, measured, met) in goals(r) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {text} | {measured} | {met} |");
    }
    if !r.missing.is_empty() {
        s.push_str("\nMissing targets:\n\n");
        for (k, why) in &r.missing {
            let first = why.lines().next().unwrap_or("");
            let _ = writeln!(s, "- {k}: {first}");
        }
    }
    if !r.errors.is_empty() {
        s.push_str("\nFailed runs:\n\n");
        for (k, w, e) in &r.errors {
            let first = e.lines().next().unwrap_or("");
            let _ = writeln!(s, "- {k}, {w}: {first}");
        }
    }
    s
}

/// The JSON report: per metric and target the combined value and every repetition.
pub fn json(r: &Results) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let num = |v: Option<f64>| v.filter(|x| x.is_finite()).map_or(Value::Null, Value::from);
    let mut metrics = Map::new();
    for m in Metric::ALL {
        let mut per = Map::new();
        for &k in &r.targets {
            let runs: Vec<Value> = r
                .values
                .get(&m)
                .and_then(|t| t.get(k.name()))
                .map(|v| v.iter().map(|&x| num(Some(x))).collect())
                .unwrap_or_default();
            let spread = r
                .values
                .get(&m)
                .and_then(|t| t.get(k.name()))
                .and_then(|v| stats::range(v));
            per.insert(
                k.name().into(),
                json!({
                    "value": num(r.value(m, k)),
                    "min": num(spread.map(|s| s.0)),
                    "max": num(spread.map(|s| s.1)),
                    "runs": runs,
                }),
            );
        }
        let mut ratios = Map::new();
        for (a, b) in RATIOS {
            ratios.insert(format!("{}/{}", a.name(), b.name()), num(r.ratio(m, a, b)));
        }
        let (key, label, higher, combine) = m.info();
        metrics.insert(
            key.into(),
            json!({
                "label": label,
                "higher_is_better": higher,
                "combine": if combine == Combine::Median { "median" } else { "sum" },
                "targets": per,
                "ratios": ratios,
            }),
        );
    }
    let goals: Vec<Value> = goals(r)
        .into_iter()
        .map(|(t, m, met)| json!({ "goal": t, "measured": m, "met": met }))
        .collect();
    let about: Map<String, Value> = r
        .about
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    json!({
        "about": about,
        "targets": r.targets.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "missing": r.missing,
        "errors": r.errors.iter().map(|(k, w, e)| json!({"target": k, "workload": w, "error": e})).collect::<Vec<_>>(),
        "metrics": metrics,
        "goals": goals,
    })
}

fn color(k: Kind) -> &'static str {
    match k {
        Kind::Direct => "#9e9e9e",
        Kind::LbAuto => "#0d47a1",
        Kind::LbSockmap => "#1565c0",
        Kind::LbSplice => "#64b5f6",
        Kind::Haproxy => "#e65100",
        Kind::HaproxyAgain => "#ffb74d",
        Kind::Nginx => "#2e7d32",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A chart: one panel per headline metric, a horizontal bar per target scaled to the panel's
/// largest value, each labelled with its number.
#[expect(clippy::many_single_char_names, reason = "chart geometry: x, y, w, h")]
pub fn svg(r: &Results) -> String {
    const PANELS: [Metric; 8] = [
        Metric::Bulk1Gbit,
        Metric::Bulk8Gbit,
        Metric::Bulk1Cpu,
        Metric::ConnRate,
        Metric::LatP50,
        Metric::LatP99,
        Metric::RssPerConn,
        Metric::ConcExchangeMs,
    ];
    let (pw, bar, gap, cols) = (440.0, 18.0, 6.0, 2usize);
    let n = r.targets.len() as f64;
    let ph = 34.0 + n * (bar + gap) + 10.0;
    let rows = PANELS.len().div_ceil(cols);
    let (w, h) = (cols as f64 * pw + 20.0, 50.0 + rows as f64 * ph + 30.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">lb vs HAProxy, nginx and direct (medians; ↑ higher is better, ↓ lower is better)</text>\n"
    );
    for (i, m) in PANELS.iter().enumerate() {
        let (x0, y0) = (10.0 + (i % cols) as f64 * pw, 44.0 + (i / cols) as f64 * ph);
        let (_, label, higher, _) = m.info();
        let arrow = if higher { "↑" } else { "↓" };
        let _ = writeln!(
            s,
            "<text x=\"{x0}\" y=\"{}\" font-weight=\"bold\">{} {arrow}</text>",
            y0 + 16.0,
            esc(label)
        );
        let max = r
            .targets
            .iter()
            .filter_map(|&k| r.value(*m, k))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let (lx, bx, bw) = (x0, x0 + 80.0, pw - 80.0 - 70.0);
        for (j, &k) in r.targets.iter().enumerate() {
            let y = y0 + 26.0 + j as f64 * (bar + gap);
            let _ = writeln!(
                s,
                "<text x=\"{lx}\" y=\"{}\">{}</text>",
                y + bar - 5.0,
                k.name()
            );
            let v = r.value(*m, k).filter(|v| v.is_finite());
            let len = match v {
                Some(v) if max > 0.0 => (v / max * bw).max(1.0),
                _ => 0.0,
            };
            let _ = writeln!(
                s,
                "<rect x=\"{bx}\" y=\"{y}\" width=\"{len:.1}\" height=\"{bar}\" fill=\"{}\"/>",
                color(k)
            );
            let text = if r.missing.contains_key(k.name()) {
                "missing".to_string()
            } else {
                fmt_num(v)
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\">{text}</text>",
                bx + len + 4.0,
                y + bar - 5.0
            );
        }
    }
    let about: Vec<String> = r.about.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>\n</svg>",
        h - 10.0,
        esc(&about.join("; "))
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Results {
        let mut r = Results {
            targets: Kind::SYNTHETIC.to_vec(),
            ..Results::default()
        };
        for (k, g) in [
            (Kind::Direct, 30.0),
            (Kind::LbSockmap, 15.0),
            (Kind::LbSplice, 12.0),
            (Kind::Haproxy, 10.0),
        ] {
            for d in [-1.0, 0.0, 1.0] {
                r.push(Metric::Bulk1Gbit, k, g + d);
            }
        }
        r.push(Metric::ConnFailures, Kind::Haproxy, 2.0);
        r.push(Metric::ConnFailures, Kind::Haproxy, 3.0);
        r.push(Metric::Bulk1Cpu, Kind::LbSockmap, 1.0);
        r.push(Metric::Bulk1Cpu, Kind::Haproxy, 2.0);
        r.missing.insert("nginx", "nginx is not installed".into());
        r
    }

    #[test]
    fn combined_values_and_ratios() {
        let r = sample();
        assert_eq!(r.value(Metric::Bulk1Gbit, Kind::LbSockmap), Some(15.0));
        assert_eq!(r.value(Metric::ConnFailures, Kind::Haproxy), Some(5.0));
        assert_eq!(r.value(Metric::ConnFailures, Kind::Direct), None);
        let g = goals(&r);
        assert_eq!(
            g[0],
            (
                "bulk 1 stream, sockmap ≥ 1.5 × HAProxy".into(),
                "1.50 ×".into(),
                Some(true)
            )
        );
        assert_eq!(g[1].2, Some(true)); // 15/30 = 0.5
        assert_eq!(g[2].2, Some(true)); // CPU 0.5 <= 0.7
        assert_eq!(g[3].2, None); // not measured
        assert_eq!(g[5].2, Some(true)); // splice 1.2
    }

    #[test]
    fn syscall_goals_are_relative_and_absolute() {
        let mut r = sample();
        r.push(Metric::SyscallsPerConn, Kind::LbSplice, 12.0);
        r.push(Metric::SyscallsPerConn, Kind::LbSockmap, 17.0);
        r.push(Metric::SyscallsPerConn, Kind::Haproxy, 24.0);
        let g = goals(&r);
        let row = |text: &str| g.iter().find(|(t, _, _)| t == text).cloned().unwrap();
        assert_eq!(
            row("syscalls per short connection, splice ≤ 0.7 × HAProxy"),
            (
                "syscalls per short connection, splice ≤ 0.7 × HAProxy".into(),
                "0.50 ×".into(),
                Some(true)
            )
        );
        assert_eq!(
            row("syscalls per short connection, sockmap ≤ 0.7 × HAProxy").2,
            Some(false)
        );
        assert_eq!(
            row("syscalls per short connection, splice ≤ 16"),
            (
                "syscalls per short connection, splice ≤ 16".into(),
                "12.00".into(),
                Some(true)
            )
        );
        assert_eq!(
            row("syscalls per short connection, sockmap ≤ 16").2,
            Some(false)
        );
        assert_eq!(
            row("RSS per idle connection, splice ≤ 1024 B").1,
            "–",
            "not measured"
        );
    }

    #[test]
    fn markdown_shows_values_ratios_and_missing() {
        let md = markdown(&sample());
        assert!(md.starts_with("| metric | direct | lb-sockmap | lb-splice | haproxy | nginx |\n"));
        assert!(md.contains("| bulk, 1 stream: Gbit/s | 30 | 15 | 12 | 10 | missing |\n"));
        assert!(md.contains("| bulk, 1 stream: Gbit/s | 1.50 | – | 0.50 | 1.20 | – | 0.40 |\n"));
        assert!(md.contains("- nginx: nginx is not installed\n"));
        assert!(md.contains("| connection failures (sum) | – | – | – | 5 | missing |\n"));
    }

    #[test]
    fn json_has_values_runs_and_ratios() {
        let j = json(&sample());
        let m = &j["metrics"]["bulk_1_stream_gbit_s"];
        assert_eq!(m["targets"]["haproxy"]["value"], 10.0);
        assert_eq!(
            m["targets"]["haproxy"]["runs"],
            serde_json::json!([9.0, 10.0, 11.0])
        );
        assert_eq!(m["ratios"]["lb-sockmap/haproxy"], 1.5);
        assert_eq!(m["ratios"]["lb-sockmap/nginx"], serde_json::Value::Null);
        assert_eq!(j["missing"]["nginx"], "nginx is not installed");
    }

    #[test]
    fn instructions_show_beside_syscalls_with_their_ratio() {
        let mut r = sample();
        r.push(Metric::InstrPerConn, Kind::LbSplice, 36_000.0);
        r.push(Metric::InstrPerConn, Kind::Haproxy, 27_000.0);
        let md = markdown(&r);
        assert!(md.contains(
            "| syscalls per short connection | – | – | – | – | missing |\n\
             | user-space instructions per short connection | – | – | 36000 | 27000 | missing |\n"
        ));
        assert!(md.contains(
            "| user-space instructions per short connection | – | – | – | 1.33 | – | – |\n"
        ));
        let j = json(&r);
        let m = &j["metrics"]["instructions_per_short_conn"];
        assert_eq!(m["targets"]["lb-splice"]["value"], 36_000.0);
        assert_eq!(m["ratios"]["lb-splice/haproxy"], 36_000.0 / 27_000.0);
        assert_eq!(m["higher_is_better"], false);
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let s = svg(&sample());
        assert!(s.starts_with("<svg "));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
        assert!(s.contains(">missing</text>"));
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(Some(12345.6)), "12346");
        assert_eq!(fmt_num(Some(123.45)), "123.5");
        assert_eq!(fmt_num(Some(9.876)), "9.88");
        assert_eq!(fmt_num(Some(3.0)), "3");
        assert_eq!(fmt_num(None), "–");
        assert_eq!(fmt_num(Some(f64::NAN)), "–");
    }
}
