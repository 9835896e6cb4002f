// The redirect URI page: msal-browser 5's redirect bridge (docs/v4-migration.md).
import { broadcastResponseToMainFrame } from "@azure/msal-browser/redirect-bridge";

broadcastResponseToMainFrame().catch((error) => {
  document.body.textContent = `Sign-in response could not be handled: ${error}`;
});
