/**
 * A private PostgreSQL server on loopback, made with the installed server's own `initdb` and
 * `pg_ctl` in a temporary folder and removed when stopped. It runs with PostgreSQL's defaults, so
 * autovacuum is on whatever the machine's own server is set to: the soak measures storage on it.
 * Run as root, it runs as the `postgres` user, since PostgreSQL refuses to run as root.
 * @module
 */
import { join } from "node:path";
import { freePorts } from "./free_ports.ts";
import { cleanUpOnInterrupt } from "./interrupt.ts";

/** Thrown where no PostgreSQL server is installed: callers say so. */
export class PostgresNotInstalledError extends Error {
  override name = "PostgresNotInstalledError";
}

/** A running private server. */
export interface PostgresServer {
  /** The `postgres` superuser's URL of the `postgres` database, trust authentication. */
  url: string;
  /** The server's folder: data, socket and log. */
  dir: string;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
}

/**
 * The folder of the installed server's programs: `pg_config --bindir` where it has `initdb`, else
 * the newest of Debian's `/usr/lib/postgresql/<version>/bin`, or undefined.
 */
export function findPostgresBin(): string | undefined {
  const hasInitdb = (dir: string) => {
    try {
      return Deno.statSync(join(dir, "initdb")).isFile;
    } catch {
      return false;
    }
  };
  try {
    const { success, stdout } = new Deno.Command("pg_config", {
      args: ["--bindir"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const dir = new TextDecoder().decode(stdout).trim();
    if (success && hasInitdb(dir)) return dir;
  } catch {
    // No pg_config: look where Debian puts the server.
  }
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((entry) => entry.name)
      .filter((name) => hasInitdb(`/usr/lib/postgresql/${name}/bin`))
      .sort((a, b) => Number(b) - Number(a));
    return versions.length > 0 ? `/usr/lib/postgresql/${versions[0]}/bin` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Makes a database cluster in a temporary folder and starts a server on it, on a free port of
 * 127.0.0.1. Ctrl-C stops it too.
 * @throws {PostgresNotInstalledError} where no server is installed
 */
export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = findPostgresBin();
  if (!bin) {
    throw new PostgresNotInstalledError(
      "Cannot start a private PostgreSQL server as none is installed here: " +
        "neither pg_config --bindir nor /usr/lib/postgresql/*/bin has initdb",
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "campus-food-pg-" });
  const asRoot = Deno.uid() === 0;
  if (asRoot) {
    const { uid, gid } = postgresUser();
    await Deno.chown(dir, uid, gid);
  }
  const data = join(dir, "data");
  const [port] = freePorts(1);
  const run = async (program: string, args: string[]) => {
    const command = asRoot
      ? new Deno.Command("runuser", { args: ["-u", "postgres", "--", join(bin, program), ...args] })
      : new Deno.Command(join(bin, program), { args });
    const { success, stderr } = await command.output();
    if (!success) {
      throw new Error(
        `Cannot run ${program} for a private PostgreSQL server: ${
          new TextDecoder().decode(stderr).trim()
        }`,
      );
    }
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    forget();
    await run("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const forget = cleanUpOnInterrupt(stop);
  try {
    await run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    const settings =
      `-c port=${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir}`;
    await run("pg_ctl", ["-D", data, "-l", join(dir, "server.log"), "-o", settings, "-w", "start"]);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, dir, stop };
}

/** The `postgres` user's ids, for the folder the server runs in. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => {
    const { success, stdout } = new Deno.Command("id", {
      args: [flag, "postgres"],
      stdout: "piped",
    })
      .outputSync();
    if (!success) {
      throw new PostgresNotInstalledError(
        "Cannot start a private PostgreSQL server as root as there is no postgres user to run it",
      );
    }
    return Number(new TextDecoder().decode(stdout).trim());
  };
  return { uid: id("-u"), gid: id("-g") };
}
