// A standalone end-to-end check of tests/oidc/provider.mjs, with a
// throwaway relying party: Debian's Chromium (playwright-core from
// lab-gateway/ui/node_modules, as tests/ui/harness.mjs) signs in through the
// provider's real login page, the code is exchanged with its PKCE verifier,
// the ID token is verified against the JWKS; then groups changes, unknown
// logins, key rotation, minted and substituted ID tokens, RP-initiated
// logout and a restart on the same state dir.
//
//   npm ci --prefix tests/oidc && node tests/oidc/check.mjs
//
// Exits non-zero at the first failed expectation.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const { chromium } = createRequire(join(ROOT, "lab-gateway", "ui", "package.json"))("playwright-core");
const jose = await import(createRequire(join(HERE, "package.json")).resolve("jose"));

const CLIENT_ID = "academy-lab";
const CLIENT_SECRET = "s3cret-" + randomBytes(6).toString("hex");
const log = (...a) => console.log(...a);
const b64 = (b) => Buffer.from(b).toString("base64url");

// ---- the throwaway relying party: records what reaches /cb and /bye --------
const hits = [];
const rp = createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname === "/favicon.ico") return res.writeHead(204).end();
  hits.push(url);
  res.writeHead(200, { "content-type": "text/html" });
  res.end(`<!DOCTYPE html><title>rp</title><p id="rp">${url.pathname}</p>`);
});
await new Promise((r) => rp.listen(0, "127.0.0.1", r));
const RP = `http://127.0.0.1:${rp.address().port}`;

// ---- the provider ----------------------------------------------------------
const state = mkdtempSync(join(tmpdir(), "oidc-check-"));
let proc;
async function startProvider(port = 0, controls = true) {
  proc = spawn(process.execPath, [join(HERE, "provider.mjs"), "--port", String(port), "--state", state,
    ...(controls ? ["--test-controls"] : []), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
    "--redirect-uri", `${RP}/cb`, "--post-logout-redirect-uri", `${RP}/bye`], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr.on("data", (d) => { err += d; });
  proc.stderrText = () => err;
  return new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]));
    });
    proc.on("exit", (code) => reject(new Error(`provider exited ${code}: ${err}`)));
  });
}
async function stopProvider() {
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

let { issuer, port } = await startProvider();
log(`provider: ${issuer} (state ${state})`);
const disc = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
assert.equal(disc.issuer, issuer);
log(`discovery: authorization ${disc.authorization_endpoint}, token ${disc.token_endpoint}, jwks ${disc.jwks_uri}, end_session ${disc.end_session_endpoint}`);
log(`  response_types ${disc.response_types_supported}, scopes ${disc.scopes_supported}, pkce ${disc.code_challenge_methods_supported}`);

const control = async (method, path, body) => {
  const r = await fetch(`${issuer}${path}`, {
    method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body),
  });
  const json = await r.json();
  assert.equal(r.status, 200, `${method} ${path}: ${JSON.stringify(json)}`);
  return json;
};
const jwksKids = async () => (await (await fetch(disc.jwks_uri)).json()).keys.map((k) => k.kid);

// ---- the browser -------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
async function newPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(`${name}: console: ${m.text()} (${m.location()?.url})`); });
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`));
  return page;
}

/// An authorization request with PKCE, state and nonce; what reaches the RP.
async function authorize(page, { login, extra = {}, expectLoginPage = true } = {}) {
  const verifier = b64(randomBytes(32));
  const st = b64(randomBytes(12));
  const nonce = b64(randomBytes(12));
  const url = new URL(disc.authorization_endpoint);
  Object.entries({
    client_id: CLIENT_ID, response_type: "code", redirect_uri: `${RP}/cb`, scope: "openid profile email groups",
    state: st, nonce, code_challenge: b64(createHash("sha256").update(verifier).digest()), code_challenge_method: "S256",
    ...extra,
  }).forEach(([k, v]) => v !== undefined && url.searchParams.set(k, v));
  const before = hits.length;
  await page.goto(url.href);
  if (expectLoginPage) {
    // The real login form of oidc-provider's devInteractions.
    await page.waitForSelector('form input[name="login"]');
    await page.fill('input[name="login"]', login);
    await page.fill('input[name="password"]', "any password");
    await page.click('button[type="submit"]');
  }
  await page.waitForURL((u) => u.href.startsWith(`${RP}/cb`), { timeout: 10000 }).catch(async (e) => {
    throw new Error(`${e.message}\nat ${page.url()}: ${(await page.content()).slice(0, 2000)}`);
  });
  assert.equal(hits.length, before + 1);
  const cb = hits.at(-1);
  return { verifier, state: st, nonce, cb, params: Object.fromEntries(cb.searchParams) };
}

async function exchange(code, verifier, { post = false } = {}) {
  const body = new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: `${RP}/cb`, code_verifier: verifier });
  const headers = { "content-type": "application/x-www-form-urlencoded" };
  if (post) {
    body.set("client_id", CLIENT_ID);
    body.set("client_secret", CLIENT_SECRET);
  } else {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString("base64")}`;
  }
  const r = await fetch(disc.token_endpoint, { method: "POST", headers, body });
  return { status: r.status, json: await r.json() };
}

