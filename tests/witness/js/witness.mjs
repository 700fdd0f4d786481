// Microsoft's JavaScript SDKs, unmodified, against the trio: @azure/identity signs in,
// @azure/keyvault-keys' KeyClient and CryptographyClient and @azure/keyvault-secrets'
// SecretClient do what code written for Azure does.
// This script decides nothing: each step prints one JSON line, what the SDK returned or the
// error it threw, and tests/witness/test_js_sdks.py judges them.
//
//   node witness.mjs [SECTION ...]    (default: every section, in order: sign-in, keys, crypto,
//                                      revocation, soft-delete, signatures, backup,
//                                      rotation-policy, secrets; crypto, revocation,
//                                      soft-delete and signatures use the keys that `keys`
//                                      makes)
//
// Configuration, from the environment:
//   AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET   the service principal
//   SIGNER_CLIENT_ID, SIGNER_CLIENT_SECRET   a second principal of that tenant, whose access
//                           policy has sign and verify alone (no get: CryptographyClient
//                           cannot fetch the key, so it verifies through the vault)
//   VAULT_URL               https://{vault}.vault.azure.net
//   CMK_AUTHORITY           identity's HTTPS door (https://127.0.0.1:50054); unset: Azure's
//                           default authority, login.microsoftonline.com
//   CMK_KEYVAULT_DOOR       the key vault's HTTPS door (127.0.0.1:50055); unset: the SDK dials
//                           the vault's own name
//   NODE_EXTRA_CA_CERTS     the trio's CA (read by node itself)
//   HTTPS_PROXY, NO_PROXY   read by the SDKs' pipeline, as for any Azure code
//
// Output, one JSON object a line on stdout:
//   {"step": NAME, "result": ...}   what the SDK answered (bytes as base64url, dates ISO 8601)
//   {"step": NAME, "error": {name, statusCode, code, innerCode, message}}
//   {"await": NAME}                 the script waits for one line on stdin before going on,
//                                   while the test changes something through the gRPC API
import { constants, createHash, generateKeyPairSync, publicEncrypt, randomBytes } from "node:crypto";
import { ClientSecretCredential } from "@azure/identity";
import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";
import { SecretClient } from "@azure/keyvault-secrets";
import { DoorAgent, awaitTest, emit, stepper } from "./steps.mjs";

const env = process.env;
const VAULT_URL = env.VAULT_URL;

const credentialOf = (clientId, secret) =>
  env.CMK_AUTHORITY
    ? new ClientSecretCredential(env.AZURE_TENANT_ID, clientId, secret, {
        authorityHost: env.CMK_AUTHORITY,
        disableInstanceDiscovery: true,
      })
    : new ClientSecretCredential(env.AZURE_TENANT_ID, clientId, secret);
const credential = credentialOf(env.AZURE_CLIENT_ID, env.AZURE_CLIENT_SECRET);
const signer = credentialOf(env.SIGNER_CLIENT_ID, env.SIGNER_CLIENT_SECRET);
const clientOptions = env.CMK_KEYVAULT_DOOR ? { agent: new DoorAgent(env.CMK_KEYVAULT_DOOR) } : {};
const keys = new KeyClient(VAULT_URL, credential, clientOptions);
const secrets = new SecretClient(VAULT_URL, credential, clientOptions);
const cryptoFor = (key) => new CryptographyClient(key, credential, clientOptions);
const cryptoAsSigner = (keyId) => new CryptographyClient(keyId, signer, clientOptions);

// --- output -------------------------------------------------------------------------------

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const fromB64url = (text) => new Uint8Array(Buffer.from(text, "base64url"));

function errorOf(e) {
  return {
    name: e?.name,
    statusCode: e?.statusCode,
    code: e?.code,
    innerCode: e?.details?.error?.innerError?.code,
    message: String(e?.message ?? e),
  };
}

const step = stepper(errorOf);

function keyOf(k) {
  return {
    id: k.id,
    name: k.name,
    keyType: k.keyType,
    keyOperations: k.keyOperations,
    n: k.key?.n && b64url(k.key.n),
    e: k.key?.e && b64url(k.key.e),
    crv: k.key?.crv,
    x: k.key?.x && b64url(k.key.x),
    y: k.key?.y && b64url(k.key.y),
    properties: propertiesOf(k.properties),
  };
}

function propertiesOf(p) {
  return {
    id: p.id,
    name: p.name,
    vaultUrl: p.vaultUrl,
    version: p.version,
    enabled: p.enabled,
    tags: p.tags,
    createdOn: p.createdOn,
    updatedOn: p.updatedOn,
    recoveryLevel: p.recoveryLevel,
    recoverableDays: p.recoverableDays,
    recoveryId: p.recoveryId,
    deletedOn: p.deletedOn,
    scheduledPurgeDate: p.scheduledPurgeDate,
  };
}

