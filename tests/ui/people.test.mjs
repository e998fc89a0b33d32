// People in bulk and personal tokens (issue 17) in a real browser (Debian's
// Chromium via playwright-core) against a real `lab serve`: the admin
// imports a CSV on the ops page (a dry run first, which changes nothing;
// a refused list, in the server's words; a column left out keeps what each
// user has), imports 60 more and pages through them, searches as they type
// (a slow answer to an older search never replaces a newer one),
// deactivates a user with a running kernel and a token (the token gets
// 401, the kernel is gone), reactivates them, and ends another user's
// browser sessions. An engineer makes a personal token on the Tokens
// page (shown once; it works), sees its last use, revokes it (401), is
// refused a lifetime over the server's longest, and revoking this
// browser's own session signs them out. Screenshots in
// tests/artifacts/ui/people/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LAB, Pages, launchBrowser, loginWith, startLab, restClient } from "./harness.mjs";

let lab, browser, ui, conf;
const tokens = {};

before(async () => {
  // The longest personal token here is 90 days: "1 year" is refused.
  conf = mkdtempSync(join(tmpdir(), "people-conf-"));
  writeFileSync(join(conf, "lab.toml"), '[login]\ntoken_max_lifetime = "90d"\n');
  lab = await startLab(["--config", join(conf, "lab.toml")], (cli) => {
    tokens.erin = cli("user", "add", "erin", "--role", "engineer");
  });
  tokens.admin = lab.token;
  browser = await launchBrowser();
  ui = new Pages(browser, "people");
});

after(async () => {
  await browser?.close();
  lab?.proc.kill("SIGTERM");
  if (conf) rmSync(conf, { recursive: true, force: true });
});

