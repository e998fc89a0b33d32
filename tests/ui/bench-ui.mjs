// The web notebook under heavy output and big notebooks, timed in Chromium
// (playwright-core) against our UI and a stock JupyterLab that uses the same
// `lab serve` through --gateway-url, in one run. Not a test: scripts/bench-ui
// runs it and prints a markdown table (also written to target/bench/ui.md).
//
// Rows, for a cell printing N lines (academy-candle, one print per line):
//   kernel   Shift-Enter to idle seen by a bare websocket client in the page
//            (what the kernel and gateway take, with no rendering);
//   ours     Shift-Enter to the cell showing done in our UI: its count in
//            the prompt and its last line on the page;
//   lab      the same in JupyterLab.
// And: a 500-cell notebook (mixed code, markdown, outputs) from navigation to
// an editable first code cell, in both; key-to-paint latency while typing in
// one cell as another streams 30,000 lines, in ours.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, launchBrowser, startLab, loginWith } from "./harness.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => a.replace(/^--/, "").split("=")).map(([k, v]) => [k, v ?? "1"]),
);
const SIZES = (args.lines ?? "2000,10000,30000,100000").split(",").map(Number);
const LAB_LIMIT_S = Number(args["lab-timeout"] ?? 300);
const JUPYTER = args.jupyter ?? join(ROOT, ".venv", "bin", "jupyter");

const printCell = (n) => `for i in 0..${n} {\n    print("step " + i + " loss 0.123456 accuracy 0.987654 ok");\n}`;

function notebook(cells) {
  return {
    cells, nbformat: 4, nbformat_minor: 5,
    metadata: { kernelspec: { name: "academy-candle", display_name: "academy-candle" }, language_info: { name: "rhai" } },
  };
}
const code = (source, id, outputs = [], n = null) => ({ id, cell_type: "code", source, metadata: {}, outputs, execution_count: n });

function bigNotebook() {
  const cells = [];
  for (let i = 0; i < 500; i++) {
    if (i % 4 === 0) {
      cells.push({ id: `m${i}`, cell_type: "markdown", metadata: {}, source: `## Step ${i}\n\nWe now look at *part ${i}*, with a [link](https://example.org) and \`code\`.` });
    } else if (i % 4 === 1) {
      const lines = Array.from({ length: 20 }, (_, j) => `epoch ${j} loss ${(1 / (j + 1)).toFixed(4)}\n`).join("");
      cells.push(code(`for e in 0..20 {\n    print("epoch " + e);\n}`, `c${i}`, [{ output_type: "stream", name: "stdout", text: lines }], i));
    } else if (i % 4 === 2) {
      const html = `<table><tr><th>x</th><th>y</th></tr>${Array.from({ length: 5 }, (_, j) => `<tr><td>${j}</td><td>${j * j}</td></tr>`).join("")}</table>`;
      cells.push(code(`let t = randn([5, 2]);\nt`, `c${i}`, [{ output_type: "execute_result", execution_count: i, metadata: {}, data: { "text/plain": "Tensor[5, 2]", "text/html": html } }], i));
    } else {
      cells.push(code(`let w${i} = zeros([3, 3]);\nlet b${i} = ones([3]);\n// a comment\nw${i}.sum()`, `c${i}`, [], null));
    }
  }
  return notebook(cells);
}

function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startJupyterLab(gatewayUrl, gatewayToken, dir) {
  const port = await freePort();
  const token = "bench" + Math.random().toString(16).slice(2);
  const proc = spawn(JUPYTER, [
    "lab", "--no-browser", "--ip", "127.0.0.1", "--port", String(port), `--notebook-dir=${dir}`,
    `--gateway-url=${gatewayUrl}`, `--IdentityProvider.token=${token}`, "--allow-root",
    "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    // So the bench can wait until the notebook's kernel is connected: a cell run
    // before that is silently not run (it keeps its "[ ]").
    "--LabApp.expose_app_in_browser=True",
    // Jupyter Server's own output rate limits off, as ours are: both UIs get every line.
    "--ServerApp.iopub_msg_rate_limit=0", "--ServerApp.iopub_data_rate_limit=0",
    "--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0", "--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=0",
  ], { env: { ...process.env, JUPYTER_GATEWAY_AUTH_TOKEN: gatewayToken }, stdio: ["ignore", "ignore", "pipe"] });
  await new Promise((resolve, reject) => {
    let err = "";
    proc.stderr.on("data", (d) => {
      err += d;
      if (err.includes(`127.0.0.1:${port}/lab`)) resolve();
    });
    proc.on("exit", (c) => reject(new Error(`jupyter lab exited with ${c}: ${err}`)));
  });
  return { proc, base: `http://127.0.0.1:${port}`, token };
}

