// The single-page app: a hash router over the login, files, notebook,
// courses, assignments, competitions, ops and tokens pages, and the header
// with the user menu.

import { api, me, type Identity } from "./api";
import { clear, h, toast } from "./dom";
import { assignmentPage, assignmentsPage } from "./assignments";
import { CompetitionView } from "./competition";
import { competitionsPage } from "./competitions";
import { coursesPage } from "./courses";
import { managePage } from "./manage";
import { filesPage } from "./files";
import { confirmLoginPage, loginPage, takeLoginFromUrl } from "./login";
import { NotebookView } from "./notebook";
import { opsPage } from "./ops";
import { settingsForm } from "./settings";
import { tokensPage } from "./tokens";

const app = document.getElementById("app") as HTMLElement;
/// The page shown, while it holds something to stop when it is left (a
/// notebook's kernel connection, a competition tab's refreshes).
let current: { dispose(): void } | null = null;
let user: Identity | null = null;

function header(u: Identity): HTMLElement {
  const menu = h(
    "details",
    { class: "user-menu" },
    h("summary", {}, u.name),
    h(
      "div",
      { class: "menu" },
      h("p", {}, `Role: ${u.role}`),
      h("p", {}, `Group: ${u.group ?? "none"}`),
      h("p", {}, h("a", { href: "#/tokens", class: "tokens-link" }, "Tokens and sessions")),
      h(
        "button",
        {
          onclick: async () => {
            const out = await api<{ logout_url?: string } | null>("/api/logout", { method: "POST" });
            // Signed in through a provider: sign out there too, and come back.
            if (out?.logout_url) {
              location.href = out.logout_url;
              return;
            }
            user = null;
            location.hash = "#/";
            void route();
          },
        },
        "Log out",
      ),
      settingsForm(),
    ),
  );
  const ops = u.role === "ops" || u.role === "admin";
  return h(
    "header",
    { class: "top" },
    h("a", { href: "#/files/", class: "brand" }, "Academy Lab"),
    h(
      "nav",
      {},
      h("a", { href: "#/files/" }, "Files"),
      h("a", { href: "#/courses" }, "Courses"),
      h("a", { href: "#/assignments" }, "Assignments"),
      h("a", { href: "#/competitions" }, "Competitions"),
      ops && h("a", { href: "#/ops" }, "Ops"),
    ),
    menu,
  );
}

let pendingLogin = takeLoginFromUrl();

async function route(): Promise<void> {
  current?.dispose();
  current = null;
  if (pendingLogin) {
    const credential = pendingLogin;
    pendingLogin = null;
    const page = await confirmLoginPage(credential, () => {
      user = null;
      void route();
    });
    clear(app);
    app.append(page);
    return;
  }
  if (!user) user = await me();
  clear(app);
  if (!user) {
    app.append(loginPage(() => void route()));
    return;
  }
  app.append(header(user));
  const main = h("main", {});
  app.append(main);
  const hash = decodeURIComponent(location.hash.slice(1)) || "/files/";
  try {
    if (hash.startsWith("/nb/")) {
      const nb = new NotebookView(hash.slice(4), user.role === "trainer" || user.role === "admin");
      current = nb;
      (window as any).academyNotebook = nb;
      main.append(nb.el);
      await nb.load();
    } else if (hash === "/assignments") {
      main.append(await assignmentsPage());
    } else if (/^\/(assignment|manage)\/[^/]+\/[^/]+$/.test(hash)) {
      const [, page, course, name] = hash.split("/");
      main.append(await (page === "manage" ? managePage(course, name) : assignmentPage(course, name)));
    } else if (hash === "/competitions") {
      main.append(await competitionsPage(user));
    } else if (/^\/competition\/[^/]+(\/[a-z]+)?$/.test(hash)) {
      const [, , slug, tab] = hash.split("/");
      const view = new CompetitionView(slug, tab ?? "overview", user);
      current = view;
      main.append(view.el);
      await view.load();
    } else if (hash === "/courses") {
      main.append(await coursesPage());
    } else if (hash === "/tokens") {
      main.append(
        // This browser's session was revoked: the login page (the hash
        // change routes there).
        await tokensPage(() => {
          user = null;
          location.hash = "#/";
        }),
      );
    } else if (hash === "/ops") {
      main.append(await opsPage());
    } else {
      main.append(await filesPage(hash.replace(/^\/files\/?/, "")));
    }
  } catch (e) {
    toast((e as Error).message, "error");
    main.append(h("p", { class: "error" }, (e as Error).message));
  }
}

window.addEventListener("hashchange", () => void route());
void route();
