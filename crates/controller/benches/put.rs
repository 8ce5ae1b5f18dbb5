//! The cost of one PUT as the number of load balancers grows (issue 11: it must not grow
//! with the count), in memory (the controller's own work) and on redb (with the fsync of
//! each commit). Also prints the process's resident memory once 10,000 are stored.
//!
//! cargo bench -p strata-controller --bench put

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use strata_controller::{Controller, MemStore, RedbStore, Store};
use strata_model::kind;

fn lb(id: &str, port: u16) -> Value {
    json!({"properties": {
        "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
        "backendAddressPools": [{"resourceId": "pool"}],
        "probes": [{"resourceId": "http", "properties": {"protocol": "Http", "port": 80, "requestPath": "/", "intervalInSeconds": 5, "numberOfProbes": 2}}],
        "loadBalancingRules": [{"resourceId": "http", "properties": {
            "protocol": "Tcp", "frontendPort": port, "backendPort": 80,
            "frontendIPConfigurations": [{"resourceRef": format!("/loadBalancers/{id}/frontendIPConfigurations/fe")}],
            "backendAddressPool": {"resourceRef": format!("/loadBalancers/{id}/backendAddressPools/pool")},
            "probe": {"resourceRef": format!("/loadBalancers/{id}/probes/http")}
        }}]
    }})
}

fn filled<S: Store>(store: S, count: usize) -> Controller<S> {
    let mut c = Controller::open(store, 1).expect("open");
    c.put(
        kind("logicalNetworks").expect("kind"),
        "public",
        json!({"properties": {"subnets": [{"resourceId": "vip", "properties": {
            "addressPrefix": "10.128.0.0/9",
            "ipPools": [{"resourceId": "pool", "properties": {"startIPAddress": "10.128.0.1", "endIPAddress": "10.255.255.254"}}]
        }}]}}),
        None,
    )
    .expect("network");
    c.put(
        kind("loadBalancerManager").expect("kind"),
        "config",
        json!({"properties": {"vipIpPools": [{"resourceRef": "/logicalNetworks/public/subnets/vip/ipPools/pool"}]}}),
        None,
    )
    .expect("config");
    for i in 0..count {
        let id = format!("lb-{i}");
        c.put(kind("loadBalancers").expect("kind"), &id, lb(&id, 80), None)
            .expect("lb");
    }
    c
}

fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn puts(c: &mut Criterion) {
    let lbs = kind("loadBalancers").expect("kind");
    let mut group = c.benchmark_group("put");
    for count in [100usize, 10_000] {
        let mut controller = filled(MemStore::default(), count);
        if count == 10_000 {
            eprintln!(
                "resident memory with {count} load balancers (memory store): {:.1} MiB",
                resident_mib()
            );
        }
        let mut port = 0u16;
        group.bench_function(BenchmarkId::new("update, memory store", count), |b| {
            b.iter(|| {
                port = port.wrapping_add(1);
                black_box(
                    controller
                        .put(lbs, "lb-0", lb("lb-0", port), None)
                        .expect("put"),
                )
            })
        });
        group.bench_function(
            BenchmarkId::new("create and delete, memory store", count),
            |b| {
                b.iter(|| {
                    controller
                        .put(lbs, "new", lb("new", 80), None)
                        .expect("put");
                    controller.delete(lbs, "new", None).expect("delete");
                })
            },
        );
    }
    let dir = std::env::temp_dir().join(format!("strata-bench-put-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for count in [100usize, 1_000] {
        let path = dir.join(format!("store-{count}.redb"));
        let _ = std::fs::remove_file(&path);
        let mut controller = filled(RedbStore::open(&path).expect("redb"), count);
        let mut port = 0u16;
        group.bench_function(BenchmarkId::new("update, redb (fsync)", count), |b| {
            b.iter(|| {
                port = port.wrapping_add(1);
                black_box(
                    controller
                        .put(lbs, "lb-0", lb("lb-0", port), None)
                        .expect("put"),
                )
            })
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = puts
}
criterion_main!(benches);
