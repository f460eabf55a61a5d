/**
 * A small tmpfs mounted for one test, where a full disk can be made and freed: how tests put
 * SQLite on a disk that fills up. Mounting needs root (or CAP_SYS_ADMIN); where it is not allowed,
 * {@linkcode tmpfsUnavailable} says why and the tests that need it are skipped.
 * @module
 */
import { join } from "node:path";
import { type Migration, openStore, type Store } from "../store.ts";

/** A mounted tmpfs; always `unmount()` it. */
export interface Tmpfs {
  path: string;
  /** Writes a file until the file system has no space left. */
  fill(): Promise<void>;
  /** Removes what `fill()` wrote. */
  free(): Promise<void>;
  /** Unmounts it and removes its mount point. */
  unmount(): Promise<void>;
}

async function run(command: string, args: string[]): Promise<void> {
  const { code, stderr } = await new Deno.Command(command, {
    args,
    stdout: "null",
    stderr: "piped",
  })
    .output();
  if (code !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} exited ${code}: ${new TextDecoder().decode(stderr).trim()}`,
    );
  }
}

/** Mounts a tmpfs of `sizeMb` megabytes on a new temporary directory. */
export async function mountTmpfs(sizeMb: number): Promise<Tmpfs> {
  const path = await Deno.makeTempDir({ prefix: "campus-food-tmpfs-" });
  try {
    await run("mount", ["-t", "tmpfs", "-o", `size=${sizeMb}m`, "tmpfs", path]);
  } catch (error) {
    await Deno.remove(path);
    throw error;
  }
  const filler = join(path, "filler");
  return {
    path,
    async fill() {
      const file = await Deno.open(filler, { write: true, create: true, append: true });
      const chunk = new Uint8Array(64 * 1024);
      try {
        while (true) await file.write(chunk);
      } catch (error) {
        if (!/No space left on device/.test((error as Error).message)) throw error;
      } finally {
        file.close();
      }
    },
    async free() {
      await Deno.remove(filler).catch(() => {});
    },
    async unmount() {
      // A process that still has a file open there keeps it busy: then detach it lazily.
      await run("umount", [path]).catch(() => run("umount", ["-l", path]));
      await Deno.remove(path, { recursive: true });
    },
  };
}

/**
 * Runs `fn` with the SQLite store of the service `name` on a tmpfs of 4 MB, and the tmpfs to fill;
 * closes the store and unmounts the tmpfs after.
 */
export async function withStoreOnTmpfs(
  name: string,
  migrations: Migration[],
  fn: (store: Store, disk: Tmpfs) => Promise<void>,
): Promise<void> {
  const disk = await mountTmpfs(4);
  try {
    const store = await openStore(disk.path, name, { migrations });
    try {
      await fn(store, disk);
    } finally {
      await store.close();
    }
  } finally {
    await disk.unmount();
  }
}

async function mountFails(): Promise<string | undefined> {
  try {
    await (await mountTmpfs(1)).unmount();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

let mountable: Promise<string | undefined> | undefined;

/**
 * Why tests that need a tmpfs are skipped, said once in a line on the first call, or undefined
 * where one can be mounted (as root on Linux).
 */
export function tmpfsUnavailable(): Promise<string | undefined> {
  return mountable ??= (async () => {
    const failure = Deno.build.os === "linux" ? await mountFails() : "not Linux";
    if (!failure) return undefined;
    const why = `cannot mount a tmpfs (${failure})`;
    console.log(`full-disk tests: ${why}; they are skipped (run them as root on Linux)`);
    return why;
  })();
}
