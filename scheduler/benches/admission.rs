//! Admission at the academy's scale, and a whole term through the simulator.
//!
//! `cargo bench -p scheduler --bench admission` prints the latency
//! percentiles of single decisions (the gateway's path, ticket included) at
//! 10,000 users, 200 groups and 1,000 GPUs, then criterion's measurements.

use std::time::Instant;

use criterion::{Criterion, criterion_group};
use rand::{Rng, SeedableRng};
use scheduler::admission::{Decision, Request, Scheduler, Tuning};
use scheduler::inventory::Cluster;
use scheduler::quota::{Amount, GroupQuota, QuotaConfig};
use scheduler::simulate::{Workload, simulate};

const USERS: u32 = 10_000;
const GROUPS: u32 = 200;

fn academy() -> (Scheduler, Vec<uuid::Uuid>, rand::rngs::StdRng) {
    let cluster = Cluster::parse("125x8 H100-80GB").unwrap();
    let mut quotas = QuotaConfig::default();
    for g in 0..GROUPS {
        let mut q = GroupQuota::new(format!("g{g}"));
        q.guaranteed.insert("H100-80GB".into(), 5);
        q.borrow_limit.insert("*".into(), Amount::Unlimited);
        q.weight = f64::from(1 + g % 3);
        quotas.groups.push(q);
    }
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut running = Vec::new();
    // 950 GPUs busy, then 500 starts waiting.
    for i in 0..1450u32 {
        let (id, d) = request(&mut s, &mut rng, u64::from(i));
        if matches!(d, Decision::Admitted(_)) {
            running.push(id);
        }
    }
    (s, running, rng)
}

fn request(s: &mut Scheduler, rng: &mut rand::rngs::StdRng, now: u64) -> (uuid::Uuid, Decision) {
    let user = rng.random_range(0..USERS);
    let id = uuid::Uuid::from_u128(rng.random());
    let gpus = if rng.random::<f64>() < 0.9 { 1 } else { 2 };
    let req = Request {
        kernel: id,
        user: format!("u{user}"),
        group: Some(format!("g{}", user % GROUPS)),
        gpus,
        model: Some("H100-80GB".into()),
        role_max_gpus: Amount::Unlimited,
    };
    (id, s.request(req, 1_800_000_000_000 + now).0)
}

fn percentiles() {
    let (mut s, mut running, mut rng) = academy();
    let mut times = Vec::new();
    for i in 0..20_000u64 {
        // Churn: one kernel ends (admitting from the queue), one start arrives.
        let k = running.swap_remove(rng.random_range(0..running.len()));
        let t = Instant::now();
        let events = s.release(k, 1_800_000_100_000 + i);
        let release = t.elapsed();
        for e in events {
            if let scheduler::Event::Admitted { kernel, .. } = e {
                running.push(kernel);
            }
        }
        let t = Instant::now();
        let (id, d) = request(&mut s, &mut rng, 100_000 + i);
        times.push((t.elapsed(), release));
        if matches!(d, Decision::Admitted(_)) {
            running.push(id);
        }
    }
    let mut decide: Vec<f64> = times.iter().map(|t| t.0.as_secs_f64() * 1e6).collect();
    let mut release: Vec<f64> = times.iter().map(|t| t.1.as_secs_f64() * 1e6).collect();
    decide.sort_by(f64::total_cmp);
    release.sort_by(f64::total_cmp);
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    println!(
        "admission decision at {USERS} users, {GROUPS} groups, 1000 GPUs, {} queued: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        s.queued(),
        p(&decide, 0.5),
        p(&decide, 0.99),
        decide[decide.len() - 1]
    );
    println!(
        "release + dispatch: p50 {:.1} µs, p99 {:.1} µs",
        p(&release, 0.5),
        p(&release, 0.99)
    );
    let w = Workload::from_toml(include_str!("../../examples/capacity/academy-term.toml")).unwrap();
    let t = Instant::now();
    let r = simulate(Cluster::parse("125x8 H100-80GB").unwrap(), &w);
    println!(
        "simulated a {}-week term for {} users ({} sessions) in {:.2} s",
        w.weeks,
        r.users,
        r.sessions,
        t.elapsed().as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let (mut s, mut running, mut rng) = academy();
    let mut i = 0u64;
    c.bench_function("release_then_request_at_10k_users_1000_gpus", |b| {
        b.iter(|| {
            i += 1;
            let k = running.swap_remove(rng.random_range(0..running.len()));
            for e in s.release(k, 1_800_000_100_000 + i) {
                if let scheduler::Event::Admitted { kernel, .. } = e {
                    running.push(kernel);
                }
            }
            let (id, d) = request(&mut s, &mut rng, 100_000 + i);
            if matches!(d, Decision::Admitted(_)) {
                running.push(id);
            }
        })
    });
    let w = Workload::from_toml(include_str!("../../examples/capacity/academy-term.toml")).unwrap();
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.bench_function("ten_week_term_10k_users", |b| {
        b.iter(|| simulate(Cluster::parse("125x8 H100-80GB").unwrap(), &w))
    });
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
