// Cell outputs: nbformat 4 output objects, rendered as they stream in.
// Everything from a kernel is untrusted: HTML and SVG go through DOMPurify,
// tracebacks through ansi_up (which escapes), text is text.

import DOMPurify from "dompurify";
import { AnsiUp } from "ansi_up";
import { marked } from "marked";
import { h } from "./dom";
import type { Msg } from "./kernel";

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

function renderData(data: Record<string, any>): HTMLElement {
  if (data["text/html"] !== undefined) {
    const div = h("div", { class: "out-html" });
    div.innerHTML = DOMPurify.sanitize(joined(data["text/html"]));
    return div;
  }
  if (data["image/svg+xml"] !== undefined) {
    const div = h("div", { class: "out-svg" });
    div.innerHTML = DOMPurify.sanitize(joined(data["image/svg+xml"]), {
      USE_PROFILES: { svg: true, svgFilters: true },
    });
    return div;
  }
  if (data["image/png"] !== undefined) {
    const src = "data:image/png;base64," + joined(data["image/png"]).replace(/\s/g, "");
    return h("img", { class: "out-img", src, alt: "image output" });
  }
  if (data["text/markdown"] !== undefined) {
    const div = h("div", { class: "out-markdown" });
    div.innerHTML = DOMPurify.sanitize(marked.parse(joined(data["text/markdown"]), { async: false }) as string);
    return div;
  }
  return h("pre", { class: "out-text" }, joined(data["text/plain"] ?? ""));
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
        const node = renderOutput(o);
        this.nodes[i].replaceWith(node);
        this.nodes[i] = node;
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
