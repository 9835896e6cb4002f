// Managed identity with unmodified @azure/msal-node (ManagedIdentityApplication) and @azure/identity
// (ManagedIdentityCredential), configured only by the environment variables Azure sets (the test sets them).
//
// Usage: node identity.mjs <msal-node|azure-identity> <resource> [user-assigned client id]
// Prints one JSON line: {ok, token, expiresOn} or {ok: false, name, message}. The test verifies the token
// against fakests' JWKS and reads what was asked from the sandbox journal.
import process from "node:process";
import { ManagedIdentityApplication } from "@azure/msal-node";
import { ManagedIdentityCredential } from "@azure/identity";

const [library, resource, clientId] = process.argv.slice(2);
try {
  let token, expiresOn;
  if (library === "msal-node") {
    const app = new ManagedIdentityApplication(clientId ? { managedIdentityIdParams: { userAssignedClientId: clientId } } : {});
    const result = await app.acquireToken({ resource });
    token = result.accessToken;
    expiresOn = result.expiresOn ? result.expiresOn.getTime() : null;
  } else {
    const credential = clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
    const result = await credential.getToken(`${resource}/.default`);
    token = result.token;
    expiresOn = result.expiresOnTimestamp;
  }
  // expiresOn: milliseconds since the epoch as the client computed it (null when it is not a number).
  console.log(JSON.stringify({ ok: true, token, expiresOn: Number.isFinite(expiresOn) ? expiresOn : null }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, name: error.name, errorCode: error.errorCode ?? null,
                               message: String(error.message).split("\n")[0] }));
}
