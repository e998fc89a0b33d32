//! Competitions over HTTP (issue 16): staff create one, upload its data
//! files and hidden solution, publish and reveal; participants join, submit
//! CSVs, pick finals and read the boards.
//!
//! What is valid, what it scores and who ranks where is decided by
//! `classroom::competition`; this module stores, routes and shows. Who may
//! see what: a competition's staff (its creator, and admins) see all of it;
//! anyone signed in sees a published competition, their own team's
//! submissions and the public board, and the private board and private
//! scores only once `Rules::private_visible` says so. Anything else is a 404,
//! as for a competition that does not exist.
//!
//! `files` keeps them on disk, `staff`, `participant`, `intake` and `teams` hold the routes,
//! `views` turns rows into JSON and CSV.

pub mod files;
pub mod intake;
pub mod participant;
pub mod rescore;
pub mod runner;
pub mod shares;
pub mod staff;
pub mod staging;
pub mod teams;
pub mod views;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use classroom::competition::{Rules, Solution, board};

use crate::AppState;
use crate::error::ApiError;
use crate::store::{CompetitionRow, Role, User};

pub use files::Files;
pub use runner::Runner;
pub use shares::ParticipantFiles;

/// The competitions' files, and each one's parsed solution, kept while its
/// file and rules are unchanged (parsing a 100,000-row solution for every
/// submission would cost more than scoring it).
pub struct Competitions {
    pub files: Files,
    solutions: Mutex<HashMap<String, Parsed>>,
    /// Held to read while a submission is scored and recorded, to write
    /// while a solution or the metric changes: a submission is never scored
    /// against one solution and recorded after another replaced it.
    scoring: RwLock<()>,
    /// Each competition's scored submissions, team names and public board,
    /// with the store's boards generation they were read at: a board is
    /// read from SQLite again only after a write that can change it.
    boards: Mutex<HashMap<String, (u64, Arc<Board>)>>,
    /// Held while a board is read from SQLite: a hundred readers that find
    /// it stale at once wait for one read, not make a hundred.
    building: Mutex<()>,
}

/// What the leaderboards are built from.
pub(crate) struct Board {
    pub scored: Vec<board::Scored>,
    pub names: HashMap<i64, String>,
    /// The public board, ranked for `higher`.
    pub public: Vec<board::Standing>,
    pub higher: bool,
    /// The public board as its JSON answer, made by the first reader that
    /// wants it with these decimals: every other reader until the next
    /// write gets the same bytes.
    public_json: std::sync::OnceLock<(u32, bytes::Bytes)>,
}

impl Board {
    /// The public board's JSON answer for `decimals`, `make`d once.
    pub fn public_json(&self, decimals: u32, make: impl Fn() -> Vec<u8>) -> bytes::Bytes {
        let (at, bytes) = self
            .public_json
            .get_or_init(|| (decimals, bytes::Bytes::from(make())));
        if *at == decimals {
            bytes.clone()
        } else {
            // The rules changed the decimals since (rare): made again, not kept.
            bytes::Bytes::from(make())
        }
    }
}

/// A parsed solution, with the file's SHA-256 and the rules it was parsed for.
struct Parsed {
    sha: String,
    rules: String,
    solution: Arc<Solution>,
}

impl Competitions {
    pub fn beside(users_root: &std::path::Path) -> Competitions {
        Competitions {
            files: Files::beside(users_root),
            solutions: Mutex::default(),
            scoring: RwLock::default(),
            boards: Mutex::default(),
            building: Mutex::default(),
        }
    }

    /// Held while one submission is scored and recorded. The lock guards no
    /// data, so a panic while it was held leaves nothing to distrust.
    pub(crate) fn scoring(&self) -> RwLockReadGuard<'_, ()> {
        self.scoring.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while a solution or the rules change.
    pub(crate) fn changing(&self) -> RwLockWriteGuard<'_, ()> {
        self.scoring.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The competition's solution, parsed for its rules.
    pub(crate) fn solution(
        &self,
        row: &CompetitionRow,
        rules: &Rules,
    ) -> Result<Arc<Solution>, ApiError> {
        let sha = row.solution.clone().ok_or_else(|| {
            ApiError::Conflict(format!("competition {:?} has no solution yet", row.slug))
        })?;
        if let Some(parsed) = self.solutions.lock().map_err(poisoned)?.get(&row.slug)
            && parsed.sha == sha
            && parsed.rules == row.rules
        {
            return Ok(parsed.solution.clone());
        }
        let bytes = std::fs::read(self.files.solution(&row.slug))
            .map_err(|e| ApiError::Internal(format!("competition {}'s solution: {e}", row.slug)))?;
        let solution =
            Solution::parse(&bytes, usize::MAX, &rules.columns, &rules.metric).map_err(|e| {
                ApiError::Internal(format!(
                    "competition {}'s solution no longer parses: {e}",
                    row.slug
                ))
            })?;
        let solution = Arc::new(solution);
        self.solutions.lock().map_err(poisoned)?.insert(
            row.slug.clone(),
            Parsed {
                sha,
                rules: row.rules.clone(),
                solution: solution.clone(),
            },
        );
        Ok(solution)
    }