/// Times from Shift-Enter to `done(last)` becoming true in the page, where a
/// mutation observer checks it after every DOM change. `last` is the line
/// the cell prints last: done means the prompt shows the count *and* that
/// line is on the page (a reply can overtake the output still streaming).
async function timeRun(page, editor, done, last, limitS) {
  await page.evaluate(({ doneSrc, last }) => {
    window.__bench = { t0: 0, t1: 0 };
    // The last non-blank text node under `el`: about O(depth), so checking it
    // on every mutation costs nothing like the output's size.
    window.__lastText = (el) => {
      const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
      let n = w.lastChild();
      while (n && !n.nodeValue.trim()) n = w.previousNode();
      return n?.nodeValue ?? "";
    };
    window.__last = last;
    const isDone = new Function(`return (${doneSrc})()`);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.shiftKey && !window.__bench.t0) window.__bench.t0 = performance.now();
    }, { capture: true });
    const obs = new MutationObserver(() => {
      if (window.__bench.t0 && !window.__bench.t1 && isDone()) {
        window.__bench.t1 = performance.now();
        obs.disconnect();
      }
    });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  }, { doneSrc: done.toString(), last });
  await editor.click();
  await page.keyboard.press("Shift+Enter");
  try {
    await page.waitForFunction(() => window.__bench.t1 > 0, null, { timeout: limitS * 1000, polling: 250 });
  } catch {
    return null;
  }
  return page.evaluate(() => (window.__bench.t1 - window.__bench.t0) / 1000);
}

async function kernelTime(page, base, n) {
  return page.evaluate(async ({ base, code }) => {
    const k = await (await fetch(`${base}/api/kernels`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "academy-candle" }) })).json();
    for (let i = 0; i < 600 && k.execution_state !== "idle"; i++) {
      await new Promise((r) => setTimeout(r, 100));
      Object.assign(k, await (await fetch(`${base}/api/kernels/${k.id}`)).json());
    }
    const ws = new WebSocket(`${base.replace("http", "ws")}/api/kernels/${k.id}/channels?session_id=bench${Date.now()}`);
    await new Promise((r) => (ws.onopen = r));
    const id = crypto.randomUUID();
    let messages = 0;
    const t0 = performance.now();
    const elapsed = await new Promise((resolve) => {
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.parent_header?.msg_id !== id) return;
        if (m.header.msg_type === "stream") messages++;
        if (m.header.msg_type === "status" && m.content.execution_state === "idle") resolve((performance.now() - t0) / 1000);
      };
      ws.send(JSON.stringify({
        header: { msg_id: id, msg_type: "execute_request", session: "bench", username: "", date: new Date().toISOString(), version: "5.3" },
        parent_header: {}, metadata: {}, channel: "shell", buffers: [],
        content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
      }));
    });
    ws.close();
    await fetch(`${base}/api/kernels/${k.id}`, { method: "DELETE" });
    return { elapsed, messages };
  }, { base, code: printCell(n) });
}

const fmt = (s) => (s == null ? "—" : s < 10 ? s.toFixed(2) : s.toFixed(1));

