// The notebook page: cells with editors, a kernel bound through a session,
// outputs streamed as they arrive, and saving in nbformat 4 (as JupyterLab
// writes it, so either can open the other's notebooks).

import type { EditorView } from "@codemirror/view";
import { marked } from "marked";
import DOMPurify from "dompurify";
import { api, ApiError, contentsUrl } from "./api";
import { h, toast } from "./dom";
import { makeEditor } from "./editor";
import { KernelConnection, type Connection, type Msg } from "./kernel";
import { OutputArea, type Output } from "./outputs";
import { beforePaint } from "./paint";
import { createAssignmentDialog, gradingTools } from "./authoring";
import { assignmentAt, worksheetBar } from "./worksheet";

interface NbCell {
  id?: string;
  cell_type: "code" | "markdown" | "raw";
  source: string | string[];
  metadata: Record<string, unknown>;
  outputs?: Output[];
  execution_count?: number | null;
  attachments?: Record<string, unknown>;
  [other: string]: unknown;
}

interface Notebook {
  cells: NbCell[];
  metadata: Record<string, any>;
  nbformat: number;
  nbformat_minor: number;
}

interface KernelModel {
  id: string;
  name: string;
  execution_state: string;
  resources?: { gpus: number; gpu_model?: string | null; real?: boolean };
  queue?: { position: number; eta_seconds: number | null; gpu_model?: string; waiting_for?: string } | null;
  reason?: string | null;
}

function source(s: string | string[]): string {
  return Array.isArray(s) ? s.join("") : s;
}

function cellId(): string {
  return crypto.randomUUID().replace(/-/g, "").slice(0, 12);
}

/// Cells made at once when a notebook opens (more than a screen's worth);
/// the rest follow in batches of `CELL_BATCH` while the page is idle.
const FIRST_CELLS = 24;
const CELL_BATCH = 10;

class Cell {
  readonly el: HTMLElement;
  readonly outputs: OutputArea;
  private readonly prompt: HTMLElement;
  private readonly rendered: HTMLElement | null = null;
  private readonly editorHost: HTMLElement;
  /// Made when the cell first comes near the screen, or is edited: a
  /// notebook of hundreds of cells opens without hundreds of editors.
  private view: EditorView | null = null;
  /// The source until the editor exists.
  private source: string;
  count: number | null;
  running = false;

  constructor(
    private readonly nb: NotebookView,
    public readonly type: "code" | "markdown" | "raw",
    text: string,
    public readonly id: string,
    outputs: Output[],
    count: number | null,
    public metadata: Record<string, unknown>,
    /// Fields of the cell this view does not edit (JupyterLab's pasted
    /// images in `attachments`, say): saved back as they came.
    private readonly extra: Record<string, unknown> = {},
  ) {
    this.count = count;
    this.source = text;
    this.prompt = h("div", { class: "prompt" });
    this.outputs = new OutputArea(outputs);
    // Until then, the source as plain text where the editor will be,
    // laid out as the editor lays it out.
    const placeholder = h(
      "pre",
      { class: "editor-placeholder", tabindex: "0", "aria-label": type === "code" ? "code cell" : "markdown cell" },
      text || " ",
    );
    placeholder.addEventListener("focus", () => this.editor.focus());
    placeholder.addEventListener("mousedown", (e) => {
      e.preventDefault();
      const view = this.editor;
      const at = view.posAtCoords({ x: e.clientX, y: e.clientY });
      view.focus();
      if (at != null) view.dispatch({ selection: { anchor: at } });
    });
    this.editorHost = h("div", { class: "editor" }, placeholder);
    this.el = h("section", { class: `cell ${type}`, "data-cell-id": id }, this.prompt, this.editorHost);
    if (type === "markdown") {
      this.rendered = h("div", { class: "markdown-rendered", tabindex: "0", title: "Enter or double-click to edit" });
      this.rendered.addEventListener("dblclick", () => this.edit());
      this.rendered.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.metaKey) {
          e.preventDefault();
          this.edit();
        }
      });
      this.el.append(this.rendered);
      if (text.trim()) this.render();
    } else {
      this.el.append(this.outputs.el);
    }
    this.el.addEventListener("focusin", () => nb.select(this));
    this.showCount();
  }

  /// The cell's editor, made now if it was not yet.
  get editor(): EditorView {
    if (this.view) return this.view;
    this.editorHost.replaceChildren();
    this.view = makeEditor(this.editorHost, this.source, this.type === "code" ? "code" : "markdown", {
      runAndAdvance: () => void this.nb.runAndAdvance(this),
      run: () => void this.nb.run(this),
      save: () => void this.nb.save(),
      changed: () => this.nb.markDirty(),
    });
    this.source = "";
    return this.view;
  }

  /// Where the editor will be: the notebook watches it to make the editor
  /// when it comes near the screen.
  get editorSpot(): HTMLElement {
    return this.editorHost;
  }

  get hasEditor(): boolean {
    return this.view !== null;
  }

  get text(): string {
    return this.view ? this.view.state.doc.toString() : this.source;
  }

  showCount(): void {
    if (this.type !== "code") return;
    this.prompt.textContent = this.running ? "[*]:" : `[${this.count ?? " "}]:`;
  }

  render(): void {
    if (!this.rendered) return;
    // A notebook may come from someone else (a course): its markdown is
    // rendered in the app's page, so nothing in it may post or restyle.
    this.rendered.innerHTML = DOMPurify.sanitize(marked.parse(this.text, { async: false }) as string, {
      FORBID_TAGS: ["form", "style", "input", "button", "textarea", "select", "link", "meta", "base"],
      FORBID_ATTR: ["style", "action", "formaction"],
    });
    this.el.classList.add("is-rendered");
  }

  edit(): void {
    this.el.classList.remove("is-rendered");
    this.editor.focus();
  }

  toJSON(): NbCell {
    const base = { ...this.extra, id: this.id, cell_type: this.type, source: this.text, metadata: this.metadata };
    if (this.type !== "code") return base;
    return { ...base, outputs: this.outputs.toJSON() as Output[], execution_count: this.count };
  }
}