/// Verifies like a relying party would (signature against a fresh JWKS, issuer, audience, expiry).
async function verify(idToken, nonce) {
  const jwks = jose.createRemoteJWKSet(new URL(disc.jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(idToken, jwks, { issuer, audience: CLIENT_ID, algorithms: ["RS256"] });
  if (nonce !== undefined) assert.equal(payload.nonce, nonce, "nonce");
  return { payload, header: protectedHeader };
}
const refused = async (idToken) => {
  try {
    await verify(idToken);
    return "ACCEPTED";
  } catch (e) {
    return e.code ?? e.message;
  }
};

async function signIn(page, opts) {
  const a = await authorize(page, opts);
  assert.equal(a.params.state, a.state, "state comes back");
  assert.equal(a.params.iss, issuer, "iss in the authorization response");
  assert.ok(a.params.code, `a code, got ${JSON.stringify(a.params)}`);
  const t = await exchange(a.params.code, a.verifier, opts);
  assert.equal(t.status, 200, JSON.stringify(t.json));
  return { ...a, token: t.json };
}

try {
  // 1. alice signs in through the login page.
  const page = await newPage("alice");
  const s1 = await signIn(page, { login: "alice" });
  const v1 = await verify(s1.token.id_token, s1.nonce);
  log(`1. sign-in as alice through Chromium: code+state back at the RP; token endpoint (client_secret_basic, PKCE) -> id_token kid ${v1.header.kid}`);
  log(`   claims: ${JSON.stringify(v1.payload)}`);
  assert.equal(v1.payload.sub, "alice");
  assert.equal(v1.payload.preferred_username, "alice");
  assert.equal(v1.payload.email, "alice@uni.example");
  assert.deepEqual(v1.payload.groups, ["academy-engineers", "cohort-7"]);
  const ui = await (await fetch(disc.userinfo_endpoint, { headers: { authorization: `Bearer ${s1.token.access_token}` } })).json();
  assert.deepEqual(ui.groups, ["academy-engineers", "cohort-7"]);
  log(`   userinfo: ${JSON.stringify(ui)}`);

  // 2. The provider moves alice to cohort-8; the next sign-in (same browser: no login page) says so.
  const accounts = JSON.parse(readFileSync(join(state, "accounts.json"), "utf8"));
  accounts.alice.groups = ["academy-engineers", "cohort-8"];
  writeFileSync(join(state, "accounts.json"), JSON.stringify(accounts));
  const s2 = await signIn(page, { expectLoginPage: false });
  const v2 = await verify(s2.token.id_token, s2.nonce);
  assert.deepEqual(v2.payload.groups, ["academy-engineers", "cohort-8"]);
  assert.deepEqual((await control("GET", "/_test/accounts")).alice.groups, ["academy-engineers", "cohort-8"]);
  log(`2. accounts.json rewritten; second sign-in (provider session, no form) -> groups ${JSON.stringify(v2.payload.groups)}`);

  // 3. prompt=login shows the form again; an unknown login is refused on the provider's page.
  const other = await newPage("unknown");
  await other.goto(`${disc.authorization_endpoint}?${new URLSearchParams({
    client_id: CLIENT_ID, response_type: "code", redirect_uri: `${RP}/cb`, scope: "openid groups",
    state: "s3", nonce: "n3", code_challenge: b64(createHash("sha256").update("v".repeat(43)).digest()), code_challenge_method: "S256",
  })}`);
  await other.fill('input[name="login"]', "nobody");
  await other.fill('input[name="password"]', "x");
  await other.click('button[type="submit"]');
  const err = await other.textContent("#login-error");
  assert.match(err, /No account named nobody/);
  await other.click("#try-again");
  await other.fill('input[name="login"]', "mallory");
  await other.fill('input[name="password"]', "x");
  await other.click('button[type="submit"]');
  await other.waitForURL((u) => u.href.startsWith(`${RP}/cb`));
  const t3 = await exchange(hits.at(-1).searchParams.get("code"), "v".repeat(43));
  const v3 = await verify(t3.json.id_token, "n3");
  log(`3. unknown login "nobody" -> provider page "${err.trim()}"; #try-again then mallory -> groups ${JSON.stringify(v3.payload.groups)}`);
  const s3b = await signIn(page, { login: "bob", extra: { prompt: "login" }, post: true });
  const v3b = await verify(s3b.token.id_token, s3b.nonce);
  assert.equal(v3b.payload.sub, "bob");
  log(`   prompt=login in alice's browser shows the form again; bob signs in; client_secret_post accepted -> sub ${v3b.payload.sub}, groups ${JSON.stringify(v3b.payload.groups)}`);

  // 4. PKCE is required and checked.
  const noPkce = await authorize(page, { expectLoginPage: false, extra: { code_challenge: undefined, code_challenge_method: undefined } });
  assert.equal(noPkce.params.error, "invalid_request");
  const s4 = await authorize(page, { expectLoginPage: false });
  const bad = await exchange(s4.params.code, b64(randomBytes(32)));
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error, "invalid_grant");
  log(`4. no code_challenge -> ${noPkce.params.error} (${noPkce.params.error_description}); wrong code_verifier -> ${bad.status} ${bad.json.error} (${bad.json.error_description})`);

  // 5. Key rotation.
  const kidsBefore = await jwksKids();
  const rot = await control("POST", "/_test/rotate");
  const kidsAfter = await jwksKids();
  assert.deepEqual(kidsAfter, [rot.kid]);
  assert.ok(!kidsAfter.includes(kidsBefore[0]));
  assert.equal(await refused(s1.token.id_token), "ERR_JWKS_NO_MATCHING_KEY");
  const s5 = await signIn(page, { expectLoginPage: false });
  const v5 = await verify(s5.token.id_token, s5.nonce);
  assert.equal(v5.header.kid, rot.kid);
  log(`5. POST /_test/rotate -> ${JSON.stringify(rot)}; JWKS kids ${JSON.stringify(kidsBefore)} -> ${JSON.stringify(kidsAfter)}; next sign-in's id_token kid ${v5.header.kid} (provider session survived the rotation)`);

  // 6. Minted ID tokens.
  const now = Math.floor(Date.now() / 1000);
  const cases = {
    "good (defaults)": {},
    "wrong audience": { claims: { aud: "someone-else" } },
    "expired": { claims: { iat: now - 7200, exp: now - 3600 } },
    "alg none": { alg: "none" },
    "stranger key (kid not in JWKS)": { key: "stranger" },
    "impostor key (current kid, other key)": { key: "impostor" },
    "HS256 with the client secret": { alg: "HS256" },
  };
  log("6. POST /_test/mint:");
  for (const [name, spec] of Object.entries(cases)) {
    const { jwt } = await control("POST", "/_test/mint", spec);
    const [h, p] = jwt.split(".").slice(0, 2).map((x) => JSON.parse(Buffer.from(x, "base64url")));
    const outcome = await refused(jwt);
    log(`   ${name}: header ${JSON.stringify(h)} aud ${p.aud} exp ${p.exp - now}s -> verify: ${outcome === "ACCEPTED" ? "accepted" : `refused (${outcome})`}`);
    assert.equal(outcome === "ACCEPTED", name === "good (defaults)");
  }

  // 7. The next token response carries another id_token, once.
  log("7. POST /_test/next_id_token then a sign-in:");
  const { jwt: mintedJwt } = await control("POST", "/_test/mint", { claims: { sub: "eve", groups: ["academy-admins"] } });
  const subs = {
    "{jwt}": { jwt: mintedJwt },
    "{claims:{aud}} over the real token": { claims: { aud: "someone-else" } },
    "{claims:{exp}} over the real token": { claims: { exp: now - 60 } },
    "{alg:none} over the real token": { alg: "none" },
    "{key:impostor}": { key: "impostor" },
    "{replay:true}": { replay: true },
  };
  for (const [name, spec] of Object.entries(subs)) {
    const { id_token: previous } = await control("GET", "/_test/last_id_token");
    await control("POST", "/_test/next_id_token", spec);
    const s = await signIn(page, { expectLoginPage: false });
    const got = s.token.id_token;
    const p = JSON.parse(Buffer.from(got.split(".")[1], "base64url"));
    const h = JSON.parse(Buffer.from(got.split(".")[0], "base64url"));
    if (spec.jwt) assert.equal(got, mintedJwt);
    if (spec.replay) assert.equal(got, previous, "replay: the last real id_token");
    if (spec.claims) assert.equal(p.nonce, s.nonce, "over the real token: the flow's nonce is kept");
    if (spec.replay) assert.notEqual(p.nonce, s.nonce);
    const outcome = await refused(got);
    if (spec.replay) assert.equal(outcome, "ACCEPTED", "a replayed token is validly signed: only its nonce is wrong");
    log(`   ${name}: alg ${h.alg} sub ${p.sub} aud ${p.aud} nonce ${p.nonce === undefined ? "none" : p.nonce === s.nonce ? "this flow's" : "another flow's"} -> signature/iss/aud/exp: ${outcome === "ACCEPTED" ? "pass" : `refused (${outcome})`}`);
  }
  const after = await signIn(page, { expectLoginPage: false });
  await verify(after.token.id_token, after.nonce);
  log("   the sign-in after those: the real id_token again (verified)");

  // 7b. The client's redirect URIs replaced at run time (the lab's port is known only once it runs).
  const cl = await control("POST", "/_test/client", { redirect_uris: [`${RP}/cb`, `${RP}/cb2`] });
  assert.ok(!JSON.stringify(cl).includes(CLIENT_SECRET));
  const s7b = await authorize(page, { expectLoginPage: false, extra: { redirect_uri: `${RP}/cb2` } });
  assert.equal(s7b.cb.pathname, "/cb2");
  assert.ok(s7b.params.code);
  log(`7b. POST /_test/client -> ${JSON.stringify(cl)}; a sign-in to /cb2 gets a code`);

  // 8. RP-initiated logout.
  const end = new URL(disc.end_session_endpoint);
  end.search = new URLSearchParams({ id_token_hint: after.token.id_token, post_logout_redirect_uri: `${RP}/bye`, state: "bye-state" });
  await page.goto(end.href);
  await page.click("#logout-yes");
  await page.waitForURL((u) => u.href.startsWith(`${RP}/bye`));
  assert.equal(hits.at(-1).searchParams.get("state"), "bye-state");
  const s8 = await authorize(page, { login: "alice" }); // the login form again: the provider session is gone
  assert.ok(s8.params.code);
  log(`8. end_session (id_token_hint, post_logout_redirect_uri) -> clicked #logout-yes -> ${hits.at(-2).pathname}${hits.at(-2).search}; the next sign-in shows the login form again`);

  // 9. A restart on the same state dir keeps the signing key.
  const kidBeforeRestart = (await jwksKids())[0];
  await stopProvider();
  ({ issuer, port } = await startProvider(port));
  assert.deepEqual(await jwksKids(), [kidBeforeRestart]);
  log(`9. restart on the same state dir and port: JWKS kid still ${kidBeforeRestart}`);

  // Without --test-controls there are none.
  await stopProvider();
  ({ issuer, port } = await startProvider(port, false));
  const plain = await fetch(`${issuer}/_test/rotate`, { method: "POST" });
  assert.equal(plain.status, 404);
  assert.deepEqual(await jwksKids(), [kidBeforeRestart]);
  log(`10. started without --test-controls: POST /_test/rotate -> ${plain.status}`);

  assert.equal(problems.length, 0, problems.join("\n"));
  log("browser: no console errors, page errors or failed requests");
  log("provider stderr:\n  " + proc.stderrText().trim().split("\n").join("\n  "));
  assert.ok(!proc.stderrText().includes(CLIENT_SECRET), "the client secret is not logged");
  log("OK");
} finally {
  await browser.close();
  await stopProvider().catch(() => {});
  rp.close();
  rmSync(state, { recursive: true, force: true });
}
