//! Tests of the classroom tables: exactly-once gradings, restart recovery.

use super::*;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("lab.db")).unwrap();
    store.save_assignment("ml", "hw1", "{}", 10.0).unwrap();
    (dir, store)
}

fn submit(store: &Store, id: &str) -> i64 {
    store
        .add_submission(&SubmissionRow {
            id: id.into(),
            course: "ml".into(),
            assignment: "hw1".into(),
            user_name: "ada".into(),
            submitted: now(),
            sha256: "x".into(),
        })
        .unwrap()
}

fn graded() -> GradingOutcome {
    GradingOutcome::Graded {
        scores: "[]".into(),
        notes: "[]".into(),
        score: 1.0,
        max_score: 10.0,
    }
}

#[test]
fn a_grading_interrupted_by_a_restart_is_recorded_once_by_its_new_attempt() {
    let (_dir, store) = store();
    let id = submit(&store, "s1");
    let first = store.take_grading(id).unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    // Taken once only.
    assert!(store.take_grading(id).unwrap().is_none());
    // The gateway stops here and starts again.
    assert_eq!(store.requeue_interrupted_gradings(3).unwrap(), 1);
    let second = store.take_grading(id).unwrap().unwrap();
    assert_eq!(second.attempts, 2);
    // The old attempt's late result is dropped; the new one counts.
    assert!(!store.finish_grading(id, 1, &graded()).unwrap());
    assert!(store.finish_grading(id, 2, &graded()).unwrap());
    assert!(!store.finish_grading(id, 2, &graded()).unwrap());
    let rows = store.gradings("s1").unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, GradingState::Graded);
}

#[test]
fn a_submission_that_keeps_stopping_the_gateway_is_failed_not_run_again() {
    let (_dir, store) = store();
    let id = submit(&store, "s1");
    for _ in 0..3 {
        store.take_grading(id).unwrap().unwrap();
        store.requeue_interrupted_gradings(3).unwrap();
    }
    let row = store.grading(id).unwrap().unwrap();
    assert_eq!(row.state, GradingState::Failed);
    assert!(row.reason.unwrap().contains("3 times"));
}

#[test]
fn a_regrade_is_a_new_row_beside_the_old_one() {
    let (_dir, store) = store();
    let id = submit(&store, "s1");
    store.take_grading(id).unwrap();
    store.finish_grading(id, 1, &graded()).unwrap();
    let again = store.queue_grading("s1").unwrap();
    assert_ne!(again, id);
    // Asking twice while one waits queues nothing more.
    assert_eq!(store.queue_grading("s1").unwrap(), again);
    let rows = store.gradings("s1").unwrap();
    assert_eq!(
        rows.iter().map(|r| r.state).collect::<Vec<_>>(),
        [GradingState::Graded, GradingState::Queued]
    );
}
