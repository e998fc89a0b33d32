//! Worked examples from scikit-learn's and ml_metrics' documentation, and
//! the checks a solution and a submission pass. The agreement with
//! scikit-learn on generated data is `tests/test_competition_metrics.py`.

use super::labels::{accuracy, balanced_accuracy, prf, quadratic_weighted_kappa};
use super::ranking::{average_precision_at_k, log_loss, log_loss_binary, map_at_k, roc_auc};
use super::regression::{mae, r2, rmse, rmsle};
use super::*;

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn label_metrics_match_sklearn_docs() {
    let t = s(&["0", "1", "2", "0", "1", "2"]);
    let p = s(&["0", "2", "1", "0", "0", "1"]);
    close(
        prf(&t, &p, Rate::F1, &Average::Macro).unwrap(),
        0.26666666666666666,
    );
    close(prf(&t, &p, Rate::F1, &Average::Micro).unwrap(), 1.0 / 3.0);
    close(
        prf(&t, &p, Rate::Precision, &Average::Macro).unwrap(),
        0.2222222222222222,
    );
    close(accuracy(&t, &p).unwrap(), 1.0 / 3.0);
    let t = s(&["0", "1", "0", "0", "1", "0"]);
    let p = s(&["0", "1", "0", "0", "0", "1"]);
    close(balanced_accuracy(&t, &p).unwrap(), 0.625);
    let binary = Average::Binary {
        positive: "1".into(),
    };
    close(prf(&t, &p, Rate::Recall, &binary).unwrap(), 0.5);
    close(prf(&t, &p, Rate::F1, &binary).unwrap(), 0.5);
    // Nothing positive anywhere: zero_division's 0; three labels: undefined.
    let zeros = s(&["0", "0"]);
    close(prf(&zeros, &zeros, Rate::F1, &binary).unwrap(), 0.0);
    assert!(
        prf(
            &s(&["0", "1", "2"]),
            &s(&["0", "1", "2"]),
            Rate::F1,
            &binary
        )
        .is_err()
    );
    assert!(prf(&s(&["0", "2"]), &s(&["0", "2"]), Rate::F1, &binary).is_err());
}

#[test]
fn kappa_uses_label_positions_and_is_undefined_for_one_label() {
    // sklearn: cohen_kappa_score([1,2,3,4], [1,2,4,4], weights="quadratic") = 0.9166666666666666
    close(
        quadratic_weighted_kappa(&[1, 2, 3, 4], &[1, 2, 4, 4]).unwrap(),
        0.9166666666666666,
    );
    // Labels 1, 5, 9 weigh as positions 0, 1, 2.
    close(
        quadratic_weighted_kappa(&[1, 5, 9], &[1, 5, 5]).unwrap(),
        quadratic_weighted_kappa(&[0, 1, 2], &[0, 1, 1]).unwrap(),
    );
    assert!(quadratic_weighted_kappa(&[3, 3], &[3, 3]).is_err());
}

#[test]
fn ranking_metrics_match_their_docs() {
    close(
        roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap(),
        0.75,
    );
    // A tie between a positive and a negative counts a half.
    close(roc_auc(&[false, true], &[0.5, 0.5]).unwrap(), 0.5);
    assert!(roc_auc(&[true, true], &[0.1, 0.2]).is_err());
    // sklearn: log_loss(["spam","ham","ham","spam"], [[.1,.9],[.9,.1],[.8,.2],[.35,.65]])
    close(
        log_loss(
            &[1, 0, 0, 1],
            &[0.1, 0.9, 0.9, 0.1, 0.8, 0.2, 0.35, 0.65],
            2,
        )
        .unwrap(),
        0.21616187468057912,
    );
    close(
        log_loss_binary(&[true, false, false, true], &[0.9, 0.1, 0.2, 0.65]).unwrap(),
        0.21616187468057912,
    );
    // A certain wrong answer costs -ln(eps), not infinity.
    close(
        log_loss_binary(&[true], &[0.0]).unwrap(),
        -(f64::EPSILON.ln()),
    );
    let r: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
    close(
        average_precision_at_k(&r, &s(&["6", "4", "7", "1", "2"]), 2),
        0.25,
    );
    close(
        average_precision_at_k(&r, &s(&["1", "1", "1", "1", "1"]), 5),
        0.2,
    );
    let actual = s(&["1 3 4", " 1  2 4", "1\t3"]);
    let predicted = vec![r.join(" "); 3];
    close(
        map_at_k(&actual, &predicted, 3).unwrap(),
        0.6851851851851851,
    );
}

