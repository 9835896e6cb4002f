// Workload identity with unmodified @azure/identity: WorkloadIdentityCredential and DefaultAzureCredential read
// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE and AZURE_AUTHORITY_HOST (the test sets them, as
// the AKS webhook does). The only option passed is disableInstanceDiscovery: fakests is not a Microsoft host, and
// without it msal-node asks the real login.microsoftonline.com about it.
//
// Usage: node workload.mjs <workload|default> <scope>
// Prints one JSON line: {ok, token} or {ok: false, name, message}.
import process from "node:process";
import { DefaultAzureCredential, WorkloadIdentityCredential } from "@azure/identity";

const [kind, scope] = process.argv.slice(2);
try {
  const options = { disableInstanceDiscovery: true };
  const credential = kind === "default" ? new DefaultAzureCredential(options) : new WorkloadIdentityCredential(options);
  const token = (await credential.getToken(scope)).token;
  console.log(JSON.stringify({ ok: true, token }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, name: error.name, message: String(error.message) }));
}
