// Cell outputs: nbformat 4 output objects, rendered as they stream in.
// Everything from a kernel is untrusted: tracebacks go through ansi_up
// (which escapes), text is text, and rich outputs (HTML, SVG, markdown) go
// through DOMPurify and then into a sandboxed frame of their own, as
// JupyterLab renders untrusted output: `sandbox="allow-scripts"` without
// `allow-same-origin`, so the frame has an opaque origin (no cookie, no
// access to the app, its requests carry `Origin: null`, which the gateway
// refuses), cannot submit forms, open windows or navigate the app, and its
// styles stay inside it. The only script that runs there is ours (the page's
// CSP allows it by hash): it posts the frame's height, so the frame fits.

import DOMPurify from "dompurify";
import { AnsiUp } from "ansi_up";
import { marked } from "marked";
import { h } from "./dom";
import type { Msg } from "./kernel";
import { beforePaint } from "./paint";
import { settings } from "./settings";
import FRAME_SCRIPT from "./frame-script.txt";

export type Output =
  | { output_type: "stream"; name: string; text: string }
  | { output_type: "display_data"; data: Record<string, any>; metadata: Record<string, unknown>; transient?: { display_id?: string } }
  | { output_type: "execute_result"; data: Record<string, any>; metadata: Record<string, unknown>; execution_count: number | null }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

const ansi = new AnsiUp();
ansi.use_classes = true;

function joined(v: string | string[]): string {
  return Array.isArray(v) ? v.join("") : v;
}

/// Applies carriage returns as a terminal does, so progress bars printed
/// with `\r` update in place (for a whole text: a download).
export function applyCarriageReturns(text: string): string {
  if (!text.includes("\r")) return text;
  const line = new OpenLine();
  let out = "";
  for (const done of line.feed(text)) out += done;
  return out + line.shown();
}

/// The line a stream is writing, carriage returns resolved as they come:
/// `\r` returns to its start and what follows overwrites, so its cost is
/// that of the message and the line, never of the text before the line.
class OpenLine {
  /// What the line showed at its last `\r`.
  private base = "";
  /// What was written since.
  private part = "";

  shown(): string {
    return this.base ? this.part + this.base.slice(this.part.length) : this.part;
  }

  /// Takes text; returns the lines it completed, each with its `\n`.
  feed(text: string): string[] {
    if (!this.base && !text.includes("\r")) {
      const nl = text.lastIndexOf("\n");
      if (nl < 0) {
        this.part += text;
        return [];
      }
      const done = this.part + text.slice(0, nl + 1);
      this.part = text.slice(nl + 1);
      return [done];
    }
    const done: string[] = [];
    let from = 0;
    const breaks = /[\r\n]/g;
    for (let m = breaks.exec(text); m; m = breaks.exec(text)) {
      this.part += text.slice(from, m.index);
      from = m.index + 1;
      if (m[0] === "\r") {
        this.base = this.shown();
      } else {
        done.push(this.shown() + "\n");
        this.base = "";
      }
      this.part = "";
    }
    this.part += text.slice(from);
    return done;
  }
}

/// The end of the `n`-th line of `text`, or of its first `chars` characters,
/// whichever comes first.
function headEnd(text: string, lines: number, chars: number): number {
  const limit = Math.min(text.length, chars);
  let end = 0;
  for (let i = 0; i < lines; i++) {
    const nl = text.indexOf("\n", end);
    if (nl < 0 || nl >= limit) return limit;
    end = nl + 1;
  }
  return end;
}

/// Where the last `lines` lines of `text` (ending with a newline), and at
/// most its last `chars` characters, begin.
function tailStart(text: string, lines: number, chars: number): number {
  let start = text.length;
  let i = text.length - 2;
  for (let n = 0; n < lines && start > 0; n++) {
    const nl = i < 0 ? -1 : text.lastIndexOf("\n", i);
    start = nl + 1;
    i = nl - 1;
  }
  return Math.max(start, text.length - chars);
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
  return n;
}

function size(chars: number): string {
  if (chars < 1000) return `${chars} characters`;
  if (chars < 1_000_000) return `${(chars / 1000).toFixed(1)} kB`;
  return `${(chars / 1_000_000).toFixed(1)} MB`;
}

