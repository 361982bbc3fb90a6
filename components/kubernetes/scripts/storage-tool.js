// storage-tool.js: wait for, back up, restore and drill-restore MoonTV's Redis/Kvrocks database.
//
//   node storage-tool.js wait                  # block until the server answers PING (init container)
//   node storage-tool.js backup [dir]          # write <dir>/moontv-<UTC stamp>.json.enc, keep N newest,
//                                              # and copy it off-site when S3_BUCKET is set
//   node storage-tool.js restore <file|dir>    # load a backup (a directory: its newest) into the server
//   node storage-tool.js drill [dir]           # wait for an EMPTY scratch server, restore the newest backup,
//                                              # read it back, compare key count and content hash
//   node storage-tool.js keys [dir]            # the key id of every backup (what a key rotation needs)
//   node storage-tool.js fetch [name] [dir]    # download an off-site copy (default: the newest) into dir
//
// Environment:
//   STORAGE_URL        redis://:password@host:port of the server
//   BACKUP_RETENTION   backups kept (default 7)
//   BACKUP_KEY_ID      id of the key that encrypts new backups
//   BACKUP_KEYS_DIR    directory with one file per key id holding its key material (>= 32 chars,
//                      e.g. `openssl rand -base64 32`): the mounted key Secret, never the backup volume
//   S3_BUCKET, S3_ENDPOINT (http(s)://host[:port]), S3_REGION (us-east-1), S3_PREFIX (""),
//   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
//                      optional off-site copy (path-style S3 API, signature v4)
//   STORAGE_URL_FILE, AWS_SECRET_ACCESS_KEY_FILE
//                      read the secret from this file (a mounted Secret) instead of the variable
//
// Backups are gzip'd JSON sealed with AES-256-GCM (Node's crypto); the AES key is derived from
// the key material with HKDF-SHA256. The file names the key id, so after a rotation old backups
// still restore as long as their key stays in BACKUP_KEYS_DIR. Plain format-1 files still restore.
// It speaks plain RESP so it runs in the MoonTV image itself (Node 20, no extra packages).
'use strict';
const net = require('net');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const zlib = require('zlib');
const http = require('http');
const https = require('https');

class UsageError extends Error {}

/** A secret setting: the content of the file named by NAME_FILE (a mounted Secret), else NAME. */
function secret(name) {
  const file = process.env[`${name}_FILE`];
  return file ? fs.readFileSync(file, 'utf8').trim() : process.env[name];
}

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

/** Every key with its type, TTL and value. */
async function dump(url) {
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
  return entries;
}

/** Key count and one SHA-256 over every key's type and value (hash fields and set members
 * in sorted order, TTLs left out): equal for two databases holding the same data. */
function summary(entries) {
  const pairs = (v) => v.flatMap((x, i) => (i % 2 ? [] : [[x, v[i + 1]]]));
  const canonical = entries.map(({ key, type, value }) => {
    let v = value;
    if (type === 'hash') v = pairs(value).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (type === 'set') v = [...value].sort();
    return JSON.stringify([key, type, v]);
  }).sort();
  const hash = crypto.createHash('sha256');
  for (const line of canonical) hash.update(line + '\n');
  return { keys: entries.length, sha256: hash.digest('hex') };
}

// --- encryption ------------------------------------------------------------------------------

const KEY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

function keyRing(dir) {
  if (!dir) throw new UsageError('BACKUP_KEYS_DIR is not set: backups are encrypted, mount the key Secret and name its directory');
  const ring = {};
  for (const name of fs.readdirSync(dir)) {
    if (!KEY_ID.test(name)) continue; // skips the ..data links of a mounted Secret
    const file = path.join(dir, name);
    if (!fs.statSync(file).isFile()) continue;
    const material = fs.readFileSync(file, 'utf8').trim();
    if (material.length < 32) throw new UsageError(`backup key ${name}: needs at least 32 characters of key material (openssl rand -base64 32), got ${material.length}`);
    ring[name] = material;
  }
  return ring;
}

function aesKey(material, keyId) {
  return Buffer.from(crypto.hkdfSync('sha256', material, `moontv-backup:${keyId}`, 'moontv-backup-aes-256-gcm', 32));
}

function seal(plain, keyId, material) {
  const iv = crypto.randomBytes(12);
  const header = { format: 2, cipher: 'aes-256-gcm', kdf: 'hkdf-sha256', compression: 'gzip', keyId };
  const cipher = crypto.createCipheriv('aes-256-gcm', aesKey(material, keyId), iv);
  cipher.setAAD(Buffer.from(JSON.stringify(header)));
  const data = Buffer.concat([cipher.update(zlib.gzipSync(plain)), cipher.final()]);
  return JSON.stringify({ ...header, iv: iv.toString('base64'), tag: cipher.getAuthTag().toString('base64'), data: data.toString('base64') });
}