    /// The competition's board data, from the cache while no write made it stale.
    pub(crate) fn board(
        &self,
        store: &crate::store::Store,
        slug: &str,
        higher: bool,
    ) -> Result<Arc<Board>, ApiError> {
        let cached = |generation: u64| -> Result<Option<Arc<Board>>, ApiError> {
            Ok(self
                .boards
                .lock()
                .map_err(poisoned)?
                .get(slug)
                .filter(|(at, b)| *at == generation && b.higher == higher)
                .map(|(_, b)| b.clone()))
        };
        if let Some(b) = cached(store.boards_generation())? {
            return Ok(b);
        }
        // It guards no data: a panic while it was held leaves nothing to distrust.
        let _building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        // Read before the rows: a write after this makes the entry stale.
        let generation = store.boards_generation();
        if let Some(b) = cached(generation)? {
            return Ok(b);
        }
        let scored: Vec<board::Scored> = store
            .scored_entries(slug)?
            .into_iter()
            .filter_map(|e| {
                Some(board::Scored {
                    team: e.team,
                    submission: e.id,
                    at: chrono::DateTime::parse_from_rfc3339(&e.submitted)
                        .ok()?
                        .with_timezone(&chrono::Utc),
                    public: e.public_score?,
                    private: e.private_score?,
                    selected: e.selected,
                })
            })
            .collect();
        let built = Arc::new(Board {
            public: board::public_board(&scored, higher),
            names: store.team_names(slug)?,
            scored,
            higher,
            public_json: std::sync::OnceLock::new(),
        });
        self.boards
            .lock()
            .map_err(poisoned)?
            .insert(slug.to_owned(), (generation, built.clone()));
        Ok(built)
    }

    pub(crate) fn forget(&self, slug: &str) {
        if let Ok(mut cache) = self.solutions.lock() {
            cache.remove(slug);
        }
    }
}

fn poisoned<T>(_: T) -> ApiError {
    ApiError::Internal("the solutions cache lock was poisoned".into())
}

/// A competition's slug: one plain name, as course names are.
pub(crate) fn slug(value: &str) -> Result<&str, ApiError> {
    scheduler::quota::validate_name(value)
        .map(|()| value)
        .map_err(|e| ApiError::BadRequest(format!("competition name: {e}")))
}

pub(crate) fn not_found(slug: &str) -> ApiError {
    ApiError::NotFound(format!("no competition {slug:?}"))
}

/// Whether `user` runs the competition: its creator, or an admin.
pub(crate) fn is_staff(row: &CompetitionRow, user: &User) -> bool {
    user.is_admin() || row.created_by == user.name
}

/// Trainers, ops and admins create competitions.
pub(crate) fn may_create(user: &User) -> Result<(), ApiError> {
    match user.role {
        Role::Trainer | Role::Ops | Role::Admin => Ok(()),
        Role::Engineer => Err(ApiError::Forbidden(
            "only trainers and ops create competitions".into(),
        )),
    }
}

/// The competition as `user` may see it: staff see it from creation, others
/// once published; a 404 otherwise.
pub(crate) fn visible(
    s: &AppState,
    user: &User,
    slug: &str,
) -> Result<(CompetitionRow, bool), ApiError> {
    let row = s.store.competition(slug)?.ok_or_else(|| not_found(slug))?;
    let staff = is_staff(&row, user);
    if !staff && row.published.is_none() {
        return Err(not_found(slug));
    }
    Ok((row, staff))
}

/// Staff only; everyone else gets the 404 of a competition they cannot see.
pub(crate) fn staff_only(
    s: &AppState,
    user: &User,
    slug: &str,
) -> Result<CompetitionRow, ApiError> {
    match visible(s, user, slug)? {
        (row, true) => Ok(row),
        (_, false) => Err(not_found(slug)),
    }
}

pub(crate) fn rules(row: &CompetitionRow) -> Result<Rules, ApiError> {
    serde_json::from_str(&row.rules)
        .map_err(|e| ApiError::Internal(format!("competition {}'s rules: {e}", row.slug)))
}

/// Runs a route's work (SQLite, files, scoring) on the blocking pool,
/// within the caller's share of it, as the assignments' routes do.
pub(crate) use crate::assignments::offload;
