/**
 * What the benchmark reads besides its own clocks and the services' metrics: their peak memory and
 * CPU from `/proc`, and the machine it ran on.
 * @module
 */
import { managementApi } from "../ops/management_api.ts";
import { amqpPort, brokerAddress } from "../lib/broker_address.ts";

/**
 * The peak resident memory (`VmHWM`) of process `pid` in MB (10^6 bytes, the unit of the target),
 * or undefined when it is gone or the system has no `/proc`. The kernel keeps the high-water mark,
 * so one read before the process stops is enough.
 */
export function peakRssMb(pid: number): Promise<number | undefined> {
  return statusMb(pid, "VmHWM");
}

/**
 * The private resident memory (`RssAnon`: heap, stacks, V8's spaces) of process `pid` now, in MB,
 * or undefined when it is gone. Unlike `VmHWM` it leaves out the executable's code pages, which
 * every Deno process maps from the same file and the kernel keeps once.
 */
export function privateRssMb(pid: number): Promise<number | undefined> {
  return statusMb(pid, "RssAnon");
}

/**
 * The resident memory (`VmRSS`) of process `pid` now, in MB, or undefined when it is gone: what a
 * soak follows over time, where the high-water mark would hide a fall.
 */
export function rssMb(pid: number): Promise<number | undefined> {
  return statusMb(pid, "VmRSS");
}

/** A memory field of `/proc/<pid>/status` in MB, or undefined when the process or field is gone. */
async function statusMb(
  pid: number,
  field: "VmHWM" | "VmRSS" | "RssAnon",
): Promise<number | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    // The kernel's "kB" are KiB.
    const kib = Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(status)?.[1]);
    return Number.isFinite(kib) ? Math.round(kib * 1024 / 1e5) / 10 : undefined;
  } catch {
    return undefined;
  }
}

/** Where the figures were measured. */
export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGib: number;
  os: string;
  deno: string;
  rabbitmq: string;
}

/** Describes this machine and the broker the stack runs on. */
export async function describeMachine(): Promise<Machine> {
  let cpuModel = "unknown";
  try {
    const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? cpuModel;
  } catch {
    // Not Linux: the model stays unknown.
  }
  let rabbitmq = "unknown";
  try {
    const overview = await managementApi()("GET", "/api/overview") as {
      rabbitmq_version?: string;
      product_version?: string;
    };
    rabbitmq = overview.rabbitmq_version ?? overview.product_version ?? rabbitmq;
  } catch {
    // The management API is needed for the stack anyway; its failure shows there.
  }
  return {
    cpus: navigator.hardwareConcurrency,
    cpuModel,
    memoryGib: Math.round(Deno.systemMemoryInfo().total / 2 ** 30 * 10) / 10,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    rabbitmq,
  };
}

/** The one-minute load average before the run: other work on the machine skews every figure. */
export function loadAverage(): number {
  return Deno.loadavg()[0];
}

/** CPU seconds used so far by each process of `pids`, by name; missing processes are left out. */
export async function cpuSeconds(pids: Record<string, number>): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    const fields = await statFields(pid);
    // utime and stime, fields 14 and 15 of the line, in clock ticks (100 per second).
    if (fields) result[name] = (Number(fields[11]) + Number(fields[12])) / 100;
  }
  return result;
}

/**
 * CPU seconds used so far by a server of many processes, such as PostgreSQL's (a process per
 * connection): the root's own, its live children's, and its ended children's, which the kernel adds
 * to the root's `cutime` and `cstime` once it reaps them. A difference of two reads is what the
 * server used between them, whatever came and went. Undefined when the root is gone.
 */
export async function serverCpuSeconds(root: number): Promise<number | undefined> {
  for (let attempt = 1;; attempt++) {
    const first = await statFields(root);
    if (!first) return undefined;
    // utime, stime, cutime and cstime: fields 14 to 17 of the line.
    let ticks = first.slice(11, 15).reduce((sum, field) => sum + Number(field), 0);
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const child = await statFields(Number(entry.name));
      // ppid, field 4 of the line.
      if (child && Number(child[1]) === root) ticks += Number(child[11]) + Number(child[12]);
    }
    // A child reaped during the scan may have been missed: its time moved into cutime meanwhile.
    const last = await statFields(root);
    if (!last) return undefined;
    if ((last[13] === first[13] && last[14] === first[14]) || attempt === 5) return ticks / 100;
  }
}

/** The fields of `/proc/<pid>/stat` after the command, from the state on; undefined when gone. */
async function statFields(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command may hold spaces and parentheses: the fields start after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined; // gone, or no /proc
  }
}

/**
 * The process id of the broker at `AMQP_URL` when it runs on this machine: the RabbitMQ Erlang VM
 * (`beam.smp`) that listens on its AMQP port. Where there is one VM, that one; where several run
 * (private nodes of other tests) and none listens on the port, undefined rather than the wrong one.
 */
export async function brokerPid(): Promise<number | undefined> {
  const vms = await processesNamed("beam.smp");
  if (vms.length <= 1) return vms[0];
  return await listenerAmong(vms, amqpPort(brokerAddress().amqpUrl));
}

/**
 * The process id of the PostgreSQL server at `databaseUrl` when it runs on this machine: the
 * `postgres` process that listens on its port (its connections' processes do not).
 */
export async function postgresPid(databaseUrl: string): Promise<number | undefined> {
  const url = new URL(databaseUrl);
  if (!["127.0.0.1", "localhost", "[::1]"].includes(url.hostname)) return undefined;
  return await listenerAmong(await processesNamed("postgres"), Number(url.port || 5432));
}

/** The processes whose command (`/proc/<pid>/comm`) is `name`. */
async function processesNamed(name: string): Promise<number[]> {
  const pids: number[] = [];
  try {
    for await (const entry of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const comm = await Deno.readTextFile(`/proc/${entry.name}/comm`).catch(() => "");
      if (comm.trim() === name) pids.push(Number(entry.name));
    }
  } catch {
    // No /proc.
  }
  return pids;
}

/** Which of `pids` listens on TCP `port`, if one does and its descriptors can be read. */
async function listenerAmong(pids: number[], port: number): Promise<number | undefined> {
  const sockets = await listeningSockets(port);
  for (const pid of pids) {
    try {
      for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
        const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
        if (sockets.has(target)) return pid;
      }
    } catch {
      // Gone, or not allowed to read another user's descriptors.
    }
  }
  return undefined;
}

/** The sockets (as `socket:[inode]`, how `/proc/<pid>/fd` names them) listening on TCP `port`. */
async function listeningSockets(port: number): Promise<Set<string>> {
  const sockets = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await Deno.readTextFile(table).catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      // sl, local address:port (hex), remote, state (0A: listening), …, inode (the tenth field).
      const fields = line.trim().split(/\s+/);
      const localPort = parseInt(fields[1]?.split(":").at(-1) ?? "", 16);
      if (localPort === port && fields[3] === "0A") sockets.add(`socket:[${fields[9]}]`);
    }
  }
  return sockets;
}
