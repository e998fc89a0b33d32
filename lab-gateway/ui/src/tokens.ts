// The Tokens page, for every signed-in user: personal API tokens (for
// scripts, `lab submit` and `jupyter server --gateway-url`) made with a
// label and an expiry, each shown once; and the live tokens and browser
// sessions, with their last use, each revocable. Revoking this browser's
// own session signs it out, so the page then hands over to the login page.

import { api, me } from "./api";
import { h, toast } from "./dom";

interface TokenInfo {
  id: string;
  kind: "api" | "session";
  label: string;
  created: string;
  expires: string | null;
  last_used: string | null;
}

/// The lifetimes offered, as the API's `expires_in` takes them.
const EXPIRIES: [string, string][] = [
  ["7d", "7 days"],
  ["30d", "30 days"],
  ["90d", "90 days"],
  ["366d", "1 year"],
];

const time = (iso: string | null, none: string) => (iso ? new Date(iso).toLocaleString() : none);

/// Copies `input`'s text: the Clipboard API where the page may use it,
/// else the selection and the older copy command.
async function copy(input: HTMLInputElement): Promise<void> {
  try {
    await navigator.clipboard.writeText(input.value);
    toast("Token copied");
    return;
  } catch {
    // no clipboard permission: select it instead
  }
  input.select();
  toast(document.execCommand("copy") ? "Token copied" : "Selected: copy it with Ctrl+C", "info");
}

/// `signedOut` runs when a revoke ended this browser's own session.
export async function tokensPage(signedOut: () => void): Promise<HTMLElement> {
  const body = h("tbody", {});
  const refresh = async () => {
    const tokens = await api<TokenInfo[]>("/api/tokens");
    body.replaceChildren(
      ...(tokens.length ? tokens.map(row) : [h("tr", {}, h("td", { class: "empty", colspan: "6" }, "No live tokens or sessions."))]),
    );
  };
  const revoke = async (t: TokenInfo) => {
    const ask =
      t.kind === "session"
        ? "End this browser session? If it is this browser's, you are signed out here."
        : `Revoke the token "${t.label}"? Whatever uses it gets 401 from now on.`;
    if (!confirm(ask)) return;
    try {
      await api(`/api/tokens/${encodeURIComponent(t.id)}`, { method: "DELETE" });
    } catch (e) {
      toast((e as Error).message, "error");
      return;
    }
    // A session may have been this browser's own: ask (a 200 either way)
    // before anything else that would now answer 401.
    if (t.kind === "session" && !(await me())) {
      toast("This browser's session ended: sign in again");
      signedOut();
      return;
    }
    toast(t.kind === "session" ? "Session ended" : `Token "${t.label}" revoked`);
    await refresh();
  };
  const row = (t: TokenInfo) =>
    h(
      "tr",
      { "data-id": t.id, "data-kind": t.kind, "data-label": t.label, "data-last-used": t.last_used ?? "" },
      h("td", { class: "kind" }, t.kind === "api" ? "API token" : "Browser session"),
      h("td", { class: "label" }, t.label),
      h("td", { class: "created" }, time(t.created, "")),
      h("td", { class: "expires" }, time(t.expires, "never")),
      h("td", { class: "last-used" }, time(t.last_used, "never")),
      h("td", { class: "actions" }, h("button", { class: "danger revoke", onclick: () => void revoke(t) }, "Revoke")),
    );

  const label = h("input", { name: "token-label", "aria-label": "token label", placeholder: "laptop", maxlength: "100", required: true });
  const expiry = h(
    "select",
    { name: "token-expiry", "aria-label": "expires in" },
    ...EXPIRIES.map(([v, text]) => h("option", { value: v, selected: v === "90d" }, text)),
  );
  const shown = h("div", { class: "new-token", hidden: true });
  const form = h(
    "form",
    {
      class: "token-form inline",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        try {
          const made = await api<TokenInfo & { token: string }>("/api/tokens", {
            method: "POST",
            body: { label: label.value.trim(), expires_in: expiry.value },
          });
          const value = h("input", { class: "token-value", readonly: true, value: made.token, "aria-label": "new token", size: "60" });
          shown.replaceChildren(
            h("p", { class: "notice" }, `Your new token "${made.label}": copy it now, it will not be shown again.`),
            h("div", { class: "inline" }, value, h("button", { type: "button", class: "copy-token", onclick: () => void copy(value) }, "Copy")),
          );
          shown.hidden = false;
          value.select();
          label.value = "";
          await refresh();
        } catch (err) {
          // The server's word: a label it refuses, a lifetime over its longest.
          shown.replaceChildren(h("p", { class: "error token-error" }, (err as Error).message));
          shown.hidden = false;
        }
      },
    },
    h("label", { class: "field" }, h("span", {}, "Label"), label),
    h("label", { class: "field" }, h("span", {}, "Expires in"), expiry),
    h("button", { type: "submit" }, "Create token"),
  );
  await refresh();
  return h(
    "div",
    { class: "tokens-page" },
    h("h2", {}, "Tokens and sessions"),
    h(
      "p",
      { class: "muted" },
      "A personal token lets a script, lab submit or jupyter server --gateway-url act as you. Every token expires; revoke one you no longer use.",
    ),
    form,
    shown,
    h(
      "table",
      { class: "tokens" },
      h("thead", {}, h("tr", {}, ...["Kind", "Label", "Created", "Expires", "Last used", ""].map((t) => h("th", {}, t)))),
      body,
    ),
  );
}
