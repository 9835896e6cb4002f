// Runs unmodified @azure/msal-node against a running fakests and prints one JSON line per flow.
//
// Usage: node flows.mjs '<config json>'   (or the JSON on stdin)
// Config: {authority, knownAuthority, tenantId, daemonClientId, daemonSecret, publicClientId,
//          apiScope, apiClientId, certPemPath, thumbprintSha1, thumbprintSha256, username, password,
//          flows?: [names]}
// The TLS trust comes from NODE_EXTRA_CA_CERTS (fakests' CA), which both msal-node (global fetch) and
// this script's own fetch honour. Every token is verified against the JWKS that the discovery
// document's jwks_uri serves. Exit status: 0 when every flow met its expectation, 1 otherwise.

import { readFileSync } from "node:fs";
import process from "node:process";
import { ConfidentialClientApplication, PublicClientApplication, ServerError } from "@azure/msal-node";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";

const cfg = JSON.parse(process.argv[2] ?? readFileSync(0, "utf8"));
const origin = new URL(cfg.authority).origin;

// --- Observe (and fence) every HTTP request msal-node makes -------------------------------------
// msal-node's HttpClient calls the global fetch. Wrapping it lets the test see the query and body
// parameter names msal-node sent, and refuses any host other than fakests, so a misconfiguration
// (e.g. instance discovery at login.microsoftonline.com) fails loudly instead of leaving the machine.
const realFetch = globalThis.fetch;
let requests = [];
let onTokenResponse = () => {}; // called after each token endpoint answer (device_code uses it)
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  if (url.origin !== origin) {
    requests.push({ method: init.method ?? "GET", url: url.href, refused: true });
    throw new TypeError(`flows.mjs: refused a request outside fakests: ${url.href}`);
  }
  const body = typeof init.body === "string" ? new URLSearchParams(init.body) : null;
  const entry = {
    method: init.method ?? "GET",
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    bodyKeys: body ? [...body.keys()].sort() : [],
    bodyClientRequestId: body?.get("client-request-id") ?? null,
    bodyGrantType: body?.get("grant_type") ?? null,
    // Only the JOSE header of a client assertion (alg, x5t or x5t#S256): never the signed part.
    assertionHeader: body?.get("client_assertion") ? decodeProtectedHeader(body.get("client_assertion")) : null,
  };
  requests.push(entry);
  const response = await realFetch(input, init);
  entry.status = response.status;
  entry.responseClientRequestId = response.headers.get("client-request-id");
  if (url.pathname.endsWith("/oauth2/v2.0/token")) onTokenResponse(entry);
  return response;
};

// --- Token verification against the served discovery document and JWKS -------------------------
const discovery = await (await realFetch(`${cfg.authority}/v2.0/.well-known/openid-configuration`)).json();
// Fetched with the unwrapped fetch so it does not appear among msal-node's requests.
const jwks = createLocalJWKSet(await (await realFetch(discovery.jwks_uri)).json());

/** The issuer a token must carry: the discovery issuer for v2 tokens, sts.windows.net for v1. */
function expectedIssuer(claims) {
  if (claims.ver === "1.0") return `https://sts.windows.net/${claims.tid}/`;
  return discovery.issuer.replace("{tenantid}", claims.tid);
}

/** Verifies signature (RS256, key from jwks_uri), iss, aud, tid and lifetime; returns a claim summary. */
async function verify(token, audience) {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { algorithms: ["RS256"], audience });
  const iss = expectedIssuer(payload);
  if (payload.iss !== iss) throw new Error(`iss ${payload.iss} != ${iss}`);
  if (payload.tid !== cfg.tenantId) throw new Error(`tid ${payload.tid} != ${cfg.tenantId}`);
  const keep = ["aud", "iss", "tid", "ver", "azp", "azpacr", "appid", "roles", "scp", "idtyp", "oid",
    "preferred_username", "name", "sub"];
  return {
    kid: protectedHeader.kid,
    claims: Object.fromEntries(keep.filter((k) => k in payload).map((k) => [k, payload[k]])),
  };
}

async function summarize(result, { idTokenAudience } = {}) {
  const out = {
    correlationId: result.correlationId,
    tokenType: result.tokenType,
    scopes: result.scopes,
    fromCache: result.fromCache,
    account: result.account ? { username: result.account.username, homeAccountId: result.account.homeAccountId,
      tenantId: result.account.tenantId, environment: result.account.environment } : null,
    accessToken: await verify(result.accessToken, cfg.apiClientId),
  };
  if (idTokenAudience) {
    if (!result.idToken) throw new Error("no id_token in the result");
    out.idToken = await verify(result.idToken, idTokenAudience);
  }
  return out;
}

// --- msal-node configuration ----------------------------------------------------------------------
// knownAuthorities makes msal-node trust "localhost:<port>" without instance discovery at
// login.microsoftonline.com; it then fetches only {authority}/v2.0/.well-known/openid-configuration.
function auth(extra) {
  return { authority: cfg.authority, knownAuthorities: [cfg.knownAuthority], ...extra };
}
const system = { loggerOptions: { loggerCallback() {}, piiLoggingEnabled: false } };
const apiDefault = [`${cfg.apiScope}/.default`];
const apiUser = [`${cfg.apiScope}/access_as_user`];

