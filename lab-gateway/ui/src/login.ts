// The login page: a token (what `lab user add` or `lab token create`
// printed). The login URL `lab serve` prints logs in without it.

import { api, ApiError } from "./api";
import { h } from "./dom";

export function loginPage(onLogin: () => void): HTMLElement {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", placeholder: "API token", "aria-label": "token", required: true }) as HTMLInputElement;
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Academy Lab"),
    h("p", {}, "Log in with the token you were given (or open the URL lab serve printed)."),
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
  setTimeout(() => input.focus());
  return form;
}