async function main() {
  const lab = await startLab(["--iopub-msg-rate-limit", "1000000", "--iopub-data-rate-limit", "1000000000"]);
  const jlDir = mkdtempSync(join(tmpdir(), "bench-jl-"));
  const jl = await startJupyterLab(lab.base, lab.token, jlDir);
  const browser = await launchBrowser();
  const results = { sizes: [], open: {}, typing: null };
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await loginWith(page, lab.base, lab.token);
    const put = (name, content) => page.request.put(`${lab.base}/api/contents/${name}`, {
      headers: { Authorization: `token ${lab.token}` }, data: { type: "notebook", format: "json", content },
    });

    for (const n of SIZES) {
      const row = { lines: n };
      const k = await kernelTime(page, lab.base, n);
      assert.equal(k.messages, n, "every line reached the client");
      row.kernel = k.elapsed;

      // Ours: a fresh page per size.
      const name = `bench-${n}.ipynb`;
      assert.ok((await put(name, notebook([code(printCell(n), "bench")]))).ok());
      const ours = await context.newPage();
      await ours.goto(`${lab.base}/#/nb/${name}`);
      await ours.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
      const last = `step ${n - 1} loss`;
      row.ours = await timeRun(ours, ours.locator("section.cell.code .cm-content").first(), () => {
        const p = document.querySelector("section.cell.code .prompt");
        const out = document.querySelector("section.cell.code .outputs");
        return p && /^\[\d+\]:$/.test(p.textContent) && out && window.__lastText(out).includes(window.__last);
      }, last, LAB_LIMIT_S);
      const tail = await ours.locator("section.cell.code .outputs").first().textContent();
      assert.ok(tail.includes(`step ${n - 1} loss`), "the last line is shown");
      await ours.close();

      // JupyterLab on the same gateway and kernel; past a size it could not
      // finish within the limit, a larger one is not tried (it grows faster).
      if (results.sizes.some((r) => r.lab == null)) {
        results.sizes.push(row);
        console.error(`${n} lines: kernel ${fmt(row.kernel)} s, ours ${fmt(row.ours)} s, JupyterLab not run (over ${LAB_LIMIT_S} s at a smaller size)`);
        continue;
      }
      writeFileSync(join(jlDir, name), JSON.stringify(notebook([code(printCell(n), "bench")])));
      const jctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const jp = await jctx.newPage();
      // `reset`: JupyterLab keeps its workspace on the server, and would
      // reopen the previous size's notebook beside this one.
      await jp.goto(`${jl.base}/lab/tree/${name}?reset&token=${jl.token}`);
      await jp.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').first().waitFor({ timeout: 120_000 });
      await jp.waitForFunction(() => {
        const kernel = window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel;
        return kernel?.connectionStatus === "connected" && kernel?.status === "idle";
      }, null, { timeout: 120_000, polling: 100 });
      row.lab = await timeRun(jp, jp.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .cm-content").first(), () => {
        const p = document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt");
        const outs = document.querySelectorAll(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-OutputArea-output");
        const out = outs[outs.length - 1];
        return p && /^\[\d+\]:$/.test(p.textContent.trim()) && out && window.__lastText(out).includes(window.__last);
      }, last, LAB_LIMIT_S);
      if (row.lab == null) {
        // What JupyterLab showed when it was stopped, to tell slow from stuck.
        // Its page may be too busy to answer: each look has a time limit.
        mkdirSync(join(ROOT, "target", "bench"), { recursive: true });
        const within = (p, ms) => Promise.race([p.catch((e) => `(${e.name})`), new Promise((r) => setTimeout(() => r("(no answer)"), ms))]);
        await within(jp.screenshot({ path: join(ROOT, "target", "bench", `jupyterlab-${n}.png`), timeout: 10_000 }), 12_000);
        row.labPrompt = await within(jp.evaluate(() => document.querySelector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .jp-InputPrompt")?.textContent), 5_000);
        row.labLines = await within(jp.evaluate(() => (document.querySelector(".jp-Notebook .jp-Cell .jp-OutputArea")?.textContent ?? "").split("\n").length), 5_000);
        console.error(`JupyterLab stopped at ${LAB_LIMIT_S} s: prompt ${row.labPrompt}, ${row.labLines} lines shown`);
      }
      await jctx.close();
      results.sizes.push(row);
      console.error(`${n} lines: kernel ${fmt(row.kernel)} s, ours ${fmt(row.ours)} s, JupyterLab ${row.lab == null ? `> ${LAB_LIMIT_S}` : fmt(row.lab)} s`);
    }

    // A 500-cell notebook: navigation to an editable first code cell.
    const big = bigNotebook();
    assert.ok((await put("big.ipynb", big)).ok());
    writeFileSync(join(jlDir, "big.ipynb"), JSON.stringify(big));
    const opens = { ours: [], lab: [] };
    for (let i = 0; i < 3; i++) {
      const p = await context.newPage();
      await p.goto(`${lab.base}/#/nb/big.ipynb`);
      await p.locator("section.cell.code .cm-content").first().click();
      opens.ours.push(await p.evaluate(() => performance.now() / 1000));
      await p.close();
      const jctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const jp = await jctx.newPage();
      await jp.goto(`${jl.base}/lab/tree/big.ipynb?reset&token=${jl.token}`);
      await jp.locator(".jp-Notebook .jp-CodeCell .cm-content").first().click({ timeout: 120_000 });
      opens.lab.push(await jp.evaluate(() => performance.now() / 1000));
      await jctx.close();
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    results.open = { ours: median(opens.ours), lab: median(opens.lab) };

    // Typing while another cell streams 30,000 lines (ours): key to next paint.
    assert.ok((await put("typing.ipynb", notebook([code(printCell(30000), "stream"), code("", "typing")]))).ok());
    const tp = await context.newPage();
    await tp.goto(`${lab.base}/#/nb/typing.ipynb`);
    await tp.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
    await tp.locator('section.cell[data-cell-id="stream"] .cm-content').click();
    await tp.keyboard.press("Control+Enter");
    await tp.locator('section.cell[data-cell-id="typing"] .cm-content').click();
    await tp.evaluate(() => {
      window.__keys = [];
      document.addEventListener("keydown", (e) => {
        const t0 = e.timeStamp;
        requestAnimationFrame(() => requestAnimationFrame((t1) => window.__keys.push(t1 - t0)));
      }, { capture: true });
    });
    await tp.keyboard.type("let typed_while_streaming = 42;", { delay: 30 });
    const keys = await tp.evaluate(() => window.__keys);
    await tp.locator('section.cell[data-cell-id="stream"] .prompt', { hasText: /^\[\d+\]:$/ }).waitFor({ timeout: 120_000 });
    results.typing = { median: median(keys), max: Math.max(...keys), keys: keys.length };
  } finally {
    await browser.close();
    jl.proc.kill("SIGTERM");
    lab.proc.kill("SIGTERM");
  }

  const lines = [
    "| lines printed by one cell | kernel + gateway alone | our UI | JupyterLab (same gateway) | JupyterLab / ours |",
    "| ---: | ---: | ---: | ---: | ---: |",
    ...results.sizes.map((r) => `| ${r.lines.toLocaleString("en")} | ${fmt(r.kernel)} s | ${fmt(r.ours)} s | ${r.lab == null ? (r.labPrompt === undefined ? `> ${LAB_LIMIT_S} s (not run)` : `> ${LAB_LIMIT_S} s (stopped with ${r.labLines} lines shown)`) : `${fmt(r.lab)} s`} | ${r.lab == null || r.ours == null ? (r.ours ? `> ${(LAB_LIMIT_S / r.ours).toFixed(0)}×` : "—") : `${(r.lab / r.ours).toFixed(1)}×`} |`),
    "",
    "| 500-cell notebook, navigation to an editable first code cell (median of 3) | our UI | JupyterLab |",
    "| --- | ---: | ---: |",
    `| | ${fmt(results.open.ours)} s | ${fmt(results.open.lab)} s |`,
    "",
    `Typing in one cell while another streams 30,000 lines (our UI): key to paint median ${results.typing.median.toFixed(1)} ms, worst ${results.typing.max.toFixed(1)} ms over ${results.typing.keys} keys.`,
  ];
  const out = lines.join("\n") + "\n";
  mkdirSync(join(ROOT, "target", "bench"), { recursive: true });
  writeFileSync(join(ROOT, "target", "bench", "ui.md"), out);
  writeFileSync(join(ROOT, "target", "bench", "ui.json"), JSON.stringify(results, null, 2));
  process.stdout.write(out);
}

await main();
