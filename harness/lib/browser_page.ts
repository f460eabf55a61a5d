/**
 * One browser tab over the DevTools protocol, through Deno's own WebSocket: open a page, read it,
 * click and type as a person would (real mouse and keyboard events), take a screenshot.
 * @module
 */
import { waitFor } from "./async.ts";

/** How long the browser may take to answer one command or load a page, in milliseconds. */
const TIMEOUT_MS = 20_000;

/** A browser tab. */
export interface BrowserPage {
  /** Opens `url` and resolves once it loaded. */
  goto(url: string): Promise<void>;
  /** Evaluates `expression` in the page and returns its value (awaited, as JSON). */
  evaluate<T>(expression: string): Promise<T>;
  /** Clicks the middle of the first element matching `selector`, scrolled into view. */
  click(selector: string): Promise<void>;
  /** Clicks the field matching `selector`, selects what it holds and types `text` over it. */
  type(selector: string, text: string): Promise<void>;
  /** A PNG of the viewport, or of the whole page. */
  screenshot(options?: { fullPage?: boolean }): Promise<Uint8Array>;
  /** Uncaught exceptions and `console.error` lines of the page so far. */
  readonly errors: readonly string[];
}

/** A DevTools connection: commands by id, events by method. */
export interface Connection {
  send<T = Record<string, unknown>>(
    method: string,
    params?: Record<string, unknown>,
    sessionId?: string,
  ): Promise<T>;
  on(method: string, listener: (params: Record<string, unknown>) => void): void;
  close(): void;
}

/** Connects to the browser's DevTools endpoint. */
export async function connect(endpoint: string): Promise<Connection> {
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`Cannot connect to the browser at ${endpoint}`));
  });
  let lastId = 0;
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  const listeners = new Map<string, Array<(params: Record<string, unknown>) => void>>();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const waiting = pending.get(message.id);
    if (waiting) {
      pending.delete(message.id);
      if (message.error) waiting.reject(new Error(message.error.message));
      else waiting.resolve(message.result);
    } else if (message.method) {
      for (const listener of listeners.get(message.method) ?? []) listener(message.params);
    }
  };
  socket.onclose = () => {
    for (const waiting of pending.values()) waiting.reject(new Error("The browser went away"));
    pending.clear();
  };
  return {
    send(method, params = {}, sessionId) {
      const id = ++lastId;
      socket.send(JSON.stringify({ id, method, params, sessionId }));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`The browser did not answer ${method} within ${TIMEOUT_MS} ms`));
        }, TIMEOUT_MS);
        pending.set(id, {
          resolve: (value) => (clearTimeout(timer), resolve(value as never)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        });
      });
    },
    on(method, listener) {
      listeners.set(method, [...listeners.get(method) ?? [], listener]);
    },
    close: () => socket.close(),
  };
}

/** Opens a blank tab of `size` CSS pixels and returns it. */
export async function openPage(
  connection: Connection,
  size: { width: number; height: number },
): Promise<BrowserPage> {
  const { targetId } = await connection.send<{ targetId: string }>("Target.createTarget", {
    url: "about:blank",
  });
  const { sessionId } = await connection.send<{ sessionId: string }>("Target.attachToTarget", {
    targetId,
    flatten: true,
  });
  const send = <T>(method: string, params?: Record<string, unknown>) =>
    connection.send<T>(method, params, sessionId);
  const errors: string[] = [];
  connection.on("Runtime.exceptionThrown", (params) => {
    const details = params.exceptionDetails as { exception?: { description?: string } };
    errors.push(details.exception?.description ?? JSON.stringify(details));
  });
  connection.on("Runtime.consoleAPICalled", (params) => {
    if (params.type !== "error") return;
    errors.push((params.args as Array<{ value?: unknown }>).map((arg) => arg.value).join(" "));
  });
  await send("Runtime.enable");
  await send("Emulation.setDeviceMetricsOverride", {
    ...size,
    deviceScaleFactor: 1,
    mobile: false,
  });

  async function evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = await send<{
      result: { value?: T };
      exceptionDetails?: { exception?: { description?: string }; text: string };
    }>("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
    if (exceptionDetails) {
      throw new Error(
        `Cannot evaluate ${expression.slice(0, 80)}: ${
          exceptionDetails.exception?.description ?? exceptionDetails.text
        }`,
      );
    }
    return result.value as T;
  }

  async function click(selector: string): Promise<void> {
    const centre = await evaluate<{ x: number; y: number } | null>(`(() => {
      const element = document.querySelector(${JSON.stringify(selector)});
      if (!element) return null;
      element.scrollIntoView({ block: "center" });
      const box = element.getBoundingClientRect();
      return { x: box.x + box.width / 2, y: box.y + box.height / 2 };
    })()`);
    if (!centre) throw new Error(`Cannot click ${selector} as nothing on the page matches it`);
    for (const type of ["mouseMoved", "mousePressed", "mouseReleased"]) {
      await send("Input.dispatchMouseEvent", { type, ...centre, button: "left", clickCount: 1 });
    }
  }

  return {
    errors,
    evaluate,
    click,
    async goto(url) {
      await send("Page.navigate", { url });
      const loaded = `document.readyState === "complete" && location.href === ${
        JSON.stringify(url)
      }`;
      await waitFor(`${url} to load`, () => evaluate<boolean>(loaded), { timeoutMs: TIMEOUT_MS });
    },
    async type(selector, text) {
      await click(selector);
      await evaluate(`document.querySelector(${JSON.stringify(selector)}).select()`);
      await send("Input.insertText", { text });
    },
    async screenshot(options = {}) {
      let clip: Record<string, number> | undefined;
      if (options.fullPage) {
        const { cssContentSize } = await send<
          { cssContentSize: { width: number; height: number } }
        >(
          "Page.getLayoutMetrics",
        );
        clip = {
          x: 0,
          y: 0,
          width: size.width,
          height: Math.ceil(cssContentSize.height),
          scale: 1,
        };
      }
      const { data } = await send<{ data: string }>("Page.captureScreenshot", {
        format: "png",
        captureBeyondViewport: options.fullPage === true,
        clip,
      });
      return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    },
  };
}
