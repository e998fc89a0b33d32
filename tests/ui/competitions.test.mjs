// A Kaggle-style competition in a real browser (Debian's Chromium via
// playwright-core) against a real `lab serve`, with the example
// competition examples/competitions/spirals: a trainer creates it through
// the UI, uploads its files and solution, and publishes it; two
// participants join and form a team on the Team page (invite, accept,
// rename), a third joins their team and leaves it again; a refused CSV
// shows its problem by line and column, an upload and a file picked from
// the participant's folder get public scores, the public board ranks the
// team first; finals are picked on My submissions; the trainer rescores,
// closes the competition by editing its end, and reveals the private
// board, where the loner overtakes the team that overfit the public one.
// Predictions are made from the hidden solution so every rank is known.
// Screenshots in tests/artifacts/ui/competitions/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pages, ROOT, launchBrowser, loginWith, startLab, restClient } from "./harness.mjs";

let lab, browser, ui, data;
const tokens = {};

before(async () => {
  data = mkdtempSync(join(tmpdir(), "spirals-"));
  execFileSync("python3", [join(ROOT, "examples", "competitions", "spirals", "make_data.py"), data]);
  lab = await startLab([], (cli) => {
    tokens.tina = cli("user", "add", "tina", "--role", "trainer");
    for (const u of ["alice", "bob", "carl"]) tokens[u] = cli("user", "add", u, "--role", "engineer");
  });
  browser = await launchBrowser();
  ui = new Pages(browser, "competitions");
});

after(async () => {
  await browser?.close();
  lab?.proc.kill("SIGTERM");
  if (data) rmSync(data, { recursive: true, force: true });
});

/// A REST call as `user`.
const rest = restClient(() => lab, tokens);

/// The hidden solution's rows: id, label, Usage.
function solution() {
  return readFileSync(join(data, "solution.csv"), "utf8")
    .trim()
    .split("\n")
    .slice(1)
    .map((l) => {
      const [id, label, usage] = l.split(",");
      return { id, label: Number(label), usage };
    });
}

/// Predictions wrong where `wrong(row, i)` says, and their accuracy on
/// each board.
function predictions(rows, wrong) {
  const lines = ["id,label"];
  const right = { Public: 0, Private: 0 };
  const all = { Public: 0, Private: 0 };
  rows.forEach((r, i) => {
    const miss = wrong(r, i);
    lines.push(`${r.id},${miss ? (r.label + 1) % 3 : r.label}`);
    all[r.usage] += 1;
    if (!miss) right[r.usage] += 1;
  });
  return { csv: lines.join("\n") + "\n", public: right.Public / all.Public, private: right.Private / all.Private };
}

/// A time as a `datetime-local` input takes it, on the page's clock.
function localInput(page, ms) {
  return page.evaluate((ms) => {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }, ms);
}

/// Opens one of the competition's tabs, read afresh (the same hash again
/// would not route).
async function visit(page, tab) {
  const url = `${lab.base}/#/competition/spirals/${tab}`;
  if (page.url() === url) await page.reload();
  else await page.goto(url);
}

const close = (shown, expected) => assert.ok(Math.abs(Number(shown) - expected) < 6e-6, `${shown} is not ${expected}`);