const rest = restClient(() => lab, tokens);
/// A `lab` command on the running server's data dir.
const cli = (...a) => execFileSync(LAB, [...a, "--data-dir", lab.data], { encoding: "utf8" }).trim();
/// The status of a request with `token` (or a cookie), for what is refused.
async function status(path, { token, cookie } = {}) {
  const headers = token ? { Authorization: `token ${token}` } : { Cookie: `lab_token=${cookie}` };
  return (await fetch(lab.base + path, { headers })).status;
}
/// One user as the ops list shows them.
async function person(name) {
  const all = await rest("admin", "GET", `/api/admin/users?search=${encodeURIComponent(name)}`);
  return all.find((p) => p.name === name);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// Picks a CSV for the import control.
async function chooseCsv(page, name, csv) {
  await page.locator('input[name="people-csv"]').setInputFiles({ name, mimeType: "text/csv", buffer: Buffer.from(csv) });
}

test("ops import people from a CSV, search and page them, deactivate, reactivate and end sessions", { timeout: 300_000 }, () =>
  ui.withFailureShots(async () => {
    const admin = await ui.newPage("admin");
    await loginWith(admin, lab.base, tokens.admin);
    await admin.getByRole("link", { name: "Ops" }).click();
    const range = admin.locator(".users .page-range");
    const rows = admin.locator(".users-table tbody tr[data-user]");
    await range.filter({ hasText: "1–2 of 2" }).waitFor();
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((t) => t.dataset.user)), ["admin", "erin"]);

    // 1. A small list: quoted fields, a CRLF, an empty role cell (erin keeps
    // hers), erin's e-mail and group set. A dry run changes nothing.
    const small =
      "name,email,role,group\r\n" +
      'ada,ada@example.org,trainer,cohort-a\n"bea","bea@example.org",Engineer,"cohort-a"\n' +
      'cyd,"cyd@example.org",engineer,cohort-b\n\nerin,erin@example.org,,cohort-b\n';
    await chooseCsv(admin, "small.csv", small);
    await admin.getByRole("button", { name: "Dry run" }).click();
    const summary = admin.locator(".import-report .import-summary");
    await admin.locator('.import-report[data-dry-run="true"]').waitFor();
    assert.equal(await summary.textContent(), "Dry run of 4 people, nothing was changed: 3 to add, 1 to change, 0 unchanged.");
    const changes = admin.locator(".import-changes li");
    assert.deepEqual(await changes.evaluateAll((lis) => lis.map((l) => [l.dataset.change, l.dataset.name])), [
      ["added", "ada"],
      ["added", "bea"],
      ["added", "cyd"],
      ["changed", "erin"],
    ]);
    assert.equal(await changes.nth(0).textContent(), "+ ada: trainer, group cohort-a, e-mail ada@example.org");
    assert.equal(await changes.nth(3).textContent(), "~ erin: email none → erin@example.org, group none → cohort-b");
    assert.equal((await rest("admin", "GET", "/api/admin/users")).length, 2, "the dry run added no one");
    await ui.shot(admin, "01-dry-run");

    await admin.getByRole("button", { name: "Import", exact: true }).click();
    await admin.locator('.import-report[data-dry-run="false"]').waitFor();
    assert.equal(await summary.textContent(), "Imported 4 people: 3 added, 1 changed, 0 unchanged.");
    await range.filter({ hasText: "1–5 of 5" }).waitFor();
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((t) => t.dataset.user)), ["ada", "admin", "bea", "cyd", "erin"]);
    const erin = await person("erin");
    assert.deepEqual([erin.role, erin.email, erin.group], ["engineer", "erin@example.org", "cohort-b"]);
    assert.equal((await person("bea")).role, "engineer");
    assert.deepEqual(
      await admin.locator('tr[data-user="ada"] td').evaluateAll((tds) => tds.slice(0, 8).map((t) => t.textContent)),
      ["ada", "ada@example.org", "trainer", "cohort-a", "yes", "never", "0", "0.00"],
    );
    // The same file again changes nothing.
    await admin.getByRole("button", { name: "Dry run" }).click();
    await summary.filter({ hasText: "0 to add, 0 to change, 4 unchanged" }).waitFor();

    // 2. Refused lists: a bad role, found in the browser (by its line); a
    // bad name, refused by the server (by its place in the list).
    await chooseCsv(admin, "typo.csv", "name,role\nzed,engineer\nzoe,wizard\n");
    await admin.getByRole("button", { name: "Dry run" }).click();
    await admin.locator(".import-error", { hasText: 'line 3: unknown role "wizard"' }).waitFor();
    await chooseCsv(admin, "bad.csv", "name\nzed\nNot A Name\n");
    await admin.getByRole("button", { name: "Import", exact: true }).click();
    const refused = admin.locator(".import-error");
    await refused.filter({ hasText: "nothing changed" }).waitFor();
    assert.match(await refused.textContent(), /^the list is refused, nothing changed: person 2: user name "Not A Name"/);
    assert.equal(await person("zed"), undefined);
    await ui.shot(admin, "02-refused");

    // 3. Sixty more, in a list without an e-mail column: ada's e-mail stays.
    const many = ["name,group", "ada,cohort-a", ...Array.from({ length: 60 }, (_, i) => `p${String(i).padStart(2, "0")},cohort-c`)];
    await chooseCsv(admin, "many.csv", many.join("\n"));
    await admin.getByRole("button", { name: "Import", exact: true }).click();
    await summary.filter({ hasText: "Imported 61 people: 60 added, 0 changed, 1 unchanged." }).waitFor();
    assert.equal((await person("ada")).email, "ada@example.org");
    assert.equal((await person("p07")).group, "cohort-c");

    // 4. Pages of 50.
    await range.filter({ hasText: "1–50 of 65" }).waitFor();
    assert.equal(await rows.count(), 50);
    assert.ok(await admin.locator("button.prev-page").isDisabled());
    await admin.getByRole("button", { name: "Next" }).click();
    await range.filter({ hasText: "51–65 of 65" }).waitFor();
    assert.equal(await rows.count(), 15);
    assert.equal(await rows.last().getAttribute("data-user"), "p59");
    assert.ok(await admin.locator("button.next-page").isDisabled());
    await ui.shot(admin, "03-second-page");
    await admin.getByRole("button", { name: "Prev" }).click();
    await range.filter({ hasText: "1–50 of 65" }).waitFor();

    // 5. Search as you type: a group, paged; then one person. The answer to
    // "c" comes back late, after the one to "cy": the later search stays.
    const search = admin.getByLabel("search users");
    await search.fill("cohort-c");
    await range.filter({ hasText: "1–50 of 60" }).waitFor();
    await admin.getByRole("button", { name: "Next" }).click();
    await range.filter({ hasText: "51–60 of 60" }).waitFor();
    const late = (url) => url.pathname === "/api/admin/users" && url.searchParams.get("search") === "c";
    let lateAnswered = false;
    await admin.route(late, async (route) => {
      const response = await route.fetch();
      await sleep(1500);
      await route.fulfill({ response });
      lateAnswered = true;
    });
    await search.fill("");
    await search.pressSequentially("c");
    await sleep(600); // the search for "c" is asked (and answers late)
    await search.pressSequentially("y");
    await range.filter({ hasText: "1–1 of 1" }).waitFor();
    while (!lateAnswered) await sleep(100);
    await sleep(300);
    assert.equal(await range.textContent(), "1–1 of 1", "the late answer was ignored");
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((t) => t.dataset.user)), ["cyd"]);
    await admin.unroute(late);

    // 6. Bea, with a token and a running kernel, is deactivated.
    tokens.bea = cli("token", "create", "bea");
    const kernel = await rest("bea", "POST", "/api/kernels", { name: "academy-candle" });
    assert.ok(kernel.id);
    for (let i = 0; (await person("bea")).kernels !== 1; i++) {
      assert.ok(i < 50, "bea's kernel is running");
      await sleep(200);
    }
    await search.fill("bea");
    const bea = admin.locator('tr[data-user="bea"]');
    await bea.waitFor();
    assert.equal(await bea.locator(".kernels").textContent(), "1");
    assert.notEqual(await bea.locator(".last-seen").textContent(), "never", "her token's use is her last request");
    await ui.shot(admin, "04-before-deactivation");
    let asked = "";
    admin.once("dialog", (d) => (asked = d.message()));
    await bea.getByRole("button", { name: "Deactivate" }).click();
    await admin.locator('tr[data-user="bea"][data-active="false"]').waitFor();
    assert.match(asked, /^Deactivate bea\? Their kernels stop.*tokens and browser sessions end/);
    assert.equal(await bea.locator(".active").textContent(), "deactivated");
    assert.equal(await bea.locator(".kernels").textContent(), "0");
    assert.equal(await status("/api/me", { token: tokens.bea }), 401, "her token ended");
    assert.equal((await person("bea")).kernels, 0, "her kernel is gone");
    await ui.shot(admin, "05-deactivated");

    // Reactivated: the old token stays dead; a new one works, and finds no kernel.
    await bea.getByRole("button", { name: "Reactivate" }).click();
    await admin.locator('tr[data-user="bea"][data-active="true"]').waitFor();
    assert.equal(await status("/api/me", { token: tokens.bea }), 401, "reactivation brings no old token back");
    tokens.bea = cli("token", "create", "bea");
    assert.deepEqual(await rest("bea", "GET", "/api/kernels"), [], "her kernel was stopped");

    // 7. The admin cannot deactivate themself: the server's word.
    await search.fill("admin");
    await admin.locator('tr[data-user="admin"]').getByRole("button", { name: "Deactivate" }).click();
    await admin.locator(".toast.error", { hasText: "you cannot deactivate or reactivate yourself" }).waitFor();
    assert.equal(await admin.locator('tr[data-user="admin"]').getAttribute("data-active"), "true");

    // 8. Cyd is signed in in two browsers; ops end both sessions. Her API
    // token stays.
    tokens.cyd = cli("token", "create", "cyd");
    const cydPages = [];
    for (const n of ["cyd-1", "cyd-2"]) {
      const p = await ui.newPage(n);
      await loginWith(p, lab.base, tokens.cyd);
      cydPages.push(p);
    }
    const [cookie] = (await cydPages[0].context().cookies()).filter((c) => c.name === "lab_token");
    assert.equal(await status("/api/me", { cookie: cookie.value }), 200);
    await search.fill("cyd");
    await admin.locator('tr[data-user="cyd"]').getByRole("button", { name: "End sessions" }).click();
    await admin.locator(".toast", { hasText: "Ended 2 browser session(s) of cyd" }).waitFor();
    assert.equal(await status("/api/me", { cookie: cookie.value }), 401, "her session ended");
    assert.equal(await status("/api/me", { token: tokens.cyd }), 200, "her API token stays");
    for (const p of cydPages) {
      await p.reload();
      await p.locator("form.login").waitFor();
    }
    await ui.shot(admin, "06-sessions-ended");

    // The only console errors are the two refusals the test asked for.
    assert.deepEqual(
      ui.problems.map((p) => p.replace(/http:\/\/\S+/g, "URL")),
      [
        "admin: console: Failed to load resource: the server responded with a status of 400 (Bad Request)",
        "admin: console: Failed to load resource: the server responded with a status of 400 (Bad Request)",
      ],
      ui.problems.join("\n"),
    );
    ui.problems.length = 0;
  }),
);

