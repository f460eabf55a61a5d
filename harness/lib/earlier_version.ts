/**
 * An earlier version of the services, for tests that upgrade a running system: its tree taken from
 * git (`git archive <revision> | tar -x`) into a temporary directory, and its services run from
 * there as child processes with the same flags as today's (see `service_process.ts`), each with the
 * earlier tree's own `deno.json` and lock file.
 * @module
 */
import { join } from "node:path";
import {
  readLines,
  type RunningService,
  SERVICE_RUN_FLAGS,
  serviceEnvFile,
  type ServiceName,
} from "./service_process.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

/** How long an earlier service may take to start listening, in milliseconds. */
const START_TIMEOUT_MS = 30_000;

/** An earlier version's tree on disk; `remove()` deletes it. */
export interface EarlierTree {
  /** The revision as asked for, e.g. `3cd65b1^`. */
  revision: string;
  /** The commit it names. */
  commit: string;
  dir: string;
  remove(): Promise<void>;
}

/** Runs `git` in the repository and returns its stdout, or undefined when it fails. */
async function git(args: string[]): Promise<string | undefined> {
  try {
    const { success, stdout } = await new Deno.Command("git", {
      args,
      cwd: ROOT,
      stdout: "piped",
      stderr: "null",
    }).output();
    return success ? new TextDecoder().decode(stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why `revision` cannot be materialised here (git missing, not a repository, or a shallow clone
 * without the commit), or undefined when it can.
 */
export async function earlierVersionUnavailable(revision: string): Promise<string | undefined> {
  if (await git(["--version"]) === undefined) return "git is not installed";
  if (await git(["rev-parse", "--git-dir"]) === undefined) {
    return `${ROOT} is not a git repository`;
  }
  if (await git(["rev-parse", "--verify", "--quiet", `${revision}^{commit}`]) === undefined) {
    const shallow = await git(["rev-parse", "--is-shallow-repository"]) === "true";
    return `revision ${revision} is not in this clone${shallow ? " (a shallow clone)" : ""}`;
  }
  return undefined;
}

/**
 * Writes the tree of `revision` into a new temporary directory (`git archive | tar -x`).
 * @throws {Error} when git or tar fails; check {@linkcode earlierVersionUnavailable} first
 */
export async function materialiseRevision(revision: string): Promise<EarlierTree> {
  const commit = await git(["rev-parse", "--verify", `${revision}^{commit}`]);
  if (!commit) throw new Error(`Cannot materialise ${revision} as git does not know it`);
  const dir = await Deno.makeTempDir({ prefix: "campus-food-earlier-" });
  const remove = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    const archive = new Deno.Command("git", {
      args: ["archive", "--format=tar", commit],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const tar = new Deno.Command("tar", {
      args: ["-x", "-C", dir],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await archive.stdout.pipeTo(tar.stdin);
    const [archived, extracted] = await Promise.all([archive.output(), tar.output()]);
    for (const [what, result] of [["git archive", archived], ["tar -x", extracted]] as const) {
      if (!result.success) {
        throw new Error(
          `Cannot materialise ${revision} as ${what} failed: ${
            new TextDecoder().decode(result.stderr).slice(0, 500)
          }`,
        );
      }
    }
    return { revision, commit, dir, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** The arguments of `deno` that run the earlier tree's service `name`, from its own config. */
export function earlierServiceArgs(tree: EarlierTree, name: ServiceName): string[] {
  return [
    "run",
    ...SERVICE_RUN_FLAGS,
    // Offline: the earlier version's dependencies must come from Deno's cache, as today's do.
    "--cached-only",
    `--config=${join(tree.dir, "deno.json")}`,
    `--env-file=${join(tree.dir, serviceEnvFile(name))}`,
    join(tree.dir, name, "main.ts"),
  ];
}

/**
 * Starts the earlier tree's service `name` with `env` (on top of this process's), from the tree's
 * directory, and resolves once it logged the port it listens on.
 * @throws {Error} with its stderr when it exits or stays silent instead
 */
export async function startEarlierService(
  tree: EarlierTree,
  name: ServiceName,
  env: Record<string, string>,
): Promise<RunningService> {
  const child = new Deno.Command(Deno.execPath(), {
    args: earlierServiceArgs(tree, name),
    cwd: tree.dir,
    env: { LOG_FORMAT: "json", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const logs: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  let listening: (port: number) => void;
  const port = new Promise<number>((resolve) => listening = resolve);
  const done = Promise.all([
    readLines(child.stdout, (line) => {
      try {
        const record = JSON.parse(line);
        logs.push(record);
        if (record.msg === "listening") listening(record.port);
      } catch {
        logs.push({ msg: line });
      }
    }),
    readLines(child.stderr, (line) => stderr.push(line)),
  ]);
  const exited = child.status.then(async (status) => {
    await done;
    return status.code;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tooSlow = new Promise<"slow">((resolve) =>
    timer = setTimeout(() => resolve("slow"), START_TIMEOUT_MS)
  );
  const started = await Promise.race([port, exited.then((code) => ({ code })), tooSlow]);
  clearTimeout(timer);
  if (typeof started !== "number") {
    if (started === "slow") child.kill("SIGKILL");
    await exited;
    throw new Error(
      `Cannot start ${name} of ${tree.revision} as it ${
        started === "slow" ? `did not listen within ${START_TIMEOUT_MS} ms` : "exited"
      }: ${stderr.join("\n").slice(-2000)}`,
    );
  }
  return {
    name,
    pid: child.pid,
    port: started,
    url: `http://127.0.0.1:${started}`,
    logs,
    stderr,
    exited,
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
      return await exited;
    },
  };
}
