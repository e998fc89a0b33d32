// Sign-in through a real OpenID provider (issue 17): tests/oidc/provider.mjs
// runs oidc-provider (OpenID Certified) with test accounts and a groups
// claim; a real `lab serve` has it as `[[login.oidc]]`; Chromium signs in
// through the provider's own login page. The first sign-in makes the user
// with the role and cohort of their groups, the next one moves them; a person
// outside the allowed groups is refused and not made; a rotated signing key
// is fetched; ID tokens with the wrong audience, expired, replayed (another
// flow's nonce), unsigned, or signed by a key not the provider's are
// refused, as are a wrong `state` and a callback in a browser that did not
// start the sign-in; sign-out ends the session here and at the provider;
// the client secret is never
// in the log, /api/status or the quota export.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, launchBrowser, Pages } from "./harness.mjs";

const LAB = process.env.LAB_BIN ?? join(ROOT, "target", "debug", "lab");
const SECRET = `oidc-secret-${Math.random().toString(36).slice(2)}-never-shown`;
let provider, op, lab, browser, ui, dir;
const output = { lab: "" };

/// Starts a process and resolves with the first stdout line matching `re`.
function startUntil(cmd, args, env, re, sink) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const take = (d) => {
      out += d;
      if (sink) sink.text += d;
      const m = out.match(re);
      if (m) resolve({ proc, m });
    };
    proc.stdout.on("data", take);
    proc.stderr.on("data", (d) => { if (sink) sink.text += d; });
    proc.on("exit", (code) => reject(new Error(`${cmd} exited with ${code}: ${out}`)));
  });
}

const labLog = { text: "" };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "lab-sso-"));
  const started = await startUntil("node", [join(ROOT, "tests", "oidc", "provider.mjs"), "--port", "0",
    "--state", join(dir, "op"), "--test-controls", "--client-id", "academy-lab", "--client-secret", SECRET],
  {}, /^(\{.*\})$/m);
  provider = started.proc;
  op = JSON.parse(started.m[1]);
  const data = join(dir, "data");
  execFileSync(LAB, ["user", "add", "enrolled", "--data-dir", data]);
  writeFileSync(join(dir, "secret"), SECRET + "\n");
  writeFileSync(join(data, "lab.toml"), `
[[login.oidc]]
name = "academy"
display_name = "Academy SSO"
issuer = "${op.issuer}"
client_id = "academy-lab"
client_secret_file = "${join(dir, "secret")}"
scopes = ["profile", "email", "groups"]
allowed_groups = ["academy-engineers", "academy-trainers", "academy-ops"]
trainer_groups = ["academy-trainers"]
ops_groups = ["academy-ops"]
[login.oidc.cohorts]
"cohort-7" = "cohort-7"
"cohort-8" = "cohort-8"
`);
  const s = await startUntil(LAB, ["serve", "--port", "0", "--data-dir", data],
    { LAB_LOG: "debug", JUPYTER_PATH: process.env.LAB_JUPYTER_PATH ?? join(ROOT, ".venv", "share", "jupyter") },
    /Log in with: (http:\/\/127\.0\.0\.1:\d+)\//, labLog);
  const info = JSON.parse(readFileSync(join(data, "runtime", "lab-server.json"), "utf8"));
  lab = { proc: s.proc, base: s.m[1], admin: info.token };
  await control("POST", "/_test/client", {
    redirect_uris: [`${lab.base}/login/oidc/academy/callback`],
    post_logout_redirect_uris: [`${lab.base}/`],
  });
  browser = await launchBrowser();
  ui = new Pages(browser, "sso");
});

