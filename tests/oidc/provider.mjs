// A real OpenID Connect provider for Portcullis's tests: the certified `oidc-provider` package
// (8.x, Node 20) on 127.0.0.1 and a free port, with a scripted login instead of its development
// interactions. tests/it/oidc/provider.rs starts one per test and kills it when the test ends.
//
// Environment:
//   ACCOUNTS            JSON {"<account id>": {<claims: email, email_verified, name, ...>}}
//   CLIENT_ID, CLIENT_SECRET
//   ACCESS_TOKEN_TTL    seconds (default 3600); ID_TOKEN_TTL likewise
//   CLOCK_SKEW_SECONDS  shifts this provider's clock (negative: every token it issues has
//                       already expired by the clock of the relying party)
//   PORT                the port to listen on (default: a free one); a restart on the same
//                       port is a key rotation, since every process signs with a fresh RSA
//                       key under a fresh key id
//
// Prints "listening <port>" once it serves. Routes besides the provider's own:
//   GET  /interaction/:uid         a login form (what a browser would show)
//   POST /interaction/:uid/login   form field `login` = an account id: signs in and consents
//                                  to the requested scopes in one step
//   POST /test/accounts/:id/delete removes an account (its refresh tokens then fail)
//   GET  /test/stats               {"refreshes": <refresh_token grants served>,
//                                  "token_requests": <requests that reached /token>,
//                                  "jwks_requests": <requests that reached /jwks>,
//                                  "held": <requests to /token waiting for a release>}
//   POST /test/access-token-ttl/:seconds  the lifetime of the access tokens issued from now on
//   POST /test/token/hold          from now on, requests to /token wait (counted in "held")...
//   POST /test/token/release       ... until this lets them all through
//   POST /test/refresh-id-token/:mode  tampers with the ID token of every later refresh
//                                  answer: `other-sub` (re-signed with this provider's key,
//                                  `sub` changed), `bad-signature` (a signature byte flipped),
//                                  `none` (as issued)
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const skew = Number(process.env.CLOCK_SKEW_SECONDS || 0) * 1000;
if (skew) {
  const realNow = Date.now;
  Date.now = () => realNow() + skew;
}

const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const stats = { refreshes: 0, token_requests: 0, held: 0, jwks_requests: 0 };
let accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || 3600);
// While set, requests to /token wait for it to resolve.
let hold = null;

// The signing key: fresh for every process, so a restart rotates it.
const kid = crypto.randomUUID();
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
let refreshIdToken = 'none';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// The ID token `jwt` altered as `refreshIdToken` says.
function tamper(jwt) {
  const [header, payload, signature] = jwt.split('.');
  if (refreshIdToken === 'bad-signature') {
    const bytes = Buffer.from(signature, 'base64url');
    bytes[0] ^= 0xff;
    return `${header}.${payload}.${b64url(bytes)}`;
  }
  if (refreshIdToken === 'other-sub') {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    claims.sub = `${claims.sub}-other`;
    const input = `${header}.${b64url(JSON.stringify(claims))}`;
    const signed = crypto.sign('sha256', Buffer.from(input), privateKey);
    return `${input}.${b64url(signed)}`;
  }
  return jwt;
}

const server = http.createServer();
await new Promise((resolve) => server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve));
const { port } = server.address();

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: process.env.CLIENT_ID || 'portcullis',
    client_secret: process.env.CLIENT_SECRET || 'portcullis-secret',
    // RFC 8252 §7.3: a native client's loopback redirect URI matches any port, so the test
    // can register the callback before Portcullis has picked its port.
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/api/v2/users/oidc/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups'],
  },
  pkce: { required: () => true, methods: ['S256'] },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: ['portcullis-test-cookie-key'] },
  jwks: { keys: [signingJwk] },
  ttl: {
    AccessToken: () => accessTokenTtl,
    IdToken: Number(process.env.ID_TOKEN_TTL || 3600),
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    AuthorizationCode: 60,
  },
  // Every login of this client gets a refresh token (by default only `offline_access` does).
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => {
    const claims = accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
});
provider.on('grant.success', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') stats.refreshes += 1;
});
provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body;
  if (ctx.path === '/token' && ctx.oidc?.params?.grant_type === 'refresh_token'
    && body && typeof body.id_token === 'string') {
    body.id_token = tamper(body.id_token);
  }
});

const callback = provider.callback();

async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] === 'interaction' && req.method === 'GET' && parts.length === 2) {
      await provider.interactionDetails(req, res);
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><form method="post" action="/interaction/${parts[1]}/login">`
        + '<input name="login"><button>Sign in</button></form>');
      return;
    }
    if (parts[0] === 'interaction' && req.method === 'POST' && parts[2] === 'login') {
      const details = await provider.interactionDetails(req, res);
      const accountId = (await form(req)).get('login');
      if (!accounts[accountId]) {
        res.statusCode = 403;
        res.end('unknown account');
        return;
      }
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    if (parts[0] === 'test' && parts[1] === 'accounts' && parts[3] === 'delete') {
      delete accounts[parts[2]];
      res.statusCode = 204;
      res.end();
      return;
    }
    if (parts[0] === 'test' && parts[1] === 'refresh-id-token' && req.method === 'POST') {
      refreshIdToken = parts[2];
      res.statusCode = 204;
      res.end();
      return;
    }
    if (parts[0] === 'test' && parts[1] === 'access-token-ttl' && req.method === 'POST') {
      accessTokenTtl = Number(parts[2]);
      res.statusCode = 204;
      res.end();
      return;
    }
    if (parts[0] === 'test' && parts[1] === 'token' && req.method === 'POST') {
      if (parts[2] === 'hold' && !hold) {
        let release;
        hold = { promise: new Promise((resolve) => { release = resolve; }), release: () => release() };
      } else if (parts[2] === 'release' && hold) {
        hold.release();
        hold = null;
      }
      res.statusCode = 204;
      res.end();
      return;
    }
    if (parts[0] === 'test' && parts[1] === 'stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(stats));
      return;
    }
    if (url.pathname === '/jwks') stats.jwks_requests += 1;
    if (url.pathname === '/token') {
      stats.token_requests += 1;
      if (hold) {
        stats.held += 1;
        await hold.promise;
        stats.held -= 1;
      }
    }
    callback(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err));
  }
});

process.stdout.write(`listening ${port}\n`);
