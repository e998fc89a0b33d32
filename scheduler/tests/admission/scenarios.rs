//! Admission scenarios, one behaviour each: quotas and FIFO, refusals,
//! reclaim, fair share, weights, big requests, CPU kernels, restore.

use scheduler::admission::{Decision, Event, Limit, Scheduler, Tuning};
use scheduler::inventory::Cluster;
use scheduler::quota::{Amount, QuotaConfig, UserLimits};
use uuid::Uuid;

use crate::helpers::*;

/// The scenario: 4 GPUs, a group quota of 3, no borrowing, 100 starts.
#[test]
fn a_group_never_exceeds_its_quota_and_its_queue_is_fifo() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![group("cohort", "H100-80GB", 3, Amount::Finite(0))],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    let mut running = Vec::new();
    let mut queued = Vec::new();
    for i in 0..100 {
        let r = req(&format!("u{i}"), "cohort", 1);
        let id = r.kernel;
        match s.request(r, 1000).0 {
            Decision::Admitted(g) => {
                assert_eq!(g.devices.len(), 1);
                assert!(!g.real);
                running.push(id);
            }
            Decision::Queued(t) => {
                assert_eq!(t.position, queued.len() + 1, "positions are 1..N");
                assert!(
                    t.waiting_for.contains("holds 3 of its 3"),
                    "{}",
                    t.waiting_for
                );
                queued.push(id);
            }
            Decision::Refused(r) => panic!("refused: {r:?}"),
        }
        s.check_invariants();
    }
    assert_eq!(running.len(), 3);
    assert_eq!(s.group_usage("cohort", "H100-80GB"), 3);
    // Deleting running kernels admits queued ones in order.
    let mut next = 0;
    while let Some(k) = running.pop() {
        let events = s.release(k, 2000);
        let got = admitted(&events);
        if next < queued.len() {
            assert_eq!(got, vec![queued[next]]);
            running.insert(0, queued[next]);
            next += 1;
            if next < queued.len() {
                assert_eq!(s.ticket(queued[next], 2000).unwrap().position, 1);
            }
        } else {
            assert!(got.is_empty());
        }
        s.check_invariants();
    }
    assert_eq!(next, 97);
}

#[test]
fn refusals_name_the_limit_and_the_usage() {
    let cluster = Cluster::parse("2x2 H100-80GB").unwrap();
    let mut g = group("team", "H100-80GB", 2, Amount::Finite(0));
    g.user_limits = UserLimits {
        max_kernels: Some(Amount::Finite(2)),
        max_gpus: Some(Amount::Finite(2)),
        gpu_hours: Some(1.0),
        period: None,
    };
    let quotas = QuotaConfig {
        groups: vec![g],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    let t0 = 1_800_000_000_000; // 2027-01-15
    // Role cap.
    let mut r = req("ada", "team", 2);
    r.role_max_gpus = Amount::Finite(1);
    let Decision::Refused(f) = s.request(r, t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::RoleGpus);
    // More than a node has, more than the group may hold, an unknown model.
    let Decision::Refused(f) = s.request(req("ada", "team", 3), t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::Capacity);
    assert!(f.message.contains("most on one node is 2"), "{}", f.message);
    let mut r = req("ada", "team", 1);
    r.model = Some("A100".into());
    let Decision::Refused(f) = s.request(r, t0).0 else {
        panic!()
    };
    assert!(f.message.contains("no A100 GPU"), "{}", f.message);
    // Caps.
    let a = req("ada", "team", 1);
    let a_id = a.kernel;
    assert!(matches!(s.request(a, t0).0, Decision::Admitted(_)));
    let Decision::Refused(f) = s.request(req("ada", "team", 2), t0).0 else {
        panic!()
    };
    assert_eq!((f.limit, f.current, f.maximum), (Limit::UserGpus, 1.0, 2.0));
    assert!(matches!(
        s.request(req("ada", "team", 0), t0).0,
        Decision::Admitted(_)
    ));
    let Decision::Refused(f) = s.request(req("ada", "team", 0), t0).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::UserKernels);
    assert!(f.message.contains("shut one down"), "{}", f.message);
    // Budget: one GPU for 1.5 h exceeds 1 GPU-hour; the refusal says when it resets.
    s.release(a_id, t0 + 3 * HOUR / 2);
    let Decision::Refused(f) = s.request(req("ada", "team", 1), t0 + 2 * HOUR).0 else {
        panic!()
    };
    assert_eq!(f.limit, Limit::GpuBudget);
    assert!(f.current >= 1.5 && f.maximum == 1.0);
    let resets = f.resets_at.unwrap();
    assert!(resets > t0 && resets <= t0 + 7 * 24 * HOUR, "{f:?}");
    assert!(f.message.contains("resets at"), "{}", f.message);
    // After the reset it is admitted again.
    assert!(matches!(
        s.request(req("ada", "team", 1), resets + 1).0,
        Decision::Admitted(_)
    ));
    s.check_invariants();
}

