// The web UI in a real browser: Debian's Chromium, driven by playwright-core,
// against a real `lab serve` with real kernels. Screenshots of every step go
// to tests/artifacts/ui/browser/. Any console error or page error fails the run.
//
//   node --test tests/ui/*.test.mjs     (scripts/test runs it after building the UI)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Pages, ROOT, LAB, launchBrowser, startLab, typeInto, loginWith as loginAt } from "./harness.mjs";

let server, base, adminToken, data, browser, ui;
let problems = [];
let pages = [];

function lab(...args) {
  return execFileSync(LAB, [...args, "--data-dir", data], { encoding: "utf8" }).trim();
}

before(async () => {
  const lab = await startLab(["--gpus", "1x2 H100-80GB"]);
  server = lab.proc;
  base = lab.base;
  adminToken = lab.token;
  data = lab.data;
  browser = await launchBrowser();
  ui = new Pages(browser, "browser");
  problems = ui.problems;
  pages = ui.pages;
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
});

const newPage = (name) => ui.newPage(name);
const stopLab = (lab) => ui.stopLab(lab);
const shot = (page, name) => ui.shot(page, name);
const withFailureShots = (body) => ui.withFailureShots(body);

/// Opens a login URL (`?code=` or `?token=`): the app asks before it logs
/// in, naming the account; confirming logs in.
async function loginByLink(page, url, user) {
  await page.goto(url);
  await page.locator(".login-as", { hasText: user }).waitFor();
  assert.equal(new URL(page.url()).search, "", "the code left the URL");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("header.top").waitFor();
}

const loginWith = (page, token) => loginAt(page, base, token);

