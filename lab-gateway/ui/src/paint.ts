// DOM work batched per animation frame. A kernel can send thousands of
// messages a second; each one updates the notebook's model at once, but
// what the page shows is brought up to date once per frame, so a burst
// costs one layout per frame instead of one per message. Work runs in the
// order it was asked for: a cell shown as done after its last output was
// scheduled shows done after that output is on the page.

const pending: (() => void)[] = [];
let scheduled = false;

/// Runs `work` before the next paint, in order with other such work.
export function beforePaint(work: () => void): void {
  pending.push(work);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(flush);
}

function flush(): void {
  scheduled = false;
  // Work scheduled by this work waits for the next frame.
  for (const work of pending.splice(0)) {
    try {
      work();
    } catch (e) {
      console.error(e);
    }
  }
}