after(async () => {
  await browser?.close();
  lab?.proc.kill("SIGTERM");
  provider?.kill("SIGTERM");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function control(method, path, body) {
  const r = await fetch(op.issuer + path, {
    method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body),
  });
  const text = await r.text();
  assert.ok(r.ok, `${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function admin(path) {
  const r = await fetch(lab.base + path, { headers: { authorization: `token ${lab.admin}` } });
  return { status: r.status, body: await r.text() };
}

/// Opens the lab in a fresh browser, clicks "Sign in with Academy SSO" and
/// signs in as `login` on the provider's page. Resolves with the page once
/// it is back: in the app (`who` is /api/me's identity) or on our refusal page.
async function signIn(login) {
  const context = await browser.newContext();
  const page = await context.newPage();
  ui.pages.push(page);
  await page.goto(lab.base + "/");
  await page.getByRole("link", { name: "Sign in with Academy SSO" }).click();
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill("anything");
  await page.locator('button[type="submit"]').click();
  await page.waitForURL((u) => u.toString().startsWith(lab.base), { timeout: 30_000 });
  const refused = page.locator(".sign-in-refused .reason");
  await Promise.race([
    refused.waitFor({ timeout: 30_000 }),
    page.locator("header.top").waitFor({ timeout: 30_000 }),
  ]);
  if (await refused.count()) return { context, page, refused: await refused.textContent() };
  const who = await page.evaluate(async () => (await (await fetch("/api/me")).json()));
  return { context, page, who };
}

async function users() {
  const r = await admin("/api/admin/users");
  assert.equal(r.status, 200, r.body);
  return Object.fromEntries(JSON.parse(r.body).map((u) => [u.name, u]));
}

test("people sign in through the provider's own page and get the role and cohort of their groups", { timeout: 180_000 }, () =>
  ui.withFailureShots(async () => {
    const first = await signIn("alice");
    assert.equal(first.refused, undefined, first.refused);
    assert.equal(first.who.identity?.username ?? first.who.name, "alice");
    let alice = (await users()).alice;
    assert.deepEqual([alice.role, alice.group, alice.email], ["engineer", "cohort-7", "alice@uni.example"]);
    await ui.shot(first.page, "01-signed-in");

    // The provider moves her: the next sign-in moves her here.
    const accounts = await control("GET", "/_test/accounts");
    accounts.alice.groups = ["academy-trainers", "cohort-8"];
    await control("PUT", "/_test/accounts", accounts);
    const second = await signIn("alice");
    assert.equal(second.refused, undefined, second.refused);
    alice = (await users()).alice;
    assert.deepEqual([alice.role, alice.group], ["trainer", "cohort-8"]);

    // Outside the allowed groups: a clear page, and no user.
    const mallory = await signIn("mallory");
    assert.match(mallory.refused, /none of the groups/);
    assert.equal((await users()).mallory, undefined);
    await ui.shot(mallory.page, "02-refused");

    // The provider rotates its signing key: the next sign-in still works.
    const rotated = await control("POST", "/_test/rotate", {});
    assert.notEqual(rotated.kid, rotated.previous_kid);
    const afterRotation = await signIn("bob");
    assert.equal(afterRotation.refused, undefined, afterRotation.refused);
    assert.equal((await users()).bob.role, "trainer");
  }),
);

test("a provider that keeps the name, e-mail and groups out of the ID token: they come from userinfo", { timeout: 120_000 }, () =>
  ui.withFailureShots(async () => {
    const accounts = await control("GET", "/_test/accounts");
    accounts.dana = { preferred_username: "dana", groups: ["academy-ops", "cohort-8"], email: "dana@agency.example" };
    await control("PUT", "/_test/accounts", accounts);
    const before = (await control("POST", "/_test/conform", { on: true })).userinfo_calls;
    try {
      const dana = await signIn("dana");
      assert.equal(dana.refused, undefined, dana.refused);
      // The ID token really lacked them; the gateway asked userinfo once.
      const { id_token } = await control("GET", "/_test/last_id_token");
      const claims = JSON.parse(Buffer.from(id_token.split(".")[1], "base64url"));
      assert.equal(claims.sub, "dana");
      for (const k of ["groups", "email", "preferred_username"]) assert.equal(claims[k], undefined, k);
      assert.equal((await control("GET", "/_test/userinfo_calls")).userinfo_calls, before + 1);
      const row = (await users()).dana;
      assert.deepEqual([row.role, row.group, row.email], ["ops", "cohort-8", "dana@agency.example"]);
    } finally {
      await control("POST", "/_test/conform", { on: false });
    }
    // With the claims in the ID token, userinfo is not asked.
    const calls = (await control("GET", "/_test/userinfo_calls")).userinfo_calls;
    const again = await signIn("dana");
    assert.equal(again.refused, undefined, again.refused);
    assert.equal((await control("GET", "/_test/userinfo_calls")).userinfo_calls, calls);
  }),
);

test("forged, expired, replayed and unsigned ID tokens, a wrong state and a foreign callback are refused", { timeout: 180_000 }, () =>
  ui.withFailureShots(async () => {
    const before = Object.keys(await users()).sort();
    for (const [what, next] of [
      ["the wrong audience", { claims: { aud: "another-client" } }],
      ["an expired token", { claims: { exp: 1, iat: 0 } }],
      ["another sign-in's token (its nonce)", { replay: true }],
      ["an unsigned token", { alg: "none" }],
      ["a key that is not the provider's", { key: "impostor" }],
    ]) {
      await control("POST", "/_test/next_id_token", { ...next, claims: { sub: "carol", preferred_username: "carol", groups: ["academy-ops"], ...(next.claims ?? {}) } });
      const r = await signIn("carol");
      assert.ok(r.refused, `${what} was accepted`);
      assert.match(r.refused, /could not be verified/, what);
      await r.context.close();
    }
    await control("DELETE", "/_test/next_id_token");
    assert.deepEqual(Object.keys(await users()).sort(), before, "no user was made by a refused token");

    // A wrong state, and a callback followed in a browser that did not start it.
    // (The start asked for in browser a's context, its cookies kept, without following the redirect.)
    const a = await browser.newContext();
    const page = await a.newPage();
    const start = await a.request.get(`${lab.base}/login/oidc/academy`, { maxRedirects: 0 });
    assert.equal(start.status(), 303);
    const started = new URL(start.headers()["location"]);
    assert.ok(started.toString().startsWith(`${op.issuer}/auth?`), started.toString());
    assert.equal(started.searchParams.get("code_challenge_method"), "S256");
    assert.ok(started.searchParams.get("nonce"));
    const state = started.searchParams.get("state");
    await page.goto(`${lab.base}/login/oidc/academy/callback?code=x&state=not-${state}`);
    assert.match(await page.locator(".sign-in-refused .reason").textContent(), /not started in this browser|unknown/);
    const b = await browser.newContext();
    const other = await b.newPage();
    await other.goto(`${lab.base}/login/oidc/academy/callback?code=x&state=${state}`);
    assert.match(await other.locator(".sign-in-refused .reason").textContent(), /not started in this browser/);
    await a.close();
    await b.close();
  }),
);

test("sign-out ends the session, and the client secret is nowhere to be read", { timeout: 120_000 }, () =>
  ui.withFailureShots(async () => {
    const s = await signIn("alice");
    assert.equal(s.refused, undefined, s.refused);
    const cookie = (await s.context.cookies()).find((c) => c.name === "lab_token");
    assert.ok(cookie);
    const asCookie = () => fetch(lab.base + "/api/kernels", { headers: { cookie: `lab_token=${cookie.value}` } });
    assert.equal((await asCookie()).status, 200);
    // Log out in the app: the session ends here, and the browser signs out at
    // the provider too (RP-initiated logout), then comes back to the lab.
    await s.page.locator("details.user-menu summary").click();
    await s.page.getByRole("button", { name: "Log out" }).click();
    await s.page.locator("#logout-yes").click({ timeout: 30_000 });
    await s.page.waitForURL(`${lab.base}/`, { timeout: 30_000 });
    await s.page.getByRole("link", { name: "Sign in with Academy SSO" }).waitFor();
    assert.equal((await asCookie()).status, 401);
    // The provider's session is over too: signing in again asks for the login.
    await s.page.getByRole("link", { name: "Sign in with Academy SSO" }).click();
    await s.page.locator('input[name="login"]').waitFor({ timeout: 30_000 });

    for (const path of ["/api/status", "/api/admin/quotas", "/api/login/providers"]) {
      const r = await admin(path);
      assert.ok(!r.body.includes(SECRET), `${path} shows the client secret`);
    }
    assert.ok(labLog.text.includes("signed in"), "the log says who signed in");
    assert.ok(!labLog.text.includes(SECRET), "the log shows the client secret");
  }),
);
