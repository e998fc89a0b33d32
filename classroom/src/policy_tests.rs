use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::*;

fn at(day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, minute, second)
        .unwrap()
}

fn dates() -> Dates {
    Dates {
        open: Some(at(1, 9, 0, 0)),
        due: Some(at(8, 9, 0, 0)),
        lock: Some(at(10, 9, 0, 0)),
    }
}

#[test]
fn the_window_follows_open_due_and_lock_with_the_due_date_itself_on_time() {
    let d = dates();
    assert_eq!(
        window(&d, None, at(1, 8, 59, 59)),
        Window::NotOpen {
            opens: at(1, 9, 0, 0)
        }
    );
    assert_eq!(window(&d, None, at(1, 9, 0, 0)), Window::Open);
    assert_eq!(window(&d, None, at(8, 9, 0, 0)), Window::Open);
    assert_eq!(
        window(&d, None, at(8, 9, 0, 1)),
        Window::Late {
            due: at(8, 9, 0, 0)
        }
    );
    assert_eq!(
        window(&d, None, at(10, 9, 0, 0)),
        Window::Locked {
            locked: at(10, 9, 0, 0)
        }
    );
    assert_eq!(
        window(&Dates::default(), None, at(1, 0, 0, 0)),
        Window::Open
    );
}

#[test]
fn an_extension_moves_the_due_and_lock_dates() {
    let d = dates();
    let ext = Some(Duration::days(3));
    assert_eq!(window(&d, ext, at(9, 9, 0, 0)), Window::Open);
    assert_eq!(
        window(&d, ext, at(12, 0, 0, 0)),
        Window::Late {
            due: at(11, 9, 0, 0)
        }
    );
    assert_eq!(
        window(&d, ext, at(13, 9, 0, 0)),
        Window::Locked {
            locked: at(13, 9, 0, 0)
        }
    );
    assert_eq!(
        window(&d, Some(Duration::days(-3)), at(9, 9, 0, 0)),
        Window::Late {
            due: at(8, 9, 0, 0)
        }
    );
    assert_eq!(
        window(&d, Some(Duration::MAX), at(30, 0, 0, 0)),
        Window::Open
    );
}

#[test]
fn submitting_before_opening_or_after_locking_is_refused_naming_the_date() {
    let d = dates();
    let early = may_submit(&d, None, at(1, 0, 0, 0)).unwrap_err();
    assert_eq!(
        early.to_string(),
        "submissions are not open yet: they open at 2026-03-01 09:00:00 UTC"
    );
    let late = may_submit(&d, None, at(11, 0, 0, 0)).unwrap_err();
    assert_eq!(
        late.to_string(),
        "submissions are closed: they closed at 2026-03-10 09:00:00 UTC"
    );
    assert_eq!(
        may_submit(&d, None, at(9, 0, 0, 0)),
        Ok(Window::Late {
            due: at(8, 9, 0, 0)
        })
    );
}

#[test]
fn a_percentage_penalty_counts_every_started_unit_and_stops_at_the_cap() {
    let due = at(8, 9, 0, 0);
    let penalty = LatePenalty::Percent {
        percent: 10.0,
        per: PenaltyUnit::Day,
        cap: 30.0,
    };
    assert_eq!(penalty.deduction(8.0, 10.0, due, due), 0.0);
    assert_eq!(penalty.deduction(8.0, 10.0, due, at(8, 9, 0, 1)), 1.0);
    assert_eq!(penalty.deduction(8.0, 10.0, due, at(9, 9, 0, 0)), 1.0);
    assert_eq!(penalty.deduction(8.0, 10.0, due, at(9, 9, 0, 1)), 2.0);
    assert_eq!(penalty.deduction(8.0, 10.0, due, at(20, 0, 0, 0)), 3.0);
    let nanosecond = due + Duration::nanoseconds(1);
    assert_eq!(penalty.deduction(8.0, 10.0, due, nanosecond), 1.0);
    let hourly = LatePenalty::Percent {
        percent: 5.0,
        per: PenaltyUnit::Hour,
        cap: 100.0,
    };
    assert_eq!(hourly.deduction(10.0, 10.0, due, at(8, 11, 30, 0)), 1.5);
}

