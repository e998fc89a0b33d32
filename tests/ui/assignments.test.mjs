// Graded exercises in a real browser (Debian's Chromium via playwright-core)
// against a real `lab serve` grading in real academy-candle kernels: a
// trainer writes and marks a notebook, makes an assignment of it, sets its
// dates and releases it; an engineer validates, submits a wrong answer and
// sees the failed public test, fixes it and sees full public marks; after
// the due date the trainer publishes, grades a free answer by hand, and the
// engineer sees hidden-test marks; the gradebook shows both engineers and
// its CSV downloads. Screenshots in tests/artifacts/ui/assignments/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Pages, launchBrowser, loginWith, startLab, typeInto, restClient } from "./harness.mjs";

let lab, browser, ui;
const tokens = {};

before(async () => {
  lab = await startLab([], (cli) => {
    tokens.tina = cli("user", "add", "tina", "--role", "trainer");
    tokens.eve = cli("user", "add", "eve", "--role", "engineer");
    tokens.sam = cli("user", "add", "sam", "--role", "engineer");
  });
  browser = await launchBrowser();
  ui = new Pages(browser, "assignments");
});

after(async () => {
  await browser?.close();
  lab?.proc.kill("SIGTERM");
});

/// A REST call as `user`.
const rest = restClient(() => lab, tokens);

