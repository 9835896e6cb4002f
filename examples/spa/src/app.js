// A plain-JavaScript SPA on @azure/msal-browser. The static server (serve.py) hands it its settings in
// /config.json: authority, clientId, and optionally knownAuthorities. Against fakests, knownAuthorities
// names fakests' host, so msal-browser trusts its discovery document without asking Entra's instance
// discovery; against https://login.microsoftonline.com (fakests impersonating it) nothing is needed.
import { PublicClientApplication, InteractionRequiredAuthError } from "@azure/msal-browser";

const SCOPES = ["User.Read"];
const $ = (id) => document.getElementById(id);

function show(outcome) {
  // What the app shows, and (for tests) what it keeps in window.lastOutcome.
  window.lastOutcome = outcome;
  const box = $("result");
  box.replaceChildren();
  const list = document.createElement("dl");
  const add = (name, value, id) => {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value ?? "";
    if (id) dd.id = id;
    list.append(dt, dd);
  };
  if (outcome.error) {
    box.className = "error";
    const title = document.createElement("h2");
    title.textContent = "Sign-in failed";
    box.append(title);
    add("Error", outcome.error.name, "error-name");
    add("Code", outcome.error.errorCode, "error-code");
    add("Correlation ID", outcome.error.correlationId, "correlation-id");
    add("Message", outcome.error.errorMessage, "error-message");
  } else {
    box.className = "ok";
    add("Operation", outcome.operation, "operation");
    add("From cache", String(outcome.fromCache), "from-cache");
    add("Scopes", (outcome.scopes || []).join(" "), "scopes");
    add("Correlation ID", outcome.correlationId, "correlation-id");
    add("Access token expires", outcome.expiresOn, "expires-on");
  }
  box.append(list);
}

function showAccount(account) {
  $("who").replaceChildren();
  if (!account) {
    $("who").textContent = "Not signed in.";
    return;
  }
  const name = document.createElement("span");
  name.id = "user-name";
  name.textContent = account.name;
  const user = document.createElement("span");
  user.id = "username";
  user.textContent = account.username;
  $("who").append("Signed in as ", name, " (", user, ")");
}

function succeeded(operation, result) {
  msal.setActiveAccount(result.account);
  showAccount(result.account);
  show({
    operation, fromCache: result.fromCache, scopes: result.scopes, correlationId: result.correlationId,
    expiresOn: result.expiresOn && result.expiresOn.toISOString(), accessToken: result.accessToken,
    idToken: result.idToken, username: result.account && result.account.username,
  });
}

function failed(operation, error) {
  show({
    operation,
    error: {
      name: error.name, errorCode: error.errorCode, subError: error.subError,
      correlationId: error.correlationId, errorMessage: error.errorMessage || String(error),
      interactionRequired: error instanceof InteractionRequiredAuthError,
    },
  });
}

async function run(operation, call) {
  try {
    succeeded(operation, await call());
  } catch (error) {
    failed(operation, error);
  }
}

const config = await (await fetch("/config.json")).json();
const here = window.location.origin;
const msal = new PublicClientApplication({
  auth: {
    clientId: config.clientId,
    authority: config.authority,
    knownAuthorities: config.knownAuthorities || [],
    redirectUri: `${here}/redirect.html`,
    postLogoutRedirectUri: `${here}/`,
  },
  cache: { cacheLocation: "sessionStorage" },
});
window.msal = msal;
await msal.initialize();

try {
  const result = await msal.handleRedirectPromise();
  if (result) succeeded("loginRedirect", result);
} catch (error) {
  failed("loginRedirect", error);
}
const account = msal.getActiveAccount() || msal.getAllAccounts()[0] || null;
if (account) msal.setActiveAccount(account);
showAccount(account);

$("login-redirect").onclick = () => msal.loginRedirect({ scopes: SCOPES }).catch((e) => failed("loginRedirect", e));
$("login-popup").onclick = () => run("loginPopup", () => msal.loginPopup({ scopes: SCOPES }));
$("silent").onclick = () => run("acquireTokenSilent", () => msal.acquireTokenSilent({
  scopes: SCOPES, account: msal.getActiveAccount() || undefined,
}));
$("sso-silent").onclick = () => run("ssoSilent", () => msal.ssoSilent({
  scopes: SCOPES, loginHint: config.loginHint || undefined,
}));
$("logout").onclick = () => msal.logoutRedirect({ account: msal.getActiveAccount() || undefined });
document.body.dataset.ready = "true";
