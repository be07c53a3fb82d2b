//! Prometheus metrics in text format. Every metric is a typed handle declared here, once, with
//! its name and help text; call sites say what happened (`metrics.skipped(SkipReason::Created)`)
//! and never spell a metric name. No label value ever carries object data, only fixed words; the
//! one exception is Reloader's opt-in per-namespace counter, whose label is a namespace's name.
//!
//! Reloader's metric names are served beside kreload's own, counted from the same handles, so
//! that dashboards and alerts written for Reloader keep working after the switch.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::domain::config::ConfigKind;
use crate::domain::workload::WorkloadKind;
use crate::state::store::DigestStore;

/// Histogram buckets for admission latency, in seconds.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Why a config change did not roll a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The namespace is not watched.
    Namespace,
    /// A config was created, without `--reload-on-create`.
    Created,
    /// A config was deleted, without `--reload-on-delete`.
    Deleted,
    /// The change does not touch what the workload's trigger set holds.
    NotConsumed,
    /// Only the config's labels or annotations changed (or an `ignore` hid a data change).
    MetadataOnly,
    /// The workload already carries the current stamp.
    AlreadyCurrent,
}

impl SkipReason {
    const ALL: [SkipReason; 6] = [
        SkipReason::Namespace,
        SkipReason::Created,
        SkipReason::Deleted,
        SkipReason::NotConsumed,
        SkipReason::MetadataOnly,
        SkipReason::AlreadyCurrent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Namespace => "namespace",
            SkipReason::Created => "created",
            SkipReason::Deleted => "deleted",
            SkipReason::NotConsumed => "not_consumed",
            SkipReason::MetadataOnly => "metadata_only",
            SkipReason::AlreadyCurrent => "already_current",
        }
    }
}

/// How a roll ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollResult {
    Success,
    Error,
}

impl RollResult {
    const ALL: [RollResult; 2] = [RollResult::Success, RollResult::Error];

    fn as_str(self) -> &'static str {
        match self {
            RollResult::Success => "success",
            RollResult::Error => "error",
        }
    }
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// A counter that has been counted at least once is rendered; the others are not, so the
/// output holds only series that moved (as before the handles were typed).
#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every metric kreload serves.
#[derive(Default)]
pub struct Metrics {
    admission: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    reloads: [[Counter; RollResult::ALL.len()]; WorkloadKind::SLOTS],
    skipped: [Counter; SkipReason::ALL.len()],
    coalesced: Counter,
    deferred: Counter,
    alerts_sent: Counter,
    alerts_failed: Counter,
    watch_events: Mutex<BTreeMap<&'static str, u64>>,
    leader: AtomicI64,
    index_workloads: AtomicI64,
    rolls_failing: AtomicI64,
    rolls_in_progress: AtomicI64,
    jobs_to_create: AtomicI64,
    /// Whether the gauges have been set (so that they are rendered only once they mean something).
    leader_set: std::sync::atomic::AtomicBool,
    index_set: std::sync::atomic::AtomicBool,
    /// Reloader's `METRICS_COUNT_BY_NAMESPACE=enabled`: serve the per-namespace counter.
    count_by_namespace: std::sync::atomic::AtomicBool,
    /// Rolls by (namespace, success), for that counter.
    reloads_by_namespace: Mutex<BTreeMap<(String, bool), u64>>,
}

