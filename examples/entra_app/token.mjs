// The same app in Node: msal-node with its defaults (no knownAuthorities, no custom network client).
import { ConfidentialClientApplication } from "@azure/msal-node";

const app = new ConfidentialClientApplication({ auth: {
  clientId: process.env.ENTRA_APP_CLIENT_ID ?? "6b0d2f5e-8c44-4f1a-b3a2-7e9c1d0f4a22",
  clientSecret: process.env.ENTRA_APP_CLIENT_SECRET ?? "entra-app-secret",
  authority: `https://login.microsoftonline.com/${process.env.ENTRA_APP_TENANT_ID ?? "3c1c6f3e-1a7b-4b8e-9d6a-2f0e5c8b7a11"}`,
} });
try {
  const result = await app.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] });
  const claims = JSON.parse(Buffer.from(result.accessToken.split(".")[1], "base64url"));
  console.log(`msal-node token for ${claims.appid ?? claims.azp} from ${claims.iss}`);
} catch (error) {
  console.log(`msal-node failed: ${error.errorCode} (correlation id: ${error.correlationId})`);
  process.exitCode = 1;
}
