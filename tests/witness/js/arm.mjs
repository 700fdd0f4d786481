// Microsoft's JavaScript management SDKs, unmodified, walk the seed's flow through the trio's
// Azure Resource Manager door: @azure/arm-resources, @azure/arm-keyvault,
// @azure/arm-cognitiveservices and @azure/arm-authorization, with @azure/identity signing in
// and @azure/keyvault-keys making the key.
// This script decides nothing: each step prints one JSON line, what the SDK returned or the
// error it threw, and tests/witness/test_js_arm.py judges them.
//
// Configuration, from the environment:
//   AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_ID
//   VAULT_NAME              the vault to make (a new name: the SDKs remember a vault's tenant)
//   ADMIN_OBJECT_ID         the signed-in principal's object id (its access policy on the vault)
//   GRANTEE_ID              a principal of the tenant to grant Reader on the resource group
//   CMK_AUTHORITY           identity's HTTPS door; unset: login.microsoftonline.com
//   CMK_ARM                 ARM's door (https://127.0.0.1:50057); unset: management.azure.com
//   CMK_KEYVAULT_DOOR       the key vault's door for the data plane; unset: the vault's name
//   NODE_EXTRA_CA_CERTS, HTTPS_PROXY, NO_PROXY   as for any Azure code
//
// Output: as witness.mjs ({"step", "result"}, {"step", "error"}, {"await"}, {"done"}).
import { randomUUID } from "node:crypto";
import { AuthorizationManagementClient } from "@azure/arm-authorization";
import { CognitiveServicesManagementClient } from "@azure/arm-cognitiveservices";
import { KeyVaultManagementClient } from "@azure/arm-keyvault";
import { ResourceManagementClient } from "@azure/arm-resources";
import { ClientSecretCredential } from "@azure/identity";
import { KeyClient } from "@azure/keyvault-keys";
import { DoorAgent, awaitTest, emit, stepper } from "./steps.mjs";

const env = process.env;
const sub = env.AZURE_SUBSCRIPTION_ID;
const tenantId = env.AZURE_TENANT_ID;
const vault = env.VAULT_NAME;
const group = "speech-rg";

const credential = env.CMK_AUTHORITY
  ? new ClientSecretCredential(tenantId, env.AZURE_CLIENT_ID, env.AZURE_CLIENT_SECRET, {
      authorityHost: env.CMK_AUTHORITY,
      disableInstanceDiscovery: true,
    })
  : new ClientSecretCredential(tenantId, env.AZURE_CLIENT_ID, env.AZURE_CLIENT_SECRET);
// Explicit: ARM's door as the clients' endpoint, and the management audience as their scope
// (which they would otherwise derive from the endpoint): `credentialScopes` for the clients
// generated from OpenAPI, `credentials.scopes` for those generated from TypeSpec.
const scopes = ["https://management.azure.com/.default"];
const arm = env.CMK_ARM ? { endpoint: env.CMK_ARM, credentialScopes: scopes, credentials: { scopes } } : {};
const resources = new ResourceManagementClient(credential, sub, arm);
const vaults = new KeyVaultManagementClient(credential, sub, arm);
const accounts = new CognitiveServicesManagementClient(credential, sub, arm);
const authorization = new AuthorizationManagementClient(credential, sub, arm);
const keys = new KeyClient(
  `https://${vault}.vault.azure.net`,
  credential,
  env.CMK_KEYVAULT_DOOR ? { agent: new DoorAgent(env.CMK_KEYVAULT_DOOR) } : {},
);

const errorOf = (e) => ({
  name: e?.name,
  statusCode: e?.statusCode,
  code: e?.code,
  reason: e?.details?.error?.additionalInfo?.find((i) => i.type === "CmkTrioReason")?.info?.reason,
  message: String(e?.message ?? e),
});

const step = stepper(errorOf);

const policy = (objectId, keyPermissions) => ({
  properties: { accessPolicies: [{ tenantId, objectId, permissions: { keys: keyPermissions } }] },
});
const encryptionOf = (a) => ({
  keySource: a.properties?.encryption?.keySource,
  keyName: a.properties?.encryption?.keyVaultProperties?.keyName,
  keyVaultUri: a.properties?.encryption?.keyVaultProperties?.keyVaultUri,
});