#[test]
fn borrowed_gpus_are_reclaimed_for_the_owner() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![
            group("class", "H100-80GB", 3, Amount::Finite(0)),
            group("research", "H100-80GB", 1, Amount::Finite(3)),
        ],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    // Research borrows the class's idle GPUs.
    let mut lent = Vec::new();
    for i in 0..4 {
        let r = req(&format!("r{i}"), "research", 1);
        lent.push(r.kernel);
        let Decision::Admitted(g) = s.request(r, 1000 + i).0 else {
            panic!()
        };
        assert_eq!(g.borrowed, u32::from(i > 0));
    }
    // The class needs its guarantee: the newest borrowed kernel is reclaimed.
    let c = req("c0", "class", 1);
    let c_id = c.kernel;
    let (d, events) = s.request(c, 5000);
    assert!(matches!(d, Decision::Queued(_)));
    let reclaimed: Vec<Uuid> = events
        .iter()
        .filter_map(|e| match e {
            Event::Reclaim {
                kernel,
                for_group,
                deadline,
            } => {
                assert_eq!(for_group, "class");
                assert_eq!(*deadline, 5000 + Tuning::default().reclaim_grace_ms);
                Some(*kernel)
            }
            _ => None,
        })
        .collect();
    assert_eq!(reclaimed, vec![lent[3]]);
    // A second class request reclaims another, not the same one again.
    let (_, events) = s.request(req("c1", "class", 1), 6000);
    assert!(matches!(&events[..], [Event::Reclaim { kernel, .. }] if *kernel == lent[2]));
    // A research request does not jump ahead when the GPU comes back.
    let (d, _) = s.request(req("r9", "research", 1), 6500);
    assert!(matches!(d, Decision::Queued(_)));
    let events = s.release(lent[3], 7000);
    assert_eq!(admitted(&events), vec![c_id]);
    s.check_invariants();
}

#[test]
fn fair_share_serves_the_lighter_group_first_and_the_starved_before_all() {
    let cluster = Cluster::parse("1x2 H100-80GB").unwrap();
    let unlimited = |n| group(n, "H100-80GB", 0, Amount::Unlimited);
    let quotas = QuotaConfig {
        groups: vec![unlimited("heavy"), unlimited("light")],
        users: vec![],
    };
    let tuning = Tuning {
        starvation_ms: HOUR,
        ..Tuning::default()
    };
    let mut s = Scheduler::new(cluster, quotas, tuning);
    let h1 = req("h1", "heavy", 1);
    let h1_id = h1.kernel;
    s.request(h1, 0);
    s.request(req("h2", "heavy", 1), 0);
    let h3 = req("h3", "heavy", 1);
    let h3_id = h3.kernel;
    s.request(h3, 10);
    let l1 = req("l1", "light", 1);
    let l1_id = l1.kernel;
    s.request(l1, 20);
    // light holds nothing, so it goes first although it came later.
    assert_eq!(s.order("H100-80GB", 30), vec![l1_id, h3_id]);
    assert_eq!(s.ticket(l1_id, 30).unwrap().position, 1);
    assert_eq!(admitted(&s.release(h1_id, 40)), vec![l1_id]);
    // A request waiting past the starvation limit goes before fairer ones.
    let l2 = req("l2", "light", 1);
    let l2_id = l2.kernel;
    s.request(l2, 50);
    assert_eq!(s.order("H100-80GB", 60)[0], l2_id);
    assert_eq!(s.order("H100-80GB", 10 + HOUR)[0], h3_id);
    s.check_invariants();
}

