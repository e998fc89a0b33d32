//! A small term end to end, and workloads that must be refused.

use super::*;

const TERM: &str = r#"
weeks = 2
seed = 7
competition_weeks = [2]
[[cohort]]
name = "cohort"
count = 2
size = 20
guaranteed = { "H100-80GB" = 4 }
borrow_limit = { "*" = "unlimited" }
model = "H100-80GB"
user_limits = { max_kernels = 1 }
"#;

#[test]
fn a_small_term_runs_and_reports() {
    let w = Workload::from_toml(TERM).unwrap();
    assert_eq!(w.users(), 40);
    let cluster = Cluster::parse("2x4 H100-80GB").unwrap();
    let r = simulate(cluster.clone(), &w);
    assert_eq!(r.users, 40);
    assert!(r.sessions > 100, "{}", r.sessions);
    assert!(r.admitted > 0 && r.admitted <= r.sessions);
    assert!(
        r.gpu_utilisation > 0.0 && r.gpu_utilisation <= 1.0,
        "{}",
        r.gpu_utilisation
    );
    assert!(r.wait_p50_s <= r.wait_p95_s && r.wait_p95_s <= r.wait_p99_s);
    // Classes of 18 on 8 GPUs: some wait, and some give up after 30 minutes.
    assert!(r.peak_queue > 0);
    assert!(r.wait_max_s <= 30.0 * 60.0);
    // Those who gave up waited their whole patience, and that counts.
    assert!(!r.abandoned.is_empty(), "{:?}", r.abandoned);
    assert_eq!(r.wait_max_s, 30.0 * 60.0);
    assert!(r.svg().contains("<svg"));
    assert!(r.text().contains("GPU utilisation"));
    let chart = r.weekly_chart();
    assert_eq!(chart.lines().count(), 3, "{chart}");
    assert!(chart.lines().nth(1).unwrap().contains('#'), "{chart}");
    // Same seed, same term.
    let again = simulate(cluster, &w);
    assert_eq!(
        (again.admitted, again.peak_queue),
        (r.admitted, r.peak_queue)
    );
}

#[test]
fn bad_workloads_say_why() {
    assert!(Workload::from_toml("weeks = 2\n").is_err());
    let e =
        Workload::from_toml("[[cohort]]\nname = \"a\"\nsize = 1\nattendance = 2.0\n").unwrap_err();
    assert!(e.to_string().contains("attendance"), "{e}");
}
