/**
 * A private RabbitMQ cluster on loopback, for tests and scenarios: three nodes with their own
 * names, ports and data under one temporary folder, started in parallel and joined to the first,
 * which can be killed, started again and restarted one at a time. It never touches the machine's
 * own broker. `close()` kills every node and deletes the folder, also on Ctrl-C.
 * @module
 */
import { join } from "node:path";
import { waitFor } from "./async.ts";
import { cleanUpOnInterrupt } from "./interrupt.ts";
import { freePorts } from "./free_ports.ts";
import { ensureSystemUser } from "./system_users.ts";
import { type ManagementApi, managementApi } from "../ops/management_api.ts";
import {
  createNode,
  findRabbitMqSbin,
  isClusterProcess,
  type NodeControl,
  type NodeExtras,
  type NodeSetup,
  type PartitionHandling,
  type RabbitMqNode,
  RabbitMqNotInstalledError,
  requireRabbitMqSbin,
} from "./rabbitmq_node.ts";

export {
  findRabbitMqSbin,
  type PartitionHandling,
  type RabbitMqNode,
  RabbitMqNotInstalledError,
  requireRabbitMqSbin,
};

/** Options for {@linkcode startCluster}. */
export interface ClusterOptions {
  /** Nodes in the cluster. @default {3} */
  size?: number;
  /**
   * How long starting the nodes and joining them may take, in milliseconds: generous, as a node is
   * slow to start and to join on a small machine. @default {180000}
   */
  startTimeoutMs?: number;
  /** Receives one line per step of the start. @default {nothing} */
  log?: (line: string) => void;
  /**
   * What every node has besides its plain listener: a TLS listener (its `port` is ignored: each
   * node gets a free one), definitions to load at boot. @default {nothing}
   */
  extras?: NodeExtras;
  /**
   * Runs node `i` as system user `campus-food-node-<i>` (made with `useradd --system` when
   * missing; needs root) rather than as the caller, so that firewall rules can match exactly what
   * each node sends. @default {false}
   */
  nodesAsOwnUsers?: boolean;
}

/** The system user node `index` (from 1) runs as with {@linkcode ClusterOptions.nodesAsOwnUsers}. */
export function nodeUserName(index: number): string {
  return `campus-food-node-${index}`;
}

/** Which nodes hold a quorum queue, as the management API shows it. */
export interface QueueMembers {
  leader?: string;
  members: string[];
  online: string[];
}

/** Options for the node operations of a {@linkcode Cluster}. */
export interface NodeOptions {
  /** How long starting or stopping a node may take, in milliseconds. @default {120000} */
  timeoutMs?: number;
}

