// One notebook's connection to its kernel: the legacy JSON websocket
// protocol (as JupyterLab speaks it through a gateway), replies routed to
// the request that caused them, and reconnection that loses nothing: the
// same session_id, with `resume_after` the last message seen, makes the
// gateway replay what was missed.

export interface Msg {
  header: { msg_id: string; msg_type: string; session: string; date?: string };
  parent_header: { msg_id?: string; msg_type?: string };
  metadata: Record<string, unknown>;
  content: any;
  channel: string;
}

export type Connection = "connecting" | "connected" | "reconnecting" | "closed";

type Listener = (m: Msg) => void;

function uuid(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

export class KernelConnection {
  private ws: WebSocket | null = null;
  private readonly session = uuid();
  private lastSeen: string | null = null;
  private readonly listeners = new Map<string, Listener>();
  private retry = 0;
  private closed = false;
  private queue: string[] = [];
  onStatus: (state: string) => void = () => {};
  /// The gateway's own notices (a coming cull, a reclaimed GPU).
  onNotice: (n: { kind: string; message: string; seconds_left: number }) => void = () => {};
  onConnection: (c: Connection) => void = () => {};

  constructor(public readonly kernelId: string) {
    this.open();
  }

  private url(): string {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let u = `${proto}//${location.host}/api/kernels/${this.kernelId}/channels?session_id=${this.session}`;
    if (this.lastSeen) u += `&resume_after=${this.lastSeen}`;
    return u;
  }

  private open(): void {
    this.onConnection(this.lastSeen ? "reconnecting" : "connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.onConnection("connected");
      for (const m of this.queue.splice(0)) ws.send(m);
      // As JupyterLab does on every connect: the kernel's answer comes with
      // a busy/idle pair on iopub, so the status shown is the kernel's now,
      // even if it changed before this socket opened.
      const info = this.request("shell", "kernel_info_request", {}, (m) => {
        if (m.header.msg_type === "kernel_info_reply") this.done(info);
      });
    };
    ws.onmessage = (e) => {
      let m: Msg;
      try {
        m = JSON.parse(e.data as string);
      } catch {
        return;
      }
      if (m.header?.msg_id) this.lastSeen = m.header.msg_id;
      if (m.header?.msg_type === "status" && m.channel === "iopub") {
        // Status of our own requests and the kernel's (starting, dead).
        this.onStatus(m.content.execution_state);
      }
      const notice = m.header?.msg_type === "display_data" && m.content?.data?.["application/vnd.academy.notice+json"];
      if (notice) {
        this.onNotice(notice);
        return;
      }
      const parent = m.parent_header?.msg_id;
      if (parent) this.listeners.get(parent)?.(m);
    };
    ws.onclose = (e) => {
      this.ws = null;
      if (this.closed) return;
      // 4004: the kernel is gone; 1008: not allowed. Neither comes back.
      if (e.code === 4004 || e.code === 1008) {
        this.closed = true;
        this.onConnection("closed");
        this.onStatus("dead");
        return;
      }
      this.onConnection("reconnecting");
      const delay = Math.min(5000, 250 * 2 ** this.retry++);
      setTimeout(() => void this.reopen(), delay);
    };
  }

  /// Reconnects, unless the kernel is gone (stopped, culled, reclaimed):
  /// a websocket refused at the handshake cannot tell, the kernel model can.
  private async reopen(): Promise<void> {
    if (this.closed) return;
    try {
      const r = await fetch(`/api/kernels/${this.kernelId}`, { credentials: "same-origin" });
      if (r.status === 404) {
        this.closed = true;
        this.onConnection("closed");
        this.onStatus("dead");
        return;
      }
    } catch {
      // the network is down: keep trying
    }
    this.open();
  }

  /// Sends a request; `onMsg` gets every message it causes until `done`.
  request(
    channel: "shell" | "control",
    msgType: string,
    content: unknown,
    onMsg: Listener,
  ): string {
    const id = uuid();
    const msg = {
      header: {
        msg_id: id,
        msg_type: msgType,
        session: this.session,
        username: "",
        date: new Date().toISOString(),
        version: "5.3",
      },
      parent_header: {},
      metadata: {},
      content,
      channel,
      buffers: [],
    };
    this.listeners.set(id, onMsg);
    const text = JSON.stringify(msg);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.queue.push(text);
    return id;
  }

  done(msgId: string): void {
    this.listeners.delete(msgId);
  }

  /// Drops the socket (for tests of reconnection, and for a network blip).
  drop(): void {
    this.ws?.close();
  }

  close(): void {
    this.closed = true;
    this.ws?.close();
  }
}
