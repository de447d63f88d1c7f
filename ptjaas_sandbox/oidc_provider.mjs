// A real OpenID Connect provider (npm `oidc-provider`) for ptjaas tests and `ptjaas demo`.
//
// Usage: node oidc_provider.mjs STATE_FILE   (started by ptjaas_sandbox.devoidc)
//
// STATE_FILE is JSON, re-read on every lookup so a test (or the demo) can change users, their
// groups and the registered clients while the provider runs:
//   {
//     "host": "127.0.0.1",                 // loopback only; read once at start
//     "groups_in_id_token": false,         // true: claims also go into the ID token; read once
//     "scope_claims": {"groups": ["groups", "realm_access"]},   // extra scopes; read once
//     "clients": [{"client_id": "...", "client_secret": "...", "redirect_uris": ["..."]}],
//     "users": {"alice": {"password": "pw", "claims": {"groups": ["vision"], "email": "..."}}}
//   }
// The provider listens on a free port on the loopback address and prints one JSON line on
// stdout: {"issuer": "http://127.0.0.1:PORT"}. Login and consent are real HTML forms
// (/interaction/UID), checked against the users in STATE_FILE.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

// PTJAAS_OIDC_PROVIDER_MODULE: file URL of oidc-provider's entry (ESM ignores NODE_PATH, so the
// launcher passes it when this script does not sit under the node_modules that holds it)
const { default: Provider } = await import(process.env.PTJAAS_OIDC_PROVIDER_MODULE || 'oidc-provider');

const stateFile = process.argv[2];
if (!stateFile) {
  console.error('usage: node oidc_provider.mjs STATE_FILE');
  process.exit(2);
}

function readState() {
  return JSON.parse(fs.readFileSync(stateFile, 'utf8'));
}

const initial = readState();
const host = initial.host || '127.0.0.1';
if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(host)) {
  console.error(`refusing to listen on non-loopback host ${host}`);
  process.exit(2);
}

// ---- storage: everything in memory except clients, which come from the state file ----
const store = new Map();
class Adapter {
  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
    if (payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const members = store.get(gk) || new Set();
      members.add(this.key(id));
      store.set(gk, members);
    }
    if (payload.uid) store.set(`uid:${payload.uid}`, id);
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, id);
  }

  async find(id) {
    if (this.name === 'Client') {
      const client = (readState().clients || []).find((c) => c.client_id === id);
      return client ? { ...client } : undefined;
    }
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt < Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    const id = store.get(`uid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = store.get(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const gk = `grant:${grantId}`;
    for (const key of store.get(gk) || []) store.delete(key);
    store.delete(gk);
  }
}

// ---- accounts ----
function findUser(name) {
  const users = readState().users || {};
  return Object.prototype.hasOwnProperty.call(users, name) ? users[name] : undefined;
}

async function findAccount(ctx, sub) {
  if (!findUser(sub)) return undefined;
  return {
    accountId: sub,
    async claims() {
      // re-read at claim time: a group change applies to the next token / userinfo call
      const user = findUser(sub) || {};
      return {
        sub,
        preferred_username: sub,
        name: sub,
        email: `${sub}@example.org`,
        email_verified: true,
        ...(user.claims || {}),
      };
    },
  };
}

const scopeClaims = initial.scope_claims || { groups: ['groups', 'realm_access'] };

// ---- html ----
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<p>Signing in to <strong>${esc(clientId)}</strong></p>
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label>Username <input required type="text" name="login" autofocus></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit">Sign in</button>
</form>
<a href="/interaction/${esc(uid)}/abort">Cancel</a>`);
}

function consentPage(uid, clientId, scopes) {
  return page('Authorize', `
<p><strong>${esc(clientId)}</strong> asks for: ${scopes.map(esc).join(', ') || 'nothing new'}</p>
<form method="post" action="/interaction/${esc(uid)}/confirm">
  <button type="submit">Allow</button>
</form>
<a href="/interaction/${esc(uid)}/abort">Deny</a>`);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      data += chunk;
      if (data.length > 65536) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(querystring.parse(data)));
    req.on('error', reject);
  });
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function handleInteraction(provider, req, res, url) {
  const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (!m) return send(res, 404, page('Not found', ''));
  const [, uid, action] = m;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Bad request', '<p>interaction mismatch</p>'));
  const { prompt, params, session } = details;
  if (!action && req.method === 'GET') {
    if (prompt.name === 'login') return send(res, 200, loginPage(uid, params.client_id));
    const scopes = [...(prompt.details.missingOIDCScope || [])];
    return send(res, 200, consentPage(uid, params.client_id, scopes));
  }
  if (action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
  }
  if (req.method !== 'POST') return send(res, 405, page('Method not allowed', ''));
  if (action === 'login') {
    const body = await readBody(req);
    const user = findUser(String(body.login || ''));
    if (!user || (user.password ?? '') !== String(body.password ?? '')) {
      return send(res, 401, loginPage(uid, params.client_id, 'Invalid username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: String(body.login) } },
      { mergeWithLastSubmission: false });
  }
  // confirm
  if (prompt.name !== 'consent') return send(res, 400, page('Bad request', '<p>nothing to confirm</p>'));
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  if (prompt.details.missingResourceScopes) {
    for (const [indicator, s] of Object.entries(prompt.details.missingResourceScopes)) {
      grant.addResourceScope(indicator, s.join(' '));
    }
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

// ---- server ----
const server = http.createServer();
server.listen(0, host.replace(/^\[|\]$/g, ''), () => {
  const { port } = server.address();
  const issuer = `http://${host}:${port}`;
  const provider = new Provider(issuer, {
    adapter: Adapter,
    findAccount,
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'], ...scopeClaims },
    scopes: ['openid', 'offline_access', 'profile', 'email', ...Object.keys(scopeClaims)],
    conformIdTokenClaims: !initial.groups_in_id_token,
    cookies: { keys: [Math.random().toString(36).slice(2) + Date.now()] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => false },
    ttl: {
      AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, RefreshToken: 86400,
      Interaction: 600, Session: 86400, Grant: 86400,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Sign-in error', `<p class="error">${esc(out.error)}: ${esc(out.error_description || '')}</p>`);
    },
  });
  provider.proxy = false;
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/_ptjaas/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"ok": true}');
    }
    if (url.pathname.startsWith('/interaction/')) {
      return handleInteraction(provider, req, res, url).catch((err) => {
        send(res, 400, page('Sign-in error', `<p class="error">${esc(err.message)}</p>`));
      });
    }
    return callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// exit when the parent goes away (stdin closed), so no provider outlives its test or demo
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
