//! The measurements, each run the same way against any server.
//!
//! P1 execute round trip (1 client, and N concurrent clients each on its own
//! kernel), P2 iopub streaming throughput, P3 kernel start to first idle,
//! P5 idle websockets held and concurrent kernels. Every scenario cleans up
//! the kernels it started, so they can run one after another on one server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::client::Api;
use crate::direct::DirectKernel;
use crate::servers::Server;
use crate::stats::{Stats, Throughput};

/// How many starts or connections are in flight at once while setting up.
const SETUP_PARALLELISM: usize = 16;

/// A trivial cell: one execute_result, as small as a cell gets.
pub const TRIVIAL: &str = "1";

/// A cell printing `lines` lines of about 100 bytes, one stream message each.
pub fn printing_cell(kernel: &str, lines: u32) -> String {
    let pad = "x".repeat(90);
    if kernel == "python3" {
        format!("for i in range({lines}):\n    print('{pad}', i, flush=True)")
    } else {
        format!("for i in 0..{lines} {{ print(\"{pad} \" + i); }}")
    }
}

/// P1 with one client: sequential round trips on a warm kernel.
pub async fn round_trips(api: &Api, kernel: &str, warmup: usize, n: usize) -> Result<Stats> {
    let id = api.start_kernel(kernel).await?;
    let result = async {
        let mut conn = api.connect(&id).await?;
        conn.kernel_info().await?;
        for _ in 0..warmup {
            conn.execute(TRIVIAL).await?;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            times.push(conn.execute(TRIVIAL).await?.elapsed);
        }
        conn.close().await;
        Ok(Stats::of(times))
    }
    .await;
    api.delete_kernel(&id).await?;
    result
}

/// P1 baseline: the same loop straight over ZeroMQ.
pub async fn direct_round_trips(kernel: &str, warmup: usize, n: usize) -> Result<Stats> {
    let mut k = DirectKernel::start(kernel).await?;
    for _ in 0..warmup {
        k.execute(TRIVIAL).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(k.execute(TRIVIAL).await?.elapsed);
    }
    k.stop().await;
    Ok(Stats::of(times))
}

/// Runs `make(0)`, `make(1)`, … `make(n - 1)`, `parallelism` at a time, until
/// all are done or one fails. Returns what succeeded (those already in flight
/// at a failure included) and the first error.
async fn in_parallel<T, Fut>(
    n: usize,
    parallelism: usize,
    make: impl Fn(usize) -> Fut,
) -> (Vec<T>, Option<String>)
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut done = Vec::with_capacity(n);
    let mut error = None;
    let mut pending = FuturesUnordered::new();
    let mut asked = 0;
    while done.len() < n && error.is_none() {
        while asked < n && pending.len() < parallelism {
            pending.push(make(asked));
            asked += 1;
        }
        match pending.next().await {
            Some(Ok(t)) => done.push(t),
            Some(Err(e)) => error = Some(format!("{e:#}")),
            None => break,
        }
    }
    while let Some(r) = pending.next().await {
        if let Ok(t) = r {
            done.push(t);
        }
    }
    (done, error)
}

/// Starts `n` kernels, `SETUP_PARALLELISM` at a time.
async fn start_many(api: &Api, kernel: &str, n: usize) -> (Vec<String>, Option<String>) {
    in_parallel(n, SETUP_PARALLELISM, |_| api.start_kernel(kernel)).await
}

async fn delete_all(api: &Api, ids: &[String]) {
    let mut pending = FuturesUnordered::new();
    for chunk in ids.chunks(SETUP_PARALLELISM) {
        for id in chunk {
            pending.push(api.delete_kernel(id));
        }
        while pending.next().await.is_some() {}
    }
}