function secretOf(s) {
  return { name: s.name, value: s.value, properties: secretPropertiesOf(s.properties) };
}

function secretPropertiesOf(p) {
  return { ...propertiesOf(p), contentType: p.contentType, managed: p.managed };
}

function deletedSecretOf(d) {
  return {
    name: d.name,
    value: d.value,
    recoveryId: d.recoveryId,
    deletedOn: d.deletedOn,
    scheduledPurgeDate: d.scheduledPurgeDate,
    properties: secretPropertiesOf(d.properties),
  };
}

function policyOf(p) {
  return { id: p.id, expiresIn: p.expiresIn, lifetimeActions: p.lifetimeActions, createdOn: p.createdOn,
           updatedOn: p.updatedOn };
}

async function all(iterable, map) {
  const found = [];
  for await (const item of iterable) found.push(map(item));
  return found;
}

// --- the sections -------------------------------------------------------------------------

const state = {};

async function signIn() {
  await step("sign-in", async () => {
    const token = await credential.getToken("https://vault.azure.net/.default");
    const claims = JSON.parse(Buffer.from(token.token.split(".")[1], "base64url").toString());
    return { expiresOnTimestamp: token.expiresOnTimestamp, aud: claims.aud, tid: claims.tid, appid: claims.appid };
  });
}

async function keyLifecycle() {
  state.rsa2048 = await step(
    "create-rsa-2048",
    () => keys.createRsaKey("witness-2048", { keySize: 2048, tags: { team: "speech" } }),
    keyOf,
  );
  state.rsa3072 = await step("create-rsa-3072", () => keys.createRsaKey("witness-3072", { keySize: 3072 }), keyOf);
  // Key material made here, imported: the vault answers with its public half.
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  state.ownKey = privateKey;
  const jwk = privateKey.export({ format: "jwk" });
  const fields = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
  const material = { kty: "RSA", ...Object.fromEntries(fields.map((f) => [f, fromB64url(jwk[f])])) };
  await step(
    "import",
    () => keys.importKey("witness-imported", material, { tags: { origin: "node" } }),
    (k) => ({ ...keyOf(k), sameN: b64url(k.key.n) === jwk.n }),
  );
  await step("get-latest", () => keys.getKey("witness-2048"), keyOf);
  await step("get-by-version", () => keys.getKey("witness-3072", { version: state.rsa3072.properties.version }), keyOf);
  await step("list-keys", () => all(keys.listPropertiesOfKeys(), propertiesOf));
  const tagged = { tags: { team: "speech", cmk: "yes" }, enabled: false };
  await step(
    "update-tags-and-disable",
    () => keys.updateKeyProperties("witness-2048", state.rsa2048.properties.version, tagged),
    keyOf,
  );
  // A disabled key refuses to unwrap, as Key Vault does (403).
  await step("unwrap-while-disabled", () => cryptoFor(state.rsa2048.id).unwrapKey("RSA-OAEP", randomBytes(256)));
  // The version-less form: the latest version.
  await step("update-enable", () => keys.updateKeyProperties("witness-2048", { enabled: true }), keyOf);
  await step("rotate", () => keys.rotateKey("witness-2048"), keyOf);
  await step("list-versions", () => all(keys.listPropertiesOfKeyVersions("witness-2048"), propertiesOf));
  await step("list-versions-one-a-page", async () => {
    const pages = [];
    for await (const page of keys.listPropertiesOfKeyVersions("witness-2048").byPage({ maxPageSize: 1 })) {
      pages.push(page.map((p) => p.version));
    }
    return pages;
  });
}

