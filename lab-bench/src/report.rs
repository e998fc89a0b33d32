//! The results of one run, and `BENCHMARKS.md` rendered from them.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::Plan;
use crate::scenarios::{Held, Kernels};
use crate::servers::{Kind, Setup};
use crate::stats::{Stats, Throughput};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PerKernel {
    pub one: Option<Stats>,
    /// Round trips under load, and executes per second over all clients.
    pub many: Option<(Stats, f64)>,
    pub stream: Option<Throughput>,
    pub cold: Option<Stats>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct KindResults {
    pub per_kernel: BTreeMap<String, PerKernel>,
    pub held: Vec<Held>,
    pub kernels: Option<Kernels>,
    /// The server's RSS when it has just started, then after each stage of
    /// the run (and, for Academy Lab, what its replay buffers hold then):
    /// where memory a later table starts from came from.
    #[serde(default)]
    pub rss_stages: Vec<Stage>,
}

/// The server's memory at one point of the run, 6 s after the stage ended.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    pub after: String,
    pub rss_mib: Option<f64>,
    pub replay_mib: Option<f64>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Results {
    pub date: String,
    pub commit: String,
    pub machine: String,
    pub versions: BTreeMap<String, String>,
    pub plan: Plan,
    /// Per kernel: round trips and streaming straight over ZeroMQ.
    pub direct: BTreeMap<String, (Option<Stats>, Option<Throughput>)>,
    pub servers: Vec<(Kind, KindResults)>,
    /// academy-candle from Academy Lab's warm pool.
    pub warm_start: Option<Stats>,
    /// academy-rust from Academy Lab's warm pool.
    #[serde(default)]
    pub warm_start_rust: Option<Stats>,
    /// Scenarios that failed, and the error: a limit reached is a result too.
    #[serde(default)]
    pub failures: Vec<(String, String)>,
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let fds = command("sh", &["-c", "ulimit -n"]);
    format!(
        "{cores} cores ({cpu}), {mem_gib:.0} GiB memory, Linux {}, open-file limit {fds}",
        command("uname", &["-r"])
    )
}

impl Results {
    pub async fn new(plan: &Plan, setup: &Setup) -> Results {
        let py = crate::servers::python(&setup.venv);
        let py = py.to_string_lossy();
        let version = |module: &str| {
            command(
                &py,
                &[
                    "-c",
                    &format!("import importlib.metadata as m; print(m.version('{module}'))"),
                ],
            )
        };
        let mut versions = BTreeMap::new();
        for module in ["jupyter_kernel_gateway", "jupyter_server", "ipykernel"] {
            versions.insert(module.to_owned(), version(module));
        }
        versions.insert("python".to_owned(), command(&py, &["--version"]));
        versions.insert("rustc".to_owned(), command("rustc", &["--version"]));
        Results {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit: command("git", &["rev-parse", "--short", "HEAD"]),
            machine: machine(),
            versions,
            plan: plan.clone(),
            direct: BTreeMap::new(),
            servers: Vec::new(),
            warm_start: None,
            warm_start_rust: None,
            failures: Vec::new(),
        }
    }

    fn of(&self, kind: Kind) -> Option<&KindResults> {
        self.servers
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| r)
    }

    fn kernel(&self, kind: Kind, name: &str) -> Option<&PerKernel> {
        self.of(kind)?.per_kernel.get(name)
    }

    /// Every kernel measured, directly or through a gateway (a `--only` run
    /// may have no direct measurement).
    fn kernels(&self) -> std::collections::BTreeSet<&str> {
        self.direct
            .keys()
            .chain(self.servers.iter().flat_map(|(_, r)| r.per_kernel.keys()))
            .map(String::as_str)
            .collect()
    }
}

const NA: &str = "—";

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.3} ms"),
        Some(v) => format!("{v:.1} ms"),
        None => NA.into(),
    }
}

fn stats(s: Option<&Stats>) -> String {
    s.map_or(NA.into(), |s| {
        format!("{} / {}", ms(Some(s.median_ms)), ms(Some(s.p99_ms)))
    })
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if o > 0.0 => format!("{:.1}×", t / o),
        _ => NA.into(),
    }
}