/// Waits for a submission to end graded (or fails the test with its state).
async function graded(user, id) {
  const until = Date.now() + 120_000;
  for (;;) {
    const s = await rest(user, "GET", `/api/submissions/${id}`);
    if (s.state === "graded") return s;
    assert.notEqual(s.state, "failed", JSON.stringify(s));
    assert.ok(Date.now() < until, `still ${s.state}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const CELLS = [
  { text: "fn square(x) {\n    // BEGIN SOLUTION\n    x * x\n    // END SOLUTION\n}", role: "solution", id: "square" },
  { text: "assert_eq(square(3), 9);", role: "tests", id: "test_square", points: 1 },
  { text: "// BEGIN HIDDEN TESTS\nassert_eq(square(-4), 16);\n// END HIDDEN TESTS", role: "tests", id: "test_hidden", points: 2 },
];

test("a trainer makes an assignment; engineers validate, submit and read feedback; the gradebook", { timeout: 600_000 }, () =>
  ui.withFailureShots(async () => {
    // 1. The trainer writes a notebook and marks its cells, as in nbgrader.
    const trainer = await ui.newPage("tina");
    await loginWith(trainer, lab.base, tokens.tina);
    trainer.nextPrompt = "squares.ipynb";
    await trainer.getByRole("button", { name: "New notebook" }).click();
    await trainer.waitForURL(/#\/nb\/squares\.ipynb$/);
    await trainer.getByLabel("kernel").selectOption("academy-candle");
    await trainer.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });
    await trainer.getByRole("button", { name: "Assignment tools" }).click();
    for (const [i, c] of CELLS.entries()) {
      if (i > 0) await trainer.getByRole("button", { name: "+ Code" }).click();
      const cell = trainer.locator("section.cell.code").nth(i);
      await typeInto(trainer, cell, c.text);
      await cell.getByLabel("grading role").selectOption(c.role);
      await cell.getByLabel("cell id").fill(c.id);
      await cell.getByLabel("cell id").press("Tab");
      if (c.points) {
        await cell.getByLabel("points").fill(String(c.points));
        await cell.getByLabel("points").press("Tab");
      }
    }
    // A free answer, graded by hand.
    await trainer.getByRole("button", { name: "+ Text" }).click();
    const explain = trainer.locator("section.cell.markdown").last();
    await typeInto(trainer, explain, "Why is a square never negative?");
    await explain.getByLabel("grading role").selectOption("manual");
    await explain.getByLabel("cell id").fill("explain");
    await explain.getByLabel("cell id").press("Tab");
    await explain.getByLabel("points").fill("1");
    await explain.getByLabel("points").press("Tab");
    await ui.shot(trainer, "01-marked-cells");

    // 2. It becomes a draft assignment of course ml101.
    await trainer.getByRole("button", { name: "Create assignment" }).click();
    const dialog = trainer.locator("dialog.create-assignment");
    await dialog.getByLabel("Course").fill("ml101");
    await dialog.getByLabel("Assignment").fill("squares");
    await dialog.getByRole("button", { name: "Create" }).click();
    await trainer.waitForURL(/#\/manage\/ml101\/squares$/);
    await trainer.locator(".assignment-state", { hasText: "Draft" }).waitFor();
    assert.match(await trainer.locator(".assignment-state").textContent(), /4 points in 3 graded cells \(candle\)/);

    // 2b. Data files: one released (engineers get it beside their copy),
    // one hidden (only gradings get it).
    const upload = async (name, text, path, hidden) => {
      await trainer.locator('input[name="data-file"]').setInputFiles({ name, mimeType: "text/csv", buffer: Buffer.from(text) });
      assert.equal(await trainer.locator('input[name="data-path"]').inputValue(), name, "the path defaults to the file's name");
      await trainer.locator('input[name="data-path"]').fill(path);
      await trainer.locator('input[name="data-hidden"]').setChecked(hidden);
      await trainer.locator(".data-upload").getByRole("button", { name: "Upload" }).click();
      await trainer.locator(`.data-files-manage tr[data-path="${path}"]`).waitFor();
    };
    await upload("points.csv", "x\n1\n2\n", "data/points.csv", false);
    await upload("expected.csv", "y\n1\n4\n", "expected.csv", true);
    assert.equal(await trainer.locator('.data-files-manage tr[data-path="expected.csv"] .visibility').textContent(), "hidden: gradings only");
    assert.equal(await trainer.locator('.data-files-manage tr[data-path="data/points.csv"] .visibility').textContent(), "released");

    // 3. Dates and policies: due in 40 s, hidden results when published.
    const dueMs = Date.now() + 40_000;
    const dueLocal = await trainer.evaluate((ms) => {
      const d = new Date(ms);
      const p = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    }, dueMs);
    await trainer.locator('input[name="due"]').fill(dueLocal);
    await trainer.locator('select[name="hidden"]').selectOption("when_published");
    await trainer.getByRole("button", { name: "Save policy" }).click();
    await trainer.getByText("Policy saved").waitFor();
    await trainer.getByRole("button", { name: "Release", exact: true }).click();
    await trainer.locator(".assignment-state", { hasText: "Released" }).waitFor();
    const policy = (await rest("tina", "GET", "/api/courses/ml101/assignments/squares")).policy;
    assert.equal(policy.hidden, "when_published");
    assert.ok(Math.abs(Date.parse(policy.dates.due) - dueMs) < 1000, policy.dates.due);
    await ui.shot(trainer, "02-released");

    // 4. The engineer finds it among their assignments and opens it: the
    // copy holds no solution and no hidden test.
    const eve = await ui.newPage("eve");
    await loginWith(eve, lab.base, tokens.eve);
    await eve.getByRole("link", { name: "Assignments" }).click();
    const row = eve.locator('tr[data-course="ml101"][data-assignment="squares"]');
    await row.waitFor();
    assert.match(await row.locator(".window").textContent(), /due .*\(in 1 min\)|due .*\(in \d+ min\)/);
    assert.equal(await row.locator(".state").textContent(), "not submitted");
    await row.getByRole("button", { name: "Open" }).click();
    await eve.waitForURL(/#\/nb\/ml101\/squares\.ipynb$/);
    await eve.locator(".worksheet").waitFor();
    const answer = eve.locator("section.cell.code").first();
    const released = await eve.locator(".cells").textContent();
    assert.ok(!released.includes("x * x") && !released.includes("square(-4)"), released);
    await eve.locator('.kernel-status[data-state="idle"]').waitFor({ timeout: 60_000 });

    // 5. A wrong answer: Validate shows the public test failing, nothing is
    // submitted.
    await typeInto(eve, answer, "fn square(x) {\n    x + x\n}");
    const free = eve.locator("section.cell.markdown").last();
    await free.locator(".markdown-rendered").dblclick();
    await typeInto(eve, free, "Both factors have the same sign.");
    await eve.locator(".worksheet").getByRole("button", { name: "Validate" }).click();
    const feedbackRow = (gid) => eve.locator(`.worksheet .feedback-cells tr[data-grade-id="${gid}"]`);
    await feedbackRow("test_square").waitFor({ timeout: 120_000 });
    assert.equal(await feedbackRow("test_square").getAttribute("data-status"), "failed");
    assert.equal(await eve.locator('section.cell.code .grade-badge[data-status="failed"]').count(), 1);
    assert.equal((await rest("eve", "GET", "/api/courses/ml101/assignments/squares/submissions")).length, 0);
    await ui.shot(eve, "03-validated-wrong");

    // 6. Submitted as it is: graded, the public test failed with its message.
    await eve.locator(".worksheet").getByRole("button", { name: "Submit" }).click();
    await eve.locator('.worksheet .submission-state[data-state="graded"]').waitFor({ timeout: 120_000 });
    assert.equal(await feedbackRow("test_square").getAttribute("data-status"), "failed");
    assert.match(await feedbackRow("test_square").locator(".points").textContent(), /^0 \/ 1$/);
    assert.match(await feedbackRow("test_square").locator(".output").textContent(), /6|9|assert/i);
    assert.equal(await feedbackRow("test_hidden").getAttribute("data-status"), "withheld");
    await ui.shot(eve, "04-graded-wrong");

    // 7. Fixed and submitted again: full public marks, hidden ones withheld.
    await typeInto(eve, answer, "fn square(x) {\n    x * x\n}");
    await eve.locator(".worksheet").getByRole("button", { name: "Submit" }).click();
    await feedbackRow("test_square").and(eve.locator('[data-status="passed"]')).waitFor({ timeout: 120_000 });
    assert.equal(await feedbackRow("test_square").locator(".points").textContent(), "1 / 1");
    assert.equal(await feedbackRow("test_hidden").getAttribute("data-status"), "withheld");
    assert.equal(await feedbackRow("explain").getAttribute("data-status"), "pending");
    assert.match(await eve.locator(".worksheet .feedback-score").textContent(), /Shown so far: 1 \/ 1/);
    const mine = await rest("eve", "GET", "/api/courses/ml101/assignments/squares/submissions");
    assert.equal(mine.length, 2);
    await ui.shot(eve, "05-graded-right");

    // A second engineer submits through the REST API.
    await rest("sam", "POST", "/api/courses/ml101/assignments/squares/fetch", {});
    const nb = (await rest("sam", "GET", "/api/contents/ml101/squares.ipynb")).content;
    nb.cells.find((c) => c.metadata?.nbgrader?.grade_id === "square").source = "fn square(x) { x * (0 - x) }";
    const samSub = await rest("sam", "POST", "/api/courses/ml101/assignments/squares/submissions", { notebook: nb });
    await graded("sam", samSub.id);

    // 8. After the due date the trainer publishes grades and grades the free
    // answer; the gradebook shows both engineers.
    await new Promise((r) => setTimeout(r, Math.max(0, dueMs - Date.now() + 1000)));
    await trainer.reload();
    await trainer.locator(".gradebook-table").waitFor();
    await trainer.getByRole("button", { name: "Publish grades" }).click();
    await trainer.locator(".assignment-state", { hasText: "grades published" }).waitFor();
    const bookRow = (u) => trainer.locator(`.gradebook-table tr[data-user="${u}"]`);
    await bookRow("eve").waitFor();
    await bookRow("sam").waitFor();
    assert.equal(await bookRow("eve").locator('td[data-grade-id="test_hidden"]').textContent(), "2");
    assert.equal(await bookRow("sam").locator('td[data-grade-id="test_square"]').textContent(), "0");
    assert.match(await trainer.locator(".grading-progress").textContent(), /3 graded, 0 running, 0 queued, 0 failed \(3 submissions\)/);
    await bookRow("eve").getByRole("button", { name: "Open" }).click();
    const panel = trainer.locator(".submission-panel");
    assert.equal(await panel.locator(".answer").textContent(), "Both factors have the same sign.");
    await panel.getByLabel("points for explain").fill("1");
    await panel.getByLabel("comment on explain").fill("Right: a product of two equal signs.");
    await panel.getByRole("button", { name: "Save grade" }).click();
    await trainer.getByText("Graded explain").waitFor();
    await panel.locator('tr[data-grade-id="explain"] .points', { hasText: "1 / 1" }).waitFor();
    await bookRow("eve").locator(".total", { hasText: /^4$/ }).waitFor();
    await ui.shot(trainer, "06-gradebook");

    // 9. The engineer now sees the hidden test's marks and the hand grade.
    await eve.goto(`${lab.base}/#/assignment/ml101/squares`);
    const detail = eve.locator(".submission-detail");
    await detail.locator('.feedback-cells tr[data-grade-id="test_hidden"]').waitFor();
    assert.equal(await detail.locator('tr[data-grade-id="test_hidden"]').getAttribute("data-status"), "passed");
    assert.equal(await detail.locator('tr[data-grade-id="test_hidden"] .points').textContent(), "2 / 2");
    assert.equal(await detail.locator('tr[data-grade-id="explain"] .points').textContent(), "1 / 1");
    assert.equal(await detail.locator('tr[data-grade-id="explain"] .comment').textContent(), "Trainer: Right: a product of two equal signs.");
    assert.match(await detail.locator(".feedback-score").textContent(), /Score: 4 \/ 4/);
    const shown = await eve.locator("main").textContent();
    assert.ok(!shown.includes("square(-4)"), "no hidden test source is shown");
    // The released data file is listed and came with the copy; the hidden one did neither.
    await detail.page().locator('.data-files a', { hasText: "data/points.csv" }).waitFor();
    assert.ok(!shown.includes("expected.csv"), "no hidden data file is named");
    const folder = await rest("eve", "GET", "/api/contents/ml101?content=1");
    const names = folder.content.map((f) => f.name);
    assert.ok(names.includes("data") && names.includes("squares.ipynb") && !names.includes("expected.csv"), names.join(", "));
    assert.equal((await rest("eve", "GET", "/api/contents/ml101/data/points.csv")).content, "x\n1\n2\n");
    await ui.shot(eve, "07-published");

    // 10. The CSV export downloads: a row per engineer.
    const [download] = await Promise.all([
      trainer.waitForEvent("download"),
      trainer.getByRole("link", { name: "Export CSV" }).click(),
    ]);
    assert.equal(download.suggestedFilename(), "ml101-squares-grades.csv");
    const csv = readFileSync(await download.path(), "utf8").trim().split(/\r?\n/);
    assert.equal(csv[0], "user,test_square,test_hidden,explain,score,penalty,total,state,submitted,late");
    assert.match(csv[1], /^eve,1,2,1,4,0,4,graded,/);
    assert.match(csv[2], /^sam,0,0,0,0,0,0,graded,/);

    assert.deepEqual(ui.problems, [], "the console stayed clean");
  }),
);
