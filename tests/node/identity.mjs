// Managed identity with unmodified @azure/msal-node (ManagedIdentityApplication) and @azure/identity
// (ManagedIdentityCredential), configured only by the environment variables Azure sets (the test sets them).
//
// Usage: node identity.mjs <msal-node|azure-identity> <resource> [user-assigned client id]
// Prints one JSON line: {ok, token, source} or {ok: false, name, message}. The test verifies the token
// against fakests' JWKS and reads what was asked from the sandbox journal.
import process from "node:process";
import { ManagedIdentityApplication } from "@azure/msal-node";
import { ManagedIdentityCredential } from "@azure/identity";

const [library, resource, clientId] = process.argv.slice(2);
try {
  let token;
  if (library === "msal-node") {
    const app = new ManagedIdentityApplication(clientId ? { managedIdentityIdParams: { userAssignedClientId: clientId } } : {});
    const result = await app.acquireToken({ resource });
    token = result.accessToken;
  } else {
    const credential = clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
    token = (await credential.getToken(`${resource}/.default`)).token;
  }
  console.log(JSON.stringify({ ok: true, token }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, name: error.name, errorCode: error.errorCode ?? null,
                               message: String(error.message).split("\n")[0] }));
}