await step("group", () => resources.resourceGroups.createOrUpdate(group, { location: "westeurope" }), (g) => ({
  id: g.id,
  name: g.name,
}));
await step(
  "vault",
  () =>
    vaults.vaults.beginCreateOrUpdateAndWait(group, vault, {
      location: "westeurope",
      properties: {
        tenantId,
        sku: { family: "A", name: "standard" },
        enablePurgeProtection: true,
        softDeleteRetentionInDays: 7,
        accessPolicies: [
          { tenantId, objectId: env.ADMIN_OBJECT_ID, permissions: { keys: ["get", "create", "wrapKey"] } },
        ],
      },
    }),
  (v) => ({ name: v.name, vaultUri: v.properties?.vaultUri, purgeProtection: v.properties?.enablePurgeProtection }),
);
await step("key", () => keys.createRsaKey("cmk", { keySize: 2048 }), (k) => ({ id: k.id }));
await awaitTest("approval"); // the subscription's CMK approval, outside ARM
const made = await step(
  "account",
  () =>
    accounts.accounts.beginCreateAndWait(group, "speech1", {
      kind: "SpeechServices",
      sku: { name: "S0" },
      location: "westeurope",
      identity: { type: "SystemAssigned" },
      properties: {},
    }),
  (a) => ({ id: a.id, identity: a.identity, encryption: encryptionOf(a) }),
);
const identity = made?.identity?.principalId;
await step("grant identity", () =>
  vaults.vaults.updateAccessPolicy(group, vault, "add", policy(identity, ["get", "wrapKey", "unwrapKey"])),
);
const cmk = {
  properties: {
    encryption: {
      keySource: "Microsoft.KeyVault",
      keyVaultProperties: { keyVaultUri: `https://${vault}.vault.azure.net/`, keyName: "cmk" },
    },
  },
};
await step("set encryption", () => accounts.accounts.beginUpdateAndWait(group, "speech1", cmk), encryptionOf);
await awaitTest("written"); // data written and read under the key (the speech data plane, gRPC)
await step("revoke", () =>
  vaults.vaults.updateAccessPolicy(group, vault, "remove", policy(identity, ["get", "wrapKey", "unwrapKey"])),
);
await awaitTest("refused"); // the data refused with the cause
await step("account after revoke", () => accounts.accounts.get(group, "speech1"), (a) => a.properties?.encryption);
await step("restore", () =>
  vaults.vaults.updateAccessPolicy(group, vault, "add", policy(identity, ["get", "wrapKey", "unwrapKey"])),
);
await awaitTest("restored"); // readable again
await step(
  "microsoft-managed",
  () =>
    accounts.accounts.beginUpdateAndWait(group, "speech1", {
      properties: { encryption: { keySource: "Microsoft.CognitiveServices" } },
    }),
  encryptionOf,
);

// Role assignments (Microsoft.Authorization): Reader on the group for another principal.
const scope = `/subscriptions/${sub}/resourceGroups/${group}`;
const readers = [];
await step(
  "role definitions",
  async () => {
    for await (const d of authorization.roleDefinitions.list(scope, { filter: "roleName eq 'Reader'" })) readers.push(d);
    return readers;
  },
  (found) => found.map((d) => ({ id: d.id, roleName: d.roleName })),
);
const assignment = randomUUID();
await step(
  "assign",
  () =>
    authorization.roleAssignments.create(scope, assignment, {
      roleDefinitionId: readers[0]?.id,
      principalId: env.GRANTEE_ID,
    }),
  (a) => ({ name: a.name, principalId: a.principalId, scope: a.scope }),
);
await step(
  "assignments",
  async () => {
    const found = [];
    for await (const a of authorization.roleAssignments.listForScope(scope, { filter: `principalId eq '${env.GRANTEE_ID}'` }))
      found.push(a.name);
    return found;
  },
);
await step("unassign", () => authorization.roleAssignments.delete(scope, assignment), (a) => a?.name ?? null);

// Lists, then everything deleted (the group's delete takes the account and the vault).
await step("accounts", async () => {
  const found = [];
  for await (const a of accounts.accounts.listByResourceGroup(group)) found.push(a.name);
  return found;
});
await step("delete account", () => accounts.accounts.beginDeleteAndWait(group, "speech1"));
await step("vaults", async () => {
  const found = [];
  for await (const v of vaults.vaults.listByResourceGroup(group)) found.push(v.name);
  return found;
});
await step("delete group", () => resources.resourceGroups.beginDeleteAndWait(group));
await step("group exists", () => resources.resourceGroups.checkExistence(group), (r) => r.body);
emit({ done: true });
process.exit(0);
