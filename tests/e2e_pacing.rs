//! Cluster-wide pacing (issue 11, Reloader #220, #507): one ConfigMap consumed by many
//! Deployments; `--max-concurrent-rolls` and `--max-rolls-per-minute` hold rolls back across
//! workloads, and every workload still rolls exactly once in the end.

mod common;

use std::time::Duration;

use common::workloads::*;
use common::*;
use futures::future::join_all;
use serde_json::json;

/// The value of a gauge or counter without labels on kreload's `/metrics`.
async fn metric(kreload: &Kreload, name: &str) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", kreload.health))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn fan_out(ns: &TestNamespace, n: usize) -> Vec<String> {
    cm("shared").data(json!({"k": "v0"})).create(ns).await;
    let names: Vec<String> = (0..n).map(|i| format!("app-{i}")).collect();
    for name in &names {
        create(
            ns,
            deploy(
                name,
                json!({"reloader.stakater.com/auto": "true"}),
                env_from(&["shared"], &[]),
            ),
        )
        .await;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_rolls_holds_rollouts_back_and_rolls_everything() {
    let client = client().await;
    let ns = &TestNamespace::new(&client, "pace-conc").await;
    let names = fan_out(ns, 8).await;
    let kreload = kreload_for(
        &[ns],
        &["--max-concurrent-rolls", "2", "--min-roll-interval", "0s"],
    );
    let cases: Vec<Case> = names
        .iter()
        .map(|n| rolls(Kind::Deployment, leak(n), "consumes the shared ConfigMap"))
        .collect();
    let bases = baselines(ns, &cases).await;
    set_cm(ns, "shared", "k", "v1").await;
    // While the fan-out rolls, kreload never has more than 2 of its rollouts in progress.
    let sampler = async {
        let mut seen = 0;
        for _ in 0..300 {
            let n = metric(&kreload, "kreload_rolls_in_progress")
                .await
                .unwrap_or(0);
            assert!(
                n <= 2,
                "{n} rollouts in progress with --max-concurrent-rolls 2"
            );
            seen = seen.max(n);
            let rolled = join_all(names.iter().zip(&bases).map(|(name, b)| async move {
                workload_stamp(ns, Kind::Deployment, name).await != b.stamp
            }))
            .await;
            if rolled.iter().all(|r| *r) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        seen
    };
    let seen = sampler.await;
    assert!(seen >= 1, "the gauge never showed a rollout in progress");
    check(verify(ns, &cases, &bases).await, &[&kreload]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rolls_per_minute_defers_the_rest_to_the_next_minute() {
    let client = client().await;
    let ns = &TestNamespace::new(&client, "pace-rate").await;
    let names = fan_out(ns, 5).await;
    let kreload = kreload_for(&[ns], &["--max-rolls-per-minute", "3"]);
    let cases: Vec<Case> = names
        .iter()
        .map(|n| rolls(Kind::Deployment, leak(n), "consumes the shared ConfigMap"))
        .collect();
    let bases = baselines(ns, &cases).await;
    set_cm(ns, "shared", "k", "v1").await;
    let rolled = || async {
        join_all(names.iter().zip(&bases).map(|(name, b)| async move {
            workload_stamp(ns, Kind::Deployment, name).await != b.stamp
        }))
        .await
        .into_iter()
        .filter(|r| *r)
        .count()
    };
    wait_for("3 rolls", Duration::from_secs(30), || async {
        (rolled().await >= 3).then_some(())
    })
    .await;
    // Well inside the minute (its other rolls wait for it), no fourth roll has started.
    tokio::time::sleep(STORM_GUARD).await;
    assert_eq!(rolled().await, 3, "a fourth roll started within the minute");
    // The rest roll once the minute is over; each workload exactly once.
    wait_for("the other 2 rolls", Duration::from_secs(90), || async {
        (rolled().await == 5).then_some(())
    })
    .await;
    check(verify(ns, &cases, &bases).await, &[&kreload]);
}

/// The cases name workloads by `&'static str`.
fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}
