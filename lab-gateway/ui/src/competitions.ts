// Competitions (issue 16), as Kaggle users know them: the list of those
// the caller may see (joined or not, the ones they run marked as staff),
// and for trainers, ops and admins the form that makes a new one. One
// competition's page is `competition`.

import { api, type Identity } from "./api";
import { failed, mayHost, metricText, phaseText, type Competition } from "./compete";
import { h, toast } from "./dom";
import { rulesForm } from "./hosting";

export async function competitionsPage(me: Identity): Promise<HTMLElement> {
  const all = await api<Competition[]>("/api/competitions");
  const page = h("div", { class: "competitions" }, h("h2", {}, "Competitions"));
  if (all.length) {
    page.append(
      h(
        "table",
        { class: "listing competition-list" },
        h("thead", {}, h("tr", {}, ...["Competition", "When", "Metric", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          ...all.map((c) =>
            h(
              "tr",
              { "data-slug": c.slug, "data-phase": c.phase },
              h(
                "td",
                {},
                h("a", { href: `#/competition/${c.slug}` }, c.title),
                c.staff && h("span", { class: "tag staff" }, "staff"),
                c.staff && !c.published && h("span", { class: "tag" }, "draft"),
              ),
              h("td", { class: "when" }, phaseText(c)),
              h("td", {}, metricText(c)),
              h("td", { class: "joined" }, c.joined ? "joined" : ""),
            ),
          ),
        ),
      ),
    );
  } else {
    page.append(h("p", { class: "empty" }, "No competitions yet."));
  }
  if (mayHost(me)) page.append(newCompetition());
  return page;
}

/// The "New competition" form: slug, title, texts and the rules; the
/// creator becomes its staff and lands on its page to add the data.
function newCompetition(): HTMLElement {
  const slug = h("input", { name: "slug", required: true, placeholder: "spirals", "aria-label": "slug" }) as HTMLInputElement;
  const title = h("input", { name: "title", required: true, placeholder: "Spirals", "aria-label": "title" }) as HTMLInputElement;
  const overview = h("textarea", { name: "overview", rows: "4", placeholder: "Markdown: what to predict and why", "aria-label": "overview" }) as HTMLTextAreaElement;
  const rulesText = h("textarea", { name: "rules_text", rows: "3", placeholder: "Markdown: the rules participants accept", "aria-label": "rules text" }) as HTMLTextAreaElement;
  const rules = rulesForm(null);
  const out = h("div", { class: "create-result" });
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      const body = { slug: slug.value.trim(), title: title.value.trim(), overview: overview.value, rules_text: rulesText.value, rules: rules.read() };
      const c = await api<Competition>("/api/competitions", { method: "POST", body });
      toast(`Competition ${c.slug} created`);
      location.hash = `#/competition/${c.slug}/host`;
    } catch (err) {
      failed(err, out);
    }
  };
  return h(
    "details",
    { class: "new-competition" },
    h("summary", {}, "New competition"),
    h(
      "form",
      { class: "competition-form", onsubmit: (e: Event) => void create(e) },
      h("label", { class: "field" }, h("span", {}, "Slug (its address; letters, digits, - and _)"), slug),
      h("label", { class: "field" }, h("span", {}, "Title"), title),
      h("label", { class: "field" }, h("span", {}, "Overview"), overview),
      h("label", { class: "field" }, h("span", {}, "Rules"), rulesText),
      rules.el,
      h("button", { type: "submit", class: "create-competition" }, "Create"),
      out,
    ),
  );
}