/** A running private cluster; see {@linkcode startCluster}. */
export interface Cluster {
  readonly nodes: readonly RabbitMqNode[];
  /** The node named `name`. */
  node(name: string): RabbitMqNode;
  /** Every node's AMQP URL with `vhost`, comma-separated: what the services get as `AMQP_URL`. */
  amqpUrls(vhost: string): string;
  /** The management URL of a running node (the first one), for the stack's vhost and probes. */
  managementUrl(): string;
  /** The management API of `node`, or of a running node. */
  api(node?: RabbitMqNode): ManagementApi;
  /** SIGKILLs `node`'s beam process (its pid file says which) and waits until it is gone. */
  kill(node: RabbitMqNode): Promise<void>;
  /** Starts a killed or stopped `node` on its data; resolves once the others see it running. */
  start(node: RabbitMqNode, options?: NodeOptions): Promise<void>;
  /** Stops `node` gracefully, then starts it: one step of a rolling restart. */
  restart(node: RabbitMqNode, options?: NodeOptions): Promise<void>;
  /** The node each client connection is on, by connection name, in `vhost` or everywhere. */
  connectionsByNode(vhost?: string): Promise<Record<string, string>>;
  /** The node that leads quorum queue `queue` of `vhost`. */
  leaderOf(queue: string, vhost: string): Promise<string | undefined>;
  /** The nodes that hold quorum queue `queue` of `vhost`, and those of them online. */
  membersOf(queue: string, vhost: string): Promise<QueueMembers>;
  /** Every quorum queue of `vhost` with its members, as the management API lists them. */
  quorumQueues(vhost: string): Promise<Array<QueueMembers & { name: string }>>;
  /** Kills every node and deletes the folder. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts a private cluster of `size` nodes as the caller, with the package's own
 * `sbin/rabbitmq-server -detached`, on free loopback ports, and joins nodes 2.. to node 1.
 * Always `close()` it; a Ctrl-C closes it too.
 * @throws {RabbitMqNotInstalledError} where the rabbitmq-server package is not installed
 * @throws {Error} naming the node that did not start or join in time, and why
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const {
    size = 3,
    startTimeoutMs = 180_000,
    log = () => {},
    extras = {},
    nodesAsOwnUsers = false,
  } = options;
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(
      `Cannot start a cluster as size must be a positive integer: current value is ${size}`,
    );
  }
  const sbin = requireRabbitMqSbin();
  const deadline = Date.now() + startTimeoutMs;
  const clusterDir = await Deno.makeTempDir({ prefix: "campus-food-cluster-" });
  const setup: NodeSetup = { sbin, clusterDir };
  const controls: NodeControl[] = [];
  let closed = false;

  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    forget();
    globalThis.removeEventListener("unload", killNow);
    await Promise.allSettled(controls.map((control) => control.kill()));
    // A node that failed before its pid file was read is found by its HOME, unique to this run.
    for (const pid of processesOf(clusterDir)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Ended meanwhile.
      }
    }
    await waitFor("every node's process to end", () => processesOf(clusterDir).length === 0, {
      timeoutMs: 10_000,
    }).catch(() => {});
    await Deno.remove(clusterDir, { recursive: true }).catch(() => {});
  }
  /** The last resort when the process exits without closing: detached nodes would outlive it. */
  function killNow(): void {
    for (const control of controls) control.killNow();
  }
  const forget = cleanUpOnInterrupt(close);
  globalThis.addEventListener("unload", killNow);

  try {
    await Deno.mkdir(join(clusterDir, "home"));
    const cookie = join(clusterDir, "home", ".erlang.cookie");
    await Deno.writeTextFile(cookie, randomLetters(32));
    await Deno.chmod(cookie, 0o400);
    await Deno.writeTextFile(join(clusterDir, "rabbitmq-env.conf"), "");
    const run = `cf-${randomLetters(6).toLowerCase()}`;
    const ports = freePorts(size * 4);
    // A node running as its own user must reach its folder inside ours, and only that.
    if (nodesAsOwnUsers) await Deno.chmod(clusterDir, 0o711);
    for (let i = 0; i < size; i++) {
      const { tls } = extras;
      const user = nodesAsOwnUsers ? await ensureSystemUser(nodeUserName(i + 1)) : undefined;
      controls.push(
        await createNode(setup, {
          label: `node-${i + 1}`,
          name: `${run}-${i + 1}@localhost`,
          amqpPort: ports[i * 4],
          managementPort: ports[i * 4 + 1],
          distPort: ports[i * 4 + 2],
        }, { ...extras, tls: tls && { ...tls, port: ports[i * 4 + 3] }, user }),
      );
    }
    log(`starting ${size} nodes ${controls.map((c) => c.node.name).join(", ")} in ${clusterDir}`);
    await settleAll(controls.map((control) => control.start({ timeoutMs: deadline - Date.now() })));
    const [seed, ...others] = controls;
    log(`nodes started; joining ${others.map((c) => c.node.name).join(", ")} to ${seed.node.name}`);
    // One at a time: two nodes joining at once both change the cluster's schema.
    for (const control of others) {
      const timeoutMs = deadline - Date.now();
      await control.ctl(["stop_app"], { timeoutMs });
      await control.ctl(["join_cluster", seed.node.name], { timeoutMs });
      await control.ctl(["start_app"], { timeoutMs });
    }
    const cluster = makeCluster(controls, close);
    await waitRunning(cluster, controls.map((c) => c.node.name), deadline - Date.now());
    log(`cluster of ${size} running`);
    return cluster;
  } catch (error) {
    await close();
    throw error;
  }
}

