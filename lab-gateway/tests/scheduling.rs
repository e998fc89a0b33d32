//! GPU admission through the real HTTP API and websockets, over modelled
//! clusters, launching the real academy-candle kernel: quotas under
//! concurrent starts, the queue, pinning, culling, reclaim, the admin API
//! and the ledger.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use lab_gateway::kernels::CullPolicy;
use lab_gateway::scheduling::Scheduling;
use lab_gateway::store::{Role, Store};
use reqwest::Method;
use scheduler::quota::{Amount, GroupQuota, QuotaConfig};
use scheduler::{Cluster, Tuning};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const H100: &str = "H100-80GB";

fn group(name: &str, guaranteed: u32, borrow: u32) -> GroupQuota {
    let mut g = GroupQuota::new(name);
    g.guaranteed.insert(H100.into(), guaranteed);
    g.borrow_limit.insert(H100.into(), Amount::Finite(borrow));
    g
}

/// A gateway over a modelled cluster with these quotas.
async fn gateway(
    cluster: &str,
    groups: Vec<GroupQuota>,
    tuning: Tuning,
    cull: CullPolicy,
) -> Gateway {
    let cluster = Cluster::parse(cluster).unwrap();
    start_gateway_configured(move |k, store: &Store| {
        let s =
            Arc::new(Scheduling::new(cluster, store.clone(), tuning, Default::default()).unwrap());
        s.set_quotas(
            QuotaConfig {
                groups,
                users: vec![],
            },
            lab_gateway::scheduling::now_ms(),
        )
        .unwrap();
        k.with_scheduling(s)
            .with_queue_wait(Duration::ZERO)
            .with_cull(cull)
    })
    .await
}

fn no_cull() -> CullPolicy {
    CullPolicy {
        idle_gpu: None,
        idle_cpu: None,
        max_runtime: None,
        ..CullPolicy::default()
    }
}

fn gpu_start(gpus: u32) -> Value {
    json!({"name": "academy-candle", "resources": {"gpus": gpus}})
}

async fn wait_state(g: &Gateway, id: &str, token: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, m) = g.get(&format!("/api/kernels/{id}"), token).await;
        if pred(&json!({"status": status, "model": m})) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "kernel {id} never got there: {status} {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next notice (cull or reclaim warning) on a websocket.
