// The test suite's OpenID Connect provider (issue 17): the npm package
// `oidc-provider` (OpenID Certified) on 127.0.0.1, with one confidential
// client, test accounts from <state>/accounts.json (read on every lookup),
// a `groups` claim, its real login page (devInteractions), RP-initiated
// logout, RS256 signing keys kept in the state dir, and, with
// --test-controls, the /_test/* endpoints the suite drives it with (key
// rotation, minted and substituted ID tokens). README.md beside it says how.
//
//   node tests/oidc/provider.mjs --port 0 --state DIR --test-controls \
//     --client-id academy-lab --client-secret S \
//     --redirect-uri http://127.0.0.1:8888/auth/oidc/callback \
//     --post-logout-redirect-uri http://127.0.0.1:8888/
//
// Prints one JSON line on stdout once listening: {"issuer": ..., "port": ...};
// everything else (oidc-provider's notices included) goes to stderr.

import { randomBytes, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import Provider from "oidc-provider";
// Its in-memory adapter (oidc-provider has no exports map, so the path is
// reachable); given as a factory it uses one module-wide store, so sessions,
// grants and codes outlive the Provider a key rotation replaces.
import MemoryAdapter from "oidc-provider/lib/adapters/memory_adapter.js";
import * as jose from "jose";

// oidc-provider prints its development notices with console.info; stdout is
// for the one JSON line.
console.info = (...args) => console.error(...args);

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: process.env.OIDC_PORT ?? "0" },
    state: { type: "string", default: process.env.OIDC_STATE_DIR },
    "test-controls": { type: "boolean", default: process.env.OIDC_TEST_CONTROLS === "1" },
    "client-id": { type: "string", default: process.env.OIDC_CLIENT_ID ?? "academy-lab" },
    "client-secret": { type: "string", default: process.env.OIDC_CLIENT_SECRET ?? "academy-lab-test-secret" },
    "redirect-uri": { type: "string", multiple: true },
    "post-logout-redirect-uri": { type: "string", multiple: true },
  },
});
const list = (flag, env) => flag ?? (process.env[env] ?? "").split(/[\s,]+/).filter(Boolean);

if (!opts.state) {
  console.error("provider.mjs: --state DIR (or OIDC_STATE_DIR) is required");
  process.exit(2);
}
const STATE = opts.state;
mkdirSync(STATE, { recursive: true });
const ACCOUNTS = join(STATE, "accounts.json");
const KEYS = join(STATE, "keys.json");
const COOKIE_KEYS = join(STATE, "cookie-keys.json");

const client = {
  client_id: opts["client-id"],
  client_secret: opts["client-secret"],
  redirect_uris: list(opts["redirect-uri"], "OIDC_REDIRECT_URIS"),
  post_logout_redirect_uris: list(opts["post-logout-redirect-uri"], "OIDC_POST_LOGOUT_REDIRECT_URIS"),
  // Both basic and post are accepted by oidc-provider 9 for either value.
  token_endpoint_auth_method: "client_secret_basic",
  grant_types: ["authorization_code"],
  response_types: ["code"],
  id_token_signed_response_alg: "RS256",
};

// ---- state files ---------------------------------------------------------

function writeJson(path, value) {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  renameSync(tmp, path);
}

const DEFAULT_ACCOUNTS = {
  alice: { groups: ["academy-engineers", "cohort-7"], email: "alice@uni.example", name: "Alice" },
  bob: { groups: ["academy-trainers", "cohort-7"], email: "bob@uni.example", name: "Bob" },
  carol: { groups: ["academy-ops"], email: "carol@agency.example", name: "Carol" },
  mallory: { groups: ["visitors"], email: "mallory@elsewhere.example", name: "Mallory" },
};
if (!existsSync(ACCOUNTS)) writeJson(ACCOUNTS, DEFAULT_ACCOUNTS);

/// The accounts, read fresh on every call: a test rewrites the file to move
/// someone to other groups between two sign-ins.
function readAccounts() {
  return JSON.parse(readFileSync(ACCOUNTS, "utf8"));
}

async function newSigningKey() {
  const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: `k-${randomUUID().slice(0, 8)}`, alg: "RS256", use: "sig" };
}

// keys.json: {"keys": [private JWK, ...]}, the signing key first.
let signingKeys;
if (existsSync(KEYS)) {
  signingKeys = JSON.parse(readFileSync(KEYS, "utf8")).keys;
} else {
  signingKeys = [await newSigningKey()];
  writeJson(KEYS, { keys: signingKeys });
}
// Cookie signing keys, kept too, so a restart (or a rotation, which builds a
// new Provider) keeps the browser's provider session valid.
let cookieKeys;
if (existsSync(COOKIE_KEYS)) {
  cookieKeys = JSON.parse(readFileSync(COOKIE_KEYS, "utf8"));
} else {
  cookieKeys = [randomBytes(32).toString("hex")];
  writeJson(COOKIE_KEYS, cookieKeys);
}
// A key the JWKS never holds, for forged tokens.
const strangerKey = await newSigningKey();

