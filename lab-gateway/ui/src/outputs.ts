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
/// with `\r` update in place.
export function applyCarriageReturns(text: string): string {
  if (!text.includes("\r")) return text;
  return text
    .split("\n")
    .map((line) => {
      const parts = line.split("\r");
      let out = "";
      for (const p of parts) out = p + out.slice(p.length);
      return out;
    })
    .join("\n");
}

/// The tallest a frame grows; beyond it, the frame scrolls.
const MAX_FRAME_HEIGHT = 4000;

const FRAME_STYLE =
  "html,body{margin:0;padding:0;overflow-x:auto}" +
  "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1f2328;background:transparent}" +
  "table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:2px 6px}" +
  "img,svg{max-width:100%}pre,code{font-family:ui-monospace,monospace;font-size:13px}";

/// Sanitised HTML in a sandboxed frame of its own (see the module doc).
function frame(cls: string, html: string): HTMLIFrameElement {
  const f = h("iframe", { class: `out-frame ${cls}`, sandbox: "allow-scripts", title: "output", scrolling: "auto" }) as HTMLIFrameElement;
  f.style.height = "1.6em";
  f.srcdoc = frameDoc(html);
  return f;
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

function renderData(data: Record<string, any>): HTMLElement {
  if (data["text/html"] !== undefined) {
    return frame("out-html", DOMPurify.sanitize(joined(data["text/html"])));
  }
  if (data["image/svg+xml"] !== undefined) {
    return frame(
      "out-svg",
      DOMPurify.sanitize(joined(data["image/svg+xml"]), { USE_PROFILES: { svg: true, svgFilters: true } }),
    );
  }
  if (data["image/png"] !== undefined) {
    const src = "data:image/png;base64," + joined(data["image/png"]).replace(/\s/g, "");
    return h("img", { class: "out-img", src, alt: "image output" });
  }
  if (data["text/markdown"] !== undefined) {
    return frame("out-markdown", DOMPurify.sanitize(marked.parse(joined(data["text/markdown"]), { async: false }) as string));
  }
  return h("pre", { class: "out-text" }, joined(data["text/plain"] ?? ""));
}

/// Puts `next` where `old` is; a frame that stays a frame only gets its new
/// document (a progress bar redraws in place, keeping its height).
function replaceNode(old: HTMLElement, next: HTMLElement): HTMLElement {
  if (old instanceof HTMLIFrameElement && next instanceof HTMLIFrameElement && old.className === next.className) {
    old.srcdoc = next.srcdoc;
    return old;
  }
  old.replaceWith(next);
  return next;
}

export function renderOutput(o: Output): HTMLElement {
  switch (o.output_type) {
    case "stream":
      return h("pre", { class: `out-stream ${o.name}` }, applyCarriageReturns(o.text));
    case "error": {
      const pre = h("pre", { class: "out-error" });
      const text = o.traceback.length ? o.traceback.join("\n") : `${o.ename}: ${o.evalue}`;
      pre.innerHTML = ansi.ansi_to_html(text);
      return pre;
    }
    default:
      return renderData(o.data);
  }
}

/// The outputs of one cell while it runs: appends, merges consecutive
/// stream text, replaces displays by id, honours clear_output.
export class OutputArea {
  readonly el = h("div", { class: "outputs" });
  outputs: Output[] = [];
  private nodes: HTMLElement[] = [];
  private clearPending = false;

  constructor(initial: Output[] = []) {
    for (const o of initial) this.add(o);
  }

  clear(): void {
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
    if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name) {
      last.text += o.text;
      const node = renderOutput(last);
      this.nodes[this.nodes.length - 1].replaceWith(node);
      this.nodes[this.nodes.length - 1] = node;
      return;
    }
    const node = renderOutput(o);
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
        this.nodes[i] = replaceNode(this.nodes[i], renderOutput(o));
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