export class NotebookView {
  readonly el: HTMLElement;
  private cells: Cell[] = [];
  private selected: Cell | null = null;
  private kernel: KernelConnection | null = null;
  private kernelModel: KernelModel | null = null;
  private dirty = false;
  private metadata: Record<string, any> = {};
  private readonly cellsEl = h("div", { class: "cells" });
  private readonly statusEl = h("span", { class: "kernel-status", "data-state": "none" }, "no kernel");
  private readonly deviceEl = h("span", { class: "kernel-device" });
  private readonly connEl = h("span", { class: "connection", "data-state": "none" });
  private readonly queueEl = h("span", { class: "queue" });
  private readonly savedEl = h("span", { class: "saved" });
  private readonly banner = h("div", { class: "notice", role: "alert", hidden: true });
  private readonly picker = h("select", { "aria-label": "kernel" }) as HTMLSelectElement;
  private autosave: number | undefined;
  /// Left (another page was opened): a start still queued is cancelled.
  private disposed = false;
  /// The connect in flight: a kernel switch waits for it, so no start is lost.
  private connecting: Promise<void> = Promise.resolve();
  /// Resolves once every cell of the file is in the model (a big notebook's
  /// cells after the first screen are added a batch at a time): what saves
  /// or runs them all waits for it.
  private complete: Promise<void> = Promise.resolve();
  private allCells = true;
  /// Cells waiting to run, in order; one runs at a time, as in the kernel.
  private queue: { cell: Cell; done: () => void }[] = [];
  private pumping = false;
  /// Ends the cell that runs now (a restart, a new kernel, a dead one).
  private abandonRunning: (() => void) | null = null;
  /// Makes a cell's editor when the cell comes near the screen: at once
  /// when it is on the screen, else when the page is idle (an editor costs
  /// about 15 ms, and a screen and a half of them would hold up the first).
  private readonly nearScreen = new IntersectionObserver(
    (entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        this.nearScreen.unobserve(e.target);
        const cell = this.cells.find((c) => c.editorSpot === e.target);
        if (!cell) continue;
        const r = e.boundingClientRect;
        if (r.bottom > 0 && r.top < window.innerHeight) void cell.editor;
        else this.editorLater(cell);
      }
    },
    { rootMargin: "1500px 0px" },
  );
  private readonly editorsLater: Cell[] = [];

  private editorLater(cell: Cell): void {
    if (this.editorsLater.push(cell) > 1) return;
    const make = (idle: IdleDeadline) => {
      while (this.editorsLater.length && (idle.timeRemaining() > 4 || idle.didTimeout)) {
        if (this.disposed) return;
        void this.editorsLater.shift()!.editor;
        if (idle.didTimeout) break;
      }
      if (this.editorsLater.length) requestIdleCallback(make, { timeout: 500 });
    };
    requestIdleCallback(make, { timeout: 500 });
  }

  constructor(
    public readonly path: string,
    /// A trainer: may publish, mark cells for grading and make assignments.
    private readonly canPublish = false,
  ) {
    const bar = h(
      "div",
      { class: "toolbar", role: "toolbar" },
      h("a", { href: "#/files/" + path.split("/").slice(0, -1).join("/"), class: "back" }, "← Files"),
      h("strong", { class: "nb-name" }, path.split("/").pop() ?? path),
      h("button", { onclick: () => void this.save(), title: "Save (Ctrl-S)" }, "Save"),
      h("button", { onclick: () => this.addCell("code"), title: "Add a code cell" }, "+ Code"),
      h("button", { onclick: () => this.addCell("markdown"), title: "Add a markdown cell" }, "+ Text"),
      h("button", { onclick: () => void this.runAll(), class: "run-all", title: "Run all (Ctrl-Shift-Enter)" }, "Run all"),
      h("button", { onclick: () => void this.interrupt(), class: "interrupt" }, "Interrupt"),
      h("button", { onclick: () => void this.restart(), class: "restart" }, "Restart"),
      canPublish && h("button", { onclick: () => void this.publish(), class: "publish", title: "Publish to a course" }, "Publish"),
      canPublish &&
        h(
          "button",
          {
            class: "assignment-tools",
            title: "Mark cells as answers, tests or read-only, with points (nbgrader's metadata)",
            onclick: () => this.el.classList.toggle("authoring"),
          },
          "Assignment tools",
        ),
      canPublish &&
        h(
          "button",
          {
            class: "create-assignment",
            title: "Make a graded assignment of this notebook",
            onclick: () => createAssignmentDialog(this.path, (this.metadata.academy_course as string) ?? "", () => this.saveOrThrow()),
          },
          "Create assignment",
        ),
      this.picker,
      this.statusEl,
      this.deviceEl,
      this.queueEl,
      this.connEl,
      this.savedEl,
    );
    this.picker.addEventListener("change", () => void this.switchKernel(this.picker.value));
    this.el = h("div", { class: "notebook" }, bar, this.banner, this.cellsEl);
    this.el.addEventListener("keydown", (e) => {
      // An editor handles its own keys first (and prevents the default).
      if (e.defaultPrevented) return;
      if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault();
        void this.save();
      } else if ((e.ctrlKey || e.metaKey) && e.shiftKey && e.key === "Enter") {
        e.preventDefault();
        void this.runAll();
      }
    });
  }

  async load(): Promise<void> {
    const model = await api<{ content: Notebook }>(contentsUrl(this.path) + "?type=notebook&content=1");
    const nb = model.content;
    this.metadata = nb.metadata ?? {};
    // The kernel is found (or started) while the cells are made.
    this.connecting = this.fillPicker().then(() => this.connect());
    // Each file cell goes right after the file's previous one: a cell the
    // user adds while the rest arrive stays where they put it.
    let lastFromFile: Cell | undefined;
    const add = (c: NbCell) => {
      const { id, cell_type, source: text, metadata, outputs, execution_count, ...extra } = c;
      const cell = new Cell(this, cell_type, source(text), id ?? cellId(), outputs ?? [], execution_count ?? null, metadata ?? {}, extra);
      this.appendCell(cell, lastFromFile);
      lastFromFile = cell;
    };
    // The first screen at once; the rest a batch at a time, so the page is
    // laid out, and its first cells editable, before hundreds of cells are
    // made (a 500-cell notebook: 0.4 s of building and 0.4 s of layout).
    nb.cells.slice(0, FIRST_CELLS).forEach(add);
    if (!this.cells.length) this.addCell("code");
    this.dirty = false;
    const grading = () => {
      if (this.cells.some((c) => c.metadata.nbgrader)) this.el.classList.add("authoring");
    };
    grading();
    this.allCells = false;
    this.complete = new Promise<void>((resolve) => {
      const done = () => {
        this.allCells = true;
        resolve();
      };
      let next = FIRST_CELLS;
      // When the page is idle (input and painting first), within 300 ms.
      const more = (idle: IdleDeadline) => {
        // Closed half loaded: `allCells` stays false, so nothing saves it.
        if (this.disposed) return resolve();
        // Appending a file's cells is no edit of the user's.
        const dirty = this.dirty;
        do {
          nb.cells.slice(next, next + CELL_BATCH).forEach(add);
          next += CELL_BATCH;
        } while (next < nb.cells.length && idle.timeRemaining() > 4);
        this.dirty = dirty;
        if (next < nb.cells.length) requestIdleCallback(more, { timeout: 300 });
        else {
          grading();
          done();
        }
      };
      if (next < nb.cells.length) requestIdleCallback(more, { timeout: 300 });
      else done();
    });
    // An engineer's copy of an assignment gets Validate and Submit.
    void assignmentAt(this.path)
      .then((a) => {
        // Staff's own notebook at that path is no submission: they have Manage.
        if (!a || a.staff || this.disposed) return;
        const bar = worksheetBar(a, this.path, () => this.saveOrThrow(), () => this.cells, () => !this.disposed);
        this.banner.after(bar);
      })
      .catch(() => {});
    await this.connecting;
    if (this.disposed) return;
    this.autosave = window.setInterval(() => {
      if (this.dirty) void this.save(true);
    }, 30_000);
  }

  dispose(): void {
    this.disposed = true;
    window.clearInterval(this.autosave);
    this.nearScreen.disconnect();
    this.stopRunning();
    this.kernel?.close();
  }

  private async fillPicker(): Promise<void> {
    const specs = await api<{ default: string; kernelspecs: Record<string, { name: string; spec: { display_name: string; language: string } }> }>(
      "/api/kernelspecs",
    );
    const wanted = this.metadata.kernelspec?.name ?? specs.default;
    this.picker.replaceChildren(
      ...Object.values(specs.kernelspecs).map((s) =>
        h("option", { value: s.name, selected: s.name === wanted }, s.spec.display_name),
      ),
    );
    this.picker.value = specs.kernelspecs[wanted] ? wanted : specs.default;
  }

  private setStatus(state: string): void {
    this.statusEl.dataset.state = state;
    this.statusEl.textContent = state;
  }

  private setConnection(c: Connection): void {
    this.connEl.dataset.state = c;
    this.connEl.textContent = c === "connected" ? "" : c;
  }

  private showKernel(m: KernelModel): void {
    this.kernelModel = m;
    const r = m.resources;
    this.deviceEl.textContent =
      m.execution_state === "queued"
        ? `waiting for ${m.queue?.gpu_model ?? "a GPU"}`
        : r && r.gpus > 0
          ? `${r.gpus} × ${r.gpu_model ?? "GPU"}${r.real === false ? " (modelled)" : ""}`
          : "CPU";
    if (m.execution_state === "queued" && m.queue) {
      const eta = m.queue.eta_seconds == null ? "" : `, about ${Math.ceil(m.queue.eta_seconds / 60)} min`;
      this.queueEl.textContent = `queued: position ${m.queue.position}${eta}`;
    } else {
      this.queueEl.textContent = "";
    }
  }

  /// Finds this notebook's session, or starts a kernel for it (waiting in
  /// the queue if GPUs are short) and makes one.
  private async connect(): Promise<void> {
    this.setStatus("starting");
    const sessions = await api<{ path: string; kernel: KernelModel }[]>("/api/sessions");
    let kernel = sessions.find((s) => s.path === this.path)?.kernel;
    if (!kernel) {
      try {
        kernel = await api<KernelModel>("/api/kernels", { method: "POST", body: { name: this.picker.value } });
      } catch (e) {
        this.setStatus("dead");
        toast(`The kernel did not start: ${(e as Error).message}`, "error");
        return;
      }
      this.showKernel(kernel);
      while (kernel.execution_state === "queued" || kernel.execution_state === "starting") {
        await new Promise((r) => setTimeout(r, 1000));
        if (this.disposed) {
          // Nobody waits for it any more: give its place in the queue back.
          await api(`/api/kernels/${kernel.id}`, { method: "DELETE" }).catch(() => {});
          return;
        }
        kernel = await api<KernelModel>(`/api/kernels/${kernel.id}`);
        this.showKernel(kernel);
      }
      if (kernel.execution_state === "dead") {
        this.setStatus("dead");
        toast(`The kernel did not start: ${kernel.reason ?? "refused"}`, "error");
        return;
      }
      await api("/api/sessions", {
        method: "POST",
        body: { path: this.path, type: "notebook", name: this.path, kernel: { id: kernel.id } },
      });
    }
    this.showKernel(kernel);
    this.kernel = new KernelConnection(kernel.id);
    this.kernel.onStatus = (s) => {
      this.setStatus(s);
      // A dead kernel answers nothing: what waited for it is over.
      if (s === "dead") this.stopRunning();
    };
    this.kernel.onConnection = (c) => this.setConnection(c);
    this.kernel.onNotice = (n) => void this.notice(n.kind, n.message);
    // What the kernel is doing now (an existing session's kernel may be
    // busy); the websocket pushes every change from here on.
    this.setStatus(kernel.execution_state);
    this.metadata.kernelspec = { name: kernel.name, display_name: this.picker.selectedOptions[0]?.textContent ?? kernel.name };
  }

  private async switchKernel(name: string): Promise<void> {
    await this.connecting;
    if (this.kernelModel?.name === name && this.kernel) return;
    this.connecting = this.replaceKernel(name);
    await this.connecting;
  }

  private async replaceKernel(name: string): Promise<void> {
    const sessions = await api<{ id: string; path: string }[]>("/api/sessions");
    const mine = sessions.find((s) => s.path === this.path);
    this.stopRunning();
    this.kernel?.close();
    this.kernel = null;
    if (mine) await api(`/api/sessions/${mine.id}`, { method: "DELETE" });
    this.picker.value = name;
    this.markDirty();
    await this.connect();
  }

  select(cell: Cell): void {
    this.selected?.el.classList.remove("selected");
    this.selected = cell;
    cell.el.classList.add("selected");
  }

  markDirty(): void {
    this.dirty = true;
    this.savedEl.textContent = "unsaved";
  }

  private appendCell(cell: Cell, after?: Cell): void {
    if (this.canPublish) cell.el.insertBefore(gradingTools(cell, () => this.markDirty()), cell.el.children[1]);
    // After `after`, or at the end when there is none (or it was deleted).
    const at = after ? this.cells.indexOf(after) : -1;
    const i = at >= 0 ? at + 1 : this.cells.length;
    this.cells.splice(i, 0, cell);
    const next = this.cells[i + 1];
    if (next) this.cellsEl.insertBefore(cell.el, next.el);
    else this.cellsEl.append(cell.el);
    if (!cell.hasEditor) this.nearScreen.observe(cell.editorSpot);
  }

  addCell(type: "code" | "markdown", after: Cell | null = this.selected): Cell {
    const cell = new Cell(this, type, "", cellId(), [], null, {});
    this.appendCell(cell, after ?? undefined);
    this.markDirty();
    cell.editor.focus();
    return cell;
  }

  async runAndAdvance(cell: Cell): Promise<void> {
    const i = this.cells.indexOf(cell);
    const next = this.cells[i + 1] ?? this.addCell("code", cell);
    next.editor.focus();
    if (next.type === "markdown") next.edit();
    await this.run(cell);
  }

  /// Queues a cell; cells run one after another, as the kernel would run
  /// them. Resolves when the cell has run, or was taken off the queue.
  run(cell: Cell): Promise<void> {
    if (cell.type === "raw") return Promise.resolve();
    if (cell.type === "markdown" && !this.pumping) {
      cell.render();
      return Promise.resolve();
    }
    cell.running = cell.type === "code";
    cell.showCount();
    return new Promise<void>((done) => {
      this.queue.push({ cell, done });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let next = this.queue.shift(); next; next = this.queue.shift()) {
        const { cell, done } = next;
        if (cell.type === "markdown") {
          cell.render();
          done();
          continue;
        }
        const ok = await this.execute(cell);
        done();
        // Like Jupyter's stop_on_error: a failed cell takes the cells
        // queued after it off the queue.
        if (!ok) this.unqueue();
      }
    } finally {
      this.pumping = false;
    }
  }

  /// Takes every queued cell off the queue, unrun.
  private unqueue(): void {
    for (const { cell, done } of this.queue.splice(0)) {
      cell.running = false;
      cell.showCount();
      done();
    }
  }

  /// Ends the running cell and empties the queue (the kernel is restarting,
  /// replaced or dead, so no reply will come).
  private stopRunning(): void {
    this.unqueue();
    this.abandonRunning?.();
  }

  /// Runs one code cell; whether it ran without an error.
  private execute(cell: Cell): Promise<boolean> {
    const kernel = this.kernel;
    if (!kernel) {
      cell.running = false;
      cell.showCount();
      toast("No kernel: pick one above", "error");
      return Promise.resolve(false);
    }
    cell.outputs.clear();
    this.markDirty();
    return new Promise<boolean>((resolve) => {
      let replied = false;
      let idle = false;
      let ok = true;
      const end = () => {
        this.abandonRunning = null;
        kernel.done(id);
        cell.running = false;
        // Shown as done once its last output is on the page.
        beforePaint(() => cell.showCount());
        resolve(ok);
      };
      const finish = () => {
        if (replied && idle) end();
      };
      const id = kernel.request(
        "shell",
        "execute_request",
        { code: cell.text, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
        (m: Msg) => {
          if (m.channel === "shell" && m.header.msg_type === "execute_reply") {
            replied = true;
            if (m.content.status !== "ok") ok = false;
            if (m.content.execution_count != null) cell.count = m.content.execution_count;
            finish();
            return;
          }
          if (m.header.msg_type === "status") {
            if (m.content.execution_state === "idle") {
              idle = true;
              finish();
            }
            return;
          }
          if (m.header.msg_type === "update_display_data") {
            // The display may be in any cell, not only this one.
            for (const c of this.cells) c.outputs.update(m.content.transient?.display_id, m.content.data, m.content.metadata);
            return;
          }
          const n = cell.outputs.handle(m);
          if (n != null) {
            cell.count = n;
          }
        },
      );
      this.abandonRunning = () => {
        ok = false;
        end();
      };
    });
  }

  /// Queues every cell at once (each shows as waiting); the page stays
  /// responsive while they run.
  async runAll(): Promise<void> {
    // Queued in the click's own task once every cell is in.
    if (!this.allCells) await this.complete;
    await Promise.all(this.cells.map((c) => this.run(c)));
  }

  async interrupt(): Promise<void> {
    if (!this.kernelModel) return;
    await api(`/api/kernels/${this.kernelModel.id}/interrupt`, { method: "POST" });
  }

  async restart(): Promise<void> {
    if (!this.kernelModel) return;
    this.setStatus("restarting");
    this.stopRunning();
    await api(`/api/kernels/${this.kernelModel.id}/restart`, { method: "POST" });
  }

  toJSON(): Notebook {
    return {
      cells: this.cells.map((c) => c.toJSON()),
      metadata: {
        ...this.metadata,
        language_info: this.metadata.language_info ?? { name: "rust" },
      },
      nbformat: 4,
      nbformat_minor: 5,
    };
  }

  /// Whether the notebook as shown is now on the server.
  async save(auto = false): Promise<boolean> {
    // Never a notebook cut short: the file's cells are all in first (and a
    // view closed before they were is never saved).
    await this.complete;
    if (!this.allCells) return false;
    // Edits made while the request is out stay unsaved.
    this.dirty = false;
    try {
      await api(contentsUrl(this.path), {
        method: "PUT",
        body: { type: "notebook", format: "json", content: this.toJSON() },
      });
      if (!this.dirty) this.savedEl.textContent = auto ? "autosaved" : "saved";
      this.savedEl.removeAttribute("title");
      this.savedEl.classList.remove("error");
      return true;
    } catch (e) {
      // The notebook stays as it is, marked unsaved, and says why in the
      // server's words (its JSON `message`, e.g. a size limit).
      this.dirty = true;
      const why = e instanceof ApiError ? e.message : String(e);
      this.savedEl.textContent = "unsaved";
      this.savedEl.title = `Not saved: ${why}`;
      this.savedEl.classList.add("error");
      toast(`Not saved: ${why}`, "error");
      return false;
    }
  }

  /// Saves, or throws saying that the notebook on the server is not the
  /// one shown (what validates, submits or imports must be what is shown).
  async saveOrThrow(): Promise<void> {
    if (!(await this.save())) throw new Error("The notebook could not be saved, so nothing was sent: see the note beside Save.");
  }

  /// The gateway is about to stop this kernel (idle cull, or its borrowed
  /// GPU reclaimed): say so where it cannot be missed, and save now.
  private async notice(kind: string, message: string): Promise<void> {
    this.banner.textContent = message;
    this.banner.dataset.kind = kind;
    this.banner.hidden = false;
    await this.save(true);
  }

  /// Saves, then copies the notebook into a course everyone can take it from.
  async publish(): Promise<void> {
    const course = prompt("Publish to which course?", (this.metadata.academy_course as string) ?? "");
    if (!course) return;
    this.metadata.academy_course = course;
    if (!(await this.save())) return;
    const name = this.path.split("/").pop() ?? this.path;
    try {
      await api(`/api/courses/${encodeURIComponent(course)}/${encodeURIComponent(name)}`, {
        method: "PUT",
        body: { from: this.path },
      });
      toast(`Published to ${course}`);
    } catch (e) {
      toast((e as Error).message, "error");
    }
  }

  /// For tests: drop the websocket as a network blip would.
  dropConnection(): void {
    this.kernel?.drop();
  }
}