function makeCluster(controls: NodeControl[], close: () => Promise<void>): Cluster {
  const nodes = controls.map((control) => control.node);
  function controlOf(node: RabbitMqNode): NodeControl {
    const control = controls.find((c) => c.node.name === node.name);
    if (!control) throw new Error(`Cannot find node ${node.name} in this cluster`);
    return control;
  }
  function running(): RabbitMqNode {
    const node = nodes.find((n) => n.state === "running");
    if (!node) throw new Error("Cannot reach the cluster as no node is running");
    return node;
  }
  const cluster: Cluster = {
    nodes,
    node(name) {
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new Error(`Cannot find node ${name} in this cluster`);
      return node;
    },
    amqpUrls(vhost) {
      return nodes.map((n) =>
        `amqp://guest:guest@127.0.0.1:${n.amqpPort}/${encodeURIComponent(vhost)}`
      )
        .join(",");
    },
    managementUrl: () => running().managementUrl,
    api: (node) => managementApi((node ?? running()).managementUrl),
    kill: (node) => controlOf(node).kill(),
    async start(node, options = {}) {
      const { timeoutMs = 120_000 } = options;
      const deadline = Date.now() + timeoutMs;
      await controlOf(node).start({ timeoutMs });
      await waitRunning(cluster, [node.name], deadline - Date.now());
    },
    async restart(node, options = {}) {
      const { timeoutMs = 120_000 } = options;
      const deadline = Date.now() + timeoutMs;
      await controlOf(node).stop({ timeoutMs });
      await cluster.start(node, { timeoutMs: deadline - Date.now() });
    },
    async connectionsByNode(vhost) {
      const path = vhost
        ? `/api/vhosts/${encodeURIComponent(vhost)}/connections`
        : "/api/connections";
      const connections = await cluster.api()("GET", path) as Array<
        { node: string; name: string; client_properties?: { connection_name?: string } }
      >;
      return Object.fromEntries(
        connections.map((c) => [c.client_properties?.connection_name ?? c.name, c.node]),
      );
    },
    async leaderOf(queue, vhost) {
      return (await cluster.membersOf(queue, vhost)).leader;
    },
    async membersOf(queue, vhost) {
      const info = await cluster.api()(
        "GET",
        `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`,
      ) as QueueInfo;
      return members(info);
    },
    async quorumQueues(vhost) {
      const queues = await cluster.api()(
        "GET",
        `/api/queues/${encodeURIComponent(vhost)}?columns=name,type,leader,members,online`,
      ) as QueueInfo[];
      return queues.filter((q) => q.type === "quorum").map((q) => ({
        name: q.name,
        ...members(q),
      }));
    },
    close,
  };
  return cluster;
}

interface QueueInfo {
  name: string;
  type?: string;
  leader?: string;
  members?: string[];
  online?: string[];
}

function members(info: QueueInfo): QueueMembers {
  return { leader: info.leader, members: info.members ?? [], online: info.online ?? [] };
}

/** Waits until a running node other than each of `names` (or any, alone) lists it as running. */
async function waitRunning(cluster: Cluster, names: string[], timeoutMs: number): Promise<void> {
  await waitFor(`${names.join(", ")} to be running in the cluster`, async () => {
    for (const name of names) {
      const witness = cluster.nodes.find((n) => n.state === "running" && n.name !== name) ??
        cluster.node(name);
      const listed = await cluster.api(witness)("GET", "/api/nodes") as Array<
        { name: string; running: boolean }
      >;
      if (!listed.some((n) => n.name === name && n.running)) return false;
    }
    return true;
  }, { timeoutMs: Math.max(timeoutMs, 1_000), intervalMs: 250 });
}

/** Settles every promise, then throws the first failure: no start is left running unawaited. */
async function settleAll(promises: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(promises)).find((p) => p.status === "rejected");
  if (failed) throw failed.reason;
}

/** The processes whose Erlang `-home` is this cluster's: its nodes, whatever their state. */
function processesOf(clusterDir: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (Number.isInteger(pid) && isClusterProcess({ clusterDir }, pid)) pids.push(pid);
  }
  return pids;
}

function randomLetters(length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => String.fromCharCode(65 + (b % 26))).join("");
}