/// A text output (a stream, or a long plain result) on the page. It grows
/// by appending: each append costs what it adds. Past the settings' limits
/// the page keeps the first part (the head) and the last part (the tail),
/// counts what is between, and offers "Show all" and "Download as text";
/// the notebook's model keeps every character (the caller owns it).
class TextView {
  readonly el: HTMLElement;
  private readonly head = h("pre", { class: "out-head" });
  private readonly headText = document.createTextNode("");
  /// The note between head and tail, and the tail: made once text is cut.
  private cut: HTMLElement | null = null;
  private cutNote: HTMLElement | null = null;
  private tail: HTMLElement | null = null;
  private readonly open = document.createTextNode("");
  private line = new OpenLine();
  private pending = "";
  private scheduled = false;
  private detached = false;
  private limits = { headLines: 0, headChars: 0, tailLines: 0, tailChars: 0 };
  private headLines = 0;
  private headChars = 0;
  /// Text goes to the tail from now on.
  private cutting = false;
  private tailNodes: Text[] = [];
  private tailLines = 0;
  private tailChars = 0;
  private cutLines = 0;
  private cutChars = 0;

  constructor(
    cls: string,
    /// The whole text as the kernel sent it (for "Show all" and downloads).
    private readonly whole: () => string,
  ) {
    this.el = h("div", { class: cls }, this.head);
    this.head.append(this.headText, this.open);
    this.setLimits(false);
  }

  private setLimits(all: boolean): void {
    const s = settings();
    const headLines = all ? Infinity : Math.floor(s.outputLines / 2);
    const headChars = all ? Infinity : Math.floor(s.outputChars / 2);
    this.limits = all
      ? { headLines, headChars, tailLines: Infinity, tailChars: Infinity }
      : { headLines, headChars, tailLines: s.outputLines - headLines, tailChars: s.outputChars - headChars };
  }

  /// Adds text the kernel sent; the page shows it before the next paint.
  append(text: string): void {
    this.pending += text;
    if (this.scheduled) return;
    this.scheduled = true;
    beforePaint(() => {
      this.scheduled = false;
      if (!this.detached) this.flush();
    });
  }

  /// Shows what was appended now (a notebook being opened).
  flush(): void {
    const text = this.pending;
    this.pending = "";
    const done = this.line.feed(text);
    if (done.length) this.place(done.length === 1 ? done[0] : done.join(""));
    const shown = this.line.shown();
    const max = this.limits.tailChars;
    this.open.data = shown.length > max ? "…" + shown.slice(shown.length - max) : shown;
  }

  /// Stops updating: the output was cleared.
  detach(): void {
    this.detached = true;
  }

  private place(text: string): void {
    if (!this.cutting) {
      const l = this.limits;
      const end = headEnd(text, l.headLines - this.headLines, l.headChars - this.headChars);
      const taken = end === text.length ? text : text.slice(0, end);
      this.headText.appendData(taken);
      this.headLines += countLines(taken);
      this.headChars += taken.length;
      if (end === text.length) return;
      text = text.slice(end);
      this.cutting = true;
      this.cutNote = h("span", { class: "out-cut-note" });
      this.cut = h(
        "div",
        { class: "out-cut", hidden: true },
        this.cutNote,
        h("button", { type: "button", class: "show-all", onclick: () => this.showAll() }, "Show all"),
        h("button", { type: "button", class: "download", onclick: () => this.download() }, "Download as text"),
      );
      this.tail = h("pre", { class: "out-tail" }, this.open);
      this.el.append(this.cut, this.tail);
    }
    const tail = this.tail as HTMLElement;
    const node = document.createTextNode(text);
    tail.insertBefore(node, this.open);
    this.tailNodes.push(node);
    this.tailLines += countLines(text);
    this.tailChars += text.length;
    const l = this.limits;
    // The tail holds between one and two limits' worth, so trimming it
    // costs, over time, what was added.
    if (this.tailLines > 2 * l.tailLines || this.tailChars > 2 * l.tailChars) {
      const all = this.tailNodes.map((n) => n.data).join("");
      const start = tailStart(all, l.tailLines, l.tailChars);
      const kept = all.slice(start);
      const dropped = all.slice(0, start);
      this.cutLines += countLines(dropped);
      this.cutChars += dropped.length;
      for (const n of this.tailNodes) n.remove();
      const one = document.createTextNode(kept);
      tail.insertBefore(one, this.open);
      this.tailNodes = [one];
      this.tailLines = countLines(kept);
      this.tailChars = kept.length;
    }
    if ((this.cutLines || this.cutChars) && this.cut && this.cutNote) {
      this.cut.hidden = false;
      this.cutNote.textContent =
        `${this.cutLines.toLocaleString("en")} more lines (${size(this.cutChars)}) are not shown here; ` +
        "the notebook keeps all of it. ";
    }
  }

  /// Shows every line (and keeps showing every line that comes).
  showAll(): void {
    this.setLimits(true);
    this.line = new OpenLine();
    this.headText.data = "";
    this.headLines = this.headChars = 0;
    this.tailNodes = [];
    this.tailLines = this.tailChars = this.cutLines = this.cutChars = 0;
    this.cutting = false;
    this.cut?.remove();
    this.tail?.remove();
    this.cut = this.cutNote = this.tail = null;
    this.head.append(this.open);
    this.pending = this.whole();
    this.flush();
  }

