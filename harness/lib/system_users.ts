/**
 * System users the harness runs its own processes as, so that the kernel can tell their packets
 * apart (`iptables -m owner --uid-owner`): made with `useradd --system` when missing, never
 * changed or removed once there.
 * @module
 */
import type { NodeUser } from "./rabbitmq_node.ts";

/**
 * The system user `name`, made (without a home or a login shell) when it does not exist yet.
 * @throws {Error} when it does not exist and cannot be made (not root, no `useradd`)
 */
export async function ensureSystemUser(name: string): Promise<NodeUser> {
  const existing = await lookUpUser(name);
  if (existing) return existing;
  const { success, stderr } = await new Deno.Command("useradd", {
    args: ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
    stdout: "null",
    stderr: "piped",
  }).output();
  // Two runs making the same user at once: the loser finds it made.
  const made = await lookUpUser(name);
  if (made) return made;
  throw new Error(
    `Cannot make system user ${name} with useradd --system: ${
      success ? "it is still missing" : new TextDecoder().decode(stderr).trim()
    }`,
  );
}

/** `name`'s uid and primary gid from `id`, or undefined when there is no such user. */
async function lookUpUser(name: string): Promise<NodeUser | undefined> {
  const id = async (flag: string): Promise<number | undefined> => {
    const { success, stdout } = await new Deno.Command("id", {
      args: [flag, name],
      stdout: "piped",
      stderr: "null",
    }).output();
    return success ? Number(new TextDecoder().decode(stdout).trim()) : undefined;
  };
  const uid = await id("-u");
  const gid = await id("-g");
  return uid === undefined || gid === undefined ? undefined : { name, uid, gid };
}
