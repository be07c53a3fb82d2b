//! Criterion micro-benchmarks of the pure core on the realistic objects of `fixtures`:
//! reference extraction, trigger set, hash, patch building, review parsing, and the whole
//! mutating and validating webhooks. Run with `cargo bench --bench core`.

mod fixtures;

use std::hint::black_box;

use base64::Engine;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kreload::domain::config::ConfigKind;
use kreload::domain::patch::{MetadataShape, stamp_patch};
use kreload::domain::policy::{Annotations, parse_workload};
use kreload::domain::refs::PodSpecRefs;
use kreload::domain::stamp::encode;
use kreload::domain::trigger::{consumed_set, trigger_set};
use kreload::domain::workload::{LeanPod, LeanWorkload};

fn core(c: &mut Criterion) {
    let store = fixtures::filled_store();
    let admission = fixtures::admission(store.clone());
    let pod = fixtures::pod_object();
    let pod_json = serde_json::to_string(&pod).unwrap();
    let spec_json = serde_json::to_string(&pod["spec"]).unwrap();
    let pod_review = fixtures::pod_review();
    let deploy_review = fixtures::deployment_update_review(&admission);
    let deploy_json = serde_json::to_string(&fixtures::deployment_object("1.43.0", None)).unwrap();

    eprintln!(
        "pod object {} B, pod review {} B, deployment UPDATE review {} B",
        pod_json.len(),
        pod_review.len(),
        deploy_review.len()
    );
    let spec: PodSpecRefs = serde_json::from_str(&spec_json).unwrap();
    let refs = spec.references();
    assert_eq!(
        refs.len(),
        fixtures::REFERENCED.len(),
        "the pod references every fixture config"
    );
    let auto: Annotations = [("reloader.stakater.com/auto".to_string(), "true".to_string())].into();
    let auto_policy = parse_workload(&Default::default(), &auto, None).value;
    let list: Annotations = [(
        "configmap.reloader.stakater.com/reload".to_string(),
        "web-config,svc-01[0-9]{2}-config".to_string(),
    )]
    .into();
    let list_policy = parse_workload(&Default::default(), &list, None).value;
    assert!(
        list_policy
            .reload_list(ConfigKind::ConfigMap)
            .entries()
            .len()
            == 2
    );
    let filters = admission.stamper().filters().clone();
    let set = store.with_namespace(fixtures::NAMESPACE, |view| {
        trigger_set(&auto_policy, &refs, view, &filters)
    });
    let stamp = admission.stamper().key().stamp(fixtures::NAMESPACE, &set);

    let mut g = c.benchmark_group("refs");
    g.throughput(Throughput::Bytes(spec_json.len() as u64));
    g.bench_function("parse_pod_spec_and_references", |b| {
        b.iter(|| {
            let spec: PodSpecRefs = serde_json::from_str(black_box(&spec_json)).unwrap();
            spec.references()
        })
    });
    g.bench_function("references_only", |b| {
        b.iter(|| black_box(&spec).references())
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(pod_review.len() as u64));
    g.bench_function("lean_pod", |b| {
        b.iter(|| serde_json::from_str::<LeanPod>(black_box(&pod_json)).unwrap())
    });
    g.bench_function("lean_deployment", |b| {
        b.iter(|| serde_json::from_str::<LeanWorkload>(black_box(&deploy_json)).unwrap())
    });
    // What a handler built on generic types pays, for comparison.
    g.bench_function("pod_review_as_serde_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&pod_review)).unwrap())
    });
    g.bench_function("pod_review_as_kube_dynamic_object", |b| {
        b.iter(|| {
            serde_json::from_slice::<
                kube::core::admission::AdmissionReview<kube::core::DynamicObject>,
            >(black_box(&pod_review))
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("trigger_set");
    g.bench_function("auto_8_configs", |b| {
        b.iter(|| {
            store.with_namespace(fixtures::NAMESPACE, |view| {
                trigger_set(&auto_policy, black_box(&refs), view, &filters)
            })
        })
    });
    g.bench_function("consumed_set_8_configs", |b| {
        b.iter(|| {
            store.with_namespace(fixtures::NAMESPACE, |view| {
                consumed_set(black_box(&refs), view)
            })
        })
    });
    // The same, as the webhook and the watcher compute them now: straight into the encoding.
    g.bench_function("workload_stamp_auto_8_configs", |b| {
        b.iter(|| admission.workload_stamp(fixtures::NAMESPACE, &auto_policy, black_box(&refs)))
    });
    g.bench_function("workload_stamp_reload_list_over_1000_configmaps", |b| {
        b.iter(|| admission.workload_stamp(fixtures::NAMESPACE, &list_policy, black_box(&refs)))
    });
    g.bench_function("reload_list_regex_over_1000_configmaps", |b| {
        b.iter(|| {
            store.with_namespace(fixtures::NAMESPACE, |view| {
                trigger_set(&list_policy, black_box(&refs), view, &filters)
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("stamp");
    g.bench_function("encode", |b| {
        b.iter(|| encode(fixtures::NAMESPACE, black_box(&set)))
    });
    g.bench_function("hmac_stamp", |b| {
        b.iter(|| {
            admission
                .stamper()
                .key()
                .stamp(fixtures::NAMESPACE, black_box(&set))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("patch");
    g.bench_function("stamp_patch", |b| {
        b.iter(|| stamp_patch("", MetadataShape::Annotations, black_box(&stamp)))
    });
    g.bench_function("stamp_patch_serialized_base64", |b| {
        b.iter(|| {
            let p = stamp_patch("", MetadataShape::Annotations, black_box(&stamp));
            base64::engine::general_purpose::STANDARD.encode(p.to_string())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Bytes(pod_review.len() as u64));
    g.bench_function("mutate_pod_create", |b| {
        b.iter(|| admission.mutate(black_box(&pod_review)).unwrap())
    });
    g.throughput(Throughput::Bytes(deploy_review.len() as u64));
    g.bench_function("mutate_deployment_update", |b| {
        b.iter(|| admission.mutate(black_box(&deploy_review)).unwrap())
    });
    g.bench_function("validate_deployment_update", |b| {
        b.iter(|| admission.validate(black_box(&deploy_review)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);
