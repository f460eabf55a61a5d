/**
 * TLS to the broker, end to end: a private RabbitMQ node with an `amqps` listener that wants a
 * client certificate, certificates from a CA this test makes with `openssl`, and the broker users
 * of `rabbitmq/definitions.json`, the file compose.yaml's broker loads. One node serves every step,
 * because a node is slow to start.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { waitFor } from "../lib/async.ts";
import { findRabbitMqSbin, startCluster } from "../lib/rabbitmq_cluster.ts";
import { serviceArgs, type ServiceName, SERVICES, startService } from "../lib/service_process.ts";

const ROOT = new URL("../..", import.meta.url).pathname;

function hasOpenssl(): boolean {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

const SKIP = !findRabbitMqSbin()
  ? "RabbitMQ is not installed here"
  : !hasOpenssl()
  ? "openssl is not installed here"
  : undefined;

/** The PEM files the test makes in `dir`. */
interface Certificates {
  ca: string;
  otherCa: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
}

/**
 * Makes two CAs, a server certificate for `localhost` and a client certificate, both signed by
 * the first CA, as P-256 keys (quick to make).
 */
async function makeCertificates(dir: string): Promise<Certificates> {
  /** Runs openssl in `dir` with `command`'s words as its arguments. */
  async function openssl(command: string): Promise<void> {
    const { success, stderr } = await new Deno.Command("openssl", {
      args: command.split(/\s+/),
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) throw new Error(`openssl ${command} failed: ${new TextDecoder().decode(stderr)}`);
  }
  const newKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  for (const ca of ["ca", "other-ca"]) {
    await openssl(
      `req -x509 ${newKey} -days 1 -subj /CN=test-${ca} -keyout ${ca}.key -out ${ca}.pem`,
    );
  }
  const leaf = async (name: string, extensions: string) => {
    await Deno.writeTextFile(join(dir, `${name}.ext`), extensions);
    await openssl(`req ${newKey} -subj /CN=${name} -keyout ${name}.key -out ${name}.csr`);
    await openssl(
      `x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 ` +
        `-extfile ${name}.ext -out ${name}.pem`,
    );
    return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) };
  };
  return {
    ca: join(dir, "ca.pem"),
    otherCa: join(dir, "other-ca.pem"),
    server: await leaf("server", "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n"),
    client: await leaf("client", "extendedKeyUsage=clientAuth\n"),
  };
}

/** Runs `name` until it exits on its own (within 30 s): its exit code and its JSON log lines. */
async function runUntilExit(
  name: ServiceName,
  env: Record<string, string>,
): Promise<{ code: number; lines: Array<Record<string, unknown>> }> {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: serviceArgs(name),
    env: { LOG_FORMAT: "json", ...env },
    stdout: "piped",
    stderr: "null",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const text = new TextDecoder().decode(stdout).trim();
  return { code, lines: text ? text.split("\n").map((line) => JSON.parse(line)) : [] };
}

/** Runs `name` with `env` and expects one error line matching `why`, and exit code 1. */
async function assertStopsAtStart(
  name: ServiceName,
  env: (dataDir: string) => Record<string, string>,
  why: RegExp,
): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
  try {
    const { code, lines } = await runUntilExit(name, env(dataDir));
    assert.equal(code, 1);
    const errors = lines.filter((line) => line.level === "error");
    assert.equal(errors.length, 1, JSON.stringify(lines));
    assert.match(String(errors[0].msg), why);
    assert.ok(!lines.some((line) => line.msg === "connected to broker"));
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
}

Deno.test({
  name: "services talk to the broker over amqps, and stop at start on a certificate it refuses",
  ignore: SKIP !== undefined,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "campus-food-tls-" });
    const certificates = await makeCertificates(dir);
    const cluster = await startCluster({
      size: 1,
      extras: {
        tls: {
          port: 0,
          caFile: certificates.ca,
          certFile: certificates.server.cert,
          keyFile: certificates.server.key,
          requireClientCertificate: true,
        },
        definitionsFile: join(ROOT, "rabbitmq", "definitions.json"),
      },
    });
    const { tlsPort } = cluster.nodes[0];
    /** The environment of `name` as its definitions-file user, over TLS. */
    const envOf = (name: ServiceName, dataDir: string) => ({
      AMQP_URL: `amqps://campus-food-${name}:campus-food-${name}@localhost:${tlsPort}/`,
      AMQP_CA_FILE: certificates.ca,
      AMQP_CERT_FILE: certificates.client.cert,
      AMQP_KEY_FILE: certificates.client.key,
      DATA_DIR: dataDir,
      [`${name.toUpperCase()}_PORT`]: "0",
    });
    try {
      await t.step(
        "the services place, confirm and notify an order as their own users over TLS",
        async () => {
          const dataDir = await Deno.makeTempDir({ prefix: "campus-food-" });
          const services = await Promise.all(
            SERVICES.map((name) => startService(name, { env: envOf(name, dataDir) })),
          );
          try {
            const [order, , notification] = services;
            await waitFor("every service to be ready", async () => {
              const ready = await Promise.all(services.map((s) => fetch(`${s.url}/ready`)));
              await Promise.all(ready.map((r) => r.body?.cancel()));
              return ready.every((r) => r.ok);
            }, { timeoutMs: 30_000 });
            const placed = await fetch(`${order.url}/order`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ user_id: "u1", items: [{ sku: "coffee", qty: 1 }] }),
            });
            assert.equal(placed.status, 202);
            const { order_id } = await placed.json();
            await waitFor("the confirmation to be sent", async () => {
              const sent = await (await fetch(
                `${notification.url}/notifications?order_id=${order_id}`,
              )).json();
              return sent.length === 1 && sent[0].kind === "order_confirmed";
            });
            for (const service of services) {
              const line = service.logs.find((record) => record.msg === "connected to broker");
              assert.match(String(line?.url), /^amqps:\/\/campus-food-\w+:\*\*\*@localhost:/);
              assert.equal(line?.topology, "checked");
            }
          } finally {
            await Promise.all(services.map((service) => service.stop()));
            await Deno.remove(dataDir, { recursive: true });
          }
        },
      );

      await t.step(
        "a service that does not trust the broker's CA says so in one line and exits 1",
        () =>
          assertStopsAtStart(
            "order",
            (dataDir) => ({ ...envOf("order", dataDir), AMQP_CA_FILE: certificates.otherCa }),
            /^Cannot connect to the broker at localhost:\d+ as its TLS certificate is not trusted \(see AMQP_CA_FILE\)/,
          ),
      );

      await t.step(
        "a service without the client certificate the broker wants exits 1 likewise",
        () =>
          assertStopsAtStart(
            "inventory",
            (dataDir) => {
              const { AMQP_CERT_FILE: _, AMQP_KEY_FILE: __, ...env } = envOf("inventory", dataDir);
              return env;
            },
            /as it refused our TLS client certificate \(see AMQP_CERT_FILE and AMQP_KEY_FILE\)/,
          ),
      );
    } finally {
      await cluster.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