/// P1 under load: `clients` clients, each on its own kernel, executing in a
/// closed loop for `duration`. Returns the round trips and executes per second.
pub async fn concurrent_round_trips(
    api: &Api,
    kernel: &str,
    clients: usize,
    duration: Duration,
) -> Result<(Stats, f64)> {
    let (ids, error) = start_many(api, kernel, clients).await;
    let result = async {
        if let Some(e) = error {
            anyhow::bail!("starting {clients} kernels: {e}");
        }
        let mut conns = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut c = api.connect(id).await?;
            c.kernel_info().await?;
            for _ in 0..3 {
                c.execute(TRIVIAL).await?;
            }
            conns.push(c);
        }
        let started = Instant::now();
        let runs = conns.into_iter().map(|mut c| async move {
            let mut times = Vec::new();
            while started.elapsed() < duration {
                times.push(c.execute(TRIVIAL).await?.elapsed);
            }
            c.close().await;
            anyhow::Ok(times)
        });
        let all = futures_util::future::try_join_all(runs).await?;
        let wall = started.elapsed().as_secs_f64();
        let times: Vec<Duration> = all.into_iter().flatten().collect();
        let rate = times.len() as f64 / wall;
        Ok((Stats::of(times), rate))
    }
    .await;
    delete_all(api, &ids).await;
    result
}

/// P2: one cell printing `lines` lines, as the client receives it.
pub async fn streaming(api: &Api, kernel: &str, lines: u32) -> Result<Throughput> {
    let id = api.start_kernel(kernel).await?;
    let result = async {
        let mut conn = api.connect(&id).await?;
        conn.kernel_info().await?;
        conn.execute(&printing_cell(kernel, 10)).await?;
        let seen = conn.execute_lossy(&printing_cell(kernel, lines)).await?;
        conn.close().await;
        Ok(Throughput::of(&seen))
    }
    .await;
    api.delete_kernel(&id).await?;
    result
}

/// P2 baseline: the same cell straight over ZeroMQ.
pub async fn direct_streaming(kernel: &str, lines: u32) -> Result<Throughput> {
    let mut k = DirectKernel::start(kernel).await?;
    k.execute(&printing_cell(kernel, 10)).await?;
    let seen = k.execute(&printing_cell(kernel, lines)).await?;
    k.stop().await;
    Ok(Throughput::of(&seen))
}

/// P3: `POST /api/kernels` until a websocket client has the kernel's first
/// kernel_info_reply and idle status. `pause` lets a warm pool refill.
///
/// One start goes unmeasured first: the gateways run one after the other,
/// and the first python3 start reads ipykernel's modules from disk, which
/// would count against whichever gateway happens to run first.
pub async fn start_to_idle(api: &Api, kernel: &str, n: usize, pause: Duration) -> Result<Stats> {
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        let id = api.start_kernel(kernel).await?;
        let mut conn = api.connect(&id).await?;
        conn.kernel_info().await?;
        if i > 0 {
            times.push(started.elapsed());
        }
        conn.close().await;
        api.delete_kernel(&id).await?;
    }
    Ok(Stats::of(times))
}