function open(text, file) {
  const doc = JSON.parse(text);
  if (doc.format === 1) return doc;
  if (doc.format !== 2 || doc.cipher !== 'aes-256-gcm') throw new Error(`${file}: unknown backup format ${doc.format}`);
  const ring = keyRing(process.env.BACKUP_KEYS_DIR);
  const material = ring[doc.keyId];
  if (!material) throw new Error(`${file}: encrypted with key ${doc.keyId}, which is not in BACKUP_KEYS_DIR (have: ${Object.keys(ring).join(', ') || 'none'}); keep retired keys in the key Secret until no backup uses them`);
  const header = { format: doc.format, cipher: doc.cipher, kdf: doc.kdf, compression: doc.compression, keyId: doc.keyId };
  const decipher = crypto.createDecipheriv('aes-256-gcm', aesKey(material, doc.keyId), Buffer.from(doc.iv, 'base64'));
  decipher.setAAD(Buffer.from(JSON.stringify(header)));
  decipher.setAuthTag(Buffer.from(doc.tag, 'base64'));
  let plain;
  try {
    plain = Buffer.concat([decipher.update(Buffer.from(doc.data, 'base64')), decipher.final()]);
  } catch (err) {
    throw new Error(`${file}: cannot decrypt with key ${doc.keyId}: the file was altered or the key material differs`);
  }
  return JSON.parse(zlib.gunzipSync(plain).toString('utf8'));
}

// --- files -----------------------------------------------------------------------------------

const BACKUP_FILE = /^moontv-\d{8}T\d{6}Z\.json(\.enc)?$/;

function backups(dir) {
  return fs.readdirSync(dir).filter((f) => BACKUP_FILE.test(f)).sort((a, b) => stamp(b).localeCompare(stamp(a)));
}

function stamp(name) { return name.replace(/^moontv-/, '').replace(/\.json(\.enc)?$/, ''); }

function newest(target) {
  if (!fs.statSync(target).isDirectory()) return target;
  const [first] = backups(target);
  if (!first) throw new Error(`no backup (moontv-<stamp>.json.enc) in ${target}`);
  return path.join(target, first);
}

function readBackup(file) { return open(fs.readFileSync(file, 'utf8'), file); }

// --- off-site copy (S3 API, signature v4) ----------------------------------------------------

function s3Config() {
  const bucket = process.env.S3_BUCKET;
  if (!bucket) return null;
  const need = ['S3_ENDPOINT', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'].filter((k) => !secret(k));
  if (need.length) throw new UsageError(`S3_BUCKET is set, so ${need.join(', ')} must be too`);
  return { bucket, endpoint: new URL(process.env.S3_ENDPOINT), region: process.env.S3_REGION || 'us-east-1',
    prefix: process.env.S3_PREFIX || '', id: process.env.AWS_ACCESS_KEY_ID, secret: secret('AWS_SECRET_ACCESS_KEY') };
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const s3Path = (s) => s.split('/').map((p) => encodeURIComponent(p)).join('/');

function s3Request(s3, method, key, body, query = {}) {
  const payload = body || Buffer.alloc(0);
  const now = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const day = now.slice(0, 8);
  const pathname = `/${s3.bucket}` + (key ? `/${s3Path(key)}` : '');
  const qs = Object.keys(query).sort().map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(query[k])}`).join('&');
  const headers = { host: s3.endpoint.host, 'x-amz-content-sha256': sha256(payload), 'x-amz-date': now };
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names.map((h) => `${h}:${headers[h]}\n`).join('');
  const canonical = [method, pathname, qs, canonicalHeaders, names.join(';'), headers['x-amz-content-sha256']].join('\n');
  const scope = `${day}/${s3.region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', now, scope, sha256(canonical)].join('\n');
  const signingKey = ['s3', 'aws4_request'].reduce((k, part) => hmac(k, part), hmac(hmac(`AWS4${s3.secret}`, day), s3.region));
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${s3.id}/${scope}, SignedHeaders=${names.join(';')}, Signature=${hmac(signingKey, toSign).toString('hex')}`;
  headers['content-length'] = payload.length;
  const lib = s3.endpoint.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request({ method, hostname: s3.endpoint.hostname, port: s3.endpoint.port,
      path: pathname + (qs ? `?${qs}` : ''), headers, timeout: 60000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks);
        if (res.statusCode >= 300) reject(new Error(`off-site ${method} ${pathname}: HTTP ${res.statusCode} ${text.toString('utf8').slice(0, 300)}`));
        else resolve(text);
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (err) => reject(new Error(`off-site ${method} ${pathname}: ${err.message}`)));
    req.end(payload);
  });
}

async function upload(s3, file) {
  const key = s3.prefix + path.basename(file);
  await s3Request(s3, 'PUT', key, fs.readFileSync(file));
  console.log(`copied ${path.basename(file)} off-site to s3://${s3.bucket}/${key}`);
}

async function fetchCopy(name, dir) {
  const s3 = s3Config();
  if (!s3) throw new UsageError('fetch needs S3_BUCKET (and S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)');
  if (!name) {
    const listing = (await s3Request(s3, 'GET', '', null, { 'list-type': '2', prefix: s3.prefix })).toString('utf8');
    const names = [...listing.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1].slice(s3.prefix.length)).filter((n) => BACKUP_FILE.test(n));
    names.sort((a, b) => stamp(b).localeCompare(stamp(a)));
    if (!names.length) throw new Error(`no backup under s3://${s3.bucket}/${s3.prefix}`);
    [name] = names;
  }
  if (!BACKUP_FILE.test(name)) throw new UsageError(`fetch: ${name} is not a backup name (moontv-<stamp>.json.enc)`);
  const body = await s3Request(s3, 'GET', s3.prefix + name);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, body);
  console.log(`fetched s3://${s3.bucket}/${s3.prefix}${name} to ${file}`);
}