async function cryptography() {
  // From the key: CryptographyClient wraps and encrypts locally with the public key where
  // Node can (RSA-OAEP, RSA1_5), and asks the vault for the rest (RSA-OAEP-256, and every
  // unwrap and decrypt).
  const crypto = cryptoFor(state.rsa2048);
  const dataKey = randomBytes(32);
  for (const alg of ["RSA-OAEP-256", "RSA-OAEP"]) {
    const wrapped = await step(`wrap-${alg}`, async () => {
      const w = await crypto.wrapKey(alg, dataKey);
      return { keyID: w.keyID, algorithm: w.algorithm, wrapped: b64url(w.result), plaintext: b64url(dataKey) };
    });
    await step(`unwrap-${alg}`, async () => {
      const u = await crypto.unwrapKey(alg, fromB64url(wrapped.wrapped));
      return { keyID: u.keyID, equal: Buffer.from(u.result).equals(dataKey) };
    });
  }
  const message = Buffer.from("witnessed by @azure/keyvault-keys");
  for (const alg of ["RSA-OAEP", "RSA-OAEP-256", "RSA1_5"]) {
    const sealed = await step(`encrypt-${alg}`, async () => {
      const s = await crypto.encrypt({ algorithm: alg, plaintext: message });
      return { keyID: s.keyID, ciphertext: b64url(s.result) };
    });
    await step(`decrypt-${alg}`, async () => {
      const d = await crypto.decrypt({ algorithm: alg, ciphertext: fromB64url(sealed.ciphertext) });
      return { plaintext: Buffer.from(d.result).toString() };
    });
  }
  // What node wrapped with its own copy of the imported key's public half, the vault unwraps.
  const sealedHere = publicEncrypt({ key: state.ownKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, dataKey);
  await step("unwrap-imported", async () => {
    const u = await cryptoFor((await keys.getKey("witness-imported")).id).unwrapKey("RSA-OAEP", sealedHere);
    return { equal: Buffer.from(u.result).equals(dataKey) };
  });
  // From the key's id: the client fetches the key first, then as above; a 3072-bit key.
  const byId = cryptoFor(state.rsa3072.id);
  await step("wrap-unwrap-3072", async () => {
    const w = await byId.wrapKey("RSA-OAEP-256", dataKey);
    const u = await byId.unwrapKey("RSA-OAEP-256", w.result);
    return { keyID: u.keyID, length: w.result.length, equal: Buffer.from(u.result).equals(dataKey) };
  });
}

async function revocation() {
  // Unwrap allowed; the test takes unwrapKey out of the access policy (gRPC); refused with
  // Key Vault's 403; the test puts it back; allowed again.
  const crypto = cryptoFor(state.rsa2048.id);
  const dataKey = randomBytes(32);
  const wrapped = await step("revocation-wrap", async () => {
    const w = await crypto.wrapKey("RSA-OAEP-256", dataKey);
    return { keyID: w.keyID, wrapped: b64url(w.result) };
  });
  const unwrap = async () => {
    const u = await crypto.unwrapKey("RSA-OAEP-256", fromB64url(wrapped.wrapped));
    return { equal: Buffer.from(u.result).equals(dataKey) };
  };
  await step("revocation-unwrap-allowed", unwrap);
  await awaitTest("unwrap-revoked");
  await step("revocation-unwrap-refused", unwrap);
  await awaitTest("unwrap-restored");
  await step("revocation-unwrap-allowed-again", unwrap);
}

async function softDelete() {
  // The pollers as the SDK drives them: DELETE, then GET /deletedkeys/{name} until found;
  // POST .../recover, then GET /keys/{name} until found.
  const deleted = (name) => keys.beginDeleteKey(name).then((poller) => poller.pollUntilDone());
  await step("delete", () => deleted("witness-3072"), keyOf);
  await step("get-after-delete", () => keys.getKey("witness-3072"), keyOf);
  await step("get-deleted", () => keys.getDeletedKey("witness-3072"), keyOf);
  await step("list-deleted", () => all(keys.listDeletedKeys(), propertiesOf));
  const recovered = (name) => keys.beginRecoverDeletedKey(name).then((poller) => poller.pollUntilDone());
  await step("recover", () => recovered("witness-3072"), keyOf);
  await step("get-after-recover", () => keys.getKey("witness-3072"), keyOf);
  await step("delete-again", () => deleted("witness-3072"), keyOf);
  await step("purge", () => keys.purgeDeletedKey("witness-3072"));
  await step("get-deleted-after-purge", () => keys.getDeletedKey("witness-3072"), keyOf);
}

async function signatures() {
  // CryptographyClient signs through the vault (the private key's operation). `verify` takes a
  // digest and always asks the vault; `verifyData` hashes the data and checks an RSA signature
  // locally with the key it fetched, or asks the vault when it could not fetch the key (the
  // signer, whose access policy has no get).
  const data = Buffer.from("signed by the vault");
  for (const [curve, alg, hash] of [["P-256", "ES256", "sha256"], ["P-384", "ES384", "sha384"],
                                    ["P-521", "ES512", "sha512"]]) {
    const create = () => keys.createEcKey(`witness-ec-${curve.slice(2)}`, { curve });
    const made = await step(`create-ec-${curve}`, create, keyOf);
    await signAndVerify(made.id, alg, createHash(hash).update(data).digest());
  }
  const rsa = state.rsa2048.id;  // (its first version: rotate made a second)
  for (const alg of ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]) {
    const digest = createHash(`sha${alg.slice(2)}`).update(data).digest();
    const signed = await signAndVerify(rsa, alg, digest);
    await step(`verify-data-${alg}`, async () => {
      const v = await cryptoFor(rsa).verifyData(alg, data, fromB64url(signed.signature));
      return { keyID: v.keyID, result: v.result };
    });
    await step(`verify-data-${alg}-as-signer`, async () => {
      const v = await cryptoAsSigner(rsa).verifyData(alg, data, fromB64url(signed.signature));
      return { keyID: v.keyID, result: v.result };
    });
  }
  // An algorithm of another key type: Key Vault's 400.
  const sha256 = createHash("sha256").update(data).digest();
  await step("sign-ES256-with-rsa-key", () => cryptoAsSigner(rsa).sign("ES256", sha256));
  // An EC private key made here, imported, signs; its public half comes back.
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = privateKey.export({ format: "jwk" });
  const material = { kty: "EC", crv: "P-256", keyOps: ["sign", "verify"],
                     ...Object.fromEntries(["x", "y", "d"].map((f) => [f, fromB64url(jwk[f])])) };
  const imported = await step(
    "import-ec",
    () => keys.importKey("witness-imported-ec", material),
    (k) => ({ ...keyOf(k), sameXY: b64url(k.key.x) === jwk.x && b64url(k.key.y) === jwk.y }),
  );
  await step("sign-imported-ec", async () => {
    const s = await cryptoFor(imported.id).sign("ES256", sha256);
    return { keyID: s.keyID, digest: b64url(sha256), signature: b64url(s.result), x: jwk.x, y: jwk.y };
  });
}