#[test]
fn regression_metrics_match_sklearn_docs() {
    let t = [3.0, -0.5, 2.0, 7.0];
    let p = [2.5, 0.0, 2.0, 8.0];
    close(mae(&t, &p).unwrap(), 0.5);
    close(rmse(&t, &p).unwrap(), 0.375f64.sqrt());
    close(r2(&t, &p).unwrap(), 0.9486081370449679);
    close(
        rmsle(&[3.0, 5.0, 2.5, 7.0], &[2.5, 5.0, 4.0, 8.0]).unwrap(),
        0.19932416558108,
    );
    close(r2(&[1.0, 1.0], &[1.0, 1.0]).unwrap(), 1.0);
    close(r2(&[1.0, 1.0], &[1.0, 2.0]).unwrap(), 0.0);
    assert!(r2(&[1.0], &[1.0]).is_err());
}

fn spec(json: &str) -> Result<Metric, String> {
    serde_json::from_str::<Metric>(json).map_err(|e| e.to_string())
}

#[test]
fn metric_specs_are_checked_and_round_trip() {
    let f1 = spec(r#"{"name":"f1","average":"binary","positive":"1"}"#).unwrap();
    assert_eq!(
        f1,
        Metric::Rates {
            rate: Rate::F1,
            average: Average::Binary {
                positive: "1".into()
            }
        }
    );
    assert_eq!(spec(&serde_json::to_string(&f1).unwrap()).unwrap(), f1);
    for (bad, says) in [
        (r#"{"name":"f1","average":"binary"}"#, "needs `positive`"),
        (r#"{"name":"f1"}"#, "needs `average`"),
        (r#"{"name":"accuracy","k":3}"#, "takes no `k`"),
        (r#"{"name":"map_at_k","k":0}"#, "between 1 and 1000"),
        (r#"{"name":"log_loss"}"#, "either `positive`"),
        (r#"{"name":"log_loss","classes":["a","a"]}"#, "distinct"),
        (r#"{"name":"auc"}"#, "unknown metric"),
        (r#"{"name":"mae","weights":[1]}"#, "unknown field"),
    ] {
        let err = spec(bad).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
}

const SOLUTION: &str =
    "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,0,Private\ne,1,Ignored\n";

fn auc() -> Metric {
    Metric::RocAuc {
        positive: "1".into(),
    }
}

fn solution() -> Solution {
    Solution::parse(SOLUTION.as_bytes(), 1 << 20, &Columns::default(), &auc()).unwrap()
}

fn read(csv: &str) -> Result<Predictions, Rejection> {
    submission::read(
        csv.as_bytes(),
        1 << 20,
        &Columns::default(),
        &auc(),
        &solution(),
    )
}

#[test]
fn a_valid_submission_is_scored_on_both_boards_in_any_row_and_column_order() {
    let p = read("\u{feff}target, id\n0.9,a\n0.2,b\n0.1,c\n0.8,d\n0.5,e\n").unwrap();
    let scores = score(&auc(), &solution(), p).unwrap();
    assert_eq!(
        scores,
        Scores {
            public: 1.0,
            private: 0.0
        }
    );
}

#[test]
fn a_rejection_names_line_and_column_of_each_problem() {
    let err = read("id,target,extra\na,1,x\n").unwrap_err().to_string();
    assert!(
        err.contains(r#"line 1, column "extra": is not a column of this competition"#),
        "{err}"
    );
    let err = read("id,target\na,0.5\na,0.4\nb,NaN\nzz,1\nc,inf\nd,x\ne\n").unwrap_err();
    let text = err.to_string();
    for says in [
        r#"line 3, column "id": id "a" is also on line 2"#,
        r#"line 4, column "target": is NaN"#,
        r#"line 5, column "id": id "zz" is not in the test set"#,
        r#"line 6, column "target": is infinite"#,
        r#"line 7, column "target": "x" is not a number"#,
        "line 8: has 1 fields; the header has 2",
        r#"column "id": 1 id of the test set is missing: "e""#,
        "the file has 7 rows; the test set has 5",
    ] {
        assert!(text.contains(says), "missing {says:?} in {text}");
    }
    let err = read("id,target\n").unwrap_err().to_string();
    assert!(err.contains("5 ids of the test set are missing"), "{err}");
    let big = "x".repeat(100);
    let err =
        submission::read(big.as_bytes(), 10, &Columns::default(), &auc(), &solution()).unwrap_err();
    assert_eq!(err.to_string(), "the file is 100 bytes; the limit is 10");
    let err = read("id,target\na,\u{0}\u{0}\n").unwrap_err().to_string();
    assert!(err.contains("is not a number"), "{err}");
}

#[test]
fn rejections_never_quote_a_target_and_keep_twenty_problems() {
    let rows: String = (0..50).map(|i| format!("x{i},0.5\n")).collect();
    let err = read(&format!("id,target\n{rows}")).unwrap_err();
    assert_eq!(err.problems.len(), problems::SHOWN);
    assert_eq!(
        err.problems.len() + err.more,
        52,
        "50 unknown ids, the missing ones, the row count"
    );
    // A binary average takes its two labels only, and does not list them.
    let acc = Metric::Rates {
        rate: Rate::F1,
        average: Average::Binary {
            positive: "1".into(),
        },
    };
    let sol = Solution::parse(SOLUTION.as_bytes(), 1 << 20, &Columns::default(), &acc).unwrap();
    let err = submission::read(
        b"id,target\na,7\nb,0\nc,0\nd,0\ne,0\n",
        1 << 20,
        &Columns::default(),
        &acc,
        &sol,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        r#"line 2, column "target": "7" is not a label of this competition"#
    );
}

#[test]
fn a_solution_is_checked_at_upload() {
    let check = |csv: &str, metric: &Metric| {
        Solution::parse(csv.as_bytes(), 1 << 20, &Columns::default(), metric)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let err = check("id,target\na,1\n", &auc()).unwrap_err();
    assert!(err.contains(r#"column "Usage": is missing"#), "{err}");
    let err = check(
        "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Secret\n",
        &auc(),
    )
    .unwrap_err();
    assert!(
        err.contains(r#"line 4, column "Usage": "Secret" is not Public, Private or Ignored"#),
        "{err}"
    );
    let err = check("id,target,Usage\na,1,Public\nb,0,Public\n", &auc()).unwrap_err();
    assert!(err.contains("no row is Private"), "{err}");
    let err = check(
        "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,1,Private\n",
        &auc(),
    )
    .unwrap_err();
    assert!(
        err.contains("the Private rows need both the positive label"),
        "{err}"
    );
    let err = check(
        "id,target,Usage\na,1.5,Public\n",
        &Metric::QuadraticWeightedKappa,
    )
    .unwrap_err();
    assert!(err.contains(r#""1.5" is not a whole number"#), "{err}");
    check(
        "id,target,Usage\na,1,Public\nb,0,Private\n",
        &Metric::Accuracy,
    )
    .unwrap();
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

fn rules() -> Rules {
    serde_json::from_value(serde_json::json!({
        "metric": {"name": "roc_auc", "positive": "1"},
        "start": "2027-01-01T00:00:00Z",
        "merger_deadline": "2027-01-20T00:00:00Z",
        "end": "2027-01-31T00:00:00Z",
        "daily_cap": 5,
        "total_cap": 40,
        "team_size": 3
    }))
    .unwrap()
}

#[test]
fn caps_count_per_utc_day_and_say_when_they_reset() {
    let r = rules();
    r.check().unwrap();
    let noon = at("2027-01-03T12:00:00Z");
    r.may_submit(noon, 4, 10).unwrap();
    let err = r.may_submit(noon, 5, 10).unwrap_err();
    assert_eq!(
        err.to_string(),
        "your team has made 5 of its 5 submissions today (UTC); the count resets at 2027-01-04 00:00:00 UTC"
    );
    assert!(matches!(
        r.may_submit(noon, 0, 40),
        Err(CapError::Total { made: 40, cap: 40 })
    ));
    assert!(matches!(
        r.may_submit(at("2026-12-31T23:59:59Z"), 0, 0),
        Err(CapError::Closed(_))
    ));
    assert!(matches!(
        r.may_submit(at("2027-01-31T00:00:00Z"), 0, 0),
        Err(CapError::Closed(_))
    ));
}

#[test]
fn merges_follow_kaggles_rule() {
    let r = rules();
    // Day 3 (Jan 1, 2, 3): at most 15 submissions between the two teams.
    let day3 = at("2027-01-03T08:00:00Z");
    r.may_merge(day3, (1, 2), 15).unwrap();
    assert_eq!(
        r.may_merge(day3, (1, 2), 16).unwrap_err(),
        MergeError::TooManySubmissions {
            made: 16,
            allowed: 15,
            days: 3
        }
    );
    assert_eq!(
        r.may_merge(day3, (2, 2), 0).unwrap_err(),
        MergeError::TooBig { size: 4, limit: 3 }
    );
    assert_eq!(
        r.may_merge(at("2027-01-20T00:00:01Z"), (1, 1), 0)
            .unwrap_err(),
        MergeError::Deadline
    );
}

#[test]
fn rules_that_contradict_themselves_are_refused() {
    let mut r = rules();
    r.merger_deadline = at("2027-02-01T00:00:00Z");
    assert!(
        r.check()
            .unwrap_err()
            .to_string()
            .contains("merger deadline")
    );
    let mut r = rules();
    r.columns.target = "id".into();
    assert!(r.check().is_err());
    let unknown =
        serde_json::from_value::<Rules>(serde_json::json!({"metric": {"name": "mae"}, "begin": 1}));
    assert!(unknown.is_err());
    assert!(!rules().private_visible(at("2027-01-30T00:00:00Z"), false));
    assert!(rules().private_visible(at("2027-01-31T00:00:00Z"), false));
    let mut staff = rules();
    staff.reveal = Reveal::ByStaff;
    assert!(!staff.private_visible(at("2027-03-01T00:00:00Z"), false));
    assert!(staff.private_visible(at("2027-01-05T00:00:00Z"), true));
}

fn sub(
    team: i64,
    submission: i64,
    minute: u32,
    public: f64,
    private: f64,
    selected: bool,
) -> Scored {
    Scored {
        team,
        submission,
        at: at("2027-01-02T10:00:00Z") + chrono::Duration::minutes(minute.into()),
        public,
        private,
        selected,
    }
}

#[test]
fn boards_rank_best_scores_with_ties_to_the_earlier_submission() {
    let scored = vec![
        sub(1, 10, 0, 0.80, 0.70, false),
        sub(1, 11, 5, 0.90, 0.60, false),
        sub(2, 20, 1, 0.90, 0.95, false),
        sub(3, 30, 2, 0.85, 0.99, false),
        sub(3, 31, 3, 0.50, 0.50, true),
    ];
    let public = board::public_board(&scored, true);
    let order: Vec<(i64, i64)> = public.iter().map(|s| (s.team, s.submission)).collect();
    // Teams 1 and 2 tie at 0.90; team 2's came earlier.
    assert_eq!(order, vec![(2, 20), (1, 11), (3, 30)]);
    assert_eq!(public[1].entries, 2);
    // Private: team 1 selected nothing, so its best 2 by public (11, 10) count
    // and 10's 0.70 is its best; team 3 selected 31, so 30's 0.99 does not count.
    let private = board::private_board(&scored, true, 2);
    let order: Vec<(i64, i64, f64)> = private
        .iter()
        .map(|s| (s.team, s.submission, s.score))
        .collect();
    assert_eq!(order, vec![(2, 20, 0.95), (1, 10, 0.70), (3, 31, 0.50)]);
    let moves = board::shake_up(&public, &private);
    assert_eq!(
        moves[2],
        Move {
            team: 3,
            public_rank: Some(3),
            private_rank: 3,
            change: Some(0)
        }
    );
    assert_eq!(moves[0].change, Some(0));
    // Lower is better: the same data turns around.
    let low = board::public_board(&scored, false);
    assert_eq!(low[0].team, 3);
    assert_eq!(board::shown(0.123456789, 4), "0.1235");
}

#[test]
fn a_kappa_over_every_distinct_rating_takes_linear_memory() {
    // 200,000 distinct ratings: a confusion matrix would be 320 GB.
    let t: Vec<i64> = (0..200_000).collect();
    let p: Vec<i64> = (0..200_000).map(|x| x + 1).collect();
    let k = quadratic_weighted_kappa(&t, &p).unwrap();
    assert!(k > 0.99 && k < 1.0, "{k}");
    // "3.0" is the rating 3, as sklearn reads it.
    let mut c = Column::new(Kind::Integer, 1);
    c.push(Kind::Integer, "3.0").unwrap();
    assert_eq!(c, Column::Integers(vec![3]));
    assert!(c.push(Kind::Integer, "3.5").is_err());
}

#[test]
fn a_solution_on_which_some_valid_submission_would_not_score_is_refused() {
    let check = |csv: &str, metric: &Metric| {
        Solution::parse(csv.as_bytes(), 1 << 20, &Columns::default(), metric)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let binary = Metric::Rates {
        rate: Rate::F1,
        average: Average::Binary {
            positive: "1".into(),
        },
    };
    // Two labels per board, three in all (an Ignored row's included).
    let err = check(
        "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,2,Private\n",
        &binary,
    )
    .unwrap_err();
    assert!(err.contains("exactly two labels"), "{err}");
    let err = check(
        "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,0,Private\ne,x,Ignored\n",
        &binary,
    )
    .unwrap_err();
    assert!(err.contains("exactly two labels"), "{err}");
    check(
        "id,target,Usage\na,1,Public\nb,0,Public\nc,1,Private\nd,0,Private\n",
        &binary,
    )
    .unwrap();
    // One rating on a board: a constant prediction would leave the kappa undefined there.
    let err = check(
        "id,target,Usage\na,3,Public\nb,3,Public\nc,1,Private\nd,2,Private\n",
        &Metric::QuadraticWeightedKappa,
    )
    .unwrap_err();
    assert!(
        err.contains("the Public rows need at least two different ratings"),
        "{err}"
    );
}

#[test]
fn missing_ids_are_listed_by_id_never_in_the_solutions_order() {
    // The solution lists z before a; a rejection must not give that order away.
    let sol = Solution::parse(
        b"id,target,Usage\nz,1,Public\ny,0,Private\na,0,Public\nb,1,Private\n",
        1 << 20,
        &Columns::default(),
        &auc(),
    )
    .unwrap();
    let err = submission::read(b"id,target\n", 1 << 20, &Columns::default(), &auc(), &sol)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(r#"4 ids of the test set are missing: "a", "b", "y", "z""#),
        "{err}"
    );
    // A repeated prediction counts once for MAP@K, with K past the list.
    close(
        average_precision_at_k(&s(&["a", "b"]), &s(&["a", "a", "b"]), 10),
        (1.0 + 2.0 / 3.0) / 2.0,
    );
}