// --- commands --------------------------------------------------------------------------------

async function backup(url, dir, keep) {
  const keyId = process.env.BACKUP_KEY_ID;
  if (!keyId) throw new UsageError('BACKUP_KEY_ID is not set: backups are encrypted, name the key that encrypts new ones');
  const material = keyRing(process.env.BACKUP_KEYS_DIR)[keyId];
  if (!material) throw new UsageError(`BACKUP_KEY_ID ${keyId}: no such key file in BACKUP_KEYS_DIR`);
  const s3 = s3Config();
  const entries = await dump(url);
  fs.mkdirSync(dir, { recursive: true });
  const now = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const file = path.join(dir, `moontv-${now}.json.enc`);
  fs.writeFileSync(`${file}.tmp`, seal(JSON.stringify({ format: 1, keys: entries }), keyId, material), { mode: 0o600 });
  fs.renameSync(`${file}.tmp`, file);
  const { keys, sha256: digest } = summary(entries);
  console.log(`wrote ${file} (${keys} keys, sha256 ${digest}, key ${keyId})`);
  for (const f of backups(dir).slice(keep)) { fs.unlinkSync(path.join(dir, f)); console.log(`pruned ${f}`); }
  if (s3) await upload(s3, file);
}

async function restore(url, target) {
  if (!target) throw new UsageError('restore needs a backup file or a directory (its newest backup)');
  const file = newest(target);
  const { keys } = readBackup(file);
  const c = await connect(url);
  for (const e of keys) {
    await c.call('DEL', e.key);
    if (e.value !== null && e.value.length !== 0) await WRITE[e.type](c, e.key, e.value);
    if (e.ttl) await c.call('PEXPIRE', e.key, e.ttl);
  }
  c.close();
  console.log(`restored ${keys.length} keys from ${file}`);
}

async function drill(url, dir) {
  const file = newest(dir);
  const { keys } = readBackup(file);
  const expected = summary(keys);
  await wait(url); // the scratch instance may still be starting
  const c = await connect(url);
  const size = await c.call('DBSIZE');
  c.close();
  if (size !== 0) throw new Error(`scratch storage ${url.hostname}:${url.port} holds ${size} keys: the drill only restores into an empty instance`);
  await restore(url, file);
  const got = summary(await dump(url));
  const ok = got.keys === expected.keys && got.sha256 === expected.sha256;
  console.log(JSON.stringify({ drill: ok ? 'passed' : 'failed', backup: path.basename(file), expected, restored: got }));
  if (!ok) throw new Error(`restore drill failed: ${path.basename(file)} holds ${expected.keys} keys (sha256 ${expected.sha256}), the scratch instance has ${got.keys} (sha256 ${got.sha256})`);
  console.log(`restore drill passed: ${got.keys} keys, sha256 ${got.sha256}`);
}

function keys(dir) {
  for (const f of backups(dir)) {
    const doc = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    console.log(`${f} ${doc.format === 2 ? doc.keyId : 'unencrypted'}`);
  }
}

const USAGE = 'usage: node storage-tool.js wait | backup [dir] | restore <file|dir> | drill [dir] | keys [dir] | fetch [name] [dir]\n'
  + '  (wait, backup, restore and drill need STORAGE_URL=redis://:pw@host:port; see the header of this file)';

async function main() {
  const [mode, arg, arg2] = process.argv.slice(2);
  if (mode === '-h' || mode === '--help') { console.log(USAGE); return; }
  const needsUrl = ['wait', 'backup', 'restore', 'drill'];
  const storageUrl = secret('STORAGE_URL');
  if (![...needsUrl, 'keys', 'fetch'].includes(mode) || (needsUrl.includes(mode) && !storageUrl)) {
    console.error(USAGE);
    process.exit(2);
  }
  const url = needsUrl.includes(mode) ? new URL(storageUrl) : null;
  if (mode === 'wait') await wait(url);
  if (mode === 'backup') await backup(url, arg || '/backup', Number(process.env.BACKUP_RETENTION || 7));
  if (mode === 'restore') await restore(url, arg);
  if (mode === 'drill') await drill(url, arg || '/backup');
  if (mode === 'keys') keys(arg || '/backup');
  if (mode === 'fetch') await fetchCopy(arg, arg2 || '/backup');
}

main().catch((err) => {
  console.error(`storage-tool: ${err.message}`);
  process.exit(err instanceof UsageError ? 2 : 1);
});