test("an engineer's day in the web UI, and an ops edit", { timeout: 600_000 }, () => withFailureShots(async () => {
  const bob = lab("user", "add", "bob", "--role", "engineer");
  lab("group", "add", "cohort-a", "--guaranteed", "H100-80GB=1", "--weight", "1");

  // 1. Log in (the token form), and see who we are in the user menu.
  const page = await newPage("admin");
  await loginWith(page, adminToken);
  await page.locator(".user-menu summary").click();
  await assert.doesNotReject(page.getByText("Role: admin").waitFor());
  await shot(page, "01-logged-in");
  await page.locator(".user-menu summary").click();

  // 2. Create a notebook from the files page.
  page.nextPrompt = "lesson.ipynb";
  await page.getByRole("button", { name: "New notebook" }).click();
  await page.waitForURL(/#\/nb\/lesson\.ipynb$/);
  await page.getByLabel("kernel").selectOption("academy-candle");
  await page.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
  await shot(page, "02-new-notebook");

  // 3. A cell printing a line every 200 ms shows output while it runs.
  const cell = page.locator("section.cell.code").first();
  await typeInto(page, cell, 'for i in 0..50 {\n    print("line " + i);\n    sleep(0.2);\n}');
  await cell.locator(".cm-content").click();
  await page.keyboard.press("Shift+Enter");
  await cell.locator(".outputs", { hasText: "line 2" }).waitFor({ timeout: 30_000 });
  assert.equal(await cell.locator(".prompt").textContent(), "[*]:", "output arrived before the cell finished");
  await shot(page, "03-streaming");

  // 4. Interrupt it: the cell stops long before line 49.
  await page.getByRole("button", { name: "Interrupt" }).click();
  await cell.locator(".prompt", { hasText: /^\[\d+\]:$/ }).waitFor({ timeout: 30_000 });
  const out = await cell.locator(".outputs").textContent();
  assert.ok(!out.includes("line 49"), out);
  await shot(page, "04-interrupted");

  // The connection drops mid-cell: the notebook reconnects and every line
  // arrives exactly once.
  const second = page.locator("section.cell.code").nth(1);
  await typeInto(page, second, 'for i in 0..40 {\n    print("tick " + i);\n    sleep(0.05);\n}');
  await second.locator(".cm-content").click();
  await page.keyboard.press("Control+Enter");
  await second.locator(".outputs", { hasText: "tick 5" }).waitFor({ timeout: 30_000 });
  await page.evaluate(() => window.academyNotebook.dropConnection());
  await second.locator(".prompt", { hasText: /^\[\d+\]:$/ }).waitFor({ timeout: 60_000 });
  const ticks = (await second.locator(".outputs").textContent()).match(/tick \d+/g);
  assert.deepEqual(ticks, Array.from({ length: 40 }, (_, i) => `tick ${i}`));
  await shot(page, "04b-reconnected");

  // A progress bar updates in place: one display, ending at 30/30.
  await page.getByRole("button", { name: "+ Code" }).click();
  const third = page.locator("section.cell.code").nth(2);
  await typeInto(page, third, 'let bar = progress(30, "steps");\nfor i in 0..30 { sleep(0.02); bar.update(i + 1); }');
  await third.locator(".cm-content").click();
  await page.keyboard.press("Control+Enter");
  await third.locator(".prompt", { hasText: /^\[\d+\]:$/ }).waitFor({ timeout: 30_000 });
  assert.equal(await third.locator(".outputs > *").count(), 1, "one progress display, updated in place");
  await third.frameLocator("iframe.out-html").locator(".academy-progress", { hasText: /30\s*\/\s*30/ }).waitFor();

  // Markdown output is rendered (sanitised), not shown as source.
  await page.getByRole("button", { name: "+ Code" }).click();
  const fourth = page.locator("section.cell.code").nth(3);
  await typeInto(page, fourth, 'markdown("## Results\\n\\nloss is **low**")');
  await fourth.locator(".cm-content").click();
  await page.keyboard.press("Control+Enter");
  // Rich outputs are shown in a sandboxed frame of their own.
  const md = fourth.frameLocator("iframe.out-markdown");
  await md.locator("strong", { hasText: "low" }).waitFor({ timeout: 30_000 });
  assert.equal(await md.locator("h2").textContent(), "Results");
  assert.equal(await fourth.locator("iframe.out-markdown").getAttribute("sandbox"), "allow-scripts");

  // 5. Save with Ctrl-S (the indicator says "saved", not "autosaved" or
  // "unsaved"), and the file holds it before the page reloads.
  await cell.locator(".cm-content").click();
  await page.keyboard.press("Control+s");
  await page.locator(".saved", { hasText: /^saved$/ }).waitFor();
  const onDisk = JSON.parse(readFileSync(join(data, "users", "admin", "lesson.ipynb"), "utf8"));
  assert.equal(onDisk.cells.length, 4);
  assert.match(onDisk.cells[3].source, /loss is \*\*low\*\*/);
  await page.reload();
  await page.locator("section.cell.code").first().waitFor();
  const reloaded = page.locator("section.cell.code").first();
  assert.match(await reloaded.locator(".cm-content").textContent(), /print\("line " \+ i\)/);
  assert.match(await reloaded.locator(".outputs").textContent(), /line 2/);
  await shot(page, "05-reloaded");

  // What the UI saved is valid nbformat 4 (as JupyterLab reads it).
  const nbPath = join(data, "users", "admin", "lesson.ipynb");
  execFileSync(join(ROOT, ".venv", "bin", "python"), ["-c",
    "import sys, nbformat; nb = nbformat.read(sys.argv[1], 4); nbformat.validate(nb); " +
    "assert nb.nbformat_minor >= 5 and all(c.get('id') for c in nb.cells)", nbPath]);

  // Restart: the kernel comes back idle and forgets its variables.
  await page.getByRole("button", { name: "Restart" }).click();
  await page.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 30_000 });

  // A trainer (admin may too) publishes it to a course.
  page.nextPrompt = "intro";
  await page.getByRole("button", { name: "Publish" }).click();
  await page.getByText("Published to intro").waitFor();

  // 6. Open an example notebook and run all. It carries a markdown cell
  // with an attachment, as JupyterLab saves a pasted image: kept on save.
  const example = JSON.parse(readFileSync(join(ROOT, "examples", "03-candle-tensors.ipynb"), "utf8"));
  const pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
  example.cells.unshift({
    id: "pasted-image", cell_type: "markdown", metadata: {},
    source: "![pasted](attachment:pixel.png)",
    attachments: { "pixel.png": { "image/png": pixel } },
  });
  const put = await page.request.put(`${base}/api/contents/03-candle-tensors.ipynb`, {
    headers: { Authorization: `token ${adminToken}` },
    data: { type: "notebook", format: "json", content: example },
  });
  assert.ok(put.ok(), await put.text());
  await page.goto(`${base}/#/files/`);
  await page.getByRole("link", { name: "03-candle-tensors.ipynb" }).click();
  await page.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
  await page.getByRole("button", { name: "Run all" }).click();
  const codeCells = page.locator("section.cell.code");
  const n = await codeCells.count();
  await codeCells.nth(n - 1).locator(".prompt", { hasText: /^\[\d+\]:$/ }).waitFor({ timeout: 120_000 });
  assert.equal(await page.locator(".out-error").count(), 0, "no cell failed");
  for (let i = 0; i < n; i++) {
    assert.match(await codeCells.nth(i).locator(".prompt").textContent(), /^\[\d+\]:$/, `cell ${i} ran`);
  }
  await shot(page, "06-example-run-all");
  await page.keyboard.press("Control+s");
  await page.locator(".saved", { hasText: /^saved$/ }).waitFor();
  const ran = JSON.parse(readFileSync(join(data, "users", "admin", "03-candle-tensors.ipynb"), "utf8"));
  assert.deepEqual(ran.cells[0].attachments, { "pixel.png": { "image/png": pixel } });

  // Files: upload a notebook, rename it, download it, delete it.
  await page.goto(`${base}/#/files/`);
  await page.locator(".files").waitFor();
  await page.locator("input.upload-input").setInputFiles(join(ROOT, "examples", "01-rust-basics.ipynb"));
  await page.locator('tr[data-name="01-rust-basics.ipynb"]').waitFor();
  page.nextPrompt = "renamed.ipynb";
  await page.locator('tr[data-name="01-rust-basics.ipynb"]').getByRole("button", { name: "Rename" }).click();
  await page.locator('tr[data-name="renamed.ipynb"]').waitFor();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.locator('tr[data-name="renamed.ipynb"]').getByRole("button", { name: "Download" }).click(),
  ]);
  assert.equal(download.suggestedFilename(), "renamed.ipynb");
  const downloaded = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(downloaded.nbformat, 4);
  assert.equal(downloaded.cells.length, JSON.parse(readFileSync(join(ROOT, "examples", "01-rust-basics.ipynb"), "utf8")).cells.length);
  await shot(page, "06b-files");
  await page.locator('tr[data-name="renamed.ipynb"]').getByRole("button", { name: "Delete" }).click();
  await page.locator('tr[data-name="renamed.ipynb"]').waitFor({ state: "detached" });

  // 7. Edit a quota on the ops page; the API sees the change.
  await page.goto(`${base}/#/ops`);
  await page.getByLabel("cohort-a weight").fill("3");
  await page.getByLabel("cohort-a guaranteed").fill("H100-80GB=2");
  await page.locator('tr[data-group="cohort-a"] button.save-group').click();
  await page.getByText("Saved cohort-a").waitFor();
  const group = await (await page.request.get(`${base}/api/admin/groups/cohort-a`, {
    headers: { Authorization: `token ${adminToken}` },
  })).json();
  assert.equal(group.weight, 3);
  assert.deepEqual(group.guaranteed, { "H100-80GB": 2 });
  // The live allocation: the admin's two notebooks hold both modelled GPUs;
  // and the ledger's chart of GPU hours per group names the admin's group.
  await page.locator("table.pools", { hasText: "2 of 2 in use" }).waitFor();
  await page.locator(".usage-chart svg").waitFor();
  assert.match(await page.locator(".usage-chart svg").textContent(), /default/);
  await shot(page, "07-ops-quota");

  // Log out: the app shows the login form again.
  await page.locator(".user-menu summary").click();
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByLabel("token").waitFor();

  // 8. Another user, through the login URL, does not see the first user's notebook.
  const other = await newPage("bob");
  await loginByLink(other, `${base}/?token=${bob}`, "bob");
  await other.locator(".files").waitFor();
  assert.equal(await other.getByText("lesson.ipynb").count(), 0);
  const peek = await other.request.get(`${base}/api/contents/lesson.ipynb`);
  assert.equal(peek.status(), 404);
  await shot(other, "08-second-user");

  // The published copy is theirs to take, from the courses page.
  await other.getByRole("link", { name: "Courses" }).click();
  const intro = other.locator('section.course[data-course="intro"]');
  await intro.waitFor();
  await intro.getByRole("button", { name: "Open my copy" }).click();
  await other.waitForURL(/#\/nb\/intro\/lesson\.ipynb$/);
  await other.locator("section.cell.code").first().waitFor();
  // Both modelled GPUs are the admin's: bob's kernel waits in the queue and says where.
  await other.locator(".queue", { hasText: "queued: position 1" }).waitFor({ timeout: 30_000 });
  assert.equal(await other.locator(".kernel-device").textContent(), "waiting for H100-80GB");
  await shot(other, "08a-queued");
  const kernels = await (await page.request.get(`${base}/api/kernels`, {
    headers: { Authorization: `token ${adminToken}` },
  })).json();
  const admins = kernels.filter((k) => k.execution_state !== "queued");
  assert.equal(admins.length, 2, JSON.stringify(kernels));
  assert.equal((await page.request.delete(`${base}/api/kernels/${admins[0].id}`, {
    headers: { Authorization: `token ${adminToken}` },
  })).status(), 204);
  await other.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
  assert.equal(await other.locator(".kernel-device").textContent(), "1 × H100-80GB (modelled)");
  assert.equal(await other.locator(".queue").textContent(), "");
  assert.match(await other.locator("section.cell.code").first().locator(".cm-content").textContent(), /line/);
  await shot(other, "08b-course-copy");
  // Opening it again from the course finds the same copy, not a new one.
  await other.getByRole("link", { name: "Courses" }).click();
  await intro.waitFor();
  await intro.getByRole("button", { name: "Open my copy" }).click();
  await other.waitForURL(/#\/nb\/intro\/lesson\.ipynb$/);
  await other.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });

  // A narrow screen still works: nothing is wider than the screen, and a
  // cell still runs from the keyboard there.
  await other.setViewportSize({ width: 390, height: 800 });
  assert.ok(await other.evaluate(() => document.documentElement.scrollWidth <= 390),
    "the page scrolls sideways on a narrow screen");
  for (const name of ["Save", "Run all", "Interrupt", "Restart"]) {
    const box = await other.getByRole("button", { name }).boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `${name} is on screen: ${JSON.stringify(box)}`);
  }
  const narrowCell = other.locator("section.cell.code").first();
  await typeInto(other, narrowCell, 'print("narrow " + (6 * 7))');
  await narrowCell.locator(".cm-content").click();
  await other.keyboard.press("Shift+Enter");
  await narrowCell.locator(".outputs", { hasText: "narrow 42" }).waitFor({ timeout: 30_000 });
  await shot(other, "09-narrow");

  // A trainer publishes from their own notebook; an engineer gets no Publish.
  assert.equal(await other.getByRole("button", { name: "Publish" }).count(), 0);
  const tara = lab("user", "add", "tara", "--role", "trainer");
  const trainer = await newPage("trainer");
  await loginByLink(trainer, `${base}/?token=${tara}`, "tara");
  trainer.nextPrompt = "week2.ipynb";
  await trainer.getByRole("button", { name: "New notebook" }).click();
  await trainer.waitForURL(/#\/nb\/week2\.ipynb$/);
  // Every modelled GPU is taken: the trainer's kernel waits, which does not stop publishing.
  await trainer.locator(".queue", { hasText: "queued" }).waitFor({ timeout: 30_000 });
  trainer.nextPrompt = "week-2";
  await trainer.getByRole("button", { name: "Publish" }).click();
  await trainer.getByText("Published to week-2").waitFor();
  const courses = await (await other.request.get(`${base}/api/courses`)).json();
  assert.ok(courses.some((c) => c.name === "week-2" && c.notebooks.some((nb) => nb.name === "week2.ipynb")),
    JSON.stringify(courses));
  // Leaving the page gives the queued start's place back.
  await trainer.goto(`${base}/#/files/`);
  let taras = [];
  for (let i = 0; i < 50; i++) {
    taras = (await (await trainer.request.get(`${base}/api/kernels`)).json());
    if (taras.length === 0) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.deepEqual(taras, [], "the trainer's queued start was cancelled");

  assert.deepEqual(problems, [], "the console stayed clean");
}));

