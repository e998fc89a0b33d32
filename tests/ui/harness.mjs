// What every browser test file needs: a real `lab serve` on a fresh data
// dir, Debian's Chromium through playwright-core, pages whose console
// errors are collected (any one fails its test), screenshots, and typing
// into a cell's editor as a user does.

import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(ROOT, "lab-gateway", "ui", "package.json"));
const { chromium } = require("playwright-core");
/// The `lab` binary: the debug build the tests use, or LAB_BIN (a benchmark's release build).
export const LAB = process.env.LAB_BIN ?? join(ROOT, "target", "debug", "lab");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/// A `lab serve` on a fresh data dir; resolves once it printed its login URL
/// (a one-time code); the admin's API token is in its 0600 lab-server.json.
/// `prepare(lab, dir)` runs `lab` commands on the data dir before it starts.
export async function startLab(args, prepare = () => {}) {
  const dir = mkdtempSync(join(tmpdir(), "lab-ui-"));
  prepare((...a) => execFileSync(LAB, [...a, "--data-dir", dir], { encoding: "utf8" }).trim(), dir);
  const proc = spawn(LAB, ["serve", "--port", "0", "--data-dir", dir, ...args], {
    env: { ...process.env, LAB_LOG: "warn", JUPYTER_PATH: process.env.LAB_JUPYTER_PATH ?? join(ROOT, ".venv", "share", "jupyter") },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/Log in with: (http:\/\/127\.0\.0\.1:\d+)\/\?code=([0-9a-f]+)/);
      if (m) resolve(m);
    });
    proc.on("exit", (code) => reject(new Error(`lab serve exited with ${code}: ${out}`)));
  });
  const info = JSON.parse(readFileSync(join(dir, "runtime", "lab-server.json"), "utf8"));
  assert.equal(info.pid, proc.pid, "lab-server.json is this server's");
  return { proc, base: url[1], code: url[2], token: info.token, data: dir };
}

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/// The pages of one test file: each one's console errors and page errors
/// go to `problems`; screenshots go to `tests/artifacts/ui/<name>/`.
export class Pages {
  constructor(browser, name) {
    this.browser = browser;
    this.shots = join(ROOT, "tests", "artifacts", "ui", name);
    rmSync(this.shots, { recursive: true, force: true });
    mkdirSync(this.shots, { recursive: true });
    this.pages = [];
    this.problems = [];
  }

  /// A page in a context of its own (its own cookies). A dialog is accepted
  /// with `page.nextPrompt` as its answer.
  async newPage(name) {
    const context = await this.browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const page = await context.newPage();
    this.pages.push(page);
    // Once its test has stopped the server, a page's failed reconnects are expected.
    page.on("console", (m) => {
      if (m.type() === "error" && !page.serverStopped) this.problems.push(`${name}: console: ${m.text()}`);
    });
    page.on("pageerror", (e) => this.problems.push(`${name}: page error: ${e.message}`));
    page.on("dialog", (d) => d.accept(page.nextPrompt ?? undefined));
    return page;
  }

  async shot(page, name) {
    await page.screenshot({ path: join(this.shots, `${name}.png`), fullPage: true });
  }

  /// Stops a test's server; the pages open so far stop counting console errors.
  stopLab(lab) {
    for (const p of this.pages) p.serverStopped = true;
    lab.proc.kill("SIGTERM");
  }

  /// Runs `body`; on failure, saves what every open page showed.
  async withFailureShots(body) {
    try {
      await body();
    } catch (e) {
      for (const [i, p] of this.pages.entries()) await this.shot(p, `failure-${i}`).catch(() => {});
      throw e;
    }
  }
}

/// The cell's editor text is set as a user would type it.
export async function typeInto(page, cell, text) {
  await cell.locator(".cm-content").click();
  await page.keyboard.press("Control+a");
  await page.keyboard.press("Delete");
  await page.keyboard.insertText(text);
}

export async function loginWith(page, base, token) {
  await page.goto(base + "/");
  await page.getByLabel("token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("header.top").waitFor();
}

/// A REST client on `lab` for the users in `tokens` (name → API token):
/// `rest(user, method, path, body)` gives the JSON answer, and fails the
/// test on any status but success.
export function restClient(lab, tokens) {
  return async function rest(user, method, path, body) {
    const r = await fetch(lab().base + path, {
      method,
      headers: { Authorization: `token ${tokens[user]}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
}