function privateKeyPem() {
  // The state directory's client-cert.pem holds the PKCS#8 key followed by the certificate.
  const pem = readFileSync(cfg.certPemPath, "utf8");
  const match = pem.match(/-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/);
  if (!match) throw new Error(`no PKCS#8 private key in ${cfg.certPemPath}`);
  return match[0];
}

const flows = {
  async client_credentials_secret() {
    const app = new ConfidentialClientApplication({
      auth: auth({ clientId: cfg.daemonClientId, clientSecret: cfg.daemonSecret }), system });
    return summarize(await app.acquireTokenByClientCredential({ scopes: apiDefault }));
  },

  async client_credentials_certificate_sha256() {
    // x5t#S256 + PS256 assertion (ClientAssertion.fromCertificateWithSha256Thumbprint).
    const app = new ConfidentialClientApplication({
      auth: auth({ clientId: cfg.daemonClientId,
        clientCertificate: { thumbprintSha256: cfg.thumbprintSha256, privateKey: privateKeyPem() } }), system });
    return summarize(await app.acquireTokenByClientCredential({ scopes: apiDefault }));
  },

  async client_credentials_certificate_sha1() {
    // x5t + RS256 assertion (ClientAssertion.fromCertificate).
    const app = new ConfidentialClientApplication({
      auth: auth({ clientId: cfg.daemonClientId,
        clientCertificate: { thumbprint: cfg.thumbprintSha1, privateKey: privateKeyPem() } }), system });
    return summarize(await app.acquireTokenByClientCredential({ scopes: apiDefault }));
  },

  async username_password() {
    const app = new PublicClientApplication({ auth: auth({ clientId: cfg.publicClientId }), system });
    const result = await app.acquireTokenByUsernamePassword({
      scopes: apiUser, username: cfg.username, password: cfg.password });
    return summarize(result, { idTokenAudience: cfg.publicClientId });
  },

  async device_code() {
    const app = new PublicClientApplication({ auth: auth({ clientId: cfg.publicClientId }), system });
    let approval = null;
    let shown = null;
    // Approve only after msal-node's first poll has been answered, so that the run always includes
    // at least one authorization_pending answer that msal-node must treat as "keep polling".
    const firstPoll = new Promise((resolve) => { onTokenResponse = resolve; });
    const request = {
      scopes: apiUser,
      timeout: 60, // seconds of polling before msal-node gives up
      // msal-node does not await this callback: start the approval and keep its promise.
      deviceCodeCallback(response) {
        shown = { verificationUri: response.verificationUri, userCodeLength: response.userCode.length,
          interval: response.interval, expiresIn: response.expiresIn, hasMessage: Boolean(response.message) };
        approval = firstPoll.then(() => approve(response)).catch((err) => {
          request.cancel = true; // stop polling: the approval will never come
          throw err;
        });
      },
    };
    const result = await app.acquireTokenByDeviceCode(request);
    onTokenResponse = () => {};
    const approvalStatus = await approval;
    return { ...(await summarize(result, { idTokenAudience: cfg.publicClientId })), deviceCode: shown,
      approvalStatus };
  },

  async wrong_secret() {
    const app = new ConfidentialClientApplication({
      auth: auth({ clientId: cfg.daemonClientId, clientSecret: `${cfg.daemonSecret}-wrong` }), system });
    try {
      await app.acquireTokenByClientCredential({ scopes: apiDefault });
    } catch (err) {
      const bodyCorrelation = /Correlation ID: ([0-9a-f-]{36})/.exec(err.errorMessage ?? "");
      return {
        expectedError: true,
        name: err.name,
        isServerError: err instanceof ServerError,
        errorCode: err.errorCode,
        errorNo: err.errorNo === undefined ? null : String(err.errorNo),
        status: err.status ?? null,
        subError: err.subError || null,
        correlationId: err.correlationId,
        messageCorrelationId: bodyCorrelation ? bodyCorrelation[1] : null,
        errorMessage: err.errorMessage,
      };
    }
    throw new Error("a wrong client secret was accepted");
  },
};

/** Approves a device code the way a headless test can: one form POST to the verification page. */
async function approve(response) {
  const form = new URLSearchParams({ otc: response.userCode, login: cfg.username, passwd: cfg.password,
    decision: "approve" });
  const answer = await realFetch(response.verificationUri, { method: "POST", body: form, redirect: "manual" });
  const text = await answer.text();
  if (answer.status !== 200 || !text.includes("You have signed in")) {
    throw new Error(`device approval failed: HTTP ${answer.status}: ${text.slice(0, 300)}`);
  }
  return answer.status;
}

let failed = 0;
for (const name of cfg.flows ?? Object.keys(flows)) {
  requests = [];
  const started = Date.now();
  let line;
  try {
    if (!flows[name]) throw new Error(`unknown flow ${name}`);
    line = { flow: name, ok: true, ...(await flows[name]()) };
    // The error flow is "ok" only when the error is exactly the expected one.
    if (line.expectedError) {
      line.ok = line.isServerError && line.errorCode === "invalid_client" && line.errorNo === "7000215"
        && Boolean(line.correlationId);
    }
  } catch (err) {
    line = { flow: name, ok: false, error: `${err?.name}: ${err?.message}`, errorCode: err?.errorCode ?? null,
      stack: err?.stack };
  }
  line.requests = requests;
  line.elapsedMs = Date.now() - started;
  if (!line.ok) failed += 1;
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
process.exitCode = failed ? 1 : 0;