fn mib(v: Option<f64>) -> String {
    v.map_or(NA.into(), |v| format!("{v:.0} MiB"))
}

fn yes(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Below this, what a gateway adds is lost in the kernel's own jitter.
const NOISE_MS: f64 = 0.01;

/// Median round trip a gateway adds over the direct ZeroMQ baseline (never
/// below the noise floor, so ratios stay finite).
fn added(gw: Option<&Stats>, direct: Option<&Stats>) -> Option<f64> {
    Some((gw?.median_ms - direct?.median_ms).max(NOISE_MS))
}

fn added_ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v <= NOISE_MS => format!("≤ {NOISE_MS} ms (noise)"),
        v => ms(v),
    }
}

/// How many times more KG adds; "≥" where ours is at the noise floor.
fn added_ratio(ours: Option<f64>, theirs: Option<f64>) -> String {
    match (ours, theirs) {
        (Some(o), Some(t)) if o <= NOISE_MS => format!("≥ {:.0}×", t / o),
        _ => ratio(ours, theirs),
    }
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let lab = Kind::Lab;
    let kg = Kind::KernelGateway;
    let _ = writeln!(s, "# Benchmarks: Academy Lab vs Jupyter Kernel Gateway\n");
    let _ = writeln!(
        s,
        "Generated by `scripts/bench{}` on {} at commit `{}`. Both gateways ran one after \
         the other on the same machine, with the same kernelspecs, the same Rust client \
         (legacy JSON websocket protocol, as JupyterLab through a gateway speaks it) and \
         output rate limits off. *Direct* is the same client on the kernel's ZeroMQ \
         sockets with no gateway; what a gateway *adds* is its median minus that.\n",
        if r.plan.quick { " --quick" } else { "" },
        r.date,
        r.commit
    );
    let _ = writeln!(s, "- Machine: {}", r.machine);
    let versions: Vec<String> = r.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "- Software: {}", versions.join(", "));
    let _ = writeln!(
        s,
        "- Reproduce: `scripts/bench` (installs Kernel Gateway in `.bench-venv`, builds \
         release binaries, rewrites this file and the raw `BENCHMARKS.json`); `scripts/bench --quick` \
         takes about a minute; `lab-bench --render BENCHMARKS.json` redraws this file.\n"
    );
    if r.plan.quick {
        let _ = writeln!(
            s,
            "> **Quick mode**: a handful of samples, to keep the harness working. \
             These numbers are not the benchmark.\n"
        );
    }

    // Goals.
    let p1 = |kind: Kind, kernel: &str| {
        added(
            r.kernel(kind, kernel).and_then(|k| k.one.as_ref()),
            r.direct.get(kernel).and_then(|d| d.0.as_ref()),
        )
    };
    let p2_lab = r
        .kernel(lab, "academy-candle")
        .and_then(|k| k.stream.as_ref())
        .map(|t| t.msgs_per_s);
    let p2_kg = r
        .kernel(kg, "academy-candle")
        .and_then(|k| k.stream.as_ref())
        .map(|t| t.msgs_per_s);
    let held_10k = r
        .of(lab)
        .and_then(|k| k.held.iter().find(|h| h.wanted == 10_000));
    let _ = writeln!(s, "## Goals\n");
    let _ = writeln!(
        s,
        "| Goal | Academy Lab | Kernel Gateway | Ratio | Status |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for kernel in ["academy-candle", "python3"] {
        let (o, t) = (p1(lab, kernel), p1(kg, kernel));
        let _ = writeln!(
            s,
            "| P1: added latency ≤ 1/10 of KG's ({kernel}, 1 client, median) | {} | {} | {} | {} |",
            added_ms(o),
            added_ms(t),
            added_ratio(o, t),
            yes(o.zip(t).map(|(o, t)| o * 10.0 <= t))
        );
    }
    let _ = writeln!(
        s,
        "| P2: iopub throughput ≥ 10× KG's (academy-candle) | {} | {} | {} | {} |",
        p2_lab.map_or(NA.into(), |v| format!("{v:.0} msg/s")),
        p2_kg.map_or(NA.into(), |v| format!("{v:.0} msg/s")),
        ratio(p2_kg, p2_lab),
        yes(p2_lab.zip(p2_kg).map(|(o, t)| o >= 10.0 * t))
    );
    let _ = writeln!(
        s,
        "| P5: 10,000 idle websockets in < 1 GiB RSS | {} | {} | | {} |",
        held_10k.map_or(NA.into(), |h| format!(
            "{} of 10,000 held, {}",
            h.reached,
            mib(h.rss_mib)
        )),
        r.of(kg)
            .and_then(|k| k.held.iter().find(|h| h.wanted == 10_000))
            .map_or(NA.into(), |h| format!(
                "{} of 10,000 held, {}",
                h.reached,
                mib(h.rss_mib)
            )),
        yes(held_10k.map(|h| h.reached == 10_000 && h.rss_mib.is_some_and(|m| m < 1024.0)))
    );
    let per_kernel = |k: Option<&KindResults>| {
        k.and_then(|k| k.kernels.as_ref())
            .and_then(Kernels::kib_per_kernel)
    };
    let lab_kernels = r.of(lab).and_then(|k| k.kernels.as_ref());
    let _ = writeln!(
        s,
        "| P5: gateway RSS per idle kernel < 0.5 MiB ({} kernels) | {} | {} | | {} |",
        lab_kernels.map_or(r.plan.running_kernels, |k| k.wanted),
        per_kernel(r.of(lab)).map_or(NA.into(), |v| format!("{v:.0} KiB")),
        per_kernel(r.of(kg)).map_or(NA.into(), |v| format!("{v:.0} KiB")),
        yes(lab_kernels
            .and_then(|k| { Some(k.reached == k.wanted && k.kib_per_kernel()? < 512.0) }))
    );
    let cold = |kind: Kind| {
        r.kernel(kind, "academy-candle")
            .and_then(|k| k.cold.as_ref())
            .map(|c| c.median_ms)
    };
    let _ = writeln!(
        s,
        "| P3: cold academy-candle start < 30 ms (median, sandboxed) | {} | {} | {} | {} |",
        cold(lab).map_or(NA.into(), |v| format!("{v:.1} ms")),
        cold(kg).map_or(NA.into(), |v| format!("{v:.1} ms")),
        ratio(cold(lab), cold(kg)),
        yes(cold(lab).map(|v| v < 30.0))
    );
    let warm = r.warm_start.as_ref().map(|w| w.median_ms);
    let _ = writeln!(
        s,
        "| P3: academy-candle from the warm pool < 20 ms (median, sandboxed) | {} | no pool | | {} |",
        warm.map_or(NA.into(), |v| format!("{v:.1} ms")),
        yes(warm.map(|v| v < 20.0))
    );
    let warm_rust = r.warm_start_rust.as_ref().map(|w| w.median_ms);
    let _ = writeln!(
        s,
        "| P3: academy-rust from the warm pool < 200 ms (median, sandboxed) | {} | no pool | | {} |",
        warm_rust.map_or(NA.into(), |v| format!("{v:.0} ms")),
        yes(warm_rust.map(|v| v < 200.0))
    );

    // P1.
    let _ = writeln!(s, "\n## P1: execute round trip over the websocket\n");
    let _ = writeln!(
        s,
        "A trivial cell (`1`): from sending `execute_request` until both its `execute_reply` \
         and its idle status arrived. Median / p99.\n"
    );
    let _ = writeln!(
        s,
        "| Kernel | Clients | Direct ZeroMQ | Academy Lab | Kernel Gateway | Added by Lab | Added by KG | KG adds × more |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (name, (direct, _)) in &r.direct {
        let l = r.kernel(lab, name).and_then(|k| k.one.as_ref());
        let t = r.kernel(kg, name).and_then(|k| k.one.as_ref());
        let (al, at) = (added(l, direct.as_ref()), added(t, direct.as_ref()));
        let _ = writeln!(
            s,
            "| {name} | 1 | {} | {} | {} | {} | {} | {} |",
            stats(direct.as_ref()),
            stats(l),
            stats(t),
            added_ms(al),
            added_ms(at),
            added_ratio(al, at)
        );
    }
    for name in r.kernels() {
        let l = r.kernel(lab, name).and_then(|k| k.many.as_ref());
        let t = r.kernel(kg, name).and_then(|k| k.many.as_ref());
        let with_rate = |m: Option<&(Stats, f64)>| {
            m.map_or(NA.into(), |(st, rate)| {
                format!("{} ({rate:.0} exec/s)", stats(Some(st)))
            })
        };
        let _ = writeln!(
            s,
            "| {name} | {} (own kernel each) | | {} | {} | | | {} (throughput) |",
            r.plan.clients,
            with_rate(l),
            with_rate(t),
            ratio(t.map(|m| m.1), l.map(|m| m.1)),
        );
    }

    let _ = writeln!(
        s,
        "\nA round trip near 40 ms is Nagle's algorithm meeting the client's delayed ACK: a \
         server that writes a reply as several small frames without `TCP_NODELAY` holds the \
         later ones until the first is acknowledged. Academy Lab measured 44 ms here too until \
         it set `TCP_NODELAY` on every accepted socket."
    );

    // P2.
    let _ = writeln!(s, "\n## P2: iopub streaming to the client\n");
    let _ = writeln!(
        s,
        "One cell printing {} lines of ~100 bytes, one `stream` message per line \
         (ipykernel: `print(..., flush=True)`). Rates over the whole cell, as the client \
         receives them. ipykernel makes only a few thousand messages a second (see *Direct*), \
         so with python3 both gateways forward all of it and the ratio is noise; \
         academy-candle makes them faster than either forwards them, which is what P2 measures. \
         Where a gateway drops output, its rate counts what arrived until its last message, and \
         the lines that arrived are shown.\n",
        r.plan.lines
    );
    let _ = writeln!(
        s,
        "| Kernel | Direct ZeroMQ | Academy Lab | Kernel Gateway | Lab ÷ KG |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (name, (_, direct)) in &r.direct {
        let l = r.kernel(lab, name).and_then(|k| k.stream.as_ref());
        let t = r.kernel(kg, name).and_then(|k| k.stream.as_ref());
        let lines = u64::from(r.plan.lines);
        let tp = |t: Option<&Throughput>| {
            t.map_or(NA.into(), |t| {
                let mut lost = String::new();
                if t.lines > 0 && t.lines < lines {
                    lost = format!(" (**{} of {lines} lines arrived**", t.lines);
                    lost.push_str(if t.complete {
                        ")"
                    } else {
                        ", and no idle status)"
                    });
                } else if !t.complete {
                    lost = " (**no idle status arrived**)".into();
                }
                format!("{:.0} msg/s, {:.1} MB/s{lost}", t.msgs_per_s, t.mb_per_s)
            })
        };
        let direct_tp = direct
            .as_ref()
            .map_or(NA.into(), |t| format!("{:.0} msg/s", t.msgs_per_s));
        let _ = writeln!(
            s,
            "| {name} | {direct_tp} | {} | {} | {} |",
            tp(l),
            tp(t),
            ratio(t.map(|t| t.msgs_per_s), l.map(|t| t.msgs_per_s))
        );
    }

    // P3.
    let _ = writeln!(s, "\n## P3: kernel start to first idle\n");
    let _ = writeln!(
        s,
        "`POST /api/kernels`, then a websocket and a `kernel_info_request` until its reply \
         and idle status. Median / p99 of {} starts, one at a time, 0.3 s apart; from the \
         pool, each start waits until the pool is full again, then 1 s (academy-rust: 10 \
         starts, as its refill prepares evcxr for seconds).\n",
        r.plan.starts
    );
    let _ = writeln!(
        s,
        "| Kernel | Start | Academy Lab | Kernel Gateway | KG ÷ Lab |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for name in r.kernels() {
        let l = r.kernel(lab, name).and_then(|k| k.cold.as_ref());
        let t = r.kernel(kg, name).and_then(|k| k.cold.as_ref());
        let _ = writeln!(
            s,
            "| {name} | cold | {} | {} | {} |",
            stats(l),
            stats(t),
            ratio(l.map(|x| x.median_ms), t.map(|x| x.median_ms))
        );
    }
    let cold_kg = r.kernel(kg, "academy-candle").and_then(|k| k.cold.as_ref());
    let _ = writeln!(
        s,
        "| academy-candle | warm pool (sandboxed) | {} | no pool (prespawn does not serve `POST /api/kernels`) | {} |",
        stats(r.warm_start.as_ref()),
        ratio(
            r.warm_start.as_ref().map(|x| x.median_ms),
            cold_kg.map(|x| x.median_ms)
        )
    );
    let cold_kg_rust = r.kernel(kg, "academy-rust").and_then(|k| k.cold.as_ref());
    let _ = writeln!(
        s,
        "| academy-rust | warm pool (sandboxed) | {} | no pool | {} |",
        stats(r.warm_start_rust.as_ref()),
        ratio(
            r.warm_start_rust.as_ref().map(|x| x.median_ms),
            cold_kg_rust.map(|x| x.median_ms)
        )
    );

    // P5.
    let _ = writeln!(s, "\n## P5: idle websockets and running kernels\n");
    let _ = writeln!(
        s,
        "Websockets spread over {} academy-candle kernels; each does a `kernel_info` round \
         trip (as JupyterLab does on connect) and then stays idle. RSS is the gateway \
         process alone (kernels excluded); *live* is the median of five execute round trips on \
         one of them while all are held.\n",
        r.plan.held_on_kernels
    );
    let _ = writeln!(
        s,
        "| Gateway | Websockets wanted | Held | RSS before → with them | Open fds | Live round trip | Connect time | Stopped by |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (kind, k) in &r.servers {
        for h in &k.held {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} → {} | {} | {} | {:.1} s | {} |",
                kind.label(),
                h.wanted,
                h.reached,
                mib(h.rss_before_mib),
                mib(h.rss_mib),
                h.open_fds.map_or(NA.into(), |n| n.to_string()),
                ms(h.live_round_trip_ms),
                h.seconds_to_connect,
                h.error.as_deref().map_or("—".into(), first_line)
            );
        }
    }
    let kg_full = r
        .of(kg)
        .is_some_and(|k| k.held.iter().any(|h| h.reached < h.wanted));
    if kg_full {
        let _ = writeln!(
            s,
            "\nWhere Kernel Gateway holds fewer: each of its websockets opens four ZeroMQ \
             sockets, and libzmq allows 1,023 per context by default (`ZMQ_MAX_SOCKETS`); \
             past that its log shows `ZMQError: Too many open files` and new websockets are \
             reset. Academy Lab's websockets share their kernel's three DEALERs."
        );
    }
    let _ = writeln!(
        s,
        "\n| Gateway | Kernels wanted | Running | Time to start all | Gateway RSS before → after | Per idle kernel | Stopped by |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (kind, k) in &r.servers {
        if let Some(n) = &k.kernels {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} s | {} → {} | {} | {} |",
                kind.label(),
                n.wanted,
                n.reached,
                n.seconds,
                mib(n.rss_before_mib),
                mib(n.rss_mib),
                n.kib_per_kernel()
                    .map_or(NA.into(), |v| format!("{v:.0} KiB")),
                n.error.as_deref().map_or("—".into(), first_line)
            );
        }
    }
    let _ = writeln!(
        s,
        "\nThe gateway's RSS from its start through the run (each server ran the scenarios above \
         in this order, each read 6 s after its stage ended; the RSS a table starts from is what \
         the stages before it left):\n"
    );
    for (kind, k) in &r.servers {
        if !k.rss_stages.is_empty() {
            let stages: Vec<String> = k
                .rss_stages
                .iter()
                .map(|st| match st.replay_mib {
                    Some(r) => format!(
                        "{} {} (replay buffers {r:.0} MiB)",
                        st.after,
                        mib(st.rss_mib)
                    ),
                    None => format!("{} {}", st.after, mib(st.rss_mib)),
                })
                .collect();
            let _ = writeln!(s, "- {}: {}", kind.label(), stages.join(" → "));
        }
    }
    if !r.failures.is_empty() {
        let _ = writeln!(s, "\n## Scenarios that did not complete\n");
        let _ = writeln!(
            s,
            "A dash in a table above is one of these; the error is what the client saw.\n"
        );
        for (what, error) in &r.failures {
            let _ = writeln!(s, "- {what}: `{}`", first_line(error).replace('`', "'"));
        }
    }
    s
}

fn first_line(e: &str) -> String {
    let line = e.lines().next().unwrap_or(e);
    let line: String = line.chars().take(160).collect();
    line.replace('|', "\\|")
}
