// storage-tool.js: wait for, back up and restore MoonTV's Redis/Kvrocks database.
//
//   node storage-tool.js wait               # block until the server answers PING (init container)
//   node storage-tool.js backup [dir]       # write <dir>/moontv-<UTC timestamp>.json, keep N newest
//   node storage-tool.js restore <file>     # load a backup into the server
//
// STORAGE_URL (redis://:password@host:port) names the server; BACKUP_RETENTION the files kept.
// It speaks plain RESP so it runs in the MoonTV image itself (Node 20, no extra packages).
'use strict';
const net = require('net');
const fs = require('fs');
const path = require('path');

function parse(buf, i) {
  const nl = buf.indexOf('\r\n', i);
  if (nl < 0) return null;
  const kind = String.fromCharCode(buf[i]);
  const line = buf.toString('utf8', i + 1, nl);
  if (kind === '+') return [line, nl + 2];
  if (kind === '-') return [new Error(line), nl + 2];
  if (kind === ':') return [Number(line), nl + 2];
  if (kind === '$') {
    const n = Number(line);
    if (n < 0) return [null, nl + 2];
    if (buf.length < nl + 4 + n) return null;
    return [buf.toString('utf8', nl + 2, nl + 2 + n), nl + 4 + n];
  }
  if (kind === '*') {
    const n = Number(line);
    const items = [];
    let j = nl + 2;
    for (let k = 0; k < n; k++) {
      const item = parse(buf, j);
      if (!item) return null;
      items.push(item[0]);
      j = item[1];
    }
    return [n < 0 ? null : items, j];
  }
  throw new Error(`unexpected reply type ${kind}`);
}

function connect(url) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(url.port || 6379), url.hostname);
    const waiting = [];
    let buf = Buffer.alloc(0);
    const fail = (err) => { while (waiting.length) waiting.shift().reject(err); reject(err); };
    sock.setTimeout(10000, () => sock.destroy(new Error('timed out')));
    sock.on('error', fail);
    sock.on('data', (data) => {
      buf = Buffer.concat([buf, data]);
      for (let r = parse(buf, 0); r && waiting.length; r = parse(buf, 0)) {
        buf = buf.subarray(r[1]);
        const w = waiting.shift();
        if (r[0] instanceof Error) w.reject(r[0]); else w.resolve(r[0]);
      }
    });
    const call = (...args) => new Promise((res, rej) => {
      waiting.push({ resolve: res, reject: rej });
      sock.write(`*${args.length}\r\n` + args.map((a) => {
        const s = String(a);
        return `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
      }).join(''));
    });
    sock.on('connect', async () => {
      try {
        const password = decodeURIComponent(url.password || '');
        if (password) await call('AUTH', password);
        resolve({ call, close: () => sock.end() });
      } catch (err) { fail(err); }
    });
  });
}

const READ = {
  string: (c, k) => c.call('GET', k),
  hash: (c, k) => c.call('HGETALL', k),
  list: (c, k) => c.call('LRANGE', k, 0, -1),
  set: (c, k) => c.call('SMEMBERS', k),
  zset: (c, k) => c.call('ZRANGE', k, 0, -1, 'WITHSCORES'),
};
const WRITE = {
  string: (c, k, v) => c.call('SET', k, v),
  hash: (c, k, v) => c.call('HSET', k, ...v),
  list: (c, k, v) => c.call('RPUSH', k, ...v),
  set: (c, k, v) => c.call('SADD', k, ...v),
  zset: (c, k, v) => c.call('ZADD', k, ...v.flatMap((x, i) => (i % 2 ? [] : [v[i + 1], x]))),
};

async function wait(url) {
  for (let attempt = 1; ; attempt++) {
    try {
      const c = await connect(url);
      const pong = await c.call('PING');
      c.close();
      if (pong === 'PONG') { console.log(`storage ${url.hostname}:${url.port} is ready`); return; }
    } catch (err) {
      console.log(`waiting for storage ${url.hostname}:${url.port} (attempt ${attempt}): ${err.message}`);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function backup(url, dir, keep) {
  const c = await connect(url);
  const entries = [];
  let cursor = '0';
  do {
    const [next, keys] = await c.call('SCAN', cursor, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await c.call('TYPE', key);
      if (!READ[type]) continue;
      const ttl = await c.call('PTTL', key);
      entries.push({ key, type, ttl: ttl > 0 ? ttl : null, value: await READ[type](c, key) });
    }
  } while (cursor !== '0');
  c.close();
  fs.mkdirSync(dir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const file = path.join(dir, `moontv-${stamp}.json`);
  fs.writeFileSync(`${file}.tmp`, JSON.stringify({ format: 1, keys: entries }));
  fs.renameSync(`${file}.tmp`, file);
  console.log(`wrote ${file} (${entries.length} keys)`);
  const old = fs.readdirSync(dir).filter((f) => /^moontv-.*\.json$/.test(f)).sort().reverse().slice(keep);
  for (const f of old) { fs.unlinkSync(path.join(dir, f)); console.log(`pruned ${f}`); }
}

async function restore(url, file) {
  const { keys } = JSON.parse(fs.readFileSync(file, 'utf8'));
  const c = await connect(url);
  for (const e of keys) {
    await c.call('DEL', e.key);
    if (e.value !== null && e.value.length !== 0) await WRITE[e.type](c, e.key, e.value);
    if (e.ttl) await c.call('PEXPIRE', e.key, e.ttl);
  }
  c.close();
  console.log(`restored ${keys.length} keys from ${file}`);
}

async function main() {
  const [mode, arg] = process.argv.slice(2);
  if (!process.env.STORAGE_URL || !['wait', 'backup', 'restore'].includes(mode)) {
    console.error('usage: STORAGE_URL=redis://:pw@host:port node storage-tool.js wait|backup [dir]|restore <file>');
    process.exit(2);
  }
  const url = new URL(process.env.STORAGE_URL);
  if (mode === 'wait') await wait(url);
  if (mode === 'backup') await backup(url, arg || '/backup', Number(process.env.BACKUP_RETENTION || 7));
  if (mode === 'restore') await restore(url, arg);
}

main().catch((err) => { console.error(`storage-tool: ${err.message}`); process.exit(1); });