async fn notice(ws: &mut Ws, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, ws.next())
            .await
            .expect("no notice in time");
        let Some(Ok(Message::Text(t))) = next else {
            panic!("websocket closed before a notice: {next:?}");
        };
        let m: Value = serde_json::from_str(&t).unwrap();
        if m["msg_type"] == "display_data"
            && let Some(n) = m["content"]["data"].get("application/vnd.academy.notice+json")
        {
            assert!(
                m["content"]["data"]["text/plain"]
                    .as_str()
                    .unwrap()
                    .contains("Save your work")
            );
            return n.clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_starts_never_exceed_the_group_quota_and_queue_in_order() {
    let g = gateway(
        "1x4 H100-80GB",
        vec![group("cohort", 3, 0)],
        Tuning::default(),
        no_cull(),
    )
    .await;
    let admin = g.user_in("root", Role::Admin, None);
    let tokens: Vec<String> = (0..10)
        .map(|i| g.user_in(&format!("eng{i}"), Role::Engineer, Some("cohort")))
        .collect();
    let starts = (0..100).map(|i| {
        let token = tokens[i % 10].clone();
        let g = &g;
        async move { g.post("/api/kernels", &token, gpu_start(1)).await }
    });
    let answers = futures_util::future::join_all(starts).await;
    let running: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, m)| m)
        .collect();
    let queued: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        running.len(),
        3,
        "answers: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert_eq!(queued.len(), 97);
    for m in &queued {
        assert_eq!(m["execution_state"], "queued");
        assert!(
            m["queue"]["waiting_for"]
                .as_str()
                .unwrap()
                .contains("holds 3 of its 3"),
            "{m}"
        );
    }
    let mut devices: Vec<String> = running
        .iter()
        .map(|m| {
            assert_eq!(m["resources"]["gpus"], 1);
            assert_eq!(m["resources"]["gpu_model"], H100);
            assert_eq!(m["resources"]["real"], false);
            m["resources"]["devices"][0].as_str().unwrap().to_owned()
        })
        .collect();
    devices.sort();
    devices.dedup();
    assert_eq!(devices.len(), 3, "three distinct GPUs");
    // The queue, as the admin API and the kernel list show it: positions 1..97.
    let (_, list) = g.get("/api/kernels", &admin).await;
    let mut order: Vec<(u64, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["execution_state"] == "queued")
        .map(|k| {
            (
                k["queue"]["position"].as_u64().unwrap(),
                k["id"].as_str().unwrap().to_owned(),
                k["queue"]["eta_seconds"].as_u64().expect("an ETA"),
            )
        })
        .collect();
    order.sort();
    assert_eq!(
        order.iter().map(|o| o.0).collect::<Vec<_>>(),
        (1..=97).collect::<Vec<_>>()
    );
    // The ETA grows with the position: 3 GPUs serve the queue, each
    // held for the assumed 30 minutes before any kernel ended.
    let etas: Vec<u64> = order.iter().map(|o| o.2).collect();
    assert!(etas.windows(2).all(|w| w[0] <= w[1]), "{etas:?}");
    assert!(etas[96] > etas[0], "{etas:?}");
    let (status, cluster) = g.get("/api/admin/cluster", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(cluster["groups"]["cohort"][H100], 3);
    assert_eq!(cluster["pools"][0]["free"], 1);
    assert_eq!(cluster["queue"].as_array().unwrap().len(), 97);
    // Deleting running kernels starts the queued ones in order, never more than 3.
    let mut live: Vec<String> = running
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    for step in 0..5 {
        let victim = live.remove(0);
        assert_eq!(
            g.delete(&format!("/api/kernels/{victim}"), &admin).await,
            204
        );
        let next = &order[step].1;
        let m = wait_state(&g, next, &admin, |v| {
            v["model"]["execution_state"] == "idle" || v["model"]["execution_state"] == "busy"
        })
        .await;
        assert_eq!(m["resources"]["gpus"], 1);
        live.push(next.clone());
        let (_, c) = g.get("/api/admin/cluster", &admin).await;
        assert_eq!(c["groups"]["cohort"][H100], 3, "after step {step}");
        // The one after it is now first.
        let (_, after) = g
            .get(&format!("/api/kernels/{}", order[step + 1].1), &admin)
            .await;
        assert_eq!(after["queue"]["position"], 1, "{after}");
    }
    // Queued starts can be cancelled.
    for (_, id, _) in &order[5..] {
        assert_eq!(g.delete(&format!("/api/kernels/{id}"), &admin).await, 204);
        assert_eq!(g.get(&format!("/api/kernels/{id}"), &admin).await.0, 404);
    }
    for id in &live {
        g.delete(&format!("/api/kernels/{id}"), &admin).await;
    }
    let (_, c) = g.get("/api/admin/cluster", &admin).await;
    assert_eq!(c["pools"][0]["free"], 4, "{c}");
    assert!(c["queue"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kernel_sees_exactly_its_admitted_gpus() {
    let g = gateway("2x4 H100-80GB", vec![], Tuning::default(), no_cull()).await;
    let token = g.user_in("ada", Role::Trainer, None);
    let (status, m) = g.post("/api/kernels", &token, gpu_start(3)).await;
    assert_eq!(status, 201, "{m}");
    let devices: Vec<String> = m["resources"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(devices.len(), 3);
    // The kernel reports CUDA_VISIBLE_DEVICES in its banner.
    let id = m["id"].as_str().unwrap();
    let mut ws = connect(&g, id, &token).await;
    let msg_id = uuid::Uuid::new_v4().to_string();
    let req = json!({
        "header": {"msg_id": msg_id, "msg_type": "kernel_info_request", "username": "t", "session": "s",
                   "date": "2026-01-01T00:00:00.000000Z", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"
    });
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    let reply = wait_msg(&mut ws, |v| v["msg_type"] == "kernel_info_reply").await;
    let banner = reply["content"]["banner"].as_str().unwrap().to_owned();
    assert!(
        banner.contains(&format!("virtual GPU {}, {H100}", devices.join(","))),
        "{banner}"
    );
    // A request for more than one node holds is refused with the reason.
    let (status, r) = g.post("/api/kernels", &token, gpu_start(5)).await;
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["limit"], "capacity");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("most on one node is 4"),
        "{r}"
    );
    // KERNEL_GPUS works like Enterprise Gateway's; an engineer may not ask for 3.
    let eng = g.user_in("bob", Role::Engineer, None);
    let (status, r) = g
        .post(
            "/api/kernels",
            &eng,
            json!({"name": "academy-candle", "env": {"KERNEL_GPUS": "3"}}),
        )
        .await;
    assert_eq!(status, 403, "{r}");
    assert_eq!(r["limit"], "role_gpus");
    let (status, r) = g
        .post(
            "/api/kernels",
            &eng,
            json!({"name": "academy-candle", "env": {"KERNEL_GPUS": "lots"}}),
        )
        .await;
    assert_eq!(status, 400, "{r}");
    g.delete(&format!("/api/kernels/{id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_gpu_kernel_is_culled_after_a_warning_and_a_busy_one_is_not() {
    let cull = CullPolicy {
        idle_gpu: Some(Duration::from_secs(2)),
        idle_cpu: None,
        max_runtime: None,
        warning: Duration::from_secs(1),
        connected: true,
    };
    let g = gateway("1x2 H100-80GB", vec![], Tuning::default(), cull).await;
    let token = g.user("ada");
    let ops = g.user_in("ops1", Role::Ops, None);
    let (_, idle) = g.post("/api/kernels", &token, gpu_start(1)).await;
    let (_, busy) = g.post("/api/kernels", &token, gpu_start(1)).await;
    let idle_id = idle["id"].as_str().unwrap().to_owned();
    let busy_id = busy["id"].as_str().unwrap().to_owned();
    let mut idle_ws = connect(&g, &idle_id, &token).await;
    let mut busy_ws = connect(&g, &busy_id, &token).await;
    let (_, req) = execute_request("sleep(30.0); print(\"done\")");
    busy_ws.send(Message::Text(req.into())).await.unwrap();
    let started = Instant::now();
    let n = notice(&mut idle_ws, Duration::from_secs(10)).await;
    assert_eq!(n["kind"], "cull");
    assert_eq!(n["seconds_left"], 1);
    wait_state(&g, &idle_id, &token, |v| v["status"] == 404).await;
    // Its GPU is free as soon as its process is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, c) = g.get("/api/admin/cluster", &ops).await;
        if c["pools"][0]["free"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the culled kernel's GPU was not freed: {c}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The busy one (sleeping past the idle timeout) is still there.
    assert!(started.elapsed() < Duration::from_secs(25));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, m) = g.get(&format!("/api/kernels/{busy_id}"), &token).await;
    assert_eq!(
        (status, m["execution_state"].as_str()),
        (200, Some("busy")),
        "{m}"
    );
    g.delete(&format!("/api/kernels/{busy_id}"), &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_borrowed_gpu_is_reclaimed_for_its_group_with_a_warning() {
    let tuning = Tuning {
        reclaim_grace_ms: 1000,
        ..Tuning::default()
    };
    let g = gateway(
        "1x2 H100-80GB",
        vec![group("class", 2, 0), group("research", 0, 2)],
        tuning,
        no_cull(),
    )
    .await;
    let r = g.user_in("rita", Role::Engineer, Some("research"));
    let c = g.user_in("carl", Role::Engineer, Some("class"));
    let (s1, k1) = g.post("/api/kernels", &r, gpu_start(1)).await;
    let (s2, k2) = g.post("/api/kernels", &r, gpu_start(1)).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(k2["resources"]["borrowed"], 1);
    let k1 = k1["id"].as_str().unwrap().to_owned();
    let k2 = k2["id"].as_str().unwrap().to_owned();
    let mut ws1 = connect(&g, &k1, &r).await;
    let mut ws2 = connect(&g, &k2, &r).await;
    // The class needs its guaranteed GPU: one research kernel is warned, then stopped.
    let (status, queued) = g.post("/api/kernels", &c, gpu_start(1)).await;
    assert_eq!(status, 202, "{queued}");
    let cid = queued["id"].as_str().unwrap().to_owned();
    let (warned, other) = tokio::select! {
        n = notice(&mut ws1, Duration::from_secs(10)) => ((n, &k1), &k2),
        n = notice(&mut ws2, Duration::from_secs(10)) => ((n, &k2), &k1),
    };
    assert_eq!(warned.0["kind"], "reclaim");
    assert!(
        warned.0["message"]
            .as_str()
            .unwrap()
            .contains("group class")
    );
    wait_state(&g, warned.1, &r, |v| v["status"] == 404).await;
    let m = wait_state(&g, &cid, &c, |v| v["model"]["execution_state"] == "idle").await;
    assert_eq!(m["resources"]["borrowed"], 0);
    assert_eq!(g.get(&format!("/api/kernels/{other}"), &r).await.0, 200);
    g.delete(&format!("/api/kernels/{cid}"), &c).await;
    g.delete(&format!("/api/kernels/{other}"), &r).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ops_edit_quotas_through_the_api_and_read_the_ledger() {
    let g = gateway("1x4 H100-80GB", vec![], Tuning::default(), no_cull()).await;
    let eng = g.user_in("ada", Role::Engineer, None);
    let ops = g.user_in("ops1", Role::Ops, None);
    // Engineers are kept out.
    for path in [
        "/api/admin/cluster",
        "/api/admin/quotas",
        "/api/admin/usage",
    ] {
        let (status, body) = g.get(path, &eng).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body["reason"], "Forbidden");
    }
    // A group through the API, then ada joins it with caps of one kernel.
    let (status, body) = send(
        &g,
        reqwest::Method::PUT,
        "/api/admin/groups/cohort-a",
        &ops,
        Some(
            json!({"weight": 2, "guaranteed": {H100: 2}, "borrow_limit": {"*": "unlimited"},
                    "user_limits": {"max_kernels": 1}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["weight"], 2.0);
    let (status, body) = send(
        &g,
        reqwest::Method::PATCH,
        "/api/admin/users/ada",
        &ops,
        Some(json!({"group": "cohort-a"})),
    )
    .await;
    assert_eq!(
        (status, body["group"].as_str()),
        (200, Some("cohort-a")),
        "{body}"
    );
    let (status, k) = g.post("/api/kernels", &eng, gpu_start(1)).await;
    assert_eq!(status, 201, "{k}");
    let (status, r) = g.post("/api/kernels", &eng, gpu_start(1)).await;
    assert_eq!(status, 429, "{r}");
    assert_eq!(r["limit"], "user_kernels");
    assert_eq!(
        (r["current"].as_f64(), r["maximum"].as_f64()),
        (Some(1.0), Some(1.0))
    );
    // Export as TOML, edit, import as YAML.
    let toml = g.text("/api/admin/quotas?format=toml", &ops).await;
    assert!(toml.contains("name = \"cohort-a\""), "{toml}");
    let yaml =
        "group:\n- name: cohort-a\n  guaranteed: {H100-80GB: 1}\n  user_limits: {max_kernels: 3}\n";
    let r = g
        .raw(
            Method::PUT,
            "/api/admin/quotas",
            &ops,
            Some(("application/yaml", yaml)),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let (_, q) = g.get("/api/admin/groups/cohort-a", &ops).await;
    assert_eq!(q["user_limits"]["max_kernels"], 3);
    let bad = "[[group]]\nname = \"x\"\nweight = 0\n";
    let r = g
        .raw(
            Method::PUT,
            "/api/admin/quotas",
            &ops,
            Some(("application/toml", bad)),
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("weight"),
        "{body}"
    );
    // The ledger has the kernel's GPU time, per group, as JSON, CSV and SVG
    // (time passing is what is measured here, so it passes).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = k["id"].as_str().unwrap();
    g.delete(&format!("/api/kernels/{id}"), &eng).await;
    let (status, rows) = g.get("/api/admin/usage?period=day&by=group", &ops).await;
    assert_eq!(status, 200, "{rows}");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "cohort-a")
        .unwrap_or_else(|| panic!("no cohort-a row: {rows}"));
    assert!(row["gpu_seconds"].as_f64().unwrap() >= 0.3, "{row}");
    assert_eq!(row["kernels"], 1);
    let csv = g.text("/api/admin/usage?format=csv&by=user", &ops).await;
    assert!(
        csv.starts_with("period,user,gpu_hours,cpu_hours,kernels\n"),
        "{csv}"
    );
    assert!(csv.contains(",ada,"), "{csv}");
    let svg = g
        .raw(Method::GET, "/api/admin/usage?format=svg", &ops, None)
        .await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    // The group's bar is in the legend, and drawn in a colour of its own.
    assert!(svg.lines().any(|l| l.trim() == "cohort-a"), "{svg}");
    let bar_fill = format!("fill=\"#{}\"", palette_hex(0));
    assert!(
        svg.matches(&bar_fill).count() >= 2,
        "no bar for cohort-a: {svg}"
    );
    let (status, _) = g.get("/api/admin/usage?from=yesterday", &ops).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kernelspecs_declared_gpu_is_its_default_and_a_lab_without_gpus_runs_it_on_cpu() {
    // academy-candle declares `metadata.academy.resources.gpus = 1`.
    let g = gateway("1x1 H100-80GB", vec![], Tuning::default(), no_cull()).await;
    let token = g.user("ana");
    let (status, first) = g
        .post("/api/kernels", &token, json!({"name": "academy-candle"}))
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["resources"]["gpus"], 1, "{first}");
    assert_eq!(first["resources"]["gpu_model"], H100);
    // The only GPU is taken: the next default start waits in the queue.
    let (status, second) = g
        .post("/api/kernels", &token, json!({"name": "academy-candle"}))
        .await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["queue"]["position"], 1);
    // An explicit request overrides the default.
    let (status, cpu) = g
        .post(
            "/api/kernels",
            &token,
            json!({"name": "academy-candle", "resources": {"gpus": 0}}),
        )
        .await;
    assert_eq!((status, &cpu["resources"]["gpus"]), (201, &json!(0)));

    // Without GPUs the same spec starts on CPU instead of being refused.
    let g = start_gateway().await;
    let token = g.user("ana");
    let (status, k) = g
        .post("/api/kernels", &token, json!({"name": "academy-candle"}))
        .await;
    assert_eq!((status, &k["resources"]["gpus"]), (201, &json!(0)), "{k}");
    // But an explicit GPU request there is refused with a reason.
    let (status, body) = g
        .post(
            "/api/kernels",
            &token,
            json!({"name": "academy-candle", "resources": {"gpus": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no GPUs"));
}

/// The colour plotters gives the first series (Palette99), as SVG writes it.
fn palette_hex(i: usize) -> String {
    use plotters::style::{Color, Palette, Palette99};
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    format!("{r:02X}{g:02X}{b:02X}")
}

/// A client that gives up on its start (a launch timeout, a closed tab)
/// does not abort the launch half way: the kernel starts, is listed, holds
/// its GPU until deleted, and gives it back then.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_whose_client_hangs_up_still_ends_as_a_kernel_that_can_be_deleted() {
    use tokio::io::AsyncWriteExt;
    let g = gateway("1x1 H100-80GB", vec![], Tuning::default(), no_cull()).await;
    let token = g.user("ana");
    let body = gpu_start(1).to_string();
    let addr = g.base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/kernels HTTP/1.1\r\nHost: {addr}\r\nAuthorization: token {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Hang up once the start is under way, before any answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.get("/api/kernels", &token).await.1 == json!([]) {
        assert!(Instant::now() < deadline, "the start never began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(30);
    let kernel = loop {
        let (_, list) = g.get("/api/kernels", &token).await;
        if let Some(k) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["execution_state"] == "idle")
        {
            break k.clone();
        }
        assert!(Instant::now() < deadline, "no kernel came of it: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kernel["resources"]["gpus"], 1);
    let admin = g.user_in("root", Role::Admin, None);
    let (_, c) = g.get("/api/admin/cluster", &admin).await;
    assert_eq!(c["pools"][0]["free"], 0, "{c}");
    let id = kernel["id"].as_str().unwrap();
    assert_eq!(g.delete(&format!("/api/kernels/{id}"), &token).await, 204);
    let (_, c) = g.get("/api/admin/cluster", &admin).await;
    assert_eq!(c["pools"][0]["free"], 1, "the GPU came back: {c}");
}