impl Metrics {
    /// One admission review answered by `webhook` with `result`, taking `took`.
    pub fn admission(&self, webhook: &'static str, result: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.admission.lock();
        let h = map.entry((webhook, result)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// A roll of a workload of `kind` ended with `result`. Counts Reloader's
    /// `reloader_reload_executed_total` too.
    pub fn reload(&self, kind: WorkloadKind, result: RollResult) {
        self.reloads[kind.slot()][result as usize].add(1);
    }

    /// As [`Metrics::reload`], for a workload in `namespace`: also counts Reloader's
    /// `reloader_reload_executed_total_by_namespace` when that counter is on.
    pub fn reload_in(&self, namespace: &str, kind: WorkloadKind, result: RollResult) {
        self.reload(kind, result);
        if self.count_by_namespace.load(Ordering::Relaxed) {
            *self
                .reloads_by_namespace
                .lock()
                .entry((namespace.to_owned(), result == RollResult::Success))
                .or_default() += 1;
        }
    }

    /// Serve Reloader's per-namespace reload counter (its `METRICS_COUNT_BY_NAMESPACE=enabled`).
    pub fn set_count_by_namespace(&self, on: bool) {
        self.count_by_namespace.store(on, Ordering::Relaxed);
    }

    /// A change did not roll a workload, for `reason`.
    pub fn skipped(&self, reason: SkipReason) {
        self.skipped[reason as usize].add(1);
    }

    /// A change was merged into a roll already waiting.
    pub fn coalesced(&self) {
        self.coalesced.add(1);
    }

    /// A roll was pushed back by the storm guard.
    pub fn deferred(&self) {
        self.deferred.add(1);
    }

    /// An alert (or `--webhook-url` call) was delivered, or given up (or dropped: queue full).
    pub fn alert(&self, delivered: bool) {
        if delivered {
            self.alerts_sent.add(1);
        } else {
            self.alerts_failed.add(1);
        }
    }

    /// A watch event of `kind` (a config or workload kind name) arrived.
    pub fn watch_event(&self, kind: &'static str) {
        *self.watch_events.lock().entry(kind).or_default() += 1;
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.store(i64::from(leading), Ordering::Relaxed);
        self.leader_set.store(true, Ordering::Relaxed);
    }

    /// Workloads whose last roll failed and that wait for a retry (with backoff).
    pub fn set_rolls_failing(&self, n: usize) {
        self.rolls_failing
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// kreload's rollouts not rolled out yet (what `--max-concurrent-rolls` counts).
    pub fn set_rolls_in_progress(&self, n: usize) {
        self.rolls_in_progress
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Jobs a roll deleted whose new copy is not created yet.
    pub fn set_jobs_to_create(&self, n: usize) {
        self.jobs_to_create
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    pub fn set_index_workloads(&self, n: usize) {
        self.index_workloads
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
        self.index_set.store(true, Ordering::Relaxed);
    }

    pub fn render(&self, store: &DigestStore) -> String {
        let mut out = String::new();
        out.push_str("# HELP kreload_admission_requests_seconds Admission request latency by webhook and result.\n");
        out.push_str("# TYPE kreload_admission_requests_seconds histogram\n");
        for ((webhook, result), h) in self.admission.lock().iter() {
            let labels = format!("webhook=\"{webhook}\",result=\"{result}\"");
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "kreload_admission_requests_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "kreload_admission_requests_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "kreload_admission_requests_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "kreload_admission_requests_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        let mut reloads = Vec::new();
        for kind in WorkloadKind::every() {
            for result in RollResult::ALL {
                let n = self.reloads[kind.slot()][result as usize].get();
                if n > 0 {
                    reloads.push((format!("kind=\"{kind}\",result=\"{}\"", result.as_str()), n));
                }
            }
        }
        counter(
            &mut out,
            "kreload_reloads_total",
            "Rolls by workload kind and result.",
            reloads,
        );
        self.render_reloader(&mut out);
        let skipped = SkipReason::ALL
            .iter()
            .map(|r| {
                (
                    format!("reason=\"{}\"", r.as_str()),
                    self.skipped[*r as usize].get(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        counter(
            &mut out,
            "kreload_changes_skipped_total",
            "Config changes that did not roll a workload, by reason.",
            skipped,
        );
        let single = |n: u64| {
            if n > 0 {
                vec![(String::new(), n)]
            } else {
                vec![]
            }
        };
        counter(
            &mut out,
            "kreload_changes_coalesced_total",
            "Changes merged into a roll already waiting.",
            single(self.coalesced.get()),
        );
        counter(
            &mut out,
            "kreload_changes_deferred_total",
            "Rolls pushed back by the storm guard.",
            single(self.deferred.get()),
        );
        counter(
            &mut out,
            "kreload_alerts_sent_total",
            "Alerts on reload (and --webhook-url calls) delivered.",
            single(self.alerts_sent.get()),
        );
        counter(
            &mut out,
            "kreload_alerts_failed_total",
            "Alerts on reload (and --webhook-url calls) given up after retries, or dropped.",
            single(self.alerts_failed.get()),
        );
        let events = self
            .watch_events
            .lock()
            .iter()
            .map(|(kind, n)| (format!("kind=\"{kind}\""), *n))
            .collect();
        counter(
            &mut out,
            "kreload_watch_events_total",
            "Watch events received, by kind.",
            events,
        );
        if self.leader_set.load(Ordering::Relaxed) {
            gauge(
                &mut out,
                "kreload_leader",
                "1 while this replica rolls workloads.",
                self.leader.load(Ordering::Relaxed),
            );
        }
        if self.index_set.load(Ordering::Relaxed) {
            gauge(
                &mut out,
                "kreload_index_workloads",
                "Opted-in workloads in the index.",
                self.index_workloads.load(Ordering::Relaxed),
            );
        }
        gauge(
            &mut out,
            "kreload_rolls_failing",
            "Workloads whose last roll failed, waiting for a retry with backoff.",
            self.rolls_failing.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "kreload_rolls_in_progress",
            "Rollouts kreload started that the workload's controller has not finished.",
            self.rolls_in_progress.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "kreload_jobs_to_create",
            "Jobs a roll deleted whose new copy is not created yet.",
            self.jobs_to_create.load(Ordering::Relaxed),
        );
        out.push_str("# HELP kreload_store_configs Configs held in the digest store, by kind.\n# TYPE kreload_store_configs gauge\n");
        for kind in ConfigKind::ALL {
            let _ = writeln!(
                out,
                "kreload_store_configs{{kind=\"{kind}\"}} {}",
                store.len(kind)
            );
        }
        out
    }
}

impl Metrics {
    /// Reloader's reload counters, under its names, labels and help texts. Like Reloader, both
    /// `success` series are served from the start (at 0), and the per-namespace counter only
    /// when it is on.
    fn render_reloader(&self, out: &mut String) {
        let (mut succeeded, mut failed) = (0, 0);
        for kind in WorkloadKind::every() {
            succeeded += self.reloads[kind.slot()][RollResult::Success as usize].get();
            failed += self.reloads[kind.slot()][RollResult::Error as usize].get();
        }
        let name = "reloader_reload_executed_total";
        let _ = writeln!(
            out,
            "# HELP {name} Counter of reloads executed by Reloader.\n# TYPE {name} counter"
        );
        let _ = writeln!(out, "{name}{{success=\"false\"}} {failed}");
        let _ = writeln!(out, "{name}{{success=\"true\"}} {succeeded}");
        if !self.count_by_namespace.load(Ordering::Relaxed) {
            return;
        }
        let name = "reloader_reload_executed_total_by_namespace";
        let _ = writeln!(
            out,
            "# HELP {name} Counter of reloads executed by Reloader by namespace.\n# TYPE {name} counter"
        );
        for ((namespace, success), n) in self.reloads_by_namespace.lock().iter() {
            let _ = writeln!(
                out,
                "{name}{{namespace=\"{}\",success=\"{success}\"}} {n}",
                escape_label(namespace)
            );
        }
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders one counter's series (labels, value); nothing when none has moved.
fn counter(out: &mut String, name: &str, help: &str, series: Vec<(String, u64)>) {
    if series.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, value) in series {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_counters_and_store_size() {
        let m = Metrics::default();
        m.admission("mutate", "patched", Duration::from_micros(300));
        m.watch_event("ConfigMap");
        m.watch_event("ConfigMap");
        m.reload(WorkloadKind::Deployment, RollResult::Success);
        m.skipped(SkipReason::Created);
        m.coalesced();
        m.set_leader(true);
        let text = m.render(&DigestStore::new());
        assert!(text.contains("kreload_admission_requests_seconds_bucket{webhook=\"mutate\",result=\"patched\",le=\"0.0005\"} 1"));
        assert!(text.contains("kreload_admission_requests_seconds_bucket{webhook=\"mutate\",result=\"patched\",le=\"0.00025\"} 0"));
        assert!(text.contains("kreload_watch_events_total{kind=\"ConfigMap\"} 2"));
        assert!(text.contains("kreload_reloads_total{kind=\"Deployment\",result=\"success\"} 1"));
        assert!(text.contains("kreload_changes_skipped_total{reason=\"created\"} 1"));
        assert!(text.contains("kreload_changes_coalesced_total{} 1"));
        assert!(!text.contains("kreload_changes_deferred_total"));
        assert!(text.contains("kreload_leader 1"));
        assert!(!text.contains("kreload_index_workloads"));
        assert!(text.contains("kreload_store_configs{kind=\"Secret\"} 0"));
    }

    #[test]
    fn reloaders_counters_are_counted_from_the_same_handles() {
        let m = Metrics::default();
        // Served from the start, at 0, as Reloader does; no per-namespace counter unless on.
        let text = m.render(&DigestStore::new());
        assert!(text.contains("# TYPE reloader_reload_executed_total counter"));
        assert!(text.contains("reloader_reload_executed_total{success=\"false\"} 0"));
        assert!(text.contains("reloader_reload_executed_total{success=\"true\"} 0"));
        m.reload(WorkloadKind::Deployment, RollResult::Success);
        m.reload(WorkloadKind::CronJob, RollResult::Success);
        m.reload_in("team-a", WorkloadKind::StatefulSet, RollResult::Error);
        let text = m.render(&DigestStore::new());
        assert!(text.contains("reloader_reload_executed_total{success=\"true\"} 2"));
        assert!(text.contains("reloader_reload_executed_total{success=\"false\"} 1"));
        assert!(!text.contains("reloader_reload_executed_total_by_namespace"));

        m.set_count_by_namespace(true);
        m.reload_in("team-a", WorkloadKind::Deployment, RollResult::Success);
        m.reload_in("team-a", WorkloadKind::Deployment, RollResult::Success);
        m.reload_in("team-\"b", WorkloadKind::Deployment, RollResult::Error);
        let text = m.render(&DigestStore::new());
        assert!(text.contains("# TYPE reloader_reload_executed_total_by_namespace counter"));
        assert!(text.contains(
            "reloader_reload_executed_total_by_namespace{namespace=\"team-a\",success=\"true\"} 2"
        ));
        assert!(text.contains(
            "reloader_reload_executed_total_by_namespace{namespace=\"team-\\\"b\",success=\"false\"} 1"
        ));
        assert!(text.contains("reloader_reload_executed_total{success=\"true\"} 4"));
        assert!(text.contains("kreload_reloads_total{kind=\"Deployment\",result=\"success\"} 3"));
    }
}