/** sign-{alg}, verify-{alg} (and of an altered digest), and the same as the signer. */
async function signAndVerify(keyId, alg, digest) {
  const signed = await step(`sign-${alg}`, async () => {
    const s = await cryptoFor(keyId).sign(alg, digest);
    return { keyID: s.keyID, algorithm: s.algorithm, digest: b64url(digest), signature: b64url(s.result) };
  });
  const altered = Buffer.from(digest).reverse();
  for (const [who, client] of [["", cryptoFor(keyId)], ["-as-signer", cryptoAsSigner(keyId)]]) {
    for (const [which, d] of [["", digest], ["-altered", altered]]) {
      await step(`verify-${alg}${which}${who}`, async () => {
        const v = await client.verify(alg, d, fromB64url(signed.signature));
        return { keyID: v.keyID, result: v.result };
      });
    }
  }
  return signed;
}

async function backup() {
  // Two versions backed up, the key deleted and purged, restored whole: the first version
  // unwraps what it wrapped before.
  const made = await step("backup-create", () => keys.createRsaKey("witness-kept", { tags: { why: "backup" } }), keyOf);
  const dataKey = randomBytes(32);
  const wrapped = await step("backup-wrap", async () => {
    const w = await cryptoFor(made.id).wrapKey("RSA-OAEP-256", dataKey);
    return { keyID: w.keyID, wrapped: b64url(w.result) };
  });
  await step("backup-rotate", () => keys.rotateKey("witness-kept"), keyOf);
  const blob = await step("backup-key", () => keys.backupKey("witness-kept"), (b) => ({ length: b.length }));
  await step("backup-delete", () => keys.beginDeleteKey("witness-kept").then((p) => p.pollUntilDone()), keyOf);
  await step("backup-purge", () => keys.purgeDeletedKey("witness-kept"));
  await step("backup-get-deleted-after-purge", () => keys.getDeletedKey("witness-kept"), keyOf);
  await step("restore-key", () => keys.restoreKeyBackup(blob), keyOf);
  await step("restore-list-versions", () => all(keys.listPropertiesOfKeyVersions("witness-kept"), propertiesOf));
  await step("restore-unwrap", async () => {
    const u = await cryptoFor(made.id).unwrapKey("RSA-OAEP-256", fromB64url(wrapped.wrapped));
    return { keyID: u.keyID, equal: Buffer.from(u.result).equals(dataKey) };
  });
  // Over a key of that name: Key Vault's 409; an altered blob: 400.
  await step("restore-over-existing", () => keys.restoreKeyBackup(blob), keyOf);
  const altered = Uint8Array.from(blob);
  altered[altered.length - 1] ^= 1;
  await step("restore-altered", () => keys.restoreKeyBackup(altered), keyOf);
}

