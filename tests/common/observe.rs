//! What kreload shows of itself, read as a user would: its `/metrics` (every series parsed, so a
//! test asserts how a metric moved) and the `events.k8s.io/v1` Events it recorded on an object.

use std::collections::BTreeMap;

use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;

use super::*;

/// One scrape of `/metrics`: every series with its labels and value.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses the Prometheus text format (label values are fixed words: no commas or quotes).
    pub fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.trim_end_matches('}');
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| p.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (key.to_owned(), BTreeMap::new()),
            };
            series.push((name, labels, value));
        }
        Scrape { series }
    }

    /// The sum of every series of `name` whose labels include `labels`; 0 when there is none
    /// (kreload renders a counter only once it moved).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .fold(0.0, |sum, (_, _, v)| sum + v)
    }

    /// Whether any series of `name` is rendered.
    pub fn has(&self, name: &str) -> bool {
        self.series.iter().any(|(n, _, _)| n == name)
    }
}

/// Scrapes kreload's `/metrics`; `None` while it does not answer.
pub async fn try_scrape(kreload: &Kreload) -> Option<Scrape> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(format!("{}/metrics", kreload.health))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(Scrape::parse(&text))
}

pub async fn scrape(kreload: &Kreload) -> Scrape {
    try_scrape(kreload)
        .await
        .unwrap_or_else(|| panic!("kreload's /metrics at {} does not answer", kreload.health))
}

/// Waits until `name{labels}` satisfies `ok`; returns the value, or `Err` naming the last one.
pub async fn wait_metric(
    kreload: &Kreload,
    name: &str,
    labels: &[(&str, &str)],
    timeout: std::time::Duration,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(s) = try_scrape(kreload).await {
            let v = s.get(name, labels);
            if ok(v) {
                return Ok(v);
            }
            last = Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "{name}{labels:?} did not reach the expected value within {timeout:?} (last seen: {last:?})"
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Waits until kreload has watched an object of `kind` and indexes at least one workload.
pub async fn wait_watched_and_indexed(kreload: &Kreload, kind: &str) {
    let within = std::time::Duration::from_secs(30);
    wait_metric(
        kreload,
        "kreload_watch_events_total",
        &[("kind", kind)],
        within,
        |n| n >= 1.0,
    )
    .await
    .unwrap_or_else(|e| panic!("{kind}s are not watched: {e}"));
    wait_metric(kreload, "kreload_index_workloads", &[], within, |n| {
        n >= 1.0
    })
    .await
    .unwrap_or_else(|e| panic!("no {kind} is indexed: {e}"));
}

/// The `events.k8s.io/v1` Events with `reason` regarding the object `name` in the namespace.
pub async fn events(ns: &TestNamespace, name: &str, reason: &str) -> Vec<Event> {
    let api: kube::Api<Event> = ns.api();
    let mut out: Vec<Event> = api
        .list(&ListParams::default())
        .await
        .expect("list events.k8s.io Events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect();
    out.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    out
}

/// How many times these Events happened: an Event that is a series counts its `series.count`
/// (kube's Recorder folds repeats into one Event that way), any other counts once.
pub fn occurrences(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| {
            e.series
                .as_ref()
                .map_or(1, |s| usize::try_from(s.count).unwrap_or(1).max(1))
        })
        .sum()
}

/// The notes of these Events, for messages.
pub fn notes(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} (x{}, by {})",
                e.note.clone().unwrap_or_default(),
                e.series.as_ref().map_or(1, |s| s.count),
                e.reporting_instance.clone().unwrap_or_default()
            )
        })
        .collect()
}
