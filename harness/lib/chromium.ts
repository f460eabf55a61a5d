/**
 * A headless Chromium for the console's browser test and screenshot: Debian's `chromium` package
 * started with a fresh profile and driven over the DevTools protocol ({@linkcode BrowserPage}).
 * `playwright-core` also runs under Deno 2 with `executablePath`, but it is a large npm package
 * for the five calls one page's test needs; these take two small modules.
 * @module
 */
import { type BrowserPage, connect, openPage } from "./browser_page.ts";

export type { BrowserPage };

/** Where Debian's, Ubuntu's and Google's packages put the browser. */
const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

/**
 * The browser to run: `CHROMIUM_PATH` if it names a file, else the first installed of the usual
 * places (so `CHROMIUM_PATH=/nonexistent` stands for a machine without one).
 */
export function findChromium(): string | undefined {
  const chosen = Deno.env.get("CHROMIUM_PATH");
  return (chosen ? [chosen] : CANDIDATES).find(isFile);
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** One line saying how to get a browser, for the preflight and for a skipped test. */
export const CHROMIUM_HINT =
  "chromium is not installed: install it (apt-get install chromium) or set CHROMIUM_PATH";

/** Options for {@linkcode launchChromium}. */
export interface ChromiumOptions {
  /** The browser's executable. @default {findChromium()} */
  executable?: string;
  /** The window's size in CSS pixels. @default {1280} */
  width?: number;
  /** @default {900} */
  height?: number;
}

/** A running browser with one tab. */
export interface Chromium {
  page: BrowserPage;
  /** Closes the browser, waits for it to exit and deletes its profile. */
  close(): Promise<void>;
}

/** How long the browser may take to start, in milliseconds. */
const TIMEOUT_MS = 20_000;

/**
 * Starts a headless browser with a fresh profile and opens one blank tab.
 * @throws {Error} when no browser is installed or it did not start in time
 */
export async function launchChromium(options: ChromiumOptions = {}): Promise<Chromium> {
  const { executable = findChromium(), width = 1280, height = 900 } = options;
  if (!executable) throw new Error(`Cannot launch a browser as ${CHROMIUM_HINT}`);
  const profile = await Deno.makeTempDir({ prefix: "console-chromium-" });
  const child = new Deno.Command(executable, {
    args: [
      "--headless=new",
      "--no-sandbox",
      `--user-data-dir=${profile}`,
      "--disable-background-networking",
      "--no-first-run",
      "--no-default-browser-check",
      "--hide-scrollbars",
      "--mute-audio",
      "--remote-debugging-port=0",
      `--window-size=${width},${height}`,
      "about:blank",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const exited = child.status;
  async function close(): Promise<void> {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
  try {
    const endpoint = await devToolsEndpoint(child.stderr);
    const connection = await connect(endpoint);
    const page = await openPage(connection, { width, height });
    return {
      page,
      async close() {
        // Asked to close, the browser takes its helper processes down with it; SIGTERM follows.
        await connection.send("Browser.close").catch(() => {});
        connection.close();
        await close();
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Reads the browser's stderr up to the line that gives the DevTools address, then keeps draining
 * it: a full pipe would stall the browser.
 */
async function devToolsEndpoint(stderr: ReadableStream<Uint8Array>): Promise<string> {
  const lines = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = setTimeout(() => lines.cancel(), TIMEOUT_MS);
  try {
    while (true) {
      const { value, done } = await lines.read();
      if (done) break;
      seen += value;
      const found = seen.match(/DevTools listening on (ws:\/\/\S+)/);
      if (found) {
        (async () => {
          while (!(await lines.read()).done) { /* drained */ }
        })().catch(() => {});
        return found[1];
      }
    }
  } finally {
    clearTimeout(deadline);
  }
  throw new Error(`Cannot drive the browser as it gave no DevTools address: ${seen.slice(-500)}`);
}
