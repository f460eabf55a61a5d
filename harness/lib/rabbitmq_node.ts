/**
 * One private RabbitMQ node on loopback, run with the installed package's own scripts: its files
 * under a folder of its own, started detached, awaited, killed, stopped and started again on the
 * same data. {@linkcode startCluster} in `rabbitmq_cluster.ts` makes three of them into a cluster.
 *
 * A node is started with a cleared environment, so that nothing of the machine's own broker
 * (`/etc/rabbitmq/rabbitmq-env.conf`, its `rabbitmq.conf`, `RABBITMQ_*` variables of the caller)
 * leaks into it: `RABBITMQ_CONF_ENV_FILE` points at an empty file of its own. Nodes share the
 * machine's epmd on 4369 (`ERL_EPMD_PORT` stays unset): epmd only maps names to ports, and every
 * run's node names are unique.
 * @module
 */
import { join } from "node:path";
import { sleep } from "./async.ts";

/** Thrown where the RabbitMQ server package is not installed: callers say so and skip. */
export class RabbitMqNotInstalledError extends Error {
  override name = "RabbitMqNotInstalledError";
}

/**
 * The `sbin` folder of the installed RabbitMQ package, found with `dpkg -L rabbitmq-server`, or
 * undefined. Its `rabbitmq-server` runs as the caller; the one on PATH switches to the `rabbitmq`
 * user, which cannot read the caller's temporary folders.
 */
