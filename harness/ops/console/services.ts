/**
 * Where the console finds the three services, and, under `deno task dev`, how it stops and starts
 * them.
 * @module
 */
import type { ServiceName } from "../../../shared/topology.ts";
import type { Stack } from "../../lib/stack.ts";

/** Stops and starts a service: what `deno task dev` (or a test's stack) lends the console. */
export interface ServiceControl {
  /** True from a start until a stop, also while the service is not listening yet. */
  running(name: ServiceName): boolean;
  /** Stops `name` (SIGTERM) and resolves once it exited. */
  stop(name: ServiceName): Promise<void>;
  /** Starts `name` again and resolves once it listens. */
  start(name: ServiceName): Promise<void>;
}

/** The services as the console sees them. */
export interface Services {
  /** The base URL of `name` while it listens, such as `http://127.0.0.1:8001`. */
  url(name: ServiceName): string | undefined;
  /** Absent outside `deno task dev`: the page then offers no stop and start. */
  control?: ServiceControl;
}

/** Services at fixed ports on this machine: what plain `deno task console` watches. */
export function servicesAt(ports: Record<ServiceName, number>): Services {
  return { url: (name) => `http://127.0.0.1:${ports[name]}` };
}

/**
 * The services of a test's or a tool's stack, with its stop and start: what the browser test and
 * the screenshot give the console in place of `deno task dev`.
 */
export function servicesOf(stack: Stack): Services {
  const starting = new Set<ServiceName>();
  return {
    url: (name) => stack.services[name]?.url,
    control: {
      running: (name) => starting.has(name) || stack.services[name] !== undefined,
      async stop(name) {
        await stack.stop(name);
      },
      async start(name) {
        starting.add(name);
        try {
          await stack.start(name);
        } finally {
          starting.delete(name);
        }
      },
    },
  };
}
