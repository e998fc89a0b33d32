// A code competition's notebooks in a real browser (Debian's Chromium via
// playwright-core) against a real `lab serve`, with the example competition
// examples/competitions/spirals as its code version `spirals-code`: a
// trainer sets it up over REST (its creation form is competitions.test.mjs's),
// with its hidden test set and a 15 s time limit, and one run at a time. A
// participant with three notebooks in a folder of their own uses "Run a
// notebook" on the Submit tab: one that loops (a timeout), one that predicts
// the hidden test set with a one-line rule (scored: its public score is the
// rule's accuracy on the solution's public rows), and, after both, one that
// reads the hidden test set, prints from it and raises an error. My
// submissions shows the queue (running, queued with its place, Cancel, the
// list refreshing itself), then each run's outcome: the score, the
// timeout's and the error's own sentences, the error's traceback from the
// notebook's source, and no value of the hidden test set.
// Screenshots in tests/artifacts/ui/competition-code/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pages, ROOT, launchBrowser, loginWith, startLab, restClient } from "./harness.mjs";

const SLUG = "spirals-code";
const LIMIT_S = 15;
const RUN_TIMEOUT = 120_000;

// A code run is confined with Landlock (ABI 6), as in tests/test_competition_code.py,
// whose check this is: without it the runs cannot start.
const LANDLOCK = Number(
  execFileSync("python3", ["-c", "import ctypes; print(max(ctypes.CDLL(None).syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)), 0))"], { encoding: "utf8" }),
);
const SKIP = LANDLOCK < 6 && "this Linux lacks Landlock ABI 6";

let lab, browser, ui, data;
const tokens = {};

before(async () => {
  if (SKIP) return;
  data = mkdtempSync(join(tmpdir(), "spirals-code-"));
  execFileSync("python3", [join(ROOT, "examples", "competitions", "spirals", "make_data.py"), data]);
  lab = await startLab([], (cli, dir) => {
    // One run at a time, whatever the machine: the second notebook waits in the queue.
    writeFileSync(join(dir, "lab.toml"), "[competitions]\nparallel = 1\n");
    tokens.tess = cli("user", "add", "tess", "--role", "trainer");
    tokens.pat = cli("user", "add", "pat", "--role", "engineer");
  });
  browser = await launchBrowser();
  ui = new Pages(browser, "competition-code");
});

after(async () => {
  await browser?.close();
  lab?.proc.kill("SIGTERM");
  if (data) rmSync(data, { recursive: true, force: true });
});

/// A REST call as `user`.
const rest = restClient(() => lab, tokens);

/// A file of the example's `file` as the body of a PUT by staff.
async function upload(path, file) {
  const r = await fetch(lab.base + path, { method: "PUT", headers: { Authorization: `token ${tokens.tess}`, "Content-Type": "text/csv" }, body: readFileSync(join(data, file)) });
  assert.ok(r.ok, `PUT ${path}: ${r.status} ${await r.text()}`);
}

const csvRows = (file) =>
  readFileSync(join(data, file), "utf8")
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => l.split(","));

/// A notebook of academy-candle cells.
function notebook(...sources) {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: "academy-candle", display_name: "Candle ML (academy)", language: "rhai" } },
    cells: sources.map((source) => ({ cell_type: "code", metadata: {}, execution_count: null, outputs: [], source })),
  };
}

// The notebooks sit in `mine/`: a run starts in the notebook's folder, where
// the competition's files are at ../competitions/NAME/ (the hidden test set
// in a run, the public sample in the participant's own kernels).
const TEST = `"../competitions/${SLUG}/test.csv"`;
const RULE = notebook(
  `let test = read_csv(${TEST});\n` +
    "let ids = test.data.slice(1, 0, 1).flatten();\n" +
    "let label = test.data.slice(1, 1, 2).flatten().gt(0.0);\n" +
    'write_csv("submission.csv", ["id", "label"], [ids, label]);\n' +
    "print(`wrote ${ids.shape[0]} predictions`);",
);
const LOOP = notebook("let i = 0;\nloop { i += 1; }");
const BOOM_MESSAGE = "boom: no rule for these spirals";
const BOOM = notebook(`let test = read_csv(${TEST});\nprint(test.data.slice(0, 4000, 4010));`, `throw "${BOOM_MESSAGE}";`);

const close = (shown, expected) => assert.ok(Math.abs(Number(shown) - expected) < 6e-6, `${shown} is not ${expected}`);