export function findRabbitMqSbin(): string | undefined {
  try {
    const { success, stdout } = new Deno.Command("dpkg", {
      args: ["-L", "rabbitmq-server"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (!success) return undefined;
    const script = new TextDecoder().decode(stdout).split("\n")
      .find((line) => line.endsWith("/sbin/rabbitmq-server") && !line.startsWith("/usr/sbin/"));
    return script ? script.slice(0, -"/rabbitmq-server".length) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `sbin` folder of the installed RabbitMQ package.
 * @throws {RabbitMqNotInstalledError} where it is not installed
 */
export function requireRabbitMqSbin(): string {
  const sbin = findRabbitMqSbin();
  if (!sbin) {
    throw new RabbitMqNotInstalledError(
      "Cannot start a private RabbitMQ cluster as RabbitMQ is not installed here: " +
        "dpkg -L rabbitmq-server lists no sbin/rabbitmq-server",
    );
  }
  return sbin;
}

/** Where a node is, as far as this process knows. */
export type NodeState = "running" | "stopping" | "stopped" | "killed";

/** One node of a private cluster. */
export interface RabbitMqNode {
  /** The Erlang node name, e.g. `cf-1a2b3c-1@localhost`. */
  readonly name: string;
  readonly amqpPort: number;
  readonly managementPort: number;
  /** The Erlang distribution port, for the other nodes and the CLI. */
  readonly distPort: number;
  /** The `amqps` port, when the node has a TLS listener. */
  readonly tlsPort?: number;
  /** `http://guest:guest@127.0.0.1:<managementPort>`. */
  readonly managementUrl: string;
  /** The beam process's id while it runs. */
  readonly pid: number | undefined;
  readonly state: NodeState;
  /** Its folder: configuration, data, log and pid file. */
  readonly dir: string;
  /** The system user the node runs as, when not the caller; see {@linkcode NodeExtras.user}. */
  readonly user?: NodeUser;
}

/** A system user of a node's own: its packets are told from any other process's by their owner. */
export interface NodeUser {
  name: string;
  uid: number;
  gid: number;
}

/** RabbitMQ's `cluster_partition_handling`: what a node does when it loses sight of others. */
export type PartitionHandling = "ignore" | "pause_minority" | "autoheal";

/** What a node needs that it shares with the other nodes of its cluster. */
export interface NodeSetup {
  /** The package's `sbin` folder; see {@linkcode findRabbitMqSbin}. */
  sbin: string;
  /** The cluster's folder, holding `home/.erlang.cookie` and the empty env file. */
  clusterDir: string;
}

/** Controls one node; see {@linkcode createNode}. */
export interface NodeControl {
  readonly node: RabbitMqNode;
  /** Starts the node detached and resolves once `await_startup` says it booted. */
  start(options: { timeoutMs: number }): Promise<void>;
  /** SIGKILLs the beam process and waits until it is gone. */
  kill(): Promise<void>;
  /** Stops the node with `rabbitmqctl stop` and waits until its process is gone. */
  stop(options: { timeoutMs: number }): Promise<void>;
  /** Runs `rabbitmqctl -n <node> ...args`; rejects with its output when it fails. */
  ctl(args: string[], options?: { timeoutMs?: number }): Promise<string>;
  /** SIGKILLs the beam process now, without waiting: for `unload`. */
  killNow(): void;
}

/** A TLS listener for a node: `amqps://localhost:<port>`. */
export interface TlsListener {
  port: number;
  /** PEM files: the CA that signed the client certificates it accepts, its own certificate and key. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Refuse a client without a certificate signed by the CA. @default {false} */
  requireClientCertificate?: boolean;
}

/** What a node has besides its own ports; see {@linkcode createNode}. */
export interface NodeExtras {
  /** An `amqps` listener besides the plain one. @default {none} */
  tls?: TlsListener;
  /** A definitions file to import at boot, as `load_definitions`. @default {none} */
  definitionsFile?: string;
  /** `cluster_partition_handling`. @default {RabbitMQ's own, `ignore`} */
  partitionHandling?: PartitionHandling;
  /**
   * The Erlang `net_ticktime` in seconds: how soon a silent peer node is taken for gone.
   * @default {RabbitMQ's own}
   */
  netTicktimeS?: number;
  /**
   * Runs the node as this system user rather than as the caller: its folder is handed to it, and it
   * gets the cluster's cookie on its command line, as it cannot read the caller's cookie file.
   * @default {the caller}
   */
  user?: NodeUser;
}

/** Writes a node's configuration into `<clusterDir>/<label>` and returns its controls. */
export async function createNode(
  setup: NodeSetup,
  node: { name: string; label: string; amqpPort: number; managementPort: number; distPort: number },
  extras: NodeExtras = {},
): Promise<NodeControl> {
  const { tls, definitionsFile, partitionHandling, netTicktimeS, user } = extras;
  const dir = join(setup.clusterDir, node.label);
  await Deno.mkdir(dir);
  // Statistics every second rather than every five: the harness reads connections and queue
  // leaders from the management API, and a stale answer after a kill misleads it.
  await Deno.writeTextFile(
    join(dir, "rabbitmq.conf"),
    [
      `management.tcp.ip = 127.0.0.1`,
      `management.tcp.port = ${node.managementPort}`,
      `collect_statistics_interval = 1000`,
      ...tls
        ? [
          `listeners.ssl.1 = 127.0.0.1:${tls.port}`,
          `ssl_options.cacertfile = ${tls.caFile}`,
          `ssl_options.certfile = ${tls.certFile}`,
          `ssl_options.keyfile = ${tls.keyFile}`,
          `ssl_options.verify = verify_peer`,
          `ssl_options.fail_if_no_peer_cert = ${tls.requireClientCertificate ?? false}`,
        ]
        : [],
      ...definitionsFile ? [`load_definitions = ${definitionsFile}`] : [],
      ...partitionHandling ? [`cluster_partition_handling = ${partitionHandling}`] : [],
      ...netTicktimeS ? [`net_ticktime = ${netTicktimeS}`] : [],
      "",
    ].join("\n"),
  );
  await Deno.writeTextFile(join(dir, "enabled_plugins"), "[rabbitmq_management].\n");
  if (user) await handOver(dir, user);
  const cookieArgs = user ? ` -setcookie ${await readCookie(setup)}` : "";
  const pidFile = join(dir, "pid");
  const logFile = join(dir, "log", `${node.name}.log`);
  const env = {
    ...cliEnv(setup),
    RABBITMQ_NODENAME: node.name,
    // The AMQP listener comes from these two alone: a `listeners.tcp.*` line in rabbitmq.conf as
    // well makes the node bind the port twice and die with eaddrinuse.
    RABBITMQ_NODE_IP_ADDRESS: "127.0.0.1",
    RABBITMQ_NODE_PORT: String(node.amqpPort),
    RABBITMQ_DIST_PORT: String(node.distPort),
    RABBITMQ_MNESIA_BASE: join(dir, "mnesia"),
    RABBITMQ_LOG_BASE: join(dir, "log"),
    RABBITMQ_PID_FILE: pidFile,
    RABBITMQ_CONFIG_FILE: join(dir, "rabbitmq.conf"),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, "advanced.config"),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, "enabled_plugins"),
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: "-kernel inet_dist_use_interface {127,0,0,1}" +
      cookieArgs,
  };
  // setpriv changes only the user: the cleared environment above is kept as it is.
  const launcher = user
    ? {
      command: "setpriv",
      args: [
        `--reuid=${user.uid}`,
        `--regid=${user.gid}`,
        "--clear-groups",
        "--",
        join(setup.sbin, "rabbitmq-server"),
        "-detached",
      ],
    }
    : { command: join(setup.sbin, "rabbitmq-server"), args: ["-detached"] };
  let pid: number | undefined;
  let state: NodeState = "stopped";
  const view: RabbitMqNode = {
    ...node,
    tlsPort: tls?.port,
    user,
    managementUrl: `http://guest:guest@127.0.0.1:${node.managementPort}`,
    dir,
    get pid() {
      return pid;
    },
    get state() {
      return state;
    },
  };

  async function ctl(args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
    return await runCli(setup, ["-n", node.name, ...args], options);
  }

  /** Why the node is not coming up: the crash dump's slogan, or the end of its log. */
  async function whyDown(): Promise<string> {
    const dump = await Deno.readTextFile(join(dir, "log", "erl_crash.dump")).catch(() => "");
    const slogan = dump.split("\n").find((line) => line.startsWith("Slogan:"));
    if (slogan) return slogan.slice(0, 500);
    const log = await Deno.readTextFile(logFile).catch(() => "(no log)");
    return log.split("\n").filter((line) => line.includes("[error]")).slice(-5).join("\n") ||
      log.slice(-500);
  }

  return {
    node: view,
    ctl,
    async start({ timeoutMs }) {
      const deadline = Date.now() + timeoutMs;
      await Deno.remove(pidFile).catch(() => {});
      await Deno.remove(join(dir, "log", "erl_crash.dump")).catch(() => {});
      // The detached beam must not inherit a pipe of ours, or reading it would wait for its end.
      const launched = await new Deno.Command(launcher.command, {
        args: launcher.args,
        env,
        clearEnv: true,
        stdin: "null",
        stdout: "null",
        stderr: "null",
        signal: AbortSignal.timeout(30_000),
      }).output();
      if (!launched.success) {
        throw new Error(`Cannot start node ${node.name} as rabbitmq-server -detached failed`);
      }
      // The pid file appears when the node registers its name, about when the CLI can reach it.
      while (pid === undefined) {
        pid = await readPid(pidFile);
        if (pid !== undefined) break;
        if (Date.now() > deadline) {
          throw new Error(
            `Cannot start node ${node.name} as it wrote no pid file within ${timeoutMs} ms: ` +
              await whyDown(),
          );
        }
        await sleep(100);
      }
      state = "running";
      // await_startup fails at once while the node is not reachable yet, and waits once it is.
      while (true) {
        const remainingS = Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        try {
          await ctl(["await_startup", "--timeout", String(remainingS)], {
            timeoutMs: remainingS * 1000 + 5_000,
          });
          return;
        } catch (error) {
          if (!isAlive(pid)) {
            pid = undefined;
            state = "stopped";
            throw new Error(`Cannot start node ${node.name} as it died: ${await whyDown()}`);
          }
          if (Date.now() > deadline) {
            throw new Error(`Cannot start node ${node.name} within ${timeoutMs} ms`, {
              cause: error,
            });
          }
        }
        await sleep(500);
      }
    },
    async kill() {
      // A stale pid file's number may belong to another process by now: only a node of ours dies.
      const candidate = pid ?? await readPid(pidFile);
      const target = candidate !== undefined && isClusterProcess(setup, candidate)
        ? candidate
        : undefined;
      if (target !== undefined) signalKill(target);
      state = "killed";
      if (target !== undefined) await waitGone(target, 10_000);
      pid = undefined;
    },
    async stop({ timeoutMs }) {
      state = "stopping";
      const target = pid;
      try {
        await ctl(["stop"], { timeoutMs });
        if (target !== undefined) await waitGone(target, timeoutMs);
      } catch (error) {
        // A node that does not stop when asked is killed, so that nothing is left behind.
        if (target !== undefined) signalKill(target);
        throw error;
      } finally {
        pid = undefined;
        state = "stopped";
      }
    },
    killNow() {
      if (pid !== undefined) signalKill(pid);
    },
  };
}

/** Runs `rabbitmqctl` with the cluster's cookie. */
export async function runCli(
  setup: NodeSetup,
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<string> {
  const { timeoutMs = 60_000 } = options;
  const { code, stdout, stderr } = await new Deno.Command(join(setup.sbin, "rabbitmqctl"), {
    args,
    env: cliEnv(setup),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const text = new TextDecoder().decode(stdout);
  if (code !== 0) {
    const error = new TextDecoder().decode(stderr).trim() || text.trim();
    throw new Error(`Cannot run rabbitmqctl ${args.join(" ")}: ${error.slice(0, 300)}`);
  }
  return text;
}

/** Gives `dir` and everything in it to `user`, so that a node running as it can write there. */
async function handOver(dir: string, user: NodeUser): Promise<void> {
  const { success, stderr } = await new Deno.Command("chown", {
    args: ["-R", `${user.uid}:${user.gid}`, dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(
      `Cannot hand ${dir} over to ${user.name}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}

/** The cluster's Erlang cookie, for a node that cannot read the caller's cookie file. */
async function readCookie(setup: NodeSetup): Promise<string> {
  return (await Deno.readTextFile(join(setup.clusterDir, "home", ".erlang.cookie"))).trim();
}

/** The environment the CLI and the nodes share: the cookie in HOME, no machine-wide env file. */
function cliEnv(setup: NodeSetup): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: join(setup.clusterDir, "home"),
    LANG: "C.UTF-8",
    LC_ALL: "C.UTF-8",
    RABBITMQ_CONF_ENV_FILE: join(setup.clusterDir, "rabbitmq-env.conf"),
    ERL_EPMD_ADDRESS: "127.0.0.1",
  };
}

async function readPid(pidFile: string): Promise<number | undefined> {
  const text = await Deno.readTextFile(pidFile).catch(() => "");
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** True when `pid` is a beam process whose Erlang `-home` is this cluster's (unique to the run). */
export function isClusterProcess(setup: Pick<NodeSetup, "clusterDir">, pid: number): boolean {
  try {
    const args = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    return args[args.indexOf("-home") + 1] === join(setup.clusterDir, "home") && isAlive(pid);
  } catch {
    return false;
  }
}

/** True while `pid` runs: a zombie (killed, not yet reaped by whoever adopted it) counts as gone. */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function signalKill(pid: number): void {
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for process ${pid} to end`);
    }
    await sleep(50);
  }
}