#[test]
fn a_penalty_never_takes_a_total_below_zero() {
    let due = at(8, 9, 0, 0);
    let heavy = LatePenalty::Percent {
        percent: 50.0,
        per: PenaltyUnit::Hour,
        cap: 100.0,
    };
    assert_eq!(heavy.deduction(2.0, 10.0, due, at(9, 0, 0, 0)), 2.0);
    assert_eq!(
        LatePenalty::Zero.deduction(7.5, 10.0, due, at(8, 9, 0, 1)),
        7.5
    );
    assert_eq!(LatePenalty::Zero.deduction(7.5, 10.0, due, due), 0.0);
    assert_eq!(
        LatePenalty::None.deduction(7.5, 10.0, due, at(30, 0, 0, 0)),
        0.0
    );
    let nonsense = LatePenalty::Percent {
        percent: f64::NAN,
        per: PenaltyUnit::Day,
        cap: -5.0,
    };
    assert_eq!(nonsense.deduction(5.0, 10.0, due, at(9, 0, 0, 0)), 0.0);
    assert_eq!(heavy.deduction(f64::NAN, 10.0, due, at(9, 0, 0, 0)), 0.0);
}

#[test]
fn hidden_results_show_after_the_engineers_own_due_date() {
    let policy = Policy {
        dates: dates(),
        ..Policy::default()
    };
    assert!(!hidden_visible(&policy, None, at(8, 9, 0, 0), false));
    assert!(hidden_visible(&policy, None, at(8, 9, 0, 1), false));
    assert!(!hidden_visible(
        &policy,
        Some(Duration::days(1)),
        at(8, 10, 0, 0),
        false
    ));
    assert!(hidden_visible(&policy, None, at(1, 0, 0, 0), true));
    let never = Policy {
        hidden: HiddenResults::Never,
        ..policy.clone()
    };
    assert!(!hidden_visible(&never, None, at(30, 0, 0, 0), true));
    let published = Policy {
        hidden: HiddenResults::WhenPublished,
        ..policy.clone()
    };
    assert!(!hidden_visible(&published, None, at(30, 0, 0, 0), false));
    assert!(hidden_visible(&published, None, at(1, 0, 0, 0), true));
    let undated = Policy::default();
    assert!(!hidden_visible(&undated, None, at(30, 0, 0, 0), false));
}

#[test]
fn policies_are_stored_as_tagged_snake_case_json_with_defaults() {
    let policy = Policy {
        late: LatePenalty::Percent {
            percent: 10.0,
            per: PenaltyUnit::Day,
            cap: 50.0,
        },
        counts: Counts::Best,
        ..Policy::default()
    };
    let v = serde_json::to_value(&policy).unwrap();
    assert_eq!(
        v["late"],
        json!({"kind": "percent", "percent": 10.0, "per": "day", "cap": 50.0})
    );
    assert_eq!(v["counts"], "best");
    assert_eq!(v["hidden"], "after_due");
    assert_eq!(v["cell_timeout_s"], 30);
    assert_eq!(v["memory_mb"], 2048);
    let back: Policy = serde_json::from_value(v).unwrap();
    assert_eq!(back, policy);
    let partial: Policy = serde_json::from_value(json!({"late": {"kind": "zero"}})).unwrap();
    assert_eq!(partial.late, LatePenalty::Zero);
    assert_eq!(partial.output_limit_bytes, 1024 * 1024);
    assert_eq!(partial.total_timeout_s, 600);
    // A policy stored before `memory_mb` existed gets the default.
    assert_eq!(partial.memory_mb, 2048);
    let w = serde_json::to_value(Window::Late {
        due: at(8, 9, 0, 0),
    })
    .unwrap();
    assert_eq!(w["kind"], "late");
}

