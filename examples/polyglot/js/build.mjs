// Build agent.js into a component (componentize-js). Usage: node build.mjs OUT.wasm
// The WIT package is copied next to this file by ../build.sh (componentize-js
// only sees files under the working directory).
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFileSync } from 'node:fs';

const out = process.argv[2] ?? 'js-slugger.wasm';
const { component } = await componentize({
  sourcePath: 'agent.js',
  witPath: 'wit',
  worldName: 'agent',
  // No fetch: agents get no network, and the host links no wasi:http.
  disableFeatures: ['http', 'fetch-event'],
});
writeFileSync(out, component);
console.log(`${out}: ${component.length} bytes`);
