// The files page: the user's notebook tree through the contents API.

import { api, contentsUrl, type ContentModel } from "./api";
import { h, toast } from "./dom";

function parentOf(path: string): string {
  return path.split("/").slice(0, -1).join("/");
}

function join(dir: string, name: string): string {
  return dir ? `${dir}/${name}` : name;
}

export async function filesPage(dir: string): Promise<HTMLElement> {
  const listing = await api<ContentModel>(contentsUrl(dir) + "?content=1");
  const entries = (listing.content as ContentModel[]).slice().sort((a, b) =>
    a.type === b.type ? a.name.localeCompare(b.name) : a.type === "directory" ? -1 : 1,
  );
  const reload = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

  const newNotebook = async () => {
    const name = prompt("Notebook name", "Untitled.ipynb");
    if (!name) return;
    const file = name.endsWith(".ipynb") ? name : `${name}.ipynb`;
    const empty = { cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 };
    try {
      await api(contentsUrl(join(dir, file)), { method: "PUT", body: { type: "notebook", format: "json", content: empty } });
      location.hash = `#/nb/${join(dir, file)}`;
    } catch (e) {
      toast((e as Error).message, "error");
    }
  };
  const upload = h("input", { type: "file", accept: ".ipynb", class: "upload-input", "aria-label": "upload a notebook" }) as HTMLInputElement;
  upload.addEventListener("change", async () => {
    for (const f of Array.from(upload.files ?? [])) {
      try {
        const content = JSON.parse(await f.text());
        await api(contentsUrl(join(dir, f.name)), { method: "PUT", body: { type: "notebook", format: "json", content } });
        toast(`Uploaded ${f.name}`);
      } catch (e) {
        toast(`${f.name}: ${(e as Error).message}`, "error");
      }
    }
    reload();
  });

  const row = (e: ContentModel) => {
    const href = e.type === "directory" ? `#/files/${e.path}` : e.type === "notebook" ? `#/nb/${e.path}` : undefined;
    const rename = async () => {
      const name = prompt("New name", e.name);
      if (!name || name === e.name) return;
      try {
        await api(contentsUrl(e.path), { method: "PATCH", body: { path: join(parentOf(e.path), name) } });
        reload();
      } catch (err) {
        toast((err as Error).message, "error");
      }
    };
    const remove = async () => {
      if (!confirm(`Delete ${e.name}?`)) return;
      try {
        await api(contentsUrl(e.path), { method: "DELETE" });
        reload();
      } catch (err) {
        toast((err as Error).message, "error");
      }
    };
    const download = async () => {
      const m = await api<ContentModel>(contentsUrl(e.path) + "?content=1");
      const text = e.type === "notebook" ? JSON.stringify(m.content, null, 1) : String(m.content);
      const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "application/json" })), download: e.name });
      a.click();
      URL.revokeObjectURL(a.href);
    };
    return h(
      "tr",
      { "data-name": e.name },
      h("td", { class: `kind ${e.type}` }, e.type === "directory" ? "📁" : e.type === "notebook" ? "📓" : "📄"),
      h("td", {}, href ? h("a", { href }, e.name) : e.name),
      h("td", { class: "modified" }, new Date(e.last_modified).toLocaleString()),
      h(
        "td",
        { class: "actions" },
        h("button", { onclick: rename }, "Rename"),
        e.type !== "directory" && h("button", { onclick: download }, "Download"),
        h("button", { onclick: remove, class: "danger" }, "Delete"),
      ),
    );
  };

  const crumbs = h("nav", { class: "crumbs" }, h("a", { href: "#/files/" }, "Files"));
  let acc = "";
  for (const part of dir.split("/").filter(Boolean)) {
    acc = join(acc, part);
    crumbs.append(" / ", h("a", { href: `#/files/${acc}` }, part));
  }
  return h(
    "div",
    { class: "files" },
    h(
      "div",
      { class: "toolbar" },
      crumbs,
      h("button", { onclick: newNotebook, class: "new-notebook" }, "New notebook"),
      h("label", { class: "button" }, "Upload", upload),
    ),
    entries.length
      ? h("table", { class: "listing" }, h("tbody", {}, ...entries.map(row)))
      : h("p", { class: "empty" }, "No notebooks yet. Create one, or upload a .ipynb file."),
  );
}