#[test]
fn a_policy_with_dates_out_of_order_or_odd_numbers_is_invalid() {
    assert_eq!(Policy::default().validate(), Ok(()));
    let backwards = Policy {
        dates: Dates {
            open: None,
            due: Some(at(9, 0, 0, 0)),
            lock: Some(at(8, 0, 0, 0)),
        },
        ..Policy::default()
    };
    assert!(
        backwards
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dates.lock")
    );
    let odd = Policy {
        late: LatePenalty::Percent {
            percent: 150.0,
            per: PenaltyUnit::Day,
            cap: 10.0,
        },
        ..Policy::default()
    };
    assert!(odd.validate().is_err());
    let zero = Policy {
        cell_timeout_s: 0,
        ..Policy::default()
    };
    assert!(zero.validate().is_err());
}

#[test]
fn a_memory_limit_below_what_a_kernel_needs_or_absurdly_high_is_invalid() {
    for (mb, ok) in [
        (0, false),
        (512, false),
        (MEMORY_MB_MIN, true),
        (8192, true),
        (MEMORY_MB_MAX, true),
        (MEMORY_MB_MAX + 1, false),
        (u64::MAX, false),
    ] {
        let policy = Policy {
            memory_mb: mb,
            ..Policy::default()
        };
        match policy.validate() {
            Ok(()) => assert!(ok, "{mb} MiB passed"),
            Err(e) => {
                assert!(!ok, "{mb} MiB: {e}");
                assert!(e.to_string().contains("memory_mb"), "{e}");
            }
        }
    }
}

#[test]
fn the_daily_cap_counts_submissions_of_the_utc_day_and_says_when_the_next_one_may_come() {
    let policy = Policy {
        submissions_per_day: Some(2),
        ..Policy::default()
    };
    let at = |h, m| Utc.with_ymd_and_hms(2027, 1, 15, h, m, 0).unwrap();
    let yesterday = at(0, 0) - Duration::minutes(1);
    // Two yesterday do not count today.
    assert_eq!(
        within_caps(&policy, &[yesterday, yesterday], at(9, 0)),
        Ok(())
    );
    assert_eq!(
        within_caps(&policy, &[yesterday, at(8, 0)], at(9, 0)),
        Ok(())
    );
    let refused = within_caps(&policy, &[at(0, 0), at(8, 0)], at(23, 59)).unwrap_err();
    assert_eq!(
        refused,
        PolicyError::DailyCap {
            cap: 2,
            next: Utc.with_ymd_and_hms(2027, 1, 16, 0, 0, 0).unwrap()
        }
    );
    assert!(
        refused.to_string().contains("2027-01-16 00:00:00 UTC"),
        "{refused}"
    );
    // At midnight UTC the allowance is back.
    assert_eq!(
        within_caps(&policy, &[at(0, 0), at(8, 0)], at(0, 0) + Duration::days(1)),
        Ok(())
    );
}

#[test]
fn the_total_cap_counts_every_earlier_submission() {
    let policy = Policy {
        max_submissions: Some(3),
        ..Policy::default()
    };
    let t = Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap();
    assert_eq!(within_caps(&policy, &[t, t], t), Ok(()));
    assert_eq!(
        within_caps(&policy, &[t, t, t], t),
        Err(PolicyError::TotalCap { cap: 3 })
    );
    assert_eq!(within_caps(&Policy::default(), &[t; 100], t), Ok(()));
}

#[test]
fn a_cap_of_zero_is_invalid_and_old_policies_have_none() {
    for policy in [
        Policy {
            submissions_per_day: Some(0),
            ..Policy::default()
        },
        Policy {
            max_submissions: Some(0),
            ..Policy::default()
        },
    ] {
        assert!(policy.validate().is_err());
    }
    let old: Policy = serde_json::from_value(json!({"cell_timeout_s": 10})).unwrap();
    assert_eq!((old.submissions_per_day, old.max_submissions), (None, None));
}
