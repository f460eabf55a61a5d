/**
 * An earlier version of the services, for tests that upgrade a running system: its tree taken from
 * git (`git archive <revision> | tar -x`) into a temporary directory, and its services run from
 * there as child processes with the same flags as today's (see `service_process.ts`), each with the
 * earlier tree's own `deno.json` and lock file.
 * @module
 */
import { type RunningService, type ServiceName, startService } from "./service_process.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

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

/**
 * Starts the earlier tree's service `name` with `env` (on top of this process's), from the tree's
 * directory, and resolves once it logged the port it listens on.
 * @throws {Error} with its stderr when it exits or stays silent instead
 */
export function startEarlierService(
  tree: EarlierTree,
  name: ServiceName,
  env: Record<string, string>,
): Promise<RunningService> {
  return startService(name, { env, root: tree.dir });
}
