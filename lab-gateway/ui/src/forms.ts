// What the UI's forms share: dates as a `datetime-local` input shows them
// (the reader's clock) and a labelled field.

import { h } from "./dom";

/// An ISO time as a `datetime-local` input shows it (the reader's clock).
export function toLocalInput(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/// A `datetime-local` value (the reader's clock) as an ISO time; empty is none.
export function fromLocalInput(v: string): string | null {
  if (!v) return null;
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`${v} is not a date`);
  return d.toISOString();
}

/// A label, its input and an optional hint.
export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), input, hint ? h("small", { class: "muted" }, hint) : null);
}