// ---- the provider --------------------------------------------------------

async function findAccount(_ctx, id) {
  const entry = readAccounts()[id];
  if (!entry) return undefined;
  return {
    accountId: id,
    async claims() {
      return {
        sub: id,
        preferred_username: entry.preferred_username ?? id,
        name: entry.name ?? id,
        email: entry.email,
        email_verified: entry.email !== undefined,
        groups: entry.groups ?? [],
      };
    },
  };
}

/// Consent is granted without asking: the client is the suite's own lab, so
/// after the login form the browser goes straight back to the redirect_uri.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  if (!grant || grant.accountId !== oidc.session.accountId) {
    grant = new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  }
  grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(" "));
  grant.addOIDCClaims([...oidc.requestParamClaims]);
  await grant.save();
  return grant;
}

const page = (title, body) => `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${title}</title>
<style>body{font-family:sans-serif;margin:25px auto;width:320px}button{width:100%;height:36px;margin-bottom:10px}</style>
</head><body><h1>${title}</h1>${body}</body></html>`;

const htmlEscape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function logoutSource(ctx, form) {
  ctx.body = page("Sign out", `<p>Sign out of the test provider at ${htmlEscape(ctx.host)}?</p>
${form}
<button id="logout-yes" autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page("Signed out", `<p id="signed-out">You are signed out of the test provider.</p>`);
}

async function renderError(ctx, out) {
  ctx.type = "html";
  ctx.body = page("Provider error", Object.entries(out)
    .map(([k, v]) => `<pre class="error" data-key="${htmlEscape(k)}"><strong>${htmlEscape(k)}</strong>: ${htmlEscape(v)}</pre>`).join(""));
}

function configuration() {
  return {
    clients: [client],
    adapter: (model) => new MemoryAdapter(model),
    jwks: { keys: signingKeys },
    // Cookies are not kept apart by port: on 127.0.0.1 the lab's and the
    // provider's share one jar, so the provider's carry an `op_` prefix.
    // Without TLS oidc-provider sets them without `Secure` (it follows ctx.secure).
    cookies: {
      keys: cookieKeys,
      names: { session: "op_session", interaction: "op_interaction", resume: "op_interaction_resume" },
    },
    findAccount,
    loadExistingGrant,
    renderError,
    claims: {
      openid: ["sub"],
      email: ["email", "email_verified"],
      profile: ["preferred_username", "name"],
      groups: ["groups"],
    },
    scopes: ["openid", "profile", "email", "groups"],
    responseTypes: ["code"],
    // groups, preferred_username and email go into the ID token as well, so
    // a relying party needs no userinfo call; with POST /_test/conform they
    // are only in userinfo, as a conforming provider (and Entra, Google for
    // some claims) sends them.
    conformIdTokenClaims: conform,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      userinfo: { enabled: true },
    },
    clientBasedCORS: () => false,
    ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, Interaction: 3600, Session: 86400, Grant: 86400 },
  };
}

// ---- test-control state shared by every Provider built -----------------

let nextIdToken; // what the next /token response's id_token becomes (once)
let conform = false; // scope claims only in userinfo, not in the ID token
let userinfoCalls = 0; // how many times /me (userinfo) answered
let lastIdToken; // the real id_token of the last /token response (for replays)

const b64json = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

/// A compact JWT: `claims` over `base` (a claim given as null is removed),
/// signed per `alg` and `key`.
async function mint({ claims = {}, alg = "RS256", key = "current", defaults = true } = {}, base) {
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    ...(base ?? (defaults ? { iss: issuer, aud: client.client_id, sub: "alice", iat: now, exp: now + 600 } : {})),
    ...claims,
  };
  for (const [k, v] of Object.entries(payload)) if (v === null) delete payload[k];
  if (alg === "none") {
    return new jose.UnsecuredJWT(payload).encode();
  }
  if (alg === "HS256") {
    // Signed with the client secret: a relying party expecting RS256 must refuse it.
    return new jose.SignJWT(payload).setProtectedHeader({ alg, typ: "JWT" })
      .sign(new TextEncoder().encode(client.client_secret));
  }
  if (alg !== "RS256") throw new Error(`alg must be RS256, none or HS256, not ${alg}`);
  const current = signingKeys[0];
  const jwk = { current, stranger: strangerKey, impostor: strangerKey }[key];
  if (!jwk) throw new Error(`key must be current, stranger or impostor, not ${key}`);
  const kid = key === "stranger" ? strangerKey.kid : current.kid;
  return new jose.SignJWT(payload).setProtectedHeader({ alg, kid, typ: "JWT" })
    .sign(await jose.importJWK(jwk, "RS256"));
}

// ---- server ----------------------------------------------------------------

let provider;
let handler;
let issuer;

function build() {
  provider = new Provider(issuer, configuration());

  // The login form's page @imports a Google font; nothing here may reach the
  // internet (and a failed load is a console error in the browser tests).
  provider.use(async (ctx, next) => {
    await next();
    if (typeof ctx.body === "string" && ctx.response.is("html")) {
      ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);?/g, "");
    }
  });

  // devInteractions accepts any login name; refuse one that accounts.json
  // lacks with a page of our own (the form's body is handed on parsed).
  provider.use(async (ctx, next) => {
    const m = ctx.method === "POST" && ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (!m || !ctx.is("application/x-www-form-urlencoded")) return next();
    const chunks = [];
    for await (const c of ctx.req) chunks.push(c);
    const form = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString("utf8")));
    ctx.request.body = form;
    if (form.prompt === "login" && !Object.hasOwn(readAccounts(), form.login ?? "")) {
      ctx.type = "html";
      ctx.set("cache-control", "no-store");
      ctx.body = page("Sign-in failed", `<p id="login-error">No account named <b>${htmlEscape(form.login ?? "")}</b> at this provider.</p>
<p><a id="try-again" href="/interaction/${htmlEscape(m[1])}">Try again</a></p>`);
      return;
    }
    return next();
  });

  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === "/me" && ctx.status === 200) userinfoCalls += 1;
  });

  // POST /_test/next_id_token: the next token response carries another id_token.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== "/token" || ctx.status !== 200 || !ctx.body?.id_token) return;
    const real = ctx.body.id_token;
    if (nextIdToken) {
      const spec = nextIdToken;
      nextIdToken = undefined;
      if (spec.jwt) {
        ctx.body.id_token = spec.jwt;
      } else if (spec.replay) {
        if (!lastIdToken) throw new Error("next_id_token replay: no ID token was issued before");
        ctx.body.id_token = lastIdToken;
      } else {
        ctx.body.id_token = await mint(spec, b64json(ctx.body.id_token.split(".")[1]));
      }
      console.error(`oidc test provider: /token answered with a substituted id_token (${Object.keys(spec).join(", ")})`);
    }
    lastIdToken = real;
  });

  handler = provider.callback();
}

async function readJsonBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : {};
}

async function testControl(req, res) {
  const send = (status, value) => {
    res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
    res.end(JSON.stringify(value));
  };
  try {
    const path = new URL(req.url, issuer).pathname;
    const route = `${req.method} ${path}`;
    if (route === "POST /_test/rotate") {
      const body = await readJsonBody(req);
      const previous = signingKeys[0].kid;
      signingKeys = [await newSigningKey(), ...(body.keep_old ? signingKeys : [])];
      writeJson(KEYS, { keys: signingKeys });
      build();
      console.error(`oidc test provider: signing key rotated ${previous} -> ${signingKeys[0].kid}`);
      return send(200, { kid: signingKeys[0].kid, previous_kid: previous, jwks_kids: signingKeys.map((k) => k.kid) });
    }
    if (route === "POST /_test/mint") {
      const body = await readJsonBody(req);
      return send(200, { jwt: await mint(body) });
    }
    if (route === "POST /_test/next_id_token") {
      const body = await readJsonBody(req);
      nextIdToken = body;
      return send(200, { armed: true });
    }
    if (route === "DELETE /_test/next_id_token") {
      nextIdToken = undefined;
      return send(200, { armed: false });
    }
    if (route === "GET /_test/last_id_token") {
      return send(200, { id_token: lastIdToken ?? null });
    }
    if (route === "POST /_test/client") {
      const body = await readJsonBody(req);
      for (const k of ["redirect_uris", "post_logout_redirect_uris", "client_secret"]) {
        if (body[k] !== undefined) client[k] = body[k];
      }
      build();
      const { client_secret: _, ...shown } = client;
      return send(200, shown);
    }
    if (route === "POST /_test/conform") {
      const body = await readJsonBody(req);
      conform = Boolean(body.on);
      build();
      console.error(`oidc test provider: claims ${conform ? "only in userinfo" : "in the ID token too"}`);
      return send(200, { conform, userinfo_calls: userinfoCalls });
    }
    if (route === "GET /_test/userinfo_calls") {
      return send(200, { userinfo_calls: userinfoCalls });
    }
    if (route === "PUT /_test/accounts") {
      writeJson(ACCOUNTS, await readJsonBody(req));
      return send(200, readAccounts());
    }
    if (route === "GET /_test/accounts") {
      return send(200, readAccounts());
    }
    return send(404, { error: `no test control ${route}` });
  } catch (err) {
    return send(400, { error: String(err?.message ?? err) });
  }
}

const server = createServer((req, res) => {
  if (req.url === "/favicon.ico") {
    // Chromium asks; a 404 would be a console error in the browser tests.
    res.writeHead(204, { "cache-control": "max-age=86400" }).end();
  } else if (opts["test-controls"] && req.url.startsWith("/_test/")) {
    testControl(req, res);
  } else {
    handler(req, res);
  }
});
server.listen(Number(opts.port), "127.0.0.1", () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  build();
  process.stdout.write(JSON.stringify({ issuer, port }) + "\n");
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
}