test("the first page is small", async () => {
  const sizes = {};
  for (const path of ["/", "/ui/app.js", "/ui/app.css"]) {
    const r = await fetch(base + path, { headers: { "Accept-Encoding": "gzip" } });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get("content-encoding"), "gzip");
    // fetch decompresses; what crossed the wire is the Content-Length.
    sizes[path] = Number(r.headers.get("content-length"));
    await r.arrayBuffer();
  }
  const total = Object.values(sizes).reduce((a, b) => a + b, 0);
  console.log(`initial page weight: ${total} bytes transferred`, sizes);
  assert.ok(total < 1_000_000, `${total} bytes`);
});

test("a reclaimed GPU warns the notebook, which saves itself", { timeout: 300_000 }, () => withFailureShots(async () => {
  // The group exists before the server starts (a running server picks up
  // quota changes on its next poll, which a fast test could outrun).
  let olga;
  const lab = await startLab(["--gpus", "1x1 H100-80GB", "--reclaim-grace", "4s"], (cli) => {
    cli("group", "add", "owners", "--guaranteed", "H100-80GB=1");
    olga = cli("user", "add", "olga", "--role", "engineer", "--group", "owners");
  });
  try {

    // The admin (default group) borrows the only GPU, and edits without saving.
    const page = await newPage("reclaim");
    await loginByLink(page, `${lab.base}/?code=${lab.code}`, "admin");
    page.nextPrompt = "borrowed.ipynb";
    await page.getByRole("button", { name: "New notebook" }).click();
    await page.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
    assert.equal(await page.locator(".kernel-device").textContent(), "1 × H100-80GB (modelled)");
    // Notices go to connected clients: wait until this one is.
    await page.locator('.connection[data-state="connected"]').waitFor({ state: "attached", timeout: 30_000 });
    await typeInto(page, page.locator("section.cell.code").first(), "let unsaved_work = 42;");
    await page.locator(".saved", { hasText: "unsaved" }).waitFor();

    // The owners' member starts a kernel: their guarantee takes the GPU back.
    const r = await fetch(`${lab.base}/api/kernels`, {
      method: "POST",
      headers: { Authorization: `token ${olga}`, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "academy-candle" }),
    });
    const body = await r.text();
    assert.equal(r.status, 202, body);
    const queued = JSON.parse(body);

    await page.locator(".notice", { hasText: "borrowed from group owners" }).waitFor({ timeout: 30_000 });
    await page.locator(".saved", { hasText: "autosaved" }).waitFor();
    await shot(page, "10-reclaim-notice");
    const saved = JSON.parse(readFileSync(join(lab.data, "users", "admin", "borrowed.ipynb"), "utf8"));
    assert.equal(saved.cells[0].source, "let unsaved_work = 42;");

    // After the grace period the kernel stops and olga's starts on the GPU.
    await page.locator('.kernel-status[data-state="dead"]').waitFor({ timeout: 30_000 });
    for (let i = 0; i < 100; i++) {
      const k = await (await fetch(`${lab.base}/api/kernels/${queued.id}`, { headers: { Authorization: `token ${olga}` } })).json();
      if (k.execution_state !== "queued") {
        assert.equal(k.resources.gpus, 1, JSON.stringify(k));
        break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    await shot(page, "11-reclaimed");
    assert.deepEqual(problems, [], "the console stayed clean");
  } finally {
    stopLab(lab);
  }
}));

test("kernel output cannot post to the app or restyle it; a failed save says why and stays unsaved", { timeout: 300_000 }, () => withFailureShots(async () => {
  let mallory;
  const lab = await startLab(["--gpus", "none"], (cli, dir) => {
    mallory = cli("user", "add", "mallory", "--role", "engineer");
    writeFileSync(join(dir, "lab.toml"), '[limits]\nrequest_body = "200 KiB"\n');
  });
  try {
    const page = await newPage("untrusted");
    await loginByLink(page, `${lab.base}/?code=${lab.code}`, "admin");
    // The printed code works once: the same link again is refused.
    const again = await newPage("code-again");
    await again.goto(`${lab.base}/?code=${lab.code}`);
    await again.getByText("This login link is not valid").waitFor();
    assert.equal(await again.getByRole("button", { name: "Log in" }).count(), 0);
    await again.close();
    page.nextPrompt = "untrusted.ipynb";
    await page.getByRole("button", { name: "New notebook" }).click();
    await page.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
    // An output holding a form that would log this browser in to mallory's
    // account (a text/plain body that reads as JSON), and a style that would
    // hide the app's header.
    const markup = `<form action="/api/login" method="post" enctype="text/plain">` +
      `<input type="hidden" name='{"token":"${mallory}","x":"' value='"}'>` +
      `<button id="go" type="submit">claim your prize</button></form>` +
      `<style>header.top{display:none !important} body{background:red}</style>`;
    const cell = page.locator("section.cell.code").first();
    await typeInto(page, cell, `html(${JSON.stringify(markup)})`);
    await cell.locator(".cm-content").click();
    await page.keyboard.press("Control+Enter");
    const out = cell.frameLocator("iframe.out-html");
    await out.locator("#go").waitFor({ timeout: 30_000 });
    assert.ok(await page.locator("header.top").isVisible(), "the output's style reached the app");
    const blocked = page.waitForEvent("console", {
      predicate: (m) => /Blocked form submission/.test(m.text()),
      timeout: 15_000,
    });
    await out.locator("#go").click();
    await blocked;
    const who = await page.evaluate(() => fetch("/api/login").then((r) => r.json()));
    assert.equal(who.identity?.username, "admin", "the form logged the browser in to another account");
    assert.match(page.url(), /#\/nb\/untrusted\.ipynb$/);
    await shot(page, "12-untrusted-output");

    // A save over the server's limit: the notebook says why, in the
    // server's words, and stays unsaved (autosave tries again).
    await page.getByRole("button", { name: "+ Text" }).click();
    const text = page.locator("section.cell.markdown").first();
    await text.locator(".cm-content").click();
    await page.keyboard.insertText("big ".repeat(60_000));
    await page.keyboard.press("Control+s");
    const saved = page.locator(".saved.error", { hasText: "unsaved" });
    await saved.waitFor({ timeout: 30_000 });
    assert.match(await saved.getAttribute("title"), /limits\.request_body/);
    await page.locator(".toast.error", { hasText: /Not saved: .*limit/ }).first().waitFor();
    await shot(page, "13-save-too-large");

    // Logging out revokes the session: the old cookie is refused.
    const [session] = (await page.context().cookies()).filter((c) => c.name === "lab_token");
    await page.locator(".user-menu summary").click();
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByLabel("token").waitFor();
    const r = await fetch(`${lab.base}/api/kernels`, { headers: { Cookie: `lab_token=${session.value}` } });
    assert.equal(r.status, 401, "the old session cookie still works");

    // Expected console errors here: the blocked form and the refused save.
    const unexpected = problems.filter((p) =>
      !(p.startsWith("untrusted: ") && /Blocked form submission|413|Payload Too Large/.test(p)) &&
      !(p.startsWith("code-again: ") && /401/.test(p)));
    assert.deepEqual(unexpected, [], "the console stayed clean");
  } finally {
    stopLab(lab);
  }
}));
