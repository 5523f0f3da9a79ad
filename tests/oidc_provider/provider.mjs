// A real OpenID Connect provider (the certified `oidc-provider`) standing in for Criipto
// Verify in the national eID tests (tests/tenants/test_identity_oidc.py and the e2e tests).
//
//   node provider.mjs CONFIG.json
//
// CONFIG: { port, client: {client_id, client_secret, redirect_uris, token_endpoint_auth_method},
//           jwk: the provider's private signing key (a JWK with kid), persons: {no|dk|se: claims} }
//
// Configured like Criipto: the eID is chosen with acr_values (urn:grn:authn:no:bankid...,
// urn:grn:authn:dk:mitid..., urn:grn:authn:se:bankid...), the claims come in the ID token
// (socialno, cprNumberIdentifier with scope ssn, ssn, name, identityscheme), PKCE is required.
// Logging in is automatic: the interaction logs in the test person of the eID asked for
// and grants what was asked, so a test follows redirects with an HTTP client alone.
//
// POST /test/mode {"mode": ...} makes the next token answers misbehave, for the negative tests:
//   "normal", "forge" (ID token signed by another key under the same kid), "audience"
//   (another aud, signed by the real key), "expired" (exp and iat an hour ago, real key),
//   "slow" (the token endpoint never answers in time), "error" (it answers 503).
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${config.port}`;
const signingKey = await jose.importJWK(config.jwk, 'RS256');
const { privateKey: otherKey } = await jose.generateKeyPair('RS256');
let mode = 'normal';

const ACRS = [
  'urn:grn:authn:no:bankid', 'urn:grn:authn:no:bankid:substantial',
  'urn:grn:authn:dk:mitid:substantial', 'urn:grn:authn:dk:mitid:low',
  'urn:grn:authn:se:bankid:same-device', 'urn:grn:authn:se:bankid:another-device',
];

function personFor(acr) {
  if (acr.startsWith('urn:grn:authn:dk:')) return 'dk';
  if (acr.startsWith('urn:grn:authn:se:')) return 'se';
  return 'no';
}

const provider = new Provider(issuer, {
  clients: [{
    ...config.client,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
  }],
  jwks: { keys: [config.jwk] },
  acrValues: ACRS,
  claims: {
    openid: ['sub', 'name', 'socialno', 'ssn', 'identityscheme', 'country'],
    ssn: ['cprNumberIdentifier'],
  },
  scopes: ['openid', 'ssn'],
  conformIdTokenClaims: false, // as Criipto: the claims are in the ID token itself
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, sub) => {
    const person = config.persons[sub];
    if (!person) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...person }) };
  },
  ttl: { AuthorizationCode: 120, IdToken: 600, AccessToken: 600, Interaction: 600, Session: 600, Grant: 600 },
});
provider.proxy = false;

async function tamper(idToken) {
  const payload = jose.decodeJwt(idToken);
  const header = jose.decodeProtectedHeader(idToken);
  let key = signingKey;
  if (mode === 'forge') key = otherKey;
  if (mode === 'audience') payload.aud = 'someone-else';
  if (mode === 'expired') {
    payload.iat = Math.floor(Date.now() / 1000) - 3600;
    payload.exp = payload.iat + 600;
  }
  return new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: header.kid }).sign(key);
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/mode' && ctx.method === 'POST') {
    let body = '';
    for await (const chunk of ctx.req) body += chunk;
    mode = JSON.parse(body).mode;
    ctx.body = { mode };
    return;
  }
  if (ctx.path.startsWith('/interaction/') && ctx.method === 'GET') {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { prompt, params, session } = details;
    let result;
    if (prompt.name === 'login') {
      const acr = String(params.acr_values || '').split(' ')[0] || ACRS[0];
      result = { login: { accountId: personFor(acr), acr } };
    } else {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
      if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
      result = { consent: { grantId: await grant.save() } };
    }
    const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(to);
    return;
  }
  if (ctx.path === '/token' && mode === 'slow') {
    await new Promise((resolve) => setTimeout(resolve, 30_000));
  }
  if (ctx.path === '/token' && mode === 'error') {
    ctx.status = 503;
    ctx.body = { error: 'temporarily_unavailable' };
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.status === 200 && ['forge', 'audience', 'expired'].includes(mode)) {
    ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token) };
  }
});

provider.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});
