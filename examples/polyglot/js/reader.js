// A JavaScript agent that uses grants: reads a granted file and calls an
// allowed HTTP endpoint, then writes what it got to `js_reader.file` and
// `js_reader.reply`.
//
// Its workflow (../io.yaml) grants it `/docs` (read only) and HTTP to the URL
// in its config. componentize-js has no file API, so the agent calls
// `wasi:filesystem` itself (the world `agent-io` in ../wit/polyglot.wit
// imports it); `fetch` runs over `wasi:http/outgoing-handler` (built with
// componentize-js's `http` feature: see build.mjs).
import { put } from 'ensemble:agent/context@0.1.1';
import { report } from 'ensemble:agent/progress@0.1.1';
import { log } from 'ensemble:agent/log@0.1.1';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

const DOC = '/docs/notes.md';

const failed = (val) => ({ tag: 'failed', val });
const invalid = (val) => ({ tag: 'invalid-input', val });

// The payload of an error thrown by an import (a WIT `result` error).
const reason = (e) => String(e?.payload?.tag ?? e?.payload ?? e?.message ?? e);

// MessagePack: a string at `at`, and the offset after it.
function readStr(bytes, at) {
  const head = bytes[at];
  let start, size;
  if (head >= 0xa0 && head <= 0xbf) [start, size] = [at + 1, head & 0x1f];
  else if (head === 0xd9) [start, size] = [at + 2, bytes[at + 1]];
  else if (head === 0xda) [start, size] = [at + 3, (bytes[at + 1] << 8) | bytes[at + 2]];
  else throw invalid(`config: expected a string at byte ${at}`);
  return [new TextDecoder().decode(bytes.slice(start, start + size)), start + size];
}

// The agent's config: a MessagePack map of strings to strings.
function readConfig(bytes) {
  if (!(bytes.length > 0 && bytes[0] >= 0x80 && bytes[0] <= 0x8f)) {
    throw invalid('config: expected a small map such as { url: ... }');
  }
  const config = {};
  let at = 1;
  for (let i = 0; i < (bytes[0] & 0x0f); i++) {
    let key, value;
    [key, at] = readStr(bytes, at);
    [value, at] = readStr(bytes, at);
    config[key] = value;
  }
  return config;
}

// `text` as a MessagePack string.
function writeStr(text) {
  const body = new TextEncoder().encode(text);
  const n = body.length;
  const head =
    n < 32 ? [0xa0 | n]
    : n < 256 ? [0xd9, n]
    : n < 65536 ? [0xda, n >> 8, n & 0xff]
    : [0xdb, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(head.length + n);
  out.set(head);
  out.set(body, head.length);
  return out;
}

// Read a whole file through the preopened directory that contains it.
function readFile(path) {
  const dirs = getDirectories();
  const match = dirs.find(([, guest]) => path === guest || path.startsWith(`${guest.replace(/\/$/, '')}/`));
  if (!match) {
    throw failed(`reading ${path}: no granted directory contains it (granted: ${dirs.map(([, g]) => g).join(', ') || 'none'})`);
  }
  const [dir, guest] = match;
  const relative = path.slice(guest.replace(/\/$/, '').length + 1);
  let file;
  try {
    file = dir.openAt({}, relative, {}, { read: true });
  } catch (e) {
    throw failed(`reading ${path}: ${reason(e)}`);
  }
  const chunks = [];
  let offset = 0n;
  for (;;) {
    let data, end;
    try {
      [data, end] = file.read(65536n, offset);
    } catch (e) {
      throw failed(`reading ${path}: ${reason(e)}`);
    }
    chunks.push(data);
    offset += BigInt(data.length);
    if (end || data.length === 0) break;
  }
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return new TextDecoder().decode(all);
}

export async function run(invocation) {
  const { url } = readConfig(invocation.config);
  if (!url) throw invalid('config: `url` is missing');

  report(0, `reading ${DOC}`);
  const text = readFile(DOC);
  put(`${invocation.agent}.file`, writeStr(text));

  report(0.5, `GET ${url}`);
  let response, body;
  try {
    response = await fetch(url, { headers: { accept: 'text/plain' } });
    body = await response.text();
  } catch (e) {
    throw failed(`GET ${url} failed: ${reason(e)}`);
  }
  if (!response.ok) throw failed(`GET ${url}: status ${response.status}`);
  put(`${invocation.agent}.reply`, writeStr(body));
  log('info', `read ${text.length} characters, received ${body.length} characters`);
  report(1, 'done');
}

export function validate(invocation, subject) {
  return { passed: true, findings: [] };
}