/// P3 from the warm pool: as [`start_to_idle`], but each start waits
/// (at most `refill` long) until `full` kernels of `kernel` wait in the
/// pool, so every start measures a pooled kernel, not a refill that had
/// not finished (an academy-rust kernel prepares evcxr for seconds).
pub async fn start_to_idle_pooled(
    api: &Api,
    kernel: &str,
    n: usize,
    full: u64,
    refill: Duration,
) -> Result<Stats> {
    let mut times = Vec::with_capacity(n);
    for i in 0..=n {
        let deadline = Instant::now() + refill;
        while api.pool_count(kernel).await.unwrap_or(0) < full {
            if Instant::now() >= deadline {
                anyhow::bail!("the {kernel} pool did not refill within {refill:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // As the cold rows' pause: the refill's last work settles first.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let id = api.start_kernel(kernel).await?;
        let mut conn = api.connect(&id).await?;
        conn.kernel_info().await?;
        if i > 0 {
            times.push(started.elapsed());
        }
        conn.close().await;
        api.delete_kernel(&id).await?;
    }
    Ok(Stats::of(times))
}

/// P5: websockets held open on `kernels` kernels, each having done what
/// JupyterLab does on connect (a kernel_info round trip), then left idle.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Held {
    pub wanted: usize,
    pub reached: usize,
    /// Server RSS with the kernels running and no websocket, then with them all held.
    pub rss_before_mib: Option<f64>,
    pub rss_mib: Option<f64>,
    pub open_fds: Option<usize>,
    /// A round trip on one of the held connections, while all are held.
    pub live_round_trip_ms: Option<f64>,
    pub error: Option<String>,
    pub seconds_to_connect: f64,
}

pub async fn idle_connections(
    server: &Server,
    api: &Api,
    kernels: usize,
    wanted: usize,
) -> Result<Held> {
    let (ids, error) = start_many(api, "academy-candle", kernels).await;
    if let Some(e) = error {
        delete_all(api, &ids).await;
        anyhow::bail!("starting {kernels} kernels: {e}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_mib = server.rss_mib();
    let started = Instant::now();
    // A refused or reset connection is retried twice after a pause, so a
    // server that is only slow to accept a burst is not counted as full.
    let open = |i: usize| {
        let id = ids[i % ids.len()].clone();
        async move {
            let mut tries = 0;
            loop {
                let attempt = async {
                    let mut c = api.connect(&id).await?;
                    c.kernel_info().await?;
                    anyhow::Ok(c)
                };
                match attempt.await {
                    Ok(c) => return Ok(c),
                    Err(e) if tries >= 2 => return Err(e),
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    };
    let (mut conns, error) = in_parallel(wanted, SETUP_PARALLELISM * 4, open).await;
    let seconds_to_connect = started.elapsed().as_secs_f64();
    // Every client's kernel_info made its kernel publish two status messages
    // to all of that kernel's clients (iopub is a broadcast): let that drain.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_mib = server.rss_mib();
    let open_fds = server.open_fds();
    let mut live = Vec::new();
    if let Some(c) = conns.first_mut() {
        for _ in 0..5 {
            if let Ok(s) = c.execute(TRIVIAL).await {
                live.push(s.elapsed);
            }
        }
    }
    let live_round_trip_ms = (!live.is_empty()).then(|| Stats::of(live).median_ms);
    let reached = conns.len();
    drop(conns);
    delete_all(api, &ids).await;
    Ok(Held {
        wanted,
        reached,
        rss_before_mib,
        rss_mib,
        open_fds,
        live_round_trip_ms,
        error,
        seconds_to_connect,
    })
}

/// P5: concurrent running kernels started through the gateway.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Kernels {
    pub wanted: usize,
    pub reached: usize,
    pub seconds: f64,
    pub rss_before_mib: Option<f64>,
    pub rss_mib: Option<f64>,
    pub error: Option<String>,
}

impl Kernels {
    /// What each running kernel added to the server's RSS, in KiB.
    pub fn kib_per_kernel(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_mib?, self.rss_mib?);
        (self.reached > 0).then(|| (after - before) * 1024.0 / self.reached as f64)
    }
}

pub async fn running_kernels(server: &Server, api: &Api, wanted: usize) -> Result<Kernels> {
    let rss_before_mib = server.rss_mib();
    let started = Instant::now();
    let (ids, error) = start_many(api, "academy-candle", wanted).await;
    let seconds = started.elapsed().as_secs_f64();
    let rss_mib = server.rss_mib();
    let reached = ids.len();
    delete_all(api, &ids).await;
    Ok(Kernels {
        wanted,
        reached,
        seconds,
        rss_before_mib,
        rss_mib,
        error,
    })
}

/// The scenarios that failed in this run and why: the report shows them, and
/// `--strict` turns any into an error.
pub static FAILED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Runs `f`, turning an error into a note instead of ending the benchmark.
pub async fn attempt<T>(what: &str, f: impl std::future::Future<Output = Result<T>>) -> Option<T> {
    eprintln!("  {what} …");
    let started = Instant::now();
    match f.await.with_context(|| what.to_owned()) {
        Ok(v) => {
            eprintln!("  {what}: {:.1} s", started.elapsed().as_secs_f64());
            Some(v)
        }
        Err(e) => {
            eprintln!("  {what} failed: {e:#}");
            FAILED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((what.to_owned(), format!("{e:#}")));
            None
        }
    }
}
