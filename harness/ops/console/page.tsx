// deno-lint-ignore-file jsx-key -- rendered to a string on the server: no list is ever reconciled
/**
 * The console's one page: the panels laid out in cards, and the order form, which stays put while
 * the panels around it are replaced.
 * @module
 */
import type { Snapshot } from "./live.ts";
import { PANELS } from "./panels.tsx";

function Slot({ id, snapshot }: { id: string; snapshot: Snapshot }) {
  const panel = PANELS.find((panel) => panel.id === id);
  if (!panel) throw new Error(`Cannot lay out panel "${id}" as no panel has that id`);
  return <div id={id}>{panel.render(snapshot)}</div>;
}

function PlaceOrderForm({ skus }: { skus: string[] }) {
  return (
    <form method="post" action="/orders" class="place">
      <label>
        student <input name="user_id" value="u1" required maxlength={128} size={6} />
      </label>
      <label>
        item <input name="sku" value={skus[0] ?? "burger"} required list="skus" size={10} />
      </label>
      <datalist id="skus">{skus.map((sku) => <option value={sku} />)}</datalist>
      <label>
        qty <input name="qty" type="number" value="1" min={1} max={100} required />
      </label>
      <button type="submit">Place order</button>
    </form>
  );
}

/**
 * The whole page as of `snapshot`; the script then keeps it live. With `signedIn`, the console
 * checks tokens and this browser signed in: a button signs it out.
 */
export function Page({ snapshot, signedIn }: { snapshot: Snapshot; signedIn?: boolean }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Campus food · console</title>
        <link rel="stylesheet" href="/assets/console.css" />
        <script type="module" src="/assets/console.js" />
      </head>
      <body>
        <header>
          <h1>Campus food</h1>
          <Slot id="status" snapshot={snapshot} />
          {signedIn && (
            <form method="post" action="/session/end" class="inline sign-out">
              <button type="submit">Sign out</button>
            </form>
          )}
          <span id="live" class="dot">offline</span>
        </header>
        <p id="answer" role="status" aria-live="polite" />
        <main>
          <section>
            <h2>Services</h2>
            <Slot id="services" snapshot={snapshot} />
          </section>
          <section>
            <h2>Orders per second</h2>
            <Slot id="rates" snapshot={snapshot} />
          </section>
          <section>
            <h2>Stock</h2>
            <Slot id="stock" snapshot={snapshot} />
          </section>
          <section class="wide">
            <h2>Queues</h2>
            <Slot id="queues" snapshot={snapshot} />
          </section>
          <section class="wide">
            <h2>Latest orders</h2>
            <PlaceOrderForm skus={Object.keys(snapshot.stock ?? {}).sort()} />
            <Slot id="orders" snapshot={snapshot} />
          </section>
          <section class="double">
            <h2>Dead letters</h2>
            <Slot id="dead-letters" snapshot={snapshot} />
          </section>
          <section>
            <h2>Webhook deliveries</h2>
            <Slot id="deliveries" snapshot={snapshot} />
          </section>
          <section>
            <h2>Done here</h2>
            <Slot id="activity" snapshot={snapshot} />
          </section>
        </main>
      </body>
    </html>
  );
}

/**
 * The page a browser gets until it signs in with an admin token, under authentication: a plain
 * form, no script, nothing read from the system. `error` says why the last token was refused.
 */
export function SignIn({ error }: { error?: string }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Campus food · console · sign in</title>
        <link rel="stylesheet" href="/assets/console.css" />
      </head>
      <body>
        <header>
          <h1>Campus food</h1>
        </header>
        <main>
          <section>
            <h2>Sign in</h2>
            {error && <p id="answer" class="bad">{error}</p>}
            <form method="post" action="/session" class="login">
              <label>
                admin token{" "}
                <input id="token" name="token" type="password" autocomplete="off" required />
              </label>
              <button type="submit">Sign in</button>
            </form>
            <p class="hint">
              A bearer token with the admin role. This browser keeps it in a cookie that no script
              can read, until the token expires or you sign out.
            </p>
          </section>
        </main>
      </body>
    </html>
  );
}