  download(): void {
    const url = URL.createObjectURL(new Blob([applyCarriageReturns(this.whole())], { type: "text/plain;charset=utf-8" }));
    const a = h("a", { href: url, download: "output.txt" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

/// The tallest a frame grows; beyond it, the frame scrolls.
const MAX_FRAME_HEIGHT = 4000;

const FRAME_STYLE =
  "html,body{margin:0;padding:0;overflow-x:auto}" +
  "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;background:transparent}" +
  "table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:2px 6px}" +
  "img,svg{max-width:100%}pre,code{font-family:ui-monospace,monospace;font-size:13px}";

/// A frame is made only when its slot comes near the screen, and its
/// document (sanitised then) with it: a notebook with hundreds of rich
/// outputs opens without making hundreds of frames (each costs a browsing
/// context, about 15 ms, even empty).
const pending = new WeakMap<HTMLElement, () => string>();
const nearScreen = new IntersectionObserver(
  (entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      const slot = e.target as HTMLElement;
      nearScreen.unobserve(slot);
      load(slot);
    }
  },
  { rootMargin: "1000px 0px" },
);

function load(slot: HTMLElement): void {
  const doc = pending.get(slot);
  pending.delete(slot);
  if (doc === undefined) return;
  const f = h("iframe", { class: `out-frame ${slot.dataset.kind ?? ""}`, sandbox: "allow-scripts", title: "output", scrolling: "auto" }) as HTMLIFrameElement;
  f.style.height = "1.6em";
  f.srcdoc = doc();
  slot.replaceChildren(f);
}

/// Sanitised HTML in a sandboxed frame of its own (see the module doc),
/// made near the screen: `html` is called then.
function frame(kind: string, html: () => string): HTMLElement {
  const slot = h("div", { class: "out-frame-slot", "data-kind": kind });
  pending.set(slot, () => frameDoc(html()));
  nearScreen.observe(slot);
  return slot;
}

/// Gives a frame's slot a new document (a display updated in place).
function setFrameDoc(slot: HTMLElement, doc: () => string): void {
  const f = slot.querySelector("iframe");
  if (f) f.srcdoc = doc();
  else pending.set(slot, doc);
}

function frameDoc(html: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><style>${FRAME_STYLE}</style></head><body>${html}<script>${FRAME_SCRIPT}</script></body></html>`;
}

// Each frame reports its height; only a message from one of our frames'
// own window counts.
window.addEventListener("message", (e) => {
  const height = (e.data as { academyFrameHeight?: unknown } | null)?.academyFrameHeight;
  if (typeof height !== "number" || !Number.isFinite(height)) return;
  for (const f of document.querySelectorAll<HTMLIFrameElement>("iframe.out-frame")) {
    if (f.contentWindow === e.source) {
      f.style.height = `${Math.min(Math.max(Math.ceil(height), 0), MAX_FRAME_HEIGHT)}px`;
      return;
    }
  }
});

/// A rich output too big to show at once: a note, and "Show" to show it.
function placeholder(mime: string, chars: number, show: () => HTMLElement): HTMLElement {
  const el = h("div", { class: "out-placeholder" });
  el.append(
    h("span", {}, `A ${mime} output of ${size(chars)} is not shown (over the limit in Settings). `),
    h("button", { type: "button", class: "show", onclick: () => el.replaceChildren(show()) }, "Show"),
  );
  return el;
}

function renderData(data: Record<string, any>): HTMLElement {
  const rich = (["text/html", "image/svg+xml", "image/png", "text/markdown"] as const).find((m) => data[m] !== undefined);
  if (rich) {
    const chars = joined(data[rich]).length;
    if (chars > settings().outputChars) return placeholder(rich, chars, () => renderRich(rich, data));
    return renderRich(rich, data);
  }
  const text = joined(data["text/plain"] ?? "");
  const view = new TextView("out-text", () => text);
  view.append(text);
  view.flush();
  return view.el;
}

function renderRich(mime: "text/html" | "image/svg+xml" | "image/png" | "text/markdown", data: Record<string, any>): HTMLElement {
  switch (mime) {
    case "text/html":
      return frame("out-html", () => DOMPurify.sanitize(joined(data["text/html"])));
    case "image/svg+xml":
      return frame("out-svg", () =>
        DOMPurify.sanitize(joined(data["image/svg+xml"]), { USE_PROFILES: { svg: true, svgFilters: true } }),
      );
    case "image/png": {
      const src = "data:image/png;base64," + joined(data["image/png"]).replace(/\s/g, "");
      return h("img", { class: "out-img", src, alt: "image output" });
    }
    case "text/markdown":
      return frame("out-markdown", () =>
        DOMPurify.sanitize(marked.parse(joined(data["text/markdown"]), { async: false }) as string),
      );
  }
}

/// Puts `next` where `old` is; a frame that stays a frame only gets its new
/// document (a progress bar redraws in place, keeping its height).
function replaceNode(old: HTMLElement, next: HTMLElement): HTMLElement {
  if (old.classList.contains("out-frame-slot") && next.classList.contains("out-frame-slot") && old.dataset.kind === next.dataset.kind) {
    nearScreen.unobserve(next);
    const doc = pending.get(next);
    pending.delete(next);
    if (doc !== undefined) setFrameDoc(old, doc);
    return old;
  }
  old.replaceWith(next);
  return next;
}

function renderError(o: Extract<Output, { output_type: "error" }>): HTMLElement {
  const pre = h("pre", { class: "out-error" });
  const text = o.traceback.length ? o.traceback.join("\n") : `${o.ename}: ${o.evalue}`;
  pre.innerHTML = ansi.ansi_to_html(text);
  return pre;
}

/// The outputs of one cell while it runs: appends, merges consecutive
/// stream text, replaces displays by id, honours clear_output.
export class OutputArea {
  readonly el = h("div", { class: "outputs" });
  outputs: Output[] = [];
  private nodes: HTMLElement[] = [];
  /// The view of the last output, when it is a stream that may grow.
  private stream: TextView | null = null;
  private clearPending = false;
  /// Outputs from a saved notebook are shown at once, not on the next frame.
  private opening = true;

  constructor(initial: Output[] = []) {
    for (const o of initial) {
      // nbformat allows multi-line strings as lists of lines.
      this.add(o.output_type === "stream" ? { ...o, text: joined(o.text) } : o);
    }
    this.opening = false;
  }

  clear(): void {
    this.stream?.detach();
    this.stream = null;
    this.outputs = [];
    this.nodes = [];
    this.el.replaceChildren();
  }

  private add(o: Output): void {
    if (this.clearPending) {
      this.clearPending = false;
      this.clear();
    }
    const last = this.outputs[this.outputs.length - 1];
    if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name && this.stream) {
      last.text += o.text;
      this.stream.append(o.text);
      if (this.opening) this.stream.flush();
      return;
    }
    this.stream = null;
    let node: HTMLElement;
    if (o.output_type === "stream") {
      const out = { ...o };
      o = out;
      this.stream = new TextView(`out-stream ${o.name}`, () => out.text);
      this.stream.append(o.text);
      if (this.opening) this.stream.flush();
      node = this.stream.el;
    } else if (o.output_type === "error") {
      node = renderError(o);
    } else {
      node = renderData(o.data);
    }
    this.outputs.push(o);
    this.nodes.push(node);
    this.el.append(node);
  }

  /// Takes one iopub message for this cell; returns the execution count
  /// when it carries one.
  handle(m: Msg): number | null {
    const c = m.content;
    switch (m.header.msg_type) {
      case "stream":
        this.add({ output_type: "stream", name: c.name, text: c.text });
        break;
      case "display_data":
        this.add({ output_type: "display_data", data: c.data, metadata: c.metadata ?? {}, transient: c.transient });
        break;
      case "update_display_data":
        this.update(c.transient?.display_id, c.data, c.metadata);
        break;
      case "execute_result":
        this.add({ output_type: "execute_result", data: c.data, metadata: c.metadata ?? {}, execution_count: c.execution_count });
        return c.execution_count;
      case "error":
        this.add({ output_type: "error", ename: c.ename, evalue: c.evalue, traceback: c.traceback ?? [] });
        break;
      case "clear_output":
        if (c.wait) this.clearPending = true;
        else this.clear();
        break;
      case "execute_input":
        return c.execution_count ?? null;
    }
    return null;
  }

  /// Replaces every display of this area with `displayId` (a display may
  /// be updated from any cell, so the notebook calls this on every cell).
  update(displayId: string | undefined, data: Record<string, any>, metadata?: Record<string, unknown>): void {
    if (!displayId) return;
    this.outputs.forEach((o, i) => {
      if (o.output_type === "display_data" && o.transient?.display_id === displayId) {
        o.data = data;
        if (metadata) o.metadata = metadata;
        this.nodes[i] = replaceNode(this.nodes[i], renderData(o.data));
      }
    });
  }

  /// The outputs as nbformat stores them (no transient fields).
  toJSON(): unknown[] {
    return this.outputs.map((o) => {
      if (o.output_type === "display_data") {
        return { output_type: o.output_type, data: o.data, metadata: o.metadata };
      }
      return o;
    });
  }
}