test("a trainer runs the spirals competition; teams form, submit, pick finals; the private board and the shake-up", { timeout: 300_000 }, () =>
  ui.withFailureShots(async () => {
    const rows = solution();
    // The team overfits the public board: right on every public row, wrong
    // on 40% of the private ones; its second file is honest (90%); the
    // loner's is 95% right everywhere.
    const overfit = predictions(rows, (r, i) => r.usage === "Private" && i % 5 < 2);
    const honest = predictions(rows, (_, i) => i % 10 === 0);
    const loner = predictions(rows, (_, i) => i % 20 === 0);
    assert.ok(overfit.public === 1 && loner.public < 1 && honest.private < loner.private && overfit.private < honest.private);

    // 1. The trainer creates the competition: accuracy on `label`, one final
    // selection, the private board revealed by staff.
    const tina = await ui.newPage("tina");
    await loginWith(tina, lab.base, tokens.tina);
    await tina.getByRole("link", { name: "Competitions" }).click();
    await tina.getByText("No competitions yet.").waitFor();
    await tina.locator("details.new-competition summary").click();
    const form = tina.locator("form.competition-form");
    await form.getByLabel("slug").fill("spirals");
    await form.getByLabel("title").fill("Spirals");
    await form.getByLabel("overview").fill("Tell the **three arms** apart.");
    await form.getByLabel("rules text").fill("One account per person; no hand labelling.");
    await form.locator('input[name="target_column"]').fill("label");
    await form.locator('input[name="selections"]').fill("1");
    await form.locator('select[name="reveal"]').selectOption("by_staff");
    await form.getByRole("button", { name: "Create" }).click();
    await tina.waitForURL(/#\/competition\/spirals\/host$/);
    await tina.locator(".competition-state", { hasText: "Draft: only staff see it" }).waitFor();
    assert.match(await tina.locator(".competition-state").textContent(), /no solution yet/);

    // 2. Its files: train, test and the sample for participants; a hidden
    // file shown as such and removed; then the solution.
    await tina.locator("nav.tabs").getByRole("link", { name: "Data" }).click();
    const upload = async (file, hidden = false) => {
      await tina.locator('input[name="data-file"]').setInputFiles(join(data, file));
      await tina.locator('input[name="data-hidden"]').setChecked(hidden);
      await tina.locator(".data-upload").getByRole("button", { name: "Upload" }).click();
      const name = file.split("/").pop();
      await tina.locator(`.data-files tr[data-name="${name}"][data-hidden="${hidden}"]`).waitFor();
    };
    await upload("data/train.csv");
    await upload("data/test.csv");
    await upload("data/sample_submission.csv");
    await upload("hidden/test.csv", true);
    assert.equal(await tina.locator('.data-files tr[data-hidden="true"] .visibility').textContent(), "hidden: code runs only");
    await tina.locator('.data-files tr[data-hidden="true"]').getByRole("button", { name: "Remove" }).click();
    await tina.locator('.data-files tr[data-hidden="true"]').waitFor({ state: "detached" });
    await tina.locator('input[name="solution-file"]').setInputFiles(join(data, "solution.csv"));
    await tina.getByRole("button", { name: "Upload solution" }).click();
    await tina.getByText(/Solution stored: 5000 rows/).waitFor();
    await tina.locator(".solution-upload", { hasText: "Uploaded." }).waitFor();
    await ui.shot(tina, "01-data");

    // 3. Published: participants can see it.
    await tina.locator("nav.tabs").getByRole("link", { name: "Host" }).click();
    await tina.locator("button.publish").click();
    await tina.locator(".competition-state", { hasText: "Published" }).waitFor();

    // 4. Three participants find it and join.
    const page = {};
    for (const u of ["alice", "bob", "carl"]) {
      page[u] = await ui.newPage(u);
      await loginWith(page[u], lab.base, tokens[u]);
      await page[u].getByRole("link", { name: "Competitions" }).click();
      await page[u].locator('tr[data-slug="spirals"]').getByRole("link", { name: "Spirals" }).click();
      await page[u].waitForURL(/#\/competition\/spirals$/);
      await page[u].locator(".overview-text strong", { hasText: "three arms" }).waitFor();
      await page[u].getByRole("button", { name: "Join competition" }).click();
      await page[u].locator(".tag.joined", { hasText: `team ${u}` }).waitFor();
    }
    const { alice, bob, carl } = page;
    await ui.shot(alice, "02-overview");
    // The participant files download from the Data tab.
    await alice.locator("nav.tabs").getByRole("link", { name: "Data" }).click();
    const [download] = await Promise.all([alice.waitForEvent("download"), alice.getByRole("link", { name: "sample_submission.csv" }).click()]);
    assert.equal(readFileSync(await download.path(), "utf8"), readFileSync(join(data, "data/sample_submission.csv"), "utf8"));
    assert.equal(await alice.locator('.data-files tr[data-hidden="true"]').count(), 0);

    // 5. Alice asks Bob's team to merge into hers; Bob accepts; she renames it.
    const teamTab = async (p) => {
      await visit(p, "team");
      await p.locator(".team-view .team-name").waitFor();
    };
    const invite = async (from, who) => {
      await teamTab(from);
      await from.getByLabel("invite user").fill(who);
      await from.getByRole("button", { name: "Invite" }).click();
      await from.locator(`.invitations-sent li[data-to="${who}"]`).waitFor();
    };
    await invite(alice, "bob");
    await teamTab(bob);
    await bob.locator('.invitations-received li[data-from="alice"]').getByRole("button", { name: "Accept" }).click();
    await bob.locator(".team-view .team-name", { hasText: "alice" }).waitFor();
    await teamTab(alice);
    await alice.getByLabel("team name").fill("Spiral Riders");
    await alice.getByRole("button", { name: "Rename" }).click();
    await alice.locator(".team-view .team-name", { hasText: "Spiral Riders" }).waitFor();
    assert.deepEqual(await alice.locator(".members li").allTextContents(), ["alice", "bob"]);
    // Carl joins them too, then leaves for a team of his own again.
    await invite(alice, "carl");
    await teamTab(carl);
    await carl.locator('.invitations-received li[data-from="Spiral Riders"]').getByRole("button", { name: "Accept" }).click();
    await carl.locator(".team-view .team-name", { hasText: "Spiral Riders" }).waitFor();
    assert.deepEqual(await carl.locator(".members li").allTextContents(), ["alice", "bob", "carl"]);
    await ui.shot(carl, "03-team");
    await carl.getByRole("button", { name: "Leave team" }).click();
    await carl.getByText("You left the team").waitFor();
    await carl.locator(".members li").first().waitFor();
    assert.deepEqual(await carl.locator(".members li").allTextContents(), ["carl"]);
    const carlTeam = (await rest("carl", "GET", "/api/competitions/spirals/team")).name;

    // 6. Submissions. A file with an id the test set does not have is
    // refused, naming its line and column; it costs nothing.
    const submitTab = async (p) => {
      await visit(p, "submit");
      await p.locator(".submit .caps").waitFor();
    };
    const uploadCsv = async (p, name, csv) => {
      await p.locator('input[name="submission-file"]').setInputFiles({ name, mimeType: "text/csv", buffer: Buffer.from(csv) });
      await p.locator("button.submit-file").click();
    };
    await submitTab(alice);
    assert.match(await alice.locator(".caps").textContent(), /Today \(UTC\): 0 of 5 submissions, 5 left/);
    const bad = overfit.csv.split("\n");
    bad[3] = bad[3].replace(/^\d+,/, "99999,");
    await uploadCsv(alice, "bad.csv", bad.join("\n"));
    const refused = alice.locator('.submit-result[data-state="rejected"]');
    await refused.waitFor();
    assert.match(await refused.locator('.problems li[data-line="4"][data-column="id"]').textContent(), /^Line 4, column id: id "?99999"? is not in the test set$/);
    assert.match(await alice.locator(".caps").textContent(), /0 of 5 submissions/);
    await ui.shot(alice, "04-refused");
    // The overfit file: a perfect public score.
    await alice.getByLabel("description").fill("public-perfect");
    await uploadCsv(alice, "overfit.csv", overfit.csv);
    await alice.locator('.submit-result[data-state="scored"]').waitFor();
    close(await alice.locator(".submit-result .score").textContent(), overfit.public);
    await alice.locator(".caps", { hasText: "1 of 5 submissions" }).waitFor();

    // Bob picks the honest file from his own folder.
    await rest("bob", "PUT", "/api/contents/preds", { type: "directory" });
    await rest("bob", "PUT", "/api/contents/preds/honest.csv", { type: "file", format: "text", content: honest.csv });
    await submitTab(bob);
    await bob.locator('.from-folder tr[data-dir="preds"] button').click();
    await bob.locator('.from-folder tr[data-path="preds/honest.csv"]').getByRole("button", { name: "Submit" }).click();
    await bob.locator('.submit-result[data-state="scored"]').waitFor();
    close(await bob.locator(".submit-result .score").textContent(), honest.public);
    assert.match(await bob.locator(".caps").textContent(), /2 of 5 submissions/, "the team's caps are shared");
    await ui.shot(bob, "05-from-folder");

    // Carl alone.
    await submitTab(carl);
    await uploadCsv(carl, "mine.csv", loner.csv);
    await carl.locator('.submit-result[data-state="scored"]').waitFor();

    // 7. The public board: the team first, by its perfect public score.
    await alice.locator(".submit-result").getByRole("link", { name: "Leaderboard" }).click();
    const board = (p, b) => p.locator(`.board[data-board="${b}"]`);
    await board(alice, "public").waitFor();
    assert.deepEqual(await board(alice, "public").locator("tbody tr").evaluateAll((trs) => trs.map((t) => [t.dataset.rank, t.dataset.team])), [
      ["1", "Spiral Riders"],
      ["2", carlTeam],
    ]);
    close(await board(alice, "public").locator('tr[data-team="Spiral Riders"] td').nth(2).textContent(), overfit.public);
    close(await board(alice, "public").locator(`tr[data-team="${carlTeam}"] td`).nth(2).textContent(), loner.public);
    assert.equal(await board(alice, "public").locator("tr.mine").getAttribute("data-team"), "Spiral Riders");
    assert.equal(await alice.locator('.board-tab[data-board="private"]').count(), 0, "no private board before the reveal");
    await ui.shot(alice, "06-public-board");

    // 8. Finals: Bob picks the honest file, Carl his only one. Private
    // scores are not shown yet.
    const mine = async (p) => {
      await visit(p, "submissions");
      await p.locator(".entries tbody tr[data-id]").first().waitFor();
    };
    await mine(bob);
    const entries = bob.locator(".entries tbody tr[data-id]");
    assert.deepEqual(await entries.evaluateAll((trs) => trs.map((t) => t.dataset.state)), ["scored", "scored", "rejected"]);
    const honestRow = bob.locator('.entries tr[data-user="bob"]');
    assert.equal(await honestRow.locator(".private").textContent(), "hidden");
    assert.match(await bob.locator('.entries tr[data-state="rejected"] .entry-error').textContent(), /Line 4, column id/);
    await honestRow.locator('input[name="final"]').check();
    await bob.locator(".finals-note", { hasText: "Final selections: 1 of 1" }).waitFor();
    await bob.locator('.entries tr.selected[data-user="bob"]').waitFor();
    await ui.shot(bob, "07-finals");
    await mine(carl);
    await carl.locator('.entries input[name="final"]').check();
    await carl.locator(".finals-note", { hasText: "Final selections: 1 of 1" }).waitFor();

    // 9. Staff: every submission in the queue view; a rescore against the
    // solution; then the end moved to now, and the private board revealed.
    await visit(tina, "host");
    await tina.locator(".queue-summary", { hasText: "4 submission(s); 0 queued, 0 running" }).waitFor();
    await tina.locator("button.rescore").click();
    await tina.getByText("3 submission(s) rescored").waitFor();
    const now = await localInput(tina, Date.now() - 1000);
    await tina.locator('.edit-competition input[name="merger_deadline"]').fill(now);
    await tina.locator('.edit-competition input[name="end"]').fill(now);
    await tina.locator("button.save-competition").click();
    await tina.getByText("Competition saved").waitFor();
    await tina.locator('.tag.phase[data-phase="ended"]').waitFor();
    await tina.locator("button.reveal").click();
    await tina.locator(".competition-state", { hasText: "private board revealed" }).waitFor();
    await ui.shot(tina, "08-revealed");

    // 10. Participants see the private board: the loner overtakes the team,
    // whose private score is its selected honest file's, not its best
    // public one's; the shake-up shows both moves.
    for (const p of [carl, alice]) {
      await visit(p, "leaderboard");
      await board(p, "private").waitFor();
    }
    const priv = board(alice, "private");
    assert.deepEqual(await priv.locator("tbody tr").evaluateAll((trs) => trs.map((t) => [...t.querySelectorAll("td")].map((td) => td.textContent))), [
      ["1", carlTeam, loner.private.toFixed(5), "2", "▲ 1"],
      ["2", "Spiral Riders", honest.private.toFixed(5), "1", "▼ 1"],
    ]);
    close(await priv.locator('tr[data-team="Spiral Riders"] td').nth(2).textContent(), honest.private);
    await ui.shot(alice, "09-private-board");
    await carl.locator('.board-tab[data-board="shakeup"]').click();
    await board(carl, "shakeup").waitFor();
    assert.deepEqual(await board(carl, "shakeup").locator("tbody tr").evaluateAll((trs) => trs.map((t) => [...t.querySelectorAll("td")].map((td) => td.textContent))), [
      [carlTeam, "2", "1", "▲ 1"],
      ["Spiral Riders", "1", "2", "▼ 1"],
    ]);
    assert.equal(await board(carl, "shakeup").locator("tr.mine").getAttribute("data-team"), carlTeam);
    await ui.shot(carl, "10-shake-up");
    // The private board as CSV.
    await carl.locator('.board-tab[data-board="private"]').click();
    const [csvDownload] = await Promise.all([carl.waitForEvent("download"), carl.locator(".board-view a.export-csv").click()]);
    assert.equal(csvDownload.suggestedFilename(), "spirals-private.csv");
    const csv = readFileSync(await csvDownload.path(), "utf8").trim().split("\n");
    assert.equal(csv[0], "rank,team,score,entries,submitted");
    assert.match(csv[1], new RegExp(`^1,${carlTeam},${loner.private.toFixed(5)},1,`));
    // Private scores now show on My submissions; finals are closed.
    await mine(bob);
    close(await bob.locator('.entries tr[data-user="bob"] .private').textContent(), honest.private);
    assert.ok(await bob.locator('.entries tr[data-user="bob"] input[name="final"]').isDisabled());
    await submitTab(bob);
    await bob.getByText("The competition has ended").waitFor();

    // The only console error is the refused file's 422.
    const unexpected = ui.problems.filter((p) => !(p.startsWith("alice: ") && /422/.test(p)));
    assert.deepEqual(unexpected, [], "the console stayed clean");
    assert.equal(ui.problems.length, 1, ui.problems.join("\n"));
  }),
);
