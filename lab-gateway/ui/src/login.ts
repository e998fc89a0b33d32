// The login pages: a token (what `lab user add` or `lab token create`
// printed), or the login URL `lab serve` prints (`/?code=…`, one-time).
//
// A login URL never logs in by itself: a link from another site could carry
// someone else's code and log this browser in to their account (login
// CSRF). So the app takes the code out of the address bar, says whose
// account it opens, and logs in only when the person confirms here.

import { api, ApiError } from "./api";
import { h } from "./dom";

export function loginPage(onLogin: () => void): HTMLElement {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", placeholder: "API token", "aria-label": "token", required: true }) as HTMLInputElement;
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Academy Lab"),
    h("p", {}, "Log in with the token you were given (or open the login URL lab serve printed)."),
    input,
    h("button", { type: "submit" }, "Log in"),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await api("/api/login", { method: "POST", body: { token: input.value.trim() } });
      onLogin();
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "That token is not valid." : (err as Error).message;
    }
  });
  // "Sign in with …" for each OpenID provider the server has, beside the token.
  const providers = h("div", { class: "sso-providers" });
  form.insertBefore(providers, form.children[1]);
  api<{ name: string; display_name: string; url: string }[]>("/api/login/providers")
    .then((list) => {
      for (const p of list) {
        providers.append(h("a", { class: "button sso", href: p.url, "data-provider": p.name }, `Sign in with ${p.display_name}`));
      }
      if (list.length) providers.append(h("p", { class: "or" }, "or, with a token:"));
    })
    .catch(() => {});
  setTimeout(() => input.focus());
  return form;
}

/// What a login URL carried (`?code=` or `?token=`), taken out of the
/// address bar so it is neither kept in history nor shared by copying.
export function takeLoginFromUrl(): { code: string } | { token: string } | null {
  const q = new URLSearchParams(location.search);
  const code = q.get("code");
  const token = q.get("token");
  if (code === null && token === null) return null;
  history.replaceState(null, "", location.pathname + location.hash);
  if (code) return { code };
  if (token) return { token };
  return null;
}

/// Asks before a login URL logs this browser in, naming the account.
export async function confirmLoginPage(
  credential: { code: string } | { token: string },
  onDone: () => void,
): Promise<HTMLElement> {
  const error = h("p", { class: "error", role: "alert" });
  let who: { username: string; role: string } | null = null;
  try {
    who = (await api<{ identity: { username: string; role: string } }>("/api/login", {
      method: "POST",
      body: { ...credential, check: true },
    })).identity;
  } catch (err) {
    error.textContent = err instanceof ApiError && err.status === 401
      ? "This login link is not valid: it was used already, or it expired. Ask for a new one (lab token login-url)."
      : (err as Error).message;
  }
  const confirm = h("button", { type: "submit" }, "Log in");
  const cancel = h("button", { type: "button", class: "secondary", onclick: () => onDone() }, "Cancel");
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Academy Lab"),
    who
      ? h("p", {}, "This link logs you in as ", h("strong", { class: "login-as" }, who.username), ` (${who.role}). Only continue if it is your own account.`)
      : null,
    who ? confirm : null,
    cancel,
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await api("/api/login", { method: "POST", body: credential });
      onDone();
    } catch (err) {
      error.textContent = err instanceof ApiError && err.status === 401 ? "This login link is not valid any more." : (err as Error).message;
    }
  });
  return form;
}