test("a participant runs notebooks in a code competition: the queue, a score, a timeout and an error", { timeout: 300_000, skip: SKIP }, () =>
  ui.withFailureShots(async () => {
    // The rule `label = x > 0` on the hidden test set, scored on the public rows.
    const hidden = csvRows("hidden/test.csv");
    const rule = new Map(hidden.map(([id, x]) => [id, Number(x) > 0 ? 1 : 0]));
    const pub = csvRows("solution.csv").filter((r) => r[2] === "Public");
    const expected = pub.filter(([id, label]) => rule.get(id) === Number(label)).length / pub.length;
    assert.ok(expected > 0.2 && expected < 0.9, `the rule's accuracy ${expected}`);
    // The hidden rows a participant never sees (the first 100 are the public sample).
    const secret = new Set(hidden.slice(100).flatMap(([, x, y]) => [x, y]));

    // 1. The competition, over REST: notebooks only, a short time limit.
    const now = Date.now();
    const iso = (ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
    await rest("tess", "POST", "/api/competitions", {
      slug: SLUG,
      title: "Spirals (code)",
      overview: "Tell the arms apart, offline.",
      rules: {
        metric: { name: "accuracy" },
        columns: { id: "id", target: "label" },
        start: iso(now - 86_400_000),
        merger_deadline: iso(now + 5 * 86_400_000),
        end: iso(now + 10 * 86_400_000),
        daily_cap: 20,
        csv: false,
        code: { time_limit_s: LIMIT_S, memory_mb: 2048 },
      },
    });
    await upload(`/api/competitions/${SLUG}/solution`, "solution.csv");
    await upload(`/api/competitions/${SLUG}/data/train.csv`, "data/train.csv");
    await upload(`/api/competitions/${SLUG}/data/test.csv`, "sample/test.csv");
    await upload(`/api/competitions/${SLUG}/data/sample_submission.csv`, "data/sample_submission.csv");
    await upload(`/api/competitions/${SLUG}/data/test.csv?hidden=true`, "hidden/test.csv");
    await rest("tess", "POST", `/api/competitions/${SLUG}/publish`);
    await rest("pat", "POST", `/api/competitions/${SLUG}/join`);

    // 2. Pat's notebooks, and a CSV the notebook picker does not offer.
    await rest("pat", "PUT", "/api/contents/mine", { type: "directory" });
    for (const [name, nb] of [["rule", RULE], ["loop", LOOP], ["boom", BOOM]]) {
      await rest("pat", "PUT", `/api/contents/mine/${name}.ipynb`, { type: "notebook", format: "json", content: nb });
    }
    await rest("pat", "PUT", "/api/contents/mine/notes.csv", { type: "file", format: "text", content: "id,label\n1,0\n" });

    // 3. The Rules tab and the Submit tab: the limits as set (seconds, not
    // minutes rounded to 0); no CSV upload; the notebooks of the folder.
    const pat = await ui.newPage("pat");
    await loginWith(pat, lab.base, tokens.pat);
    const visit = async (tab) => {
      const url = `${lab.base}/#/competition/${SLUG}/${tab}`;
      if (pat.url() === url) await pat.reload();
      else await pat.goto(url);
    };
    await visit("rules");
    await pat.locator(".caps-list li", { hasText: `A notebook runs offline for at most ${LIMIT_S} s with 2048 MiB of memory.` }).waitFor();
    await visit("submit");
    await pat.locator(".submit .caps").waitFor();
    const fieldset = pat.locator("fieldset.from-notebook");
    assert.equal(await fieldset.locator("legend").textContent(), "Run a notebook");
    assert.match(await fieldset.locator(":scope > p.muted").textContent(), new RegExp(`in at most ${LIMIT_S} s with 2048 MiB, and must write submission\\.csv beside itself \\(header id,label\\)`));
    assert.equal(await pat.locator("fieldset.upload-submission").count(), 0, "a notebooks-only competition takes no CSV");
    assert.equal(await pat.locator("fieldset.from-folder").count(), 0);
    const runNotebook = async (name, description) => {
      await pat.getByLabel("description").fill(description);
      await fieldset.locator('tr[data-dir="mine"] button').click();
      await fieldset.locator(".crumbs", { hasText: "My folder/mine" }).waitFor();
      assert.equal(await fieldset.locator('tr[data-path="mine/notes.csv"]').count(), 0);
      await fieldset.locator(`tr[data-path="mine/${name}.ipynb"]`).getByRole("button", { name: "Run and submit" }).click();
    };
    const caps = (n) => pat.locator(".caps", { hasText: `Today (UTC): ${n} of 20 submissions` }).waitFor();

    // The loop first, then the rule: one run at a time, so the rule waits.
    await runNotebook("loop", "loop forever");
    const queued = pat.locator('.submit-result[data-state="queued"]');
    await queued.waitFor();
    assert.match(await queued.textContent(), /^Queued for its run: position 1\. Follow it in My submissions$/);
    await caps(1);
    await visit("submit");
    await runNotebook("rule", "x rule");
    await queued.waitFor();
    assert.match(await queued.textContent(), /^Queued for its run: position [12]\./);
    await caps(2);
    await ui.shot(pat, "01-queued");

    // 4. My submissions: the loop runs, the rule waits behind it, and the
    // list refreshes by itself.
    await queued.getByRole("link", { name: "Follow it in My submissions" }).click();
    await pat.waitForURL(new RegExp(`#/competition/${SLUG}/submissions$`));
    const row = (description) => pat.locator(".entries tbody tr[data-id]", { hasText: description });
    const loopRow = row("loop forever");
    const ruleRow = row("x rule");
    await pat.locator('.entries tbody tr[data-id][data-state="running"]', { hasText: "loop forever" }).waitFor({ timeout: RUN_TIMEOUT });
    assert.equal(await loopRow.locator(".state-text").textContent(), "running…");
    assert.equal(await ruleRow.getAttribute("data-state"), "queued");
    assert.equal(await ruleRow.locator(".state-text").textContent(), "queued: position 1");
    assert.equal(await ruleRow.locator(".what .tag").textContent(), "notebook");
    assert.equal(await ruleRow.locator("button.cancel").count(), 1, "a queued notebook can be cancelled");
    assert.equal(await loopRow.locator("button.cancel").count(), 0, "a running one cannot");
    await pat.locator('.entries-status[data-busy="true"]', { hasText: "A notebook waits or runs: this list refreshes by itself." }).waitFor();
    await ui.shot(pat, "02-running-and-queued");

    // 5. The loop stops at the time limit; the rule is scored on the hidden
    // test set, with no reload.
    await pat.locator('.entries tbody tr[data-state="scored"]', { hasText: "x rule" }).waitFor({ timeout: RUN_TIMEOUT });
    close(await ruleRow.locator(".public").textContent(), expected);
    assert.equal(await ruleRow.locator(".private").textContent(), "hidden");
    assert.equal(await ruleRow.locator(".runtime").textContent(), "1 min");
    assert.equal(await ruleRow.locator('input[name="final"]').count(), 1, "a scored notebook can be a final one");
    assert.equal(await loopRow.getAttribute("data-state"), "failed");
    assert.equal(await loopRow.locator(".state-text").textContent(), "failed");
    assert.equal(await loopRow.locator(".entry-error .error").textContent(), `the notebook ran past the competition's time limit of ${LIMIT_S} s`);
    await pat.locator('.entries-status[data-busy="false"]').waitFor({ state: "attached" });
    await ui.shot(pat, "03-scored-and-timeout");

    // The public board has Pat's team at the rule's score.
    await visit("leaderboard");
    const board = pat.locator('.board[data-board="public"]');
    await board.waitFor();
    close(await board.locator('tr[data-team="pat"] td').nth(2).textContent(), expected);

    // 6. A notebook that reads the hidden test set, prints from it and
    // raises its own error: the error's sentence and the notebook's line,
    // nothing the run computed.
    await visit("submit");
    await runNotebook("boom", "raises");
    await queued.waitFor();
    await caps(3);
    await visit("submissions");
    const boomRow = row("raises");
    await pat.locator('.entries tbody tr[data-state="failed"]', { hasText: "raises" }).waitFor({ timeout: RUN_TIMEOUT });
    assert.equal(await boomRow.locator(".state-text").textContent(), "failed");
    const message = await boomRow.locator(".entry-error .error").textContent();
    assert.ok(message.startsWith("the notebook raised an error: ") && message.endsWith(BOOM_MESSAGE), message);
    // The place from the notebook as sent (the failing cell and its line,
    // from the kernel's iopub error, whether it came before or after the
    // execute_reply), then the error's name and message, the notebook's own
    // literal.
    const traceback = (await boomRow.locator(".entry-error pre.traceback").textContent()).split("\n");
    assert.match(traceback[0], /^in the notebook's cell 2, line \d+:$/, traceback.join("\n"));
    assert.equal(traceback.at(-1), `RuntimeError: Runtime error: ${BOOM_MESSAGE}`);
    await pat.locator('.entries-status[data-busy="false"]').waitFor({ state: "attached" });
    const shown = await pat.locator(".my-submissions").textContent();
    const leaked = (shown.match(/-?\d+\.\d+/g) ?? []).filter((v) => secret.has(v));
    assert.deepEqual(leaked, [], "no value of the hidden test set is shown");
    assert.deepEqual(await pat.locator(".entries tbody tr[data-id]").evaluateAll((trs) => trs.map((t) => t.dataset.state)), ["failed", "scored", "failed"]);
    await ui.shot(pat, "04-error");

    assert.deepEqual(ui.problems, [], "the console stayed clean");
  }),
);
