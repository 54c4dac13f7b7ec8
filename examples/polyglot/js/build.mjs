// Build a JavaScript agent into a component (componentize-js).
// Usage: node build.mjs SOURCE.js WIT-DIR WORLD OUT.wasm [http]
// ../build.sh copies the WIT package next to this file (componentize-js only
// sees files under the working directory).
//
// Without `http`, `fetch` is left out (componentize-js's `http` feature): the
// component imports no `wasi:http`, so it loads for an agent with no `http`
// grant. With `http`, `fetch` is built in over `wasi:http/outgoing-handler`.
// `fetch-event` (serving incoming requests) is always left out.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFileSync } from 'node:fs';

const [sourcePath, witPath, worldName, out, ...flags] = process.argv.slice(2);
if (!out) {
  console.error('usage: node build.mjs SOURCE.js WIT-DIR WORLD OUT.wasm [http]');
  process.exit(2);
}
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName,
  disableFeatures: flags.includes('http') ? ['fetch-event'] : ['http', 'fetch-event'],
});
writeFileSync(out, component);
console.log(`${out}: ${component.length} bytes`);
