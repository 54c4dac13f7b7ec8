// A JavaScript agent: turns `greeter.message` into a slug, writes `js_slugger.slug`.
//
// Built with componentize-js from the repository's `wit/` package (see
// ../README.md). Imports are the WIT interfaces; exports are `run` and
// `validate`. Throwing `{ tag, val }` returns an `agent-error`.
import { get, put } from 'ensemble:agent/context@0.1.1';
import { report } from 'ensemble:agent/progress@0.1.1';

function readStr(bytes) {
  // MessagePack fixstr or str8
  if (bytes[0] >= 0xa0 && bytes[0] <= 0xbf) return new TextDecoder().decode(bytes.slice(1));
  if (bytes[0] === 0xd9) return new TextDecoder().decode(bytes.slice(2));
  throw { tag: 'invalid-input', val: 'greeter.message is not a string' };
}

function writeStr(text) {
  const body = new TextEncoder().encode(text);
  const head = body.length < 32 ? [0xa0 | body.length] : [0xd9, body.length];
  return new Uint8Array([...head, ...body]);
}

export function run(invocation) {
  report(0, 'slugging');
  const raw = get('greeter.message');
  if (raw === undefined || raw === null) throw { tag: 'invalid-input', val: 'greeter.message is missing' };
  const slug = readStr(raw).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  put('js_slugger.slug', writeStr(slug));
  report(1, 'done');
}

export function validate(invocation, subject) {
  return { passed: true, findings: [] };
}