async function rotationPolicy() {
  await step("rotation-policy-unset", () => keys.getKeyRotationPolicy("witness-2048"), policyOf);
  const policy = {
    expiresIn: "P2Y",
    lifetimeActions: [{ action: "Rotate", timeAfterCreate: "P90D" }, { action: "Notify", timeBeforeExpiry: "P30D" }],
  };
  await step("rotation-policy-update", () => keys.updateKeyRotationPolicy("witness-2048", policy), policyOf);
  await step("rotation-policy-get", () => keys.getKeyRotationPolicy("witness-2048"), policyOf);
}

async function secretLifecycle() {
  const name = "witness-password";
  const first = await step(
    "secret-set",
    () => secrets.setSecret(name, "s3cr3t-value", { contentType: "text/plain", tags: { app: "web" } }),
    secretOf,
  );
  const second = await step("secret-set-second", () => secrets.setSecret(name, "rotated"), secretOf);
  await step("secret-set-other", () => secrets.setSecret("witness-api-key", "k3y"), secretOf);
  await step("secret-get-latest", () => secrets.getSecret(name), secretOf);
  const v1 = first.properties.version;
  await step("secret-get-by-version", () => secrets.getSecret(name, { version: v1 }), secretOf);
  await step("secret-list", () => all(secrets.listPropertiesOfSecrets(), secretPropertiesOf));
  await step("secret-list-versions", () => all(secrets.listPropertiesOfSecretVersions(name), secretPropertiesOf));
  await step("secret-list-versions-one-a-page", async () => {
    const pages = [];
    for await (const page of secrets.listPropertiesOfSecretVersions(name).byPage({ maxPageSize: 1 })) {
      pages.push(page.map((p) => p.version));
    }
    return pages;
  });
  const disable = () => secrets.updateSecretProperties(name, v1, { enabled: false });
  await step("secret-update-disable", disable, secretPropertiesOf);
  // A disabled version's value is refused, as Key Vault does (403).
  await step("secret-get-disabled", () => secrets.getSecret(name, { version: v1 }), secretOf);
  const retag = { contentType: "text/plain", tags: { app: "web", rotated: "yes" } };
  const update = () => secrets.updateSecretProperties(name, second.properties.version, retag);
  await step("secret-update-tags", update, secretPropertiesOf);
  const blob = await step("secret-backup", () => secrets.backupSecret(name), (b) => ({ length: b.length }));
  // The pollers as the SDK drives them, as for keys.
  const deleted = () => secrets.beginDeleteSecret(name).then((poller) => poller.pollUntilDone());
  await step("secret-delete", deleted, deletedSecretOf);
  await step("secret-get-after-delete", () => secrets.getSecret(name), secretOf);
  await step("secret-get-deleted", () => secrets.getDeletedSecret(name), deletedSecretOf);
  await step("secret-list-deleted", () => all(secrets.listDeletedSecrets(), deletedSecretOf));
  const recovered = () => secrets.beginRecoverDeletedSecret(name).then((poller) => poller.pollUntilDone());
  await step("secret-recover", recovered, secretPropertiesOf);
  await step("secret-get-after-recover", () => secrets.getSecret(name), secretOf);
  await step("secret-delete-again", deleted, deletedSecretOf);
  await step("secret-purge", () => secrets.purgeDeletedSecret(name));
  await step("secret-get-deleted-after-purge", () => secrets.getDeletedSecret(name), deletedSecretOf);
  await step("secret-restore", () => secrets.restoreSecretBackup(blob), secretPropertiesOf);
  await step("secret-get-after-restore", () => secrets.getSecret(name), secretOf);
  await step("secret-get-disabled-after-restore", () => secrets.getSecret(name, { version: v1 }), secretOf);
  // The secret half of the access policy: get taken out through gRPC, refused, put back.
  await awaitTest("secret-get-revoked");
  await step("secret-get-refused", () => secrets.getSecret(name), secretOf);
  await awaitTest("secret-get-restored");
  await step("secret-get-allowed-again", () => secrets.getSecret(name), secretOf);
}

const SECTIONS = {
  "sign-in": signIn,
  keys: keyLifecycle,
  crypto: cryptography,
  revocation,
  "soft-delete": softDelete,
  signatures,
  backup,
  "rotation-policy": rotationPolicy,
  secrets: secretLifecycle,
};

const wanted = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(SECTIONS);
for (const name of wanted) {
  const section = SECTIONS[name];
  if (!section) {
    process.stderr.write(`unknown section ${name}; one of ${Object.keys(SECTIONS).join(", ")}\n`);
    process.exit(2);
  }
  try {
    await section();
  } catch (e) {
    // Outside any step (a value an earlier step failed to give): reported as the section's.
    emit({ step: `section ${name}`, error: errorOf(e) });
  }
}
emit({ done: wanted });
process.exit(0);