/// Dominant share is divided by the group's weight, and recent use counts
/// (decaying with its half-life): two groups holding the same GPUs are
/// served by weight, and of two equal groups the one that used less lately
/// goes first.
#[test]
fn weights_and_recent_use_order_the_queue() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let unlimited = |n: &str, weight: f64| {
        let mut g = group(n, "H100-80GB", 0, Amount::Unlimited);
        g.weight = weight;
        g
    };
    let quotas = QuotaConfig {
        groups: vec![
            unlimited("light-weight", 1.0),
            unlimited("heavy-weight", 3.0),
        ],
        users: vec![],
    };
    let mut s = Scheduler::new(cluster, quotas, Tuning::default());
    // Each group holds 2 of the 4 GPUs; both queue one more.
    let mut held = Vec::new();
    for g in ["light-weight", "heavy-weight"] {
        for u in ["a", "b"] {
            let r = req(&format!("{g}-{u}"), g, 1);
            held.push(r.kernel);
            assert!(matches!(s.request(r, 0).0, Decision::Admitted(_)));
        }
    }
    let light = req("light-weight-c", "light-weight", 1);
    let light_id = light.kernel;
    s.request(light, 10);
    let heavy = req("heavy-weight-c", "heavy-weight", 1);
    let heavy_id = heavy.kernel;
    s.request(heavy, 20);
    // Same use, but weight 3 divides the share by 3: heavy-weight first,
    // although it asked later.
    assert_eq!(s.order("H100-80GB", 30), vec![heavy_id, light_id]);
    s.check_invariants();

    // Equal weights, equal current use: the group that used more lately waits.
    let cluster = Cluster::parse("1x2 H100-80GB").unwrap();
    let quotas = QuotaConfig {
        groups: vec![
            unlimited("busy", 1.0),
            unlimited("idle", 1.0),
            unlimited("other", 1.0),
        ],
        users: vec![],
    };
    let tuning = Tuning::default();
    let half_life = tuning.usage_half_life_ms;
    let mut s = Scheduler::new(cluster, quotas, tuning);
    // busy held both GPUs for a half-life, then let go.
    let b1 = req("b1", "busy", 1);
    let b2 = req("b2", "busy", 1);
    let (b1_id, b2_id) = (b1.kernel, b2.kernel);
    s.request(b1, 0);
    s.request(b2, 0);
    s.release(b1_id, half_life);
    s.release(b2_id, half_life);
    // Both GPUs are taken again, by nobody's group in question.
    let o1 = req("o1", "other", 1);
    let o2 = req("o2", "other", 1);
    let o1_id = o1.kernel;
    s.request(o1, half_life + 1);
    s.request(o2, half_life + 1);
    let busy = req("b3", "busy", 1);
    let busy_id = busy.kernel;
    s.request(busy, half_life + 2);
    let idle = req("i1", "idle", 1);
    let idle_id = idle.kernel;
    s.request(idle, half_life + 3);
    assert_eq!(s.order("H100-80GB", half_life + 4), vec![idle_id, busy_id]);
    assert_eq!(admitted(&s.release(o1_id, half_life + 5)), vec![idle_id]);
    s.check_invariants();
}

#[test]
fn a_big_request_is_not_starved_by_small_ones() {
    let cluster = Cluster::parse("1x4 H100-80GB").unwrap();
    let mut s = Scheduler::new(cluster, QuotaConfig::default(), Tuning::default());
    let mut held = Vec::new();
    for i in 0..4 {
        let r = req(&format!("s{i}"), "none", 1);
        held.push(r.kernel);
        s.request(r, i);
    }
    let big = req("big", "none", 4);
    let big_id = big.kernel;
    assert!(matches!(s.request(big, 10).0, Decision::Queued(_)));
    // Small requests arriving later wait behind it even when one GPU is free.
    let small = req("late", "none", 1);
    s.release(held.pop().unwrap(), 20);
    assert!(matches!(s.request(small, 21).0, Decision::Queued(_)));
    let mut got = Vec::new();
    for k in held {
        got.extend(admitted(&s.release(k, 30)));
    }
    assert_eq!(got, vec![big_id]);
    s.check_invariants();
}

#[test]
fn cpu_kernels_count_against_kernel_caps_only() {
    let mut s = Scheduler::new(
        Cluster::default(),
        QuotaConfig::default(),
        Tuning::default(),
    );
    let Decision::Admitted(g) = s.request(req("ada", "x", 0), 0).0 else {
        panic!()
    };
    assert!(g.devices.is_empty() && g.model.is_none());
    let mut r = req("ada", "x", 1);
    r.model = None;
    let Decision::Refused(f) = s.request(r, 0).0 else {
        panic!()
    };
    assert!(f.message.contains("no GPUs"), "{}", f.message);
    s.check_invariants();
}

#[test]
fn a_restarted_gateway_restores_allocations() {
    let cluster = Cluster::parse("2x2 H100-80GB").unwrap();
    let mut s = Scheduler::new(cluster.clone(), QuotaConfig::default(), Tuning::default());
    let r = req("ada", "x", 2);
    let id = r.kernel;
    let Decision::Admitted(g) = s.request(r, 0).0 else {
        panic!()
    };
    let mut fresh = Scheduler::new(cluster, QuotaConfig::default(), Tuning::default());
    assert!(fresh.restore(id, "ada", None, &g, 0));
    assert_eq!(fresh.grant_of(id).unwrap(), g);
    fresh.check_invariants();
    // The same devices cannot be restored twice.
    assert!(!fresh.restore(Uuid::new_v4(), "bob", None, &g, 0));
    fresh.check_invariants();
}