test("an engineer makes a personal token on the Tokens page, uses it, revokes it, and ends their own session", { timeout: 120_000 }, () =>
  ui.withFailureShots(async () => {
    const page = await ui.newPage("erin");
    await loginWith(page, lab.base, tokens.erin);
    await page.locator(".user-menu summary").click();
    await page.getByRole("link", { name: "Tokens and sessions" }).click();
    await page.waitForURL(/#\/tokens$/);
    const table = page.locator("table.tokens tbody");
    // The CLI's token, and this browser's session.
    await table.locator('tr[data-kind="session"]').waitFor();
    assert.equal(await table.locator('tr[data-kind="api"]').count(), 1);

    // More than the server allows is refused in its words.
    await page.getByLabel("token label").fill("forever");
    await page.getByLabel("expires in").selectOption({ label: "1 year" });
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator(".token-error", { hasText: /^expires_in: at most / }).waitFor();
    await ui.shot(page, "07-lifetime-refused");

    // A 30-day token, shown once.
    await page.getByLabel("token label").fill("laptop");
    await page.getByLabel("expires in").selectOption("30d");
    await page.getByRole("button", { name: "Create token" }).click();
    await page.locator(".new-token .notice", { hasText: "copy it now, it will not be shown again" }).waitFor();
    const token = await page.getByLabel("new token").inputValue();
    assert.match(token, /^\S{20,}$/);
    const laptop = table.locator('tr[data-label="laptop"]');
    await laptop.waitFor();
    assert.equal(await laptop.locator(".last-used").textContent(), "never");
    // The Copy button puts it on the clipboard.
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"], { origin: lab.base });
    await page.getByRole("button", { name: "Copy" }).click();
    await page.locator(".toast", { hasText: "Token copied" }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);
    await ui.shot(page, "08-token-made");

    // It works, and expires in 30 days.
    const me = await (await fetch(lab.base + "/api/me", { headers: { Authorization: `token ${token}` } })).json();
    assert.equal(me.identity.name, "erin");
    const listed = (await rest("erin", "GET", "/api/tokens")).find((t) => t.label === "laptop");
    const days = (Date.parse(listed.expires) - Date.parse(listed.created)) / 86_400_000;
    assert.ok(Math.abs(days - 30) < 0.01, `expires in ${days} days`);

    // Shown afresh: never the token again, and its last use.
    await page.reload();
    await laptop.waitFor();
    assert.ok(await page.locator(".new-token").isHidden());
    assert.ok(!(await page.content()).includes(token), "the token is shown once");
    assert.notEqual(await laptop.getAttribute("data-last-used"), "");
    assert.notEqual(await laptop.locator(".last-used").textContent(), "never");
    await ui.shot(page, "09-tokens");

    // Revoked: it gets 401.
    await laptop.getByRole("button", { name: "Revoke" }).click();
    await laptop.waitFor({ state: "detached" });
    await page.locator(".toast", { hasText: 'Token "laptop" revoked' }).waitFor();
    assert.equal(await status("/api/me", { token }), 401);
    assert.equal(await status("/api/me", { token: tokens.erin }), 200, "her other token stays");

    // Revoking this browser's own session signs it out.
    await table.locator('tr[data-kind="session"]').getByRole("button", { name: "Revoke" }).click();
    await page.locator("form.login").waitFor();
    assert.equal(await page.locator("header.top").count(), 0);

    assert.deepEqual(
      ui.problems,
      ["erin: console: Failed to load resource: the server responded with a status of 400 (Bad Request)"],
      "only the refused lifetime",
    );
  }),
);
