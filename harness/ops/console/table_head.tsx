// deno-lint-ignore-file jsx-key -- rendered to a string on the server: no list is ever reconciled
/**
 * The header row of a panel's table, written once for every table on the page.
 * @module
 */

/** A `<thead>` with one `<th>` per column name; an empty name heads a column of buttons. */
export function TableHead({ columns }: { columns: readonly string[] }) {
  return (
    <thead>
      <tr>
        {columns.map((column) => <th>{column}</th>)}
      </tr>
    </thead>
  );
}
