// The same app with @azure/identity: DefaultAzureCredential, configured by AZURE_* variables alone.
import { DefaultAzureCredential } from "@azure/identity";

try {
  const token = await new DefaultAzureCredential().getToken("https://graph.microsoft.com/.default");
  const claims = JSON.parse(Buffer.from(token.token.split(".")[1], "base64url"));
  console.log(`@azure/identity token for ${claims.appid ?? claims.azp} from ${claims.iss}`);
} catch (error) {
  console.log(`@azure/identity failed: ${error.message.split("\n")[0]}`);
  process.exitCode = 1;
}
