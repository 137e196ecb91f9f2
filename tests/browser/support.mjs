// What the browser tests share: Debian's Chromium launched headless, a
// line-based TCP client like nc, and how long they wait for anything
// (reached only when a check fails).

import { chromium } from "playwright-core";
import net from "node:net";

export const PATIENCE = 20_000;

export class LineClient {
  constructor(socket) {
    this.socket = socket;
    this.buffer = "";
    this.lines = [];
    this.waiters = [];
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      this.buffer += chunk;
      let newline;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        this.lines.push(this.buffer.slice(0, newline));
        this.buffer = this.buffer.slice(newline + 1);
      }
      this.wake();
    });
  }

  static connect(host, port) {
    return new Promise((resolve, reject) => {
      const socket = net.connect(Number(port), host, () => resolve(new LineClient(socket)));
      socket.on("error", reject);
    });
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  send(line) {
    this.socket.write(line + "\n");
  }

  /// Reads lines until one contains `needle`; returns it.
  async expect(needle) {
    const deadline = Date.now() + PATIENCE;
    for (;;) {
      while (this.lines.length) {
        const line = this.lines.shift();
        if (line.includes(needle)) return line;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`TCP client: ${JSON.stringify(needle)} never arrived`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}


/// Chromium, headless and quiet (no background traffic), with `extraArgs`.
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
}
