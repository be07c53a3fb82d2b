//! Prometheus metrics in text format, kept as plain atomics: no label value ever carries
//! object data, only fixed words (webhook, result, kind).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::ConfigKind;
use crate::store::DigestStore;

/// Histogram buckets for admission latency, in seconds.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// A counter's name and its fixed label pairs.
type CounterKey = (&'static str, Vec<(&'static str, &'static str)>);

/// Counters and histograms, keyed by their fixed label values.
#[derive(Default)]
pub struct Metrics {
    admission: Mutex<BTreeMap<(&'static str, &'static str), Histogram>>,
    counters: Mutex<BTreeMap<CounterKey, u64>>,
    gauges: Mutex<BTreeMap<&'static str, i64>>,
}

impl Metrics {
    pub fn admission(&self, webhook: &'static str, result: &'static str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.admission.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry((webhook, result)).or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Adds `n` to a counter named `name` with the given fixed labels.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &'static str)], n: u64) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((name, labels.to_vec())).or_default() += n;
    }

    pub fn set_gauge(&self, name: &'static str, value: i64) {
        self.gauges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, value);
    }

    pub fn render(&self, store: &DigestStore) -> String {
        let mut out = String::new();
        out.push_str("# HELP kreload_admission_requests_seconds Admission request latency by webhook and result.\n");
        out.push_str("# TYPE kreload_admission_requests_seconds histogram\n");
        for ((webhook, result), h) in self
            .admission
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
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
        let counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = "";
        for ((name, labels), value) in counters.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
        }
        for (name, value) in self.gauges.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {value}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_counters_and_store_size() {
        let m = Metrics::default();
        m.admission("mutate", "patched", Duration::from_micros(300));
        m.count("kreload_watch_events_total", &[("kind", "ConfigMap")], 2);
        let text = m.render(&DigestStore::new());
        assert!(text.contains("kreload_admission_requests_seconds_bucket{webhook=\"mutate\",result=\"patched\",le=\"0.0005\"} 1"));
        assert!(text.contains("kreload_admission_requests_seconds_bucket{webhook=\"mutate\",result=\"patched\",le=\"0.00025\"} 0"));
        assert!(text.contains("kreload_watch_events_total{kind=\"ConfigMap\"} 2"));
        assert!(text.contains("kreload_store_configs{kind=\"Secret\"} 0"));
    }
}
